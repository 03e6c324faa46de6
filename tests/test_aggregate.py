"""rnn-sparsity-aggregate on synthetic run directories: discovery, the runs table, swept keys, statuses,
the summary's spread, when a figure claims a CI, per-parameter duplicates, CLI, the notebook import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from omegaconf import OmegaConf

from rnn_sparsity.aggregate import find_run_dirs, load_runs, main, metric_columns, summarize, swept_keys
from rnn_sparsity.plots.sweep import metric_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STRENGTHS = (0.0, 0.01, 0.1)
SPARSITIES = (0.0, 0.5)
SEEDS = (0, 1)


def write_grid(root: Path, synthetic_run) -> list[Path]:
    """A λ × s × seed multirun laid out as Hydra does: multirun/DATE/TIME/N/."""
    sweep = root / "multirun" / "2024-05-01" / "12-00-00"
    grid = [(strength, sparsity, seed) for strength in STRENGTHS for sparsity in SPARSITIES for seed in SEEDS]
    return [synthetic_run(sweep / str(n), strength=strength, sparsity=sparsity, seed=seed)
            for n, (strength, sparsity, seed) in enumerate(grid)]


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path


def test_find_run_dirs_at_any_depth_but_not_in_aggregate(tmp_path, synthetic_run):
    shallow = synthetic_run(tmp_path / "single")
    deep = synthetic_run(tmp_path / "multirun" / "2024-05-01" / "12-00-00" / "3")
    synthetic_run(tmp_path / "aggregate" / "copied_run")
    (tmp_path / "not_a_run" / "figures").mkdir(parents=True)

    assert find_run_dirs([tmp_path]) == sorted([shallow.resolve(), deep.resolve()])
    assert find_run_dirs([shallow]) == [shallow.resolve()]


def test_load_runs_one_row_per_run_with_config_metrics_and_bookkeeping(tmp_path, synthetic_run):
    write_grid(tmp_path, synthetic_run)
    synthetic_run(tmp_path / "outputs" / "2024-05-02" / "09-30-00", strength=0.1, sparsity=0.5, seed=7)

    runs = load_runs([tmp_path])

    assert len(runs) == len(STRENGTHS) * len(SPARSITIES) * len(SEEDS) + 1
    assert list(runs.columns[:4]) == ["run_dir", "status", "problem", "overrides"]
    assert set(runs["regularizer.strength"]) == set(STRENGTHS)
    assert set(runs["model.sparsity"]) == set(SPARSITIES)
    assert (runs["model.n_units"] == 8).all()
    assert (runs["regularizer.targets"] == "[J]").all()
    assert (runs["status"] == "completed").all()
    single = runs[runs["seed"] == 7].iloc[0]
    assert single["overrides"] == "regularizer.strength=0.1 model.sparsity=0.5 seed=7"
    assert single["final_loss"] == pytest.approx(1e-3 * (1 + 10 * 0.1 + 0.5) + 7e-5)
    assert Path(single["run_dir"]).name == "09-30-00"


def test_swept_keys_are_the_varied_config_keys_without_seed(tmp_path, synthetic_run):
    write_grid(tmp_path, synthetic_run)
    assert swept_keys(load_runs([tmp_path])) == ["regularizer.strength", "model.sparsity"]


def test_swept_keys_single_key_and_extra_keys_after_the_leading_ones(tmp_path, synthetic_run):
    for n, (strength, seed) in enumerate([(0.0, 0), (0.1, 0), (0.0, 1), (0.1, 1)]):
        synthetic_run(tmp_path / "a" / str(n), strength=strength, seed=seed,
                      overrides=[f"regularizer.strength={strength}", f"seed={seed}"])
    assert swept_keys(load_runs([tmp_path / "a"])) == ["regularizer.strength"]

    runs = load_runs([tmp_path / "a"])
    runs["model.gain"] = [1.0, 1.0, 2.0, 2.0]
    runs["overrides"] = runs["overrides"] + " model.gain=" + runs["model.gain"].astype(str)
    assert swept_keys(runs) == ["regularizer.strength", "model.gain"]


def test_statuses_are_reported_and_do_not_stop_aggregation(tmp_path, synthetic_run, capsys):
    completed = [synthetic_run(tmp_path / str(n), strength=s, seed=0) for n, s in enumerate(STRENGTHS)]
    diverged = synthetic_run(tmp_path / "10", strength=1.0, status="diverged")
    failed = synthetic_run(tmp_path / "11", strength=0.5, status="failed", done=False)
    running = synthetic_run(tmp_path / "12", strength=0.2, done=False)
    started = synthetic_run(tmp_path / "13", strength=0.3, status="failed")
    (started / "metrics.json").unlink()
    (started / "DONE").unlink(missing_ok=True)

    assert main([str(tmp_path)]) == 0

    runs = pd.read_parquet(tmp_path / "aggregate" / "runs.parquet")
    status = dict(zip(runs["run_dir"], runs["status"]))
    assert [status[str(d.resolve())] for d in completed] == ["completed"] * len(STRENGTHS)
    assert status[str(diverged.resolve())] == "diverged"
    assert status[str(failed.resolve())] == "failed"
    assert status[str(running.resolve())] == "incomplete"
    assert status[str(started.resolve())] == "incomplete"
    assert runs.loc[runs["status"] == "diverged", "final_loss"].isna().all()

    report = capsys.readouterr().out.split("Not completed")[1]
    for run_dir, expected in [(diverged, "diverged"), (failed, "failed"), (running, "incomplete")]:
        assert any(expected in line and str(run_dir.resolve()) in line for line in report.splitlines())
    assert "synthetic failure" in report


def test_main_writes_tables_summary_and_figures(tmp_path, synthetic_run, capsys):
    write_grid(tmp_path, synthetic_run)
    out = tmp_path / "report"

    assert main([str(tmp_path), "--out", str(out)]) == 0

    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == len(pd.read_csv(out / "runs.csv")) == 12
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(STRENGTHS) * len(SPARSITIES)
    assert (summary["runs"] == len(SEEDS)).all() and (summary["completed"] == len(SEEDS)).all()
    row = summary[(summary["regularizer.strength"] == 0.1) & (summary["model.sparsity"] == 0.5)].iloc[0]
    assert row["mean_final_loss"] == pytest.approx(1e-3 * (1 + 1 + 0.5) + 0.5e-5)
    figures = out / "figures"
    for key in ("regularizer.strength", "model.sparsity"):
        for metric in ("final_loss", "task_loss", "reg_loss", "sparsity", "near_zero_fraction",
                       "spectral_radius", "freq_error"):
            assert_png(figures / f"{metric}_vs_{key}.png")
        assert_png(figures / f"spectra_by_{key}.png")
    assert not list(figures.glob("wall_s_*")) and not list(figures.glob("steps_*"))
    assert "mean_final_loss" in capsys.readouterr().out


def test_default_out_is_aggregate_in_first_dir(tmp_path, synthetic_run):
    synthetic_run(tmp_path / "0", strength=0.0)
    synthetic_run(tmp_path / "1", strength=0.1)

    assert main([str(tmp_path)]) == 0

    assert len(pd.read_parquet(tmp_path / "aggregate" / "runs.parquet")) == 2
    assert_png(tmp_path / "aggregate" / "figures" / "final_loss_vs_regularizer.strength.png")


def test_missing_dir_or_dir_without_runs_is_a_usage_error(tmp_path, synthetic_run, capsys):
    synthetic_run(tmp_path / "runs" / "0")
    (tmp_path / "empty").mkdir()

    for bad in (tmp_path / "nope", tmp_path / "empty"):
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / "runs"), str(bad)])
        assert exit_info.value.code == 2
        assert str(bad) in capsys.readouterr().err


def test_config_interpolations_resolve_except_hydra_only_ones(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "0")
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    config.task.n_outputs = "${model.n_units}"
    config.output_dir = "${hydra:runtime.output_dir}"
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")

    run = load_runs([tmp_path]).iloc[0]

    assert run["task.n_outputs"] == 8
    assert run["output_dir"] == "${hydra:runtime.output_dir}"


def test_summary_gives_mean_std_and_n_over_the_completed_seeds(tmp_path, synthetic_run):
    write_grid(tmp_path, synthetic_run)
    synthetic_run(tmp_path / "extra" / "0", strength=0.1, sparsity=0.5, seed=2, status="failed")

    summary = summarize(load_runs([tmp_path]), ["regularizer.strength", "model.sparsity"])

    row = summary[(summary["regularizer.strength"] == 0.1) & (summary["model.sparsity"] == 0.5)].iloc[0]
    losses = [1e-3 * (1 + 1 + 0.5) + 1e-5 * seed for seed in SEEDS]  # the failed seed 2 has none
    assert (row["runs"], row["completed"], row["n_final_loss"]) == (3, 2, 2)
    assert row["mean_final_loss"] == pytest.approx(sum(losses) / 2)
    assert row["std_final_loss"] == pytest.approx(pd.Series(losses).std(ddof=1))
    assert (summary["n_sparsity"] == len(SEEDS)).all()


@pytest.mark.parametrize("key", ["regularizer.strength", "regularizer.name"])  # a line plot, a bar plot
def test_a_figure_draws_and_names_a_ci_only_where_a_point_has_two_runs(tmp_path, synthetic_run, key):
    for n, (strength, seed) in enumerate([(0.0, 0), (0.1, 0), (0.0, 1), (0.1, 1)]):
        synthetic_run(tmp_path / str(n), strength=strength, seed=seed)
    runs = load_runs([tmp_path])
    runs["regularizer.name"] = runs["regularizer.strength"].map({0.0: "none", 0.1: "l1"})

    one_seed = metric_figure(runs[runs["seed"] == 0], "final_loss", key).axes[0]
    two_seeds = metric_figure(runs, "final_loss", key).axes[0]

    def intervals(ax):  # a line plot's CI band, a bar plot's error bars
        return len(ax.collections) + len(ax.lines) if key == "regularizer.name" else len(ax.collections)

    counts, titles = (intervals(one_seed), intervals(two_seeds)), (one_seed.get_title(), two_seeds.get_title())
    plt.close(one_seed.figure)
    plt.close(two_seeds.figure)  # tests that count open figures may share this process
    assert counts[0] == 0 and "CI" not in titles[0] and "one run" in titles[0]
    assert counts[1] > 0 and "95% CI over 2 runs" in titles[1]


def test_keys_that_do_not_change_results_are_never_swept(tmp_path, synthetic_run):
    for n, strength in enumerate(STRENGTHS):
        run_dir = synthetic_run(tmp_path / str(n), strength=strength,
                                overrides=[f"regularizer.strength={strength}", f"progress={n == 0}"])
        config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        config.progress, config.analysis.figures = n == 0, n != 1
        OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")

    assert swept_keys(load_runs([tmp_path])) == ["regularizer.strength"]


def test_a_per_parameter_metric_equal_to_the_global_one_gets_no_figure(tmp_path, synthetic_run):
    for n, strength in enumerate(STRENGTHS):
        run_dir = synthetic_run(tmp_path / str(n), strength=strength)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics["sparsity/J"] = metrics["sparsity"]  # the run regularises J alone
        metrics["sparsity/B"] = 0.1 * n  # another parameter differs: worth its own figure
        (run_dir / "metrics.json").write_text(json.dumps(metrics))

    columns = metric_columns(load_runs([tmp_path]))

    assert "sparsity" in columns and "sparsity/B" in columns and "sparsity/J" not in columns


def test_importing_the_package_stays_light_and_load_runs_comes_on_first_use():
    code = "import sys, rnn_sparsity; heavy = {'matplotlib', 'jax', 'pandas'} & set(sys.modules); assert not heavy, heavy"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    from rnn_sparsity import load_runs as notebook_load_runs

    assert notebook_load_runs is load_runs  # the function that writes runs.parquet
