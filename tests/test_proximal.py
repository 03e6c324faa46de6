"""The FISTA stage's solver (rnn_sparsity.proximal) against jaxopt's and against the lasso's optimality
conditions, and under vmap against the same problems solved one by one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_sparsity.proximal import fista



@pytest.fixture(autouse=True)
def float64():
    """Every test here in float64, whatever precision the tests before it in this process left on
    (a run sets it: experiment.set_precision); restored after."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


A = np.random.default_rng(0).normal(size=(30, 10))
B = np.random.default_rng(1).normal(size=30)


def smooth(p):
    return 0.5 * jnp.sum((jnp.asarray(A) @ p["w"] - jnp.asarray(B)) ** 2) / 3


def soft_threshold(p, lam, eta):
    return {"w": jnp.sign(p["w"]) * jnp.maximum(jnp.abs(p["w"]) - lam * eta, 0.0)}


def solve(lam, steps, max_backtracking=15):
    init, update = fista(smooth, soft_threshold, max_backtracking)
    params = {"w": jnp.zeros(10)}
    state = init(params, lam)

    def step(carry, _):
        return update(*carry, lam), None

    return jax.lax.scan(step, (params, state), None, length=steps)[0]


@pytest.mark.slow  # jaxopt's solver compiled beside ours (~9 s cold)
def test_iterates_equal_jaxopts_accelerated_proximal_gradient():
    jaxopt = pytest.importorskip("jaxopt")
    reference = jaxopt.ProximalGradient(fun=smooth, prox=soft_threshold, acceleration=True, maxls=15,
                                        implicit_diff=False)
    init, update = fista(smooth, soft_threshold)
    ours = theirs = {"w": jnp.zeros(10)}
    state, their_state = init(ours, 0.5), reference.init_state(theirs, hyperparams_prox=0.5)
    for _ in range(40):
        ours, state = update(ours, state, 0.5)
        theirs, their_state = reference.update(theirs, their_state, hyperparams_prox=0.5)
        np.testing.assert_allclose(ours["w"], theirs["w"], rtol=0, atol=1e-12)
        assert float(state.stepsize) == float(their_state.stepsize)


@pytest.mark.parametrize("lam", [0.05, 0.5, 2.0])
def test_converges_to_the_lasso_solution(lam):
    """KKT: ∇f_j = -λ sign(w_j) where w_j != 0 and |∇f_j| <= λ where w_j = 0 (exact zeros)."""
    params, _ = jax.jit(solve, static_argnums=1)(lam, 3000)
    w, grad = np.asarray(params["w"]), np.asarray(jax.grad(smooth)(params)["w"])
    zero = w == 0
    np.testing.assert_allclose(grad[~zero], -lam * np.sign(w[~zero]), atol=1e-6)
    assert np.all(np.abs(grad[zero]) <= lam + 1e-9)
    if lam == 2.0:
        assert zero.sum() >= 5  # a strong penalty leaves most weights exactly zero


def test_members_under_vmap_equal_the_members_solved_alone():
    """One member backtracks more than the other (their λ differ): the batched line search must give
    each its own step sizes."""
    lams = jnp.array([0.05, 2.0])
    init, update = fista(smooth, soft_threshold)

    def run(lam):
        params = {"w": jnp.zeros(10)}
        state = init(params, lam)
        stepsizes = []
        for _ in range(30):
            params, state = update(params, state, lam)
            stepsizes.append(state.stepsize)
        return params["w"], jnp.stack(stepsizes)

    batched, steps = jax.jit(jax.vmap(run))(lams)
    assert not np.array_equal(steps[0, :15], steps[1, :15])  # the members did backtrack differently
    for i, lam in enumerate(lams):
        alone, alone_steps = jax.jit(run)(lam)
        np.testing.assert_allclose(batched[i], alone, rtol=0, atol=1e-7)  # roundoff of batched matmuls
        # the same backtracking while the steps are large (near convergence both sides of the sufficient
        # decrease test fall to roundoff, where a batched and a single matmul may decide differently)
        np.testing.assert_array_equal(steps[i, :15], alone_steps[:15])


def test_without_backtracking_the_first_step_is_taken_untested():
    params, state = solve(0.5, 1, max_backtracking=0)
    grad = jax.grad(smooth)({"w": jnp.zeros(10)})["w"]  # η = 1 from w = 0
    np.testing.assert_allclose(params["w"], soft_threshold({"w": -grad}, 0.5, 1.0)["w"], atol=1e-15)
    assert float(state.stepsize) == 2.0
