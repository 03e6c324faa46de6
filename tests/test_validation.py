"""Bad input is refused before compute through the real console entry (exit 2, one line naming key,
value and what is allowed); honest end states: diverged from the first step, failure records, Ctrl-C."""

import json
import signal
import subprocess
import textwrap
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, compose_cfg
from omegaconf import OmegaConf

from rnn_sparsity import artifacts
from rnn_sparsity.experiment import run


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
    # refused before any compute (no wall-time limit: CI's machines differ): recorded as failed, nothing trained
    assert not (result["run_dir"] / "DONE").exists()
    recorded = json.loads((result["run_dir"] / "metrics.json").read_text())
    assert recorded["status"] == "failed" and key in recorded["error"]
    assert not any((result["run_dir"] / name).exists() for name in ("params.npz", "history.parquet", "checkpoint"))


@pytest.mark.parametrize("override,key", UNKNOWN)
def test_unknown_options_and_keys_are_refused_by_hydra(refused, override, key):
    result = refused[override]
    assert result["code"] == 1 and key in result["err"] and "Traceback" not in result["err"]


@pytest.mark.slow  # the installed console script in a subprocess (~7-14 s cold)
def test_the_console_script_exits_2_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "optimizer.lr=inf", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rnn-sparsity: error: invalid config value optimizer.lr=inf: must be a finite number (not nan or inf)"]


@pytest.mark.parametrize("override,step", [
    ("optimizer.lr=1e30", 1),  # the first update throws J to ~1e30: the loss after it is inf
    ("model.gain=1e30", 0),  # the loss is NaN at the initial parameters already
])
def test_a_loss_blowing_up_at_the_first_step_is_diverged_not_failed(tmp_path, override, step):
    cfg = compose_cfg(override, "analysis.figures=true")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # as Hydra records it, for check_run
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "diverged" and metrics["diverged_step"] == step
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["status"] == "diverged" and written["stages"] == "adam" and written["steps"] == step + 1
    assert "error" not in written
    eig = artifacts.read_arrays(tmp_path / "analysis.npz")
    assert eig["eig_steps"][0] == 0 and np.isfinite(eig["eig_values"]).all()  # only finite J were sampled
    assert (tmp_path / "DONE").exists() and artifacts.check_run(tmp_path).status == "diverged"


def test_an_unwritable_failure_record_leaves_the_run_incomplete_and_says_why(tmp_path, capsys, monkeypatch):
    """The run writes metrics.json (completed), then drawing its figures fails, and the disk is full by
    the time the failure is recorded: no file may still say completed, and stderr says why."""
    from rnn_sparsity.plots import run as run_figures

    cfg = compose_cfg("optimizer=adam", "optimizer.steps=20", "analysis.figures=true")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    write_metrics = artifacts.write_metrics

    def full_disk_for_failures(run_dir, metrics):
        if metrics.get("status") == "failed":
            raise OSError(28, "No space left on device")
        return write_metrics(run_dir, metrics)

    def broken_figures(run_dir, figures=None):
        assert artifacts.read_metrics(run_dir)["status"] == "completed"  # written before the figures
        raise RuntimeError("figure drawing broke")

    monkeypatch.setattr(artifacts, "write_metrics", full_disk_for_failures)
    monkeypatch.setattr(run_figures, "draw_run_figures", broken_figures)
    with pytest.raises(RuntimeError, match="figure drawing broke"):
        run(cfg, tmp_path)
    err = capsys.readouterr().err
    assert "No space left on device" in err and "RuntimeError: figure drawing broke" in err
    assert not (tmp_path / "DONE").exists() and not (tmp_path / "metrics.json").exists()
    assert artifacts.check_run(tmp_path).status == "incomplete"


