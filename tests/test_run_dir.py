"""A run directory cannot lie: a rerun refused for a bad value leaves no earlier DONE beside Hydra's new
config record, a finished run is trusted only while every file its DONE lists is there and its config
record is the one it ran, and a key the schema does not have is refused even with `+`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY, compose_cfg
from omegaconf import OmegaConf

from rnn_sparsity import artifacts
from rnn_sparsity.components import ConfigError
from rnn_sparsity.config import validate
from rnn_sparsity.experiment import run

QUICK = [*TINY, "optimizer=adam", "optimizer.steps=30", "analysis.figures=false"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]
    return subprocess.run([sys.executable, "-m", "rnn_sparsity", *flags, *QUICK, *(a for a in args if a not in flags)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # two CLI sweeps (~12 s cold); the default run checks the trust rules in process
def test_a_sweep_rerun_with_a_refused_value_records_it_failed_and_goes_on(tmp_path):
    root = tmp_path / "multirun"
    first = cli("-m", "regularizer.strength=0,0.01", f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert all(artifacts.finished_metrics(root / j, artifacts.read_fingerprint(root / j)) for j in "01")
    # job 0 now refused (λ < 0), job 1 changed: the refused job must not go on showing λ = 0's results,
    # and the sweep must not stop at it
    second = cli("-m", "regularizer.strength=-1,0.02", f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert second.returncode != 0  # Hydra reports the failed job once the sweep is done
    refused = artifacts.check_run(root / "0")
    assert refused.status == "failed" and "regularizer.strength" in refused.problem
    assert not artifacts.is_done(root / "0") and not (root / "0" / artifacts.HISTORY).exists()
    assert OmegaConf.load(root / "0" / artifacts.CONFIG).regularizer.strength == -1
    assert artifacts.check_run(root / "1").status == "completed"
    assert OmegaConf.load(root / "1" / artifacts.CONFIG).regularizer.strength == 0.02
    assert artifacts.trust_problem(root / "1") == ""


@pytest.mark.slow  # two CLI runs; test_validation checks in the default run that a refused run records failed, no DONE
def test_a_single_run_refused_in_a_reused_run_dir_leaves_no_earlier_result(tmp_path):
    run_dir = tmp_path / "run"
    assert cli(f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    assert artifacts.check_run(run_dir).status == "completed"
    refused = cli("regularizer.strength=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2 and "regularizer.strength=-1" in refused.stderr
    assert not artifacts.is_done(run_dir) and artifacts.read_metrics(run_dir)["status"] == "failed"
    assert not (run_dir / artifacts.PARAMS).exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A finished run with Hydra's config record (as a launcher writes it before the run)."""
    run_dir = tmp_path_factory.mktemp("finished")
    cfg = compose_cfg(*QUICK[len(TINY):])
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / artifacts.CONFIG)
    run(cfg, run_dir)
    return run_dir, artifacts.config_fingerprint(cfg)


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def test_a_finished_run_is_trusted_as_written(finished, tmp_path):
    run_dir, fingerprint = finished
    assert artifacts.finished_metrics(run_dir, fingerprint)["status"] == "completed"
    assert artifacts.check_run(run_dir).status == "completed"
    listed = set(json.loads((run_dir / artifacts.DONE).read_text())["files"])
    assert {artifacts.METRICS, artifacts.HISTORY, artifacts.PARAMS, artifacts.ANALYSIS} <= listed


@pytest.mark.parametrize("name", [artifacts.HISTORY, artifacts.PARAMS, artifacts.ANALYSIS])
def test_a_run_missing_a_file_its_done_lists_is_not_finished(finished, tmp_path, name):
    run_dir, fingerprint = finished
    copy = copy_of(run_dir, tmp_path)
    (copy / name).unlink()
    assert artifacts.finished_metrics(copy, fingerprint) is None  # the resume sweeper runs it again
    check = artifacts.check_run(copy)
    assert check.status == "damaged" and check.damaged_file == name


def test_a_truncated_file_is_not_trusted(finished, tmp_path):
    run_dir, fingerprint = finished
    copy = copy_of(run_dir, tmp_path)
    data = (copy / artifacts.PARAMS).read_bytes()
    (copy / artifacts.PARAMS).write_bytes(data[: len(data) // 2])
    assert artifacts.finished_metrics(copy, fingerprint) is None
    assert artifacts.check_run(copy).status == "damaged"


def test_a_run_whose_config_record_changed_is_not_trusted(finished, tmp_path):
    run_dir, fingerprint = finished
    copy = copy_of(run_dir, tmp_path)
    cfg = OmegaConf.load(copy / artifacts.CONFIG)
    cfg.regularizer.strength = 0.5  # what Hydra does to a rerun's record before the run could end
    OmegaConf.save(cfg, copy / artifacts.CONFIG)
    assert artifacts.finished_metrics(copy, fingerprint) is None
    check = artifacts.check_run(copy)
    assert check.status == "damaged" and check.damaged_file == artifacts.CONFIG


@pytest.mark.parametrize("override,key", [("+optimizer.step=50", "optimizer.step"), ("+model.n_unit=4", "model.n_unit"),
                                          ("+nonexistent=5", "nonexistent"), ("+checkpoint.every=5", "checkpoint.every")])
def test_a_key_the_schema_does_not_have_is_refused_also_with_plus(override, key):
    with pytest.raises(ConfigError, match=f"{key}=.*not a key of"):
        validate(compose_cfg(override))
