"""Low-rank decay study: eig gradients, losses against Lyapunov solutions and quadrature, decay curves (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.integrate import simpson
from scipy.linalg import expm, solve_continuous_lyapunov

from types import SimpleNamespace

from helpers import compose_cfg

from rnn_sparsity.analysis import decay
from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.models.lowrank_linear import connectivity, lowrank_init
from rnn_sparsity.tasks.fast_decay import make_task as fast_decay_task


def total_loss(params, fixed, tau, alpha=1e5, beta=0.01, cap=True):
    """The fast_decay task's loss L1 + α L2 + β L3 of the lowrank_linear model's outputs [J | w]."""
    outputs = jnp.concatenate([connectivity(params, fixed), fixed["w"][:, None]], axis=1)[None]
    return fast_decay_task(SimpleNamespace(alpha=alpha, beta=beta, cap=cap), tau).loss(outputs)


def decay_time(J, tau, fraction, t_max):
    return decay.decay_times(J, tau, fraction, t_max)["expected"]


def slowest_mode_time(J, tau, fraction):
    return decay.decay_times(J, tau, fraction, 1e9)["mode"]


def worst_case_decay_time(J, tau, fraction, t_max):
    return decay.decay_times(J, tau, fraction, t_max)["worst"]


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


N_UNITS = 10  # one size (rank 2) throughout: each new shape costs compilations


def network(j0_scale, seed=0):
    """lowrank_init(N = 10, rank 2) with J0 scaled by j0_scale (0.5: stable, ≳ 1.5: unstable), float64."""
    params, fixed = lowrank_init(jax.random.PRNGKey(seed), N_UNITS, 0.2, jnp.float64)
    return params, {**fixed, "J0": j0_scale * fixed["J0"]}


def drift(J, tau):
    """A = (J - I)/τ in NumPy."""
    J = np.asarray(J)
    return (J - np.eye(len(J))) / tau


def central_differences(f, x, h=1e-6):
    """∇f(x) by (f(x + h e_k) - f(x - h e_k)) / 2h for each coordinate k of a flat x."""
    f = jax.jit(f)
    steps = h * np.eye(x.size)
    return np.array([(f(x + e) - f(x - e)) / (2 * h) for e in steps])


def relative_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


def propagated(A, t_max, n_steps, start):
    """e^{At} start at t = 0, dt, ..., t_max by repeated multiplication with expm(A dt) (start: vector or matrix)."""
    step = expm(A * t_max / n_steps)
    out = [np.asarray(start, dtype=float)]
    for _ in range(n_steps):
        out.append(step @ out[-1])
    return np.linspace(0, t_max, n_steps + 1), np.stack(out)


# ----------------------------------------------------------------------------------- 1. eig gradients
@pytest.mark.parametrize("j0_scale, seed, cap", [(0.5, 3, True), (1.6, 4, True), (1.6, 4, False)])
def test_total_loss_gradient_matches_central_differences(j0_scale, seed, cap):
    params, fixed = network(j0_scale, seed)
    assert params["U"].shape == (N_UNITS, 2)
    tau = 0.8
    unstable = float(decay.decay_losses(connectivity(params, fixed), fixed["w"], tau)["stability"]) > 0
    assert unstable == (j0_scale > 1)  # the unstable case exercises the α L2 term too
    flat, unravel = ravel_pytree(params)
    loss = lambda x: total_loss(unravel(x), fixed, tau, 1e5, 0.01, cap)  # noqa: E731 (cap=False: the source's terms)
    exact = jax.jit(jax.grad(loss))(flat)
    assert relative_error(exact, central_differences(loss, flat)) < 1e-5


def test_eigenvalue_only_loss_gradient_matches_finite_differences_and_jax():
    J = np.random.default_rng(3).normal(size=(8, 8)) / np.sqrt(8)
    loss = lambda a: jnp.sum(jnp.real(decay.eig(a.reshape(8, 8))[0]) ** 2)  # noqa: E731
    reference = lambda a: jnp.sum(jnp.real(jnp.linalg.eigvals(a.reshape(8, 8))) ** 2)  # noqa: E731
    exact = jax.grad(loss)(J.ravel())
    assert relative_error(exact, central_differences(loss, J.ravel())) < 1e-7
    np.testing.assert_allclose(exact, jax.grad(reference)(J.ravel()), rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # 11 s cold; the other gradient checks of the decay loss stay in the default suite
def test_eigenvector_gradient_keeps_the_unit_norm_normalisation():
    """Σ|R_ij|⁴ is phase-invariant but depends on the scale of each eigenvector: only the unit-norm term in
    the JVP makes its gradient right (without it the error is of order one)."""
    J = np.random.default_rng(4).normal(size=(7, 7)) / np.sqrt(7)
    loss = lambda a: jnp.sum(jnp.abs(decay.eig(a.reshape(7, 7))[1]) ** 4)  # noqa: E731
    np.testing.assert_allclose(np.linalg.norm(np.asarray(decay.eig(jnp.asarray(J))[1]), axis=0), 1.0, rtol=1e-12)
    exact = jax.grad(loss)(J.ravel())
    assert relative_error(exact, central_differences(loss, J.ravel())) < 1e-6
    opt_in = lambda a: jnp.sum(jnp.abs(jax.lax.linalg.eig(  # noqa: E731
        a.reshape(7, 7), compute_left_eigenvectors=False, enable_eigvec_derivs=True)[1]) ** 4)
    np.testing.assert_allclose(exact, jax.grad(opt_in)(J.ravel()), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ 2.-4. the three losses
@pytest.mark.parametrize("tau", [0.7, 2.0])
def test_decay_loss_is_the_lyapunov_trace_and_the_integrated_squared_norm(tau):
    params, fixed = network(0.5)
    J = connectivity(params, fixed)
    A = drift(J, tau)
    assert np.max(np.linalg.eigvals(A).real) < 0
    P = solve_continuous_lyapunov(A, -np.eye(N_UNITS))  # A P + P Aᵀ = -I
    L1 = float(decay.decay_losses(J, fixed["w"], tau)["decay"])
    np.testing.assert_allclose(L1, np.trace(P) / (N_UNITS * tau), rtol=1e-8)
    # meaning: (1/Nτ) ∫ E‖x(t)‖² dt over x0 ~ N(0, I) = (1/Nτ) ∫ ‖e^{At}‖_F² dt
    t, flows = propagated(A, 60 * tau, 3000, np.eye(N_UNITS))
    np.testing.assert_allclose(L1, simpson(np.sum(flows ** 2, axis=(1, 2)), x=t) / (N_UNITS * tau), rtol=1e-6)


def test_stability_loss_is_zero_when_stable_and_the_squared_positive_real_parts_otherwise():
    tau = 0.5
    params, fixed = network(0.5)
    J = connectivity(params, fixed)
    assert float(decay.max_real_eigenvalue(J)) < 1
    assert float(decay.decay_losses(J, fixed["w"], tau)["stability"]) == 0.0
    params, fixed = network(1.8)
    J = connectivity(params, fixed)
    lam = np.linalg.eigvals(np.asarray(J))
    np.testing.assert_allclose(float(decay.max_real_eigenvalue(J)), lam.real.max(), rtol=1e-12)
    gamma = np.linalg.eigvals(drift(J, tau))
    expected = np.sum(np.maximum(gamma.real, 0) ** 2)
    assert expected > 0 and np.any(gamma.real < 0)  # some modes are clipped by max(·, 0)
    np.testing.assert_allclose(float(decay.decay_losses(J, fixed["w"], tau)["stability"]), expected, rtol=1e-10)


@pytest.mark.parametrize("tau", [0.7, 2.0])
def test_smoothness_loss_is_tau_times_the_integrated_squared_readout_velocity(tau):
    params, fixed = network(0.5, seed=1)
    J = connectivity(params, fixed)
    w = np.asarray(fixed["w"])
    A = drift(J, tau)
    P = solve_continuous_lyapunov(A, -np.eye(N_UNITS))
    L3 = float(decay.decay_losses(J, fixed["w"], tau)["smoothness"])
    np.testing.assert_allclose(L3, tau * w @ A @ P @ A.T @ w, rtol=1e-8)
    # meaning: τ ∫ E(wᵀ ẋ)² dt = τ ∫ ‖e^{Aᵀt} Aᵀ w‖² dt, ẋ = A x, x0 ~ N(0, I)
    t, velocity = propagated(A.T, 60 * tau, 3000, A.T @ w)
    np.testing.assert_allclose(L3, tau * simpson(np.sum(velocity ** 2, axis=1), x=t), rtol=1e-6)


# ------------------------------------------------------------------------------------- 5. decay curves
def test_expected_norm_starts_at_one_and_matches_the_matrix_exponential():
    tau = 1.5
    params, fixed = network(1.2, seed=2)  # non-normal, possibly transiently amplifying
    J = connectivity(params, fixed)
    times = np.array([0.0, 0.3, 1.0, 4.0, 10.0])
    expected = [np.linalg.norm(expm(drift(J, tau) * t)) / np.sqrt(N_UNITS) for t in times]  # ‖e^{At}‖_F / √N
    curve = np.asarray(decay.expected_norm(J, tau, times))
    assert curve[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(curve, expected, rtol=1e-9)


@pytest.mark.parametrize("c, tau", [(0.3, 2.0), (-0.5, 0.4)])
@pytest.mark.parametrize("fraction", [0.05, 0.01])
def test_decay_time_of_a_scalar_network_is_analytic(c, tau, fraction):
    t = decay_time(c * jnp.eye(N_UNITS), tau, fraction, t_max=40.0)
    np.testing.assert_allclose(t, np.log(1 / fraction) * tau / (1 - c), rtol=1e-10)


def test_decay_time_is_the_first_crossing_and_nan_when_never_reached():
    tau = 1.0
    params, fixed = network(0.9, seed=5)
    J = connectivity(params, fixed)
    t5, t1 = decay_time(J, tau, 0.05, 200.0), decay_time(J, tau, 0.01, 200.0)
    assert 0 < t5 < t1
    np.testing.assert_allclose(np.asarray(decay.expected_norm(J, tau, [t5, t1])), [0.05, 0.01], rtol=1e-9)
    assert np.all(np.asarray(decay.expected_norm(J, tau, np.linspace(0, t5, 500)[:-1])) > 0.05)
    assert np.isnan(decay_time(J, tau, 0.01, t_max=0.5 * t1))
    assert np.isnan(decay_time(1.1 * jnp.eye(3), tau, 0.05, 100.0))  # growing: never decays


@pytest.mark.parametrize("fraction", [0.05, 0.01])
def test_the_three_decay_times_agree_for_a_scalar_network(fraction):
    c, tau = 0.3, 2.0
    J = c * np.eye(N_UNITS)
    analytic = np.log(1 / fraction) * tau / (1 - c)
    assert slowest_mode_time(J, tau, fraction) == pytest.approx(analytic, rel=1e-10)
    assert worst_case_decay_time(J, tau, fraction, 40.0) == pytest.approx(analytic, rel=1e-9)


def test_worst_case_decay_time_is_the_slowest_mode_for_a_normal_network():
    """J = Q D Qᵀ with Q orthogonal and D rotation blocks: ‖e^{At}‖₂ = e^{max Re γ t} exactly."""
    tau = 0.5
    blocks = [np.array([[a, -b], [b, a]]) for a, b in ((0.6, 0.3), (0.2, 1.0), (-0.4, 0.5))]
    D = np.zeros((6, 6))
    for k, block in enumerate(blocks):
        D[2 * k:2 * k + 2, 2 * k:2 * k + 2] = block
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
    J = Q @ D @ Q.T
    expected = np.log(100) * tau / (1 - 0.6)
    assert slowest_mode_time(J, tau, 0.01) == pytest.approx(expected, rel=1e-10)
    assert worst_case_decay_time(J, tau, 0.01, 100.0) == pytest.approx(expected, rel=1e-8)


@pytest.mark.slow  # a long matrix-exponential scan to compile (~6-11 s cold)
def test_worst_case_decay_time_is_the_first_crossing_of_the_operator_norm():
    """A non-normal 2×2 (transient amplification): the worst start decays later than the typical one and
    than the slowest mode, and the time is where ‖expm(At)‖₂ first drops below the fraction."""
    tau = 1.0
    J = np.array([[0.5, 3.0], [0.0, 0.2]])
    t_worst = worst_case_decay_time(J, tau, 0.01, 100.0)
    assert t_worst > slowest_mode_time(J, tau, 0.01) > 0
    assert t_worst > decay_time(J, tau, 0.01, 100.0) > 0
    A = (J - np.eye(2)) / tau
    grid = np.linspace(0.0, t_worst, 2001)
    norms = np.array([np.linalg.norm(expm(A * t), 2) for t in grid])
    assert np.all(norms[:-1] > 0.01) and norms[-1] == pytest.approx(0.01, rel=1e-8)
    assert np.isnan(worst_case_decay_time(J, tau, 0.01, 0.9 * t_worst))
    assert np.isnan(worst_case_decay_time(1.1 * np.eye(2), tau, 0.01, 100.0))


# ------------------------------------------------------------------------------------ 6. the model
def test_connectivity_uses_unit_columns_of_U_and_unit_rows_of_V():
    params, fixed = network(1.0)
    U, V = np.asarray(params["U"]), np.asarray(params["V"])
    assert U.shape == (N_UNITS, 2) and V.shape == (2, N_UNITS) and fixed["w"].shape == (N_UNITS,)
    assert U.dtype == np.float64
    J = np.asarray(connectivity(params, fixed))
    U_hat, V_hat = U / np.linalg.norm(U, axis=0), V / np.linalg.norm(V, axis=1)[:, None]
    np.testing.assert_allclose(J, np.asarray(fixed["J0"]) + U_hat @ V_hat, rtol=1e-12)
    assert np.abs(U_hat @ V_hat - U @ V).max() > 1e-3  # the renormalisation changed something
    scaled = {"U": params["U"] * jnp.array([0.1, 7.0]), "V": params["V"] * jnp.array([[5.0], [0.2]])}
    np.testing.assert_allclose(np.asarray(connectivity(scaled, fixed)), J, rtol=1e-12)
    with pytest.raises(ConfigError, match="rank_fraction"):  # rank round(10 · 0.01) = 0
        validate(compose_cfg("model=lowrank_linear", "task=fast_decay", "regularizer=none", "model.n_units=10",
                             "model.rank_fraction=0.01", tiny=False))
