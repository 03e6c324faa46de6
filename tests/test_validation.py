"""Bad input is refused before compute through the real console entry (exit 2, one line naming key,
value and what is allowed); honest end states: diverged from the first step, failure records, Ctrl-C."""

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import TINY, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.experiment import record_failure, run


DRIVER = r"""
import contextlib, io, json, sys, time
from hydra.core.global_hydra import GlobalHydra
from rnn_sparsity.cli import app
results = []
for args in json.loads(sys.argv[1]):
    GlobalHydra.instance().clear()
    sys.argv = ["rnn-sparsity", *args]
    err, start, code = io.StringIO(), time.perf_counter(), None
    with contextlib.redirect_stderr(err):
        try:
            app()
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "err": err.getvalue(), "seconds": time.perf_counter() - start})
print(json.dumps(results))
"""


def cli_cases(cases: list[list[str]]) -> list[dict]:
    """Run the app's @hydra.main entry on each argument list, one after another in ONE fresh process
    (so no case pays the interpreter and JAX start-up): exit code, stderr and seconds per case."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


BAD_VALUES = [
    ("regularizer.strength=inf", "regularizer.strength", "finite"),
    ("regularizer.strength=-1", "regularizer.strength", ">= 0"),
    ("optimizer.lr=inf", "optimizer.lr", "finite"),
    ("optimizer.lr=nan", "optimizer.lr", "finite"),
    ("optimizer.steps=0", "optimizer.steps", "> 0"),
    ("seed=-1", "seed", ">= 0"),
    ("model.sparsity=1.5", "model.sparsity", "0 <= s < 1"),
    ("model.sparsity=0.99999", "model.sparsity", "free entries"),
    ("analysis.fixed_points.perturbation_std=inf", "analysis.fixed_points.perturbation_std", "finite"),
    ("model.n_units=100000", "model.n_units", "GiB"),
]
UNKNOWN = [("regularizer=l3", "regularizer"), ("model.n_unit=5", "model.n_unit")]


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """The result of every bad-input case, keyed by its override."""
    root = tmp_path_factory.mktemp("refused")
    overrides = [case[0] for case in BAD_VALUES + UNKNOWN]
    results = cli_cases([[o, f"hydra.run.dir={root / str(i)}", "progress=false"] for i, o in enumerate(overrides)])
    return {o: {**r, "run_dir": root / str(i)} for i, (o, r) in enumerate(zip(overrides, results))}


@pytest.mark.parametrize("override,key,allowed", BAD_VALUES)
def test_bad_input_fails_at_once_with_one_line_naming_key_value_and_allowed(refused, override, key, allowed):
    result = refused[override]
    lines = result["err"].strip().splitlines()
    assert result["code"] == 2, result["err"]
    assert len(lines) == 1, result["err"]
    value = override.split("=", 1)[1]
    assert lines[0].startswith(f"rnn-sparsity: error: invalid config value {key}=") and value[:5] in lines[0]
    assert allowed in lines[0]
    assert result["seconds"] < 15
    assert not (result["run_dir"] / "DONE").exists() and not (result["run_dir"] / "metrics.json").exists()


@pytest.mark.parametrize("override,key", UNKNOWN)
def test_unknown_options_and_keys_are_refused_by_hydra(refused, override, key):
    result = refused[override]
    assert result["code"] == 1 and key in result["err"] and "Traceback" not in result["err"]


def test_the_console_script_exits_2_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "optimizer.lr=inf", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rnn-sparsity: error: invalid config value optimizer.lr=inf: must be a finite number (not nan or inf)"]


def test_a_loss_blowing_up_at_the_first_step_is_diverged_not_failed(tmp_path):
    metrics = run(compose_cfg("optimizer.lr=1e30", "analysis.figures=true"), tmp_path)
    assert metrics["status"] == "diverged"
    assert metrics["diverged_step"] <= 1
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"
    assert (tmp_path / "DONE").exists()


def test_an_unwritable_failure_record_leaves_the_run_incomplete_and_says_why(tmp_path, capsys, monkeypatch):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    artifacts.write_metrics(tmp_path, {"status": "completed", "final_loss": 0.1})
    artifacts.mark_done(tmp_path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "write_metrics", full_disk)
    record_failure(tmp_path, RuntimeError("figure drawing broke"))
    err = capsys.readouterr().err
    assert "No space left on device" in err and "RuntimeError: figure drawing broke" in err
    assert not (tmp_path / "DONE").exists() and not (tmp_path / "metrics.json").exists()
    assert artifacts.check_run(tmp_path).status == "incomplete"


def test_ctrl_c_during_compilation_exits_130_without_a_crash(tmp_path):
    """SIGINT while XLA compiles (Python's handler cannot run then): exit 130 within a few seconds."""
    proc = subprocess.Popen([sys.executable, "-m", "rnn_sparsity", *TINY, "model.n_units=64", "optimizer.lbfgs_steps=200",
                             "compilation_cache=off", f"hydra.run.dir={tmp_path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # Hydra's log (stdout) says when a compile starts
        if "compiling lbfgs" in line:
            break
    time.sleep(0.3)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert time.perf_counter() - sent < 10
    assert "rnn-sparsity: interrupted" in err and "Segmentation" not in err
    assert not (tmp_path / "DONE").exists()
