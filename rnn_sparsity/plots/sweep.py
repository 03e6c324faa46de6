"""Cross-run comparison figures, drawn from the aggregated runs table and the run directories on disk.

`draw_sweep_figures` writes, for completed runs only:

  <metric>_vs_<key>.png   a metric against a swept key: mean and 95% CI over seeds (drawn and named in the
                          title only where a point has 2 runs or more), coloured by another swept key when
                          there is one; symlog x for `...strength` keys (λ = 0 included)

and `draw_panel_figures` (the analysis group's sweep figures, probes.Analysis.sweep_outputs):

  spectra_by_<key>.png    for key in SPECTRUM_SWEEPS: one complex-plane panel per swept value, eigenvalues
                          of J over training coloured by step on one shared colour scale and shared limits
  fp_eigenvalue_evolution_by_<key>.png
                          the same panels for runs that tracked fixed points during training
                          (`analysis=dynamics`): eigenvalues of DF at the tracked points coloured by step,
                          blue early to red late, on one shared colour scale and shared limits
  accuracy_curves_by_<key>.png
                          classification runs: train and test accuracy over training, one colour per
                          value of the key, mean over seeds, smoothed

One panel per value of the key, from one representative run (see `representative_runs`); a figure is
skipped when no run of the sweep has its inputs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from pandas.api.types import is_numeric_dtype
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from rnn_sparsity.plots.common import SPECTRUM_KEYS, draw_spectrum, read_analysis, save_figure, spectrum_limits, step_norm
from rnn_sparsity.plots.dynamics import (TRACK_CMAP, TRACK_KEYS, draw_tracked_eigenvalues, eigenvalue_limits, kind,
                                         linearisation_name)

SPECTRUM_SWEEPS = ("regularizer.strength", "model.sparsity")
PANEL_COLUMNS = 4


def format_value(value: Any) -> str:
    """A config value for a label: numbers compactly (0.001, 1e-05), anything else as text."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def sorted_values(column: pd.Series) -> list:
    """The distinct values of a column in ascending order (missing values left out)."""
    return sorted(column.dropna().unique())


def interval_label(sizes: pd.Series) -> str:
    """What a point of a metric figure is: the runs per point and, where there are two or more, the CI."""
    if sizes.empty or sizes.max() < 2:
        return "one run per point, no interval"
    if sizes.min() >= 2:
        return f"mean, 95% CI over {sizes.min()} runs" if sizes.min() == sizes.max() else \
            f"mean, 95% CI over {sizes.min()}-{sizes.max()} runs"
    return "mean; 95% CI where a point has 2 or more runs"


def metric_figure(runs: pd.DataFrame, metric: str, key: str, hue: str | None = None) -> Figure:
    """`metric` against `key`: mean over seeds with a bootstrapped 95% CI (only where a point has two
    runs or more, and the title says so), one line per value of `hue`; bars side by side when `key` is
    categorical (a regularizer's name, an activation).

    The bootstrap is seeded so that redrawing from the same runs gives the same figure.
    """
    data = runs.dropna(subset=[metric])
    hue_options = {}
    if hue is not None:
        # As text, so seaborn draws one categorical colour per value rather than a continuous scale.
        data = data.assign(**{hue: data[hue].map(format_value)})
        hue_options = {"hue": hue, "hue_order": [format_value(v) for v in sorted_values(runs[hue])]}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    sizes = data.groupby([key, *([hue] if hue else [])], dropna=False).size()
    errorbar = ("ci", 95) if not sizes.empty and sizes.max() >= 2 else None  # no interval from one run
    if is_numeric_dtype(runs[key]):
        sns.lineplot(data=data, x=key, y=metric, marker="o", errorbar=errorbar, seed=0, ax=ax, **hue_options)
    else:
        sns.barplot(data=data, x=key, y=metric, order=sorted_values(runs[key]), errorbar=errorbar, seed=0,
                    ax=ax, **hue_options)
    positive = pd.to_numeric(data[key], errors="coerce").loc[lambda x: x > 0]
    if key.endswith("strength") and not positive.empty:
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    if metric.endswith("loss") and (data[metric] > 0).all():
        ax.set_yscale("log")  # losses of a sweep span decades
    ax.set_title(f"{metric} vs {key} ({interval_label(sizes)})", fontsize=10)
    return fig


