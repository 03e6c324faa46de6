"""The root config schema and the checks that span groups; every component declares its own schema and
checks (components.py).

Every YAML option in `conf/<group>/` names its component's schema in its defaults list
(`- /schema/<group>@_here_: <name>`), so Hydra checks types and refuses unknown keys when it composes;
an option from elsewhere (a researcher's YAML on Hydra's search path) is typed by `validate`. Ranges are
checked by `validate`, which raises `ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from . import artifacts
from .components import ConfigError, Parts, check, non_negative, one_of, refuse_unknown_keys, resolve

__all__ = ["Config", "ConfigError", "validate"]


@dataclass
class CheckpointConfig:
    every_s: float = 180.0  # seconds of training between checkpoints inside a run (0: none); checkpoints.py


@dataclass
class ObjectiveConfig:
    metric: str = "final_loss"  # what a job returns to Hydra's sweeper: a metric of the run (artifacts.objective_value)
    direction: str = "minimize"  # minimize | maximize; an optimising sweeper's direction must agree


@dataclass
class Config:
    model: Any = MISSING  # each group: a component's config, `_target_` naming its class
    task: Any = MISSING
    regularizer: Any = MISSING
    optimizer: Any = MISSING
    pruner: Any = MISSING
    analysis: Any = MISSING
    seed: int = 0  # one PRNG key per run: init, mask, data
    precision: str = "float32"  # float32 | float64 (turns on JAX x64 before any array exists)
    progress: bool = True  # progress bar on stderr
    compilation_cache: str = "auto"  # XLA's persistent cache: auto (~/.cache/rnn_sparsity/xla) | off | a folder
    resume: bool = True  # a sweep rerun into the same directory skips the runs already finished with this config
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


def register_configs() -> None:
    """Register the root schema, and the schemas of the built-in components under schema/<group>/ (each
    component module registers its own when imported; a YAML option names it in its defaults as
    `- /schema/<group>@_here_: <name>`). The built-in components are found by walking the packages."""
    ConfigStore.instance().store(name="config_schema", node=Config)
    for package in COMPONENT_PACKAGES:
        module = importlib.import_module(package)
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, f"{package}."):
                importlib.import_module(info.name)


COMPONENT_PACKAGES = ("rnn_sparsity.models", "rnn_sparsity.tasks", "rnn_sparsity.regularizers",
                      "rnn_sparsity.optimizers", "rnn_sparsity.pruners", "rnn_sparsity.probes")
register_configs()


def _leaves(node: Any, prefix: str = ""):
    """(dotted key, value) of every scalar in a config container (lists indexed: key[0])."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for name, value in items:
        key = f"{prefix}.{name}" if isinstance(node, dict) and prefix else (
            f"{prefix}[{name}]" if not isinstance(node, dict) else str(name))
        if isinstance(value, (dict, list)):
            yield from _leaves(value, key)
        else:
            yield key, value


KEY_SEEDS = 2**32  # JAX keeps 32 bits of a seed without x64: seed=2**32 would silently be seed=0


def _validate_scalars(cfg: DictConfig) -> None:
    """Checks that hold for every key of every component: floats are finite (NaN and ±inf would only
    show up as a diverged or failed run after compiling), seeds are >= 0, and the run's PRNG seed is
    below 2**32 (JAX keeps only its low 32 bits in float32 runs and overflows beyond int64)."""
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=True)):
        if isinstance(value, float):
            check(math.isfinite(value), key, value, "must be a finite number (not nan or inf)")
        if key.rsplit(".", 1)[-1].endswith("seed") and isinstance(value, int) and not isinstance(value, bool):
            check(value >= 0, key, value, "must be >= 0")
    check(cfg.seed < KEY_SEEDS, "seed", cfg.seed, f"must be < 2**32 = {KEY_SEEDS} (JAX keeps 32 bits of a seed)")


def objective_metrics(parts: Parts) -> list[str]:
    """The metrics `objective.metric` may name: those every run reports (artifacts.RUN_METRICS) and
    those the run's components declare (summary_metrics, unplotted_metrics)."""
    declared = (name for part in parts for name in (*part.summary_metrics, *part.unplotted_metrics) if "*" not in name)
    return list(dict.fromkeys((*artifacts.RUN_METRICS, *declared)))


def sweeper_direction() -> str | None:
    """hydra.sweeper.direction of the sweeper running this job (hydra-optuna-sweeper's, a name or its
    Direction enum), or None: no Hydra job, or a sweeper without one (the resume and basic sweepers)."""
    if not HydraConfig.initialized():
        return None
    direction = OmegaConf.select(HydraConfig.get(), "sweeper.direction", default=None)
    return getattr(direction, "name", direction)


def _validate_objective(cfg: DictConfig, parts: Parts) -> None:
    """A metric the run reports, a direction, and the optimising sweeper's direction the same (were it
    the opposite, the worst value a diverged run returns would be its best)."""
    one_of(cfg, "objective.direction", ("minimize", "maximize"))
    metrics = objective_metrics(parts)
    check(cfg.objective.metric in metrics, "objective.metric", cfg.objective.metric,
          f"must be a metric this run can report: {', '.join(metrics)}")
    searched = sweeper_direction()
    check(searched is None or searched == cfg.objective.direction, "objective.direction", cfg.objective.direction,
          f"must equal hydra.sweeper.direction={searched} (set hydra.sweeper.direction='${{objective.direction}}')")


def validate(cfg: DictConfig) -> Parts:
    """Check every range before any compute; raise ConfigError on the first bad value. Returns the
    run's components (each group typed against its schema)."""
    refuse_unknown_keys(cfg, Config, "")
    parts = resolve(cfg)
    _validate_scalars(cfg)
    one_of(cfg, "precision", ("float32", "float64"))
    non_negative(cfg, "checkpoint.every_s")
    _validate_objective(cfg, parts)
    check(parts.task.layout in parts.model.inputs, "model.name", cfg.model.get("name"),
          f"task={cfg.task.get('name')} gives {parts.task.layout} inputs; model={cfg.model.get('name')} "
          f"learns {' or '.join(parts.model.inputs) or 'no task inputs'}")
    for part in parts:
        part.check(parts)
    return parts
