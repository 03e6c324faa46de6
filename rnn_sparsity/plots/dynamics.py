"""Per-run figures of the dynamics analysis (`analysis=dynamics`), drawn only from a run's analysis.npz.

`draw_run_figures` (rnn_sparsity.plots.run) writes, into `<run dir>/figures/`, each figure whose arrays exist:

  pc_space.png              trajectories (one colour per condition) and fixed points in PC1–PC3: stable
                            filled, unstable open with a short segment along the leading unstable
                            direction; slow points as small grey dots
  jacobian_eigenvalues.png  eigenvalues of the linearisation at every fixed point in the complex plane,
                            coloured by the condition (ω_j on the sine task) the point was found under,
                            with the stability boundary: the line Re λ = 0 for a flow (DF), the unit
                            circle for a map (∂f/∂h: a GRU, LSTM or vanilla cell)
  unstable_frequency.png    sine task: the unstable frequency fp_omega at each condition's central fixed point
                            against ω_j, the identity line, and the median relative error
  pca_variance.png          fraction of the states' variance per principal component, and cumulatively

A *condition* is one static input under which fixed points are sought (one per task j on the sine task,
one on the flip-flop task). The arrays follow the contract of `rnn_sparsity.analysis.dynamics`:
fp_* (fixed points), sp_* (slow points), pca_* (PC coordinates), condition_*, fp_omega, fp_track_*.
The eigenvalue helpers here are shared with the cross-run figures in `rnn_sparsity.plots.sweep`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from rnn_sparsity.analysis.dynamics import frequency_error
from rnn_sparsity.analysis.fixed_points import growth
from rnn_sparsity.plots.common import HOLLOW, markdown_table, read_analysis, save_figure, table_figure

CONDITION_CMAP = "viridis"
# blue early in training, red late, through a dark purple (coolwarm's pale middle vanishes on white)
TRACK_CMAP = LinearSegmentedColormap.from_list("early_to_late", ["#2c7bb6", "#7b3294", "#d7191c"])
OMEGA = r"$\omega_j$"
SLOW_COLOR, SINGLE_COLOR, SINGLE_TRAJECTORY_COLOR = "0.55", "C0", "0.6"
DIRECTION_LENGTH = 0.08  # half-length of an unstable-direction segment, as a fraction of the plot's extent
TRACK_KEYS = ("fp_track_step", "fp_track_eigenvalues")


# ------------------------------------------------------------------------------------------- helpers
def condition_values(analysis: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """What each condition's colour stands for: ω_j when condition_omegas exists, else the condition index."""
    if "condition_omegas" in analysis:
        return analysis["condition_omegas"], f"{OMEGA} (rad per time unit)"
    if "condition_inputs" in analysis:
        count = len(analysis["condition_inputs"])
    else:
        indices = [analysis[k] for k in ("fp_condition", "pca_trajectory_condition") if k in analysis]
        count = max([int(i.max()) + 1 for i in indices if i.size], default=1)
    return np.arange(max(count, 1)), "condition"


def condition_colors(analysis: dict[str, np.ndarray]) -> tuple[ScalarMappable | None, np.ndarray, str]:
    """A colour scale over the conditions (for a colorbar), the (C, 4) colour of each, and its label.

    A single condition (the flip-flop task) needs no scale: it is drawn in SINGLE_COLOR, without a colorbar.
    """
    values, label = condition_values(analysis)
    if len(values) == 1:
        return None, np.array([to_rgba(SINGLE_COLOR)]), label
    mappable = ScalarMappable(Normalize(values.min(), values.max()), CONDITION_CMAP)
    return mappable, mappable.to_rgba(values), label


def row_conditions(analysis: dict[str, np.ndarray], key: str, count: int) -> np.ndarray:
    """The condition index of each of `count` rows (all 0 when `key` is absent)."""
    return analysis[key].astype(int) if key in analysis else np.zeros(count, int)


def kind(analysis: dict[str, np.ndarray]) -> str:
    """The dynamics the arrays come from: "flow" (F = τ ẋ; also runs recorded before dynamics_kind) or "map"."""
    return str(analysis["dynamics_kind"]) if "dynamics_kind" in analysis else "flow"


def stable_points(analysis: dict[str, np.ndarray]) -> np.ndarray:
    """(K,) fp_is_stable, or, without it, whether no eigenvalue grows (fixed_points.growth)."""
    if "fp_is_stable" in analysis:
        return analysis["fp_is_stable"].astype(bool)
    return np.all(growth(analysis["fp_eigenvalues"], kind(analysis)) < 0, axis=1)


