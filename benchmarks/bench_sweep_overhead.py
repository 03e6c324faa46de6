"""What a sweep costs beyond its training: the time to its first job, and the overhead per job.

    python benchmarks/bench_sweep_overhead.py [--n 200] [--launcher basic]

Runs one sweep of N tiny runs (a 16-unit CTRNN on the sine task, 30 Adam steps, no figures; one
seed per job) with the real CLI in a subprocess into a temporary directory, then the same command
again (every run finished: all skipped), and prints, with the machine's load average:

  first job started   seconds from the command's start to the first job's start (its .hydra/config.yaml,
                      which Hydra writes just before the job runs), and to its sweep's start (multirun.yaml:
                      Python, Hydra and the plugins starting up)
  total, training     the sweep's wall time; the sum of its runs' wall_s (build, compile, train, evaluate, write)
  overhead per job    (total - training) / N: process start, composing, validating, launching and writing
                      each job's records, and the ratio overhead / training
  rerun per job       the second command's wall time / N, and without its process start

To measure another checkout's sweeper, run it with that checkout first on the path
(`PYTHONPATH=<checkout> python benchmarks/bench_sweep_overhead.py`). Not a test: numbers depend on the
machine and its load.
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

TINY = ["model.n_units=16", "model.dt=0.2", "task.n_freqs=3", "task.drive_time=4", "task.train_time=24",
        "optimizer=adam", "optimizer.steps=30", "optimizer.lr=1e-2", "analysis.eig_every=10",
        "analysis.figures=false", "progress=false"]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def sweep(sweep_dir: Path, n: int, launcher: str) -> tuple[float, float]:
    """Run the sweep (raises if it fails); its (start as time.time(), wall seconds)."""
    command = [sys.executable, "-m", "rnn_sparsity", "-m", *TINY, f"seed=range(0,{n})", f"hydra/launcher={launcher}",
               f"hydra.sweep.dir={sweep_dir}"]
    start, tic = time.time(), time.perf_counter()
    proc = subprocess.run(command, cwd=sweep_dir.parent, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return start, wall


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def training_seconds(sweep_dir: Path, batched: bool) -> float:
    """The sum of the runs' wall_s (metrics.json); for a vmap launcher, whose members share their batch's
    wall time (one program: the tiny runs of one sweep are one batch), the longest."""
    seconds = [json.loads((run / "metrics.json").read_text())["wall_s"] for run in run_dirs(sweep_dir)]
    return max(seconds) if batched else sum(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="jobs in the sweep (default 200)")
    parser.add_argument("--launcher", default="basic", help="hydra/launcher (default basic)")
    args = parser.parse_args()
    print(f"{args.n} tiny runs, hydra/launcher={args.launcher}; load average before: {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        sweep_dir = Path(tmp) / "sweep"
        start, total = sweep(sweep_dir, args.n, args.launcher)
        runs = run_dirs(sweep_dir)
        if len(runs) != args.n:
            sys.exit(f"{len(runs)} run directories, expected {args.n}")
        sweep_started = (sweep_dir / "multirun.yaml").stat().st_mtime - start
        first_job = (runs[0] / ".hydra" / "config.yaml").stat().st_mtime - start
        batched = args.launcher.startswith("vmap")
        training = training_seconds(sweep_dir, batched)
        overhead = (total - training) / args.n
        rerun_start, rerun = sweep(sweep_dir, args.n, args.launcher)
        rerun_scan = rerun - ((sweep_dir / "multirun.yaml").stat().st_mtime - rerun_start)
    print(f"first job {'composed' if batched else 'started ':<11}{first_job:8.2f} s after the command "
          f"({sweep_started:.2f} s: the sweep's start)" + ("; a vmap launcher composes every job, then trains"
                                                          if batched else ""))
    print(f"total                {total:8.2f} s")
    print(f"training             {training:8.2f} s   "
          f"({'the batch' + chr(39) + 's wall_s: its members share it' if batched else 'sum of the runs' + chr(39) + ' wall_s'})")
    print(f"overhead per job     {overhead:8.3f} s   overhead / training {(total - training) / training:.2f}")
    print(f"rerun (all skipped)  {rerun:8.2f} s   {rerun / args.n:.3f} s per job, "
          f"{rerun_scan / args.n:.3f} s per job after the sweep's start")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
