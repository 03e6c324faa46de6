"""The digits task: the shipped 8×8 images, the split, the scaling, and an MLP that learns them."""

import numpy as np
import pytest
from helpers import build_task, compose_cfg

from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import run
from rnn_sparsity.tasks.digits import load_digits

DIGITS = ["task=digits", "model=mlp", "model.sizes=[64,32,10]", "model.activation=relu",
          "model.output_activation=linear", "model.bias=true", "regularizer=none", "analysis=none",
          "progress=false"]


def rows(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(pixels, label) of every sample of a (1, B, ·) split, sorted: a multiset that comparisons can see."""
    table = np.hstack([inputs[0], np.argmax(targets[0], -1)[:, None]])
    return table[np.lexsort(table.T[::-1])]


def test_the_shipped_digits_are_sklearns():
    pixels, labels = load_digits()
    assert pixels.shape == (1797, 64) and labels.shape == (1797,)
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.array_equal(pixels, np.round(pixels)) and pixels.min() == 0 and pixels.max() == 16
    assert pixels[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and labels[0] == 0  # sklearn's first image, a 0


def test_a_seeded_split_that_partitions_the_scaled_samples():
    task = build_task(compose_cfg(*DIGITS, tiny=False))
    assert task.inputs.shape == (1, 1438, 64) and task.test_inputs.shape == (1, 359, 64)
    assert task.targets.shape == (1, 1438, 10) and task.test_targets.shape == (1, 359, 10)
    assert task.inputs.min() == 0.0 and task.inputs.max() == 1.0  # task.scale: pixels / 16
    pixels, labels = load_digits()
    split = rows(np.concatenate([task.inputs, task.test_inputs], 1), np.concatenate([task.targets, task.test_targets], 1))
    np.testing.assert_array_equal(split, rows(pixels[None] / 16, np.eye(10)[labels][None]))  # every sample once
    again = build_task(compose_cfg(*DIGITS, tiny=False))
    np.testing.assert_array_equal(again.test_inputs, task.test_inputs)  # split_seed fixes the split
    np.testing.assert_array_equal(again.inputs, task.inputs)
    other = build_task(compose_cfg(*DIGITS, "task.split_seed=1", tiny=False))
    assert not np.array_equal(other.test_inputs, task.test_inputs)
    raw = build_task(compose_cfg(*DIGITS, "task.scale=false", tiny=False))
    np.testing.assert_array_equal(raw.test_inputs, 16 * task.test_inputs)  # the same split, unscaled


@pytest.mark.slow  # training to 90% on the digits (~9 s cold)
def test_an_mlp_learns_the_digits(tmp_path):
    metrics = run(compose_cfg(*DIGITS, "optimizer=adam", "optimizer.lr=1e-2", "optimizer.batch_size=64",
                              "optimizer.steps=300", "precision=float32", tiny=False), tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["test_accuracy"] > 0.9 and metrics["train_accuracy"] > 0.9  # chance: 0.1
    assert metrics["initial_loss"] == pytest.approx(np.log(10), rel=0.5) and metrics["test_loss"] < 0.3


@pytest.mark.parametrize("override,key", [("task.test_fraction=0", "task.test_fraction"),
                                          ("model.sizes=[64,32,3]", "model.sizes")])
def test_bad_digits_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*DIGITS, override, tiny=False))
    assert err.value.key == key
