"""DRR penalty: its gradient against the written-out formula, the per-layer rescaling, a hand-computed value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_sparsity.regularizers import drr


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def mlp_params(sizes=(2, 25, 25, 1), seed=0):
    """Entries drawn away from 0 (|w| ≥ 0.01), where the penalty is differentiable."""
    rng = np.random.default_rng(seed)
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        for name, shape in ((f"W{l}", (n_out, n_in)), (f"b{l}", (n_out,))):
            params[name] = jnp.asarray(rng.choice([-1, 1], shape) * rng.uniform(0.01, 0.5, shape))
    return params


@pytest.mark.parametrize("alpha, rho, beta", [(0.3, 0.0, 10.0), (0.1, 0.02, 10.0), (1.0, 0.5, 3.0)])
def test_drr_gradient_equals_the_written_out_formula(alpha, rho, beta):
    """∂R/∂w = c_l (2 ρ w + α β sign(w) exp(-β|w|)): what training's autodiff must give."""
    params = mlp_params()
    auto = jax.jit(jax.grad(drr.drr_penalty))(params, alpha, rho, beta)  # jit: one compile, not one per op
    for c, names in zip(drr.layer_scales(params), drr.mlp_layers(params)):
        for name in names:
            w = params[name]
            written = c * (2.0 * rho * w + alpha * beta * jnp.sign(w) * jnp.exp(-beta * jnp.abs(w)))
            np.testing.assert_allclose(auto[name], written, rtol=1e-12, atol=1e-15)


def test_layers_group_weights_with_biases_and_rescale_to_the_stated_factors():
    params = mlp_params()
    assert drr.mlp_layers(params) == (("W1", "b1"), ("W2", "b2"), ("W3", "b3"))
    sizes = np.array([2 * 25 + 25, 25 * 25 + 25, 25 + 1])  # weights and biases of each layer
    scales = np.array(drr.layer_scales(params))
    np.testing.assert_allclose(scales, sizes.sum() / 3 / sizes, rtol=1e-15)
    assert np.sum(scales * sizes) == pytest.approx(sizes.sum())  # α_l = α c_l moves weight between layers only
    # so a penalty on every entry the same is the unscaled one: Σ_l c_l P_l f(w) = P f(w)
    flat = {k: jnp.full_like(v, 0.2) for k, v in params.items()}
    expected = sizes.sum() * (0.1 * 0.04 + 0.3 * (1 - np.exp(-2.0)))
    assert jax.jit(drr.drr_penalty)(flat, 0.3, 0.1) == pytest.approx(expected, rel=1e-12)


def test_explicit_layer_names_and_unpenalised_parameters():
    params = mlp_params()
    only_weights = ("W1", "W2", "W3")  # one weight matrix per layer, biases left out
    grads = jax.jit(jax.grad(drr.drr_penalty), static_argnames="layer_names")(params, 0.3, layer_names=only_weights)
    assert all(np.all(grads[b] == 0) for b in ("b1", "b2", "b3"))
    c = (50 + 625 + 25) / 3 / 625
    np.testing.assert_allclose(grads["W2"], c * 0.3 * 10 * np.sign(params["W2"]) * np.exp(-10 * np.abs(params["W2"])))
    with pytest.raises(ValueError, match="layer_names"):
        drr.drr_penalty(params, 0.3, layer_names=("W4",))


def test_single_layer_penalty_matches_the_hand_value():
    params = {"W1": jnp.array([[0.1, -0.2]]), "b1": jnp.array([0.3])}  # one layer: c = 1
    # ρ Σw² = 0.1 (0.01 + 0.04 + 0.09) = 0.014
    # α Σ(1 - e^{-10|w|}) = 0.5 ((1 - e^{-1}) + (1 - e^{-2}) + (1 - e^{-3}))
    #                     = 0.5 (0.6321205588 + 0.8646647168 + 0.9502129316) = 1.2234991036
    assert drr.drr_penalty(params, alpha=0.5, rho=0.1) == pytest.approx(1.2374991036, abs=1e-9)

