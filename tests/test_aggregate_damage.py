"""The aggregator on a real sweep damaged in every way seen in practice: it exits 0, lists each run
with its class and reason, and draws figures only from the sound runs, with the true swept keys."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import TINY

from rnn_sparsity import load_runs
from rnn_sparsity.aggregate import main as aggregate


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """A real 6-job multirun (λ x s x seed, tiny RNNs, no per-run figures), run once per module."""
    sweep = tmp_path_factory.mktemp("sweep") / "multirun"
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", *TINY, "optimizer=adam", "optimizer.steps=20",
                           "regularizer.mode=proximal", "regularizer.strength=0,0.1,1", "model.sparsity=0,0.5",
                           f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep.glob("*/DONE"))) == 6
    return sweep


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_every_kind_of_damage_is_listed_and_only_sound_runs_are_drawn(finished_sweep, tmp_path, capsys):
    sweep = tmp_path / "multirun"
    shutil.copytree(finished_sweep, sweep)
    jobs = {int(p.name): p for p in sweep.iterdir() if p.name.isdigit()}  # job i: overrides of Hydra's job i
    truncate(jobs[0] / "metrics.json", 25)
    (jobs[1] / "metrics.json").write_text("")
    truncate(jobs[2] / "analysis.npz", 200)
    truncate(jobs[3] / "history.parquet", 100)
    (jobs[4] / ".hydra" / "config.yaml").write_text("")  # what a full disk produced
    shutil.rmtree(jobs[5])  # a job that never started
    (sweep / "1" / ".params.npz.x8f2.tmp").write_bytes(b"")  # a killed write's leftover

    assert aggregate([str(sweep)]) == 0
    out = capsys.readouterr().out
    expected = {0: ("damaged", "metrics.json: truncated"), 1: ("damaged", "metrics.json: empty"),
                2: ("damaged", "analysis.npz: unreadable"), 3: ("damaged", "history.parquet: unreadable"),
                4: ("damaged", ".hydra/config.yaml: empty"), 5: ("missing", "job 5 of the sweep has no run directory")}
    report = {line.split()[1]: line for line in out.splitlines() if line.startswith("  ") and "multirun/" in line}
    for job, (status, reason) in expected.items():
        line = report[str(sweep / str(job))]
        assert line.split()[0] == status and reason in line, line
    assert "model.sparsity=0.5" in report[str(sweep / "5")] and "regularizer.strength=1" in report[str(sweep / "5")]
    assert "6 runs: 5 damaged, 1 missing" in out

    runs = pd.read_parquet(sweep / "aggregate" / "runs.parquet")
    assert sorted(runs["status"]) == ["damaged"] * 5 + ["missing"]
    assert runs["problem"].str.len().gt(0).all()
    assert "swept: nothing" in out  # no sound run is left: no swept key, no figure is faked
    assert not list((sweep / "aggregate" / "figures").glob("*.png"))


def test_sound_runs_keep_their_figures_beside_damaged_ones(finished_sweep, tmp_path, capsys):
    sweep = tmp_path / "multirun"
    shutil.copytree(finished_sweep, sweep)
    (sweep / "4" / ".hydra" / "config.yaml").write_text("")
    truncate(sweep / "5" / "metrics.json", 10)
    config = sweep / "2" / ".hydra" / "config.yaml"  # one run drew its bar: `progress` differs, results do not
    config.write_text(config.read_text().replace("progress: false", "progress: true"))

    assert aggregate([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "6 runs: 4 completed, 2 damaged; swept: regularizer.strength, model.sparsity" in out
    figures = {p.name for p in (sweep / "aggregate" / "figures").glob("*.png")}
    assert {"sparsity_vs_regularizer.strength.png", "spectra_by_model.sparsity.png"} <= figures
    assert not any("progress" in name for name in figures)
    assert not any(name.startswith(("sparsity_J", "near_zero_fraction_J")) for name in figures)  # = the global ones

    summary = pd.read_csv(sweep / "aggregate" / "summary.csv")
    assert {"mean_sparsity", "std_sparsity", "n_sparsity"} <= set(summary)
    assert summary["completed"].sum() == 4 and summary["n_final_loss"].max() == 1
    assert summary["std_final_loss"].isna().all()  # one seed per point: no spread, and no CI drawn


def test_load_runs_is_the_table_the_aggregator_writes(finished_sweep, capsys):
    assert aggregate([str(finished_sweep), "--out", str(finished_sweep.parent / "agg")]) == 0
    written = pd.read_parquet(finished_sweep.parent / "agg" / "runs.parquet")
    loaded = load_runs(finished_sweep)
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), written, check_dtype=False)
    completed = loaded[loaded["status"] == "completed"]
    zeros = completed.groupby("regularizer.strength")["sparsity"].mean()
    assert zeros.is_monotonic_increasing and zeros.iloc[-1] > zeros.iloc[0]  # proximal L1 zeroes more with λ
    assert np.isclose(completed.loc[completed["regularizer.strength"] == 0, "sparsity"].max(), 0.5, atol=0.25)
