"""Figures of the ℓ2-distance rebound study (task=mlp_teacher), drawn from what is on disk.

Per run (declared by tasks/mlp_teacher.py):
  distance.png   the distances to the teacher over epochs 1..E (the epochs the source records), each min-max
                 normalised to [0, 1], above the train and test loss (log y): does the student drift away
                 while it improves?
Per sweep (`rebound_outputs`, every group of runs that differ only in their seeds):
  rebound_curves.csv, rebound_summary.csv and figures/rebound_normalised_mean.png: the source's figure
                 (ExperimentHelpers.normalize_and_average: each run's distance and losses over epochs 1..E
                 min-max normalised, then averaged over the runs), and figures/rebound_raw_mean.png, the mean
                 squared distance itself (epoch 0 included) over the same runs;
  (when task.noise_std is swept) <metric>_vs_noise_loglog.png, the final distance against σ on log-log axes,
                 every run and the mean per σ, with the least-squares power law d ∝ σ^slope over the σ > 0
                 means (slope in the title), and noise_power_law.csv with the fitted slopes (`power_law_fits`):
                 `noise_outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rnn_sparsity.analysis.teacher_distance import min_max_normalised, normalised_mean
from rnn_sparsity.plots.common import read_analysis, save_figure

NOISE_KEY = "task.noise_std"
DISTANCES = ("raw_distance", "aligned_distance")  # Σ(θ_s - θ_t)², without and after a greedy unit alignment
REPLICATE_KEYS = ("seed", "task.teacher_seed", "task.data_seed")  # what the runs of one curve differ in


def distance_figure(run_dir: Path) -> Figure | None:
    analysis = read_analysis(Path(run_dir), ("param_step", "eval_step", "eval_train_loss", "eval_test_loss"))
    if analysis is None or not any(f"param_{d}" in analysis for d in DISTANCES):
        return None
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6), layout="constrained")
    steps = analysis["param_step"]
    recorded = steps >= 1 if np.sum(steps >= 1) >= 2 else np.ones_like(steps, dtype=bool)  # the source's epochs 1..E
    for name, style in zip(DISTANCES, ("-", "--")):
        values = analysis.get(f"param_{name}")
        if values is not None:
            lowest = int(np.argmin(values[recorded]))
            top.plot(steps[recorded], min_max_normalised(values[recorded]), style,
                     label=f"{name}: {values[recorded].min():.4g} to {values[recorded].max():.4g}, "
                           f"min at {steps[recorded][lowest]}")
    top.set(ylabel="(d - min d) / (max d - min d)", ylim=(-0.02, 1.02),
            title="Squared distance to the teacher Σ(θ_s - θ_t)²,\nmin-max normalised over epochs ≥ 1")
    top.legend(fontsize=8)
    bottom.plot(analysis["eval_step"], analysis["eval_train_loss"], label="train loss")
    bottom.plot(analysis["eval_step"], analysis["eval_test_loss"], "--", label="test loss")
    if np.all(analysis["eval_train_loss"] > 0) and np.all(analysis["eval_test_loss"] > 0):
        bottom.set_yscale("log")
    bottom.set(xlabel="epoch (step)", ylabel="MSE")
    bottom.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------------
# the source's figure over the runs of a sweep


def run_curves(run_dir: Path) -> dict[str, np.ndarray] | None:
    """epoch, raw_distance, train_loss, test_loss of one run (its tracked samples), or None."""
    analysis = read_analysis(Path(run_dir), ("param_step", "param_raw_distance", "eval_step", "eval_train_loss",
                                              "eval_test_loss"))
    if analysis is None or not np.array_equal(analysis["param_step"], analysis["eval_step"]):
        return None
    return {"epoch": analysis["param_step"], "raw_distance": analysis["param_raw_distance"],
            "train_loss": analysis["eval_train_loss"], "test_loss": analysis["eval_test_loss"]}


def curve_groups(runs: pd.DataFrame, keys: Sequence[str]) -> dict[str, list[dict]]:
    """{label: [run curves]} over the completed runs, one group per combination of the swept keys that
    are not replicate keys (the seeds a curve averages over); runs whose epochs differ from their group's
    first are left out."""
    completed = runs[runs["status"] == "completed"] if "status" in runs else runs
    by = [k for k in keys if k not in REPLICATE_KEYS and k in completed and not k.startswith(("param_", "eval_"))]
    groups: dict[str, list[dict]] = {}
    for _, row in completed.iterrows():
        curves = run_curves(row["run_dir"]) if "run_dir" in row else None
        if curves is None:
            continue
        label = " ".join(f"{k}={row[k]}" for k in by) or "all runs"
        members = groups.setdefault(label, [])
        if not members or np.array_equal(members[0]["epoch"], curves["epoch"]):
            members.append(curves)
    return groups


def rebound_summary(epochs: np.ndarray, normalised: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """The dip and the rise of a group's curves: the normalised mean over epochs ≥ 1 (the source's figure)
    at its first epoch, its minimum (and epoch) and its last epoch; whether it dips below its start, turns
    up after its minimum, and ends above its start; and the mean raw squared distance at epochs 0 and 1,
    its minimum and its end."""
    lowest = int(np.argmin(normalised))
    raw_lowest = int(np.argmin(raw))
    return {"normalised_start": float(normalised[0]), "normalised_min": float(normalised[lowest]),
            "normalised_min_epoch": int(epochs[epochs >= 1][lowest]), "normalised_final": float(normalised[-1]),
            "dips": bool(normalised[lowest] < normalised[0]),
            "rises_after_min": bool(normalised[-1] > normalised[lowest]),
            "rises_above_start": bool(normalised[-1] > normalised[0]),
            "raw_epoch0": float(raw[0]), "raw_epoch1": float(raw[np.flatnonzero(epochs >= 1)[0]]),
            "raw_min": float(raw[raw_lowest]), "raw_min_epoch": int(epochs[raw_lowest]), "raw_final": float(raw[-1]),
            "raw_final_over_epoch0": float(raw[-1] / raw[0]) if raw[0] > 0 else float("nan")}


def group_table(label: str, members: list[dict]) -> tuple[pd.DataFrame, dict]:
    """One group's curves (a row per epoch) and its summary row."""
    epochs = members[0]["epoch"]
    later = epochs >= 1  # the source records after every epoch, never before the first
    stack = {name: np.stack([m[name] for m in members]) for name in ("raw_distance", "train_loss", "test_loss")}
    table = pd.DataFrame({"group": label, "epoch": epochs, "runs": len(members),
                          "mean_raw_distance": stack["raw_distance"].mean(axis=0),
                          "std_raw_distance": stack["raw_distance"].std(axis=0),
                          "mean_train_loss": stack["train_loss"].mean(axis=0),
                          "mean_test_loss": stack["test_loss"].mean(axis=0)})
    for name in ("raw_distance", "train_loss", "test_loss"):
        column = np.full(len(epochs), np.nan)
        column[later] = normalised_mean(stack[name][:, later])
        table[f"normalised_mean_{name}"] = column
    own = stack["raw_distance"][:, later]  # each run's own curve: does it dip below its start and end above it?
    dip_and_rise = int(np.sum((own.min(axis=1) < own[:, 0]) & (own[:, -1] > own[:, 0])))
    summary = {"group": label, "runs": len(members), "runs_dip_and_rise": dip_and_rise,
               **rebound_summary(epochs, table["normalised_mean_raw_distance"].to_numpy()[later],
                                 table["mean_raw_distance"].to_numpy())}
    return table, summary


