"""Model, task, regularizer and frequency analysis against analytic cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import build_model, build_regularizer, build_task, compose_cfg

from rnn_sparsity.analysis.spectral import dominant_frequency
from rnn_sparsity.maths import soft_threshold


def test_ctrnn_matches_a_numpy_euler_loop():
    cfg = compose_cfg("model.n_units=6", "model.dt=0.1", "model.tau=0.5")
    model = build_model(cfg, 2, 1, jnp.float32)
    params, _ = model.init(jax.random.key(0), {"sparsity": 0.0, "gain": 1.5})
    params = {k: v + 0.1 for k, v in params.items()}  # nonzero biases
    u = np.random.default_rng(0).normal(size=(30, 3, 2)).astype(np.float32)
    outputs, states = model.apply(params, u)

    p = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    x, alpha = np.zeros((3, 6)), 0.1 / 0.5
    for t in range(30):
        x = x + alpha * (-x + np.tanh(x) @ p["J"].T + u[t] @ p["B"].T + p["b_x"])
        np.testing.assert_allclose(states[t], x, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(outputs[t], np.tanh(x) @ p["w"].T + p["b_z"], rtol=1e-4, atol=1e-5)


def test_ctrnn_init_mask_and_scale():
    cfg = compose_cfg("model.n_units=400")
    model = build_model(cfg, 1, 1, jnp.float32)
    params, mask = model.init(jax.random.key(1), {"sparsity": 0.75, "gain": 2.0})
    J, m = np.asarray(params["J"]), np.asarray(mask["J"])
    assert np.all(J[m == 0] == 0)
    assert abs(1 - m.mean() - 0.75) < 0.01
    # rows keep variance gain²/N whatever s: sum of squares per row ≈ gain²
    assert abs(np.mean(np.sum(J ** 2, axis=1)) - 4.0) < 0.1
    assert all(np.all(np.asarray(mask[k]) == 1) for k in ("B", "w", "b_x", "b_z"))


def test_sine_task_data_and_phases():
    cfg = compose_cfg("model.dt=0.5", "task.n_freqs=4", "task.drive_time=2", "task.train_time=3")
    task = build_task(cfg)
    assert task.inputs.shape == (10, 4, 1) and task.targets.shape == (10, 4, 1)
    omegas, levels = np.linspace(0.1, 0.6, 4), np.arange(4) / 4 + 0.25
    t = np.arange(10) * 0.5
    np.testing.assert_allclose(task.inputs[:4, :, 0], np.sin(omegas * t[:4, None]) + levels)
    np.testing.assert_allclose(task.inputs[4:, :, 0], np.broadcast_to(levels, (6, 4)))
    np.testing.assert_allclose(task.targets[4:, :, 0], np.sin(omegas * t[4:, None]))
    assert task.loss_weights[:4].sum() == 0 and np.all(task.loss_weights[4:] == 1)


@pytest.mark.parametrize("omega,phase,offset", [(0.1, 0.3, 0.0), (0.37, 2.0, 0.5), (0.6, -1.0, -0.2), (2.5, 0.0, 0.1)])
def test_dominant_frequency_of_pure_sinusoids(omega, phase, offset):
    t = np.arange(3200) * 0.02
    estimate = dominant_frequency(offset + 0.7 * np.sin(omega * t + phase), 0.02, omega_max=6.0)
    assert abs(estimate - omega) / omega < 1e-4


def test_freq_error_is_zero_for_the_targets_and_large_for_a_wrong_frequency():
    cfg = compose_cfg("model.dt=0.1", "task.n_freqs=5")
    task = build_task(cfg)
    assert task.metrics(task.targets)["freq_error"] < 1e-4
    t = np.arange(task.targets.shape[0])[:, None, None] * 0.1
    assert task.metrics(np.sin(1.5 * np.linspace(0.1, 0.6, 5)[None, :, None] * t))["freq_error"] == pytest.approx(0.5, rel=1e-3)


def test_soft_threshold():
    x = jnp.array([-3.0, -0.5, 0.0, 0.2, 2.0])
    np.testing.assert_allclose(soft_threshold(x, 1.0), [-2.0, 0.0, 0.0, 0.0, 1.0])


def _reg(name, reduction="mean", targets=("J",)):
    cfg = compose_cfg(f"regularizer={name}", f"regularizer.reduction={reduction}",
                      f"regularizer.targets=[{','.join(targets)}]")
    return build_regularizer(cfg, {"J": (2, 3), "w": (1, 4)})


def test_penalty_values():
    params = {"J": jnp.arange(6.0).reshape(2, 3) - 2.0, "w": jnp.ones((1, 4))}  # J: -2..3
    hyper = {"strength": 0.5, "l1_ratio": 0.25}
    assert float(_reg("l1", "sum").penalty(params, hyper)) == pytest.approx(0.5 * 9)
    assert float(_reg("l1", "mean").penalty(params, hyper)) == pytest.approx(0.5 * 9 / 6)
    assert float(_reg("l2", "sum").penalty(params, hyper)) == pytest.approx(0.5 * 19)
    assert float(_reg("elastic_net", "sum").penalty(params, hyper)) == pytest.approx(0.5 * (0.25 * 9 + 0.75 * 19))
    assert float(_reg("l1", "mean", ("J", "w")).penalty(params, hyper)) == pytest.approx(0.5 * 13 / 10)
    assert float(_reg("none").penalty(params, hyper)) == 0.0


@pytest.mark.parametrize("name", ["l1", "l2", "elastic_net"])
def test_prox_is_the_minimiser_of_the_proximal_objective(name):
    """prox_{ηR}(z) = argmin_θ ½ Σ (θ - z)²/η + R(θ): compare with a brute-force grid per entry."""
    reg = _reg(name, "sum")
    hyper = {"strength": 0.3, "l1_ratio": 0.4}
    z = {"J": jnp.array([[-1.0, -0.2, 0.05], [0.1, 0.5, 2.0]]), "w": jnp.zeros((1, 4))}
    eta = 0.7
    out = np.asarray(reg.prox(z, hyper, eta)["J"]).ravel()
    grid = np.linspace(-3, 3, 600001)
    r = {"l1": 1.0, "l2": 0.0}.get(name, 0.4)
    for zi, oi in zip(np.asarray(z["J"]).ravel(), out):
        objective = 0.5 * (grid - zi) ** 2 / eta + 0.3 * (r * np.abs(grid) + (1 - r) * grid ** 2)
        assert oi == pytest.approx(grid[np.argmin(objective)], abs=2e-5)
    assert np.asarray(reg.prox(z, hyper, eta)["w"]).tolist() == np.asarray(z["w"]).tolist()


def test_l1_prox_sets_exact_zeros_and_accepts_per_entry_steps():
    reg = _reg("l1", "sum")
    z = {"J": jnp.array([[0.3, -0.3, 0.3], [1.0, -1.0, 0.05]]), "w": jnp.ones((1, 4))}
    eta = {"J": jnp.array([[1.0, 1.0, 0.1], [0.1, 0.1, 1.0]]), "w": jnp.ones((1, 4))}
    out = np.asarray(reg.prox(z, {"strength": 0.5, "l1_ratio": 1.0}, eta)["J"])
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.25], [0.95, -0.95, 0.0]], atol=1e-7)
    assert np.sum(out == 0) == 3


def test_unknown_regularizer_target_is_a_config_error():
    from rnn_sparsity.config import ConfigError

    with pytest.raises(ConfigError, match="regularizer.targets"):
        _reg("l1", "mean", ("K",))


def test_hand_written_reverse_pass_equals_autodiff_of_the_scan():
    from rnn_sparsity.models.ctrnn import _forward, euler_states

    jax.config.update("jax_enable_x64", True)
    try:
        k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
        J = 1.5 * jax.random.normal(k1, (7, 7), jnp.float64) / jnp.sqrt(7)
        drive = jax.random.normal(k2, (25, 3, 7), jnp.float64)
        x0 = jax.random.normal(k3, (3, 7), jnp.float64)
        weights = jax.random.normal(k4, (25, 3, 7), jnp.float64)

        def loss(f):
            return lambda J, d, x0: jnp.sum(weights * jnp.tanh(f(0.3, J, d, x0)) ** 2)

        ours = jax.grad(loss(euler_states), argnums=(0, 1, 2))(J, drive, x0)
        reference = jax.grad(loss(_forward), argnums=(0, 1, 2))(J, drive, x0)
        for a, b in zip(ours, reference):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(euler_states(0.3, J, drive, x0), _forward(0.3, J, drive, x0))
    finally:
        jax.config.update("jax_enable_x64", False)


FLAX_STUDENT = ["model=flax", "model.module._target_=toy_plugin.TinyMLP", "task=teacher_student", "task.n_train=64"]


def flax_trainer(*overrides: str):
    """The trainer of a Flax module (toy_plugin.TinyMLP: Dense_0, tanh, Dense_1) on the teacher-student task."""
    from rnn_sparsity.config import validate
    from rnn_sparsity.train import make_trainer

    return make_trainer(validate(compose_cfg(*FLAX_STUDENT, *overrides, tiny=False)), jnp.float32)


def test_a_flax_model_with_the_default_regularizer_penalises_exactly_its_kernels():
    """regularizer=l1 as composed (targets null): the model's weights, here the two kernels and not the biases;
    the penalty is λ Σ |θ| over the kernels' entries, computed by hand."""
    assert compose_cfg(*FLAX_STUDENT, tiny=False).regularizer.targets is None
    trainer = flax_trainer("regularizer.reduction=sum")
    assert trainer.regularizer.targets == ("Dense_0/kernel", "Dense_1/kernel")
    params, _ = trainer.model.init(jax.random.key(0), {})
    params = {k: v + 0.25 for k, v in params.items()}  # nonzero biases: a penalty on them would show
    by_hand = sum(np.abs(np.asarray(params[k], np.float64)).sum() for k in ("Dense_0/kernel", "Dense_1/kernel"))
    penalty = trainer.regularizer.penalty(params, {"strength": 0.3})
    assert float(penalty) == pytest.approx(0.3 * by_hand, rel=1e-6)
    assert {"Dense_0/bias", "Dense_1/bias"} <= set(params)


