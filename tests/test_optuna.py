"""Search, not only grids: the top-level `objective` is what every job returns to Hydra's sweeper, so
`hydra/sweeper=optuna` (hydra-optuna-sweeper) searches λ and lr; the aggregator reads the search like any
sweep and prints its best trial (sweeps/iris_optuna)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import OPTUNA_RESULTS, load_runs
from rnn_sparsity.aggregate import main as aggregate
from rnn_sparsity.config import ConfigError, validate

# The iris_optuna preset at a size that trains in about a second: a 4-16-3 MLP, 20 epochs.
SMALL = ["sweeps=iris_optuna", "optimizer.steps=140", "analysis.eig_every=14", "model.sizes=[4,16,3]",
         "regularizer.targets=[W1,W2]", "objective.metric=test_accuracy"]
IRIS = ["model=mlp", "task=iris", "optimizer=sgd", "model.sizes=[4,16,3]", "model.output_activation=linear",
        "model.bias=true", "regularizer.targets=[W1,W2]", "optimizer.lr=0.05", "optimizer.batch_size=16",
        "optimizer.steps=140", "analysis.eig_every=14", "analysis.figures=false", "progress=false"]


def iris(*overrides: str):
    return compose_cfg(*IRIS, *overrides, tiny=False)


def rnn_sparsity(folder: Path, *args: str, timeout: int = 300) -> tuple[int, str]:
    """Run the CLI in `folder`, its output in files there; (exit code, stdout + stderr)."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        code = subprocess.run([sys.executable, "-m", "rnn_sparsity", *args], cwd=folder, stdout=stdout,
                              stderr=stderr, timeout=timeout).returncode
    return code, out.read_text() + err.read_text()


