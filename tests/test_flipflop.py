"""The flip-flop task: data semantics and learnability with the ctrnn."""

import itertools

import numpy as np
import pytest
from helpers import compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.experiment import run
from rnn_sparsity.tasks.flipflop import flipflop_trials


def test_targets_hold_the_sign_of_the_last_pulse():
    inputs, targets = flipflop_trials(n_trials=50, n_steps=40, n_bits=3, pulse_prob=0.3, seed=1)
    assert np.all(inputs[0] != 0)  # every bit pulses at t = 0
    assert set(np.unique(inputs)) == {-1.0, 0.0, 1.0} and set(np.unique(targets)) == {-1.0, 1.0}
    assert abs(np.mean(inputs[1:] != 0) - 0.3) < 0.02
    for b in range(50):
        for k in range(3):
            held = inputs[0, b, k]
            for t in range(40):
                held = inputs[t, b, k] if inputs[t, b, k] != 0 else held
                assert targets[t, b, k] == held


@pytest.mark.slow  # training to the corners compiles its own programs (~20 s cold)
def test_trained_flipflop_network_has_eight_stable_fixed_points_at_the_corners(tmp_path):
    """The preset (24 units, dt = tau = 1, Adam, float64) learns the task, and the trained network stores
    the 8 memories as exactly 8 stable fixed points whose readouts carry the 8 sign patterns."""
    cfg = compose_cfg("sweeps=flipflop", "regularizer.strength=0", "analysis.figures=false",
                      "analysis.track_tasks=[]", tiny=False)
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["bit_accuracy"] > 0.99 and metrics["task_loss"] < 0.01
    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    params = artifacts.read_params(tmp_path)
    assert metrics["n_stable_fixed_points"] == 8 and np.sum(arrays["fp_is_stable"]) == 8
    assert metrics["n_unstable_fixed_points"] >= 1  # saddles between the memories
    assert np.all(arrays["fp_residual_norms"] < 1e-10)
    stable = arrays["fp_points"][arrays["fp_is_stable"]]
    readout = np.tanh(stable) @ params["w"].T + params["b_z"]
    corners = {tuple(row) for row in np.sign(readout).astype(int)}
    assert corners == set(itertools.product((-1, 1), repeat=3))
    assert np.all(np.abs(readout) > 0.8)  # near the corners, not just on the right side


@pytest.mark.slow  # a GRU or LSTM trained to the corners in float64 (~30 s each cold)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trained_gru_and_lstm_have_eight_stable_fixed_points_at_the_corners(tmp_path, cell):
    """sweeps=flipflop_cells (FixedPointFinder's example: 16 units, 1024 noisy starts from the trials'
    states), seed 0: the cell's map h' = f(h, 0) has exactly 8 stable fixed points (|λ| < 1), true ones
    (‖f(h) − h‖ < 1e-10), whose readouts are the 8 corners of the output cube, with saddles between."""
    cfg = compose_cfg("sweeps=flipflop_cells", f"model={cell}", "seed=0", "analysis.figures=false", tiny=False)
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["bit_accuracy"] > 0.99
    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    stable = arrays["fp_is_stable"]
    assert metrics["n_stable_fixed_points"] == 8 and metrics["n_unstable_fixed_points"] >= 1
    assert np.all(arrays["fp_residual_norms"] < 1e-10)
    assert np.all(np.abs(arrays["fp_eigenvalues"][stable]) < 1) and str(arrays["dynamics_kind"]) == "map"
    readout = arrays["fp_outputs"][stable]
    assert {tuple(row) for row in np.sign(readout).astype(int)} == set(itertools.product((-1, 1), repeat=3))
    assert np.all(np.abs(readout) > 0.8)
