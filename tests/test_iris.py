"""L1 on the Iris classifier: the shipped data, the split, cross-entropy, and the study's two claims."""

import numpy as np
import pytest
from helpers import build_task, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import run
from rnn_sparsity.tasks.iris import accuracy, cross_entropy, load_iris

IRIS = ["sweeps=iris_l1", "progress=false"]


def test_shipped_iris_data_and_a_fixed_disjoint_split():
    features, labels = load_iris()
    assert features.shape == (150, 4) and np.bincount(labels).tolist() == [50, 50, 50]
    assert features[0].tolist() == [5.1, 3.5, 1.4, 0.2] and labels[0] == 0  # Fisher's first sample
    task = build_task(compose_cfg(*IRIS, tiny=False))
    again = build_task(compose_cfg(*IRIS, tiny=False))
    assert task.inputs.shape == (1, 120, 4) and task.test_inputs.shape == (1, 30, 4)
    np.testing.assert_array_equal(task.test_inputs, again.test_inputs)  # split_seed fixes the split
    train_rows = {tuple(r) for r in task.inputs[0]} | {tuple(r) for r in task.test_inputs[0]}
    assert len(train_rows) == len({tuple(r) for r in features})  # together they are the whole set
    other = build_task(compose_cfg(*IRIS, "task.split_seed=1", tiny=False))
    assert not np.array_equal(other.test_inputs, task.test_inputs)


def test_cross_entropy_and_accuracy_against_numpy():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(1, 7, 3)), rng.integers(0, 3, 7)
    targets = np.eye(3)[labels][None]
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert float(cross_entropy(logits, targets)) == pytest.approx(-np.mean(np.log(p[0, np.arange(7), labels])))
    assert float(accuracy(logits, targets)) == pytest.approx(np.mean(np.argmax(logits[0], -1) == labels))


@pytest.mark.slow  # two Iris trainings (~13 s cold)
def test_unregularised_classifier_learns_and_proximal_l1_leaves_exact_zeros(tmp_path):
    plain = run(compose_cfg(*IRIS, "regularizer.strength=0", tiny=False), tmp_path / "plain")
    assert plain["test_accuracy"] >= 0.9 and plain["window_test_accuracy"] >= 0.9
    arrays = artifacts.read_arrays(tmp_path / "plain" / artifacts.ANALYSIS)
    assert arrays["eval_step"][-1] == 8000 and arrays["eval_test_accuracy"][-1] == pytest.approx(
        plain["test_accuracy"], abs=0.05)
    proximal = run(compose_cfg(*IRIS, "regularizer.strength=5", "regularizer.mode=proximal", tiny=False),
                   tmp_path / "proximal")
    assert proximal["sparsity"] > 0.05 and plain["sparsity"] == 0.0
    assert proximal["test_accuracy"] >= 0.9


@pytest.mark.parametrize("override,key", [("task.test_fraction=1.5", "task.test_fraction"),
                                          ("model.sizes=[4,64,2]", "model.sizes"),
                                          ("task.average_window=[900,500]", "task.average_window")])
def test_bad_iris_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*IRIS, override, tiny=False))
    assert err.value.key == key
