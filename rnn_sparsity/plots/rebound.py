"""Figures of the ℓ2-distance rebound study (task=mlp_teacher), drawn from what is on disk.

Per run (declared by tasks/mlp_teacher.py):
  distance.png   the distances to the teacher over epochs, each normalised to [0, 1] by its min and max, above
                 the train and test loss (log y): does the student drift away while it improves?
Per sweep (when task.noise_std is swept):
  <metric>_vs_noise_loglog.png  the final distance against σ on log-log axes, every run and the mean per σ,
                 with the least-squares power law d ∝ σ^slope over the σ > 0 means (slope in the title)
and noise_power_law.csv with the fitted slopes (`power_law_fits`): `noise_outputs`, which the task
component calls from its `sweep_outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rnn_sparsity.plots.common import read_analysis, save_figure

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


def power_law_fits(runs: pd.DataFrame, metrics: Sequence[str] = DISTANCES) -> pd.DataFrame | None:
    """One row per metric: the slope and intercept of the power law fitted to its means per σ."""
    if NOISE_KEY not in runs or runs[NOISE_KEY].nunique() < 2:
        return None
    rows = []
    for metric in [d for d in metrics if d in runs]:
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


def noise_outputs(runs: pd.DataFrame, metrics: Sequence[str], out: Path) -> list[Path]:
    """When σ (task.noise_std) is swept: noise_power_law.csv (printed too) and figures/<metric>_vs_noise_loglog.png."""
    fits = power_law_fits(runs, metrics)
    if fits is None:
        return []
    written = [out / "noise_power_law.csv"]
    fits.to_csv(written[0], index=False)
    print("Power law of the final distance in σ (task.noise_std):\n" + fits.to_string(index=False) + "\n")
    for metric in metrics:
        fig = noise_loglog_figure(runs, metric) if metric in runs else None
        if fig is not None:
            written.append(save_figure(fig, out / "figures" / f"{metric}_vs_noise_loglog.png"))
    return written
