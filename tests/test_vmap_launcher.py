"""`hydra/launcher=vmap` against Hydra's basic launcher: the same sweep, the same job records and run
directories, the same numbers member for member (float64, to 1e-9)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from helpers import TINY, assert_same_run

from rnn_sparsity import artifacts

HYDRA_RECORDS = ("config.yaml", "overrides.yaml")


def multirun(tmp_path, launcher: str, *args: str, expect_rc: int = 0):
    sweep = tmp_path / launcher
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", *args, f"hydra/launcher={launcher}",
                           f"hydra.sweep.dir={sweep}", *(["hydra.launcher.progress=false"] if launcher == "vmap" else [])],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == expect_rc, proc.stderr[-3000:]
    return sweep, proc


def jobs(sweep):
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def assert_same_sweep(basic, vmap) -> list[dict]:
    """The same jobs, numbered alike, with the same .hydra records and run directories."""
    assert [p.name for p in jobs(basic)] == [p.name for p in jobs(vmap)]
    metrics = []
    for a, b in zip(jobs(basic), jobs(vmap)):
        for name in HYDRA_RECORDS:
            assert yaml.safe_load((a / ".hydra" / name).read_text()) == \
                yaml.safe_load((b / ".hydra" / name).read_text()), (a, name)
        metrics.append(assert_same_run(a, b))
    basic_runs = yaml.safe_load((basic / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
    assert basic_runs == yaml.safe_load((vmap / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
    return metrics


# λ × s × seed, float64; lr 1.0 with a divergence factor of 1.2 diverges at once; the members whose best
# Adam loss is below the threshold (0.2) end after Adam, the others go on to L-BFGS. Batched and single dot
# products round differently (1e-16); 10 L-BFGS steps keep that below 1e-9: this tiny network's L-BFGS
# amplifies it to 2e-9 in the gradient norm by step 12 (seed 0, λ = 0).
GRID = [*TINY, "precision=float64", "optimizer.divergence_factor=1.2", "optimizer.loss_threshold=0.2",
        "optimizer.lbfgs_steps=10",
        "regularizer.strength=0,0.1", "model.sparsity=0,0.5", "seed=0,1", "optimizer.lr=0.01,1.0"]


@pytest.mark.slow  # two 16-job multiruns (~1 min)
def test_vmap_launcher_writes_what_the_basic_launcher_writes(tmp_path):
    basic, _ = multirun(tmp_path, "basic", *GRID)
    vmap, proc = multirun(tmp_path, "vmap", *GRID)
    assert "training 16 runs as one program" in proc.stdout
    metrics = assert_same_sweep(basic, vmap)
    statuses = {(m["status"], m.get("stages")) for m in metrics}
    assert ("diverged", "adam") in statuses and ("completed", "adam") in statuses \
        and ("completed", "adam,lbfgs") in statuses, statuses
    assert (vmap / "0" / "cli.log").read_text().count("training 16 runs") == 1


@pytest.mark.slow
def test_vmap_launcher_minibatch_study(tmp_path):
    args = ["sweeps=iris_l1", "optimizer.steps=400", "regularizer.strength=0,0.002,0.005", "seed=0,1",
            "precision=float64"]
    metrics = assert_same_sweep(multirun(tmp_path, "basic", *args)[0], multirun(tmp_path, "vmap", *args)[0])
    assert {m["epochs"] for m in metrics} == {50} and all(m["test_accuracy"] > 0.5 for m in metrics)


@pytest.mark.slow
def test_vmap_launcher_fast_decay_lbfgs_with_line_search(tmp_path):
    args = ["sweeps=thalamocortical", "model.n_units=40", "model.rank_fraction=0.1,0.3", "seed=0,1",
            "optimizer.lbfgs_steps=60"]
    metrics = assert_same_sweep(multirun(tmp_path, "basic", *args)[0], multirun(tmp_path, "vmap", *args)[0])
    assert all("lbfgs" in m["stages"] for m in metrics)


@pytest.mark.slow  # a CLI sweep (~9 s cold)
def test_a_bad_job_fails_alone_and_the_sweep_says_so(tmp_path):
    sweep, proc = multirun(tmp_path, "vmap", *TINY, "optimizer=adam", "regularizer.strength=0,-1", "seed=0",
                           expect_rc=1)
    assert "regularizer.strength" in proc.stderr
    good, bad = jobs(sweep)
    assert artifacts.is_done(good) and artifacts.read_metrics(good)["status"] == "completed"
    assert not artifacts.is_done(bad) and artifacts.read_metrics(bad)["status"] == "failed"
    assert (bad / ".hydra" / "overrides.yaml").exists() and "regularizer.strength" in (bad / "cli.log").read_text()


# 10 L-BFGS steps, as GRID's (20 amplify the batched dot products' 1e-16 to 3e-9 in one job's loss)
PRUNED_GRID = [*TINY, "precision=float64", "optimizer.lbfgs_steps=10", "pruner=magnitude", "pruner.step=20",
               "pruner.sparsity=0.5,0.9", "seed=0,1", "regularizer.strength=0,0.01"]


@pytest.mark.slow  # two 8-job multiruns (~40 s)
def test_a_pruned_sparsity_by_seed_by_lambda_grid_writes_what_the_basic_launcher_writes(tmp_path):
    """The target sparsity is traced: the vmap launcher trains the grid as one program, with the numbers
    (masks included) of the basic launcher's runs one by one."""
    basic, _ = multirun(tmp_path, "basic", *PRUNED_GRID)
    vmap, proc = multirun(tmp_path, "vmap", *PRUNED_GRID)
    assert "training 8 runs as one program" in proc.stdout
    metrics = assert_same_sweep(basic, vmap)
    assert sorted(m["mask_sparsity"] for m in metrics) == [128 / 256] * 4 + [230 / 256] * 4
