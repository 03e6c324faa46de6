"""Figures of the ℓ2-distance rebound study (task=mlp_teacher), drawn from what is on disk.

Per run (`draw_run_figures`):
  distance.png   the distances to the teacher over epochs, each normalised to [0, 1] by its min and max, above
                 the train and test loss (log y): does the student drift away while it improves?
Per sweep (`draw_sweep_figures`, when task.noise_std is swept):
  <metric>_vs_noise_loglog.png  the final distance against σ on log-log axes, every run and the mean per σ,
                 with the least-squares power law d ∝ σ^slope over the σ > 0 means (slope in the title)
and the aggregator writes the fitted slopes to noise_power_law.csv (`power_law_fits`).

For the fast-decay study (task=fast_decay), per run:
  decay_curve.png   the expected norm sqrt(E||x(t)||²/N) of the optimised network against t/τ (log y),
                    with the 5% and 1% levels and their crossing times, the slowest eigenmode's decay
                    e^{max Re γ t} and the worst start's 1% time (metrics.json)
  eigenvalues_before_after.png   eig(J) before and after optimisation, with the stability line Re λ = 1
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rnn_sparsity.artifacts import METRICS, read_metrics
from rnn_sparsity.plots.run import complex_plane_guides, read_analysis

NOISE_KEY = "task.noise_std"
DISTANCES = ("raw_distance", "aligned_distance")


def distance_figure(run_dir: Path) -> Figure | None:
    analysis = read_analysis(Path(run_dir), ("param_step", "eval_step", "eval_train_loss", "eval_test_loss"))
    if analysis is None or not any(f"param_{d}" in analysis for d in DISTANCES):
        return None
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6), layout="constrained")
    for name, style in zip(DISTANCES, ("-", "--")):
        values = analysis.get(f"param_{name}")
        if values is not None:
            lowest = int(np.argmin(values))
            span = max(np.ptp(values), np.finfo(float).tiny)
            top.plot(analysis["param_step"], (values - values.min()) / span, style,
                     label=f"{name}: {values.min():.4g} to {values.max():.4g}, min at {analysis['param_step'][lowest]}")
    top.set(ylabel="(d - min d) / (max d - min d)", ylim=(-0.02, 1.02),
            title="Distance to the teacher (Σ squared differences), min-max normalised")
    top.legend(fontsize=8)
    bottom.plot(analysis["eval_step"], analysis["eval_train_loss"], label="train loss")
    bottom.plot(analysis["eval_step"], analysis["eval_test_loss"], "--", label="test loss")
    if np.all(analysis["eval_train_loss"] > 0) and np.all(analysis["eval_test_loss"] > 0):
        bottom.set_yscale("log")
    bottom.set(xlabel="epoch (step)", ylabel="MSE")
    bottom.legend(fontsize=8)
    return fig


def power_law_fit(noise: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of log10 d = slope log10 σ + intercept over the σ > 0, d > 0 points."""
    keep = (noise > 0) & (values > 0) & np.isfinite(values)
    if np.sum(keep) < 2 or len(np.unique(noise[keep])) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log10(noise[keep]), np.log10(values[keep]), 1)
    return float(slope), float(intercept)


