"""The ℓ2-distance rebound study's pieces: the source's definitions (L0-and-behold/probabilistic-nonlinear-cs,
l2-experiments/) on tiny cases, the earlier ones kept beside them, students started from the teacher, DRR."""

from fractions import Fraction

import jax
import matplotlib.pyplot as plt
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build_model, build_regularizer, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.regularizers.drr import drr_penalty
from rnn_sparsity.analysis.teacher_distance import (_rational_projection, _ratio_ok, is_generic, min_max_normalised,
                                                    normalised_mean, raw_distance, source_is_generic,
                                                    source_projection)
from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_run, run, set_precision
from rnn_sparsity.tasks.mlp_teacher import (cached_teacher, glorot_uniform_teacher, make_teacher, projection_epochs,
                                           teacher_forward)

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


@pytest.mark.parametrize("perturbation,share", [("gaussian", 1.0), ("uniform", 1 / 3)])
def test_perturbed_start_has_the_expected_distance(tmp_path, perturbation, share):
    """δ ε per parameter: E Σ (δ ε)² = δ² P E ε² over the P = 751 parameters (E ε² = 1 for N(0, 1), 1/3 for
    U[-1, 1])."""
    run(compose_cfg(*STUDENT, "task.init_perturbation=0.1", f"task.perturbation={perturbation}", "optimizer.steps=2",
                    tiny=False), tmp_path)
    start = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)["param_raw_distance"][0]
    assert start == pytest.approx(0.01 * 751 * share, rel=0.12)


@pytest.mark.slow  # a training of its own (~7 s cold); tests/test_drr.py checks the penalty
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
    ("task.student_init=teacher", "task.student_init"), ("model.activation=relu", "model.activation"),
    ("task.perturbation=laplace", "task.perturbation"), ("task.teacher_init=orthogonal", "task.teacher_init"),
    ("task.projection=exact", "task.projection"), ("task.projection_schedule=sometimes", "task.projection_schedule"),
    ("task.data=float16", "task.data"), ("task.teacher_seed=-1", "task.teacher_seed")])
def test_bad_rebound_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*STUDENT, override, tiny=False))
    assert err.value.key == key


def test_a_student_that_is_not_the_teachers_mlp_is_refused():
    """The task knows its student by the MLP's config keys (it imports no model) and, when copying the teacher,
    by the parameter names."""
    flax = ["task=mlp_teacher", "model=flax", "model.module._target_=flax.linen.Dense", "+model.module.features=1"]
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*flax, tiny=False))
    assert err.value.key == "model.name" and "tanh MLP student" in err.value.allowed
    task = validate(compose_cfg(*STUDENT, "precision=float32", "task.n_train=8", "task.n_test=8", tiny=False)
                    ).task.build(jnp.float32)
    named_otherwise = {"Dense_0/kernel": jnp.zeros((2, 25)), "Dense_0/bias": jnp.zeros(25)}
    with pytest.raises(ConfigError, match="W1, W2, W3, b1, b2, b3"):
        task.initial_params(jax.random.key(0), {"init_perturbation": 0.0}, named_otherwise)


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
    common = [*STUDENT, "task.noise_std=0.01", "task.generic_gap=0.05", "optimizer.steps=6",
              "task.projection=make_generic", "task.projection_schedule=multiples"]
    run(compose_cfg(*common, tiny=False), tmp_path / "free")
    run(compose_cfg(*common, "task.project_every=2", tiny=False), tmp_path / "projected")
    free, projected = (artifacts.read_arrays(tmp_path / name / artifacts.ANALYSIS)["param_raw_distance"]
                       for name in ("free", "projected"))
    np.testing.assert_array_equal(free[:2], projected[:2])  # epochs 0 and 1: no projection yet
    assert projected[2] != free[2]  # epoch 2 is sampled just after the projection
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*STUDENT, "analysis.eig_every=2", "task.project_every=3",
                             "task.projection_schedule=multiples", tiny=False))
    assert err.value.key == "task.project_every"
    with pytest.raises(ConfigError) as err:  # the source's schedule projects after epoch 1: chunks of one epoch
        validate(compose_cfg(*STUDENT, "analysis.eig_every=2", "task.project_every=1", tiny=False))
    assert err.value.key == "analysis.eig_every"


# ---------------------------------------------------------------------------------------------------------
# the source's definitions on tiny cases


