"""Teacher-student regression: students learn a fixed bias-free 1-D CNN teacher (tasks/teachers.py).

Inputs x ~ N(0, I₁₂) (n_train and n_test points drawn once from `task.data_seed`), targets
y = teacher(x) + σ ε with σ = `task.noise_std`, ε ~ N(0, 1) (train and test alike). Task loss: MSE.
The data are laid out time-major with T = 1, (1, B, 12), like every static task's, so minibatches index
axis 1. Parameter metric `teacher_distance`: the Hungarian recovery distance of a bias-free student (an
MLP, or a CNN through its convolutions' dense matrices) to the teacher's dense layers
(analysis/teacher_distance.py), when the student has the teacher's depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.teacher_distance import recovery_distance
from ..components import TaskComponent, non_negative, one_of, positive
from ..contracts import Task
from ..maths import ACTIVATIONS, HIDDEN_ACTIVATIONS
from ..probes import ParamMetricsProbe
from .teachers import N_INPUTS, TEACHERS, filter_banks, locally_connected_matrix, teacher_layers


@dataclass
class TeacherStudentConfig:
    _target_: str = "rnn_sparsity.tasks.teacher_student.TeacherStudent"
    name: str = "teacher_student"
    teacher: str = "baseline_cnn"  # baseline_cnn | multichannel_cnn | split_filter_cnn
    activation: str = "relu"  # the teacher's activation after every layer: relu | sigmoid | tanh
    n_train: int = 1024  # training points x ~ N(0, I_12)
    n_test: int = 1024
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    data_seed: int = 0  # the data are drawn once from this seed


def teacher_data(cfg, n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n_points, N_INPUTS))
    phi = ACTIVATIONS[cfg.activation].numpy
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


class TeacherStudent(TaskComponent):
    Config = TeacherStudentConfig
    layout = "static"
    data_keys = ("noise_std", "data_seed")
    summary_metrics = ("test_loss", "teacher_distance")

    def check(self, parts) -> None:
        one_of(self.cfg, "task.teacher", TEACHERS)
        one_of(self.cfg, "task.activation", HIDDEN_ACTIVATIONS)
        for key in ("task.n_train", "task.n_test"):
            positive(self.cfg, key)
        non_negative(self.cfg, "task.noise_std")

    def io(self) -> tuple[int, int]:
        return N_INPUTS, 1

    def n_train(self) -> int:
        return int(self.group_cfg.n_train)

    def build(self, dtype) -> Task:
        cfg = self.group_cfg
        rng = np.random.default_rng(cfg.data_seed)
        inputs, targets = teacher_data(cfg, cfg.n_train, rng)
        test_inputs, test_targets = teacher_data(cfg, cfg.n_test, rng)
        return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)),
                    test_inputs=test_inputs, test_targets=test_targets)

    def teacher_distance(self, params: dict) -> dict[str, float]:
        teacher = teacher_layers(self.group_cfg.teacher)
        weights = dense_layers([params[f"W{l}"] for l in range(1, len(params) + 1) if f"W{l}" in params])
        if len(weights) != len(teacher):  # only a student of the teacher's depth is matched layer by layer
            return {}
        return {"teacher_distance": float(recovery_distance(weights, teacher, self.group_cfg.activation))}

    def probes(self, trainer) -> list:
        return [ParamMetricsProbe(self.teacher_distance, trainer.steps_per_epoch)]
