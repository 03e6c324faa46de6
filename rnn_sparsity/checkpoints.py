"""Checkpoints inside a run: a killed run resumes where it was, and ends as if it had never stopped.

Every `checkpoint.every_s` seconds of training (0: never), right after a chunk (its projection done and
its probes sampled), a fit writes <run dir>/checkpoint/<stage><chunks done>/ with orbax-checkpoint. It holds
the TrainState as arrays (parameters, the current stage's optimizer state, step, best parameters and
loss, the minibatch data key, early-stopping counters: everything the jitted chunks carry) and the host
side of the fit as one pickled blob: the position (stage, chunks of that stage done), the history rows
so far and each probe's samples (`Probe.checkpointed` names them; a fixed-point tracker's NumPy
generator state included). Orbax writes under a temporary name and renames when complete, so a kill
mid-write leaves the previous checkpoint as the newest complete one; older ones are removed after.

A rerun of the same config in the same run directory (the resume sweeper, or `rnn-sparsity` pointed at
it) loads the newest one whose TrainState matches the run's shapes and continues with the same chunks
from the same state, so its metrics (but wall_s), history and params equal an uninterrupted run's.
artifacts.begin_run removes the checkpoint of another config, artifacts.mark_done that of a finished run.
A vmapped group (batch.fit_batch) saves every member at the same moment, from one transfer of the
batched state, each into its own run directory, and resumes only when every member has a checkpoint
at the same position; a checkpoint is thus the same for a serial run and a member, whichever launcher
resumes it. orbax is imported only when a checkpoint is written or read: short runs never pay for it.

On a cluster the scheduler warns a job before it ends it: submitit (hydra/launcher=submitit_slurm or
vmap_slurm) asks SLURM for SIGUSR2 `signal_delay_s` before the time limit and on preemption, and its
handler requeues the job and exits at once. While a fit trains, `held_requeue_signal` keeps that signal
until the next chunk boundary: the fit writes a checkpoint there (due() is true once it is held), then
`hand_over` passes the signal to submitit's handler, so the requeued job resumes from where it stopped,
not from the last periodic checkpoint. Outside a fit, and in processes without such a handler, nothing
changes.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import artifacts
from .contracts import Probe

log = logging.getLogger(__name__)


class Resume(NamedTuple):
    """Where a fit resumes: stage `stage` with `chunks` of its chunks done, the state after them, the
    history rows (records_to_rows) so far and each probe's samples (`restore_probes` puts them back)."""
    stage: int
    chunks: int
    state: Any
    rows: list[dict]
    probes: list[dict]

    def restore_probes(self, probes: Sequence[Probe]) -> None:
        if len(probes) != len(self.probes):
            raise ValueError(f"the checkpoint has {len(self.probes)} probes' samples, the run {len(probes)} probes")
        for probe, saved in zip(probes, self.probes):
            for name in probe.checkpointed:
                setattr(probe, name, saved[name])


def is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def state_template(trainer, key: jax.Array, hyper: dict, stage: int):
    """Shapes and dtypes (jax.ShapeDtypeStruct) of a TrainState in stage `stage`: what a restored one
    must match (the optimizer state's structure depends on the stage)."""
    return jax.eval_shape(lambda k, h: trainer.begin_stage(stage, trainer.init(k, h), h), key, hyper)


