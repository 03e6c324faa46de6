"""Dynamics figures and tables (`analysis=dynamics`) from synthetic run directories that follow the
analysis.npz contract: fixed points of a random 8-unit J with their real Jacobian spectra, a real PCA."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import load_runs, main, swept_keys
from rnn_sparsity.plots.common import markdown_table
from rnn_sparsity.plots.dynamics import unstable_eigenvalue_table
from rnn_sparsity.plots.dynamics import (
    DYNAMICS_FIGURES,
    TRACK_CMAP,
    jacobian_eigenvalue_figure,
    pc_space_figure,
    pca_variance_figure,
    unstable_frequency_figure,
)
from rnn_sparsity.plots.run import draw_run_figures
from rnn_sparsity.plots.sweep import fp_eigenvalue_evolution_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_UNITS = 8
OMEGAS = np.linspace(0.1, 0.6, 5)
TRACK_STEPS = (0, 10, 20)
BASE_FIGURES = {"loss.png", "output_vs_target.png", "J_heatmap.png", "eigenvalues.png"}
KEYS = ("regularizer.strength", "model.sparsity")


# ------------------------------------------------------------------------------- synthetic dynamics
def jacobian_spectrum(J: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of DF = -I + J diag(1 - tanh² x), by descending real part, and their eigenvectors."""
    values, vectors = np.linalg.eig(-np.eye(len(x)) + J * (1 - np.tanh(x) ** 2))
    order = np.argsort(-values.real, kind="stable")
    return values[order], vectors[:, order]


def leading_frequency(values: np.ndarray) -> float:
    """|Im λ| of the unstable complex eigenvalue with the largest Re λ (τ = 1), NaN without one."""
    pairs = values[(values.real > 0) & (np.abs(values.imag) > 1e-9)]
    return float(abs(pairs[0].imag)) if len(pairs) else float("nan")


def random_J(rng: np.random.Generator, bulk: float) -> np.ndarray:
    """A random J (entries of std bulk/√N) plus a rotation-expansion 1.4 ± 0.5i in a random plane, so that
    DF ≈ -I + J at x ≈ 0 has an unstable complex pair near 0.4 ± 0.5i whatever the draw (and, with a
    larger bulk, more unstable eigenvalues)."""
    plane = np.linalg.qr(rng.normal(size=(N_UNITS, 2)))[0]
    return bulk * rng.normal(size=(N_UNITS, N_UNITS)) / np.sqrt(N_UNITS) + plane @ [[1.4, -0.5], [0.5, 1.4]] @ plane.T


