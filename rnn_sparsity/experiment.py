"""One experiment from a validated config: build -> fit -> evaluate -> write the run directory.

Trainers are cached by the static part of the config (everything but the traced hyper-values and the
seed), so the runs of a sweep that share shapes in one process share one compilation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import artifacts
from .analysis.dynamics import DynamicsSettings, FixedPointTracker, analyse_dynamics
from .analysis.eigen import SpectrumTracker, eigenvalues
from .analysis.sparsity import sparsity_metrics
from .compile_cache import enable_compilation_cache
from .config import ConfigError, validate
from .models import make_model
from .optimizers import make_stages
from .regularizers import make_regularizer
from .tasks import make_task
from .train import RECORD_FIELDS, Trainer, mean_squared_rate, records_to_rows

log = logging.getLogger(__name__)

# config key -> name in `hyper`: values a sweep varies without recompiling
TRACED_KEYS = {
    "model.sparsity": "sparsity", "model.gain": "gain",
    "regularizer.strength": "strength", "regularizer.l1_ratio": "l1_ratio",
    "regularizer.rho": "rho", "regularizer.beta": "beta", "regularizer.activity": "activity",
    "task.init_perturbation": "init_perturbation",
    "optimizer.lr": "lr", "optimizer.momentum": "momentum",
    "optimizer.loss_threshold": "loss_threshold", "optimizer.lbfgs_tol": "lbfgs_tol", "optimizer.divergence_factor": "divergence_factor",
}
UNTRACED_KEYS = ("seed", "progress", "compilation_cache", "analysis.figures", "analysis.enabled", "analysis.name",
                 "analysis.fixed_points", "analysis.slow_points", "analysis.pca", "analysis.track_tasks")


def set_precision(precision: str) -> Any:
    """Turn JAX x64 on or off (before any array of the run exists) and return the float dtype."""
    jax.config.update("jax_enable_x64", precision == "float64")
    return jnp.float64 if precision == "float64" else jnp.float32


def static_key(cfg: DictConfig) -> str:
    """The config without traced values and seed: runs with equal keys share a compiled trainer."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key in (*TRACED_KEYS, *UNTRACED_KEYS):
        *path, leaf = key.split(".")
        node = functools.reduce(lambda d, k: d.get(k, {}), path, container)
        node.pop(leaf, None)
    return json.dumps(container, sort_keys=True)


@functools.lru_cache(maxsize=8)
def _trainer(key: str) -> Trainer:
    cfg = OmegaConf.create(json.loads(key))
    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    task = make_task(cfg.task, cfg.model)
    model = make_model(cfg.model, task.n_inputs, task.n_outputs, dtype)
    neutral = {name: 0.0 for name in TRACED_KEYS.values()}  # shapes never depend on traced values
    shapes = jax.eval_shape(lambda k: model.init(k, neutral)[0], jax.random.key(0))
    regularizer = make_regularizer(cfg.regularizer, {k: v.shape for k, v in shapes.items()})
    proximal = cfg.regularizer.mode == "proximal"
    return Trainer(model, task, regularizer, make_stages(cfg.optimizer, proximal), proximal,
                   chunk_steps=cfg.analysis.eig_every, dtype=dtype, batch_size=cfg.optimizer.batch_size,
                   patience=cfg.optimizer.patience)


def make_trainer(cfg: DictConfig) -> Trainer:
    """The trainer for cfg's static part (cached); set_precision(cfg.precision) must come first."""
    return _trainer(static_key(cfg))


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
    optimizer = max(nbytes(jax.eval_shape(lambda p, stage=stage: stage.init(p, hyper, objective), params))
                    for stage in trainer.stages)
    inputs = jax.ShapeDtypeStruct(trainer.task.inputs.shape, trainer.dtype)
    trajectory = nbytes(jax.eval_shape(trainer.model.apply, params, inputs))
    if trainer.batch_size:
        trajectory = trajectory * trainer.batch_size // trainer.n_train
    return {"parameters": 5 * nbytes(params), "optimizer state": optimizer,
            "trajectory": BACKWARD_FACTOR * trajectory}


