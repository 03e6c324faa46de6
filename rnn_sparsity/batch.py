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

Status: the training core of the vmap launcher (issue 12), tested member for member against serial
runs (tests/test_batch.py); not yet wired to `hydra/launcher`. Measured here (2 cores, XLA cache warm,
figures off): the demo's 16 runs 28-31 s batched against 28 s serial, iris_l1's 10 runs 8.3 s against
9.5 s: on a CPU the batched chunks cost what the serial ones do, and per-member host work (probe
calls, one jit per member's probe) is what is left to batch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from .compile_cache import enable_compilation_cache
from .components import ConfigError
from .config import validate
from .contracts import Probe
from .experiment import (FitResult, check_resources, finish_probes, history_frame, make_run, prepare_run_dir,
                         projected, record_failure, run, run_probes, set_precision, static_key, write_run)
from .train import Trainer, records_to_rows

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
            self._chunks[index, n_steps] = jax.jit(jax.vmap(
                lambda s, h: self.trainer.run_chunk(index, n_steps, s, h)))
        return self._chunks[index, n_steps]


def project_members(trainer: Trainer, state):
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
    return state._replace(params={k: jnp.asarray(params[k], v.dtype) for k, v in state.params.items()})


def sample_members(state, probes: Sequence[Sequence[Probe]]) -> None:
    """Each member's probes sample its parameters (one transfer of the batch to the host, then slices)."""
    params, steps = jax.device_get(state.params), np.asarray(state.step)
    for i, member_probes in enumerate(probes):
        mine = {k: v[i] for k, v in params.items()}
        if all(np.all(np.isfinite(v)) for v in mine.values()):
            for probe in member_probes:
                probe.sample(int(steps[i]), mine)


def fit_batch(trainer: Trainer, keys: Sequence[jax.Array], hypers: Sequence[dict],
              probes: Sequence[Sequence[Probe]]) -> list[FitResult]:
    """Train len(keys) members of one static configuration as one program; one FitResult per member,
    with the state and history a serial `experiment.fit` of that member gives."""
    batched = BatchedTrainer(trainer)
    hyper = stack(hypers)
    state = batched.init(jnp.stack(keys), hyper)
    rows: list[list[dict]] = [[] for _ in keys]
    sample_members(state, probes)
    for index, stage in enumerate(trainer.stages):
        state = batched.begin[index](state, hyper)
        for n_steps in trainer.chunk_lengths(index):
            if not bool(jnp.any(state.running)):
                break
            state, records = batched.chunk(index, n_steps)(state, hyper)
            state = project_members(trainer, state)
            records = jax.device_get(records)
            for i in range(len(keys)):
                chunk = records_to_rows({k: v[i] for k, v in records.items()}, stage.name)
                if len(chunk["step"]):
                    rows[i].append(chunk)
            sample_members(state, probes)
    results = []
    for i, member_probes in enumerate(probes):
        member_state = member(state, i)
        if bool(member_state.diverged):
            log.warning("member %d diverged at step %d", i, int(member_state.diverged_step))
        finish_probes(member_state, member_probes)
        results.append(FitResult(member_state, history_frame(rows[i])))
    return results


def run_batch(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path]) -> list[dict[str, Any] | BaseException]:
    """Validate, train and write every run; runs sharing a static configuration train as one program.
    Returns, per run, its metrics or the error that ended it (a ConfigError before any compute, or
    the failure recorded in its metrics.json)."""
    outcomes: list[Any] = [None] * len(cfgs)
    groups: dict[str, list[int]] = {}
    parts_of = {}
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        try:
            parts_of[i] = validate(cfg)
        except ConfigError as err:
            outcomes[i] = err
            continue
        set_precision(cfg.precision)
        groups.setdefault(static_key(cfg, parts_of[i]), []).append(i)
    for indices in groups.values():
        if len(indices) == 1:
            i = indices[0]
            try:
                outcomes[i] = run(cfgs[i], run_dirs[i], parts_of[i])
            except Exception as err:  # noqa: BLE001 (recorded by run, reported here)
                outcomes[i] = err
            continue
        _run_group([cfgs[i] for i in indices], [Path(run_dirs[i]) for i in indices],
                   [parts_of[i] for i in indices], outcomes, indices)
    return outcomes


def _run_group(cfgs, run_dirs, parts, outcomes, indices) -> None:
    start = time.perf_counter()
    enable_compilation_cache(cfgs[0].compilation_cache)
    set_precision(cfgs[0].precision)
    built = [make_run(cfg, p) for cfg, p in zip(cfgs, parts)]
    trainer = built[0][1]
    members = []
    for (p, _, hyper), cfg, run_dir, i in zip(built, cfgs, run_dirs, indices):
        prepare_run_dir(run_dir, cfg)
        try:
            check_resources(trainer, cfg, hyper, p.model.size_keys)
        except ConfigError as err:
            outcomes[i] = err
            continue
        members.append((p, hyper, cfg, run_dir, i, run_probes(p, trainer)))
    if not members:
        return
    log.info("training %d runs as one program (%s)", len(members), ", ".join(str(m[3]) for m in members))
    try:
        results = fit_batch(trainer, [jax.random.key(m[2].seed) for m in members], [m[1] for m in members],
                            [m[5] for m in members])
    except Exception as err:  # noqa: BLE001 (every member records the failure)
        for m in members:
            record_failure(m[3], err)
            outcomes[m[4]] = err
        return
    for (p, hyper, cfg, run_dir, i, probes), result in zip(members, results):
        try:
            outcomes[i] = write_run(cfg, p, trainer, hyper, result, probes, run_dir, start)
        except Exception as err:  # noqa: BLE001
            record_failure(run_dir, err)
            outcomes[i] = err
