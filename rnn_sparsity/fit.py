"""The host loop: one `fit` for one run or a vmapped batch of runs of one static configuration.

A `Program` holds a Trainer's compiled pieces for n members. One member is the plain program
(`jit(run_chunk)`: a single run's float32 numbers are those it always had); n > 1 is `jit(vmap(...))` over
the members' traced values and keys, sharded over the visible devices. Host code sees members through
`Program.split` (one transfer, then NumPy slices) and `Program.join`, so `fit` is written once for both:

    state <- init (or a checkpoint every member has)            probes sample each member's parameters
    for each stage left: begin it; for each chunk while a member runs:
        chunk (lax.scan of k steps)  -> the task's projection of each running member's parameters
        -> history rows per member   -> progress -> probes sample -> checkpoint when due -> requeue hand-over
    every probe's finish(best effective parameters)

Members are independent, as in `Trainer`: a member that diverges is frozen and recorded while the
others go on; stage thresholds, early stopping and best parameters are per member. A stage's chunks run
while any member runs; a member that does not run leaves no record (`records_to_rows` drops its masked
steps), so its history is what a run of it alone writes. A member that stopped is not sampled again
(probes skip a step they have seen).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from . import artifacts
from .checkpoints import Checkpoints, Resume, hand_over, held_requeue_signal, state_template
from .contracts import Probe
from .train import RECORD_FIELDS, Trainer, TrainState, masked, records_to_rows, steps_in

log = logging.getLogger(__name__)


def stack(trees: Sequence):
    """One pytree whose leaves stack the trees' leaves along a new first axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member_sharding(n_members: int):
    """(sharding, padded size): members split over the visible devices along one mesh axis, padded to a
    multiple of the device count; (None, n_members) on one device."""
    devices = jax.devices()
    if len(devices) < 2 or n_members < 2:
        return None, n_members
    mesh = Mesh(np.array(devices), ("members",))
    return NamedSharding(mesh, PartitionSpec("members")), -(-n_members // len(devices)) * len(devices)


class Program:
    """The compiled pieces (init, begin_stage, run_chunk) of one static configuration for n members.

    `views[i]` is member i's Trainer (the shared one `for_run` its own task: what its host-side code, the
    task's projection, reads). n == 1: the Trainer's own jitted functions on unbatched values. n > 1: their
    vmap, compiled once per trainer and size, over members padded with copies of the last to a multiple of
    the device count (the padding's results are never read)."""

    def __init__(self, trainer: Trainer, views: Sequence[Trainer] | None = None):
        self.trainer = trainer
        self.views = list(views) if views is not None else [trainer]
        self.n = len(self.views)
        self.sharding, self.size = member_sharding(self.n) if self.n > 1 else (None, 1)

    @property
    def batched(self) -> bool:
        return self.n > 1

    def stack(self, values: Sequence):
        """Per-member values (keys, hyper dicts, states) as the program takes them."""
        if not self.batched:
            return values[0]
        padded = list(values) + [values[-1]] * (self.size - self.n)
        tree = stack(padded)
        return tree if self.sharding is None else jax.device_put(tree, self.sharding)

    def split(self, tree) -> list:
        """Each member's part of a program value, on the host (one transfer)."""
        host = jax.device_get(tree)
        if not self.batched:
            return [host]
        return [jax.tree.map(lambda a, i=i: a[i], host) for i in range(self.n)]

    def _compiled(self, name: tuple, make: Callable):
        return self.trainer.compiled(("vmap", *name) if self.batched else name, make)

    def is_compiled(self, name: tuple) -> bool:
        return self.trainer.is_compiled(("vmap", *name) if self.batched else name)

    def init(self, keys, hyper) -> TrainState:
        fn = self._compiled(("init",), lambda: jax.jit(jax.vmap(self.trainer.init) if self.batched else self.trainer.init))
        return fn(keys, hyper)

    def begin(self, index: int, state: TrainState, hyper) -> TrainState:
        def make():
            begin = functools.partial(self.trainer.begin_stage, index)
            return jax.jit(jax.vmap(begin) if self.batched else begin)

        return self._compiled(("begin", index), make)(state, hyper)

    def chunk(self, index: int, n_steps: int, state: TrainState, hyper, start: int):
        """n_steps of stage `index` from the schedule's step `start` (every member's: unbatched)."""
        def make():
            run = functools.partial(self.trainer.run_chunk, index, n_steps)
            return jax.jit(jax.vmap(run, in_axes=(0, 0, None)) if self.batched else run)

        return self._compiled(("chunk", index, n_steps), make)(state, hyper, jnp.asarray(start, jnp.int32))

    def running(self, state: TrainState) -> np.ndarray:
        """Which members still run (bool per member)."""
        return np.atleast_1d(np.asarray(state.running))[:self.n]

    def diverged(self, state: TrainState) -> np.ndarray:
        return np.atleast_1d(np.asarray(state.diverged))[:self.n]

    def chunks(self, state: TrainState, hyper, resume: Resume | None = None, skip_idle: bool = False,
               between: Callable[[TrainState], TrainState] | None = None,
               on_compile: Callable[[str, int], None] | None = None,
               ) -> Iterator[tuple[int, int, TrainState, dict]]:
        """Yield (stage index, chunk position, state, records) after each chunk of every stage left to run
        from `state` (the schedule after `resume`, else from the start; `state` is then init's).

        With skip_idle (concrete values only, not under an outer vmap) a stage's remaining chunks are passed
        over once no member runs. `between(state) -> state` runs on the host after every chunk (a task's
        projection); `on_compile(stage name, chunk length)` before a chunk not compiled yet."""
        for index, begins, chunks in self.trainer.schedule(resume):
            if begins:
                state = self.begin(index, state, hyper)
            for position, n_steps in chunks:
                if skip_idle and not self.running(state).any():
                    break
                if on_compile is not None and not self.is_compiled(("chunk", index, n_steps)):
                    on_compile(self.trainer.stages[index].name, n_steps)
                state, records = self.chunk(index, n_steps, state, hyper, self.trainer.chunk_start(index, position))
                if between is not None:
                    state = between(state)
                yield index, position, state, records


class FitResult(NamedTuple):
    state: Any  # the member's final TrainState (host arrays)
    history: pd.DataFrame


class Progress:
    """One bar for a fit: steps of all members, the loss (one member) or members running, done and
    diverged (a batch), ETA; "compiling ..." while a piece compiles (seconds the first time, well under a
    second once XLA's persistent cache holds it), so a first run does not look hung at step 0. With the bar
    off, the log gets the compile notices and one line per stage."""

    def __init__(self, n_members: int, steps_per_member: int, enabled: bool, what: str, done: int = 0):
        self.bar = tqdm(total=n_members * steps_per_member, disable=not enabled, unit="step", dynamic_ncols=True,
                        mininterval=1.0, leave=False, desc=what if n_members > 1 else None, initial=done)
        self.n, self.what, self.compiling_what, self.since = n_members, what, None, 0.0

    def compiling(self, stage: str, n_steps: int) -> None:
        self.compiling_what = f"{stage} ({n_steps}-step chunks)" if n_steps else stage
        self.since = time.perf_counter()
        self.bar.set_description(f"compiling {stage}", refresh=True)
        if self.bar.disable:
            log.info("compiling %s ...", self.compiling_what)

    def compiled(self) -> None:
        if self.compiling_what is not None:
            log.info("compiled and ran %s in %.1fs", self.compiling_what, time.perf_counter() - self.since)
            self.compiling_what = None

    def stage(self, name: str, running: np.ndarray) -> None:
        if self.bar.disable and self.n > 1:
            log.info("%s: stage %s, %d of %d members run", self.what, name, int(running.sum()), self.n)

    def update(self, steps: int, stage: str, running: np.ndarray, diverged: np.ndarray, last_loss=None) -> None:
        self.bar.set_description(stage if self.n == 1 else self.what, refresh=False)
        if self.n > 1:
            self.bar.set_postfix_str(f"{stage}: {int(running.sum())} running, {int((~running).sum())} done, "
                                     f"{int(diverged.sum())} diverged", refresh=False)
        elif last_loss is not None:
            self.bar.set_postfix(loss=f"{last_loss:.3e}", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()


def all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree.leaves(tree))


def sample(program: Program, state: TrainState, probes: Sequence[Sequence[Probe]]) -> None:
    """Each member's probes sample its parameters at its step (finite parameters only: a diverged step
    may have left NaN/inf)."""
    steps = np.atleast_1d(np.asarray(state.step))
    for i, params in enumerate(program.split(state.params)):
        if all_finite(params):
            for probe in probes[i]:
                probe.sample(int(steps[i]), params)


def projected(trainer: Trainer, step: int, params: dict) -> dict | None:
    """The task's host-side map (task.project) of host parameters at `step` (its epoch), or None when it
    leaves them as they are (a task without one, or not an epoch it projects at)."""
    if trainer.task.project is None:
        return None
    return trainer.task.project(step // trainer.steps_per_epoch, params)


def project(program: Program, state: TrainState) -> TrainState:
    """Each running member's parameters through its task's projection (`projected`), on the host."""
    if all(view.task.project is None for view in program.views):
        return state
    members, steps = program.split(state.params), np.atleast_1d(np.asarray(state.step))
    changed = False
    for i in np.flatnonzero(program.running(state)):
        new = projected(program.views[i], int(steps[i]), members[i])
        if new is not None:
            changed, members[i] = True, {k: np.asarray(new[k], members[i][k].dtype) for k in members[i]}
    return state._replace(params=program.stack([jax.tree.map(jnp.asarray, p) for p in members])) if changed else state


def resume_members(program: Program, keys, hypers, probes: Sequence[Sequence[Probe]],
                   checkpoints: Sequence[Checkpoints] | None) -> list[Resume] | None:
    """Each member's checkpoints.Resume at the newest position every member has a checkpoint of (a batch
    writes all members' before it removes the older ones, so a kill mid-way leaves one), its probes'
    samples restored; else None: every member's checkpoints are removed (a damaged one reported in one
    line by Checkpoints.load) and the fit starts from the beginning."""
    if checkpoints is None:
        return None
    names = [set(artifacts.checkpoint_names(c.run_dir)) for c in checkpoints]
    common = set.intersection(*names)
    template = functools.cache(lambda stage: state_template(program.trainer, keys[0], hypers[0], stage))  # shapes are shared
    resumes = [c.load(template, max(common)) for c in checkpoints] if common else \
        [c.load(template) if os.path.lexists(c.folder) and not n else None for c, n in zip(checkpoints, names)]
    if common and all(r is not None for r in resumes):
        try:
            for resume, member_probes in zip(resumes, probes):
                resume.restore_probes(member_probes)
            return resumes
        except ValueError as err:  # the checkpoint's probes are not this run's
            log.warning("the checkpoint's probe samples do not fit this run (%s): it starts from the beginning", err)
    elif any(names) and len(checkpoints) > 1:
        log.warning("the members have no checkpoint of one position in common: the batch starts from the beginning")
    for c in checkpoints:
        c.discard()
    return None


def fit(program: Program, keys: Sequence[jax.Array], hypers: Sequence[dict], probes: Sequence[Sequence[Probe]],
        progress: bool = False, checkpoints: Sequence[Checkpoints] | None = None, what: str = "run") -> list[FitResult]:
    """Train the program's members (keys[i], hypers[i], probes[i], checkpoints[i]) and return one
    FitResult per member.

    Before the first chunk and after each, every member's probes sample its parameters; the tasks'
    projections run after each chunk; at the end every probe's `finish(best effective params, completed)`
    runs. With `checkpoints` (one per member) the fit starts from the members' checkpoints when they all
    have one at the same position, and, when the first member's is due, saves every member's from one
    transfer (none once every member diverged)."""
    trainer, n = program.trainer, program.n
    resumes = resume_members(program, keys, hypers, probes, checkpoints)
    hyper = program.stack(hypers)
    bar = Progress(n, trainer.total_steps(), progress, what,
                   done=sum(steps_in(r.rows) for r in resumes) if resumes else 0)
    if resumes is None:
        if not program.is_compiled(("init",)):
            bar.compiling("init", 0)
        state = program.init(program.stack(keys), hyper)
        bar.compiled()
        rows: list[list[dict]] = [[] for _ in range(n)]
        sample(program, state, probes)
    else:
        state = program.stack([r.state for r in resumes])
        rows = [list(r.rows) for r in resumes]
    stage_seen = None
    with held_requeue_signal():
        for index, position, state, records in program.chunks(state, hyper, resumes[0] if resumes else None,
                                                              skip_idle=True, between=lambda s: project(program, s),
                                                              on_compile=bar.compiling):
            bar.compiled()
            stage = trainer.stages[index].name
            running, diverged = program.running(state), program.diverged(state)
            if index != stage_seen:
                bar.stage(stage, running)
                stage_seen = index
            done, last = 0, None
            for i, member_records in enumerate(program.split(records)):
                chunk = records_to_rows(member_records, stage, trainer.history_every, trainer.block_of(index)[2])
                done += steps_in([chunk])
                if len(chunk["step"]):
                    rows[i].append(chunk)
                    last = chunk["loss"][-1]
            bar.update(done, stage, running, diverged, last)
            sample(program, state, probes)
            if checkpoints is not None and checkpoints[0].due() and not diverged.all():
                members = program.split(state)
                saved = [c.save(index, position, members[i], rows[i], probes[i], prune=n == 1)
                         for i, c in enumerate(checkpoints)]
                for c, path in zip(checkpoints, saved if n > 1 else ()):  # all members' first: a kill leaves a common position
                    c.prune(path)
            hand_over()  # a cluster's requeue signal, held till this checkpoint was written
            if diverged.all():
                break
    bar.close()
    results = []
    for i, member_state in enumerate(program.split(state)):
        if bool(member_state.diverged):
            log.warning("%s diverged at step %d", "the run" if n == 1 else f"member {i}", int(member_state.diverged_step))
        finish_probes(member_state, probes[i])
        results.append(FitResult(member_state, history_frame(rows[i])))
    return results


def finish_probes(state: TrainState, probes: Sequence[Probe]) -> None:
    """Every probe's finish(best effective params, completed), when those parameters are finite."""
    best = masked(state.best_params, state.mask)
    if all_finite(best):
        for probe in probes:
            probe.finish(best, completed=not bool(state.diverged))


def history_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """history.parquet's table from the chunks' rows (records_to_rows)."""
    names = (*RECORD_FIELDS, "stage", "round")
    columns = {k: np.concatenate([r[k] for r in rows]) for k in names} if rows else {k: [] for k in names}
    return pd.DataFrame(columns)[["step", "stage", "round", "loss", "task_loss", "reg_loss", "grad_norm"]]