def dynamics_arrays(rng: np.random.Generator, n_saturated: int = 1, n_oscillating: int = 4, bulk: float = 0.6):
    """(arrays, metrics) as `analysis=dynamics` writes them, for 5 sine conditions.

    The first `n_oscillating` conditions get a point near x = 0, where DF ≈ -I + J is unstable, as their
    central point; every condition gets `n_saturated` points with |x| ≈ 3, where DF ≈ -I is stable. A
    condition without a point near 0 has a stable central point, so its fp_omega is NaN.
    """
    J = random_J(rng, bulk)
    points, conditions, spectra, directions, fp_omega = [], [], [], [], []
    for c in range(len(OMEGAS)):
        near_zero = 0.05 * rng.normal(size=(int(c < n_oscillating), N_UNITS))
        saturated = 3 * np.sign(rng.normal(size=(n_saturated, N_UNITS))) + 0.1 * rng.normal(size=(n_saturated, N_UNITS))
        for x in np.concatenate([near_zero, saturated]):
            values, vectors = jacobian_spectrum(J, x)
            points.append(x), conditions.append(c), spectra.append(values)
            lead = vectors[:, 0].real
            directions.append(lead / np.linalg.norm(lead) if values[0].real > 0 else np.full(N_UNITS, np.nan))
        fp_omega.append(leading_frequency(spectra[-1 - n_saturated]))
    points, spectra, directions = np.array(points), np.array(spectra), np.array(directions)
    n_unstable = np.sum(spectra.real > 0, axis=1)

    angle = np.linspace(0, 4 * np.pi, 30)[:, None]
    plane = np.linalg.qr(rng.normal(size=(N_UNITS, 3)))[0].T
    states = np.stack([np.cos(w * angle) * plane[0] + np.sin(w * angle) * plane[1] + 0.2 * c * plane[2]
                       for c, w in enumerate(OMEGAS)]) + 0.01 * rng.normal(size=(len(OMEGAS), 30, N_UNITS))
    pca_mean = states.reshape(-1, N_UNITS).mean(axis=0)
    _, singular, components = np.linalg.svd(states.reshape(-1, N_UNITS) - pca_mean, full_matrices=False)
    components, explained = components[:4], (singular ** 2 / np.sum(singular ** 2))[:4]
    slow = rng.normal(size=(3, N_UNITS))
    arrays = {
        "fp_points": points, "fp_condition": np.array(conditions), "fp_residual_norms": np.zeros(len(points)),
        "fp_eigenvalues": spectra, "fp_n_unstable": n_unstable, "fp_is_stable": n_unstable == 0,
        "condition_inputs": (np.arange(len(OMEGAS)) / len(OMEGAS) + 0.25)[:, None],
        "condition_omegas": OMEGAS, "fp_omega": np.array(fp_omega),
        "sp_points": slow, "sp_condition": np.zeros(3, int), "sp_q": np.full(3, 1e-5),
        "pca_mean": pca_mean, "pca_components": components, "pca_variance_explained": explained,
        "pca_trajectories": (states - pca_mean) @ components.T, "pca_trajectory_condition": np.arange(len(OMEGAS)),
        "pca_fixed_points": (points - pca_mean) @ components.T,
        "pca_unstable_directions": directions @ components.T, "pca_slow_points": (slow - pca_mean) @ components.T,
        **tracked_arrays(J, points[0])}
    errors = np.where(np.isnan(fp_omega), 1.0, np.abs(np.array(fp_omega) - OMEGAS) / OMEGAS)
    metrics = {"n_fixed_points": len(points), "n_stable_fixed_points": int(np.sum(n_unstable == 0)),
               "n_unstable_fixed_points": int(np.sum(n_unstable > 0)), "max_unstable_eigs": int(n_unstable.max()),
               "mean_unstable_eigs": float(n_unstable.mean()), "n_slow_points": 3,
               "fp_freq_error": float(np.median(errors)), "pca_var_explained_3": float(explained[:3].sum())}
    return arrays, metrics


