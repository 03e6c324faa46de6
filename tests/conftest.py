"""Fixtures: `synthetic_run` writes a realistic run directory with the artifacts writers."""

import os
import sys
from pathlib import Path

# Several test processes (pytest -n auto) share a machine: on a GPU, none may grab most of its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

from rnn_sparsity import artifacts  # noqa: E402
from rnn_sparsity.compile_cache import enable_compilation_cache  # noqa: E402

# The tool's own persistent compilation cache (RNN_SPARSITY_CACHE_DIR, else ~/.cache/rnn_sparsity/xla):
# a program compiled by one test, test process or subprocess (the multirun tests) is loaded, not
# recompiled, by the next; the cache key covers program, options, JAX version and device.
enable_compilation_cache("auto")

N_UNITS, N_TASKS, STAGE_CHANGE, N_STEPS = 8, 5, 20, 40


def _config(strength: float, sparsity: float, seed: int) -> dict:
    return {
        "model": {"_target_": "rnn_sparsity.models.ctrnn.CTRNN", "name": "ctrnn", "n_units": N_UNITS, "sparsity": sparsity, "dt": 0.1, "tau": 1.0, "gain": 1.0},
        "task": {"_target_": "rnn_sparsity.tasks.sine_wave.SineWave", "name": "sine_wave", "n_freqs": N_TASKS, "omega_min": 0.1, "omega_max": 0.6,
                 "drive_time": 8.0, "train_time": 64.0},
        "regularizer": {"_target_": "rnn_sparsity.regularizers.elastic_net.L1", "name": "l1", "strength": strength,
                        "targets": ["J"],
                        "reduction": "mean", "mode": "penalty"},
        "optimizer": {"_target_": "rnn_sparsity.optimizers.AdamLBFGS", "name": "adam_lbfgs", "lr": 0.001, "steps": STAGE_CHANGE, "momentum": 0.9,
                      "lbfgs_steps": N_STEPS - STAGE_CHANGE, "loss_threshold": 1e-4, "divergence_factor": 1e4},
        "analysis": {"_target_": "rnn_sparsity.probes.Analysis", "name": "default", "enabled": True, "eig_every": 10, "figures": True},
        "seed": seed, "precision": "float32", "progress": False,
    }


def make_synthetic_run(run_dir: Path, *, strength: float = 0.0, sparsity: float = 0.0, seed: int = 0,
                       status: str = "completed", done: bool = True, analysis: bool = True,
                       overrides: list[str] | None = None) -> Path:
    """A run dir with N=8 units, 5 tasks, adam for steps < 20 then lbfgs, 3 spectrum samples.

    final_loss = 1e-3 (1 + 10 λ + s) + 1e-5 seed (so tests can recompute it); a "failed" run holds
    only {status, error}; a "diverged" one has null losses.
    """
    run_dir = Path(run_dir)
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(_config(strength, sparsity, seed)), hydra_dir / "config.yaml")
    if overrides is None:
        overrides = [f"regularizer.strength={strength}", f"model.sparsity={sparsity}", f"seed={seed}"]
    OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")

    if status == "failed":
        artifacts.write_metrics(run_dir, {"status": "failed", "error": "RuntimeError: synthetic failure"})
    else:
        _write_outputs(run_dir, strength, sparsity, seed, status, analysis)
    if done:
        artifacts.mark_done(run_dir)
    return run_dir


def _write_outputs(run_dir, strength, sparsity, seed, status, analysis) -> None:
    rng = np.random.default_rng(seed)
    mask = (rng.uniform(size=(N_UNITS, N_UNITS)) >= sparsity).astype(float)
    J = rng.normal(0, 1 / np.sqrt(N_UNITS), (N_UNITS, N_UNITS)) * mask
    params = {"J": J, "B": rng.normal(size=(N_UNITS, 1)), "b_x": np.zeros(N_UNITS),
              "w": rng.normal(size=(1, N_UNITS)), "b_z": np.zeros(1)}
    artifacts.write_params(run_dir, params, init=params, mask={"J": mask})

    steps = np.arange(N_STEPS)
    loss = 0.5 * np.exp(-steps / 10) + 1e-3
    reg = strength * np.full(N_STEPS, 0.1)
    artifacts.write_history(run_dir, pd.DataFrame({
        "step": steps, "stage": np.where(steps < STAGE_CHANGE, "adam", "lbfgs"), "loss": loss + reg,
        "task_loss": loss, "reg_loss": reg, "grad_norm": np.exp(-steps / 20)}))

    final = 1e-3 * (1 + 10 * strength + sparsity) + 1e-5 * seed
    diverged = status == "diverged"
    artifacts.write_metrics(run_dir, {
        "status": status, "final_loss": None if diverged else final,
        "task_loss": None if diverged else final - 1e-4 * strength, "reg_loss": 1e-4 * strength,
        "sparsity": float(np.mean(J == 0)), "near_zero_fraction": float(np.mean(np.abs(J) < 1e-4)),
        "spectral_radius": 1.0 + 0.1 * seed, "freq_error": 0.01 * (1 + strength), "steps": N_STEPS,
        "wall_s": 1.5})

    if analysis:
        time = np.arange(0, 64, 0.5)
        omegas = np.linspace(0.1, 0.6, N_TASKS)
        targets = np.sin(omegas[None, :] * time[:, None])[..., None]
        eig_values = np.stack([np.linalg.eigvals(J * (0.5 + 0.25 * k)) for k in range(3)])
        artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {
            "eig_steps": np.array([0, 10, 20]), "eig_values": eig_values, "final_eigenvalues": eig_values[-1],
            "task_time": time, "task_outputs": 0.9 * targets, "task_targets": targets, "task_omegas": omegas})


@pytest.fixture
def synthetic_run():
    return make_synthetic_run


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test left open: the tests that count open figures (a drawing function must
    close what it saves) may run after any other test in the same process (pytest -n auto)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
