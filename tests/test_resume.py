"""A sweep rerun into its own directory skips the runs finished with the same config (the default
sweeper, hydra_plugins/rnn_sparsity_resume), with the basic and the vmap launcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY

from rnn_sparsity import artifacts

GRID = ["optimizer=adam", "optimizer.steps=30", "seed=0,1", "regularizer.strength=0,0.001"]


def sweep(sweep_dir: Path, *overrides: str, launcher: str = "basic") -> str:
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", *TINY, *GRID, *overrides,
                           f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep_dir}"],
                          cwd=sweep_dir.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a run directory: (mtime in ns, content)."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def strength_of(run_dir: Path) -> float:
    return float(next(o for o in artifacts.read_overrides(run_dir) if o.startswith("regularizer.strength=")).split("=")[1])


@pytest.mark.slow  # 5 sweeps each (35 s cold for basic); the default run checks the skip in process (test_sweeper_contracts, test_optuna)
@pytest.mark.parametrize("launcher", ["basic", "vmap"])
def test_a_rerun_runs_only_the_unfinished_and_the_changed_jobs(tmp_path, launcher):
    root = tmp_path / "multirun"
    log = sweep(root, launcher=launcher)
    assert "resume: 0 of 4 jobs" in log
    runs = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert len(runs) == 4 and all(artifacts.is_done(r) for r in runs)
    before = {r.name: snapshot(r) for r in runs}

    # one run lost its DONE (killed before the end): only it runs again, the others are not touched
    (runs[1] / artifacts.DONE).unlink()
    metrics_1 = artifacts.read_metrics(runs[1])
    log = sweep(root, launcher=launcher)
    assert "resume: 3 of 4 jobs already finished with the same config" in log and "3 to run" not in log
    assert "1 to run" in log
    for r in runs:
        if r.name != "1":
            assert snapshot(r) == before[r.name], f"run {r.name} was touched"
    assert artifacts.is_done(runs[1])
    after_1 = artifacts.read_metrics(runs[1])
    assert after_1["final_loss"] == pytest.approx(metrics_1["final_loss"], rel=1e-6)

    # a changed grid: the jobs whose config changed run (here λ = 1e-3 becomes 3e-3), the others are skipped
    unchanged = {r.name: snapshot(r) for r in runs if strength_of(r) == 0}
    log = sweep(root, "regularizer.strength=0,0.003", launcher=launcher)
    assert "resume: 2 of 4 jobs" in log and "2 to run" in log
    for name, files in unchanged.items():
        assert snapshot(root / name) == files
    changed = [r for r in runs if r.name not in unchanged]
    assert all(strength_of(r) == 0.003 and artifacts.is_done(r) for r in changed)

    # a key that does not change results does not make a run stale; resume=false reruns every job
    assert "resume: 4 of 4 jobs" in sweep(root, "regularizer.strength=0,0.003", "progress=true", launcher=launcher)
    log = sweep(root, "regularizer.strength=0,0.003", "resume=false", launcher=launcher)
    assert "resume: 0 of 4 jobs" in log and "4 to run" in log
    assert all(snapshot(root / name) != files for name, files in unchanged.items())


def test_only_a_completed_or_diverged_run_with_the_same_fingerprint_is_finished(tmp_path):
    run_dir = tmp_path / "0"
    artifacts.begin_run(run_dir, "abc")
    artifacts.write_metrics(run_dir, {"status": "completed", "final_loss": 0.5})
    assert artifacts.finished_metrics(run_dir, "abc") is None  # no DONE yet
    artifacts.mark_done(run_dir)
    assert artifacts.finished_metrics(run_dir, "abc")["final_loss"] == 0.5
    assert artifacts.finished_metrics(run_dir, "abd") is None  # another config
    artifacts.write_metrics(run_dir, {"status": "diverged", "final_loss": None})
    assert artifacts.finished_metrics(run_dir, "abc") == {"status": "diverged", "final_loss": None}
    artifacts.write_metrics(run_dir, {"status": "failed", "error": "boom"})
    assert artifacts.finished_metrics(run_dir, "abc") is None
    artifacts.write_metrics(run_dir, {"status": "completed"})
    artifacts.begin_run(run_dir, "abd")  # a new attempt: incomplete until it ends
    assert not artifacts.is_done(run_dir) and artifacts.finished_metrics(run_dir, "abd") is None


@pytest.mark.slow  # joblib's worker processes (~1 min)
def test_another_launcher_gets_each_run_of_consecutive_jobs(tmp_path):
    """Jobs 1 and 3 unfinished: the joblib launcher is given job 1 and job 3 as two launches, each
    under its own number; 0 and 2 are not touched."""
    root = tmp_path / "multirun"
    joblib = ["hydra.launcher.n_jobs=2"]
    sweep(root, *joblib, launcher="joblib")
    runs = {int(p.name): p for p in root.iterdir() if p.name.isdigit()}
    before = {i: snapshot(runs[i]) for i in (0, 2)}
    lost = {i: artifacts.read_metrics(runs[i])["final_loss"] for i in (1, 3)}
    for i in lost:
        (runs[i] / artifacts.DONE).unlink()
    log = sweep(root, *joblib, launcher="joblib")
    assert "resume: 2 of 4 jobs" in log and "2 to run" in log
    assert all(snapshot(runs[i]) == before[i] for i in before)
    for i, loss in lost.items():
        assert artifacts.is_done(runs[i])
        assert artifacts.read_metrics(runs[i])["final_loss"] == pytest.approx(loss, rel=1e-6)
        assert artifacts.read_job_number(runs[i]) == i


class Loader:
    """Stands for Hydra's config loader: counts its compositions."""

    calls = 0

    def load_sweep_config(self, master, overrides):
        Loader.calls += 1
        return {"overrides": list(overrides), "call": Loader.calls}

    def other(self):
        return "the wrapped loader's"