def tracked_arrays(J: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Two fixed points per sample while J grows from 0.4 J to J: one row per (step, point)."""
    rows = [(step, jacobian_spectrum(J * scale, x * sign)[0])
            for step, scale in zip(TRACK_STEPS, (0.4, 0.7, 1.0)) for sign in (1, -1)]
    return {"fp_track_step": np.array([r[0] for r in rows]), "fp_track_condition": np.zeros(len(rows), int),
            "fp_track_eigenvalues": np.array([r[1] for r in rows])}


def dynamics_run(synthetic_run, run_dir: Path, *, shape: dict | None = None, **options) -> tuple[Path, dict]:
    """A synthetic run (conftest) whose analysis.npz and metrics.json gain the dynamics arrays and metrics
    (`shape`: keyword arguments of `dynamics_arrays`)."""
    run_dir = synthetic_run(run_dir, **options)
    seed = [options.get("seed", 0), int(1000 * options.get("strength", 0)), int(10 * options.get("sparsity", 0))]
    arrays, metrics = dynamics_arrays(np.random.default_rng(seed), **(shape or {}))
    analysis = artifacts.read_arrays(run_dir / artifacts.ANALYSIS)
    artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {**analysis, **arrays})
    artifacts.write_metrics(run_dir, {**artifacts.read_metrics(run_dir), **metrics})
    if artifacts.is_done(run_dir):
        artifacts.mark_done(run_dir)  # DONE vouches for the files as the run wrote them
    return run_dir, {**arrays, **metrics}


def drop_arrays(run_dir: Path, *names: str) -> None:
    arrays = artifacts.read_arrays(run_dir / artifacts.ANALYSIS)
    artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {k: v for k, v in arrays.items() if k not in names})
    if artifacts.is_done(run_dir):
        artifacts.mark_done(run_dir)


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    assert plt.imread(path).shape[0] > 100, path


def scatter(ax, label: str) -> PathCollection:
    (collection,) = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_label() == label]
    return collection


@pytest.fixture
def run(tmp_path, synthetic_run):
    return dynamics_run(synthetic_run, tmp_path / "run")


# ------------------------------------------------------------------------------------ per-run figures
def test_dynamics_run_draws_the_four_dynamics_figures_as_pngs(run):
    run_dir, _ = run

    written = draw_run_figures(run_dir)

    assert {path.name for path in written} == BASE_FIGURES | set(DYNAMICS_FIGURES)
    for path in written:
        assert_png(path)
    assert not plt.get_fignums()


def test_a_run_without_dynamics_arrays_draws_none_of_them(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "run")

    assert {path.name for path in draw_run_figures(run_dir)} == BASE_FIGURES
    assert all(draw(run_dir) is None for draw in DYNAMICS_FIGURES.values())
    assert all(draw(synthetic_run(tmp_path / "off", analysis=False)) is None for draw in DYNAMICS_FIGURES.values())


def test_flipflop_like_run_without_frequencies_skips_only_the_frequency_figure(run):
    run_dir, _ = run
    drop_arrays(run_dir, "condition_omegas", "fp_omega")

    written = {path.name for path in draw_run_figures(run_dir)}

    assert written == BASE_FIGURES | {"pc_space.png", "jacobian_eigenvalues.png", "pca_variance.png"}
    fig = jacobian_eigenvalue_figure(run_dir)
    assert fig.axes[1].get_ylabel() == "condition"  # the colorbar: condition index without ω_j
    plt.close(fig)


def test_without_pca_only_the_spectrum_and_frequency_figures_are_drawn(run):
    run_dir, _ = run
    drop_arrays(run_dir, *[name for name in artifacts.read_arrays(run_dir / artifacts.ANALYSIS) if name.startswith("pca_")])

    assert pc_space_figure(run_dir) is None and pca_variance_figure(run_dir) is None
    written = {path.name for path in draw_run_figures(run_dir)}
    assert written == BASE_FIGURES | {"jacobian_eigenvalues.png", "unstable_frequency.png"}


def test_no_fixed_points_found_still_draws_and_says_so(run):
    run_dir, _ = run
    arrays = artifacts.read_arrays(run_dir / artifacts.ANALYSIS)
    empty = {k: v[:0] for k, v in arrays.items() if k.startswith(("fp_", "pca_fixed", "pca_unstable"))
             and not k.startswith("fp_track") and k != "fp_omega"}
    artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {**arrays, **empty, "fp_omega": np.full(len(OMEGAS), np.nan)})

    assert set(DYNAMICS_FIGURES) <= {path.name for path in draw_run_figures(run_dir)}
    fig = pc_space_figure(run_dir)
    assert "0 fixed points, 0 unstable" in fig.axes[0].get_title()
    plt.close(fig)
    fig = unstable_frequency_figure(run_dir)
    assert "median relative error 1" in fig.axes[0].get_title()  # every condition counts as 1.0
    plt.close(fig)


def test_pc_space_shows_trajectories_fixed_points_by_stability_and_unstable_directions(run):
    run_dir, arrays = run
    stable = arrays["fp_is_stable"]
    assert stable.any() and not stable.all()  # the synthetic net has both kinds

    fig = pc_space_figure(run_dir)
    ax = fig.axes[0]
    plt.close(fig)

    trajectories = [line for line in ax.lines if not line.get_label().startswith("unstable")]
    assert len(trajectories) == len(OMEGAS)
    np.testing.assert_allclose(np.array(trajectories[2].get_data_3d()).T, arrays["pca_trajectories"][2][:, :3])
    assert len(scatter(ax, "stable fixed point").get_offsets()) == stable.sum()
    assert len(scatter(ax, "unstable fixed point").get_offsets()) == (~stable).sum()
    assert len(scatter(ax, "slow point").get_offsets()) == 3
    (segments,) = [line for line in ax.lines if line.get_label() == "unstable direction"]
    ends = np.array(segments.get_data_3d()).T.reshape(-1, 3, 3)[:, :2]  # (unstable point, 2 ends, 3 PCs)
    np.testing.assert_allclose(ends.mean(axis=1), arrays["pca_fixed_points"][~stable, :3])
    np.testing.assert_allclose(np.cross(ends[:, 1] - ends[:, 0], arrays["pca_unstable_directions"][~stable, :3]), 0,
                               atol=1e-9)
    assert ax.get_xlabel() == f"PC1 ({arrays['pca_variance_explained'][0]:.1%} var.)"
    assert ax.get_zlabel().startswith("PC3 (")
    assert f"{len(stable)} fixed points, {(~stable).sum()} unstable" in ax.get_title()


def test_jacobian_eigenvalues_are_all_plotted_and_coloured_by_condition(run):
    run_dir, arrays = run
    values = arrays["fp_eigenvalues"]

    fig = jacobian_eigenvalue_figure(run_dir)
    ax, colorbar = fig.axes
    points = ax.collections[0]
    plt.close(fig)

    np.testing.assert_allclose(points.get_offsets(), np.c_[values.real.ravel(), values.imag.ravel()])
    colors = points.get_facecolors()
    first, last = arrays["fp_condition"] == 0, arrays["fp_condition"] == len(OMEGAS) - 1
    assert not np.allclose(colors[np.repeat(first, N_UNITS)][0], colors[np.repeat(last, N_UNITS)][0])
    assert colorbar.get_ylabel().startswith(r"$\omega_j$")
    assert any(line.get_xdata()[0] == 0 for line in ax.lines)  # Re λ = 0


def test_unstable_frequency_against_omega_with_missing_pairs_on_the_axis(run):
    run_dir, arrays = run
    found = arrays["fp_omega"]
    missing = np.isnan(found)
    assert missing[-1] and not missing.all()

    fig = unstable_frequency_figure(run_dir)
    ax = fig.axes[0]
    plt.close(fig)

    np.testing.assert_allclose(scatter(ax, "central fixed point").get_offsets(), np.c_[OMEGAS, found][~missing])
    marked = scatter(ax, f"no unstable complex pair ({missing.sum()})").get_offsets()
    np.testing.assert_allclose(marked, np.c_[OMEGAS[missing], np.zeros(missing.sum())])
    assert f"median relative error {arrays['fp_freq_error']:.3g}" in ax.get_title()


def test_pca_variance_bars_and_cumulative_line(run):
    run_dir, arrays = run
    explained = arrays["pca_variance_explained"]

    fig = pca_variance_figure(run_dir)
    ax = fig.axes[0]
    plt.close(fig)

    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], explained)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.cumsum(explained))


# -------------------------------------------------------------------------------------------- sweeps
def write_sweep(root: Path, synthetic_run, **options) -> list[dict]:
    """λ ∈ {0, 0.1} × s ∈ {0, 0.5} × 2 seeds; the numbers of stable and unstable points and of unstable
    eigenvalues per point differ from run to run."""
    grid = [(strength, sparsity, seed) for strength in (0.0, 0.1) for sparsity in (0.0, 0.5) for seed in (0, 1)]
    written = []
    for n, (strength, sparsity, seed) in enumerate(grid):
        shape = {"n_saturated": 1 + n % 3, "n_oscillating": 2 + n % 3, "bulk": 2.0 if n in (1, 6) else 0.6}
        _, metrics = dynamics_run(synthetic_run, root / "multirun" / str(n), shape=shape,
                                  strength=strength, sparsity=sparsity, seed=seed, **options)
        written.append({"regularizer.strength": strength, "model.sparsity": sparsity, **metrics})
    return written


def test_unstable_eigenvalue_table_equals_the_metrics_grouped_by_hand(tmp_path, synthetic_run):
    written = write_sweep(tmp_path, synthetic_run)
    runs = load_runs([tmp_path])

    for key in KEYS:
        table = unstable_eigenvalue_table(runs, key)
        values = sorted({m[key] for m in written})
        assert list(table[key]) == values
        for value, row in zip(values, table.itertuples(index=False)):
            group = [m for m in written if m[key] == value]
            assert row[1:] == pytest.approx((
                len(group), mean(m["n_fixed_points"] for m in group),
                mean(m["n_unstable_fixed_points"] for m in group), mean(m["mean_unstable_eigs"] for m in group),
                max(m["max_unstable_eigs"] for m in group)))
        for column in table.columns[2:]:  # the runs differ, so that a wrong grouping or statistic shows
            assert len(set(table[column])) > 1, column
        lines = markdown_table(table).splitlines()
        assert len(lines) == 2 + len(values)
        assert lines[0].startswith(f"| {key} | runs |")


def test_table_is_absent_without_fixed_point_metrics(tmp_path, synthetic_run):
    synthetic_run(tmp_path / "0", strength=0.0)
    synthetic_run(tmp_path / "1", strength=0.1)
    assert unstable_eigenvalue_table(load_runs([tmp_path]), "regularizer.strength") is None


def test_evolution_panels_share_one_step_scale_and_limits(tmp_path, synthetic_run):
    write_sweep(tmp_path, synthetic_run)
    runs = load_runs([tmp_path])

    fig = fp_eigenvalue_evolution_figure(runs, "regularizer.strength", swept_keys(runs))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.collections]
    plt.close(fig)

    assert len(panels) == 2  # λ = 0 and λ = 0.1
    for ax in panels:
        points = ax.collections[0]
        assert points.get_cmap() is TRACK_CMAP
        assert (points.norm.vmin, points.norm.vmax) == (min(TRACK_STEPS), max(TRACK_STEPS))
        assert ax.get_xlim() == panels[0].get_xlim() and ax.get_ylim() == panels[0].get_ylim()
        np.testing.assert_array_equal(np.unique(points.get_array()), TRACK_STEPS)


def test_evolution_figure_is_skipped_when_no_run_tracked_fixed_points(tmp_path, synthetic_run):
    for n, strength in enumerate((0.0, 0.1)):
        run_dir, _ = dynamics_run(synthetic_run, tmp_path / str(n), strength=strength)
        drop_arrays(run_dir, "fp_track_step", "fp_track_condition", "fp_track_eigenvalues")
    runs = load_runs([tmp_path])

    assert fp_eigenvalue_evolution_figure(runs, "regularizer.strength", swept_keys(runs)) is None


def test_aggregate_main_writes_the_tables_and_dynamics_figures(tmp_path, synthetic_run):
    written = write_sweep(tmp_path, synthetic_run)
    out = tmp_path / "report"

    assert main([str(tmp_path), "--out", str(out)]) == 0

    assert (out / "summary.csv").is_file()
    for key in KEYS:
        table = pd.read_csv(out / f"unstable_eigenvalues_by_{key}.csv")
        assert list(table.columns) == [key, "runs", "fixed points (mean)", "unstable fixed points (mean)",
                                       "unstable eigs per point: mean", "unstable eigs per point: max"]
        for value, row in table.set_index(key).iterrows():
            assert row["fixed points (mean)"] == pytest.approx(mean(m["n_fixed_points"] for m in written if m[key] == value))
        assert len((out / f"unstable_eigenvalues_by_{key}.md").read_text().splitlines()) == 2 + 2
        assert_png(out / f"unstable_eigenvalues_by_{key}.png")
        assert_png(out / "figures" / f"fp_eigenvalue_evolution_by_{key}.png")
        for metric in ("n_fixed_points", "n_unstable_fixed_points", "n_slow_points", "spectral_radius",
                       "mean_unstable_eigs", "fp_freq_error"):
            assert_png(out / "figures" / f"{metric}_vs_{key}.png")


def test_aggregate_main_without_dynamics_writes_no_dynamics_outputs(tmp_path, synthetic_run):
    for n, (strength, sparsity) in enumerate([(0.0, 0.0), (0.1, 0.0), (0.0, 0.5), (0.1, 0.5)]):
        synthetic_run(tmp_path / str(n), strength=strength, sparsity=sparsity)

    assert main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0

    assert not list((tmp_path / "report").glob("unstable_eigenvalues_*"))
    assert not list((tmp_path / "report" / "figures").glob("fp_eigenvalue_evolution_*"))
    assert not list((tmp_path / "report" / "figures").glob("n_fixed_points_*"))
