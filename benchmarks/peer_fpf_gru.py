"""The PyTorch side of bench_fpf_flipflop.py: FixedPointFinderTorch (Golub & Sussillo) on a torch.nn.GRU.

    .venv-peers/bin/python benchmarks/peer_fpf_gru.py IN.npz OUT.npz     (PYTHONPATH: fixed-point-finder)

IN.npz holds the GRU's weights in torch's layout (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0),
the starts (S, N), FPF's settings (dtype, max_iters, outlier_distance_scale, lr_init, threads) and
`check_states` / `check_inputs` (K, N) / (K, n_in), on which this script returns torch's one-step map
(`check_next`) so the caller can verify the weight transfer. The GRU is built as FPF's example builds it
(nn.GRU(n_in, N, batch_first=True)) and FPF is called as in examples/torch/run_FlipFlop.py:

    fpf = FixedPointFinderTorch(rnn, max_iters=..., lr_init=1., outlier_distance_scale=10., verbose=False,
                                super_verbose=False, dtype=...)
    unique_fps, all_fps = fpf.find_fixed_points(starts, inputs=np.zeros((1, n_in)))

Everything else is FPF's default. Its wall time is that call alone, measured after one forward and
backward pass of the GRU (so torch's first-call allocations are not in it). Its two parts, the joint
optimisation and the Jacobians at the unique points, are timed by wrapping the two methods (their
behaviour unchanged). FPF's prints (it prints some even with verbose=False) are kept in `fpf_log`.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time

import numpy as np
import torch

from FixedPointFinderTorch import FixedPointFinderTorch


def build_gru(arrays, dtype) -> torch.nn.GRU:
    n_hidden = arrays["weight_hh_l0"].shape[1]
    n_in = arrays["weight_ih_l0"].shape[1]
    rnn = torch.nn.GRU(n_in, n_hidden, batch_first=True).to(dtype)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rnn, name).copy_(torch.from_numpy(arrays[name]).to(dtype))
    return rnn


def one_step(rnn, states, inputs, dtype) -> np.ndarray:
    """h' = GRU(u, h) for each row (batch_first: inputs (K, 1, n_in), h0 (1, K, N))."""
    with torch.no_grad():
        u = torch.from_numpy(inputs).to(dtype).unsqueeze(1)
        h = torch.from_numpy(states).to(dtype).unsqueeze(0)
        return rnn(u, h)[1].squeeze(0).numpy()


def timed_method(fpf, name: str, spent: dict) -> None:
    method = getattr(fpf, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

    setattr(fpf, name, wrapper)


def main(path_in: str, path_out: str) -> None:
    arrays = dict(np.load(path_in))
    dtype_name = str(arrays["dtype"])
    dtype = getattr(torch, dtype_name)
    torch.set_num_threads(int(arrays["threads"]))
    rnn = build_gru(arrays, dtype)
    check_next = one_step(rnn, arrays["check_states"], arrays["check_inputs"], dtype)

    starts = arrays["starts"].astype(dtype_name)
    n_in = arrays["weight_ih_l0"].shape[1]
    # warm-up: one forward and backward pass of the GRU at the starts
    x = torch.from_numpy(starts).unsqueeze(0).requires_grad_(True)
    u = torch.zeros((starts.shape[0], 1, n_in), dtype=dtype)
    torch.sum(rnn(u, x)[1]).backward()

    fpf = FixedPointFinderTorch(rnn, max_iters=int(arrays["max_iters"]), lr_init=float(arrays["lr_init"]),
                                outlier_distance_scale=float(arrays["outlier_distance_scale"]),
                                verbose=False, super_verbose=False, dtype=dtype_name)
    spent: dict[str, float] = {}
    timed_method(fpf, "_run_joint_optimization", spent)
    timed_method(fpf, "_compute_recurrent_jacobians", spent)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        start = time.perf_counter()
        unique, every = fpf.find_fixed_points(starts, np.zeros((1, n_in)))
        wall = time.perf_counter() - start

    np.savez(path_out, check_next=check_next, wall_s=wall,
             optimize_s=spent.get("_run_joint_optimization", np.nan),
             jacobians_s=spent.get("_compute_recurrent_jacobians", np.nan),
             points=unique.xstar, q=unique.qstar, is_stable=np.asarray(unique.is_stable, bool),
             eigenvalues=unique.eigval_J_xstar, all_points=every.xstar, all_q=every.qstar,
             n_iters=int(every.n_iters[0]) if every.n else 0, fpf_log=log.getvalue(),
             torch_version=torch.__version__, torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main(*sys.argv[1:3])
