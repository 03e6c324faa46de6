"""Our fixed-point finder against FixedPointFinderTorch (Golub & Sussillo) on one trained GRU, side by side.

    python benchmarks/bench_fpf_flipflop.py [--n-starts 1024] [--repeats 3] [--precision float64]
                                            [--threads N] [--max-iters 10000]

What is compared. One GRU (16 units, flax.linen.GRUCell) trained by this tool on the 3-bit flip-flop
(model=gru task=flipflop optimizer=adam, 3000 steps, lr 1e-2, seed 0; trained once and kept in
outputs/bench-fpf-flipflop/, which git ignores, as it does the files passed to and from FPF there). Its
weights go into a torch.nn.GRU (batch_first, as in FPF's example; b_hr = b_hz = 0, weight = kernelᵀ
stacked r, z, n); before anything is compared the torch GRU's one-step map is checked against ours (and
against a NumPy GRU) on random states and inputs.
The starts are FPF's example's: states visited on 128 flip-flop trials (64 steps), sampled uniformly
(with replacement) plus N(0, 0.5²) noise, 1024 of them, input u = 0. Both tools get the same starts.

  ours   rnn_sparsity.analysis.fixed_points.find_fixed_points(problem(model.dynamics, params, 0), starts,
         dedup_radius=1e-3, outlier_distance_scale=10): batched Levenberg–Marquardt on r(h) = n(h) - h,
         the GRU's residual with exactly its fixed points as roots (f(h) - h = (1 - z)(n(h) - h), as
         model=gru solves it: models/cells.gru_roots), keeping ‖r‖ < tol (default: 1e-10 in float64,
         1e-5 in float32; ‖f(h) - h‖ ≤ ‖r‖), then deduplication and
         eigenvalues. Timed end to end after a warm-up call that compiles (the compile time, from JAX's
         backend-compile events, is printed apart; the persistent compilation cache is not used).
  FPF    FixedPointFinderTorch(rnn, max_iters=10000, lr_init=1., outlier_distance_scale=10.,
         verbose=False, super_verbose=False, dtype=...).find_fixed_points(starts, np.zeros((1, 3))), as
         examples/torch/run_FlipFlop.py calls it, everything else FPF's default (joint Adam on the mean of
         q = ½‖h - f(h)‖², ReduceLROnPlateau, stop when every start has q < tol_q = 1e-12 or
         dq < 1e-20·lr; unique within tol_unique = 1e-3 (Euclidean norm of the difference, whatever its
         docstring says); distance outliers dropped; Jacobians and their eigenvalues). Run in
         .venv-peers (benchmarks/_peers.py) by benchmarks/peer_fpf_gru.py, one process per repeat,
         timed inside that process around find_fixed_points alone.

The two runs alternate (ours, FPF, ours, FPF, ...) and each tool's median time is reported. Both
get the same number of threads (--threads, default all cores): FPF through torch.set_num_threads and
OMP_NUM_THREADS; ours runs on XLA's CPU thread pool (one thread per core) with OpenBLAS held to one
thread during the search (by design, see rnn_sparsity.blas).

Both point sets are then judged by one common function, a NumPy float64 GRU step f: the residual
‖f(h) - h‖ of every returned point; the "roots" are those with ‖f(h) - h‖ < tol (our default tol, 1e-10
in float64), classified by their number of unstable directions (|λ| > 1 of ∂f/∂h, by central differences
of the NumPy f); a root of one set is "matched" when a root of the other lies within 1e-3 of it
(Euclidean, FPF's tol_unique; the farthest matched pair is printed in Euclidean and max-abs distance).

Why FPF does not work on this GRU (its example's note: GRU fixed-point finding in PyTorch "is not working
as expected"). Not shapes, dtype or the weights: the transfer check agrees to 1e-15, the batch_first
layout is the example's, and float64 and float32 fail alike. Measured on this network (float64):
  1. q(h) = ½‖f(h) - h‖² of a GRU falls toward 0 far from every root: where an update gate saturates
     (z_i -> 1), f_i(h) ≈ h_i and that coordinate is free. Adam at lr 1 carries 922 of the 1024 starts
     out there: median ‖h‖ 14 at the end (starts ≤ 5.2; every GRU fixed point lies in (-1, 1)^N, as
     f(h) = h <=> n(h) = h), with min_i (1 - z_i) ~ 1e-8 and ‖f(h) - h‖ ~ 5e-3, still falling. (The tanh
     RNN of FPF's example has no such valleys: ‖tanh(.) - h‖ grows with ‖h‖.)
  2. The joint optimisation has one learning rate, cut by ReduceLROnPlateau on the MEAN q of all starts.
     A few starts sit in local minima of q with q ~ 1e-3 to 6e-2 (5 starts are 69% of the mean), so
     once they stop improving the rate shrinks for every start, to 2e-7 by iteration ~4000 (its floor:
     the scheduler's eps), and the rest freeze with median q 1e-5.
  3. Its stop test (every start has q < 1e-12 or dq < 1e-20·lr) is then never met in float64, so it
     runs all 10000 iterations, the last ~6000 of them (~60% of its time) with the rate at 2e-7. In
     float32 dq becomes exactly 0 and it stops at ~2800.
  4. Its unique set is not filtered by q: every start that did not converge is a "unique fixed point"
     (922), and the distance-outlier test (10x the starts' mean distance to their centroid, ≈ 28 here)
     does not reach them (farthest 27).
  The 22 roots it does return are genuine: every one of them is among ours, to 9e-12.

Ours solves n(h) - h = 0 (models/cells.gru_roots), so difficulty 1 does not arise: every start
converges in at most 9 iterations, to all 27 fixed points of the cube (8 corners, 12 edges, 6 faces, the
centre). Solving f(h) - h = 0 instead (the general path, as a user's own cell is solved) also drifts:
985 of 1024 starts converged, 26 of the 27 points (the centre missed), 43% of the iterations spent on
the 39 that did not, 0.198 s against FPF's 12.67 s (64x, load ~1; the same command before gru_roots).

Measured (`python benchmarks/bench_fpf_flipflop.py`, 2 cores, another sweep starting beside it; load
averages printed with it):

    2 CPUs, load average 1.48 1.52 2.61; float64; 1024 starts; 2 threads each; the GRU of outputs/bench-fpf-flipflop/gru16-float64
      repeat 1: ours 0.043 s, FPF 10.88 s   [load average 1.67 1.56 2.61]
      repeat 2: ours 0.032 s, FPF 11.34 s   [load average 1.67 1.57 2.59]
      repeat 3: ours 0.035 s, FPF 11.82 s   [load average 1.66 1.57 2.58]

    transfer check, one step from 256 random states (half with u = 0, half with ±1 pulses):
      max |torch - ours| = 1.1e-15   max |numpy - ours| = 6.7e-16   max |torch - numpy| = 8.9e-16

                                                          ours (LM, JAX)                FPF (Adam, PyTorch 2.13.0+cpu)
    unique fixed points, as each tool returns them        27                            922
      stable, by the tool's own eigenvalues               8                             10
      with ‖f(h) - h‖ < 1e-10 (common f)                  27                            22
      with ‖f(h) - h‖ < 1e-06 (common f)                  27                            22
      with ‖f(h) - h‖ < 1e-03 (common f)                  27                            39
    roots (‖f(h) - h‖ < 1e-10), by unstable dims 0/1/2/3  8/12/6/1                      8/9/4/1
      matched by a root of the other (< 0.001)            22 of 27                      22 of 22
      farthest matched pair: Euclidean / max-abs          9e-12 / 6e-12                 
      union of both sets of roots (< 0.001)               27                            
      of the 17 the training run's analysis found         17                            15
    ‖f(h) - h‖ of the returned points: median / max       2.9e-14 / 3.2e-12             4.9e-03 / 3.5e-01
    starts ending at a root (‖r‖ < 1e-10)¹                1024 of 1024                  102 of 1024
    starts ending with own q < 1e-12 (FPF's tol_q)        1024                          102
    iterations                                            5.6 mean, 9 max per start     10000 (joint, all starts)
      ours: share spent on the 0 starts not at a root     0%                            
    wall time, median of 3                                0.035 s                       11.34 s
      FPF: joint optimisation / Jacobians                                               9.96 s / 1.11 s
    first call (ours: compiles)                           2.30 s (1.63 s XLA compile)   
    ¹ ours: its own residual where each start stopped (the GRU's n(h) - h, whose norm bounds ‖f(h) - h‖); FPF: the common f at its final points

    -> FPF / ours wall time: 328x   [load average 1.66 1.57 2.58]

FPF's time is its 10000 iterations, ~1 ms each on a quiet machine (its Jacobians, 1.1 s, include a
per-point loop it computes and discards: `sequential_jacobian`), and it moves a lot with the load.
Earlier runs of the same command with the f(h) - h residual, under load: load average 1.3-1.9, FPF
11.8-28.2 s, ours 0.19-0.23 s: 139x; load average 4.4-5.5, FPF 279-383 s, ours 0.25-0.35 s: 984x.
`--precision float32` (a GRU trained in float32; FPF's default dtype), f(h) - h, load ~4: ours 0.077 s,
FPF 30.6 s (stopped at 2781 iterations), 400x; ours 26 roots (8/12/6/0), FPF 925 points returned of
which 21 roots (8/10/2/1), union 27 again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _peers import PEERS, ROOT, peer_python  # beside this script

FPF_DIR = PEERS / "fixed-point-finder"
CACHE = ROOT / "outputs" / "bench-fpf-flipflop"  # git-ignored
TRAIN = ["model=gru", "task=flipflop", "model.n_units=16", "optimizer=adam", "optimizer.steps=3000",
         "optimizer.lr=1e-2", "analysis=dynamics", "seed=0", "progress=false"]
N_UNITS, N_BITS = 16, 3
MATCH_TOL = 1e-3         # Euclidean: FPF's tol_unique, also our dedup_radius here
NOISE_SCALE = 0.5        # FPF's example
OUTLIER_DISTANCE = 10.0  # FPF's example (and its default)
GATES = ("r", "z", "n")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def trained_run(precision: str) -> Path:
    """The run directory of the trained GRU, training it first (~30 s) when it is not there yet."""
    run_dir = CACHE / f"gru16-{precision}"
    if not (run_dir / "DONE").exists():
        print(f"training the GRU into {run_dir} ...", flush=True)
        command = [sys.executable, "-m", "rnn_sparsity", *TRAIN, f"precision={precision}",
                   f"hydra.run.dir={run_dir}"]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"training failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return run_dir


# ------------------------------------------------------------------------------------------ the GRU
def torch_layout(params: dict) -> dict:
    """flax GRUCell params -> torch.nn.GRU's: weight_ih_l0 = [W_ir; W_iz; W_in] (3N, n_in), W = kernelᵀ,
    bias_ih_l0 = [b_ir; b_iz; b_in], bias_hh_l0 = [0; 0; b_hn] (flax has no b_hr, b_hz)."""
    zeros = np.zeros(N_UNITS)
    return {"weight_ih_l0": np.concatenate([params[f"cell/i{g}/kernel"].T for g in GATES]),
            "weight_hh_l0": np.concatenate([params[f"cell/h{g}/kernel"].T for g in GATES]),
            "bias_ih_l0": np.concatenate([params[f"cell/i{g}/bias"] for g in GATES]),
            "bias_hh_l0": np.concatenate([zeros, zeros, params["cell/hn/bias"]])}


def numpy_gru(params: dict, h: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The common judge, float64: h' = (1 - z) n + z h with flax's gates (rows of h and u)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h, u = np.asarray(h, np.float64), np.asarray(u, np.float64)

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    r = sigmoid(u @ p["cell/ir/kernel"] + p["cell/ir/bias"] + h @ p["cell/hr/kernel"])
    z = sigmoid(u @ p["cell/iz/kernel"] + p["cell/iz/bias"] + h @ p["cell/hz/kernel"])
    n = np.tanh(u @ p["cell/in/kernel"] + p["cell/in/bias"] + r * (h @ p["cell/hn/kernel"] + p["cell/hn/bias"]))
    return (1.0 - z) * n + z * h


def residuals(params: dict, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, N_UNITS)
    return np.linalg.norm(numpy_gru(params, points, np.zeros((len(points), N_BITS))) - points, axis=1)


def unstable_dims(params: dict, points: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Eigenvalues with |λ| > 1 of ∂f/∂h at each point, ∂f/∂h by central differences of the NumPy GRU
    (float64; error ~1e-10, far below any |λ| - 1 seen here)."""
    points = np.asarray(points, np.float64).reshape(-1, N_UNITS)
    k = len(points)
    if k == 0:
        return np.zeros(0, int)
    steps = eps * np.eye(N_UNITS)
    h = np.concatenate([(points[:, None, :] + steps).reshape(-1, N_UNITS),
                        (points[:, None, :] - steps).reshape(-1, N_UNITS)])
    f = numpy_gru(params, h, np.zeros((len(h), N_BITS))).reshape(2, k, N_UNITS, N_UNITS)
    jac = np.swapaxes((f[0] - f[1]) / (2 * eps), 1, 2)  # [k, i, j] = ∂f_i/∂h_j
    return np.sum(np.abs(np.linalg.eigvals(jac)) > 1.0, axis=1)


def nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a: (Euclidean, max-abs) distance to its nearest row of b (inf where b is empty)."""
    if len(b) == 0:
        return np.full(len(a), np.inf), np.full(len(a), np.inf)
    diff = np.asarray(a, np.float64)[:, None, :] - np.asarray(b, np.float64)[None, :, :]
    euclid = np.linalg.norm(diff, axis=2)
    j = np.argmin(euclid, axis=1)
    return euclid[np.arange(len(a)), j], np.max(np.abs(diff[np.arange(len(a)), j]), axis=1)


# ------------------------------------------------------------------------------------------ FPF's side
def run_fpf(python: Path, path_in: Path, path_out: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(FPF_DIR), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([str(python), str(Path(__file__).with_name("peer_fpf_gru.py")), str(path_in),
                           str(path_out)], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"FixedPointFinderTorch failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with np.load(path_out) as out:
        return {k: out[k] for k in out.files}


# ------------------------------------------------------------------------------------------ the run
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-starts", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median reported)")
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64",
                        help="of the training run and of both finders")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for FPF's torch (ours: XLA's pool)")
    parser.add_argument("--max-iters", type=int, default=10000, help="FPF's max_iters (its example's 10000)")
    args = parser.parse_args()

    if not (FPF_DIR / "FixedPointFinderTorch.py").exists():
        sys.exit(f"{FPF_DIR} not found (set RNN_SPARSITY_PEERS to the folder holding fixed-point-finder/)")
    python = peer_python()
    run_dir = trained_run(args.precision)

    import jax
    if args.precision == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from flax import linen as nn
    from jax._src import dispatch, monitoring

    from rnn_sparsity.analysis.fixed_points import find_fixed_points, problem
    from rnn_sparsity.artifacts import read_params
    from rnn_sparsity.models.cells import GRU, cell_model
    from rnn_sparsity.tasks.flipflop import flipflop_trials

    dtype = jnp.dtype(args.precision)
    model = cell_model(nn.GRUCell(features=N_UNITS), N_BITS, N_BITS, dtype, roots=GRU.roots)  # as model=gru builds it
    raw = {k: np.asarray(v) for k, v in read_params(run_dir).items()}
    params = {k: jnp.asarray(v, dtype) for k, v in raw.items()}
    prob = problem(model.dynamics, params, np.zeros(N_BITS))

    # the starts: FPF's example's recipe on the states of 128 flip-flop trials
    inputs, _ = flipflop_trials(n_trials=128, n_steps=64, n_bits=N_BITS, pulse_prob=0.5, seed=1)
    _, states = model.apply(params, jnp.asarray(inputs, dtype))
    states = np.asarray(states, np.float64).reshape(-1, N_UNITS)
    rng = np.random.default_rng(0)
    starts = states[rng.integers(len(states), size=args.n_starts)]
    starts = (starts + NOISE_SCALE * rng.normal(size=starts.shape)).astype(args.precision)

    # the transfer check: random states (and inputs), one step of each implementation
    check_h = rng.normal(size=(256, N_UNITS))
    check_u = np.concatenate([np.zeros((128, N_BITS)), rng.choice([-1.0, 0.0, 1.0], size=(128, N_BITS))])
    steps = {"ours": np.asarray(jax.vmap(model.dynamics.field, in_axes=(None, 0, 0))(
        params, jnp.asarray(check_h, dtype), jnp.asarray(check_u, dtype)), np.float64),
        "numpy": numpy_gru(raw, check_h, check_u)}

    work = CACHE / f"fpf-io-{args.precision}"  # FPF's input and outputs, kept for inspection (overwritten)
    work.mkdir(parents=True, exist_ok=True)
    path_in = work / "in.npz"
    np.savez(path_in, **torch_layout(raw), starts=starts, check_states=check_h, check_inputs=check_u,
             dtype=args.precision, max_iters=args.max_iters, lr_init=1.0,
             outlier_distance_scale=OUTLIER_DISTANCE, threads=args.threads)

    def ours():
        return find_fixed_points(prob, starts, dedup_radius=MATCH_TOL, outlier_distance_scale=OUTLIER_DISTANCE)

    compiled = {"s": 0.0}

    def listen(event, duration, **kwargs):
        if event == dispatch.BACKEND_COMPILE_EVENT:
            compiled["s"] += duration

    print(f"{os.cpu_count()} CPUs, load average {load()}; {args.precision}; {args.n_starts} starts; "
          f"{args.threads} threads each; the GRU of {run_dir.relative_to(ROOT)}", flush=True)
    monitoring.register_event_duration_secs_listener(listen)
    start = time.perf_counter()
    ours()
    first_call, compile_s = time.perf_counter() - start, compiled["s"]

    times, fpf_runs = {"ours": [], "FPF": []}, []
    for i in range(args.repeats):
        start = time.perf_counter()
        mine = ours()
        times["ours"].append(time.perf_counter() - start)
        fpf_runs.append(run_fpf(python, path_in, work / f"out{i}.npz", args.threads))
        times["FPF"].append(float(fpf_runs[-1]["wall_s"]))
        print(f"  repeat {i + 1}: ours {times['ours'][-1]:.3f} s, FPF {times['FPF'][-1]:.2f} s   [load average "
              f"{load()}]", flush=True)
    steps["torch"] = fpf_runs[0]["check_next"].astype(np.float64)
    report(args, raw, mine, fpf_runs, times, first_call, compile_s, steps, run_dir)


def report(args, raw, mine, fpf_runs, times, first_call, compile_s, steps, run_dir) -> None:
    fpf = fpf_runs[0]
    print("\ntransfer check, one step from 256 random states (half with u = 0, half with ±1 pulses):")
    print("  " + "   ".join(f"max |{a} - {b}| = {np.max(np.abs(steps[a] - steps[b])):.1e}"
                            for a, b in (("torch", "ours"), ("numpy", "ours"), ("torch", "numpy"))))

    tol = 1e-10 if args.precision == "float64" else 1e-5  # our default_tol
    points = {"ours": np.asarray(mine.points, np.float64), "FPF": np.asarray(fpf["points"], np.float64)}
    res = {k: residuals(raw, v) for k, v in points.items()}
    fixed = {k: v[res[k] < tol] for k, v in points.items()}  # the returned points that are roots
    dims = {k: unstable_dims(raw, v) for k, v in fixed.items()}
    analysis = np.load(run_dir / "analysis.npz")["fp_points"]
    union = np.concatenate([fixed["ours"], fixed["FPF"][nearest(fixed["FPF"], fixed["ours"])[0] >= MATCH_TOL]])

    rows: list[tuple[str, str, str]] = []

    def row(name, a="", b=""):
        rows.append((name, str(a), str(b)))

    def both(name, fn):
        row(name, fn("ours"), fn("FPF"))

    both("unique fixed points, as each tool returns them", lambda k: len(points[k]))
    row("  stable, by the tool's own eigenvalues", int(np.sum(mine.is_stable)), int(np.sum(fpf["is_stable"])))
    for bound in sorted({tol, 1e-6, 1e-3}):
        both(f"  with ‖f(h) - h‖ < {bound:.0e} (common f)", lambda k: int(np.sum(res[k] < bound)))
    both(f"roots (‖f(h) - h‖ < {tol:.0e}), by unstable dims 0/1/2/3",
         lambda k: "/".join(str(int(np.sum(dims[k] == d))) for d in range(4))
         + (f" (+{int(np.sum(dims[k] > 3))} more)" if np.any(dims[k] > 3) else ""))
    matches = {key: nearest(fixed[key], fixed[other]) for key, other in (("ours", "FPF"), ("FPF", "ours"))}
    both(f"  matched by a root of the other (< {MATCH_TOL:g})",
         lambda k: f"{int(np.sum(matches[k][0] < MATCH_TOL))} of {len(fixed[k])}")
    d, m = matches["ours"]
    if np.any(d < MATCH_TOL):
        row("  farthest matched pair: Euclidean / max-abs", f"{d[d < MATCH_TOL].max():.0e} / "
            f"{m[d < MATCH_TOL].max():.0e}")
    row(f"  union of both sets of roots (< {MATCH_TOL:g})", len(union))
    both(f"  of the {len(analysis)} the training run's analysis found", lambda k: int(np.sum(
        nearest(analysis, fixed[k])[0] < MATCH_TOL)))
    both("‖f(h) - h‖ of the returned points: median / max",
         lambda k: f"{np.median(res[k]):.1e} / {np.max(res[k]):.1e}" if len(res[k]) else "-")
    all_res = residuals(raw, fpf["all_points"])
    row(f"starts ending at a root (‖r‖ < {tol:.0e})¹",
        f"{mine.n_converged} of {mine.n_starts}", f"{int(np.sum(all_res < tol))} of {len(all_res)}")
    row("starts ending with own q < 1e-12 (FPF's tol_q)", int(np.sum(mine.start_q < 1e-12)),
        int(np.sum(fpf["all_q"] < 1e-12)))
    lost = mine.start_outcome != 0
    row("iterations", f"{np.mean(mine.start_n_iter):.1f} mean, {int(np.max(mine.start_n_iter))} max per start",
        f"{int(fpf['n_iters'])} (joint, all starts)")
    row(f"  ours: share spent on the {int(lost.sum())} starts not at a root",
        f"{np.sum(mine.start_n_iter[lost]) / max(1, np.sum(mine.start_n_iter)):.0%}")
    t = {k: statistics.median(v) for k, v in times.items()}
    both(f"wall time, median of {args.repeats}", lambda k: f"{t[k]:.3f} s" if k == "ours" else f"{t[k]:.2f} s")
    opt, jac = (statistics.median(float(r[key]) for r in fpf_runs) for key in ("optimize_s", "jacobians_s"))
    row("  FPF: joint optimisation / Jacobians", "", f"{opt:.2f} s / {jac:.2f} s")
    row("first call (ours: compiles)", f"{first_call:.2f} s ({compile_s:.2f} s XLA compile)", "")

    width = max(len(r[0]) for r in rows) + 2
    col = max(len(r[1]) for r in rows) + 3
    print(f"\n{'':<{width}}{'ours (LM, JAX)':<{col}}FPF (Adam, PyTorch {fpf['torch_version']})")
    for name, a, b in rows:
        print(f"{name:<{width}}{a:<{col}}{b}")
    print("¹ ours: its own residual where each start stopped (the GRU's n(h) - h, whose norm bounds ‖f(h) - h‖); "
          "FPF: the common f at its final points")
    print(f"\n-> FPF / ours wall time: {t['FPF'] / t['ours']:.0f}x   [load average {load()}]")
    counts = sorted({len(r["points"]) for r in fpf_runs})
    if len(counts) > 1:
        print(f"   (FPF's unique count differed between repeats: {counts})")


if __name__ == "__main__":
    main()