def first_three(points: np.ndarray) -> np.ndarray:
    """PC coordinates (..., P) as (..., 3), zero-padded when fewer than 3 PCs were kept."""
    pad = max(0, 3 - points.shape[-1])
    return np.pad(points[..., :3], [(0, 0)] * (points.ndim - 1) + [(0, pad)])


def pc_label(analysis: dict[str, np.ndarray], index: int) -> str:
    explained = analysis["pca_variance_explained"]
    return f"PC{index + 1} ({explained[index]:.1%} var.)" if index < len(explained) else f"PC{index + 1} (not kept)"


def eigenvalue_limits(values: np.ndarray, of: str = "flow") -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y limits holding every eigenvalue and the stability boundary: the line Re λ = 0 (a flow's DF
    crowds near -1), or the unit circle (a map's)."""
    values = np.r_[np.ravel(values), -1.0, 0.2] if of == "flow" else np.r_[np.ravel(values), -1.0, 1.0, 1j, -1j]
    values = values[np.isfinite(values)]
    low, high, height = values.real.min(), values.real.max(), max(0.5, np.abs(values.imag).max())
    margin = 0.06 * max(high - low, 2 * height)
    return (low - margin, high + margin), (-height - margin, height + margin)


def mark_stability_boundary(ax: plt.Axes, of: str = "flow") -> None:
    """Where modes start to grow: Re λ = 0 for a flow, |λ| = 1 for a map."""
    if of == "flow":
        ax.axvline(0.0, color="k", ls=":", lw=1, label="Re λ = 0")
        ax.set(xlabel="Re λ  (1/τ)", ylabel="Im λ  (1/τ)")
    else:
        ax.add_patch(Circle((0, 0), 1.0, fill=False, ls=":", lw=1, color="k", label="|λ| = 1"))
        ax.set(xlabel="Re λ", ylabel="Im λ")
        ax.set_aspect("equal")


def linearisation_name(of: str) -> str:
    return "DF" if of == "flow" else "∂f/∂h"


# ---------------------------------------------------------------------------------------- PC space
def draw_trajectories(ax, analysis: dict[str, np.ndarray], colors: np.ndarray) -> None:
    """Each trajectory in PC1–PC3 as a thin line in its condition's colour (grey for a single condition),
    fainter the more there are, so that the fixed points stay visible among them."""
    trajectories = first_three(analysis["pca_trajectories"])
    conditions = row_conditions(analysis, "pca_trajectory_condition", len(trajectories))
    colors = colors if len(colors) > 1 else [SINGLE_TRAJECTORY_COLOR]
    alpha = float(np.clip(8 / max(len(trajectories), 1), 0.15, 0.8))
    for path, condition in zip(trajectories, conditions):
        ax.plot(*path.T, color=colors[condition], lw=0.6, alpha=alpha)


def draw_fixed_points_3d(ax, analysis: dict[str, np.ndarray], colors: np.ndarray) -> None:
    """Stable points filled and unstable ones open, each in its condition's colour; unstable drawn last."""
    points = first_three(analysis["pca_fixed_points"])
    stable = stable_points(analysis)
    color = colors[row_conditions(analysis, "fp_condition", len(points))]
    if stable.any():
        ax.scatter(*points[stable].T, s=40, c=color[stable], edgecolors="k", linewidths=0.6, depthshade=False,
                   label="stable fixed point")
    if not stable.all():
        ax.scatter(*points[~stable].T, s=44, facecolors=HOLLOW, edgecolors=color[~stable], linewidths=1.6,
                   depthshade=False, label="unstable fixed point")


def draw_unstable_directions(ax, analysis: dict[str, np.ndarray], length: float) -> None:
    """A segment ±length·d through each unstable point along its projected leading unstable direction d."""
    points = first_three(analysis["pca_fixed_points"])
    directions = first_three(analysis["pca_unstable_directions"])
    shown = np.all(np.isfinite(directions), axis=1)
    if not shown.any():
        return
    ends = [points[shown] - length * directions[shown], points[shown] + length * directions[shown]]
    gaps = np.full_like(ends[0], np.nan)  # one line, broken between segments
    segments = np.stack([*ends, gaps], axis=1).reshape(-1, 3)
    ax.plot(*segments.T, color="k", lw=1.2, label="unstable direction")


def pc_extent(analysis: dict[str, np.ndarray]) -> float:
    """The largest span of any of PC1–PC3 over everything drawn in PC space."""
    parts = [first_three(analysis[k]).reshape(-1, 3) for k in ("pca_trajectories", "pca_fixed_points",
                                                                "pca_slow_points") if k in analysis]
    drawn = np.concatenate(parts)
    return float(np.ptp(drawn, axis=0).max()) if len(drawn) else 1.0


def pc_space_figure(run_dir: Path) -> Figure | None:
    """Trajectories, fixed points (with unstable directions) and slow points in the first three PCs."""
    analysis = read_analysis(run_dir, ("pca_variance_explained",))
    if analysis is None or not {"pca_trajectories", "pca_fixed_points"} & analysis.keys():
        return None
    mappable, colors, label = condition_colors(analysis)
    fig = plt.figure(figsize=(8, 6.6), layout="constrained")
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # drawn in call order: points over lines
    if "pca_trajectories" in analysis:
        draw_trajectories(ax, analysis, colors)
    if "pca_slow_points" in analysis and len(analysis["pca_slow_points"]):
        ax.scatter(*first_three(analysis["pca_slow_points"]).T, s=6, color=SLOW_COLOR, depthshade=False,
                   label="slow point")
    title = "Trajectories in PC space"
    if "pca_fixed_points" in analysis:
        draw_fixed_points_3d(ax, analysis, colors)
        if "pca_unstable_directions" in analysis:
            draw_unstable_directions(ax, analysis, DIRECTION_LENGTH * pc_extent(analysis))
        stable = stable_points(analysis)
        title = f"Trajectories and fixed points in PC space: {len(stable)} fixed points, {int((~stable).sum())} unstable"
    ax.set(xlabel=pc_label(analysis, 0), ylabel=pc_label(analysis, 1), zlabel=pc_label(analysis, 2))
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, label=label, shrink=0.6, pad=0.08)
    return fig


