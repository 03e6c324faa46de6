"""Training-step throughput of the CTRNN on the sine task, as a fraction of this machine's matmul rate.

    python benchmarks/bench_train_step.py [--quick]

For each configuration (the small learning config and the full seed spec) it times jitted Adam chunks,
of one run and of 5 runs (λ ∈ {0, 1e-5, 1e-4, 1e-3, 1e-2}) as one vmapped program (fit.Program,
what hydra/launcher=vmap runs), and counts FLOPs as 6·B·N²·T per step and run (forward J·tanh(x): 2BN² per time step; backward: two more
matmuls of the same size), then prints achieved GFLOP/s beside two references measured in the same
run, interleaved with the steps so machine noise hits both alike:
  - a large square matmul (n=1024) in the same dtype: the machine's matmul rate;
  - a jitted scan of (B×N)·(N×N) matmuls in the same dtype: the best a recurrence of this shape can do
    (the forward and the adjoint pass are such loops; the gradient of J is one large matmul).
Only the ratios are meaningful; absolute times on a shared machine are not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from hydra import compose, initialize_config_module

import rnn_sparsity.config  # noqa: F401
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.fit import Program

LAMBDAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)  # the members of the batched program

CONFIGS = {
    "small (N=100, 11 tasks, dt 0.1, float32)": ["model.n_units=100", "task.n_freqs=11", "model.dt=0.1",
                                                 "precision=float32"],
    "full seed spec (N=200, 51 tasks, dt 0.02, float64)": ["model.n_units=200", "task.n_freqs=51",
                                                           "model.dt=0.02", "precision=float64"],
}


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(m: int, k: int, n: int, dtype, repeats: int = 20) -> float:
    a = jax.random.normal(jax.random.key(0), (m, k), dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), dtype)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, b))
    return 2 * m * k * n / best_time(lambda: f(a, b), repeats) / 1e9


def looped_matmul_gflops(b: int, n: int, dtype, steps: int = 400, repeats: int = 5) -> float:
    """x <- x·Q for `steps` steps in one jitted scan (Q orthogonal, so norms stay put): the rate of
    the per-time-step matmul shape without per-call dispatch overhead."""
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (n, n), dtype))[0]
    x = jax.random.normal(jax.random.key(1), (b, n), dtype)
    f = jax.jit(lambda x: jax.lax.scan(lambda c, _: (c @ q, None), x, None, length=steps)[0])
    jax.block_until_ready(f(x))
    return 2 * b * n * n * steps / best_time(lambda: f(x), repeats) / 1e9


def chunks(overrides: list[str], chunk: int):
    """(cfg, trainer, one-run chunk, 5-run batched chunk): each a thunk that runs `chunk` Adam steps."""
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        cfgs = [compose(config_name="config", overrides=[*overrides, "optimizer=adam", "progress=false",
                                                         f"regularizer.strength={lam}"]) for lam in LAMBDAS]
    set_precision(cfgs[0].precision)
    runs = [make_run(cfg) for cfg in cfgs]
    trainer, hypers = runs[0][1], [hyper for _, _, hyper in runs]
    single, batched = Program(trainer), Program(trainer, [trainer] * len(hypers))
    state = single.begin(0, single.init(jax.random.key(0), hypers[0]), hypers[0])
    hyper = batched.stack(hypers)
    states = batched.begin(0, batched.init(batched.stack([jax.random.key(i) for i in range(len(hypers))]), hyper), hyper)

    def one(s, h):
        return single.chunk(0, chunk, s, h, 0)

    def many(s, h):
        return batched.chunk(0, chunk, s, h, 0)

    jax.block_until_ready((one(state, hypers[0]), many(states, hyper)))  # compile both
    return cfgs[0], trainer, (lambda: one(state, hypers[0])[1]["loss"]), (lambda: many(states, hyper)[1]["loss"])


def bench(name: str, overrides: list[str], chunk: int, rounds: int) -> None:
    cfg, trainer, one, many = chunks(overrides, chunk)
    dtype = trainer.dtype
    n, b, t = cfg.model.n_units, trainer.task.inputs.shape[1], trainer.task.inputs.shape[0]
    flops = 6 * b * n * n * t
    one_rates, many_rates, peak_rates, shape_rates = [], [], [], []
    for _ in range(rounds):  # interleaved so noise affects all alike
        one_rates.append(flops * chunk / best_time(one, 2) / 1e9)
        many_rates.append(len(LAMBDAS) * flops * chunk / best_time(many, 2) / 1e9)
        peak_rates.append(matmul_gflops(1024, 1024, 1024, dtype, repeats=5))
        shape_rates.append(looped_matmul_gflops(b, n, dtype))
    step, batch, peak, shape = (statistics.median(r) for r in (one_rates, many_rates, peak_rates, shape_rates))
    print(f"\n{name}")
    print(f"  steps: {flops / 1e9:.3f} GFLOP per training step and run (T={t}, B={b}, N={n}); "
          f"{flops / step / 1e9 * 1e3:.1f} ms per step of one run, "
          f"{len(LAMBDAS) * flops / batch / 1e9 * 1e3:.1f} ms per step of {len(LAMBDAS)} runs as one program")
    print(f"  matmul 1024^3            {peak:8.2f} GFLOP/s")
    print(f"  scan of {b}x{n}x{n} matmuls {shape:8.2f} GFLOP/s")
    print(f"  training step, 1 run     {step:8.2f} GFLOP/s  = {step / peak:6.1%} of the matmul, "
          f"{step / shape:6.1%} of the scan")
    print(f"  training step, {len(LAMBDAS)} λ runs {batch:8.2f} GFLOP/s  = {batch / peak:6.1%} of the matmul, "
          f"{batch / shape:6.1%} of the scan ({batch / step:.2f}x one run's rate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a rough figure in ~1 minute)")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}: {jax.devices()}")
    rounds = 2 if args.quick else 3
    for (name, overrides), chunk in zip(CONFIGS.items(), (20, 2 if args.quick else 4)):
        bench(name, overrides, chunk, rounds)


if __name__ == "__main__":
    main()
