"""What pruning costs a training step: jitted Adam chunks of the CTRNN on the sine task with each pruner,
timed interleaved with the same chunks without one, so machine noise hits all alike.

    python benchmarks/bench_pruning.py [--quick]

A pruner that acts inside the chunks (magnitude, gradual: `lax.cond` on the schedule's step, an argsort of
J at each prune) and a lottery run's trainings (the same chunks; its rounds begin between them) against
pruner=none (no conditional in the program at all). Prints each one's chunk time over none's: only the
ratios are meaningful on a shared machine. The timed chunk is the first (steps 0-49), so magnitude's one
prune (step 0) and gradual's first (a prune every 50 steps) fall in it: each timed chunk holds one prune (an
argsort of J's 10 000 entries) and 49 steps through the conditional. lottery (rewind to θ0) has no
conditional: its chunks are none's program, a control of the timing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
from hydra import compose, initialize_config_module

import rnn_sparsity.config  # noqa: F401
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.fit import Program

SIZE = ["model.n_units=100", "task.n_freqs=11", "model.dt=0.1", "precision=float32", "optimizer.steps=2000",
        "optimizer.lbfgs_steps=0", "analysis.eig_every=50", "regularizer=none"]
PRUNERS = {
    "none": ["pruner=none"],
    "magnitude (one prune, at step 0)": ["pruner=magnitude", "pruner.step=0", "pruner.sparsity=0.9"],
    "gradual (a prune every 50 steps)": ["pruner=gradual", "pruner.start=0", "pruner.every=50", "pruner.prunes=30",
                                         "pruner.sparsity=0.9"],
    "lottery (a round's chunks: none's program)": ["pruner=lottery", "pruner.rounds=2", "pruner.sparsity=0.9"],
}


def chunk_timer(overrides: list[str]):
    """A function running one 50-step Adam chunk of this configuration from a fixed state (returns it)."""
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SIZE, *overrides])
    _, trainer, hyper = make_run(cfg)
    program = Program(trainer)
    state = program.begin(0, program.init(jax.random.key(0), hyper), hyper)
    jax.block_until_ready(program.chunk(0, 50, state, hyper, 0))  # compile

    def run():
        return program.chunk(0, 50, state, hyper, 0)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    set_precision("float32")
    timers = {name: chunk_timer(overrides) for name, overrides in PRUNERS.items()}
    repeats = 5 if args.quick else 15
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):  # interleaved: a noisy moment hits every pruner alike
        for name, fn in timers.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    base = min(times["none"])
    print(f"{'pruner':44s} {'chunk / none (min)':>19s} {'(median)':>9s}")
    for name, values in times.items():
        print(f"{name:44s} {min(values) / base:19.3f} {statistics.median(values) / statistics.median(times['none']):9.3f}")
    print(f"({repeats} interleaved repeats of a 50-step Adam chunk; N=100, 11 tasks, dt 0.1, float32; "
          f"none's best chunk {base * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
