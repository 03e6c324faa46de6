"""Runs, from composed configs to finished run directories: one job (`run`, the app's) or a sweep's jobs
(`run_batch`, the vmap launchers'), the same way.

    begin every run directory (rundir.RunDir: no DONE, no results of another config)
    -> validate each config (a bad value: that run is refused, recorded as failed; the others go on)
    -> group the valid runs by their trainer's static key (build.static_key)
    -> per group, in batches that fit the memory: build, check resources, fit.fit(Program) ->
       evaluate -> write each member's run directory -> its figures and DONE (here for a single job,
       else in worker processes while the next batch trains)

A batch of one is the plain jitted program (a single run's float32 numbers are its own); a batch of more
is one vmapped program whose members each write the run directory a run of their own writes. Nothing
here is study-specific: the components (components.py) build the trainer's pieces, say which probes run,
which metrics and figures they own.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from . import artifacts
from .analysis.sparsity import NEAR_ZERO, sparsity_metrics
from .build import auto_batch_size, check_resources, make_run, set_precision, static_key
from .checkpoints import Checkpoints
from .compile_cache import enable_compilation_cache
from .components import ConfigError, Parts
from .config import validate
from .contracts import Probe
from .fit import FitResult, Program, fit
from .provenance import provenance
from .rundir import RunDir, finish, logging_to
from .train import Trainer, masked, mean_squared_rate

log = logging.getLogger(__name__)


def run(cfg: DictConfig, run_dir: str | Path, log_file: Path | None = None) -> dict[str, Any]:
    """One job: its run directory begun, validated, trained, evaluated and written (DONE last); returns
    its metrics. A bad value raises ConfigError (the run recorded as failed, nothing computed); any other
    error is recorded in metrics.json as status "failed" and raised again."""
    outcome = run_batch([cfg], [run_dir], log_files=[log_file])[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class Member(NamedTuple):
    """One run of a group: its job index, config, components, trainer view, traced values, directory."""
    index: int
    cfg: DictConfig
    parts: Parts
    trainer: Trainer
    hyper: dict
    run: RunDir


def run_batch(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path], batch_size: int | None = None,
              progress: bool | None = None, log_files: Sequence[Path | None] | None = None,
              fingerprints: Sequence[str] | None = None) -> list[dict[str, Any] | BaseException]:
    """Begin, validate, train and write every run; runs sharing a static configuration train as one
    program, in batches of at most `batch_size` members (None: as many as fit, build.auto_batch_size).
    Returns, per run, its metrics or the error that ended it. `progress` None: the first run's
    `progress` key; `fingerprints`: each config's artifacts.config_fingerprint as composed (computed
    from `cfgs` when not given: a launcher that resolves configs before passing them gives them)."""
    runs = [RunDir(d, f) for d, f in zip(run_dirs, log_files if log_files is not None else [None] * len(cfgs))]
    fingerprints = fingerprints if fingerprints is not None else [artifacts.config_fingerprint(c) for c in cfgs]
    outcomes: dict[int, Any] = {}
    for i, (cfg, run_dir, fingerprint) in enumerate(zip(cfgs, runs, fingerprints)):
        try:
            run_dir.begin(fingerprint, resume=bool(cfg.get("resume", True)))
        except OSError as err:  # an unwritable directory: nothing of it can be trusted or recorded
            with run_dir.logging():
                log.error("%s: cannot begin the run: %s", run_dir.path, err)
            outcomes[i] = err
    groups, parts_of, refused = group_runs(cfgs, [i for i in range(len(cfgs)) if i not in outcomes])
    for i, err in refused.items():
        runs[i].refuse(err)
        outcomes[i] = err
    for i in parts_of:
        runs[i].record_config(cfgs[i])
    figures = FigurePool(inline=len(cfgs) == 1)
    try:
        for indices in groups:
            members = [Member(i, cfgs[i], parts_of[i], None, None, runs[i]) for i in indices]
            outcomes.update(train_group(members, batch_size, progress, figures))
        outcomes.update(figures.wait())
    finally:
        figures.close()
    return [outcomes[i] for i in range(len(cfgs))]


def group_runs(cfgs: Sequence[DictConfig], indices: Sequence[int] | None = None,
               ) -> tuple[list[list[int]], dict[int, Parts], dict[int, ConfigError]]:
    """The runs (of `indices`, default all) that share a static configuration (build.static_key), as
    lists of indices in order of first appearance; each valid run's validated Parts; each invalid run's
    ConfigError. Nothing is written: run_batch records the refusals, the cluster mode plans its jobs."""
    groups: dict[str, list[int]] = {}
    parts_of: dict[int, Parts] = {}
    refused: dict[int, ConfigError] = {}
    for i in range(len(cfgs)) if indices is None else indices:
        try:
            parts_of[i] = validate(cfgs[i])
        except ConfigError as err:
            refused[i] = err
            continue
        set_precision(cfgs[i].precision)
        groups.setdefault(static_key(cfgs[i], parts_of[i]), []).append(i)
    return list(groups.values()), parts_of, refused


def refuse(run_dir: Path, log_file: Path | None, err: BaseException) -> None:
    """A job refused before any compute, recorded as failed (rundir.RunDir.refuse)."""
    RunDir(run_dir, log_file).refuse(err)


def train_group(members: Sequence[Member], batch_size: int | None, progress: bool | None,
                figures: "FigurePool") -> dict[int, Any]:
    """The runs of one static configuration, in batches: each member's metrics or error, by job index."""
    cfg = members[0].cfg
    enable_compilation_cache(cfg.compilation_cache)
    set_precision(cfg.precision)
    outcomes: dict[int, Any] = {}
    ready = []
    for m in members:
        parts, trainer, hyper = make_run(m.cfg, m.parts)
        try:
            check_resources(trainer, m.cfg, hyper, parts.model.size_keys)
        except ConfigError as err:
            m.run.refuse(err)
            outcomes[m.index] = err
            continue
        ready.append(m._replace(trainer=trainer, hyper=hyper))
    if not ready:
        return outcomes
    size = batch_size or (auto_batch_size(ready[0].trainer, ready[0].hyper) if len(ready) > 1 else 1)
    batches = [ready[k:k + size] for k in range(0, len(ready), size)]
    for number, batch in enumerate(batches, start=1):
        start = time.perf_counter()
        what = f"{len(batch)} runs as one program" if len(batch) > 1 else str(batch[0].run.path)
        what += f" (batch {number}/{len(batches)})" if len(batches) > 1 else ""
        probes = [run_probes(m.parts, m.trainer) for m in batch]
        with logging_to([m.run.log_file for m in batch]):  # the batch's lines go to each member's job log
            if len(batch) > 1:
                log.info("training %s: %s", what, ", ".join(str(m.run.path) for m in batch))
            try:
                results = fit(Program(batch[0].trainer, [m.trainer for m in batch]),
                              [jax.random.key(m.cfg.seed) for m in batch], [m.hyper for m in batch], probes,
                              progress=cfg.progress if progress is None else progress, what=what,
                              checkpoints=[Checkpoints(m.run.path, m.cfg.checkpoint.every_s) for m in batch])
            except Exception as err:  # noqa: BLE001 (every member records the failure)
                log.error("%s failed: %s: %s", what, type(err).__name__, err)
                for m in batch:
                    m.run.fail(err)
                    outcomes[m.index] = err
                continue
        for m, member_probes, result in zip(batch, probes, results):
            with m.run.logging():
                try:
                    outcomes[m.index] = write_member(m, member_probes, result, start, figures)
                except Exception as err:  # noqa: BLE001 (recorded; the other members are written)
                    log.error("%s: writing the run failed: %s: %s", m.run.path, type(err).__name__, err)
                    m.run.fail(err)
                    outcomes[m.index] = err
    return outcomes


