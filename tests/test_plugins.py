"""A researcher's own task, regularizer and Flax model, from outside the package (tests/toy_plugin: a
module on PYTHONPATH and a YAML folder on Hydra's search path), run as a real multirun and aggregated
with no edit to rnn_sparsity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf, open_dict

from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import find_run_dirs, main as aggregate
from rnn_sparsity.config import ConfigError, validate

TESTS = Path(__file__).parent
PLUGIN_CONF = TESTS / "toy_plugin" / "conf"


def test_outside_components_run_in_a_multirun_and_aggregate(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "rnn_sparsity", "-m", f"hydra.searchpath=[file://{PLUGIN_CONF}]", "task=toy",
         "model=tiny_flax", "regularizer=quartic", "optimizer=adam", "optimizer.lr=0.02", "optimizer.steps=300",
         "analysis.eig_every=100", "regularizer.strength=0,0.3", "seed=0,1", "progress=false",
         f"hydra.sweep.dir={sweep}"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = find_run_dirs([sweep])
    assert len(runs) == 4
    for run_dir in runs:
        assert artifacts.read_metrics(run_dir)["status"] == "completed"
        assert (run_dir / "figures" / "toy_fit.png").stat().st_size > 0  # the toy task's own figure
        # the toy task's YAML left out `seed`: the run's record holds the schema's default; the quartic
        # regularizer declares no `mode` nor `activity` (a penalty without a state penalty) and needs none
        record = OmegaConf.load(run_dir / artifacts.CONFIG)
        assert record.task.seed == 0 and "mode" not in record.regularizer and "activity" not in record.regularizer
    kernels = {}
    for run_dir in runs:
        strength = OmegaConf.load(run_dir / artifacts.CONFIG).regularizer.strength
        params = artifacts.read_params(run_dir)  # Flax parameter paths, as regularizer.targets names them
        assert {"Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias"} == set(params)
        kernels.setdefault(strength, []).append(np.sum(params["Dense_0/kernel"] ** 4))
    assert np.mean(kernels[0.3]) < 0.5 * np.mean(kernels[0.0])  # λ Σ θ⁴ shrinks the first layer

    assert aggregate([str(sweep), "--trust", "toy_plugin"]) == 0  # the aggregator imports only trusted packages
    out = sweep / "aggregate"
    summary = pd.read_csv(out / "summary.csv")
    assert "mean_toy_score" in summary and summary["n_toy_score"].tolist() == [2, 2]
    assert summary.loc[summary["regularizer.strength"] == 0, "mean_toy_score"].item() > 0.9  # it learns the task
    assert len(pd.read_csv(out / "toy_scores.csv")) == 4  # the toy task's own sweep output
    assert (out / "figures" / "toy_score_vs_regularizer.strength.png").exists()
    assert "swept: regularizer.strength" in capsys.readouterr().out


@pytest.mark.parametrize("overrides,key,allowed", [
    (["task._target_=rnn_sparsity.models.mlp.MLP"], "task._target_", "subclass of rnn_sparsity.components.TaskComponent"),
    (["task._target_=nope.Task"], "task._target_", "No module named 'nope'"),
    (["model=flax", "task=teacher_student", "model.module._target_=collections.OrderedDict"],
     "model.module._target_", "subclass of flax.linen"),
    (["model=flax", "task=sine_wave", "model.module._target_=flax.linen.Dense"], "model.name", "gives sequence inputs"),
])
def test_a_target_that_cannot_serve_is_refused_naming_the_key(overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*overrides, tiny=False))
    assert err.value.key == key and allowed in err.value.allowed


def test_a_users_yaml_is_typed_against_its_schema_and_completed():
    cfg = compose_cfg("model=flax", "model.module._target_=toy_plugin.TinyMLP", "regularizer=none", tiny=False)
    with open_dict(cfg):
        cfg.task = {"_target_": "toy_plugin.ToyTask", "name": "toy", "n_points": "many"}
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == "task.n_points" and "many" in err.value.allowed
    with open_dict(cfg):
        cfg.task = {"_target_": "toy_plugin.ToyTask", "name": "toy"}  # n_points and seed left out
    validate(cfg)
    assert cfg.task.n_points == 64 and cfg.task.seed == 0


@pytest.mark.slow  # a real multirun of two trainings and their analysis (~35 s)
def test_a_researchers_own_cell_trains_on_flipflop_and_its_fixed_points_are_found_and_drawn(tmp_path):
    """toy_plugin.LeakyTanhCell through model=flax_rnn (its YAML in a folder, its recurrent kernel named
    there): a real vmapped multirun on the 3-bit flip-flop with analysis=dynamics; each run's fixed points
    are true ones of the cell's own map (checked here with the cell itself), stable and unstable, and drawn."""
    import jax
    import jax.numpy as jnp
    from toy_plugin import LeakyTanhCell

    from rnn_sparsity.models.cells import cell_model

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "rnn_sparsity", "-m", f"hydra.searchpath=[file://{PLUGIN_CONF}]", "model=leaky_cell",
         "task=flipflop", "analysis=dynamics", "optimizer=adam", "optimizer.steps=1500", "optimizer.lr=1e-2",
         "model.sparsity=0.2", "precision=float64", "seed=0,1", "hydra/launcher=vmap", "progress=false",
         f"hydra.sweep.dir={sweep}"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = find_run_dirs([sweep])
    assert len(runs) == 2
    with jax.enable_x64(True):
        check_cell_runs(runs, cell_model(LeakyTanhCell(features=16, alpha=0.5), 3, 3, jnp.float64,
                                         recurrent=("cell/rec/kernel",)))


def check_cell_runs(runs, model) -> None:
    import jax
    import jax.numpy as jnp

    for run_dir in runs:
        metrics = artifacts.read_metrics(run_dir)
        assert metrics["status"] == "completed" and metrics["bit_accuracy"] > 0.99
        params = {k: jnp.asarray(v) for k, v in artifacts.read_params(run_dir).items() if "/" in k
                  and not k.startswith(("init/", "mask/"))}
        mask = artifacts.read_params(run_dir, artifacts.MASK)["cell/rec/kernel"]
        assert 0.1 < 1 - mask.mean() < 0.3 and np.all(params["cell/rec/kernel"][mask == 0] == 0)  # s = 0.2 held
        analysis = np.load(run_dir / artifacts.ANALYSIS)
        points = analysis["fp_points"]
        residual = jax.vmap(lambda h: model.dynamics.field(params, h, jnp.zeros(3)) - h)(jnp.asarray(points))
        assert len(points) >= 2 and float(jnp.max(jnp.linalg.norm(residual, axis=1))) < 1e-8
        assert analysis["fp_is_stable"].any() and (~analysis["fp_is_stable"]).any()  # memories and saddles
        assert np.sum(analysis["fp_start_outcome"] == 0) == metrics["n_converged_starts"]  # the per-start report
        for figure in ("pc_space.png", "jacobian_eigenvalues.png"):
            assert (run_dir / "figures" / figure).stat().st_size > 0