def normalised_mean_figure(tables: pd.DataFrame) -> Figure:
    """The source's figure: the normalised mean squared distance (top) and the normalised mean train and
    test loss (bottom) over epochs 1..E, one line per group."""
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0), layout="constrained")
    for i, (label, table) in enumerate(tables.groupby("group", sort=False)):
        table = table[table["epoch"] >= 1]
        color = f"C{i % 10}"
        top.plot(table["epoch"], table["normalised_mean_raw_distance"], color=color,
                 label=f"{label} ({int(table['runs'].iloc[0])} runs)")
        bottom.plot(table["epoch"], table["normalised_mean_train_loss"], color=color, label=f"train, {label}")
        bottom.plot(table["epoch"], table["normalised_mean_test_loss"], "--", color=color, label=f"test, {label}")
    top.set(ylabel="normalised mean Σ(θ_s - θ_t)²", ylim=(-0.05, 1.05),
            title="Each run min-max normalised over epochs 1..E, then averaged\n(the source's figure)")
    bottom.set(xlabel="epoch", ylabel="normalised mean loss", ylim=(-0.05, 1.05))
    top.legend(fontsize=7)
    bottom.legend(fontsize=6, ncol=2)
    return fig


def raw_mean_figure(tables: pd.DataFrame) -> Figure:
    """The mean squared distance over the runs (log y, epoch 0 included) above the mean train and test loss."""
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0), layout="constrained")
    for i, (label, table) in enumerate(tables.groupby("group", sort=False)):
        color = f"C{i % 10}"
        top.plot(table["epoch"], table["mean_raw_distance"], color=color,
                 label=f"{label} ({int(table['runs'].iloc[0])} runs)")
        bottom.plot(table["epoch"], table["mean_train_loss"], color=color, label=f"train, {label}")
        bottom.plot(table["epoch"], table["mean_test_loss"], "--", color=color, label=f"test, {label}")
    raw = tables["mean_raw_distance"]
    if (raw > 0).all() and raw.max() > 10 * raw.min():  # a narrow range (the rebound's) reads better on a linear axis
        top.set_yscale("log")
    if (tables[["mean_train_loss", "mean_test_loss"]] > 0).all().all():
        bottom.set_yscale("log")
    top.set(ylabel="mean Σ(θ_s - θ_t)²", title="Mean squared distance to the teacher over the runs")
    bottom.set(xlabel="epoch", ylabel="mean MSE")
    top.legend(fontsize=7)
    bottom.legend(fontsize=6, ncol=2)
    return fig


MAX_DRAWN_GROUPS = 8  # more curves than this (a σ sweep) go to the tables only


def rebound_outputs(runs: pd.DataFrame, keys: Sequence[str], out: Path) -> list[Path]:
    """rebound_curves.csv and rebound_summary.csv (printed) for every group of runs with tracked
    distances, and, for at most MAX_DRAWN_GROUPS groups, figures/rebound_normalised_mean.png (the
    source's figure) and figures/rebound_raw_mean.png."""
    groups = curve_groups(runs, keys)
    if not groups:
        return []
    built = [group_table(label, members) for label, members in groups.items()]
    tables = pd.concat([t for t, _ in built], ignore_index=True)
    summary = pd.DataFrame([s for _, s in built])
    written = [out / "rebound_curves.csv", out / "rebound_summary.csv"]
    tables.to_csv(written[0], index=False)
    summary.to_csv(written[1], index=False)
    print("Rebound (normalised mean over epochs >= 1, as the source draws it; raw mean from epoch 0):\n"
          + summary.to_string(index=False, float_format=lambda x: f"{x:.4g}") + "\n")
    if len(groups) <= MAX_DRAWN_GROUPS:
        written.append(save_figure(normalised_mean_figure(tables), out / "figures" / "rebound_normalised_mean.png"))
        written.append(save_figure(raw_mean_figure(tables), out / "figures" / "rebound_raw_mean.png"))
    return written


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
