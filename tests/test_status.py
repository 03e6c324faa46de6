"""`rnn-sparsity-aggregate --status` on a real sweep damaged into every class: one line per job with its
class, final loss, own overrides and reason, a count line per sweep, nothing written, no JAX imported."""

import os
import shutil
import subprocess
import sys

import pytest
from filelock import FileLock
from helpers import TINY

from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import main as aggregate

# Hydra's job order for `optimizer.lr=0.01,1e30 regularizer.strength=0,0.001,-1`: job n <-> GRID[n].
# lr = 1e30 diverges at the first step; λ = -1 is refused by validation, which the vmap launcher records
# as the job's failure (metrics.json) while the other jobs run.
GRID = [(lr, strength) for lr in ("0.01", "1e+30") for strength in ("0", "0.001", "-1")]
SHARED = [*TINY, "optimizer=adam", "optimizer.steps=20"]
REFUSED = "ConfigError: invalid config value regularizer.strength=-1.0: must be >= 0"


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory):
    """The 6-job sweep run once per test session (2 completed, 2 diverged, 2 failed): pytest-xdist
    workers share it through a lock in their common base folder. Tests copy it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    sweep, ready = root / "status_sweep" / "multirun", root / "status_sweep" / "READY"
    with FileLock(str(root / "status_sweep.lock")):
        if not ready.exists():
            shutil.rmtree(sweep, ignore_errors=True)
            sweep.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run(
                [sys.executable, "-m", "rnn_sparsity", "-m", *SHARED, "optimizer.lr=0.01,1e30",
                 "regularizer.strength=0,0.001,-1", "hydra/launcher=vmap", f"hydra.sweep.dir={sweep}"],
                cwd=sweep.parent, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 1 and "regularizer.strength" in proc.stderr, proc.stderr[-3000:]  # the failed jobs
            statuses = [artifacts.read_metrics(sweep / str(n))["status"] for n in range(len(GRID))]
            assert statuses == ["completed", "completed", "failed", "diverged", "diverged", "failed"]
            ready.touch()
    return sweep


@pytest.fixture
def damaged_sweep(finished_sweep, tmp_path):
    """A copy of the sweep with one job in every class: 0 completed (its fingerprint changed, which
    --status does not look at), 1 killed before DONE (after a checkpoint), 2 failed, 3 diverged, 4 lost, 5's record truncated."""
    sweep = shutil.copytree(finished_sweep, tmp_path / "multirun")
    (sweep / "0" / artifacts.FINGERPRINT).write_text("0" * 64 + "\n")
    (sweep / "1" / artifacts.DONE).unlink()
    (sweep / "1" / artifacts.CHECKPOINT).mkdir()
    (sweep / "1" / artifacts.CHECKPOINT / "0000000002.npz").touch()  # killed with a checkpoint to resume from
    shutil.rmtree(sweep / "4")
    (sweep / "5" / artifacts.METRICS).write_text('{"status": "fa')
    return sweep


