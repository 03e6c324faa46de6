"""Discrete-time RNNs from Flax cells (models/cells.py) as models of the tool: parameters by path,
structural sparsity of the recurrent kernels, regularisers and pruners on them, and what the config
refuses. Their fixed points: tests/test_cell_fixed_points.py; trained on the flip-flop: test_flipflop.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from helpers import compose_cfg, parts_of

from rnn_sparsity import artifacts
from rnn_sparsity.components import ConfigError
from rnn_sparsity.experiment import run
from rnn_sparsity.models.cells import cell_model

CELL_RUN = ["task=flipflop", "task.n_steps=16", "task.n_trials=16", "model.n_units=8", "optimizer=adam",
            "optimizer.steps=40", "optimizer.lr=1e-2", "analysis.eig_every=20", "analysis.figures=false",
            "progress=false"]


@pytest.mark.parametrize("cell,state", [(nn.SimpleCell, 6), (nn.GRUCell, 6), (nn.LSTMCell, 12)])
def test_parameters_are_named_by_path_and_s_pins_the_recurrent_kernels(cell, state):
    model = cell_model(cell(features=6), 3, 2, jnp.float32)
    params, mask = jax.jit(model.init)(jax.random.key(0), {"sparsity": jnp.float32(0.75)})
    recurrent = [name for name in params if name.startswith("cell/h") and name.endswith("/kernel")]
    assert set(model.masked) == set(model.weights) == set(recurrent) and recurrent
    assert {"readout/kernel", "readout/bias"} <= set(params)
    for name in params:
        if name in recurrent:  # ~75% pinned at exactly 0, each kernel its own mask
            assert 0.5 < 1 - float(mask[name].mean()) < 0.95 and np.all(params[name][mask[name] == 0] == 0)
        else:
            assert np.all(mask[name] == 1)
    masks = [np.asarray(mask[name]) for name in recurrent]
    assert len(masks) == 1 or not np.array_equal(masks[0], masks[1])
    outputs, states = jax.eval_shape(model.apply, params, jnp.zeros((5, 4, 3)))
    assert outputs.shape == (5, 4, 2) and states.shape == (5, 4, state)
    assert jax.eval_shape(model.recurrent, params).shape == (state, state)  # ∂f/∂h at the origin, whose spectrum is tracked


def test_a_gru_trains_with_l1_on_a_kernel_by_path_structural_sparsity_and_a_magnitude_pruner(tmp_path):
    """Every tool of the study on a GRU: s = 0.5 of each recurrent kernel pinned, L1 (proximal: exact
    zeros) on the input kernel `cell/in/kernel` named by path, a magnitude prune of the recurrent kernels
    to 0.75 at step 20; each holds in the trained network's parameters."""
    cfg = compose_cfg("model=gru", *CELL_RUN, "model.sparsity=0.5", "regularizer=l1", "regularizer.mode=proximal",
                      "regularizer.strength=1", "regularizer.reduction=sum", "regularizer.targets=[cell/in/kernel]", "pruner=magnitude",
                      "pruner.sparsity=0.75", "pruner.step=20", tiny=False)
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed"
    params, masks = artifacts.read_params(tmp_path), artifacts.read_params(tmp_path, artifacts.MASK)
    for name in ("cell/hr/kernel", "cell/hz/kernel", "cell/hn/kernel"):
        assert np.mean(params[name] == 0) == pytest.approx(0.75, abs=1 / 64)  # ⌊0.75 · 64⌋ zeros
        assert np.all(params[name][masks[name] == 0] == 0)
    assert np.mean(params["cell/in/kernel"] == 0) > 0.25  # the prox zeroes entries of the kernel it targets
    assert np.mean(params["cell/iz/kernel"] == 0) == 0  # and of no other
    analysis = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    assert str(analysis["eig_of"]) == "map" and analysis["eig_values"].shape[1] == 8


@pytest.mark.parametrize("overrides,key,allowed", [
    (["model=flax_rnn", "model.cell._target_=flax.linen.Dense", "+model.cell.features=4"], "model.cell._target_",
     "subclass of flax.linen"),
    (["model=gru", "model.sparsity=1.0"], "model.sparsity", "0 <= s < 1"),
    (["model=lstm", "model.n_units=0"], "model.n_units", "> 0"),
    (["model=rnn", "model.dt=0"], "model.dt", "> 0"),
    (["model=gru", "analysis=dynamics", "analysis.pca.rates=true"], "analysis.pca.rates", "needs a model with rates"),
])
def test_bad_cell_configs_are_refused_naming_the_key(overrides, key, allowed):
    with pytest.raises(ConfigError) as err:
        parts_of(compose_cfg("task=flipflop", *overrides, tiny=False))
    assert err.value.key == key and allowed in err.value.allowed


def test_sparsity_with_no_recurrent_kernel_matched_is_refused():
    cfg = compose_cfg("model=gru", "task=flipflop", "model.sparsity=0.5", "model.recurrent=[cell/nothing*]", tiny=False)
    parts = parts_of(cfg)
    with pytest.raises(ConfigError, match="matches no parameter"):
        parts.model.build(parts.task.build(jnp.float32), jnp.float32)
