"""The sine task's `target_amplitude` A (the target is A sin(ω_j t)) and `input_gain` g_u (the whole
input times g_u): each changes only what it names, and the defaults (1) are today's task bit for bit."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

from rnn_sparsity.tasks.sine_wave import SineWaveConfig, make_task


def task(**overrides):
    return make_task(OmegaConf.structured(SineWaveConfig(n_freqs=5, drive_time=2.0, train_time=6.0, **overrides)), 0.1)


def test_default_amplitude_is_the_unit_sine():
    t = task()
    steps = np.arange(t.targets.shape[0])[:, None] * 0.1
    np.testing.assert_array_equal(t.targets[..., 0], np.sin(np.linspace(0.1, 0.6, 5)[None, :] * steps))


def test_amplitude_scales_only_the_target():
    unit, small = task(), task(target_amplitude=0.25)
    np.testing.assert_allclose(small.targets, 0.25 * unit.targets, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(small.inputs, unit.inputs)  # the drive keeps amplitude 1, the levels j/n + 0.25
    np.testing.assert_array_equal(small.loss_weights, unit.loss_weights)
    # the frequency metric is relative: the scaled target itself has zero frequency error
    assert small.metrics(small.targets)["freq_error"] < 1e-2


def test_input_gain_scales_drive_and_level_together():
    """g_u u_t through B is u_t through g_u B: the whole input and the analysis' static levels scale."""
    unit, gained = task(), task(input_gain=4.0)
    np.testing.assert_allclose(gained.inputs, 4.0 * unit.inputs, rtol=1e-15)
    np.testing.assert_allclose(gained.conditions.inputs, 4.0 * unit.conditions.inputs, rtol=1e-15)
    np.testing.assert_allclose(unit.conditions.inputs[:, 0], np.arange(5) / 5 + 0.25)  # the paper's j/n + 0.25
    np.testing.assert_array_equal(gained.targets, unit.targets)