# --------------------------------------------------------------------------------------- spectra
def jacobian_eigenvalue_figure(run_dir: Path) -> Figure | None:
    """Every eigenvalue of the linearisation at every fixed point, coloured by the point's condition."""
    analysis = read_analysis(run_dir, ("fp_eigenvalues",))
    if analysis is None:
        return None
    values = analysis["fp_eigenvalues"]
    mappable, colors, label = condition_colors(analysis)
    color = np.repeat(colors[row_conditions(analysis, "fp_condition", len(values))], values.shape[1], axis=0)
    fig, ax = plt.subplots(figsize=(6.4, 5), layout="constrained")
    ax.scatter(values.real.ravel(), values.imag.ravel(), c=color, s=10, alpha=0.7, linewidths=0)
    of = kind(analysis)
    mark_stability_boundary(ax, of)
    xlim, ylim = eigenvalue_limits(values, of)
    n_unstable = int((~stable_points(analysis)).sum()) if len(values) else 0
    ax.set(xlim=xlim, ylim=ylim,
           title=f"Eigenvalues of {linearisation_name(of)} at {len(values)} fixed points ({n_unstable} unstable)")
    ax.legend(loc="upper left", fontsize=8)
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, label=label)
    return fig


def draw_tracked_eigenvalues(ax: plt.Axes, analysis: dict[str, np.ndarray], norm: Normalize):
    """Eigenvalues of the linearisation at the fixed points tracked during training, coloured by step, late on top.

    Returns the scatter, for a step colorbar.
    """
    steps, values = analysis["fp_track_step"], analysis["fp_track_eigenvalues"]
    order = np.argsort(steps, kind="stable")
    step = np.repeat(steps[order], values.shape[1])
    points = ax.scatter(values[order].real.ravel(), values[order].imag.ravel(), c=step, cmap=TRACK_CMAP,
                        norm=norm, s=8, alpha=0.7, linewidths=0)
    mark_stability_boundary(ax, kind(analysis))
    return points


