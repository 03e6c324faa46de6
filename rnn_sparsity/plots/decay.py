"""Per-run figures of the fast-decay study (task=fast_decay), drawn from what is on disk:

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
from matplotlib.figure import Figure

from rnn_sparsity.artifacts import METRICS, read_metrics
from rnn_sparsity.plots.common import complex_plane_guides, read_analysis


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


DECAY_FIGURES: dict[str, Callable[[Path], Figure | None]] = {
    "decay_curve.png": decay_curve_figure,
    "eigenvalues_before_after.png": before_after_eigenvalue_figure,
}
