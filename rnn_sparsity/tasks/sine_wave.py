"""Sussillo & Barak's sine-wave generator.

Task j of n: ω_j = linspace(ω_min, ω_max, n)_j, static level u_j = j/n + 0.25. From x = 0 the network
is driven for `drive_time` with input sin(ω_j t) + u_j, then runs for `train_time` with the static input
u_j alone and must output A sin(ω_j t) (t keeps counting, so the target continues the drive's phase;
A = `target_amplitude`, 1 in the paper; the drive's sine keeps amplitude 1). `input_gain` g_u multiplies
the whole input (drive and level; 1 in the paper): the same as B's initial scale times g_u on the paper's
inputs, since the input enters only through B u.
Task loss: MSE over tasks and train-phase steps. Metric `freq_error`: median over tasks of
|ω_out - ω_j| / ω_j, ω_out the dominant angular frequency of the train-phase output. The step dt is the
model's (`model.dt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from omegaconf import OmegaConf

from ..analysis.spectral import dominant_frequency
from ..components import TaskComponent, check, positive
from ..contracts import Conditions, Task


@dataclass
class SineWaveConfig:
    _target_: str = "rnn_sparsity.tasks.sine_wave.SineWave"
    name: str = "sine_wave"
    n_freqs: int = 51  # number of tasks (frequencies)
    omega_min: float = 0.1  # lowest angular frequency (rad per time unit)
    omega_max: float = 0.6  # highest angular frequency
    drive_time: float = 8.0  # time driven by the sine before the free-running phase
    train_time: float = 64.0  # free-running phase over which the loss is taken
    # A, the target's amplitude. The readout is linear, so a network that outputs A sin(ω t) through w
    # outputs the paper's sin(ω t) through w / A: A < 1 asks for a smaller orbit in rate space for the
    # same readout weights (the tanh nearer its linear range), without changing the paper's inputs.
    target_amplitude: float = 1.0
    # g_u, a factor on the whole input (drive and level). B u is all the network sees of it, so this is
    # B's initial scale times g_u on the paper's inputs (B ~ N(0, g_u²/N)); the fixed-point analysis gets
    # the scaled level g_u u_j, so its fields are those of the network as trained.
    input_gain: float = 1.0


def frequencies(cfg) -> np.ndarray:
    return np.linspace(cfg.omega_min, cfg.omega_max, cfg.n_freqs)


def make_task(cfg, dt: float) -> Task:
    """The task for task config `cfg` at Euler step dt."""
    n_drive, n_train = int(round(cfg.drive_time / dt)), int(round(cfg.train_time / dt))
    omegas = frequencies(cfg)
    levels = cfg.input_gain * (np.arange(cfg.n_freqs) / cfg.n_freqs + 0.25)  # × 1.0 is exact: defaults unchanged
    t = np.arange(n_drive + n_train)[:, None] * dt  # (T, 1)
    drive = (np.arange(n_drive + n_train) < n_drive)[:, None]
    sines = np.sin(omegas[None, :] * t)  # (T, B)
    inputs = (np.where(drive, cfg.input_gain * sines, 0.0) + levels[None, :])[..., None]
    targets = (cfg.target_amplitude * sines)[..., None]
    weights = (~drive).astype(float)[..., None]  # (T, 1, 1)
    train_time = t[n_drive:, 0]

    def metrics(outputs: np.ndarray) -> dict[str, float]:
        omega_out = dominant_frequency(outputs[n_drive:, :, 0], dt, omega_max=10 * cfg.omega_max)
        return {"freq_error": float(np.median(np.abs(omega_out - omegas) / omegas))}

    def arrays(outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {"task_time": train_time, "task_outputs": outputs[n_drive:].astype(np.float32),
                "task_targets": targets[n_drive:].astype(np.float32), "task_omegas": omegas}

    conditions = Conditions(inputs=levels[:, None], trial_condition=np.arange(cfg.n_freqs),
                            window=slice(n_drive, n_drive + n_train), anchor_step=n_drive - 1, omegas=omegas)
    return Task(inputs=inputs, targets=targets, loss_weights=weights, metrics=metrics, arrays=arrays,
                conditions=conditions)


class SineWave(TaskComponent):
    Config = SineWaveConfig
    layout = "sequence"
    summary_metrics = ("freq_error",)

    def dt(self) -> float:
        return float(OmegaConf.select(self.cfg, "model.dt"))

    def check(self, parts) -> None:
        cfg = self.cfg
        check(OmegaConf.select(cfg, "model.dt") is not None, "model", cfg.model.get("name"),
              "task=sine_wave needs a model with a time step model.dt")
        for key in ("task.n_freqs", "task.omega_min", "task.omega_max", "task.train_time", "task.target_amplitude",
                    "task.input_gain"):
            positive(cfg, key)
        task = self.group_cfg
        check(task.drive_time >= 0, "task.drive_time", task.drive_time, "must be >= 0")
        check(task.omega_max >= task.omega_min, "task.omega_max", task.omega_max,
              f"must be >= task.omega_min ({task.omega_min})")
        nyquist = math.pi / self.dt()
        check(task.omega_max < nyquist, "task.omega_max", task.omega_max,
              f"must be below the Nyquist frequency pi/model.dt = {nyquist:.3g}")
        check(task.train_time / self.dt() >= 2, "task.train_time", task.train_time,
              "must span at least 2 steps of model.dt")

    def build(self, dtype) -> Task:
        return make_task(self.group_cfg, self.dt())

    def n_train(self) -> int:
        return int(self.group_cfg.n_freqs)

    def n_conditions(self) -> int:
        return int(self.group_cfg.n_freqs)

    def run_figures(self):
        from ..plots.run import output_figure

        return {"output_vs_target.png": output_figure}