class Checkpoints:
    """The checkpoints of one run directory: `due()` every `every_s` seconds, `save` after a chunk,
    `load` before the first."""

    def __init__(self, run_dir: str | Path, every_s: float, clock=time.monotonic):
        self.run_dir, self.every_s, self.clock = Path(run_dir), float(every_s), clock
        self.folder = self.run_dir / artifacts.CHECKPOINT
        self.last = clock()

    def due(self) -> bool:
        """Time for a checkpoint: every `every_s` seconds, and at once when a requeue signal is held."""
        return self.every_s > 0 and (bool(HELD) or self.clock() - self.last >= self.every_s)

    def save(self, stage: int, chunks: int, state, rows: Sequence[dict], probes: Sequence[Probe],
             prune: bool = True) -> Path:
        """Write the state (host arrays, one run's) after `chunks` chunks of stage `stage`; with `prune`
        then remove the older checkpoints (and temporary folders of killed writes)."""
        ocp = orbax()
        leaves = [np.asarray(jax.random.key_data(leaf) if is_key(leaf) else leaf) for leaf in jax.tree.leaves(state)]
        host = {"stage": stage, "chunks": chunks, "rows": list(rows), "probes": [probe_state(p) for p in probes],
                "small": {i: leaf for i, leaf in enumerate(leaves) if leaf.size == 0}}  # orbax refuses empty arrays
        tree = {"leaves": {f"{i:05d}": leaf for i, leaf in enumerate(leaves) if leaf.size},
                "host": np.frombuffer(pickle.dumps(host, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)}
        path = self.folder / f"{stage:03d}{chunks:07d}"  # names sort as the fit progresses
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)  # one of an attempt that did not resume from it
        ocp.PyTreeCheckpointer().save(path.resolve(), tree)
        if prune:
            self.prune(path)
        self.last = self.clock()
        return path

    def prune(self, keep: Path) -> None:
        """Remove every checkpoint but `keep`, and temporary folders of killed writes."""
        for old in self.folder.iterdir():
            if old != keep:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)

    def discard(self) -> None:
        artifacts.remove_checkpoint(self.run_dir)

    def load(self, template: Callable[[int], Any], name: str | None = None) -> Resume | None:
        """The newest checkpoint (or the one called `name`) as a Resume, or None when there is none or it
        does not fit this run (then every checkpoint is removed, and the run starts from the beginning).
        `template(stage)`: the run's TrainState shapes in that stage (`state_template`)."""
        path = artifacts.latest_checkpoint(self.run_dir) if name is None else self.folder / name
        if path is None:
            return None
        ocp = orbax()
        try:
            tree = ocp.PyTreeCheckpointer().restore(path.resolve())
            host = pickle.loads(np.asarray(tree["host"]).tobytes())
            state = restore_state(template(host["stage"]), tree["leaves"], host["small"])
            resume = Resume(host["stage"], host["chunks"], state, host["rows"], host["probes"])
        except Exception as err:  # noqa: BLE001 (a checkpoint that does not fit is not this run's: start over)
            log.warning("checkpoint %s does not fit this run (%s: %s); it starts from the beginning", path,
                        type(err).__name__, err)
            self.discard()
            return None
        log.info("resuming from checkpoint %s: step %d (stage %d, %d chunks done)", path, int(state.step),
                 host["stage"], host["chunks"])
        return resume


def orbax():
    """orbax.checkpoint, with its INFO lines (a dozen per save, through absl) kept out of the run's log."""
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)
    return ocp


HELD: list[tuple[Callable, int, Any]] = []  # a requeue signal that came during a fit: (handler, signum, frame)


def requeue_signal() -> int:
    """The signal submitit's jobs requeue on: SIGUSR2, or what its SUBMITIT_PREEMPT_SIGNAL env var names."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


@contextmanager
def held_requeue_signal():
    """While a fit trains: hold the requeue signal (when its handler is a Python one: submitit's) until
    `hand_over`, which the fit calls at its chunk boundaries after writing the checkpoint the held signal
    made due. A signal still held when the fit ends is handed over then."""
    signum = requeue_signal()
    handler = signal.getsignal(signum)
    if not callable(handler) or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signum, lambda number, frame: HELD.append((handler, number, frame)))
    try:
        yield
    finally:
        signal.signal(signum, handler)
        hand_over()


def hand_over() -> None:
    """Pass a held requeue signal to its handler (submitit's requeues the job and raises SystemExit)."""
    if HELD:
        handler, signum, frame = HELD.pop()
        HELD.clear()
        signal.signal(signum, handler)
        log.warning("requeue signal %s: handing over to the cluster's handler (the run resumes from its "
                    "checkpoint)", signal.Signals(signum).name)
        handler(signum, frame)


def restore_state(template, stored: dict, small: dict):
    """The TrainState of `template`'s structure from stored leaves (keys rewrapped); a ValueError when
    a leaf is missing or its shape or dtype differs."""
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, spec in enumerate(leaves):
        value = small.get(i, stored.get(f"{i:05d}"))
        if value is None:
            raise ValueError(f"leaf {i} missing")
        value = np.asarray(value)
        if is_key(spec):
            restored = jax.random.wrap_key_data(jnp.asarray(value))
        else:
            restored = jnp.asarray(value)
        if restored.shape != spec.shape or restored.dtype != spec.dtype:
            raise ValueError(f"leaf {i}: stored {restored.shape} {restored.dtype}, the run has {spec.shape} {spec.dtype}")
        out.append(restored)
    if len(stored) + len(small) != len(leaves):
        raise ValueError(f"{len(stored) + len(small)} leaves stored, the run's state has {len(leaves)}")
    return jax.tree.unflatten(treedef, out)


def probe_state(probe: Probe) -> dict[str, Any]:
    return {name: getattr(probe, name) for name in probe.checkpointed}
