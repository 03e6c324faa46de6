"""Teacher-student regression: students learn a fixed bias-free 1-D CNN teacher (tasks/teachers.py).

Inputs x ~ N(0, I₁₂) (n_train and n_test points drawn once from `task.data_seed`), targets
y = teacher(x) + σ ε with σ = `task.noise_std`, ε ~ N(0, 1) (train and test alike). Task loss: MSE.
The data are laid out time-major with T = 1, (1, B, 12), like every task's, so minibatches index axis 1.
Parameter metric `teacher_distance`: the Hungarian recovery distance of a bias-free student (an MLP, or a
CNN through its convolutions' dense matrices) to the teacher's dense layers (analysis/teacher_distance.py),
when the student has the teacher's depth.
"""

from __future__ import annotations

import numpy as np

from ..analysis.teacher_distance import recovery_distance
from . import Task
from .teachers import N_INPUTS, filter_banks, locally_connected_matrix, teacher_layers

NUMPY_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0.0), "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
                     "tanh": np.tanh}


def teacher_data(cfg, n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n_points, N_INPUTS))
    phi = NUMPY_ACTIVATIONS[cfg.activation]
    y = x
    for layer in teacher_layers(cfg.teacher):  # in NumPy float64, whatever JAX's precision
        y = phi(y @ layer.T)
    return x[None], (y + cfg.noise_std * rng.standard_normal(y.shape))[None]


def dense_layers(weights: list) -> list[np.ndarray]:
    """Student layers as dense (out, in) matrices: an MLP's as they are, a CNN student's kernels
    (C_out, C_in, k) as the matrix of their stride-k convolution (the teacher's layout, channel-major)."""
    dense, positions = [], N_INPUTS
    for w in map(np.asarray, weights):
        if w.ndim == 3:
            positions //= w.shape[-1]
            w = locally_connected_matrix(filter_banks([w], positions))
        dense.append(w)
    return dense


def make_task(cfg, model_cfg) -> Task:
    rng = np.random.default_rng(cfg.data_seed)
    inputs, targets = teacher_data(cfg, cfg.n_train, rng)
    test_inputs, test_targets = teacher_data(cfg, cfg.n_test, rng)
    teacher = teacher_layers(cfg.teacher)

    def param_metrics(params: dict) -> dict[str, float]:
        weights = dense_layers([params[f"W{l}"] for l in range(1, len(params) + 1) if f"W{l}" in params])
        if len(weights) != len(teacher):  # only a student of the teacher's depth is matched layer by layer
            return {}
        return {"teacher_distance": float(recovery_distance(weights, teacher, cfg.activation))}

    return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)), metrics=lambda outputs: {},
                arrays=lambda outputs: {}, test_inputs=test_inputs, test_targets=test_targets,
                param_metrics=param_metrics)