def test_explicit_targets_of_a_flax_model_are_kept_and_an_unknown_one_is_refused_listing_its_parameters():
    from rnn_sparsity.config import ConfigError

    assert flax_trainer("regularizer.targets=[Dense_1/bias]").regularizer.targets == ("Dense_1/bias",)
    with pytest.raises(ConfigError) as err:
        flax_trainer("regularizer.targets=[kernel]")
    assert err.value.key == "regularizer.targets"
    assert all(name in err.value.allowed for name in ("Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel"))


@pytest.mark.parametrize("overrides,targets", [
    (["model.n_units=8", "task.n_freqs=2"], ("J",)),  # the CTRNN: J, as the YAML's [J] gave before
    (["model=mlp", "model.sizes=[12,6,5,1]", "model.bias=true", "task=teacher_student", "task.n_train=64"],
     ("W1", "W2", "W3")),
    (["model=cnn", "task=teacher_student", "task.n_train=64"], ("W1", "W2", "W3")),
    (["model=lowrank_linear", "model.n_units=6", "task=fast_decay"], ("U", "V")),
    (["regularizer=none", "model=mlp", "model.sizes=[12,6,1]", "model.bias=true", "task=teacher_student",
      "task.n_train=64"], ()),  # none measures sparsity over every parameter, as before
])
def test_the_default_targets_are_the_models_weights(overrides, targets):
    from rnn_sparsity.config import validate
    from rnn_sparsity.train import make_trainer

    trainer = make_trainer(validate(compose_cfg(*overrides, tiny=False)), jnp.float32)
    assert trainer.regularizer.targets == targets