def initial_shapes(trainer: Trainer, hyper: dict):
    """(params, mask) of model.init as shapes (jax.eval_shape: no loss is traced, nothing allocated)."""
    return jax.eval_shape(trainer.model.init, jax.random.key(0), hyper)


def nbytes(tree) -> int:
    return int(sum(np.prod(leaf.shape, dtype=np.int64) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)))


SIZE_KEYS = ("model.n_units", "model.sizes", "model.channels")  # the model keys that set the parameter count


def check_resources(trainer: Trainer, cfg: DictConfig, hyper: dict) -> None:
    """Refuse, before anything compiles, a run that cannot work: a structural sparsity that leaves a
    masked parameter (J) with less than one free entry on average, or a run whose memory estimate
    exceeds what the machine has. Raises ConfigError naming the key."""
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
        key = next((k for k in SIZE_KEYS if OmegaConf.select(cfg, k) is not None), "model")
        advice = f"use a smaller {key}"
    detail = ", ".join(f"{name} {size / GIB:.3g}" for name, size in parts.items())
    value = OmegaConf.select(cfg, key) if key != "model" else cfg.model.name
    raise ConfigError(key, value if not OmegaConf.is_config(value) else list(value),
                      f"needs an estimated {sum(parts.values()) / GIB:.3g} GiB ({detail}) but "
                      f"{available / GIB:.3g} GiB of {where} is free: {advice}")


def hyper_values(cfg: DictConfig, dtype) -> dict[str, jax.Array]:
    """The traced hyper-values of cfg (TRACED_KEYS) as scalars of the run's dtype; 0 for a key the
    config's model or task does not have (an MLP has no sparsity s or gain)."""
    return {name: jnp.asarray(OmegaConf.select(cfg, key, default=0.0), dtype) for key, name in TRACED_KEYS.items()}


class FitResult(NamedTuple):
    state: Any
    history: pd.DataFrame
    samples: dict[str, np.ndarray]  # what the samplers recorded between chunks (eig_*, fp_track_*, eval_*, param_*)


def projection_every(trainer: Trainer, every: int):
    """`between` for Trainer.chunks: the task's projection of the parameters at every `every`-th epoch."""
    project = trainer.task.project

    def between(state):
        epoch = int(state.step) // trainer.steps_per_epoch
        if not every or project is None or epoch == 0 or epoch % every or not bool(state.running):
            return state
        projected = project({k: np.asarray(v) for k, v in state.params.items()})
        return state._replace(params={k: jnp.asarray(projected[k], v.dtype) for k, v in state.params.items()})

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


def fit(trainer: Trainer, key: jax.Array, hyper: dict, track_spectrum: bool = True,
        progress: bool = True, samplers: Sequence[Any] = (), project_every: int = 0) -> FitResult:
    """Host loop over the jitted chunks: history, spectrum samples, progress bar, stop on divergence.

    Between chunks (and before the first), eig(J) is sampled when track_spectrum, and every sampler's
    `sample(step, params)` is called (e.g. a FixedPointTracker); their `arrays()` join the spectrum's."""
    rows = []
    samplers = [*([SpectrumTracker(trainer.model.recurrent)] if track_spectrum else []), *samplers]
    bar = tqdm(total=trainer.total_steps(), disable=not progress, unit="step", dynamic_ncols=True,
               mininterval=1.0, leave=False)
    state = None
    between = projection_every(trainer, project_every) if project_every else None
    compiling = CompileNotice(bar)
    for index, state, records in trainer.chunks(key, hyper, skip_idle=True, between=between,
                                                on_compile=compiling.start):
        compiling.done()
        if records is not None:
            chunk = records_to_rows(records, trainer.stages[index].name)
            rows.append(chunk)
            bar.set_description(trainer.stages[index].name, refresh=False)
            if len(chunk["loss"]):
                bar.set_postfix(loss=f"{chunk['loss'][-1]:.3e}", refresh=False)
            bar.update(len(chunk["step"]))
        if all_finite(state.params):
            for sampler in samplers:  # a diverged step may have left NaN/inf in params: nothing to sample
                sampler.sample(int(state.step), state.params)
        if bool(state.diverged):
            log.warning("run diverged at step %d", int(state.diverged_step))
            break
    bar.close()
    columns = {k: np.concatenate([r[k] for r in rows]) for k in (*RECORD_FIELDS, "stage")} if rows else \
        {k: [] for k in (*RECORD_FIELDS, "stage")}
    history = pd.DataFrame(columns)[["step", "stage", "loss", "task_loss", "reg_loss", "grad_norm"]]
    return FitResult(state, history, {k: v for sampler in samplers for k, v in sampler.arrays().items()})


