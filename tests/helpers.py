"""Shared helpers for the tests: compose configs with Hydra's compose API, tiny sizes."""

from __future__ import annotations

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
