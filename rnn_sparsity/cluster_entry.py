"""The process a cluster job runs: `python -u -m rnn_sparsity.cluster_entry -u -m submitit.core._submit
FOLDER` (cluster.run_on_cluster sets it as submitit's `python`), submitit's own entry point with the
requeue signal caught from this module's first line.

SLURM may send the requeue signal up to 60 s before the time it was asked for (sbatch --signal: "due
to the resolution of event handling"), so with a short time limit it can come while the job's process
is still starting: Python, numpy, then submitit unpickling the job (Hydra's state, the configs) before
it installs its handler. A SIGUSR2 then would take its default action and kill the process, and the job
would fail instead of being requeued (seen once with a 1-minute limit: dead 17 s after submission).
Here a requeue signal that comes before submitit's handler is recorded in `EARLY`;
checkpoints.held_requeue_signal, when the fit starts under submitit's handler, holds it like one that
came during training: the fit checkpoints at its first chunk boundary and hands it over, and the
requeued job resumes from there. A job that has no fit to run (all its runs done) just finishes.

Imports nothing of the package, and nothing heavy, before the handler is in place.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

EARLY: list[int] = []  # requeue signals that came before the job's own handler was installed


def requeue_signal() -> int:
    """The signal submitit's jobs requeue on: SIGUSR2, or what its SUBMITIT_PREEMPT_SIGNAL env var names."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def main(argv: list[str] | None = None) -> None:
    """Catch the requeue signal, then run the Python command line `argv` names (`[-u] -m module args`),
    as `python` itself would."""
    signal.signal(requeue_signal(), lambda number, frame: EARLY.append(number))
    args = list(sys.argv[1:] if argv is None else argv)
    while args and args[0] == "-u":  # this process already runs unbuffered (submitit starts it with -u)
        args.pop(0)
    if len(args) < 2 or args[0] != "-m":
        raise SystemExit(f"usage: python -u -m rnn_sparsity.cluster_entry [-u] -m MODULE [ARGS...] (got {args})")
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    from rnn_sparsity.cluster_entry import main as entry  # the module's own EARLY, not __main__'s copy

    entry()