def representative_runs(runs: pd.DataFrame, key: str, keys: Sequence[str]) -> pd.DataFrame:
    """One run per value of `key`: other swept keys at their first value where possible, then lowest seed."""
    others = [k for k in keys if k != key]
    off_first = sum((runs[k] != sorted_values(runs[k])[0]).astype(int) for k in others if runs[k].notna().any())
    order = ["off_first"] + [c for c in ("seed", "run_dir") if c in runs]
    chosen = runs.assign(off_first=off_first).sort_values(order).drop_duplicates(key)
    return chosen.sort_values(key)


def panel_title(run: pd.Series, key: str, keys: Sequence[str]) -> str:
    """`key = value`, and below it the other swept values and the seed of the run shown."""
    context = [f"{k}={format_value(run[k])}" for k in keys if k != key]
    if "seed" in run:
        context.append(f"seed={format_value(run['seed'])}")
    return f"{key} = {format_value(run[key])}\n" + ", ".join(context)


Panel = tuple[pd.Series, dict]


def panels_with(runs: pd.DataFrame, key: str, keys: Sequence[str], required: Sequence[str]) -> list[Panel]:
    """(run, analysis arrays) for each representative run of `key` whose analysis.npz holds `required`."""
    panels = []
    for _, run in representative_runs(runs, key, keys).iterrows():
        analysis = read_analysis(Path(run["run_dir"]), required)
        if analysis is not None:
            panels.append((run, analysis))
    return panels


def panel_grid(panels: list[Panel], key: str, keys: Sequence[str],
               draw: Callable[[plt.Axes, pd.Series, dict], None], title: str) -> tuple[Figure, Any]:
    """Up to PANEL_COLUMNS panels a row, each drawn by `draw(ax, run, analysis)` under the run's title."""
    n_cols = min(PANEL_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(3.3 * n_cols + 1.2, 3.4 * n_rows + 0.5))
    for ax, (run, analysis) in zip(axes.flat, panels):
        draw(ax, run, analysis)
        ax.set_title(panel_title(run, key, keys), fontsize=9)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return fig, axes


def spectra_figure(runs: pd.DataFrame, key: str, keys: Sequence[str]) -> Figure | None:
    """A grid of spectra, one panel per value of `key`; None when no run of the sweep has eigenvalues."""
    panels = panels_with(runs, key, keys, SPECTRUM_KEYS)
    if not panels:
        return None
    analyses = [analysis for _, analysis in panels]
    norm = step_norm(analyses)
    xlim, ylim = spectrum_limits(analyses)

    def draw(ax, run, analysis):
        draw_spectrum(ax, analysis, norm)
        ax.set(xlim=xlim, ylim=ylim)

    fig, axes = panel_grid(panels, key, keys, draw, f"Eigenvalues of J during training, by {key}")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.colorbar(axes[0, 0].collections[0], ax=axes, label="training step", shrink=0.9)
    return fig


def fp_eigenvalue_evolution_figure(runs: pd.DataFrame, key: str, keys: Sequence[str]) -> Figure | None:
    """Eigenvalues of DF at the fixed points tracked during training, one panel per value of `key`,
    coloured by step on one shared scale (blue early, red late); None when no run tracked any."""
    panels = panels_with(runs, key, keys, TRACK_KEYS)
    if not panels:
        return None
    steps = np.concatenate([analysis["fp_track_step"] for _, analysis in panels])
    norm = Normalize(steps.min(), steps.max())
    of = kind(panels[0][1])
    xlim, ylim = eigenvalue_limits(np.concatenate([a["fp_track_eigenvalues"].ravel() for _, a in panels]), of)

    def draw(ax, run, analysis):
        draw_tracked_eigenvalues(ax, analysis, norm)
        ax.set(xlim=xlim, ylim=ylim)

    fig, axes = panel_grid(panels, key, keys, draw,
                           f"Eigenvalues of {linearisation_name(of)} at the tracked fixed points, by {key}")
    axes[0, 0].legend(loc="upper left", fontsize=7)
    fig.colorbar(ScalarMappable(norm, TRACK_CMAP), ax=axes, label="training step", shrink=0.9)
    return fig