def run_probes(parts: Parts, trainer: Trainer) -> list[Probe]:
    """The probes every component of a run wants."""
    return [probe for part in parts for probe in part.probes(trainer)]


def evaluate(trainer: Trainer, state, hyper: dict, near_zero: float = NEAR_ZERO,
             per_block: bool = False) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics and arrays of the best parameters of a finished fit: status, losses, sparsity (near zero:
    |θ| < near_zero, `analysis.near_zero`), the task's own metrics of the network's outputs and, for a task
    with held-out data, test loss (and accuracy); for a pruner that prunes, the masks' sparsity, and for one
    that retrains, each training's metrics (`block_metrics`; per_block: this is one of them)."""
    params, mask = state.best_params, state.mask
    effective = masked(params, mask)
    outputs, states = jax.jit(trainer.model.apply)(effective, jnp.asarray(trainer.task.inputs, trainer.dtype))
    outputs = np.asarray(outputs)
    task_loss = float(trainer.task.loss(outputs, trainer.task.targets, trainer.task.loss_weights))
    reg_loss = float(trainer.regularizer.penalty(params, hyper["regularizer"]))
    host = {k: np.asarray(v) for k, v in params.items()}
    names = list(dict.fromkeys([*trainer.regularizer.targets, *trainer.masked_names])) or list(host)
    activity_loss = {}
    if trainer.model.rates is not None:  # the mean squared rate, and its κ-weighted part of the final loss
        activity = float(mean_squared_rate(trainer.model.rates(states), jnp.asarray(trainer.task.loss_weights)))
        weight = trainer.regularizer.state_weight
        activity_loss = {"activity": activity, "activity_loss": 0.0 if weight is None else
                         float(weight(hyper["regularizer"])) * activity}
    metrics = {"status": "diverged" if bool(state.diverged) else "completed",
               "final_loss": task_loss + reg_loss + activity_loss.get("activity_loss", 0.0),
               "task_loss": task_loss, "reg_loss": reg_loss, **activity_loss,
               **sparsity_metrics(host, names, near_zero), "steps": int(state.step),
               "diverged_step": int(state.diverged_step) if bool(state.diverged) else None,
               "initial_loss": float(state.init_loss)}
    if trainer.batch_size:
        metrics.update(epochs=int(state.step) // trainer.steps_per_epoch, stopped_early=bool(state.stopped))
    if trainer.task.test_inputs is not None:
        metrics.update({f"test_{k}": float(v) for k, v in trainer.score(effective, "test").items()})
    finite = bool(np.all(np.isfinite(outputs)))
    arrays = dict(trainer.task.arrays(outputs)) if finite else {}
    if finite:
        metrics.update(trainer.task.metrics(outputs))
    if trainer.pruner.targets:
        metrics["mask_sparsity"] = mask_sparsity(mask, trainer.pruner.targets)
    if len(trainer.blocks) > 1 and not per_block:
        metrics.update(block_metrics(trainer, state, hyper, near_zero))
    return metrics, arrays


def mask_sparsity(mask: dict, targets: Sequence[str]) -> float:
    """The fraction of the targets' mask entries that are 0 (pruned or structurally masked)."""
    return float(sum(np.sum(np.asarray(mask[t]) == 0) for t in targets) / sum(np.size(mask[t]) for t in targets))


BLOCK_METRICS_SKIPPED = ("status", "steps", "diverged_step", "initial_loss", "epochs", "stopped_early")


def block_metrics(trainer: Trainer, state, hyper: dict, near_zero: float) -> dict[str, Any]:
    """Each training of a pruner that retrains (a lottery run's rounds and their controls) scored as a run
    of its own: its best parameters and masks (Pruner.results) through `evaluate`, its metrics named
    <kind><round>_<metric> (round3_test_accuracy, reinit3_sparsity)."""
    out = {}
    results = trainer.pruner.results(jax.device_get(state.pruning), state.best_params,
                                     {t: state.mask[t] for t in trainer.pruner.targets})
    for (kind, r), (params, masks) in zip(trainer.blocks, results):
        block = state._replace(best_params=params, mask={**state.mask, **masks})
        metrics, _ = evaluate(trainer, block, hyper, near_zero, per_block=True)
        out.update({f"{kind}{r}_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))
                    and k not in BLOCK_METRICS_SKIPPED and "/" not in k and not k.startswith("near_zero")})
    return out


def write_member(m: Member, probes: Sequence[Probe], result: FitResult, start: float,
                 figures: "FigurePool") -> dict[str, Any]:
    """Evaluate a member's finished fit and write its run directory; its figures and DONE follow
    (figures.submit). Returns its metrics."""
    cfg, state = m.cfg, result.state
    metrics, arrays = evaluate(m.trainer, state, m.hyper, cfg.analysis.near_zero)
    for probe in probes:
        metrics.update(probe.metrics())
        arrays.update(probe.arrays())
    metrics.update(stages=",".join(result.history["stage"].unique().tolist()), method=m.parts.pruner.method(),
                   wall_s=time.perf_counter() - start,
                   **provenance())
    m.run.write(metrics, {k: np.asarray(v) for k, v in state.best_params.items()},
                init={k: np.asarray(v) for k, v in state.init_params.items()},
                mask={k: np.asarray(state.mask[k]) for k in m.trainer.masked_names},
                history=result.history, arrays=arrays if cfg.analysis.enabled else None)
    if cfg.analysis.figures:
        from .plots.run import component_figures

        figures.submit(m.index, m.run, component_figures(m.parts))
    else:
        figures.submit(m.index, m.run, {})
    shown = ("final_loss", "sparsity", "spectral_radius", *(k for part in m.parts for k in part.summary_metrics))
    log.info("%s %s [%s]: %s (%.1fs)", metrics["status"], m.run.path, " ".join(artifacts.read_overrides(m.run.path)),
             " ".join(f"{k}={metrics[k]:.4g}" for k in dict.fromkeys(shown) if isinstance(metrics.get(k), (int, float))),
             metrics["wall_s"])
    return metrics


class FigurePool:
    """Each run's last step (rundir.finish: its figures, then DONE). Inline for a single job; else in
    worker processes while the next batch trains, spawned (JAX is not fork-safe) only when a figure is
    first asked for. `wait` collects them: a run whose figures failed is recorded as failed."""

    def __init__(self, inline: bool = False, workers: int | None = None):
        self.inline = inline
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.pending: list[tuple[int, RunDir, concurrent.futures.Future]] = []

    def submit(self, index: int, run: RunDir, figures: dict) -> None:
        if self.inline or not figures:  # DONE alone is no work for a worker
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                finish(run.path, figures)
                future.set_result(None)
            except Exception as err:  # noqa: BLE001 (recorded by wait)
                future.set_exception(err)
        else:
            if self.executor is None:
                self.executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
            future = self.executor.submit(finish, run.path, figures)
        self.pending.append((index, run, future))

    def wait(self) -> dict[int, BaseException]:
        """Each run whose last step failed, with its error (recorded in its metrics.json)."""
        failed: dict[int, BaseException] = {}
        waiting = sum(not f.done() for _, _, f in self.pending)
        start = time.perf_counter()
        if waiting:
            log.info("waiting for the figures of %d runs", waiting)
        for index, run, future in self.pending:
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 (recorded as any failed run)
                with run.logging():
                    log.error("%s: drawing its figures failed: %s: %s", run.path, type(err).__name__, err)
                run.fail(err)
                failed[index] = err
        if waiting:
            log.info("figures of %d runs drawn (%.1fs waited)", waiting, time.perf_counter() - start)
        self.pending.clear()
        return failed

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
