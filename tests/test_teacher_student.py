"""Teacher-student study 1: data, minibatch training with early stopping, and the sparsity finding."""

import jax
import numpy as np
import pytest
from helpers import compose_cfg

from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_trainer, run, set_precision
from rnn_sparsity.tasks import make_task
from rnn_sparsity.tasks.teachers import teacher_apply

SMALL = ["task=teacher_student", "model=mlp", "model.sizes=[12,32,32,1]", "model.init_scale=0.2",
         "task.n_train=256", "task.n_test=256", "optimizer=sgd", "optimizer.lr=0.005", "optimizer.batch_size=16",
         "regularizer.targets=[W1,W2,W3]", "regularizer.reduction=sum", "analysis.eig_every=160",
         "analysis.figures=false", "progress=false"]


def test_targets_are_the_teacher_plus_noise_of_the_given_std():
    clean = make_task(compose_cfg(*SMALL, "task.activation=tanh", tiny=False).task, None)
    x = clean.inputs[0]
    np.testing.assert_allclose(clean.targets[0], np.asarray(teacher_apply("baseline_cnn", "tanh", x)), atol=1e-12)
    noisy = make_task(compose_cfg(*SMALL, "task.activation=tanh", "task.noise_std=0.1", "task.n_train=20000",
                                  tiny=False).task, None)
    residual = noisy.targets[0] - np.asarray(teacher_apply("baseline_cnn", "tanh", noisy.inputs[0]))
    assert np.std(residual) == pytest.approx(0.1, rel=0.03)
    assert not np.allclose(clean.test_inputs, clean.inputs)


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    set_precision("float32")
    trainer = make_trainer(compose_cfg(*SMALL, tiny=False))
    key = jax.random.key(3)
    epoch = [np.asarray(trainer.batch_indices(key, step)) for step in range(16)]
    np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(256))
    next_epoch = np.concatenate([np.asarray(trainer.batch_indices(key, step)) for step in range(16, 32)])
    assert not np.array_equal(np.concatenate(epoch), next_epoch)


def test_early_stopping_ends_a_run_after_patience_epochs_without_improvement(tmp_path):
    # lr ~ 0: every epoch loss is the same mean over all samples up to rounding (the order differs), so
    # after the first epoch at most a rounding-level improvement or two, then `patience` stale epochs
    metrics = run(compose_cfg(*SMALL, "regularizer=none", "optimizer.lr=1e-12", "optimizer.momentum=0",
                              "optimizer.patience=3", "optimizer.steps=1600", tiny=False), tmp_path)
    assert metrics["stopped_early"] is True and 1 + 3 <= metrics["epochs"] <= 1 + 3 + 2
    assert metrics["steps"] == metrics["epochs"] * 16
    no_patience = run(compose_cfg(*SMALL, "regularizer=none", "optimizer.lr=1e-12", "optimizer.steps=320",
                                  tiny=False), tmp_path / "all")
    assert no_patience["stopped_early"] is False and no_patience["epochs"] == 20


def test_proximal_l1_zeroes_student_weights_and_l2_does_not(tmp_path):
    """The study's finding at a small size: L1 in proximal mode leaves many weights exactly 0, L2 none."""
    base = [*SMALL, "optimizer.steps=3200", "regularizer.mode=proximal", "regularizer.strength=1e-2"]
    l1 = run(compose_cfg(*base, "regularizer=l1", tiny=False), tmp_path / "l1")
    l2 = run(compose_cfg(*base, "regularizer=l2", tiny=False), tmp_path / "l2")
    assert l1["sparsity"] > 0.5 and l2["sparsity"] == 0.0
    assert l1["test_loss"] < 0.5 * l1["initial_loss"]  # still learns the teacher
    assert {"teacher_distance", "test_loss", "sparsity/W1", "sparsity/W3"} <= set(l1)


@pytest.mark.parametrize("override,key", [
    ("task.teacher=wide_cnn", "task.teacher"), ("task.noise_std=-0.1", "task.noise_std"),
    ("model.sizes=[10,32,1]", "model.sizes"), ("model.sizes=[12,32,2]", "model.sizes"),
    ("optimizer.batch_size=1000", "optimizer.batch_size")])
def test_bad_teacher_student_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*SMALL, override, tiny=False))
    assert err.value.key == key


def test_a_model_the_task_cannot_train_is_refused():
    with pytest.raises(ConfigError, match="task=teacher_student needs model=mlp") as err:
        validate(compose_cfg("task=teacher_student", tiny=False))
    assert err.value.key == "model.name"