def starts_and_teacher(deltas, perturbation: str = "gaussian", sizes=(2, 60, 60, 1)):
    """([student start for each δ], teacher) of a copied student, from the task's own initial_params in float32."""
    widths = "[" + ",".join(map(str, sizes)) + "]"
    cfg = compose_cfg(*STUDENT, f"model.sizes={widths}", f"task.sizes={widths}", "task.n_train=64", "task.n_test=8",
                      f"task.perturbation={perturbation}", "precision=float32", tiny=False)
    set_precision("float32")
    component = validate(cfg).task
    task, hyper = component.build(jnp.float32), component.hyper(jnp.float32)
    template = {k: jnp.zeros(v.shape, jnp.float32) for k, v in component.teacher().items()}
    start = jax.jit(task.initial_params)
    return [{k: np.asarray(v) for k, v in start(jax.random.key(3), {**hyper, "init_perturbation": jnp.float32(d)},
                                                  template).items()} for d in deltas], component.teacher()


def test_the_start_is_the_teacher_plus_gaussian_delta_and_exactly_the_teacher_at_delta_zero():
    """The source's p .+= δ·randn: over the P = 3 901 parameters, (θ_s - θ_t)/δ has mean ≈ 0, std ≈ 1 and the
    kurtosis of a Gaussian (3; U[-1, 1] would give std 0.577 and kurtosis 1.8)."""
    (start, exact), teacher = starts_and_teacher([1e-2, 0.0])
    z = np.concatenate([((start[k].astype(np.float64) - teacher[k]) / 1e-2).ravel() for k in teacher])
    assert z.size == 3901
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and z.std() == pytest.approx(1.0, abs=0.04)
    assert np.mean(z ** 4) / np.mean(z ** 2) ** 2 == pytest.approx(3.0, abs=0.3)
    assert all(np.array_equal(exact[k], teacher[k]) for k in teacher)  # δ = 0: the teacher, to the bit
    (uniform,), _ = starts_and_teacher([1e-2], "uniform")
    u = np.concatenate([((uniform[k].astype(np.float64) - teacher[k]) / 1e-2).ravel() for k in teacher])
    assert u.std() == pytest.approx(1 / np.sqrt(3), abs=0.02) and np.abs(u).max() <= 1 + 1e-4
    assert np.mean(u ** 4) / np.mean(u ** 2) ** 2 == pytest.approx(1.8, abs=0.1)


def test_raw_distance_is_the_sum_of_squared_differences_without_alignment():
    teacher = {"W1": np.array([[1.0, 2.0], [3.0, 4.0]]), "b1": np.array([0.5, -0.5]),
               "W2": np.array([[1.0, -1.0]]), "b2": np.array([0.0])}
    student = {"W1": np.array([[1.5, 2.0], [3.0, 2.0]]), "b1": np.array([0.5, 0.5]),
               "W2": np.array([[1.0, -1.0]]), "b2": np.array([-3.0])}
    assert raw_distance(student, teacher) == 0.25 + 4.0 + 1.0 + 9.0  # squared: no square root
    swapped = {"W1": teacher["W1"][::-1], "b1": teacher["b1"][::-1], "W2": teacher["W2"][:, ::-1], "b2": teacher["b2"]}
    assert raw_distance(swapped, teacher) == 16.0 + 2.0 + 8.0 + 0.0  # a permuted copy is not at 0: no alignment


