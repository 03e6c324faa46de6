"""Training: purity under vmap, determinism, proximal vs penalty L1, structural masks, divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compose_cfg, train_chunks

from rnn_sparsity import artifacts
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.experiment import run
from rnn_sparsity.fit import Program, fit
from rnn_sparsity.probes import SpectrumProbe


def trainer_for(*overrides):
    cfg = compose_cfg(*overrides)
    set_precision(cfg.precision)
    _, trainer, hyper = make_run(cfg)
    return cfg, trainer, hyper


def pure_train(trainer, key, hyper):
    """All of training as one pure function of (key, hyper): every chunk of every stage (none skipped),
    the records concatenated (valid == False marks steps of stages that did not run)."""
    state, records = None, []
    for _, _, state, rec in train_chunks(trainer, key, hyper):
        if rec is not None:
            records.append(rec)
    return state, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=-1), *records)


def with_strength(hyper, strength):
    return {**hyper, "regularizer": {**hyper["regularizer"], "strength": strength}}


@pytest.mark.slow  # compiles the whole trainer twice in float64 (~20 s cold); test_batch checks batched λ runs too
def test_vmap_over_two_strengths_equals_two_separate_calls():
    cfg, trainer, hyper = trainer_for("precision=float64")
    strengths = jnp.array([1e-3, 1.0])
    batched = with_strength(jax.tree.map(lambda v: jnp.stack([v, v]), hyper), strengths)
    key = jax.random.key(3)
    states, records = jax.vmap(lambda k, h: pure_train(trainer, k, h), in_axes=(None, 0))(key, batched)
    for i, strength in enumerate(strengths):
        state, rec = pure_train(trainer, key, with_strength(hyper, strength))
        for name in state.best_params:
            np.testing.assert_allclose(states.best_params[name][i], state.best_params[name], rtol=1e-7, atol=1e-10)  # float64, reordered sums
        np.testing.assert_allclose(records["loss"][i], rec["loss"], rtol=1e-9)
        assert int(states.step[i]) == int(state.step)
    assert not np.allclose(states.best_params["J"][0], states.best_params["J"][1])


def test_host_loop_gives_the_same_result_as_the_pure_train():
    cfg, trainer, hyper = trainer_for("precision=float64", "regularizer.strength=0.1")
    key = jax.random.key(0)
    state, records = pure_train(trainer, key, hyper)
    spectrum = SpectrumProbe(trainer.model.recurrent)
    result = fit(Program(trainer), [key], [hyper], [[spectrum]])[0]
    valid = np.asarray(records["valid"])
    np.testing.assert_allclose(result.history["loss"], np.asarray(records["loss"])[valid], rtol=1e-12)
    np.testing.assert_allclose(result.state.best_params["J"], state.best_params["J"], rtol=1e-12)
    assert spectrum.arrays()["eig_steps"].tolist() == list(range(0, int(state.step) + 1, 20))


def test_activity_is_the_mean_squared_rate_over_the_loss_weighted_steps():
    cfg, trainer, hyper = trainer_for("precision=float64", "regularizer.activity=0.5")
    params, mask = trainer.model.init(jax.random.key(1), hyper["model"])
    _, states = trainer.model.apply(params, jnp.asarray(trainer.task.inputs))
    rates = np.tanh(np.asarray(states))  # (T, B, N)
    train_phase = np.asarray(trainer.task.loss_weights)[:, 0, 0] > 0  # the sine task weights 0 / 1 per step
    expected = np.mean(rates[train_phase] ** 2)
    task, activity = trainer.losses(params, mask)
    assert float(activity) == pytest.approx(expected, rel=1e-12)
    assert float(trainer.fit_loss(params, mask, hyper)) == pytest.approx(float(task) + 0.5 * expected, rel=1e-12)
    assert float(trainer.fit_loss(params, mask, {**hyper, "regularizer": {**hyper["regularizer"], "activity": 0.0}})) == float(task)


def test_activity_penalty_lowers_the_rates_and_counts_in_the_final_loss(tmp_path):
    free = run(compose_cfg("regularizer.strength=0"), tmp_path / "free")
    penalised = run(compose_cfg("regularizer.strength=0", "regularizer.activity=1"), tmp_path / "penalised")
    assert penalised["activity"] < 0.5 * free["activity"]
    assert free["activity_loss"] == 0.0 and free["final_loss"] == pytest.approx(free["task_loss"])
    assert penalised["activity_loss"] == pytest.approx(penalised["activity"])
    assert penalised["final_loss"] == pytest.approx(penalised["task_loss"] + penalised["activity"])


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    cfg = compose_cfg("regularizer.strength=0.05", "model.sparsity=0.3", "seed=4")
    first, second = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    first.pop("wall_s"), second.pop("wall_s")
    assert first == second
    np.testing.assert_array_equal(artifacts.read_params(tmp_path / "a")["J"], artifacts.read_params(tmp_path / "b")["J"])


@pytest.mark.parametrize("optimizer", ["adam_lbfgs", "sgd"])
def test_proximal_l1_gives_exact_zeros_where_the_penalty_gives_none(tmp_path, optimizer):
    strength = "regularizer.strength=10" if optimizer == "adam_lbfgs" else "regularizer.strength=30"
    extra = ["optimizer.lr=0.1"] if optimizer == "sgd" else []
    proximal = run(compose_cfg(strength, "regularizer.mode=proximal", f"optimizer={optimizer}", *extra), tmp_path / "p")
    penalty = run(compose_cfg(strength, "regularizer.mode=penalty", f"optimizer={optimizer}", *extra), tmp_path / "q")
    assert proximal["status"] == penalty["status"] == "completed"
    assert proximal["sparsity"] > 0.5, proximal
    assert penalty["sparsity"] < 0.02, penalty
    J = artifacts.read_params(tmp_path / "p")["J"]
    assert np.mean(J == 0) == pytest.approx(proximal["sparsity"])


@pytest.mark.parametrize("mode,optimizer", [("penalty", "adam_lbfgs"), ("proximal", "adam_lbfgs"), ("penalty", "sgd")])
def test_structurally_masked_entries_stay_exactly_zero(tmp_path, mode, optimizer):
    metrics = run(compose_cfg("model.sparsity=0.5", "regularizer.strength=0.01", f"regularizer.mode={mode}",
                              f"optimizer={optimizer}"), tmp_path)
    params = artifacts.read_params(tmp_path)
    mask = artifacts.read_params(tmp_path, "mask/")["J"]
    init = artifacts.read_params(tmp_path, "init/")["J"]
    assert 0.4 < 1 - mask.mean() < 0.6
    assert np.all(params["J"][mask == 0] == 0) and np.all(init[mask == 0] == 0)
    assert np.count_nonzero(params["J"][mask == 1]) > 0.9 * mask.sum()  # the rest did train
    assert not np.allclose(params["J"], init)
    assert metrics["sparsity"] >= 1 - mask.mean()


@pytest.mark.slow  # two trainings of their own (~8 s cold)
def test_lbfgs_stops_at_its_gradient_tolerance_and_adam_does_not():
    cfg, trainer, hyper = trainer_for("precision=float64", "optimizer.loss_threshold=0")
    key = jax.random.key(2)
    full = fit(Program(trainer), [key], [hyper], [[]])[0].history
    lbfgs = full[full["stage"] == "lbfgs"]
    tol = float(lbfgs["grad_norm"].iloc[:8].min())  # reached within the first 8 L-BFGS steps
    stop = int(np.flatnonzero(lbfgs["grad_norm"].to_numpy() <= tol)[0])
    cut = fit(Program(trainer), [key], [{**hyper, "optimizer": {**hyper["optimizer"], "lbfgs_tol": tol}}], [[]])[0].history
    assert (cut["stage"] == "adam").sum() == (full["stage"] == "adam").sum()  # the tolerance is L-BFGS's only
    assert (cut["stage"] == "lbfgs").sum() == stop + 1 < len(lbfgs)  # the step at ‖∇f‖ <= tol is the last
    np.testing.assert_allclose(cut["loss"], full["loss"].iloc[:len(cut)], rtol=1e-12)


def test_a_diverging_run_is_recorded_not_raised(tmp_path):
    metrics = run(compose_cfg("optimizer=sgd", "optimizer.lr=1e3"), tmp_path)
    assert metrics["status"] == "diverged"
    assert metrics["diverged_step"] is not None and metrics["steps"] < 60
    assert artifacts.is_done(tmp_path)
    assert artifacts.read_metrics(tmp_path)["status"] == "diverged"


def test_second_stage_is_skipped_below_the_loss_threshold(tmp_path):
    metrics = run(compose_cfg("optimizer.loss_threshold=10"), tmp_path)
    history = artifacts.read_history(tmp_path)
    assert metrics["stages"] == "adam" and set(history["stage"]) == {"adam"} and metrics["steps"] == 60
    metrics = run(compose_cfg("optimizer.loss_threshold=0"), tmp_path / "b")
    assert metrics["stages"] == "adam,lbfgs" and metrics["steps"] == 80


def test_best_loss_parameters_are_kept(tmp_path):
    metrics = run(compose_cfg("optimizer=adam", "optimizer.lr=0.3"), tmp_path)  # a jumpy run
    history = artifacts.read_history(tmp_path)
    assert metrics["final_loss"] == pytest.approx(history["loss"].min(), rel=1e-5)


def test_analysis_none_writes_metrics_but_no_spectrum(tmp_path):
    metrics = run(compose_cfg("analysis=none", "analysis.eig_every=20"), tmp_path)
    assert metrics["status"] == "completed" and "spectral_radius" in metrics
    assert not (tmp_path / artifacts.ANALYSIS).exists() and not (tmp_path / "figures").exists()
    assert artifacts.is_done(tmp_path)


def test_run_records_spectrum_every_eig_every_steps(tmp_path):
    run(compose_cfg("analysis.eig_every=20"), tmp_path)
    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    assert arrays["eig_steps"].tolist() == [0, 20, 40, 60, 80]
    assert arrays["eig_values"].shape == (5, 16) and np.iscomplexobj(arrays["eig_values"])
    J = artifacts.read_params(tmp_path)["J"]
    np.testing.assert_allclose(np.sort_complex(arrays["final_eigenvalues"]), np.sort_complex(np.linalg.eigvals(J)),
                               rtol=1e-4, atol=1e-5)


def test_an_unexpected_error_is_recorded_as_failed_and_raised(tmp_path, monkeypatch):
    import rnn_sparsity.experiment as experiment

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(experiment, "evaluate", broken)
    with pytest.raises(RuntimeError, match="boom"):
        run(compose_cfg(), tmp_path)
    assert artifacts.read_metrics(tmp_path) == {"status": "failed", "error": "RuntimeError: boom"}
    assert not artifacts.is_done(tmp_path)