ACCURACY_KEYS = ("eval_step", "eval_train_accuracy", "eval_test_accuracy")
SMOOTHING = 5  # samples in the moving average of the accuracy curves


def moving_average(values, width: int = SMOOTHING):
    """Centred moving average (shorter windows at the ends), so a curve keeps its length."""
    values = np.asarray(values, float)
    kernel = np.ones(min(width, len(values)))
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def accuracy_curves_figure(runs: pd.DataFrame, key: str, keys: Sequence[str]) -> Figure | None:
    """Train (dashed) and test (solid) accuracy over training, one colour per value of `key`, each the mean
    over the runs (seeds) with that value, smoothed; None when no run recorded accuracies."""
    curves = []
    for value in sorted_values(runs[key]):
        arrays = [read_analysis(Path(d), ACCURACY_KEYS) for d in runs.loc[runs[key] == value, "run_dir"]]
        arrays = [a for a in arrays if a is not None]
        if arrays:
            length = min(len(a["eval_step"]) for a in arrays)
            mean = {k: np.mean([a[k][:length] for a in arrays], axis=0) for k in ACCURACY_KEYS}
            curves.append((value, mean))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.4), layout="constrained")
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(curves)))
    for color, (value, mean) in zip(colors, curves):
        ax.plot(mean["eval_step"], moving_average(mean["eval_test_accuracy"]), color=color,
                label=f"{format_value(value)}")
        ax.plot(mean["eval_step"], moving_average(mean["eval_train_accuracy"]), "--", color=color, alpha=0.6)
    ax.set(xlabel="step", ylabel="accuracy", title=f"Accuracy during training by {key} (test solid, train dashed;"
           f" mean over seeds, moving average of {SMOOTHING} samples)")
    ax.title.set_fontsize(9)
    ax.legend(title=key, fontsize=7, ncols=2)
    return fig



PANEL_FIGURES: dict[str, Callable[[pd.DataFrame, str, Sequence[str]], Figure | None]] = {
    "spectra": spectra_figure,
    "fp_eigenvalue_evolution": fp_eigenvalue_evolution_figure,
    "accuracy_curves": accuracy_curves_figure,
}


def draw_sweep_figures(runs: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
                       out_dir: Path) -> list[Path]:
    """<metric>_vs_<key>.png for every metric and swept key, over the completed runs in `runs`."""
    completed = runs[runs["status"] == "completed"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key in keys:
        hue = next((k for k in keys if k != key), None)
        for metric in metrics:
            if completed[metric].notna().any():
                fig = metric_figure(completed, metric, key, hue)
                name = metric.replace("/", "_")  # per-parameter metrics such as sparsity/J
                written.append(save_figure(fig, out_dir / f"{name}_vs_{key}.png"))
    return written


def draw_panel_figures(runs: pd.DataFrame, keys: Sequence[str], out_dir: Path) -> list[Path]:
    """<panel>_by_<key>.png (PANEL_FIGURES) for λ and s where swept, over the completed runs (the
    analysis group's sweep figures: they read what its probes wrote)."""
    completed = runs[runs["status"] == "completed"]
    written = []
    for key in SPECTRUM_SWEEPS:
        if key not in keys or completed.empty:
            continue
        for name, draw in PANEL_FIGURES.items():
            fig = draw(completed, key, keys)
            if fig is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                written.append(save_figure(fig, Path(out_dir) / f"{name}_by_{key}.png"))
    return written