def held_out_loss(trainer: Trainer, params) -> jax.Array:
    """The task loss of (effective) params on the task's test data."""
    outputs, _ = trainer.model.apply(params, jnp.asarray(trainer.task.test_inputs, trainer.dtype))
    return trainer.task.loss(outputs, jnp.asarray(trainer.task.test_targets, trainer.dtype), trainer.task.loss_weights)


class LossTracker:
    """Train and test loss (all samples) of the current parameters at every sample between chunks, and
    train and test accuracy for a task with a score (classification)."""

    def __init__(self, trainer: Trainer):
        task, dtype = trainer.task, trainer.dtype
        self.steps_per_epoch = trainer.steps_per_epoch
        self.rows: list[dict[str, float]] = []

        def evaluate(params):
            row = {}
            for split, inputs, targets in (("train", task.inputs, task.targets),
                                           ("test", task.test_inputs, task.test_targets)):
                outputs, _ = trainer.model.apply(params, jnp.asarray(inputs, dtype))
                targets = jnp.asarray(targets, dtype)
                row[f"{split}_loss"] = task.loss(outputs, targets, task.loss_weights)
                if task.score is not None:
                    row[f"{split}_accuracy"] = task.score(outputs, targets)
            return row

        self.evaluate = jax.jit(evaluate)

    def sample(self, step: int, params) -> None:
        if self.rows and self.rows[-1]["step"] == step:
            return
        self.rows.append({"step": step, **{k: float(v) for k, v in self.evaluate(params).items()}})

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        return {f"eval_{k}": np.array([row[k] for row in self.rows]) for k in self.rows[0]}

    def window_mean(self, name: str, window: tuple[int, int]) -> float | None:
        """Mean of eval_<name> over the samples whose epoch lies in [start, end]."""
        values = [row[name] for row in self.rows if window[0] <= row["step"] // self.steps_per_epoch <= window[1]]
        return float(np.mean(values)) if values else None


class ParamMetricsTracker:
    """The task's parameter metrics (e.g. distances to a teacher) at every sample between chunks."""

    def __init__(self, param_metrics):
        self.param_metrics, self.steps, self.rows = param_metrics, [], []

    def sample(self, step: int, params) -> None:
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(int(step))
        self.rows.append(self.param_metrics({k: np.asarray(v) for k, v in params.items()}))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        return {"param_step": np.array(self.steps),
                **{f"param_{name}": np.array([row[name] for row in self.rows]) for name in self.rows[0]}}


def rebound_metrics(arrays: dict[str, np.ndarray], steps_per_epoch: int) -> dict[str, float]:
    """For each tracked distance d(t): the epoch of its minimum and the rebound ratio d(final) / min d."""
    metrics = {}
    for key in [k for k in arrays if k.startswith("param_") and k.endswith("distance")]:
        name, values = key[len("param_"):], arrays[key]
        lowest = int(np.argmin(values))
        metrics[f"{name}_min_epoch"] = int(arrays["param_step"][lowest]) // steps_per_epoch
        metrics[f"{name}_rebound"] = float(values[-1] / values[lowest]) if values[lowest] > 0 else None
    return metrics


def evaluate(trainer: Trainer, state, hyper: dict) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics and analysis arrays of the best parameters of a finished fit."""
    params, mask = state.best_params, state.mask
    effective = jax.tree.map(jnp.multiply, params, mask)
    outputs, states = jax.jit(trainer.model.apply)(effective, jnp.asarray(trainer.task.inputs, trainer.dtype))
    outputs = np.asarray(outputs)
    task_loss = float(trainer.task.loss(outputs, trainer.task.targets, trainer.task.loss_weights))
    reg_loss = float(trainer.regularizer.penalty(params, hyper))
    host = {k: np.asarray(v) for k, v in params.items()}
    names = list(dict.fromkeys([*trainer.regularizer.targets, *trainer.model.masked])) or list(host)
    activity_loss = {}
    if trainer.model.rates is not None:  # the mean squared rate, and its κ-weighted part of the final loss
        activity = float(mean_squared_rate(trainer.model.rates(states), jnp.asarray(trainer.task.loss_weights)))
        activity_loss = {"activity": activity, "activity_loss": float(hyper["activity"]) * activity}
    metrics = {"status": "diverged" if bool(state.diverged) else "completed",
               "final_loss": task_loss + reg_loss + activity_loss.get("activity_loss", 0.0),
               "task_loss": task_loss, "reg_loss": reg_loss, **activity_loss,
               **sparsity_metrics(host, names), "steps": int(state.step),
               "diverged_step": int(state.diverged_step) if bool(state.diverged) else None,
               "initial_loss": float(state.init_loss)}
    if trainer.batch_size:
        metrics.update(epochs=int(state.step) // trainer.steps_per_epoch, stopped_early=bool(state.stopped))
    if trainer.task.test_inputs is not None:
        metrics["test_loss"] = float(held_out_loss(trainer, effective))
        if trainer.task.score is not None:
            test_outputs, _ = trainer.model.apply(effective, jnp.asarray(trainer.task.test_inputs, trainer.dtype))
            metrics["test_accuracy"] = float(trainer.task.score(test_outputs, trainer.task.test_targets))
    if trainer.task.param_metrics is not None and all_finite(host):
        metrics.update(trainer.task.param_metrics(host))
    arrays = dict(trainer.task.arrays(outputs)) if np.all(np.isfinite(outputs)) else {}
    recurrent = trainer.model.recurrent(params)
    if recurrent is not None and np.all(np.isfinite(np.asarray(recurrent))):
        arrays["final_eigenvalues"] = eigenvalues(recurrent)
        metrics["spectral_radius"] = float(np.max(np.abs(arrays["final_eigenvalues"])))
    if np.all(np.isfinite(outputs)):
        metrics.update(trainer.task.metrics(outputs))
    return metrics, arrays


def wants_dynamics(cfg: DictConfig) -> bool:
    """Whether the run asks for the dynamics analysis after training (fixed/slow points or PCA)."""
    a = cfg.analysis
    return bool(a.enabled and (a.fixed_points.enabled or a.slow_points.enabled or a.pca.enabled))


def fixed_point_tracker(trainer: Trainer, cfg: DictConfig) -> FixedPointTracker:
    """The sampler that finds the fixed points of analysis.track_tasks between training chunks."""
    return FixedPointTracker(trainer.model.apply, trainer.task.inputs, trainer.task.conditions,
                             cfg.analysis.track_tasks, DynamicsSettings.from_config(cfg.analysis),
                             trainer.dtype, seed=cfg.seed)


def analyse(trainer: Trainer, state, cfg: DictConfig) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fixed points, slow points and PCA of the trained network (best parameters), with progress logged."""
    params = jax.tree.map(jnp.multiply, state.best_params, state.mask)
    _, states = jax.jit(trainer.model.apply)(params, jnp.asarray(trainer.task.inputs, trainer.dtype))
    start = time.perf_counter()
    log.info("dynamics analysis: fixed points of %d conditions ...", len(trainer.task.conditions.inputs))
    metrics, arrays = analyse_dynamics(params, trainer.task.conditions, states,
                                       DynamicsSettings.from_config(cfg.analysis), tau=float(cfg.model.tau),
                                       seed=cfg.seed)
    log.info("dynamics analysis done (%.1fs): %s", time.perf_counter() - start,
             " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
    return metrics, arrays


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Validate, train, evaluate and write a complete run directory (DONE last). Returns metrics.

    A bad config value raises ConfigError before anything is computed or written. Any other error is
    recorded in metrics.json as status "failed" (so the aggregator lists it) and raised again.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    artifacts.clear_done(run_dir)
    artifacts.remove_temp_files(run_dir)
    try:
        return _run(cfg, run_dir)
    except ConfigError:
        raise  # refused before any compute (check_resources): nothing ran, the CLI says why (exit 2)
    except Exception as err:
        record_failure(run_dir, err)
        raise


def record_failure(run_dir: Path, err: BaseException) -> None:
    """metrics.json := {status: failed, error}. If that cannot be written either (a full disk), no
    metrics.json that says completed is left behind (the run then reads as incomplete) and stderr
    says why; the original error is raised by the caller either way."""
    reason = f"{type(err).__name__}: {err}"
    try:  # DONE cannot exist here: run() cleared it and _run writes it last
        artifacts.write_metrics(run_dir, {"status": "failed", "error": reason})
    except Exception as write_error:  # noqa: BLE001 (reported, then the run's own error is raised)
        with contextlib.suppress(OSError):
            (run_dir / artifacts.METRICS).unlink(missing_ok=True)
        print(f"rnn-sparsity: could not record the failure in {run_dir / artifacts.METRICS} "
              f"({type(write_error).__name__}: {write_error}); the run failed with {reason}", file=sys.stderr)


def _run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    enable_compilation_cache(cfg.compilation_cache)
    set_precision(cfg.precision)
    trainer = make_trainer(cfg)
    hyper = hyper_values(cfg, trainer.dtype)
    check_resources(trainer, cfg, hyper)
    key = jax.random.key(cfg.seed)
    samplers = [fixed_point_tracker(trainer, cfg)] if cfg.analysis.enabled and cfg.analysis.track_tasks else []
    losses = LossTracker(trainer) if cfg.analysis.enabled and trainer.task.test_inputs is not None else None
    if losses is not None:
        samplers.append(losses)
    if cfg.analysis.enabled and trainer.task.track_param_metrics:
        samplers.append(ParamMetricsTracker(trainer.task.param_metrics))
    result = fit(trainer, key, hyper, track_spectrum=cfg.analysis.enabled, progress=cfg.progress,
                 samplers=samplers, project_every=int(OmegaConf.select(cfg, "task.project_every", default=0)))
    metrics, arrays = evaluate(trainer, result.state, hyper)
    metrics.update(rebound_metrics(result.samples, trainer.steps_per_epoch))
    if losses is not None and trainer.task.score is not None and trainer.task.average_window is not None:
        metrics["window_test_accuracy"] = losses.window_mean("test_accuracy", trainer.task.average_window)
    if wants_dynamics(cfg) and metrics["status"] == "completed":
        dynamics_metrics, dynamics_arrays = analyse(trainer, result.state, cfg)
        metrics.update(dynamics_metrics)
        arrays.update(dynamics_arrays)
    stages_run = result.history["stage"].unique().tolist()
    metrics.update(stages=",".join(stages_run), wall_s=time.perf_counter() - start)

    state = result.state
    artifacts.write_params(run_dir, {k: np.asarray(v) for k, v in state.best_params.items()},
                           init={k: np.asarray(v) for k, v in state.init_params.items()},
                           mask={k: np.asarray(state.mask[k]) for k in trainer.model.masked})
    artifacts.write_history(run_dir, result.history)
    if cfg.analysis.enabled:
        artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {**result.samples, **arrays})
    artifacts.write_metrics(run_dir, metrics)
    if cfg.analysis.figures:
        from .plots.run import draw_run_figures

        draw_run_figures(run_dir)
    artifacts.mark_done(run_dir)
    shown = ("final_loss", "sparsity", "spectral_radius", *trainer.task.metric_names)
    log.info("%s %s [%s]: %s (%.1fs)", metrics["status"], run_dir, " ".join(artifacts.read_overrides(run_dir)),
             " ".join(f"{k}={metrics[k]:.4g}" for k in shown if metrics.get(k) is not None), metrics["wall_s"])
    return metrics
