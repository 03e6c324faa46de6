"""Teacher-student regression: students learn a fixed bias-free 1-D CNN teacher (tasks/teachers.py).

The study is laschulz/investigating_sparseNN (src/runner.py, src/trainer.py, src/metrics.py,
config_files/*.json): x ~ N(0, I₁₂), y = teacher(x), MSE. Here inputs x ~ N(0, I₁₂), n_train training and
n_test held-out points drawn once from `task.data_seed` (train first, from one generator), targets
y = teacher(x) + σ ε with σ = `task.noise_std`, ε ~ N(0, 1) (train and test alike). The study draws its
100 000 points once per run from the run's seed, trains on all of them and holds none out: its presets set
`task.data_seed: ${seed}`, `task.n_train: 100000` and `task.n_test: 0` (no held-out set, no test_loss).
`task.activation` is the teacher's activation, the student's is its model's (`model.activation`): the
study crosses them 3 × 3. The data are laid out time-major with T = 1, (1, B, 12), like every static
task's, so minibatches index axis 1.

Parameter metrics, of the best parameters at the end and (with analysis on) of the parameters after every
chunk (analysis.npz: param_step, param_<name>):
  near_zero_fraction      the fraction of the student's weights (regularizer.targets) with |θ| < ε,
                          ε = `analysis.near_zero` (the study's zero count: 1e-4)
  weight_match_distance   the study's distance (src/metrics.py; analysis/student_metrics.py): weights matched
                          value by value per layer, in the source's parameter order
  teacher_distance        the Hungarian unit-recovery distance of a bias-free student (an MLP, or a CNN
                          through its convolutions' dense matrices) to the teacher's dense layers
                          (analysis/teacher_distance.py), when the student has the teacher's depth
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.sparsity import NEAR_ZERO, sparsity_metrics
from ..analysis.student_metrics import weight_match_distance
from ..analysis.teacher_distance import recovery_distance
from ..components import TaskComponent, non_negative, one_of, positive
from ..contracts import Task
from ..maths import ACTIVATIONS, HIDDEN_ACTIVATIONS
from ..probes import ParamMetricsProbe
from .teachers import (N_INPUTS, TEACHERS, filter_banks, locally_connected_matrix, source_parameters,
                       teacher_layers)

@dataclass
class TeacherStudentConfig:
    _target_: str = "rnn_sparsity.tasks.teacher_student.TeacherStudent"
    name: str = "teacher_student"
    teacher: str = "baseline_cnn"  # baseline_cnn | multichannel_cnn | split_filter_cnn
    activation: str = "relu"  # the teacher's, every layer: relu | sigmoid | tanh (the student's: model.activation)
    n_train: int = 1024  # training points x ~ N(0, I_12) (the study: 100 000)
    n_test: int = 1024  # held-out points for test_loss; 0: none (the study holds none out)
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    data_seed: int = 0  # the data are drawn once from this seed (the study: the run's seed, `${seed}`)


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


def student_weights(params: dict) -> list[np.ndarray]:
    """The student's weight tensors W1, W2, ... in layer order (an MLP's (out, in), a CNN's (C_out, C_in, k):
    PyTorch's Linear and Conv1d layouts, the source's)."""
    return [np.asarray(params[f"W{l}"]) for l in range(1, len(params) + 1) if f"W{l}" in params]


class TeacherStudent(TaskComponent):
    Config = TeacherStudentConfig
    layout = "static"
    # the teacher and its activation change only the targets' values: runs that differ in them (and in the
    # data seed, the noise) share one compiled trainer and train as one vmapped batch
    data_keys = ("noise_std", "data_seed", "teacher", "activation")
    summary_metrics = ("test_loss", "teacher_distance", "weight_match_distance")

    def check(self, parts) -> None:
        one_of(self.cfg, "task.teacher", TEACHERS)
        one_of(self.cfg, "task.activation", HIDDEN_ACTIVATIONS)
        positive(self.cfg, "task.n_train")
        non_negative(self.cfg, "task.n_test", " (0: no held-out set)")
        non_negative(self.cfg, "task.noise_std")

    def io(self) -> tuple[int, int]:
        return N_INPUTS, 1

    def n_train(self) -> int:
        return int(self.group_cfg.n_train)

    def build(self, dtype) -> Task:
        cfg = self.group_cfg
        rng = np.random.default_rng(cfg.data_seed)
        inputs, targets = teacher_data(cfg, cfg.n_train, rng)
        test_inputs, test_targets = teacher_data(cfg, cfg.n_test, rng) if cfg.n_test > 0 else (None, None)
        return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)),
                    test_inputs=test_inputs, test_targets=test_targets)

    def teacher_distance(self, params: dict) -> dict[str, float]:
        teacher = teacher_layers(self.group_cfg.teacher)
        weights = dense_layers(student_weights(params))
        if len(weights) != len(teacher):  # only a student of the teacher's depth is matched layer by layer
            return {}
        return {"teacher_distance": float(recovery_distance(weights, teacher, self.group_cfg.activation))}

    def near_zero(self) -> float:
        return float(self.cfg.analysis.get("near_zero", NEAR_ZERO))

    def weight_match_distance(self, params: dict) -> dict[str, float]:
        """The study's distance (analysis/student_metrics.py), |·| first when teacher and student are tanh."""
        weights = student_weights(params)
        if not weights:
            return {}
        both_tanh = self.group_cfg.activation == "tanh" and self.cfg.model.get("activation") == "tanh"
        return {"weight_match_distance": weight_match_distance(source_parameters(self.group_cfg.teacher), weights,
                                                               both_tanh, self.near_zero())}

    def near_zero_fraction(self, params: dict) -> dict[str, float]:
        """The fraction of weights with |θ| < analysis.near_zero over the regularizer's targets (all weights
        when none of them is a parameter): evaluate's near_zero_fraction, here also along training."""
        names = [t for t in self.targets if t in params] or list(params)
        return {"near_zero_fraction": sparsity_metrics(params, names, self.near_zero())["near_zero_fraction"]}

    def param_metrics(self, params: dict) -> dict[str, float]:
        return {**self.near_zero_fraction(params), **self.weight_match_distance(params),
                **self.teacher_distance(params)}

    targets: tuple[str, ...] = ()  # the regularizer's (its trainer's), set when the run's probes are made

    def probes(self, trainer) -> list:
        self.targets = tuple(trainer.regularizer.targets)
        return [ParamMetricsProbe(self.param_metrics, trainer.steps_per_epoch, track=bool(self.cfg.analysis.enabled))]

    def run_figures(self):
        from ..plots.teacher_student import near_zero_figure

        return {"near_zero.png": near_zero_figure}

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        from ..plots.teacher_student import sweep_outputs

        return sweep_outputs(runs, keys, out)
