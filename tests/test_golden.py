"""The studies reproduce the metrics recorded before the component refactor (tests/golden/*.json, made by
tests/golden/record.py on 77a01fe): every metric of every recorded job, float64 runs to 1e-9 relative,
float32 runs to 1e-5. The default suite checks one job of the demo; `-m slow` checks every job of every study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import mismatches
from omegaconf import OmegaConf

GOLDEN = Path(__file__).parent / "golden"
RTOL = {"float64": 1e-9, "float32": 1e-5}
ALL_CASES = ("demo", "flipflop", "iris_l1", "teacher_student_small", "l2_rebound_a", "thalamocortical")
# one job of a case, for the default suite: its overrides (as recorded); every job runs under -m slow
QUICK = {"demo": ["regularizer.strength=0.003", "model.sparsity=0.5", "seed=0"]}


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def run_sweep(preset: str, overrides: list[str], sweep_dir: Path) -> dict[frozenset, dict]:
    """{the job's overrides (without sweeps= and progress=): its metrics.json}, run through the CLI."""
    done = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", f"sweeps={preset}", *overrides,
                           f"hydra.sweep.dir={sweep_dir}", "progress=false"], capture_output=True, text=True)
    assert done.returncode == 0, f"sweeps={preset} {overrides} failed:\n{done.stderr[-3000:]}"
    jobs = {}
    for job in (p for p in sweep_dir.iterdir() if p.name.isdigit()):
        done = OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        jobs[key_of(done)] = json.loads((job / "metrics.json").read_text())
    return jobs


def key_of(overrides: list[str]) -> frozenset:
    return frozenset(o for o in overrides if not o.startswith(("sweeps=", "progress=")))


def check_case(name: str, tmp_path: Path, only: list[str] | None = None) -> None:
    record = golden(name)
    jobs = [j for j in record["jobs"] if only is None or key_of(j["overrides"]) == frozenset(only)]
    assert jobs, f"no recorded job of {name} has overrides {only}"
    actual = run_sweep(record["preset"], only if only is not None else record["overrides"], tmp_path / name)
    problems = []
    for job in jobs:
        got = actual.get(key_of(job["overrides"]))
        assert got is not None, f"{name}: job {job['overrides']} did not run"
        problems += [f"{name} {sorted(key_of(job['overrides']))} {p}"
                     for p in mismatches(job["metrics"], got, RTOL[job["precision"]])]
    assert not problems, "\n".join(problems)


def test_recorded_cases_cover_the_studies():
    for name in ALL_CASES:
        record = golden(name)
        assert record["jobs"] and all(j["metrics"]["status"] == "completed" for j in record["jobs"])
    assert {j["precision"] for name in ALL_CASES for j in golden(name)["jobs"]} == {"float32", "float64"}


def test_mismatch_is_reported():
    assert mismatches({"a": 1.0, "b": "x", "c": 0.0}, {"a": 1.0 + 1e-6, "b": "x", "c": 0.0}, 1e-9) == \
        ["a: 1.000001 != 1.0 (rel 1e-06)"]
    assert mismatches({"a": 1.0}, {}, 1e-5) == ["a: missing (was 1.0)"]
    assert not mismatches({"a": 1.0, "n": None}, {"a": 1.0 + 1e-7, "n": None, "new": 3}, 1e-5)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_one_job_reproduces(name, tmp_path):
    check_case(name, tmp_path, QUICK[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_CASES)
def test_every_job_reproduces(name, tmp_path):
    check_case(name, tmp_path)