def test_a_job_composed_by_the_sweeper_is_not_composed_again_by_its_launcher():
    """ComposedOnce (installed by the resume sweeper and the vmap launcher): the second composition of
    a job's overrides is the first one's result, a third composes anew; pickled (joblib's workers,
    submitit's jobs) it keeps nothing and still composes through the wrapped loader."""
    import pickle

    from rnn_sparsity.composition import ComposedOnce

    loader, master = ComposedOnce(Loader()), object()
    first = loader.load_sweep_config(master, ["seed=1"])
    assert loader.load_sweep_config(master, ["seed=1"]) is first and Loader.calls == 1  # the launcher's: kept
    assert loader.load_sweep_config(master, ["seed=1"])["call"] == 2  # no longer kept
    assert loader.load_sweep_config(object(), ["seed=1"])["call"] == 3  # another sweep's master config
    assert loader.other() == "the wrapped loader's"
    copy = pickle.loads(pickle.dumps(loader))
    assert copy.kept == {} and copy.load_sweep_config(master, ["seed=2"])["overrides"] == ["seed=2"]


def test_the_resume_sweepers_loader_keeps_only_what_it_is_told_to_keep():
    """keep_first=False (the resume sweeper, which composes only the jobs it must look at): a launcher's
    composition of any other job is used once, not kept; what the sweeper keeps is what the launch gets;
    `discard` drops what one sweep still keeps (jobs never launched), not another sweep's."""
    from types import SimpleNamespace

    from rnn_sparsity.composition import ComposedOnce, compose_once

    loader, master, other = ComposedOnce(Loader(), keep_first=False), object(), object()
    for seed in range(200):
        loader.load_sweep_config(master, [f"seed={seed}"])
    assert loader.kept == {}
    composed = {"overrides": ["seed=1"]}
    loader.keep(master, ["seed=1"], composed)
    assert loader.load_sweep_config(master, ["seed=1"]) is composed and loader.kept == {}
    loader.keep(master, ["seed=2"], composed)
    loader.keep(other, ["seed=2"], composed)
    loader.discard(master)
    assert loader.take(master, ["seed=2"]) is not composed  # composed anew
    assert loader.take(other, ["seed=2"]) is composed and loader.kept == {}

    for first, second in ((True, False), (False, True)):  # the vmap launcher and the resume sweeper, either order
        context = SimpleNamespace(config_loader=Loader())
        compose_once(context, keep_first=first)
        assert compose_once(context, keep_first=second) is context.config_loader
        assert context.config_loader.keep_first is False
