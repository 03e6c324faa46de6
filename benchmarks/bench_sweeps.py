"""Whole-process wall times of sweeps, side by side in one run, and their ratios.

    python benchmarks/bench_sweeps.py [--quick] [--only iris,rebound,demo,sine,compile]

Each case runs two commands as separate processes, one after the other, on the same machine and in
the same run (only the ratio is meaningful on a shared machine; the load average is printed with it):

  iris      sweeps=iris_l1 seed=0 (10 λ) with hydra/launcher=vmap  vs  the tutorial's PyTorch script
            (../shared/peers/iris_l1_torch.py: same λ grid, 1000 epochs, batch 16), in its own venv
            (.venv-peers, created with torch 2.13.0 CPU and scikit-learn when missing)
  rebound   sweeps=l2_rebound_c, 10 of its 20 runs per σ (250 runs; --quick: 3 σ x 10)   vmap  vs  the basic launcher
  demo      sweeps=demo (16 runs)                                      vmap  vs  the basic launcher
  sine      sweeps=sine_small (3 seeds; --quick: 300 Adam + 300 L-BFGS steps)   vmap vs basic
  compile   the demo's sweep with the vmap launcher twice, each in a new process, against an empty
            compilation cache: the XLA compile time of the first process and of the second (which
            should load every program from the persistent cache)

Every rnn-sparsity process reports the seconds it spent in XLA compilation (or loading a compiled
program from the persistent cache: JAX's backend-compile event), so the table shows what compilation
cost in each process. The persistent cache is the user's own (warm after a first benchmark run), except
in the compile case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _peers import PEERS, ROOT, peer_python  # beside this script

MARK = "BENCH_COMPILE_S="

CHILD = f"""
import atexit, json, sys
import jax
from jax._src import dispatch, monitoring
spent = {{"compile": 0.0, "trace": 0.0}}
def listen(event, duration, **kwargs):
    if event == dispatch.BACKEND_COMPILE_EVENT:
        spent["compile"] += duration
    elif event in (dispatch.JAXPR_TRACE_EVENT, dispatch.JAXPR_TO_MLIR_MODULE_EVENT):
        spent["trace"] += duration
monitoring.register_event_duration_secs_listener(listen)
atexit.register(lambda: print("{MARK}" + json.dumps(spent), file=sys.stderr))
sys.argv = ["rnn-sparsity", *sys.argv[1:]]
from rnn_sparsity.cli import main
main()
"""


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(command: list[str], env: dict | None = None) -> dict:
    """Wall seconds of one process (and its compile seconds when it reports them); raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    out = {"wall": wall, "stdout": proc.stdout}
    for line in proc.stderr.splitlines():
        if line.startswith(MARK):
            out.update(json.loads(line[len(MARK):]))
    return out


def ours(overrides: list[str], launcher: str, sweep_dir: Path, env: dict | None = None) -> dict:
    return timed([sys.executable, "-c", CHILD, "-m", *overrides, f"hydra/launcher={launcher}",
                  f"hydra.sweep.dir={sweep_dir}"], env)


def describe(result: dict) -> str:
    text = f"{result['wall']:8.1f} s"
    if "compile" in result:
        text += f"   (XLA compile/load {result['compile']:.1f} s, trace+lower {result['trace']:.1f} s)"
    return text


def compare(name: str, first: tuple[str, dict], second: tuple[str, dict]) -> None:
    (a_name, a), (b_name, b) = first, second
    print(f"\n{name}   [load average {load()}]")
    print(f"  {a_name:<34}{describe(a)}")
    print(f"  {b_name:<34}{describe(b)}")
    print(f"  -> {a_name} is {b['wall'] / a['wall']:.2f}x faster than {b_name.strip()}", flush=True)


def case_iris(work: Path) -> None:
    script = PEERS / "iris_l1_torch.py"
    if not script.exists():
        print(f"\niris: skipped ({script} not found; set RNN_SPARSITY_PEERS)")
        return
    python = peer_python()
    vmap = ours(["sweeps=iris_l1", "seed=0"], "vmap", work / "iris")
    torch = timed([str(python), str(script), "1000", "10"], {"OMP_NUM_THREADS": str(os.cpu_count())})
    result = json.loads(torch["stdout"].strip().splitlines()[-1])
    compare("iris_l1, seed 0, 10 λ, 1000 epochs of batch 16", ("rnn-sparsity (vmap launcher)", vmap),
            ("PyTorch tutorial script", torch))
    print(f"  (the PyTorch script's own timer: {result['wall_s']:.1f} s of training)")


def case_launchers(name: str, overrides: list[str], work: Path, tag: str) -> None:
    vmap = ours(overrides, "vmap", work / f"{tag}-vmap")
    basic = ours(overrides, "basic", work / f"{tag}-basic")
    compare(name, ("hydra/launcher=vmap", vmap), ("hydra/launcher=basic", basic))


def case_compile(work: Path) -> None:
    cache = work / "empty-cache"
    env = {"RNN_SPARSITY_CACHE_DIR": str(cache)}
    first = ours(["sweeps=demo"], "vmap", work / "compile-1", env)
    second = ours(["sweeps=demo"], "vmap", work / "compile-2", env)
    print(f"\ncompile: the demo sweep (vmap launcher) twice against a new cache   [load average {load()}]")
    print(f"  first process (empty cache)       {describe(first)}")
    print(f"  second process (same cache)       {describe(second)}")
    print(f"  -> the second process spends {second['compile'] / first['compile']:.1%} of the first one's XLA "
          f"compile time", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller rebound and sine sweeps")
    parser.add_argument("--only", default="iris,rebound,demo,sine,compile", help="comma-separated cases")
    args = parser.parse_args()
    cases = set(args.only.split(","))
    print(f"{os.cpu_count()} CPUs; load average {load()}; python {sys.executable}")
    rebound = ["sweeps=l2_rebound_c", "task.data_seed=range(10)"] + \
        (["task.noise_std=1e-05,0.00308,0.991153"] if args.quick else [])
    sine = ["sweeps=sine_small"] + (["optimizer.steps=300", "optimizer.lbfgs_steps=300"] if args.quick else [])
    with tempfile.TemporaryDirectory(prefix="bench-sweeps-") as tmp:
        work = Path(tmp)
        if "iris" in cases:
            case_iris(work)
        if "demo" in cases:
            case_launchers("demo (16 runs)", ["sweeps=demo"], work, "demo")
        if "rebound" in cases:
            case_launchers(f"l2_rebound_c ({'30' if args.quick else '250'} runs)", rebound, work, "rebound")
        if "sine" in cases:
            case_launchers("sine_small (3 seeds)", sine, work, "sine")
        if "compile" in cases:
            case_compile(work)


if __name__ == "__main__":
    main()