@pytest.mark.slow  # a CLI process interrupted while it compiles (~11 s cold)
def test_ctrl_c_during_compilation_exits_130_without_a_crash(tmp_path):
    """SIGINT while XLA compiles (Python's handler cannot run then): exit 130 within a few seconds, from
    the first signal, also when the parent left SIGINT blocked (the child inherits the mask: this test
    blocks it around the spawn, as a test worker or job runner can; twice that lost every Ctrl-C)."""
    for attempt in range(3):  # on a loaded machine the compile can end before the signal lands: try again
        out, err, status, elapsed, returncode = interrupt_during_compile(tmp_path / str(attempt))
        assert returncode == 130, f"{status}\n{out}{err}"  # not -11 / 139 (a segfault), not a completed run
        assert elapsed < 10
        assert "rnn-sparsity: interrupted" in err and "Segmentation" not in err
        assert not (tmp_path / str(attempt) / "DONE").exists()
        if "compiled and ran lbfgs" not in out:  # the signal came before that chunk's compile returned
            return
    pytest.fail("the signal came after the compile in 3 attempts")


def test_a_swallowed_keyboard_interrupt_still_ends_the_process_with_130():
    """A KeyboardInterrupt raised where it is only printed (a gc callback: "Exception ignored", seen in CI)
    or caught, with the wakeup fd replaced by other code in the process: the watcher still ends it."""
    child = textwrap.dedent("""
        import os, signal, time
        from rnn_sparsity.cli import exit_on_interrupt
        exit_on_interrupt(grace_s=0.2)
        signal.set_wakeup_fd(-1)  # as code that installs its own wakeup fd would
        for i in range(500):
            try:
                if i == 0:
                    os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.01)
            except KeyboardInterrupt:
                pass  # swallowed
        print("not interrupted")
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 130 and "not interrupted" not in proc.stdout
    assert proc.stderr.strip() == "rnn-sparsity: interrupted"


def interrupt_during_compile(run_dir: Path):
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        proc = subprocess.Popen([sys.executable, "-m", "rnn_sparsity", *TINY, "model.n_units=64",
                                 "optimizer.lbfgs_steps=3000", "compilation_cache=off", f"hydra.run.dir={run_dir}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    for line in proc.stdout:  # Hydra's log (stdout) says when a compile starts
        if "compiling lbfgs" in line:
            break
    time.sleep(0.3)
    status = [line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
              if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]  # what the child does with signals, if it fails
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err, status, time.perf_counter() - sent, proc.returncode


class FakeAccelerator:
    """A device whose memory_stats say how much it holds, as jax's GPU and TPU devices do."""

    platform = "gpu"

    def __init__(self, limit: int, in_use: int):
        self.stats = {"bytes_limit": limit, "bytes_in_use": in_use}

    def memory_stats(self):
        return self.stats


def test_the_memory_estimate_counts_every_copy_and_is_checked_against_an_accelerator(monkeypatch):
    from rnn_sparsity import build

    build.set_precision("float32")
    cfg = compose_cfg("optimizer=adam")
    _, trainer, hyper = build.make_run(cfg)
    parts = build.memory_estimate(trainer, hyper)
    n, steps, tasks = 16, round((4 + 24) / 0.2), 3  # TINY: 16 units, 140 Euler steps, 3 frequencies
    param_bytes = 4 * (n * n + n + n + n + 1)  # J, B, b_x, w, b_z
    assert parts["parameters"] == 5 * param_bytes  # θ, gradient, initial, best, mask
    assert 2 * param_bytes <= parts["optimizer state"] < 3 * param_bytes  # Adam's two moments
    assert parts["trajectory"] == build.BACKWARD_FACTOR * 4 * steps * tasks * (n + 1)  # states + outputs
    minibatch = build.make_run(compose_cfg("optimizer=adam", "optimizer.batch_size=1"))[1]
    assert build.memory_estimate(minibatch, hyper)["trajectory"] == parts["trajectory"] // tasks

    monkeypatch.setattr(build.jax, "devices", lambda: [FakeAccelerator(limit=10**6, in_use=9 * 10**5)])
    assert build.available_memory() == (10**5, "gpu memory")
    with pytest.raises(build.ConfigError) as info:
        build.check_resources(trainer, cfg, hyper)
    assert info.value.key == "optimizer.batch_size" and "of gpu memory is free" in info.value.allowed
