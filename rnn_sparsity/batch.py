"""Runs that share a static configuration trained as one program: `jit(vmap(chunk))` over their traced
values and keys, each member still writing its own run directory, the same files a serial run writes.

`run_batch(cfgs, run_dirs)` validates every config (a bad one fails alone, with its message), groups
the rest by their trainer's static key (experiment.static_key) and trains each group of two or more
as one batched program (`fit_batch`); a group of one takes the serial path (experiment.run).

Members are independent, as in `Trainer`: a member that diverges is frozen and recorded while the
others go on; stage thresholds, early stopping and best parameters are per member. A stage's chunks
run while any member runs; a member that does not run leaves no record (its steps are masked, as
`records_to_rows` drops them), so its history is what a serial run of it writes. Between chunks each
member's probes sample its own parameters (a member that stopped is not sampled again: probes skip a
step they have seen), and a task's projection maps each running member's parameters.

Runs through `hydra/launcher=vmap` (hydra_plugins/rnn_sparsity_vmap), which hands it every job of a
sweep with its run directory and log file. A group is trained in batches of at most `batch_size` members
(default `auto_batch_size`: what the memory estimate lets fit); with several devices visible a batch's
members are sharded across them (`member_sharding`). Tested member for member against serial runs and
the basic launcher (tests/test_batch.py, tests/test_vmap_launcher.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from omegaconf import DictConfig
from tqdm.auto import tqdm

from . import artifacts
from .checkpoints import Checkpoints, Resume, hand_over, held_requeue_signal, state_template
from .compile_cache import enable_compilation_cache
from .components import ConfigError, Parts
from .config import validate
from .contracts import Probe
from .experiment import (FitResult, available_memory, check_resources, finish_probes, history_frame, make_run,
                         memory_estimate, prepare_run_dir, projected, record_failure, run, run_probes, set_precision,
                         static_key, write_run)
from .train import Trainer, records_to_rows, steps_in

log = logging.getLogger(__name__)


def member(tree, i: int):
    """Member i of a batched pytree."""
    return jax.tree.map(lambda a: a[i], tree)


def stack(trees: Sequence):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


class BatchedTrainer:
    """A Trainer's pure pieces under vmap, each compiled once: init, begin_stage, run_chunk."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.init = jax.jit(jax.vmap(trainer.init))
        self.begin = [jax.jit(jax.vmap(lambda s, h, i=i: trainer.begin_stage(i, s, h)))
                      for i in range(len(trainer.stages))]
        self._chunks: dict[tuple[int, int], Any] = {}

    def chunk(self, index: int, n_steps: int):
        if (index, n_steps) not in self._chunks:
            self._chunks[index, n_steps] = jax.jit(jax.vmap(  # (state, hyper, start): start is every member's
                lambda s, h, start: self.trainer.run_chunk(index, n_steps, s, h, start), in_axes=(0, 0, None)))
        return self._chunks[index, n_steps]


def project_members(trainer: Trainer, state, place=lambda tree: tree):
    """The task's projection (experiment.projected) of each running member's parameters, on the host."""
    if trainer.task.project is None:
        return state
    params = {k: np.array(v) for k, v in state.params.items()}
    changed = False
    for i in np.flatnonzero(np.asarray(state.running)):
        new = projected(trainer, int(state.step[i]), {k: v[i] for k, v in params.items()})
        if new is not None:
            changed = True
            for k in params:
                params[k][i] = new[k]
    if not changed:
        return state
    return state._replace(params=place({k: jnp.asarray(params[k], v.dtype) for k, v in state.params.items()}))


def sample_members(state, probes: Sequence[Sequence[Probe]]) -> None:
    """Each member's probes sample its parameters (one transfer of the batch to the host, then slices)."""
    params, steps = jax.device_get(state.params), np.asarray(state.step)
    for i, member_probes in enumerate(probes):
        mine = {k: v[i] for k, v in params.items()}
        if all(np.all(np.isfinite(v)) for v in mine.values()):
            for probe in member_probes:
                probe.sample(int(steps[i]), mine)


class GroupProgress:
    """One bar for a batch of members: steps of all members, members done and diverged, ETA; with the
    bar off, one log line per stage."""

    def __init__(self, n_members: int, steps_per_member: int, enabled: bool, what: str, done: int = 0):
        self.bar = tqdm(total=n_members * steps_per_member, disable=not enabled, unit="step", dynamic_ncols=True,
                        mininterval=1.0, leave=False, desc=what, initial=done)
        self.what = what

    def update(self, state, n_steps: int, stage: str) -> None:
        running, diverged = np.asarray(state.running), np.asarray(state.diverged)
        self.bar.set_postfix_str(f"{stage}: {int(running.sum())} running, {int((~running).sum())} done, "
                                 f"{int(diverged.sum())} diverged", refresh=False)
        self.bar.update(n_steps)

    def stage(self, name: str, state) -> None:
        if self.bar.disable:
            log.info("%s: stage %s, %d of %d members run", self.what, name, int(np.asarray(state.running).sum()),
                     len(np.asarray(state.running)))

    def close(self) -> None:
        self.bar.close()


