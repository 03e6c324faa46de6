"""The ℓ2-distance rebound study's pieces: a generic tanh teacher, students started from it, DRR."""

import jax
import matplotlib.pyplot as plt
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build_model, build_regularizer, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.regularizers.drr import drr_penalty
from rnn_sparsity.analysis.teacher_distance import is_generic
from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_run, run, set_precision
from rnn_sparsity.tasks.mlp_teacher import make_teacher, teacher_forward

STUDENT = ["task=mlp_teacher", "model=mlp", "model.sizes=[2,25,25,1]", "model.activation=tanh", "model.bias=true",
           "model.output_activation=linear", "optimizer=sgd", "optimizer.lr=0.01", "optimizer.momentum=0",
           "regularizer=none", "task.n_train=2000", "task.n_test=500", "analysis.eig_every=1",
           "analysis.figures=false", "progress=false", "precision=float64"]


def test_teacher_is_generic_and_the_student_model_computes_its_function():
    teacher = make_teacher([2, 25, 25, 1], seed=3, min_gap=1e-3)
    assert is_generic(teacher, 1e-3)
    cfg = compose_cfg(*STUDENT, tiny=False)
    with jax.enable_x64(True):
        model = build_model(cfg, 2, 1, jnp.float64)
        u = np.random.default_rng(0).uniform(-1, 1, (50, 2))
        outputs, _ = model.apply({k: jnp.asarray(v) for k, v in teacher.items()}, jnp.asarray(u)[None])
    np.testing.assert_allclose(np.asarray(outputs[0]), teacher_forward(teacher, u), atol=1e-12)


def test_a_student_copied_exactly_starts_at_distance_zero_and_at_the_noise_floor(tmp_path):
    metrics = run(compose_cfg(*STUDENT, "task.noise_std=0.01", "optimizer.steps=5", tiny=False), tmp_path)
    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    assert arrays["param_raw_distance"][0] == 0.0 and arrays["param_aligned_distance"][0] == 0.0
    assert metrics["initial_loss"] == pytest.approx(0.01 ** 2, rel=0.1)  # the teacher's loss is the noise's
    assert np.all(np.diff(arrays["param_step"]) == 1)  # one sample per epoch (full batch)
    assert metrics["raw_distance"] > 0 and metrics["raw_distance_min_epoch"] == 0


def test_perturbed_start_has_the_expected_distance(tmp_path):
    """δ U[-1, 1] per parameter: E Σ (δ ε)² = δ² P / 3 over the P = 751 parameters."""
    run(compose_cfg(*STUDENT, "task.init_perturbation=0.1", "optimizer.steps=2", tiny=False), tmp_path)
    start = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)["param_raw_distance"][0]
    assert start == pytest.approx(0.01 * 751 / 3, rel=0.1)


def test_drr_regularizer_is_the_drr_penalty_over_its_targets():
    cfg = compose_cfg(*STUDENT, "regularizer=drr", "regularizer.strength=0.5", "regularizer.rho=0.1", tiny=False)
    set_precision("float64")
    _, trainer, _ = make_run(cfg)
    params, _ = trainer.model.init(jax.random.key(0), {"init_perturbation": 0.0})
    hyper = {"strength": 0.5, "rho": 0.1, "beta": 10.0}
    expected = drr_penalty(params, 0.5, 0.1, 10.0)
    assert float(trainer.regularizer.penalty(params, hyper)) == pytest.approx(float(expected), rel=1e-12)
    only_first = build_regularizer(compose_cfg(*STUDENT, "regularizer=drr", "regularizer.targets=[W1,b1]", tiny=False),
                                   {k: v.shape for k, v in params.items()})
    assert float(only_first.penalty(params, hyper)) == pytest.approx(
        float(drr_penalty({"W1": params["W1"], "b1": params["b1"]}, 0.5, 0.1, 10.0)), rel=1e-12)


@pytest.mark.parametrize("override,key", [
    ("model.sizes=[2,20,25,1]", "model.sizes"), ("task.noise_std=-1", "task.noise_std"),
    ("task.student_init=teacher", "task.student_init"), ("model.activation=relu", "model.activation")])
def test_bad_rebound_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*STUDENT, override, tiny=False))
    assert err.value.key == key


def test_drr_has_no_proximal_mode():
    with pytest.raises(ConfigError, match="no proximal operator"):
        validate(compose_cfg(*STUDENT, "regularizer=drr", "regularizer.mode=proximal", tiny=False))


def test_power_law_fit_recovers_a_known_slope_and_ignores_zero_noise():
    import pandas as pd

    from rnn_sparsity.plots.rebound import noise_loglog_figure, power_law_fit, power_law_fits

    sigma = np.repeat(np.geomspace(1e-5, 1e-2, 8), 3)
    distance = 3.0 * sigma ** 0.5 * np.tile([0.9, 1.0, 1.1], 8)  # seeds scatter around the law
    slope, intercept = power_law_fit(np.r_[0.0, sigma], np.r_[1.0, distance])
    assert slope == pytest.approx(0.5, abs=0.02) and 10 ** intercept == pytest.approx(3.0, rel=0.05)
    runs = pd.DataFrame({"task.noise_std": sigma, "raw_distance": distance, "status": "completed"})
    fits = power_law_fits(runs)
    assert fits.loc[0, "metric"] == "raw_distance" and fits.loc[0, "slope"] == pytest.approx(0.5, abs=1e-9)
    fig = noise_loglog_figure(runs, "raw_distance")
    assert fig is not None and "slope 0.500" in fig.axes[0].get_title()
    plt.close(fig)
    assert power_law_fits(runs.assign(**{"task.noise_std": 1e-3})) is None  # σ not swept: nothing to fit


def test_distance_figure_is_drawn_from_the_tracked_distances(tmp_path):
    from rnn_sparsity.plots.rebound import distance_figure

    run(compose_cfg(*STUDENT, "task.noise_std=0.01", "optimizer.steps=3", tiny=False), tmp_path)
    fig = distance_figure(tmp_path)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and max(lines[0].get_ydata()) == pytest.approx(1.0)  # min-max normalised
    assert min(lines[0].get_ydata()) == pytest.approx(0.0)
    plt.close(fig)
    assert distance_figure(tmp_path / "missing") is None


def test_project_every_makes_the_student_generic_at_those_epochs_only(tmp_path):
    common = [*STUDENT, "task.noise_std=0.01", "task.generic_gap=0.05", "optimizer.steps=6"]
    run(compose_cfg(*common, tiny=False), tmp_path / "free")
    run(compose_cfg(*common, "task.project_every=2", tiny=False), tmp_path / "projected")
    free, projected = (artifacts.read_arrays(tmp_path / name / artifacts.ANALYSIS)["param_raw_distance"]
                       for name in ("free", "projected"))
    np.testing.assert_array_equal(free[:2], projected[:2])  # epochs 0 and 1: no projection yet
    assert projected[2] != free[2]  # epoch 2 is sampled just after the projection
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*STUDENT, "analysis.eig_every=2", "task.project_every=3", tiny=False))
    assert err.value.key == "task.project_every"
