"""One experiment from a validated config: build -> fit(probes) -> evaluate -> write the run directory.

Nothing here is study-specific: the components (components.py) build the trainer's pieces, say which
probes run, which metrics and figures they own. Trainers are cached by the static part of the config
(everything but the traced values, the seed and the analysis settings), so the runs of a sweep that
share shapes in one process share one compilation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import artifacts
from .analysis.sparsity import NEAR_ZERO, sparsity_metrics
from .checkpoints import Checkpoints, hand_over, held_requeue_signal, state_template
from .compile_cache import enable_compilation_cache
from .components import ConfigError, Parts
from .config import validate
from .contracts import Probe
from .train import RECORD_FIELDS, Trainer, make_trainer, mean_squared_rate, records_to_rows, steps_in

log = logging.getLogger(__name__)
TRAINER_GROUPS = ("model", "task", "regularizer", "optimizer")  # the groups a Trainer is built from
CACHED_TRAINERS = 8


def set_precision(precision: str) -> Any:
    """Turn JAX x64 on or off (before any array of the run exists) and return the float dtype."""
    jax.config.update("jax_enable_x64", precision == "float64")
    return jnp.float64 if precision == "float64" else jnp.float32


def static_key(cfg: DictConfig, parts: Parts) -> str:
    """What fixes a trainer's shapes and compilation: the trainer's groups without their traced keys
    (nor the task's data keys, which change only its data arrays), the precision, the chunk length and
    the history's rows (make_trainer reads these from the analysis group).
    Runs with equal keys share a compiled trainer."""
    container = {group: OmegaConf.to_container(cfg[group], resolve=True) for group in TRAINER_GROUPS}
    for group in TRAINER_GROUPS:
        for key in getattr(parts, group).traced:
            container[group].pop(key, None)
    for key in parts.task.data_keys:
        container["task"].pop(key, None)
    container.update(precision=cfg.precision, chunk_steps=cfg.analysis.eig_every, history=cfg.analysis.history)
    return json.dumps(container, sort_keys=True)


_trainers: "OrderedDict[str, Trainer]" = OrderedDict()


def make_run(cfg: DictConfig, parts: Parts | None = None) -> tuple[Parts, Trainer, dict]:
    """(components, trainer, hyper) of a config: the trainer is cached by its static key (so the runs
    of a sweep that share shapes in one process share one compilation), hyper holds the traced values.
    A cached trainer serves a run whose task has data keys as `trainer.for_run(its own task)`.
    set_precision(cfg.precision) must come first."""
    parts = validate(cfg) if parts is None else parts
    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    key = static_key(cfg, parts)
    if key not in _trainers:
        trainer = _trainers[key] = make_trainer(parts, dtype)
        while len(_trainers) > CACHED_TRAINERS:
            _trainers.popitem(last=False)
    else:
        trainer = _trainers[key]
        if parts.task.data_keys:
            trainer = trainer.for_run(parts.task.build(dtype))
    _trainers.move_to_end(key)
    return parts, trainer, hyper_values(parts, trainer)


def hyper_values(parts: Parts, trainer: Trainer) -> dict[str, dict[str, jax.Array]]:
    """The traced values, nested by group: {group: {key: scalar of the run's dtype}}, and "data": the
    run's data arrays (trainer.data)."""
    return {**{group: part.hyper(trainer.dtype) for group, part in parts._asdict().items() if group in TRAINER_GROUPS},
            "data": trainer.data}


GIB = 1024**3
BACKWARD_FACTOR = 4  # trajectory copies alive in the backward pass: states, rates, adjoints, gradients of the drive


def available_memory() -> tuple[int | None, str]:
    """(bytes a run may use, where): an accelerator's memory limit, else the host's MemAvailable."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} memory"
    with contextlib.suppress(OSError, StopIteration, ValueError):
        lines = Path("/proc/meminfo").read_text().splitlines()
        return int(next(line for line in lines if line.startswith("MemAvailable:")).split()[1]) * 1024, "available RAM"
    return None, "memory"


def memory_estimate(trainer: Trainer, hyper: dict) -> dict[str, int]:
    """Bytes one run needs, from shapes alone (jax.eval_shape: nothing is allocated or compiled):
    parameters with their gradient, initial, best and mask copies; the largest stage's optimizer state;
    the forward trajectory (outputs and states of model.apply) kept for the backward pass, per
    minibatch when optimizer.batch_size > 0. The forward pass is traced once (model.apply)."""
    params, mask = initial_shapes(trainer, hyper)
    objective = trainer.objective(mask, hyper)
    optimizer = max(nbytes(jax.eval_shape(lambda p, stage=stage: stage.init(p, hyper["optimizer"], objective), params))
                    for stage in trainer.stages)
    inputs = jax.ShapeDtypeStruct(trainer.task.inputs.shape, trainer.dtype)
    trajectory = nbytes(jax.eval_shape(trainer.model.apply, params, inputs))
    if trainer.batch_size:
        trajectory = trajectory * trainer.batch_size // trainer.n_train
    return {"parameters": 5 * nbytes(params), "optimizer state": optimizer,
            "trajectory": BACKWARD_FACTOR * trajectory}


def initial_shapes(trainer: Trainer, hyper: dict):
    """(params, mask) of model.init as shapes (jax.eval_shape: no loss is traced, nothing allocated)."""
    return jax.eval_shape(trainer.model.init, jax.random.key(0), hyper["model"])


def nbytes(tree) -> int:
    return int(sum(np.prod(leaf.shape, dtype=np.int64) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)))


def check_resources(trainer: Trainer, cfg: DictConfig, hyper: dict, size_keys=()) -> None:
    """Refuse, before anything compiles, a run that cannot work: a structural sparsity that leaves a
    masked parameter (J) with less than one free entry on average, or a run whose memory estimate
    exceeds what the machine has (the advice names the first of `size_keys`, the model's keys that set
    its parameter count). Raises ConfigError naming the key."""
    params, _ = initial_shapes(trainer, hyper)
    s = float(OmegaConf.select(cfg, "model.sparsity", default=0.0))
    for name in trainer.model.masked:
        free = (1.0 - s) * int(np.prod(params[name].shape))
        if free < 1:
            raise ConfigError("model.sparsity", s, f"leaves {name} {tuple(params[name].shape)} with "
                              f"{free:.3g} free entries on average: (1 - s) x {name}.size must be >= 1")
    parts = memory_estimate(trainer, hyper)
    available, where = available_memory()
    if available is None or sum(parts.values()) <= available:
        return
    if parts["trajectory"] >= parts["parameters"] + parts["optimizer state"]:
        key = "optimizer.batch_size"
        advice = "set a smaller optimizer.batch_size (minibatches) or a shorter task"
    else:
        key = next((k for k in size_keys if OmegaConf.select(cfg, k) is not None), "model")
        advice = f"use a smaller {key}"
    detail = ", ".join(f"{name} {size / GIB:.3g}" for name, size in parts.items())
    value = OmegaConf.select(cfg, key) if key != "model" else cfg.model.name
    raise ConfigError(key, value if not OmegaConf.is_config(value) else list(value),
                      f"needs an estimated {sum(parts.values()) / GIB:.3g} GiB ({detail}) but "
                      f"{available / GIB:.3g} GiB of {where} is free: {advice}")


class FitResult(NamedTuple):
    state: Any
    history: pd.DataFrame


def projected(trainer: Trainer, step: int, params: dict) -> dict | None:
    """The task's host-side map (task.project) of host parameters at `step` (its epoch), or None when
    it leaves them as they are (a task without one, or not an epoch it projects at)."""
    if trainer.task.project is None:
        return None
    return trainer.task.project(step // trainer.steps_per_epoch, params)


def projection(trainer: Trainer):
    """`between` for Trainer.chunks: `projected` after each chunk of a running fit; None for a task
    without a projection."""
    if trainer.task.project is None:
        return None

    def between(state):
        new = projected(trainer, int(state.step), {k: np.asarray(v) for k, v in state.params.items()}) \
            if bool(state.running) else None
        if new is None:
            return state
        return state._replace(params={k: jnp.asarray(new[k], v.dtype) for k, v in state.params.items()})

    return between


def all_finite(tree) -> bool:
    """Whether every entry of every leaf is finite: reduced where the arrays live, one bool to the host."""
    return bool(jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)])))


class CompileNotice:
    """Says "compiling ..." while a chunk compiles (seconds, growing with the network and the task, the
    first time; well under a second once XLA's persistent cache holds it), so a first run does not look hung
    at step 0: on the progress bar, or in the log when the bar is off; the log gets the time it took."""

    def __init__(self, bar: tqdm):
        self.bar, self.what, self.since = bar, None, 0.0

    def start(self, stage: str, n_steps: int) -> None:
        self.what = f"{stage} ({n_steps}-step chunks)" if n_steps else stage
        self.since = time.perf_counter()
        self.bar.set_description(f"compiling {stage}", refresh=True)
        if self.bar.disable:
            log.info("compiling %s ...", self.what)

    def done(self) -> None:
        if self.what is not None:
            log.info("compiled and ran %s in %.1fs", self.what, time.perf_counter() - self.since)
            self.what = None


def fit(trainer: Trainer, key: jax.Array, hyper: dict, probes: Sequence[Probe] = (),
        progress: bool = True, checkpoints: Checkpoints | None = None) -> FitResult:
    """Host loop over the jitted chunks: history, probes, progress bar, stop on divergence.

    Before the first chunk and after each, every probe's `sample(step, params)` runs (finite parameters
    only: a diverged step may have left NaN/inf); the task's projection, if it has one, runs after each
    chunk. At the end every probe's `finish(best effective params, completed)` runs. With `checkpoints`
    the fit starts from the run's checkpoint when it has one, and writes one after a chunk when due."""
    resume = checkpoints.load(lambda stage: state_template(trainer, key, hyper, stage)) \
        if checkpoints is not None else None
    if resume is not None:
        resume.restore_probes(probes)
    rows = list(resume.rows) if resume is not None else []
    bar = tqdm(total=trainer.total_steps(), disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=1.0, leave=False, initial=steps_in(rows))
    state = resume.state if resume is not None else None  # a checkpoint at the end: no chunk is left
    compiling = CompileNotice(bar)
    with held_requeue_signal():
        for index, done, state, records in trainer.chunks(key, hyper, skip_idle=True, between=projection(trainer),
                                                          on_compile=compiling.start, resume=resume):
            compiling.done()
            if records is not None:
                chunk = records_to_rows(records, trainer.stages[index].name, trainer.history_every)
                rows.append(chunk)
                bar.set_description(trainer.stages[index].name, refresh=False)
                if len(chunk["loss"]):
                    bar.set_postfix(loss=f"{chunk['loss'][-1]:.3e}", refresh=False)
                bar.update(steps_in([chunk]))
            if all_finite(state.params):
                for probe in probes:
                    probe.sample(int(state.step), state.params)
            if records is not None and checkpoints is not None and checkpoints.due() and not bool(state.diverged):
                checkpoints.save(index, done, jax.device_get(state), rows, probes)
            hand_over()  # a cluster's requeue signal, held till this checkpoint was written
            if bool(state.diverged):
                log.warning("run diverged at step %d", int(state.diverged_step))
                break
    bar.close()
    finish_probes(state, probes)
    return FitResult(state, history_frame(rows))


def finish_probes(state, probes: Sequence[Probe]) -> None:
    """Every probe's finish(best effective params, completed), when those parameters are finite."""
    best = jax.tree.map(jnp.multiply, state.best_params, state.mask)
    if all_finite(best):
        for probe in probes:
            probe.finish(best, completed=not bool(state.diverged))


def history_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """history.parquet's table from the chunks' rows (records_to_rows)."""
    columns = {k: np.concatenate([r[k] for r in rows]) for k in (*RECORD_FIELDS, "stage")} if rows else \
        {k: [] for k in (*RECORD_FIELDS, "stage")}
    return pd.DataFrame(columns)[["step", "stage", "loss", "task_loss", "reg_loss", "grad_norm"]]


def evaluate(trainer: Trainer, state, hyper: dict,
             near_zero: float = NEAR_ZERO) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics and arrays of the best parameters of a finished fit: status, losses, sparsity (near zero:
    |θ| < near_zero, `analysis.near_zero`), the task's own metrics of the network's outputs and, for a task
    with held-out data, test loss (and accuracy)."""
    params, mask = state.best_params, state.mask
    effective = jax.tree.map(jnp.multiply, params, mask)
    outputs, states = jax.jit(trainer.model.apply)(effective, jnp.asarray(trainer.task.inputs, trainer.dtype))
    outputs = np.asarray(outputs)
    task_loss = float(trainer.task.loss(outputs, trainer.task.targets, trainer.task.loss_weights))
    reg_loss = float(trainer.regularizer.penalty(params, hyper["regularizer"]))
    host = {k: np.asarray(v) for k, v in params.items()}
    names = list(dict.fromkeys([*trainer.regularizer.targets, *trainer.model.masked])) or list(host)
    activity_loss = {}
    if trainer.model.rates is not None:  # the mean squared rate, and its κ-weighted part of the final loss
        activity = float(mean_squared_rate(trainer.model.rates(states), jnp.asarray(trainer.task.loss_weights)))
        activity_loss = {"activity": activity, "activity_loss": float(hyper["regularizer"]["activity"]) * activity}
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
    return metrics, arrays


def run(cfg: DictConfig, run_dir: str | Path, parts: Parts | None = None) -> dict[str, Any]:
    """Validate and begin the run (its fingerprint; unless `parts`, validate's result, is given), train,
    evaluate and write a complete run directory (DONE last). Returns metrics.

    A bad config value raises ConfigError before anything is computed or written. Any other error is
    recorded in metrics.json as status "failed" (so the aggregator lists it) and raised again.
    """
    run_dir = Path(run_dir)
    if parts is None:  # else the caller validated, and began the run (batch.run_batch)
        fingerprint = artifacts.config_fingerprint(cfg)  # of the config as composed (validation may add keys)
        parts = validate(cfg)
        artifacts.begin_run(run_dir, fingerprint, resume=cfg.resume)
    prepare_run_dir(run_dir, cfg)
    try:
        return _run(cfg, parts, run_dir)
    except ConfigError:
        raise  # refused before any compute (check_resources): nothing ran, the CLI says why (exit 2)
    except Exception as err:
        record_failure(run_dir, err)
        raise


def prepare_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Before a begun run (artifacts.begin_run: no DONE of an earlier attempt, its fingerprint) trains:
    no temporary files of a killed write, and the run's config record completed with the keys
    validation filled in."""
    artifacts.remove_temp_files(run_dir)
    artifacts.complete_config(run_dir, cfg)


def record_failure(run_dir: Path, err: BaseException) -> None:
    """metrics.json := {status: failed, error}. If that cannot be written either (a full disk), no
    metrics.json that says completed is left behind (the run then reads as incomplete) and stderr
    says why; the original error is raised by the caller either way."""
    reason = f"{type(err).__name__}: {err}"
    try:  # DONE cannot exist here: begin_run cleared it and _run writes it last
        artifacts.write_metrics(run_dir, {"status": "failed", "error": reason})
    except Exception as write_error:  # noqa: BLE001 (reported, then the run's own error is raised)
        with contextlib.suppress(OSError):
            (run_dir / artifacts.METRICS).unlink(missing_ok=True)
        print(f"rnn-sparsity: could not record the failure in {run_dir / artifacts.METRICS} "
              f"({type(write_error).__name__}: {write_error}); the run failed with {reason}", file=sys.stderr)


def _run(cfg: DictConfig, parts: Parts, run_dir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    enable_compilation_cache(cfg.compilation_cache)
    set_precision(cfg.precision)
    parts, trainer, hyper = make_run(cfg, parts)
    check_resources(trainer, cfg, hyper, parts.model.size_keys)
    probes = run_probes(parts, trainer)
    result = fit(trainer, jax.random.key(cfg.seed), hyper, probes, progress=cfg.progress,
                 checkpoints=Checkpoints(run_dir, cfg.checkpoint.every_s))
    return write_run(cfg, parts, trainer, hyper, result, probes, run_dir, start)


def run_probes(parts: Parts, trainer: Trainer) -> list[Probe]:
    """The probes every component of a run wants."""
    return [probe for part in parts for probe in part.probes(trainer)]


def write_run(cfg: DictConfig, parts: Parts, trainer: Trainer, hyper: dict, result: FitResult,
              probes: Sequence[Probe], run_dir: Path, start: float,
              finish: Callable[[Path, dict], None] | None = None) -> dict[str, Any]:
    """Evaluate a finished fit and write its run directory (DONE last); returns its metrics.
    `finish(run_dir, figures)` draws the figures and then writes DONE: plots.run.draw_then_done here,
    by default, or later in a worker (batch.FigurePool)."""
    metrics, arrays = evaluate(trainer, result.state, hyper, cfg.analysis.near_zero)
    for probe in probes:
        metrics.update(probe.metrics())
        arrays.update(probe.arrays())
    metrics.update(stages=",".join(result.history["stage"].unique().tolist()), wall_s=time.perf_counter() - start)

    state = result.state
    artifacts.write_params(run_dir, {k: np.asarray(v) for k, v in state.best_params.items()},
                           init={k: np.asarray(v) for k, v in state.init_params.items()},
                           mask={k: np.asarray(state.mask[k]) for k in trainer.model.masked})
    artifacts.write_history(run_dir, result.history)
    if cfg.analysis.enabled:
        artifacts.write_arrays(run_dir / artifacts.ANALYSIS, arrays)
    artifacts.write_metrics(run_dir, metrics)
    if cfg.analysis.figures:
        from .plots.run import component_figures, draw_then_done

        (finish or draw_then_done)(run_dir, component_figures(parts))
    else:
        artifacts.mark_done(run_dir)
    shown = ("final_loss", "sparsity", "spectral_radius", *(m for part in parts for m in part.summary_metrics))
    log.info("%s %s [%s]: %s (%.1fs)", metrics["status"], run_dir, " ".join(artifacts.read_overrides(run_dir)),
             " ".join(f"{k}={metrics[k]:.4g}" for k in dict.fromkeys(shown) if isinstance(metrics.get(k), (int, float))),
             metrics["wall_s"])
    return metrics
