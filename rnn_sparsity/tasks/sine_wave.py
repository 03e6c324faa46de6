"""Sussillo & Barak's sine-wave generator.

Task j of n: ω_j = linspace(ω_min, ω_max, n)_j, static level u_j = j/n + 0.25. From x = 0 the network
is driven for `drive_time` with input sin(ω_j t) + u_j, then runs for `train_time` with the static input
u_j alone and must output sin(ω_j t) (t keeps counting, so the target continues the drive's phase).
Task loss: MSE over tasks and train-phase steps. Metric `freq_error`: median over tasks of
|ω_out - ω_j| / ω_j, ω_out the dominant angular frequency of the train-phase output.
"""

from __future__ import annotations

import numpy as np

from ..analysis.spectral import dominant_frequency
from . import Conditions, Task


def frequencies(cfg) -> np.ndarray:
    return np.linspace(cfg.omega_min, cfg.omega_max, cfg.n_freqs)


def make_task(cfg, model_cfg) -> Task:
    dt = float(model_cfg.dt)
    n_drive, n_train = int(round(cfg.drive_time / dt)), int(round(cfg.train_time / dt))
    omegas = frequencies(cfg)
    levels = np.arange(cfg.n_freqs) / cfg.n_freqs + 0.25
    t = np.arange(n_drive + n_train)[:, None] * dt  # (T, 1)
    drive = (np.arange(n_drive + n_train) < n_drive)[:, None]
    sines = np.sin(omegas[None, :] * t)  # (T, B)
    inputs = (np.where(drive, sines, 0.0) + levels[None, :])[..., None]
    targets = sines[..., None]
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
                metric_names=("freq_error",), conditions=conditions)