def multirun_returns(sweep_dir: Path, *overrides: str) -> list:
    """The values the jobs of a multirun of the app (in this process) returned to the sweeper, in job order."""
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from rnn_sparsity.cli import app

    hydra = Hydra.create_main_hydra_file_or_module(calling_file=None, calling_module="rnn_sparsity.cli",
                                                   config_path="conf", job_name="rnn_sparsity")
    try:
        batches = hydra.multirun(config_name="config", task_function=app.__wrapped__,
                                 overrides=[*overrides, f"hydra.sweep.dir={sweep_dir}"], with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # later validations in this process are not in a job of this sweep
    return [ret.return_value for batch in batches for ret in batch]


def test_objective_value_is_the_metric_and_a_diverged_run_the_worst():
    minimize, maximize = ({"metric": "test_accuracy", "direction": d} for d in ("minimize", "maximize"))
    metrics = {"status": "completed", "final_loss": 0.25, "test_accuracy": 0.9, "window_test_accuracy": None}
    assert artifacts.objective_value(maximize, metrics) == 0.9 == artifacts.objective_value(minimize, metrics)
    assert artifacts.objective_value({"metric": "final_loss", "direction": "minimize"}, metrics) == 0.25
    diverged = {**metrics, "status": "diverged"}  # the best parameters before it blew up may look good
    assert artifacts.objective_value(maximize, diverged) == -math.inf
    assert artifacts.objective_value(minimize, diverged) == math.inf
    # not measured (a run shorter than its window) or non-finite: no value; Optuna fails only that trial
    assert artifacts.objective_value({"metric": "window_test_accuracy", "direction": "maximize"}, metrics) is None
    assert artifacts.objective_value(minimize, {**metrics, "test_accuracy": float("nan")}) is None


def test_the_objective_is_typed_checked_and_not_part_of_the_fingerprint():
    cfg = iris()
    assert OmegaConf.to_container(cfg.objective) == {"metric": "final_loss", "direction": "minimize"}
    searched = iris("objective.metric=test_accuracy", "objective.direction=maximize")
    validate(searched)
    assert artifacts.config_fingerprint(searched) == artifacts.config_fingerprint(cfg)  # a finished run stays finished
    with pytest.raises(ConfigError, match=r"objective\.direction='max': must be one of minimize, maximize"):
        validate(iris("objective.direction=max"))
    with pytest.raises(ConfigError, match=r"objective\.metric='test_acuracy': must be a metric this run can report: "
                                          r"final_loss, .*test_accuracy"):
        validate(iris("objective.metric=test_acuracy"))
    with pytest.raises(ConfigError, match="objective.metric='test_accuracy'"):  # the sine task has no test split
        validate(compose_cfg("objective.metric=test_accuracy"))


@pytest.mark.slow  # two Optuna sweeps in subprocesses (~13 s cold)
def test_an_unknown_metric_or_an_opposite_sweeper_direction_is_refused_before_training(tmp_path):
    code, log = rnn_sparsity(tmp_path, *IRIS, "objective.metric=test_acuracy", f"hydra.run.dir={tmp_path}/run")
    assert code == 2 and "rnn-sparsity: error: invalid config value objective.metric='test_acuracy'" in log, log[-2000:]
    refused = artifacts.read_metrics(tmp_path / "run")  # refused before any compute: recorded as failed, no result
    assert refused["status"] == "failed" and "objective.metric" in refused["error"]
    assert not artifacts.is_done(tmp_path / "run") and not (tmp_path / "run" / artifacts.PARAMS).exists()
    optuna = ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1"]
    code, log = rnn_sparsity(tmp_path, "-m", *IRIS, *optuna, "hydra.sweeper.direction=maximize",
                             f"hydra.sweep.dir={tmp_path}/s")
    assert code == 2, log[-2000:]
    assert ("invalid config value objective.direction='minimize': must equal hydra.sweeper.direction=maximize "
            "(set hydra.sweeper.direction='${objective.direction}')") in log


@pytest.mark.parametrize("launcher", ["basic", "vmap"])
def test_each_job_returns_its_objective_also_when_a_rerun_skips_it(tmp_path, launcher):
    """The app (basic launcher), the vmap launcher and the resume sweeper's skipped jobs return the
    metric metrics.json holds; lr = 1e30 diverges and returns the worst value."""
    grid = [*IRIS, "optimizer.lr=0.05,1e30", "objective.metric=test_accuracy", "objective.direction=maximize",
            f"hydra/launcher={launcher}"]
    returned = multirun_returns(tmp_path, *grid)
    metrics = {n: artifacts.read_metrics(tmp_path / str(n)) for n in (0, 1)}
    assert [metrics[n]["status"] for n in (0, 1)] == ["completed", "diverged"]
    assert set(artifacts.RUN_METRICS) <= set(metrics[0])  # what objective.metric may name, every run writes
    assert returned == [metrics[0]["test_accuracy"], -math.inf]
    assert multirun_returns(tmp_path, *grid) == returned  # both skipped: their stored objective


def search(sweep_dir: Path, *overrides: str) -> str:
    code, log = rnn_sparsity(sweep_dir.parent, "-m", *SMALL, *overrides, f"hydra.sweep.dir={sweep_dir}")
    assert code == 0, log[-3000:]
    return log


BEST = re.compile(r"best trial \(optuna, maximize test_accuracy\): job (\d+) test_accuracy=(\S+) "
                  r"regularizer\.strength=(\S+) optimizer\.lr=(\S+)")


@pytest.mark.slow  # 12 trials through the CLI (12 s cold)
def test_an_optuna_search_runs_and_aggregates_with_its_best_trial(tmp_path, capsys):
    """4 trials as 2 vmapped batches, lr 1e30 among the choices: a diverged trial is a bad one, not the
    end of the search. The aggregator's and --status's best trial is the best run of the table and
    optimization_results.yaml's."""
    sweep = tmp_path / "search"
    search(sweep, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.n_startup_trials=2",
           "optimizer.lr=choice(0.02,0.05,1e30)")  # the command line's search space wins over the preset's
    results = OmegaConf.load(sweep / OPTUNA_RESULTS)
    runs = load_runs(sweep)
    assert len(runs) == 4 and set(runs["status"]) == {"completed", "diverged"}
    completed = runs[runs["status"] == "completed"]
    best = completed.loc[completed["test_accuracy"].idxmax()]
    assert results.best_value == best["test_accuracy"]  # what the vmap launcher returned is metrics.json's

    assert aggregate([str(sweep)]) == 0
    report = capsys.readouterr().out
    assert "4 runs: " in report and "swept: regularizer.strength, optimizer.lr" in report
    line = BEST.search(report)
    assert line, report
    job = int(line.group(1))
    chosen = runs[runs["run_dir"] == str(sweep / str(job))].iloc[0]
    assert chosen["test_accuracy"] == best["test_accuracy"]
    assert float(line.group(2)) == pytest.approx(best["test_accuracy"], abs=1e-4)
    assert chosen["regularizer.strength"] == results.best_params["regularizer.strength"]
    assert chosen["optimizer.lr"] == results.best_params["optimizer.lr"]
    assert (sweep / "aggregate" / "figures" / "test_accuracy_vs_optimizer.lr.png").exists()

    assert aggregate(["--status", str(sweep)]) == 0
    status = capsys.readouterr().out
    assert "4 jobs: " in status and "diverged" in status and BEST.search(status).group(0) == line.group(0)


@pytest.mark.slow  # 15-20 s here (12 trials of 1000 epochs, 3 vmapped batches); the search above runs the same path
def test_the_iris_optuna_preset(tmp_path, capsys):
    """The preset as the README shows it: 12 trials in its ranges, every one completed, the best trial
    printed (with -s) and equal to the best window_test_accuracy of the runs."""
    sweep = tmp_path / "iris_optuna"
    start = time.perf_counter()
    code, log = rnn_sparsity(tmp_path, "-m", "sweeps=iris_optuna", f"hydra.sweep.dir={sweep}", timeout=600)
    assert code == 0, log[-3000:]
    runs = load_runs(sweep)
    assert len(runs) == 12 and (runs["status"] == "completed").all()
    assert runs["seed"].eq(0).all() and runs["regularizer.strength"].between(0, 0.005).all()
    assert runs["optimizer.lr"].between(1e-3, 5e-2).all()
    results = OmegaConf.load(sweep / OPTUNA_RESULTS)
    assert results.best_value == runs["window_test_accuracy"].max()
    assert aggregate(["--status", str(sweep)]) == 0
    line = re.search(r"best trial \(optuna, maximize window_test_accuracy\): job \d+ .*", capsys.readouterr().out)
    assert line, log[-2000:]
    print(f"{line.group(0)} ({time.perf_counter() - start:.1f} s)")