# ------------------------------------------------------------------------------------- frequencies
def unstable_frequency_figure(run_dir: Path) -> Figure | None:
    """fp_omega against ω_j with the identity line; conditions with no unstable complex pair marked on the x axis."""
    analysis = read_analysis(run_dir, ("condition_omegas", "fp_omega"))
    if analysis is None:
        return None
    omegas, found = analysis["condition_omegas"], analysis["fp_omega"]
    missing = np.isnan(found)
    top = 1.1 * np.nanmax(np.r_[omegas, found])
    fig, ax = plt.subplots(figsize=(5.8, 5), layout="constrained")
    ax.plot([0, top], [0, top], color="k", ls="--", lw=0.8, label=f"fp_omega = {OMEGA}")
    ax.scatter(omegas[~missing], found[~missing], s=28, color="C0", zorder=3, label="central fixed point")
    ax.scatter(omegas[missing], np.zeros(missing.sum()), marker="x", s=40, color="crimson", clip_on=False,
               zorder=4, label=f"no unstable complex pair ({missing.sum()})")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"task frequency {OMEGA} (rad per time unit)",
           ylabel="fp_omega = " + ("|Im λ| / τ" if kind(analysis) == "flow" else "|arg λ| / dt") + " (rad per time unit)")
    ax.set_title(f"Unstable frequency at the fixed points vs {OMEGA}\n"
                 f"median relative error {frequency_error(found, omegas):.3g}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    return fig


# -------------------------------------------------------------------------------------------- PCA
def pca_variance_figure(run_dir: Path) -> Figure | None:
    """Bars: fraction of the states' variance along each PC; line: the cumulative fraction."""
    analysis = read_analysis(run_dir, ("pca_variance_explained",))
    if analysis is None:
        return None
    explained = analysis["pca_variance_explained"]
    components = np.arange(1, len(explained) + 1)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.bar(components, explained, color="C0", label="per component")
    ax.plot(components, np.cumsum(explained), color="k", marker="o", ms=4, lw=1.2, label="cumulative")
    ax.set(xlabel="principal component", ylabel="fraction of variance", ylim=(0, 1.05), xticks=components,
           title=f"PCA of the states: first 3 PCs {explained[:3].sum():.1%}, all {len(explained)} "
                 f"{explained.sum():.1%}")
    ax.legend(loc="center right", fontsize=8)
    return fig


DYNAMICS_FIGURES: dict[str, Callable[[Path], Figure | None]] = {
    "pc_space.png": pc_space_figure,
    "jacobian_eigenvalues.png": jacobian_eigenvalue_figure,
    "unstable_frequency.png": unstable_frequency_figure,
    "pca_variance.png": pca_variance_figure,
}


# ---------------------------------------------------------------------------------------- per sweep
LEADING_KEYS = ("regularizer.strength", "model.sparsity")
# unstable-eigenvalue table column: (metric, how the runs of one key value are combined)
UNSTABLE_COLUMNS = {
    "fixed points (mean)": ("n_fixed_points", "mean"),
    "unstable fixed points (mean)": ("n_unstable_fixed_points", "mean"),
    "unstable eigs per point: mean": ("mean_unstable_eigs", "mean"),
    "unstable eigs per point: max": ("max_unstable_eigs", "max"),
}


def unstable_eigenvalue_table(runs: pd.DataFrame, key: str) -> pd.DataFrame | None:
    """Per value of `key`: the completed runs with fixed points, and UNSTABLE_COLUMNS over them.

    None when the runs hold no fixed-point counts (no `analysis=dynamics` run).
    """
    metrics = [metric for metric, _ in UNSTABLE_COLUMNS.values()]
    if not set(metrics) <= set(runs):
        return None
    counted = runs.loc[runs["status"] == "completed", [key, *metrics]].apply(pd.to_numeric, errors="coerce")
    counted = counted[counted["n_fixed_points"].notna()]
    if counted.empty:
        return None
    return counted.groupby(key).agg(runs=("n_fixed_points", "size"), **UNSTABLE_COLUMNS).reset_index()


def write_unstable_tables(runs: pd.DataFrame, keys: Sequence[str], out: Path) -> list[Path]:
    """unstable_eigenvalues_by_<key>.csv, .md and .png for λ and s, when swept; returns the written paths."""
    written = []
    for key in LEADING_KEYS:
        table = unstable_eigenvalue_table(runs, key) if key in keys else None
        if table is None:
            continue
        csv, md, png = (out / f"unstable_eigenvalues_by_{key}.{ext}" for ext in ("csv", "md", "png"))
        table.to_csv(csv, index=False)
        md.write_text(markdown_table(table))
        title = f"Fixed points and unstable eigenvalues (Re λ > 0 of a flow, |λ| > 1 of a map) by {key}"
        written += [csv, md, save_figure(table_figure(table, title), png)]
    return written
