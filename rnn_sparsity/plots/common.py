"""Plotting helpers shared by the figure modules (run, dynamics, rebound, decay, sweep): one floor below
them, so that no figure module imports another's helpers sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from rnn_sparsity.artifacts import ANALYSIS, atomic_path, read_arrays

DPI = 120
SPECTRUM_KEYS = ("eig_steps", "eig_values", "final_eigenvalues")
STEP_CMAP = "viridis"
HOLLOW = (0.0, 0.0, 0.0, 0.0)  # a transparent face: ringed markers


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
    ax.scatter(final.real, final.imag, s=30, facecolors=HOLLOW, edgecolors="crimson", linewidths=1,
               label="final")
    complex_plane_guides(ax, line_label=None if spectrum_of(analysis) == "map" else "Re λ = 1")
    return points


def spectrum_of(analysis: dict[str, np.ndarray]) -> str:
    """What the tracked spectrum is of: "J" (a rate network's connectivity) or "map" (a cell's ∂f/∂h at 0)."""
    return str(analysis["eig_of"]) if "eig_of" in analysis else "J"


def spectrum_title(analysis: dict[str, np.ndarray]) -> str:
    return "∂f/∂h at h = 0" if spectrum_of(analysis) == "map" else "J"


def complex_plane_guides(ax: plt.Axes, line_label: str | None = "Re λ = 1") -> None:
    """The line Re λ = 1 (where J's eigenvalues destabilise the origin of x' = -x + J f(x); None: not
    drawn, for a map, whose origin is stable inside the unit circle), the unit circle, axis labels and
    equal aspect, for eigenvalues in the complex plane."""
    if line_label is not None:
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


def format_cell(value: Any) -> str:
    """A table cell: numbers to 4 significant digits, a missing value as "–", anything else as text."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return "–" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def table_figure(table: pd.DataFrame, title: str) -> Figure:
    """A table as an image: a header row (": " or " (" in a name starts a second line), then one row per row."""
    cells = [[format_cell(value) for value in row] for row in table.itertuples(index=False)]
    header = [str(column).replace(": ", ":\n").replace(" (", "\n(") for column in table.columns]
    fig, ax = plt.subplots(figsize=(1.6 * len(header) + 0.4, 0.3 * len(cells) + 1.1), layout="constrained")
    ax.set_axis_off()
    drawn = ax.table(cellText=cells, colLabels=header, cellLoc="center", bbox=[0, 0, 1, 1])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    ax.set_title(title, fontsize=10)
    return fig


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table, numbers right-aligned (no `tabulate` needed)."""
    rows = [list(map(str, table.columns))] + [list(map(format_cell, row)) for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("---:" for _ in table.columns) + "|")
    return "\n".join(lines) + "\n"