def test_min_max_normalisation_and_the_average_over_runs():
    np.testing.assert_allclose(min_max_normalised([2.0, 1.0, 3.0]), [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(min_max_normalised([4.0, 4.0, 4.0]), [0.0, 0.0, 0.0])  # flat: zeros, as the source
    # every run counts alike whatever its scale: 1e-12 and 10 are both mapped to [0, 1] first
    np.testing.assert_allclose(normalised_mean([[2e-12, 1e-12, 3e-12], [0.0, 10.0, 5.0]]), [0.25, 0.5, 0.75])


def test_the_source_teacher_is_glorot_uniform_with_zero_biases_then_nudged_by_a_few_epsilons():
    sizes = [2, 25, 25, 1]
    drawn = glorot_uniform_teacher(sizes, np.random.default_rng(0))
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W, a = drawn[f"W{l}"], np.sqrt(6 / (fan_in + fan_out))
        assert W.dtype == np.float32 and W.shape == (fan_out, fan_in) and np.abs(W).max() <= a
        assert drawn[f"b{l}"].dtype == np.float32 and np.all(drawn[f"b{l}"] == 0)
    assert np.abs(drawn["W2"]).max() > 0.95 * np.sqrt(6 / 50)  # 625 draws fill [-a, a]
    assert abs(drawn["W2"].std() - np.sqrt(6 / 50) / np.sqrt(3)) < 0.02
    teacher = cached_teacher(tuple(sizes), 0, "glorot_uniform", "eps_nudge", 1, 1e-3, "float32")
    assert np.array_equal(teacher["W1"] == 0, np.zeros((25, 2), bool)) and source_is_generic(teacher)
    eps = np.finfo(np.float32).eps
    for name, value in drawn.items():  # one pass of project_onto_F: |Δθ| <= 10 ε |θ| (+ half an ulp), <= 10 ε at 0
        moved = np.abs(teacher[name].astype(np.float64) - value)
        assert np.all(moved <= 10 * eps * np.abs(value) + np.spacing(np.abs(value)) / 2 + (value == 0) * 10 * eps)
    assert np.all(teacher["b1"] != 0) and np.abs(teacher["b1"]).max() <= 10 * eps  # zero biases become ±10 u ε


def test_the_source_projection_moves_by_at_most_its_bound_and_makes_a_degenerate_network_generic():
    degenerate = {"W1": np.array([[0.5, 0.0], [0.25, 1.0], [0.125, -2.0]], np.float32),
                  "b1": np.array([0.0, 0.3, 0.3], np.float32),
                  "W2": np.array([[1.0, -1.0, 0.75]], np.float32), "b2": np.array([0.0], np.float32)}
    assert not source_is_generic(degenerate)  # zeros, equal biases, ratios 2, 4, 4/3 in a column
    projected = source_projection(degenerate, np.random.default_rng(0))
    assert source_is_generic(projected) and all(v.dtype == np.float32 for v in projected.values())
    eps = np.finfo(np.float32).eps
    for name, value in degenerate.items():
        moved = np.abs(projected[name].astype(np.float64) - value)
        assert np.all(moved <= 12 * eps * np.maximum(np.abs(value), 1.0))  # a few epsilons, never more
    assert projected["b1"][0] != 0 and projected["b2"][0] != 0 and projected["W1"][0, 1] != 0
    assert _ratio_ok(Fraction(1, 3), Fraction(0.7), 100) and not _ratio_ok(Fraction(1, 2), Fraction(1, 4), 100)
    column, _ = _rational_projection(np.array([0.5, 0.25, 0.3], np.float32), 100, 10, np.random.default_rng(1))
    exact = [Fraction(float(v)) for v in column]
    assert all(_ratio_ok(a, b, 100) for i, a in enumerate(exact) for b in exact[i + 1:])
    assert np.all(np.abs(column - [0.5, 0.25, 0.3]) <= 20 * eps * np.array([0.5, 0.25, 0.3]))


def test_the_source_projects_after_the_epochs_that_divide_projection_frequency():
    assert [e for e in range(1, 13) if projection_epochs(1, "divisors", e)] == [1]
    assert [e for e in range(1, 13) if projection_epochs(6, "divisors", e)] == [1, 2, 3, 6]
    assert [e for e in range(1, 13) if projection_epochs(4, "multiples", e)] == [4, 8, 12]
    assert not any(projection_epochs(0, s, e) for s in ("divisors", "multiples") for e in range(13))


def test_the_teacher_is_an_exact_zero_of_the_float32_loss_and_the_epoch_one_nudge_is_the_only_move(tmp_path):
    """Targets from the student's own module: a copy at δ = 0, σ = 0 has loss 0 to the bit and stays at the
    teacher. With projection_frequency 1 (and a step size too small to move float32 weights, on noisy
    targets so that the loss is not 0) the nudge after epoch 1 moves it once, by ~10 ε relative."""
    common = [*STUDENT, "precision=float32", "task.n_train=256", "task.n_test=64", "optimizer.steps=3"]
    metrics = run(compose_cfg(*common, tiny=False), tmp_path / "still")
    arrays = artifacts.read_arrays(tmp_path / "still" / artifacts.ANALYSIS)
    assert metrics["initial_loss"] == 0.0 and np.all(arrays["param_raw_distance"] == 0)
    assert np.all(arrays["eval_train_loss"] == 0)
    run(compose_cfg(*common, "task.project_every=1", "task.noise_std=1e-3", "optimizer.lr=1e-30", tiny=False),
        tmp_path / "nudged")
    nudged = artifacts.read_arrays(tmp_path / "nudged" / artifacts.ANALYSIS)["param_raw_distance"]
    assert len(nudged) == 4 and nudged[0] == 0 and 0 < nudged[1] < 1e-10  # Σ (10 u ε θ)² over the parameters
    assert nudged[2] == nudged[1] and nudged[3] == nudged[1]  # no projection after epochs 2, 3


def test_the_sweep_curves_are_the_normalised_mean_over_epochs_from_one(tmp_path):
    """rebound_outputs on hand-made runs: groups by the swept keys that are not seeds, normalises epochs >= 1."""
    import pandas as pd

    from rnn_sparsity.plots.rebound import rebound_outputs

    epochs = np.arange(5)
    rows = []
    for i, (curve, project) in enumerate([([9.0, 4.0, 2.0, 3.0, 6.0], 1), ([90.0, 40.0, 30.0, 20.0, 60.0], 1),
                                          ([5.0, 4.0, 3.0, 2.0, 1.0], 0)]):
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        loss = np.linspace(1.0, 0.1, 5)
        artifacts.write_arrays(run_dir / artifacts.ANALYSIS, {
            "param_step": epochs, "param_raw_distance": np.array(curve), "eval_step": epochs,
            "eval_train_loss": loss, "eval_test_loss": loss})
        rows.append({"run_dir": str(run_dir), "status": "completed", "seed": i, "task.project_every": project})
    written = rebound_outputs(pd.DataFrame(rows), ["seed", "task.project_every"], tmp_path)
    assert {p.name for p in written} == {"rebound_curves.csv", "rebound_summary.csv", "rebound_normalised_mean.png",
                                         "rebound_raw_mean.png"}
    summary = pd.read_csv(tmp_path / "rebound_summary.csv").set_index("group")
    projected = summary.loc["task.project_every=1"]
    # epochs 1..4: [4, 2, 3, 6] -> [0.5, 0, 0.25, 1], [40, 30, 20, 60] -> [0.5, 0.25, 0, 1]: mean [.5, .125, .125, 1]
    assert projected["runs"] == 2 and projected["normalised_start"] == 0.5 and projected["normalised_final"] == 1.0
    assert projected["normalised_min"] == 0.125 and projected["normalised_min_epoch"] == 2
    assert projected["dips"] and projected["rises_after_min"] and projected["rises_above_start"]
    assert projected["raw_epoch0"] == pytest.approx(49.5) and projected["runs_dip_and_rise"] == 2
    falling = summary.loc["task.project_every=0"]  # a steady fall: its minimum is its last epoch
    assert falling["dips"] and not falling["rises_after_min"] and not falling["rises_above_start"]
    assert falling["normalised_min_epoch"] == 4 and falling["runs_dip_and_rise"] == 0


@pytest.mark.slow  # slow: a vmapped program of its own to compile (the default suite stays within 5 minutes cold)
def test_runs_with_other_teachers_train_as_one_program_each_from_its_own_teacher(tmp_path):
    """The source draws a teacher per run: teacher_seed is a data key, the teacher reaches the compiled start
    through hyper, so one vmapped program starts every member at its own teacher (distance 0 at δ = 0)."""
    from rnn_sparsity.experiment import run_batch
    from rnn_sparsity.experiment import static_key

    cfgs = [compose_cfg(*STUDENT, "precision=float32", "task.n_train=128", "task.n_test=32", "optimizer.steps=2",
                        "task.noise_std=1e-3", f"task.teacher_seed={s}", f"task.data_seed={s}", tiny=False)
            for s in (0, 1)]
    assert static_key(cfgs[0], validate(cfgs[0])) == static_key(cfgs[1], validate(cfgs[1]))
    outcomes = run_batch(cfgs, [tmp_path / str(i) for i in range(2)])
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    starts = [artifacts.read_arrays(tmp_path / str(i) / artifacts.ANALYSIS)["param_raw_distance"][0] for i in range(2)]
    teachers = [cached_teacher((2, 25, 25, 1), s, "glorot_uniform", "eps_nudge", 1, 1e-3, "float32") for s in (0, 1)]
    assert starts == [0.0, 0.0] and raw_distance(teachers[0], teachers[1]) > 1.0  # two teachers, each start on its own
