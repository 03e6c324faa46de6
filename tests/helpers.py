"""Shared helpers for the tests: compose configs with Hydra's compose API, tiny sizes."""

from __future__ import annotations

import math

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import rnn_sparsity.config  # noqa: F401  (registers schemas)

# A network small enough that a full training run takes a few seconds on 2 CPU cores.
TINY = [
    "model.n_units=16", "model.dt=0.2", "task.n_freqs=3", "task.drive_time=4", "task.train_time=24",
    "optimizer.steps=60", "optimizer.lbfgs_steps=20", "optimizer.lr=1e-2", "analysis.eig_every=20",
    "analysis.figures=false", "progress=false",
]


def compose_cfg(*overrides: str, tiny: bool = True) -> DictConfig:
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*(TINY if tiny else []), *overrides])


def parts_of(cfg: DictConfig):
    """The run's components (validated), as the CLI builds them."""
    from rnn_sparsity.config import validate

    return validate(cfg)


def build_task(cfg: DictConfig, dtype=None):
    import jax.numpy as jnp

    return parts_of(cfg).task.build(dtype or jnp.float32)


def build_model(cfg: DictConfig, n_inputs: int, n_outputs: int, dtype=None):
    """The model of cfg for a task with these widths (a stand-in task record: only its shapes are read)."""
    import jax.numpy as jnp
    import numpy as np

    from rnn_sparsity.contracts import Task

    task = Task(inputs=np.zeros((1, 1, n_inputs)), targets=np.zeros((1, 1, n_outputs)), loss_weights=np.ones((1, 1, 1)))
    return parts_of(cfg).model.build(task, dtype or jnp.float32)


def build_regularizer(cfg: DictConfig, param_shapes: dict):
    return parts_of(cfg).regularizer.build(param_shapes)


def model_hyper(**values) -> dict:
    """hyper["model"] for a model's init: sparsity s and gain g (0 and 1 unless given)."""
    return {"sparsity": values.get("sparsity", 0.0), "gain": values.get("gain", 1.0)}


def mismatches(expected: dict, actual: dict, rtol: float, ignore: tuple[str, ...] = ()) -> list[str]:
    """Every metric of `expected` (but `ignore`) that `actual` lacks or has otherwise (numbers beyond
    rtol, relative to the larger magnitude, with an absolute floor of rtol x 1e-3 for values at 0)."""
    problems = []
    for key, want in expected.items():
        if key in ignore:
            continue
        if key not in actual:
            problems.append(f"{key}: missing (was {want!r})")
            continue
        got = actual[key]
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            if not math.isclose(want, got, rel_tol=rtol, abs_tol=rtol * 1e-3):
                problems.append(f"{key}: {got!r} != {want!r} (rel {abs(got - want) / max(abs(want), 1e-300):.2g})")
        elif want != got:
            problems.append(f"{key}: {got!r} != {want!r}")
    return problems
