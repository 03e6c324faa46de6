"""Per-run figures, drawn only from the files in a run directory so that they can be redrawn at any time.

`draw_run_figures(run_dir, figures)` draws the figures a run's components declare (their
`run_figures()`; experiment.run_figures) into `<run dir>/figures/`. Defined here:

  loss.png              loss, task_loss, reg_loss against step (log y), stage boundaries marked (every run)
  output_vs_target.png  network output against target for a few tasks spread over the frequency range (sine_wave)
  J_heatmap.png         the recurrent weights J, with the fraction of exact zeros (ctrnn)
  eigenvalues.png       eigenvalues of J over training in the complex plane, coloured by step (analysis)

A figure whose inputs are not on disk (no analysis.npz when analysis is off, a failed run) is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rnn_sparsity.artifacts import HISTORY, PARAMS, figures_dir, read_history, read_params
from rnn_sparsity.plots.common import (SPECTRUM_KEYS, draw_spectrum, read_analysis, save_figure, spectrum_limits,
                                       spectrum_title, step_norm)

LOSS_STYLES = {"loss": "-", "task_loss": "--", "reg_loss": ":"}  # loss = task_loss at λ = 0: both stay visible
TASKS_SHOWN = 4
TASK_KEYS = ("task_time", "task_outputs", "task_targets", "task_omegas")


def loss_figure(run_dir: Path) -> Figure | None:
    """Losses against step on a log scale; non-positive values (reg_loss at λ = 0) cannot be shown there."""
    if not (run_dir / HISTORY).exists():
        return None
    history = read_history(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for column, style in LOSS_STYLES.items():
        positive = history[column].where(history[column] > 0) if column in history else None
        if positive is not None and positive.notna().any():
            ax.plot(history["step"], positive, ls=style, lw=1.4, label=column)
    ax.set_yscale("log")
    mark_stages(ax, history)
    ax.set(xlabel="step", ylabel="loss", title="Training loss")
    if ax.get_legend_handles_labels()[0]:  # nothing to show when no loss was finite and positive
        ax.legend(loc="lower left")
    return fig


def mark_stages(ax: plt.Axes, history: pd.DataFrame) -> None:
    """A vertical line where the optimizer stage changes, and each stage's name at its start."""
    stages = history["stage"].to_numpy()
    steps = history["step"].to_numpy()
    starts = np.flatnonzero(np.r_[True, stages[1:] != stages[:-1]])
    for i in starts:
        if i > 0:
            ax.axvline(steps[i], color="0.4", ls="--", lw=0.8)
        ax.text(steps[i], 0.98, f" {stages[i]}", transform=ax.get_xaxis_transform(),
                va="top", ha="left", fontsize=9, color="0.25")


def spread_tasks(omegas: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` tasks spread evenly over the sorted frequencies: lowest, highest and between."""
    order = np.argsort(omegas)
    picks = np.unique(np.round(np.linspace(0, len(omegas) - 1, min(count, len(omegas)))).astype(int))
    return order[picks]


def output_figure(run_dir: Path) -> Figure | None:
    """Output against target over the train phase for a few tasks, one panel per task."""
    analysis = read_analysis(run_dir, TASK_KEYS)
    if analysis is None:
        return None
    time, omegas = analysis["task_time"], analysis["task_omegas"]
    shown = spread_tasks(omegas, TASKS_SHOWN)
    fig, axes = plt.subplots(len(shown), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(7, 1.7 * len(shown) + 0.6))
    for ax, task in zip(axes[:, 0], shown):
        ax.plot(time, analysis["task_targets"][:, task, 0], color="k", ls="--", lw=1, label="target")
        ax.plot(time, analysis["task_outputs"][:, task, 0], color="C0", lw=1.2, label="output")
        ax.set_title(f"ω = {omegas[task]:.3g}", fontsize=9)
        ax.set_ylabel("z")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time")
    fig.suptitle("Output vs target")
    return fig


def weights_figure(run_dir: Path) -> Figure | None:
    """J as a heatmap on a colour scale symmetric about 0, so pruned (zero) weights are white."""
    if not (run_dir / PARAMS).exists():
        return None
    weights = read_params(run_dir).get("J")
    if weights is None:
        return None
    limit = float(np.abs(weights).max()) or 1.0
    fig, ax = plt.subplots(figsize=(5.5, 4.6), layout="constrained")
    image = ax.imshow(weights, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="$J_{ij}$")
    n_rows, n_cols = weights.shape
    ax.set(xlabel="from unit j", ylabel="to unit i",
           title=f"J ({n_rows}×{n_cols}), exact zeros: {np.mean(weights == 0):.1%}")
    return fig


def eigenvalue_figure(run_dir: Path) -> Figure | None:
    """The spectrum of J over training for one run."""
    analysis = read_analysis(run_dir, SPECTRUM_KEYS)
    if analysis is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    points = draw_spectrum(ax, analysis, step_norm([analysis]))
    xlim, ylim = spectrum_limits([analysis])
    ax.set(xlim=xlim, ylim=ylim, title=f"Eigenvalues of {spectrum_title(analysis)} during training")
    fig.colorbar(points, ax=ax, label="training step")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def component_figures(parts) -> dict[str, Callable[[Path], Figure | None]]:
    """The per-run figures of a run's components (components.Parts): the training curves, then each
    component's own `run_figures()`."""
    figures: dict[str, Callable[[Path], Figure | None]] = {"loss.png": loss_figure}
    for part in parts:
        figures.update(part.run_figures())
    return figures


def figures_of_run(run_dir: Path) -> dict[str, Callable[[Path], Figure | None]]:
    """The figures of the components a run directory's config names (so any run can be redrawn later);
    the training curves alone when its components cannot be resolved here."""
    from omegaconf import OmegaConf

    from rnn_sparsity.artifacts import CONFIG
    from rnn_sparsity.components import ConfigError, resolve

    try:
        return component_figures(resolve(OmegaConf.load(Path(run_dir) / CONFIG)))
    except (ConfigError, OSError):
        return {"loss.png": loss_figure}


def draw_run_figures(run_dir: Path | str, figures: dict[str, Callable[[Path], Figure | None]] | None = None) -> list[Path]:
    """Draw each of `figures` ({file name: draw(run_dir) -> Figure | None}; default: those of the run's
    own components, `figures_of_run`) whose inputs exist into `<run dir>/figures/`; returns the written paths."""
    run_dir = Path(run_dir)
    figures = figures_of_run(run_dir) if figures is None else figures
    written = []
    for name, draw in figures.items():
        fig = draw(run_dir)
        if fig is not None:
            written.append(save_figure(fig, figures_dir(run_dir) / name))
    return written