def noise_means(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean of `metric` per σ over the completed runs (seeds)."""
    data = runs.loc[runs["status"] == "completed", [NOISE_KEY, metric]].apply(pd.to_numeric, errors="coerce")
    return data.dropna().groupby(NOISE_KEY, as_index=False)[metric].mean()


def power_law_fits(runs: pd.DataFrame) -> pd.DataFrame | None:
    """One row per final distance metric: the slope and intercept of the power law fitted to its means."""
    if NOISE_KEY not in runs or runs[NOISE_KEY].nunique() < 2:
        return None
    rows = []
    for metric in [d for d in DISTANCES if d in runs]:
        means = noise_means(runs, metric)
        slope, intercept = power_law_fit(means[NOISE_KEY].to_numpy(), means[metric].to_numpy())
        rows.append({"metric": metric, "slope": slope, "intercept": intercept, "noise_values": len(means)})
    return pd.DataFrame(rows) if rows else None


def noise_loglog_figure(runs: pd.DataFrame, metric: str) -> Figure | None:
    completed = runs[runs["status"] == "completed"]
    if NOISE_KEY not in completed or metric not in completed or completed[NOISE_KEY].nunique() < 2:
        return None
    data = completed[[NOISE_KEY, metric]].apply(pd.to_numeric, errors="coerce").dropna()
    data = data[(data[NOISE_KEY] > 0) & (data[metric] > 0)]
    if data.empty:
        return None
    means = noise_means(completed, metric)
    means = means[(means[NOISE_KEY] > 0) & (means[metric] > 0)]
    slope, intercept = power_law_fit(means[NOISE_KEY].to_numpy(), means[metric].to_numpy())
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    ax.scatter(data[NOISE_KEY], data[metric], s=8, alpha=0.4, color="0.5", label="runs")
    ax.plot(means[NOISE_KEY], means[metric], "o", color="C0", label="mean over seeds")
    if np.isfinite(slope):
        grid = np.geomspace(means[NOISE_KEY].min(), means[NOISE_KEY].max(), 50)
        ax.plot(grid, 10 ** intercept * grid ** slope, "-", color="C3", label=f"fit: slope {slope:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="σ (task.noise_std)", ylabel=f"final {metric}",
           title=f"final {metric} vs σ: power-law slope {slope:.3f}")
    ax.legend(fontsize=8)
    return fig


def decay_curve_figure(run_dir: Path) -> Figure | None:
    analysis = read_analysis(Path(run_dir), ("decay_curve_time", "decay_curve_norm", "decay_curve_tau"))
    if analysis is None:
        return None
    tau = float(analysis["decay_curve_tau"])
    t, norm = analysis["decay_curve_time"] / tau, analysis["decay_curve_norm"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    ax.plot(t, np.maximum(norm, np.finfo(float).tiny), label="expected norm of x(t) / its start")
    for level, style in ((0.05, ":"), (0.01, "--")):
        below = np.flatnonzero(norm <= level)
        label = f"{level:.0%}" + (f" at t = {t[below[0]]:.2f} τ" if below.size else " (not reached)")
        ax.axhline(level, color="0.4", linestyle=style, linewidth=0.8, label=label)
    spectrum = read_analysis(Path(run_dir), ("final_eigenvalues",))
    if spectrum is not None:  # every start ends up decaying at the slowest mode's rate
        rate = 1.0 - spectrum["final_eigenvalues"].real.max()  # -max Re γ τ
        ax.plot(t, np.exp(-rate * t), color="0.5", linewidth=0.9, label=f"slowest eigenmode, e^(-{rate:.3f} t/τ)")
    metrics_file = Path(run_dir) / METRICS
    worst = read_metrics(Path(run_dir)).get("worst_decay_time_1_tau") if metrics_file.exists() else None
    if worst is not None and np.isfinite(worst):
        ax.axvline(worst, color="crimson", linestyle="--", linewidth=0.8, label=f"worst start at 1%: {worst:.2f} τ")
    ax.set(yscale="log", xlabel="t / τ", ylabel="sqrt(E||x(t)||² / N)", ylim=(min(1e-3, norm.min()), 1.5),
           title=f"Decay of activity from unit-covariance starts (τ = {tau:g})")
    ax.legend(fontsize=8)
    return fig


def before_after_eigenvalue_figure(run_dir: Path) -> Figure | None:
    """eig(J) of the linear network before and after optimisation, with the stability line Re λ = 1
    (τ dx/dt = -x + J x decays iff every Re λ < 1) and the unit circle (J0's circular-law disc) for scale."""
    analysis = read_analysis(Path(run_dir), ("eig_values", "final_eigenvalues", "decay_curve_tau"))
    if analysis is None:
        return None
    before, after = analysis["eig_values"][0], analysis["final_eigenvalues"]
    fig, ax = plt.subplots(figsize=(6, 5.4), layout="constrained")
    ax.scatter(before.real, before.imag, s=12, color="tab:blue", alpha=0.6, linewidths=0,
               label=f"before (max Re λ = {before.real.max():.3f})")
    ax.scatter(after.real, after.imag, s=12, color="tab:red", alpha=0.7, linewidths=0,
               label=f"after (max Re λ = {after.real.max():.3f})")
    complex_plane_guides(ax, "stability line Re λ = 1")
    ax.set_title(f"Eigenvalues of J, N = {len(after)}")
    ax.legend(loc="upper left", fontsize=8)
    return fig


# per-run figures of the teacher-distance and fast-decay studies, drawn by `draw_run_figures`
STUDY_FIGURES: dict[str, Callable[[Path], Figure | None]] = {
    "distance.png": distance_figure,
    "decay_curve.png": decay_curve_figure,
    "eigenvalues_before_after.png": before_after_eigenvalue_figure,
}
