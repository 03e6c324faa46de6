"""Figures and tables of the teacher-student sparsity studies (task=teacher_student), drawn from what is on disk.

Per run (declared by tasks/teacher_student.py):
  near_zero.png   the fraction of the student's weights with |w| < ε (analysis.near_zero) over training, above
                  the distances to the teacher (the study's weight-matching distance, the unit-recovery one)
Per sweep (`sweep_outputs`, which the task component calls):
  figures/near_zero_trajectories.png
                  the near-zero fraction over training of every completed run, one panel per teacher and
                  student activation pair, coloured by regularizer, dashed for the second init scale
  near_zero_by_cell.csv
                  per teacher, teacher activation, student activation, regularizer and init scale: mean, min
                  and max of the final near-zero fraction over seeds, the runs, and the mean epochs and steps
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from rnn_sparsity.plots.common import read_analysis, save_figure

TRAJECTORY_KEYS = ("param_step", "param_near_zero_fraction")
DISTANCES = {"weight_match_distance": "weight-matching distance (the study's)",
             "teacher_distance": "unit-recovery distance"}
CELL = ("task.teacher", "task.activation", "model.activation", "regularizer.name", "model.init_scale")
COLORS = ("tab:red", "tab:blue", "tab:gray", "tab:green", "tab:purple", "tab:orange")  # by regularizer name, sorted
PANEL_COLUMNS = 3


def near_zero_figure(run_dir: Path) -> Figure | None:
    """Near-zero fraction and distances against step, from analysis.npz (None when not tracked)."""
    analysis = read_analysis(Path(run_dir), TRAJECTORY_KEYS)
    if analysis is None:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6), layout="constrained")
    steps = analysis["param_step"]
    top.plot(steps, analysis["param_near_zero_fraction"], color="tab:red")
    top.set(ylabel="fraction |w| < ε", title="Student weights near zero (ε = analysis.near_zero) over training")
    top.set_ylim(bottom=0)
    for name, label in DISTANCES.items():
        if f"param_{name}" in analysis:
            bottom.plot(steps, analysis[f"param_{name}"], label=label)
    bottom.set(xlabel="step", ylabel="distance to the teacher")
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(fontsize=8)
    return fig


def completed_with_trajectories(runs: pd.DataFrame) -> pd.DataFrame:
    completed = runs[runs["status"] == "completed"]
    keep = [read_analysis(Path(d), TRAJECTORY_KEYS) is not None for d in completed["run_dir"]]
    return completed[keep]


def trajectories_figure(runs: pd.DataFrame) -> Figure | None:
    """Every run's near-zero fraction over training; one panel per (teacher, student) activation pair."""
    if runs.empty or not {"task.activation", "model.activation"} <= set(runs.columns):
        return None
    pairs = sorted(runs.groupby(["task.activation", "model.activation"]).groups)
    scales = sorted(runs["model.init_scale"].dropna().unique()) if "model.init_scale" in runs else []
    names = sorted(runs["regularizer.name"].dropna().unique()) if "regularizer.name" in runs else []
    colors = {name: COLORS[i % len(COLORS)] for i, name in enumerate(names)}
    rows = -(-len(pairs) // PANEL_COLUMNS)
    fig, axes = plt.subplots(rows, min(len(pairs), PANEL_COLUMNS), squeeze=False, sharey=True,
                             figsize=(4.0 * min(len(pairs), PANEL_COLUMNS), 3.0 * rows), layout="constrained")
    for ax, (teacher_act, student_act) in zip(axes.flat, pairs):
        cell = runs[(runs["task.activation"] == teacher_act) & (runs["model.activation"] == student_act)]
        for _, run in cell.iterrows():
            analysis = read_analysis(Path(run["run_dir"]), TRAJECTORY_KEYS)
            style = "--" if scales and len(scales) > 1 and run.get("model.init_scale") == scales[-1] else "-"
            ax.plot(analysis["param_step"], analysis["param_near_zero_fraction"], style, lw=1, alpha=0.7,
                    color=colors.get(run.get("regularizer.name"), "k"))
        ax.set(title=f"teacher {teacher_act} → student {student_act}", xlabel="step")
        ax.title.set_fontsize(9)
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("fraction |w| < ε")
    axes[0, 0].set_ylim(bottom=0)  # shared: every panel starts at 0 and ends above the largest fraction
    handles = [plt.Line2D([], [], color=c, label=n) for n, c in colors.items()]
    if len(scales) > 1:
        handles += [plt.Line2D([], [], ls=s, color="k", label=f"init_scale {v:g}") for s, v in (("-", scales[0]),
                                                                                            ("--", scales[-1]))]
    if handles:
        axes.flat[0].legend(handles=handles, fontsize=7)
    fig.suptitle("Near-zero fraction of the student's weights over training (every completed run)", fontsize=10)
    return fig


def near_zero_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    """Final near-zero fraction per cell (CELL columns present), over its completed runs (seeds)."""
    completed = runs[runs["status"] == "completed"]
    cell = [c for c in CELL if c in completed]
    if completed.empty or "near_zero_fraction" not in completed or not cell:
        return None
    grouped = completed.groupby(cell, dropna=False)
    table = grouped["near_zero_fraction"].agg(["mean", "min", "max", "count"]).add_prefix("near_zero_")
    for column in ("epochs", "steps", "weight_match_distance"):
        if column in completed:
            table[f"mean_{column}"] = grouped[column].mean()
    return table.reset_index()


def sweep_outputs(runs: pd.DataFrame, keys: Sequence[str], out: Path) -> list[Path]:
    """near_zero_by_cell.csv and figures/near_zero_trajectories.png (module docstring), where they have data."""
    written = []
    table = near_zero_table(runs)
    if table is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        written.append(Path(out) / "near_zero_by_cell.csv")
        table.to_csv(written[-1], index=False)
    fig = trajectories_figure(completed_with_trajectories(runs))
    if fig is not None:
        written.append(save_figure(fig, Path(out) / "figures" / "near_zero_trajectories.png"))
    return written
