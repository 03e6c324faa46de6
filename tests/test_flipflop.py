"""The flip-flop task: data semantics and learnability with the ctrnn."""

import numpy as np
from helpers import compose_cfg

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


def test_a_small_ctrnn_learns_the_flipflop(tmp_path):
    cfg = compose_cfg("task=flipflop", "regularizer=none", "model.n_units=24", "model.dt=1.0", "optimizer=adam",
                      "optimizer.lr=1e-2", "optimizer.steps=1000", "analysis.eig_every=100",
                      "analysis.figures=false", "progress=false", tiny=False)
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["bit_accuracy"] > 0.99
    assert metrics["task_loss"] < 0.01