def member_sharding(n_members: int):
    """(sharding, padded size): members split over the visible devices along one mesh axis, padded to a
    multiple of the device count; (None, n_members) on one device."""
    devices = jax.devices()
    if len(devices) < 2 or n_members < 2:
        return None, n_members
    mesh = Mesh(np.array(devices), ("members",))
    return NamedSharding(mesh, PartitionSpec("members")), -(-n_members // len(devices)) * len(devices)


def resume_members(trainer: Trainer, keys, hypers, checkpoints) -> list[Resume] | None:
    """Each member's checkpoints.Resume at the newest position every member has a checkpoint of (the
    batch writes all members' before it removes the older ones, so a kill mid-way leaves one); else
    None, every member's checkpoints are removed and the batch starts from the beginning."""
    if checkpoints is None:
        return None
    names = [set(artifacts.checkpoint_names(c.run_dir)) for c in checkpoints]
    common = set.intersection(*names)
    template = functools.cache(lambda stage: state_template(trainer, keys[0], hypers[0], stage))  # members share shapes
    resumes = [c.load(template, max(common)) for c in checkpoints] if common else []
    if common and all(r is not None for r in resumes):
        return resumes
    if any(names):
        log.warning("the members have no checkpoint of one position in common: the batch starts from the beginning")
        for c in checkpoints:
            c.discard()
    return None


def fit_batch(trainer: Trainer, keys: Sequence[jax.Array], hypers: Sequence[dict],
              probes: Sequence[Sequence[Probe]], progress: bool = False, what: str = "batch",
              checkpoints: Sequence[Checkpoints] | None = None) -> list[FitResult]:
    """Train len(keys) members of one static configuration as one program; one FitResult per member,
    with the state and history a serial `experiment.fit` of that member gives.

    With several devices visible (accelerators, or XLA host devices) the members are sharded across
    them (padded with copies of the last member, whose results are dropped). With `checkpoints` (one
    per member) the batch resumes from the members' checkpoints when they all have one at the same
    position, and, when the first member's is due, saves every member's from one transfer."""
    n = len(keys)
    resumes = resume_members(trainer, keys, hypers, checkpoints)
    sharding, padded = member_sharding(n)
    keys, hypers = list(keys) + [keys[-1]] * (padded - n), list(hypers) + [hypers[-1]] * (padded - n)

    def place(tree):
        return tree if sharding is None else jax.device_put(tree, sharding)

    batched = BatchedTrainer(trainer)
    hyper = place(stack(hypers))
    if resumes is None:
        state = batched.init(place(jnp.stack(keys)), hyper)
        rows: list[list[dict]] = [[] for _ in range(n)]
        sample_members(state, probes)
    else:
        for resume, member_probes in zip(resumes, probes):
            resume.restore_probes(member_probes)
        states = [r.state for r in resumes]
        state = place(stack(states + [states[-1]] * (padded - n)))
        rows = [list(r.rows) for r in resumes]
    bar = GroupProgress(n, trainer.total_steps(), progress, what,
                        done=sum(steps_in(member_rows) for member_rows in rows))
    with held_requeue_signal():
        for index, begins, chunks in trainer.schedule(resumes[0] if resumes else None):
            stage = trainer.stages[index]
            if begins:
                state = batched.begin[index](state, hyper)
            bar.stage(stage.name, state)
            for position, n_steps in chunks:
                if not bool(jnp.any(state.running[:n])):
                    break
                start = jnp.asarray(trainer.chunk_start(index, position), jnp.int32)
                state, records = batched.chunk(index, n_steps)(state, hyper, start)
                state = project_members(trainer, state, place)
                records = jax.device_get(records)
                done = 0
                for i in range(n):
                    chunk = records_to_rows({k: v[i] for k, v in records.items()}, stage.name, trainer.history_every)
                    done += steps_in([chunk])
                    if len(chunk["step"]):
                        rows[i].append(chunk)
                bar.update(state, done, stage.name)
                sample_members(state, probes)
                if checkpoints is not None and checkpoints[0].due():
                    host = jax.device_get(state)
                    saved = [c.save(index, position, member(host, i), rows[i], probes[i], prune=False)
                             for i, c in enumerate(checkpoints)]
                    for c, path in zip(checkpoints, saved):  # all members' first: a kill leaves a common position
                        c.prune(path)
                hand_over()  # a cluster's requeue signal, held till this checkpoint was written
    bar.close()
    results = []
    for i, member_probes in enumerate(probes):
        member_state = member(state, i)
        if bool(member_state.diverged):
            log.warning("member %d diverged at step %d", i, int(member_state.diverged_step))
        finish_probes(member_state, member_probes)
        results.append(FitResult(member_state, history_frame(rows[i])))
    return results


class FigurePool:
    """Per-run figures drawn in worker processes while the next batch trains: a member's run directory
    is written at once (metrics, history, params, analysis), its figures (those a serial run draws) and
    then its DONE follow in a worker (plots.run.draw_then_done); `wait` collects them, recording a run whose figures
    failed as failed (what a serial run does). Workers are spawned (JAX is not fork-safe) and only
    when the first figure is asked for."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.pending: list[tuple[int, Path, concurrent.futures.Future]] = []

    def submitter(self, index: int):
        """`finish` for experiment.write_run of outcome `index`."""
        def submit(run_dir: Path, figures: dict) -> None:
            if self.executor is None:
                self.executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
            from .plots.run import draw_then_done

            self.pending.append((index, run_dir, self.executor.submit(draw_then_done, run_dir, figures)))

        return submit

    def wait(self, outcomes: list, log_files: Sequence[Path | None]) -> None:
        if self.pending:
            start = time.perf_counter()
            log.info("waiting for the figures of %d runs", sum(not f.done() for _, _, f in self.pending))
        for index, run_dir, future in self.pending:
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 (recorded as a serial run records it)
                with logging_to([log_files[index]]):
                    log.error("%s: drawing its figures failed: %s: %s", run_dir, type(err).__name__, err)
                record_failure(run_dir, err)
                outcomes[index] = err
        if self.pending:
            log.info("figures of %d runs drawn (%.1fs waited)", len(self.pending), time.perf_counter() - start)
        self.pending.clear()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


MEMORY_FRACTION = 0.8  # of the free memory a batch's estimate may fill when batch_size is not given


def auto_batch_size(trainer: Trainer, hyper: dict) -> int:
    """How many members fit in one program: MEMORY_FRACTION of the free memory over one member's
    estimate (experiment.memory_estimate); no bound where the free memory is unknown."""
    available, _ = available_memory()
    need = max(1, sum(memory_estimate(trainer, hyper).values()))
    return max(1, int(MEMORY_FRACTION * available) // need) if available is not None else 1 << 30


@contextlib.contextmanager
def logging_to(files: Sequence[Path | None]):
    """Log records (rnn_sparsity's and JAX's warnings) also go to each of `files` (appended: each
    member's job log, where Hydra writes its own lines), for the duration of a group."""
    handlers = []
    for file in files:
        if file is None:
            continue
        handler = logging.FileHandler(file, mode="a")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        handlers.append(handler)
        logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def run_batch(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path], batch_size: int | None = None,
              progress: bool = False, log_files: Sequence[Path | None] | None = None,
              ) -> list[dict[str, Any] | BaseException]:
    """Validate, train and write every run; runs sharing a static configuration train as one program,
    in batches of at most `batch_size` members (None: as many as fit, auto_batch_size).
    Returns, per run, its metrics or the error that ended it. A config that fails validation, or a
    member refused by check_resources, fails alone: its error is logged and recorded in its
    metrics.json (status failed), before any compute."""
    run_dirs = [Path(d) for d in run_dirs]
    log_files = list(log_files) if log_files is not None else [None] * len(cfgs)
    outcomes: list[Any] = [None] * len(cfgs)
    fingerprints = [artifacts.config_fingerprint(cfg) for cfg in cfgs]  # of the configs as composed, as run() takes them
    groups, parts_of, refused = group_runs(cfgs)
    for i, err in refused.items():
        refuse(run_dirs[i], log_files[i], err)
        outcomes[i] = err
    for i in sorted(parts_of):
        artifacts.begin_run(run_dirs[i], fingerprints[i], resume=cfgs[i].resume)
    figures = FigurePool()
    try:
        for indices in groups:
            _run_indices(indices, cfgs, run_dirs, parts_of, log_files, outcomes, batch_size, progress, figures)
        figures.wait(outcomes, log_files)
    finally:
        figures.close()
    return outcomes


def group_runs(cfgs: Sequence[DictConfig]) -> tuple[list[list[int]], dict[int, Parts], dict[int, ConfigError]]:
    """The runs that share a static configuration (experiment.static_key), as lists of indices in
    order of first appearance; each valid run's validated Parts; each invalid run's ConfigError.
    Nothing is written: run_batch records the refusals, and the cluster mode plans its jobs with it."""
    groups: dict[str, list[int]] = {}
    parts_of: dict[int, Parts] = {}
    refused: dict[int, ConfigError] = {}
    for i, cfg in enumerate(cfgs):
        try:
            parts_of[i] = validate(cfg)
        except ConfigError as err:
            refused[i] = err
            continue
        set_precision(cfg.precision)
        groups.setdefault(static_key(cfg, parts_of[i]), []).append(i)
    return list(groups.values()), parts_of, refused


def _run_indices(indices, cfgs, run_dirs, parts_of, log_files, outcomes, batch_size, progress, figures) -> None:
    """One group of runs sharing a static configuration: a group of one takes the serial path."""
    if len(indices) == 1:
        i = indices[0]
        with logging_to([log_files[i]]):
            try:
                outcomes[i] = run(cfgs[i], run_dirs[i], parts_of[i])
            except ConfigError as err:
                refuse(run_dirs[i], None, err)
                outcomes[i] = err
            except Exception as err:  # noqa: BLE001 (recorded by run, reported here)
                outcomes[i] = err
        return
    _run_group([cfgs[i] for i in indices], [run_dirs[i] for i in indices], [parts_of[i] for i in indices],
               [log_files[i] for i in indices], outcomes, indices, batch_size, progress, figures)


def refuse(run_dir: Path, log_file: Path | None, err: ConfigError) -> None:
    """A job refused before any compute: logged (and in its job log) and recorded as failed."""
    with logging_to([log_file]):
        log.error("%s: %s", run_dir, err)
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.clear_done(run_dir)  # an earlier attempt's completion no longer stands
    record_failure(run_dir, err)


def _run_group(cfgs, run_dirs, parts, log_files, outcomes, indices, batch_size, progress, figures) -> None:
    start = time.perf_counter()
    enable_compilation_cache(cfgs[0].compilation_cache)
    set_precision(cfgs[0].precision)
    built = [make_run(cfg, p) for cfg, p in zip(cfgs, parts)]
    trainer = built[0][1]  # the shared compiled pieces; each member's own view (its task's data) in `built`
    members = []
    for (p, view, hyper), cfg, run_dir, log_file, i in zip(built, cfgs, run_dirs, log_files, indices):
        prepare_run_dir(run_dir, cfg)
        try:
            check_resources(view, cfg, hyper, p.model.size_keys)
        except ConfigError as err:
            refuse(run_dir, log_file, err)
            outcomes[i] = err
            continue
        members.append((p, hyper, cfg, run_dir, i, log_file, view))
    if not members:
        return
    size = batch_size or auto_batch_size(trainer, members[0][1])
    batches = [members[k:k + size] for k in range(0, len(members), size)]
    for number, batch in enumerate(batches, start=1):
        what = f"{len(batch)} runs as one program" + (f" (batch {number}/{len(batches)})" if len(batches) > 1 else "")
        with logging_to([m[5] for m in batch]):  # the batch's lines go to each member's job log
            log.info("training %s: %s", what, ", ".join(str(m[3]) for m in batch))
            results = _fit_members(trainer, batch, outcomes, progress, what)
        for m, (member_probes, result) in zip(batch, results or ()):
            with logging_to([m[5]]):
                _write_member(m, member_probes, result, outcomes, start, figures)
        start = time.perf_counter()


def _fit_members(trainer, batch, outcomes, progress, what):
    """[(probes, FitResult)] per member of one batch, or None when the batch failed (every member
    records the failure)."""
    probes = [run_probes(m[0], m[6]) for m in batch]
    try:
        results = fit_batch(trainer, [jax.random.key(m[2].seed) for m in batch], [m[1] for m in batch],
                            probes, progress=progress, what=what,
                            checkpoints=[Checkpoints(m[3], m[2].checkpoint.every_s) for m in batch])
    except Exception as err:  # noqa: BLE001 (every member records the failure)
        log.error("%s failed: %s: %s", what, type(err).__name__, err)
        for m in batch:
            record_failure(m[3], err)
            outcomes[m[4]] = err
        return None
    return list(zip(probes, results))


def _write_member(m, probes, result, outcomes, start, figures: FigurePool) -> None:
    p, hyper, cfg, run_dir, i, _, view = m
    try:
        outcomes[i] = write_run(cfg, p, view, hyper, result, probes, run_dir, start, figures.submitter(i))
    except Exception as err:  # noqa: BLE001
        record_failure(run_dir, err)
        outcomes[i] = err
