"""Teacher-student study 1: data, minibatch training with early stopping, and the sparsity finding."""

import jax
import numpy as np
import pytest
from helpers import build_model, build_task, compose_cfg, parts_of

from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_run, run, set_precision
from rnn_sparsity.tasks.teachers import teacher_layers

SMALL = ["task=teacher_student", "model=mlp", "model.sizes=[12,32,32,1]", "model.init_scale=0.2",
         "task.n_train=256", "task.n_test=256", "optimizer=sgd", "optimizer.lr=0.005", "optimizer.batch_size=16",
         "regularizer.targets=[W1,W2,W3]", "regularizer.reduction=sum", "analysis.eig_every=160",
         "analysis.figures=false", "progress=false"]


CNN = [o for o in SMALL if not o.startswith("model")] + ["model=cnn"]


def teacher_apply(name, x):
    """The tanh teacher's output through its dense layers (float64)."""
    for layer in teacher_layers(name):
        x = np.tanh(x @ layer.T)
    return x


def test_targets_are_the_teacher_plus_noise_of_the_given_std():
    clean = build_task(compose_cfg(*SMALL, "task.activation=tanh", tiny=False))
    x = clean.inputs[0]
    np.testing.assert_allclose(clean.targets[0], teacher_apply("baseline_cnn", x), atol=1e-12)
    noisy = build_task(compose_cfg(*SMALL, "task.activation=tanh", "task.noise_std=0.1", "task.n_train=20000",
                                  tiny=False))
    residual = noisy.targets[0] - teacher_apply("baseline_cnn", noisy.inputs[0])
    assert np.std(residual) == pytest.approx(0.1, rel=0.03)
    assert not np.allclose(clean.test_inputs, clean.inputs)


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    set_precision("float32")
    _, trainer, _ = make_run(compose_cfg(*SMALL, tiny=False))
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
    with pytest.raises(ConfigError, match="task=teacher_student gives static inputs; model=ctrnn learns sequence") as err:
        validate(compose_cfg("task=teacher_student", tiny=False))
    assert err.value.key == "model.name"


def test_sparsity_counts_exact_and_near_zeros_in_total_and_per_layer():
    from rnn_sparsity.analysis.sparsity import sparsity_metrics

    params = {"W1": np.array([[0.0, 5e-5], [1.0, -2.0]]), "W2": np.array([0.0, 0.0, -3e-5, 0.5])}
    metrics = sparsity_metrics(params, ["W1", "W2"])
    assert metrics["sparsity"] == 3 / 8 and metrics["near_zero_fraction"] == 5 / 8
    assert metrics["sparsity/W1"] == 1 / 4 and metrics["near_zero_fraction/W1"] == 2 / 4
    assert metrics["sparsity/W2"] == 2 / 4 and metrics["near_zero_fraction/W2"] == 3 / 4


@pytest.mark.parametrize("teacher,channels", [("baseline_cnn", "[1,1,1,1]"), ("multichannel_cnn", "[1,4,4,1]")])
def test_cnn_student_with_the_teachers_filters_is_the_teacher(teacher, channels):
    from rnn_sparsity.tasks.teachers import _TEACHERS  # the stated filters, (banks, positions) per layer

    cfg = compose_cfg(*CNN, f"model.channels={channels}", "model.activation=tanh",
                      f"task.teacher={teacher}", "task.activation=tanh", tiny=False)
    validate(cfg)
    task = build_task(cfg)
    with jax.enable_x64(True):
        model = build_model(cfg, 12, 1, jax.numpy.float64)
        params = {f"W{l}": jax.numpy.asarray(banks[0], dtype=float)
                  for l, (banks, _) in enumerate(_TEACHERS[teacher], start=1)}
        outputs, _ = model.apply(params, jax.numpy.asarray(task.inputs))
    np.testing.assert_allclose(np.asarray(outputs), task.targets, atol=1e-12)
    assert parts_of(cfg).task.teacher_distance({k: np.asarray(v) for k, v in params.items()})["teacher_distance"] < 1e-12


def test_cnn_student_trains_and_bad_kernels_are_refused(tmp_path):
    metrics = run(compose_cfg(*CNN, "optimizer.steps=320", "regularizer=l1",
                              "regularizer.mode=proximal", "regularizer.strength=1e-3", tiny=False), tmp_path)
    assert metrics["status"] == "completed" and metrics["test_loss"] < metrics["initial_loss"]
    assert "teacher_distance" in metrics
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*CNN, "model.kernels=[3,2,3]", tiny=False))
    assert err.value.key == "model.kernels"
