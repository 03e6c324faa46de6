"""Sparsification methods compared at matched sparsity: the pruner group's sweep outputs (its components'
pruners.Pruners.sweep_outputs, which the aggregator calls once for all the runs), from the runs table and
the run directories.

A run's `method` (metrics.json) is its pruner's name, or, where no pruner prunes, its regularizer's: the
methods are compared at their *achieved* sparsity (`sparsity`: the fraction of the targeted weights with
|w| < analysis.near_zero), whatever they aimed at. Completed runs only; a run without a metric is left
out of that metric's panel; a figure with nothing to draw is not written.

  matched_sparsity.csv, figures/matched_sparsity.png
      where the runs hold more than one method or a pruner that prunes: per method and swept values (seeds
      averaged) the runs, the mean and sd of the achieved sparsity and of each compared metric (COMPARED);
      one panel per metric against the achieved sparsity, one line per method, mean ± 1 sd over seeds;
      x is the sparsity, or once a sweep reaches LOG_REMAINING_FROM the remaining fraction 1 − s on a log
      scale decreasing to the right
  lottery_rounds.csv, figures/lottery_rounds.png
      where a run trained several times (a lottery run's round<r>_* and reinit<r>_* metrics): one row per
      run, training and kind ("ticket": round r, "reinit": its random re-initialisation control); test
      accuracy (task loss where the task has none) against the remaining fraction of the weights, log x
      decreasing to the right (Frankle & Carbin's figure), tickets solid, controls dashed, the dense
      network's level (round 0) dotted
  figures/spectra_by_method.png
      with the first figure, for runs whose analysis.npz holds J's spectrum: one panel per method, its run
      closest to a sparsity every method reaches, on shared limits
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from pandas.api.types import is_bool_dtype

from rnn_sparsity.artifacts import FIGURES, atomic_path
from rnn_sparsity.plots.common import SPECTRUM_KEYS, draw_spectrum, read_analysis, save_figure, spectrum_limits
from rnn_sparsity.plots.sweep import PANEL_COLUMNS, format_value

METHOD, SPARSITY, MASK_SPARSITY = "method", "sparsity", "mask_sparsity"
# what a method is judged by, where the runs report it: the task's fit, held-out data, the sine task's
# frequencies, J's spectral radius and (analysis=dynamics) the fixed points and their unstable eigenvalues
COMPARED = ("task_loss", "test_accuracy", "test_loss", "freq_error", "fp_freq_error", "spectral_radius",
            "n_fixed_points", "n_unstable_fixed_points", "max_unstable_eigs", "mean_unstable_eigs")
LOG_REMAINING_FROM = 0.95  # a sweep that reaches this sparsity is drawn against log(1 − s), as pruning papers do
MATCH_WITHIN = 0.05  # a method reaches a sparsity where one of its runs is this close to it
TRAINING = re.compile(r"^(round|reinit)(\d+)_(.+)$")  # experiment.block_metrics' <kind><r>_<metric>
KINDS = {"round": "ticket", "reinit": "reinit"}
BAND = "band: ±1 sd over seeds"


# ------------------------------------------------------------------------------------------- helpers
def completed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "completed"] if "status" in runs else runs


def numeric(column: pd.Series) -> pd.Series:
    """A column as floats (text and flags as missing)."""
    return pd.Series(np.nan, index=column.index) if is_bool_dtype(column) else pd.to_numeric(column, errors="coerce")


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def method_styles(methods) -> dict[str, dict]:
    """One colour and marker per method, the same in every figure of a sweep (methods sorted): methods
    that coincide (every pruner at its exact sparsity) stay apart."""
    palette = plt.get_cmap("tab10").colors
    return {method: dict(color=palette[i % len(palette)], marker=MARKERS[i % len(MARKERS)])
            for i, method in enumerate(sorted(set(methods)))}


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """A CSV written atomically (a reader never sees half of it)."""
    with atomic_path(Path(path)) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def remaining_ticks(remaining: np.ndarray) -> np.ndarray:
    """The fractions drawn where they are few and apart (a lottery run's rounds), else 1, 0.5, 0.2, 0.1, ...
    within their range."""
    drawn = np.unique(np.round(remaining[remaining > 0], 3))
    if len(drawn) <= 8 and (len(drawn) < 2 or np.min(drawn[1:] / drawn[:-1]) >= 1.25):
        return drawn
    nice = np.array([m * 10.0 ** e for e in range(-6, 1) for m in (1, 2, 5) if m * 10.0 ** e <= 1])
    return nice[(nice >= drawn.min() / 1.3) & (nice <= drawn.max() * 1.01)]  # the next tick below the sparsest too


def remaining_axis(ax: plt.Axes, remaining: np.ndarray) -> None:
    """x is the remaining fraction 1 − s on a log scale, decreasing to the right (sparser to the right)."""
    ax.set_xscale("log")
    ticks = remaining_ticks(np.asarray(remaining, float))
    if len(ticks):
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("remaining weights 1 − sparsity (log; sparser →)")


def band(ax: plt.Axes, x, mean, sd, color, **line) -> None:
    """A mean line with markers and a ±1 sd band (no band where sd is missing: a single run)."""
    order = np.argsort(np.asarray(x))
    x, mean, sd = np.asarray(x)[order], np.asarray(mean)[order], np.nan_to_num(np.asarray(sd)[order])
    ax.plot(x, mean, ms=5, color=color, alpha=0.9, **line)
    ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, linewidths=0)


# ------------------------------------------------------------------------------- matched sparsity
def compared_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Completed runs that name a method and report a numeric achieved sparsity."""
    runs = completed(runs)
    if METHOD not in runs or SPARSITY not in runs:
        return runs.iloc[:0]
    runs = runs.assign(**{SPARSITY: numeric(runs[SPARSITY])})
    return runs[runs[METHOD].notna() & runs[SPARSITY].notna()]


def compares_methods(runs: pd.DataFrame) -> bool:
    """Whether there is a comparison: two methods or more, or a pruner that pruned (only a pruned run
    reports mask_sparsity)."""
    pruned = MASK_SPARSITY in runs and numeric(runs[MASK_SPARSITY]).notna().any()
    return runs[METHOD].nunique() > 1 or bool(pruned)


def compared_metrics(runs: pd.DataFrame) -> list[str]:
    return [m for m in COMPARED if m in runs and numeric(runs[m]).notna().any()]


def matched_table(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame | None:
    """Per method and swept values (seed aside): n_seeds, then mean_ and sd_ (ddof 1; empty for one run)
    of the achieved sparsity and of each compared metric; None when there is no comparison."""
    runs = compared_runs(runs)
    if runs.empty or not compares_methods(runs):
        return None
    by = [METHOD, *(k for k in keys if k in runs and k not in (METHOD, "seed"))]
    values = runs[[SPARSITY, *compared_metrics(runs)]].apply(numeric)
    grouped = values.groupby([runs[k] for k in by], dropna=False, sort=True)
    table = grouped.size().rename("n_seeds").to_frame()
    for column in values:
        table[f"mean_{column}"] = grouped[column].mean()
        table[f"sd_{column}"] = grouped[column].std()
    return table.reset_index().sort_values([METHOD, f"mean_{SPARSITY}"], ignore_index=True)


def log_remaining(table: pd.DataFrame) -> bool:
    """Whether the figure's x is log(1 − s): once a sweep reaches LOG_REMAINING_FROM (and no point is at
    s = 1, whose remaining fraction 0 has no logarithm)."""
    s = table[f"mean_{SPARSITY}"]
    return bool(s.max() >= LOG_REMAINING_FROM and s.max() < 1)


def matched_figure(table: pd.DataFrame) -> Figure | None:
    """Each compared metric against the achieved sparsity, one panel per metric and one line per method:
    points are a method's runs with the same swept values, at their mean sparsity, mean ± 1 sd over seeds."""
    metrics = [m for m in COMPARED if f"mean_{m}" in table and table[f"mean_{m}"].notna().any()]
    if not metrics:
        return None
    n_cols = min(3, len(metrics))
    n_rows = math.ceil(len(metrics) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(4.4 * n_cols, 3.4 * n_rows + 0.6))
    log_x, styles = log_remaining(table), method_styles(table[METHOD])
    x = 1 - table[f"mean_{SPARSITY}"] if log_x else table[f"mean_{SPARSITY}"]
    for ax, metric in zip(axes.flat, metrics):
        for method, rows in table.groupby(METHOD):
            rows = rows[rows[f"mean_{metric}"].notna()]
            if not rows.empty:
                band(ax, x[rows.index], rows[f"mean_{metric}"], rows[f"sd_{metric}"], label=method, **styles[method])
        if log_x:
            remaining_axis(ax, x.to_numpy())
        else:
            ax.set_xlabel("achieved sparsity (|w| < near_zero)")
        if metric.endswith("loss") and (table[f"mean_{metric}"].dropna() > 0).all():
            ax.set_yscale("log")
        ax.set_title(metric, fontsize=10)
    for ax in axes.flat[len(metrics):]:
        ax.set_axis_off()
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside lower center", ncols=min(6, len(styles)),
               fontsize=8, title=f"method ({BAND})", title_fontsize=8)
    fig.suptitle("Methods at matched sparsity: metrics against the achieved sparsity "
                 f"(points: runs of the same swept values; mean, {BAND})", fontsize=10)
    return fig


# --------------------------------------------------------------------------------- lottery rounds
def training_columns(runs: pd.DataFrame) -> dict[tuple[str, int], dict[str, str]]:
    """{(kind, r): {metric: column}} of the per-training metrics round<r>_* and reinit<r>_*."""
    found: dict[tuple[str, int], dict[str, str]] = {}
    for column in runs:
        if (match := TRAINING.match(str(column))) is not None:
            kind, r, metric = match.groups()
            found.setdefault((KINDS[kind], int(r)), {})[metric] = column
    return dict(sorted(found.items(), key=lambda item: (item[0][1], item[0][0])))


def rounds_table(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame | None:
    """One row per completed run, training round and kind ("ticket": round r; "reinit": its control)
    that has per-training metrics: run_dir, method, the swept keys and seed, round, kind, remaining
    (1 − mask_sparsity) and the metrics; None when no run has any."""
    runs = completed(runs)
    trainings = training_columns(runs)
    context = [c for c in ("run_dir", METHOD, *keys, "seed") if c in runs]
    rows = []
    for (kind, r), columns in trainings.items():
        values = runs[list(columns.values())].apply(numeric).set_axis(list(columns), axis=1)
        present = values.notna().any(axis=1)
        rows.append(pd.concat([runs.loc[present, list(dict.fromkeys(context))], values[present]], axis=1)
                    .assign(round=r, kind=kind))
    if not rows or all(part.empty for part in rows):
        return None
    table = pd.concat([part for part in rows if not part.empty], ignore_index=True).dropna(axis=1, how="all")
    if MASK_SPARSITY in table:
        table["remaining"] = 1 - table[MASK_SPARSITY]
    front = [c for c in (*context, "round", "kind", "remaining") if c in table]
    return table[front + [c for c in table if c not in front]].sort_values(
        [c for c in ("run_dir", "round") if c in table], kind="stable", ignore_index=True)


def rounds_metric(table: pd.DataFrame) -> str | None:
    """Test accuracy, or the task loss where the task has no accuracy."""
    return next((m for m in ("test_accuracy", "task_loss") if m in table and table[m].notna().any()), None)


def rounds_figure(table: pd.DataFrame) -> Figure | None:
    """The metric of each training against the remaining fraction of the weights (log, sparser to the
    right): winning tickets solid, their random re-initialisations dashed, one colour per method,
    mean ± 1 sd over the runs at the same remaining fraction; round 0 (dense) dotted as the reference."""
    metric = rounds_metric(table)
    if metric is None or "remaining" not in table:
        return None
    data = table[table["remaining"].notna() & table[metric].notna()].assign(at=lambda t: t["remaining"].round(6))
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.6), layout="constrained")
    styles = method_styles(data[METHOD].fillna(""))
    for (method, kind), rows in data.groupby([data[METHOD].fillna(""), "kind"]):
        points = rows.groupby("at")[metric].agg(["mean", "std"])
        band(ax, points.index, points["mean"], points["std"], ls="--" if kind == "reinit" else "-",
             label=f"{method}: {'random reinitialisation' if kind == 'reinit' else 'winning ticket'}",
             **styles[method])
    for method, rows in data[data["round"] == 0].groupby(data[METHOD].fillna("")):
        ax.axhline(rows[metric].mean(), color=styles[method]["color"], ls=":", lw=1.2,
                   label=f"{method}: dense (round 0), mean of {len(rows)}")
    remaining_axis(ax, data["remaining"].to_numpy())
    if metric.endswith("loss") and (data[metric] > 0).all():
        ax.set_yscale("log")
    ax.set(ylabel=metric, title=f"Lottery rounds: {metric} of each training against the weights kept ({BAND})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return fig


# ------------------------------------------------------------------------------- spectra by method
def matched_target(runs: pd.DataFrame) -> float:
    """An achieved sparsity every method reaches within MATCH_WITHIN: the one whose farthest method is
    nearest (to 0.01), the largest of those; else the median."""
    s = runs[SPARSITY]
    gaps = {t: max((group - t).abs().min() for _, group in s.groupby(runs[METHOD])) for t in s.unique()}
    reached = [t for t, gap in gaps.items() if gap <= MATCH_WITHIN]
    return float(min(reached, key=lambda t: (round(gaps[t], 2), -t))) if reached else float(s.median())


def spectrum_panels(runs: pd.DataFrame, target: float) -> list[tuple[pd.Series, dict]]:
    """(run, analysis) per method: its run closest to `target` in sparsity (then lowest seed) among those
    whose analysis.npz holds the spectrum; a method with none is left out."""
    panels = []
    order = [c for c in ("distance", "seed", "run_dir") if c in runs or c == "distance"]
    for _, group in runs.assign(distance=(runs[SPARSITY] - target).abs()).groupby(METHOD, sort=True):
        for _, run in group.sort_values(order).iterrows():
            if "run_dir" in run and (analysis := read_analysis(Path(run["run_dir"]), SPECTRUM_KEYS)) is not None:
                panels.append((run, analysis))
                break
    return panels


def by_fraction_of_steps(analysis: dict) -> dict:
    """The spectrum's sample steps as fractions of the run's last: methods train for different numbers
    of steps (a lottery run's history holds all its trainings), so colour says how far through its run."""
    steps = np.asarray(analysis["eig_steps"], float)
    return {**analysis, "eig_steps": steps / max(steps.max(), 1.0)}


def spectra_figure(runs: pd.DataFrame) -> Figure | None:
    """Eigenvalues of J over training (coloured by the fraction of the run's steps, final ones ringed), one
    panel per method, each the method's run nearest a sparsity all reach (matched_target), on shared
    limits; None when no run has a spectrum."""
    runs = compared_runs(runs)
    if runs.empty or not compares_methods(runs):
        return None
    target = matched_target(runs)
    panels = spectrum_panels(runs, target)
    if not panels:
        return None
    panels = [(run, by_fraction_of_steps(analysis)) for run, analysis in panels]
    xlim, ylim = spectrum_limits([analysis for _, analysis in panels])
    norm = Normalize(0.0, 1.0)
    n_cols = min(PANEL_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(3.3 * n_cols + 1.2, 3.4 * n_rows + 0.5))
    for ax, (run, analysis) in zip(axes.flat, panels):
        points = draw_spectrum(ax, analysis, norm)
        seed = f", seed {format_value(run['seed'])}" if "seed" in run and pd.notna(run["seed"]) else ""
        ax.set(xlim=xlim, ylim=ylim, title=f"{run[METHOD]}\nsparsity {run[SPARSITY]:.3f}{seed}")
        ax.title.set_fontsize(9)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.colorbar(points, ax=axes, label="fraction of the run's training steps", shrink=0.9)
    fig.suptitle(f"Eigenvalues of J during training, by method, near sparsity {target:.3f} (each panel: the run of "
                 "that method nearest it)")
    return fig


# ------------------------------------------------------------------------------------------- entry
def sweep_outputs(runs: pd.DataFrame, keys: Sequence[str], out: Path) -> list[Path]:
    """matched_sparsity.csv, lottery_rounds.csv and their figures, and spectra_by_method.png (module
    docstring), each where it has something to show; returns the written paths."""
    out, written = Path(out), []
    if (table := matched_table(runs, keys)) is not None:
        written.append(write_table(table, out / "matched_sparsity.csv"))
        if (fig := matched_figure(table)) is not None:
            written.append(save_figure(fig, out / FIGURES / "matched_sparsity.png"))
    if (rounds := rounds_table(runs, keys)) is not None:
        written.append(write_table(rounds, out / "lottery_rounds.csv"))
        if (fig := rounds_figure(rounds)) is not None:
            written.append(save_figure(fig, out / FIGURES / "lottery_rounds.png"))
    if (fig := spectra_figure(runs)) is not None:
        written.append(save_figure(fig, out / FIGURES / "spectra_by_method.png"))
    return written
