"""Tasks: each module exposes `make_task(cfg, model_cfg) -> Task`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np


def weighted_mse(outputs: Any, targets: Any, weights: Any) -> Any:
    """Σ_t w_t Σ_b,k (z - y)² / (Σ_t w_t · B · n_out): the MSE over the steps with weight 1."""
    sq = weights * (outputs - targets) ** 2
    return jnp.sum(sq) / (jnp.sum(weights) * outputs.shape[1] * outputs.shape[2])


class Conditions(NamedTuple):
    """The static inputs under which a dynamical task's fixed points are sought, and where its trials
    show the network's dynamics under them.

    inputs (C, n_in): one static input per condition. trial_condition (B,): the condition of each trial
    (batch entry). window: the steps of a trial that form its trajectory under its condition's input
    (the sine task's free-running phase). anchor_step: the step whose state ends the drive phase and
    starts the trajectory (None when a task has none). omegas (C,): the target angular frequency per
    condition (None for non-oscillatory tasks).
    """

    inputs: np.ndarray
    trial_condition: np.ndarray
    window: slice
    anchor_step: int | None = None
    omegas: np.ndarray | None = None


class Task(NamedTuple):
    """Data and scoring of one task family, all tasks as one batch.

    inputs (T, B, n_in), targets (T, B, n_out) and loss_weights (T, 1, 1) are NumPy arrays; the task loss
    is the weighted MSE. metrics(outputs) -> flat dict of task metrics from the network's outputs
    (T, B, n_out); arrays(outputs) -> named arrays worth keeping in analysis.npz.
    """

    inputs: np.ndarray
    targets: np.ndarray
    loss_weights: np.ndarray
    metrics: Callable[[np.ndarray], dict[str, float]]
    arrays: Callable[[np.ndarray], dict[str, np.ndarray]]
    metric_names: tuple[str, ...] = ()  # the keys `metrics` returns (for logs and summaries)
    conditions: Conditions | None = None  # for fixed-point analysis (dynamical tasks only)
    test_inputs: np.ndarray | None = None  # held-out data (test_loss), same layout as inputs
    test_targets: np.ndarray | None = None
    param_metrics: Callable[[dict], dict[str, float]] | None = None  # metrics of the trained parameters
    initial_params: Callable[..., dict] | None = None  # (key, hyper, model's init) -> the student's start
    track_param_metrics: bool = False  # record param_metrics at every sample during training too
    project: Callable[[dict], dict] | None = None  # host-side map of the parameters (task.project_every)
    loss: Callable[..., Any] = weighted_mse  # (outputs, targets, loss_weights) -> task loss (jnp)
    score: Callable[..., Any] | None = None  # (outputs, targets) -> accuracy, for classification tasks
    average_window: tuple[int, int] | None = None  # epochs over which window_test_accuracy averages

    @property
    def n_inputs(self) -> int:
        return self.inputs.shape[-1]

    @property
    def n_outputs(self) -> int:
        return self.targets.shape[-1]


def make_task(cfg, model_cfg) -> Task:
    from . import fast_decay, flipflop, iris, mlp_teacher, sine_wave, teacher_student

    builders = {"sine_wave": sine_wave.make_task, "flipflop": flipflop.make_task,
                "teacher_student": teacher_student.make_task, "mlp_teacher": mlp_teacher.make_task,
                "iris": iris.make_task, "fast_decay": fast_decay.make_task}
    return builders[cfg.name](cfg, model_cfg)
