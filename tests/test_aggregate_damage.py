"""The aggregator on a real sweep damaged in every way seen in practice: it exits 0, lists each run
with its class and reason, and draws figures only from the sound runs, with the true swept keys."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from filelock import FileLock
from helpers import TINY

from rnn_sparsity import load_runs
from rnn_sparsity.aggregate import main as aggregate

SWEPT = {"regularizer.strength", "model.sparsity"}
# Hydra's job order for `regularizer.strength=0,0.1,1 model.sparsity=0,0.5`: job n <-> GRID[n]
GRID = [(strength, sparsity) for strength in (0, 0.1, 1) for sparsity in (0, 0.5)]


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """A real 6-job multirun (λ x s, tiny RNNs, no per-run figures), run once per test session: the
    pytest-xdist workers share it through a lock in their common base folder. Tests copy it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    sweep, ready = root / "damage_sweep" / "multirun", root / "damage_sweep" / "READY"
    with FileLock(str(root / "damage_sweep.lock")):
        if not ready.exists():
            shutil.rmtree(sweep, ignore_errors=True)
            proc = subprocess.run(
                [sys.executable, "-m", "rnn_sparsity", "-m", *TINY, "optimizer=adam", "optimizer.steps=20",
                 "regularizer.mode=proximal", "regularizer.strength=0,0.1,1", "model.sparsity=0,0.5",
                 f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert len(list(sweep.glob("*/DONE"))) == len(GRID)
            ready.touch()
    return sweep


@pytest.fixture
def sweep_copy(finished_sweep, tmp_path):
    """A private copy of the finished sweep, free to damage."""
    return shutil.copytree(finished_sweep, tmp_path / "multirun")


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def report_lines(out: str, sweep) -> dict[str, str]:
    """The printed "Not completed" lines by run_dir: `  <status>  <run_dir>  [...]  (reason)`."""
    return {line.split()[1]: line for line in out.splitlines() if line.startswith("  ") and str(sweep) in line}


def missing_as_none(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every missing value as None, so NaN and None compare equal."""
    return table.astype(object).where(table.notna(), None).reset_index(drop=True)


def swept_in_figure_names(figures) -> set[str]:
    """The keys figures were drawn against: <metric>_vs_<key>.png and <figure>_by_<key>.png."""
    return {name.removesuffix(".png").rsplit(sep, 1)[1] for name in figures for sep in ("_vs_", "_by_")
            if sep in name}


def test_every_kind_of_damage_is_listed_with_its_class_and_reason(sweep_copy, capsys):
    sweep = sweep_copy
    truncate(sweep / "0" / "metrics.json", 25)
    (sweep / "1" / "metrics.json").write_text("")
    truncate(sweep / "2" / "analysis.npz", 200)
    truncate(sweep / "3" / "history.parquet", 100)
    (sweep / "4" / ".hydra" / "config.yaml").write_text("")  # what a full disk produced
    shutil.rmtree(sweep / "5")  # a job that never started

    assert aggregate([str(sweep)]) == 0
    out = capsys.readouterr().out
    expected = {0: ("damaged", "metrics.json: truncated"), 1: ("damaged", "metrics.json: empty"),
                2: ("damaged", "analysis.npz: unreadable"), 3: ("damaged", "history.parquet: unreadable"),
                4: ("damaged", ".hydra/config.yaml: empty"), 5: ("missing", "job 5 of the sweep has no run directory")}
    report = report_lines(out, sweep)
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


def test_sound_runs_are_drawn_with_the_true_swept_keys_beside_damaged_ones(sweep_copy, capsys):
    sweep = sweep_copy
    truncate(sweep / "1" / "analysis.npz", 300)  # job 1 would show s = 0.5 in the spectra figure
    (sweep / "4" / ".hydra" / "config.yaml").write_text("")
    truncate(sweep / "5" / "metrics.json", 10)
    (sweep / "0" / ".metrics.json.x8f2.tmp").write_text('{"status": "fa')  # a killed write's leftover
    config = sweep / "2" / ".hydra" / "config.yaml"  # one run drew its bar: `progress` differs, results do not
    config.write_text(config.read_text().replace("progress: false", "progress: true"))

    assert aggregate([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "6 runs: 3 completed, 3 damaged; swept: regularizer.strength, model.sparsity\n" in out
    figures = {p.name for p in (sweep / "aggregate" / "figures").glob("*.png")}
    assert {"sparsity_vs_regularizer.strength.png", "spectra_by_model.sparsity.png"} <= figures
    assert swept_in_figure_names(figures) == SWEPT  # nothing drawn against progress or a damaged row's NaNs
    assert not any(name.startswith(("sparsity_J", "near_zero_fraction_J")) for name in figures)  # = the global ones

    runs = pd.read_parquet(sweep / "aggregate" / "runs.parquet")
    status = dict(zip(runs["run_dir"], runs["status"]))
    assert [status[str(sweep / str(job))] for job in range(6)] == \
        ["completed", "damaged", "completed", "completed", "damaged", "damaged"]  # job 0: its temp file is never read
    summary = pd.read_csv(sweep / "aggregate" / "summary.csv")
    assert {"mean_sparsity", "std_sparsity", "n_sparsity"} <= set(summary)
    assert summary["completed"].sum() == 3 and summary["n_final_loss"].max() == 1
    assert summary["std_final_loss"].isna().all()  # one seed per point: no spread
    # the notebook API is the table the aggregator wrote (parquet gives None for a NaN in a bool column)
    pd.testing.assert_frame_equal(missing_as_none(load_runs(sweep)), missing_as_none(runs), check_dtype=False)


def test_a_run_whose_hydra_files_a_full_disk_emptied_is_damaged_not_missing(sweep_copy):
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        (sweep_copy / "2" / ".hydra" / name).write_text("")

    runs = load_runs(sweep_copy)

    assert len(runs) == len(GRID)
    assert runs.set_index("run_dir").loc[str(sweep_copy / "2"), "status"] == "damaged"
    assert (runs["status"] != "missing").all()  # job 2 is found by its folder name


def test_a_lost_job_is_missing_even_when_another_sweep_ran_the_same_grid(finished_sweep, tmp_path):
    first, second = (shutil.copytree(finished_sweep, tmp_path / name / "multirun") for name in ("a", "b"))
    shutil.rmtree(second / "3")
    (second / "4").rename(second / "job_four")  # a custom subdir: found by hydra.job.num in its hydra.yaml

    runs = load_runs(tmp_path)

    missing = runs[runs["status"] == "missing"]
    assert list(missing["run_dir"]) == [str(second.resolve() / "3")]
    strength, sparsity = GRID[3]
    assert set(missing["overrides"].iloc[0].split()) >= {f"regularizer.strength={strength}",
                                                         f"model.sparsity={sparsity}"}
    assert (runs["status"] == "completed").sum() == 2 * len(GRID) - 1
