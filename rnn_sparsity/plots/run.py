"""Per-run figures, drawn only from the files in a run directory so that they can be redrawn at any time.

`draw_run_figures(run_dir)` writes into `<run dir>/figures/`:

  loss.png              loss, task_loss, reg_loss against step (log y), stage boundaries marked
  output_vs_target.png  network output against target for a few tasks spread over the frequency range
  J_heatmap.png         the recurrent weights J, with the fraction of exact zeros
  eigenvalues.png       eigenvalues of J over training in the complex plane, coloured by step

and, from the arrays of `analysis=dynamics` (drawn by `rnn_sparsity.plots.dynamics`):

  pc_space.png              trajectories, fixed points (stable filled, unstable open, with their unstable
                            directions) and slow points in PC1–PC3, coloured by condition
  jacobian_eigenvalues.png  eigenvalues of DF at every fixed point in the complex plane, by condition
  unstable_frequency.png    unstable frequency at each condition's central fixed point against ω_j (sine)
  pca_variance.png          variance explained per principal component, and cumulatively

and, for students of a teacher (task=mlp_teacher, drawn by `rnn_sparsity.plots.rebound`):

  distance.png              distances to the teacher over epochs (normalised) above train and test loss
  decay_curve.png           the fast-decay study: expected norm of x(t) against t/τ with the 5% and 1% levels

A figure whose inputs are not on disk (no analysis.npz when analysis is off, a failed run) is skipped.
The spectrum helpers are shared with the cross-run figures in `rnn_sparsity.plots.sweep`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from rnn_sparsity.artifacts import (
    ANALYSIS,
    HISTORY,
    PARAMS,
    atomic_path,
    figures_dir,
    read_arrays,
    read_history,
    read_params,
)

DPI = 120
LOSS_STYLES = {"loss": "-", "task_loss": "--", "reg_loss": ":"}  # loss = task_loss at λ = 0: both stay visible
TASKS_SHOWN = 4
TASK_KEYS = ("task_time", "task_outputs", "task_targets", "task_omegas")
SPECTRUM_KEYS = ("eig_steps", "eig_values", "final_eigenvalues")
STEP_CMAP = "viridis"


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG atomically (a reader never sees half an image) and close it."""
    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return Path(path)


def read_analysis(run_dir: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The analysis arrays of a run, or None when analysis.npz is absent or lacks any of `keys`."""
    path = Path(run_dir) / ANALYSIS
    if not path.exists():
        return None
    arrays = read_arrays(path)
    return arrays if all(key in arrays for key in keys) else None


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


def draw_spectrum(ax: plt.Axes, analysis: dict[str, np.ndarray], norm: Normalize):
    """Eigenvalues of J at every sampled step coloured by step, the final ones ringed in red.

    For x' = -x + J tanh(x) the origin is unstable once an eigenvalue of J has Re > 1, so the line Re = 1
    is drawn, with the unit circle dashed for scale. Returns the scatter, for a step colorbar.
    """
    values = analysis["eig_values"]
    steps = np.repeat(analysis["eig_steps"], values.shape[1])
    points = ax.scatter(values.real.ravel(), values.imag.ravel(), c=steps, cmap=STEP_CMAP, norm=norm,
                        s=10, alpha=0.7, linewidths=0)
    final = analysis["final_eigenvalues"]
    ax.scatter(final.real, final.imag, s=30, facecolors="none", edgecolors="crimson", linewidths=1,
               label="final")
    complex_plane_guides(ax)
    return points


def complex_plane_guides(ax: plt.Axes, line_label: str = "Re λ = 1") -> None:
    """The line Re λ = 1 (where J's eigenvalues destabilise the origin of x' = -x + J f(x)), the unit
    circle for scale, axis labels and equal aspect, for eigenvalues of J in the complex plane."""
    ax.axvline(1.0, color="k", ls=":", lw=1, label=line_label)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, ls="--", lw=0.8, color="0.5", label="unit circle"))
    ax.set(xlabel="Re λ", ylabel="Im λ")
    ax.set_aspect("equal")


def spectrum_limits(analyses: Iterable[dict[str, np.ndarray]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y limits that hold every eigenvalue, the unit circle and the line Re = 1, with a margin."""
    values = np.concatenate([np.r_[a["eig_values"].ravel(), a["final_eigenvalues"]] for a in analyses])
    low = min(-1.0, values.real.min())
    high = max(1.0, values.real.max())
    height = max(1.0, np.abs(values.imag).max())
    margin = 0.08 * max(high - low, 2 * height)
    return (low - margin, high + margin), (-height - margin, height + margin)


def step_norm(analyses: Iterable[dict[str, np.ndarray]]) -> Normalize:
    """One colour scale for training step over all the given runs."""
    steps = np.concatenate([a["eig_steps"] for a in analyses])
    return Normalize(steps.min(), steps.max())


def eigenvalue_figure(run_dir: Path) -> Figure | None:
    """The spectrum of J over training for one run."""
    analysis = read_analysis(run_dir, SPECTRUM_KEYS)
    if analysis is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    points = draw_spectrum(ax, analysis, step_norm([analysis]))
    xlim, ylim = spectrum_limits([analysis])
    ax.set(xlim=xlim, ylim=ylim, title="Eigenvalues of J during training")
    fig.colorbar(points, ax=ax, label="training step")
    ax.legend(loc="upper left", fontsize=8)
    return fig


RUN_FIGURES: dict[str, Callable[[Path], Figure | None]] = {
    "loss.png": loss_figure,
    "output_vs_target.png": output_figure,
    "J_heatmap.png": weights_figure,
    "eigenvalues.png": eigenvalue_figure,
}


def draw_run_figures(run_dir: Path | str) -> list[Path]:
    """Draw every per-run figure whose inputs exist into `<run dir>/figures/`; returns the written paths."""
    from rnn_sparsity.plots.dynamics import DYNAMICS_FIGURES  # they import this module
    from rnn_sparsity.plots.rebound import STUDY_FIGURES

    run_dir = Path(run_dir)
    written = []
    for name, draw in {**RUN_FIGURES, **DYNAMICS_FIGURES, **STUDY_FIGURES}.items():
        fig = draw(run_dir)
        if fig is not None:
            written.append(save_figure(fig, figures_dir(run_dir) / name))
    return written