def files_of(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def job_lines(out: str) -> dict[int, list[str]]:
    """The job lines of the report by job number: `  <job>  <status>  <final_loss>  <overrides ...>  <reason>`."""
    return {int(line.split()[0]): line.split() for line in out.splitlines()
            if line.startswith("  ") and line.split()[0].isdigit()}


def test_every_job_is_listed_with_its_class_loss_overrides_and_reason(damaged_sweep, capsys):
    sweep = damaged_sweep
    before = files_of(sweep.parent)

    assert aggregate(["--status", str(sweep)]) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[-1] == \
        f"{sweep}: 6 jobs: 1 completed, 1 diverged, 1 failed, 1 running or incomplete, 1 damaged, 1 missing"
    header, shared = out.splitlines()[:2]
    assert header == str(sweep) and shared.startswith("  every job: ")  # what every job shares, said once
    assert {"model.n_units=16", "optimizer=adam", "optimizer.steps=20"} <= set(shared.split())
    lines = job_lines(out)
    assert not any("model.n_units=16" in words for words in lines.values())
    assert sorted(lines) == list(range(len(GRID)))
    for number, (lr, strength) in enumerate(GRID):
        assert lines[number][3:5] == [f"optimizer.lr={lr}", f"regularizer.strength={strength}"], lines[number]
    assert {n: words[1] for n, words in lines.items()} == {
        0: "completed", 1: "running-or-incomplete", 2: "failed", 3: "diverged", 4: "missing", 5: "damaged"}
    for number in (0, 3):  # a finished run's final loss, as metrics.json holds it
        assert float(lines[number][2]) == pytest.approx(artifacts.read_metrics(sweep / str(number))["final_loss"], rel=1e-3)
    assert all(lines[n][2] == "-" for n in (1, 2, 4, 5))
    reasons = {n: " ".join(words[5:]) for n, words in lines.items()}
    assert reasons[0] == reasons[3] == ""
    assert reasons[1].startswith("no DONE: still running, or stopped before the end; newest file written")
    assert reasons[1].endswith("ago; a rerun resumes from its checkpoint")
    assert reasons[2] == REFUSED
    assert reasons[4] == "job 4 of the sweep has no run directory"
    assert reasons[5].startswith("metrics.json: truncated or invalid JSON")
    assert files_of(sweep.parent) == before  # no aggregate/, no figures, no table, not an mtime touched


def test_the_console_script_imports_no_jax_nor_plotting(damaged_sweep):
    script = ("import sys; from rnn_sparsity.aggregate import main; code = main(['--status', '-q', sys.argv[1]]); "
              "print(sorted(m for m in ('jax', 'matplotlib', 'seaborn') if m in sys.modules)); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script, str(damaged_sweep)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{damaged_sweep}: 6 jobs: 1 completed, 1 diverged, 1 failed, 1 running or incomplete, 1 damaged, 1 missing", "[]"]


def test_a_parent_folder_gets_a_count_line_per_sweep_and_one_for_its_single_runs(finished_sweep, tmp_path, capsys):
    a, b = (shutil.copytree(finished_sweep, tmp_path / name / "multirun") for name in ("a", "b"))
    for run_dir in b.iterdir():  # a sweep that has just started: only Hydra's multirun.yaml so far
        if run_dir.is_dir():
            shutil.rmtree(run_dir)
    shutil.copytree(finished_sweep / "0", tmp_path / "outputs" / "2024-05-02" / "09-30-00")  # a run outside any sweep

    assert aggregate(["--status", "-q", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path}: 1 run: 1 completed",
        f"{a}: 6 jobs: 2 completed, 2 diverged, 2 failed",
        f"{b}: 6 jobs: 6 missing"]

    assert aggregate(["--status", str(tmp_path / "outputs")]) == 0
    out = capsys.readouterr().out
    assert "  2024-05-02/09-30-00  completed" in out  # named by its folder: a single run has no job number
    assert not (tmp_path / "outputs" / "aggregate").exists()


def test_unusable_input_is_a_usage_error(tmp_path, synthetic_run, capsys):
    synthetic_run(tmp_path / "runs" / "0")
    (tmp_path / "empty").mkdir()
    for argv, message in [(["--status", str(tmp_path / "nowhere")], "is not a directory"),
                          (["--status", str(tmp_path / "empty")], "no run directories"),
                          (["--status", str(tmp_path / "runs"), "--out", str(tmp_path / "out")], "--status writes nothing"),
                          (["-q", str(tmp_path / "runs")], "goes with --status")]:
        with pytest.raises(SystemExit) as exit_info:
            aggregate(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs" / "aggregate").exists()


def test_a_sweep_record_alone_is_enough_for_status(finished_sweep, tmp_path, capsys):
    """Unlike the table, --status accepts a sweep that has written only multirun.yaml: its jobs are missing."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    shutil.copy(finished_sweep / "multirun.yaml", sweep)
    assert aggregate(["--status", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{sweep}: 6 jobs: 6 missing"
    assert {n: words[1] for n, words in job_lines(out).items()} == {n: "missing" for n in range(len(GRID))}
