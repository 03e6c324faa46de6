"""What a run is built from: its precision, its trainer (cached by the static part of its config, so the
runs of a sweep that share shapes in one process share one compilation), its traced values, and the
memory it needs (checked before anything compiles; a batch's size follows from it).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from .components import ConfigError, Parts
from .config import validate
from .train import TRAINER_GROUPS, Trainer, make_trainer, trainer_spec

log = logging.getLogger(__name__)
CACHED_TRAINERS = 8


def set_precision(precision: str) -> Any:
    """Turn JAX x64 on or off (before any array of the run exists) and return the float dtype."""
    jax.config.update("jax_enable_x64", precision == "float64")
    return jnp.float64 if precision == "float64" else jnp.float32


def static_key(cfg: DictConfig, parts: Parts) -> str:
    """What fixes a trainer's shapes and compilation: train.trainer_spec, the spec make_trainer builds
    from, as JSON. Runs with equal keys share a compiled trainer."""
    return json.dumps(trainer_spec(parts, cfg.precision), sort_keys=True)


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
    the pruner's state (a lottery run's parameters of every training and masks of every round);
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
    pruner = trainer.pruner  # its state: a lottery run keeps every training's parameters and every round's masks
    pruning = jax.eval_shape(lambda p, m: pruner.init(jax.random.key(0), p, {t: m[t] for t in pruner.targets},
                                                      hyper["pruner"]), params, mask)
    return {"parameters": 5 * nbytes(params), "optimizer state": optimizer,
            "trajectory": BACKWARD_FACTOR * trajectory, "pruner state": nbytes(pruning)}


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


MEMORY_FRACTION = 0.8  # of the free memory a batch's estimate may fill when batch_size is not given


def auto_batch_size(trainer: Trainer, hyper: dict) -> int:
    """How many members fit in one program: MEMORY_FRACTION of the free memory over one member's
    estimate (experiment.memory_estimate); no bound where the free memory is unknown."""
    available, _ = available_memory()
    need = max(1, sum(memory_estimate(trainer, hyper).values()))
    return max(1, int(MEMORY_FRACTION * available) // need) if available is not None else 1 << 30
