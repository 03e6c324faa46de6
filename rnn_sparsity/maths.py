"""Maths shared by models, tasks, regularizers and analysis: the ground floor (imports only JAX and NumPy).

Rate networks. A continuous-time rate network with connectivity J, constant drive c and rate function
tanh has the vector field (τ ẋ = F(x))

    F(x) = -x + J tanh(x) + c,        DF(x) = -I + J diag(1 - tanh² x),

written here once: the CTRNN's Euler step is x ← x + (dt/τ) F(x), and the fixed-point finder solves
F(x) = 0 with the same F and DF. States are rows (x of shape (N,) or (B, N)), so J tanh(x) is
tanh(x) Jᵀ; functions take Jᵀ where the caller keeps it transposed (the Euler scan, once per run).

Losses: the weighted mean squared error every regression task uses, softmax cross-entropy and accuracy
for classification. Activations: one table, each entry in JAX (traced) and NumPy (float64 teachers).
Multilayer perceptrons: the forward map that the MLP students and a teacher network of their shape share.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


# ---------------------------------------------------------------------------------------- rate networks
def rate_velocity(x: jax.Array, J_t: jax.Array, drive: jax.Array) -> jax.Array:
    """F(x) = -x + J tanh(x) + c for row states x (..., N), with Jᵀ given (J_t) and c = drive (..., N)."""
    return -x + jnp.tanh(x) @ J_t + drive


def rate_velocity_vjp(x: jax.Array, J: jax.Array, v: jax.Array) -> jax.Array:
    """vᵀ DF(x) = -v + (vᵀ J) ⊙ (1 - tanh² x): the gradient of ½‖F‖² at x when v = F(x)."""
    return -v + (1.0 - jnp.tanh(x) ** 2) * (v @ J)


def rate_jacobian(J: jax.Array, x: jax.Array) -> jax.Array:
    """DF(x) = -I + J diag(1 - tanh² x) at one state x (N,); vmap it over states."""
    return -jnp.eye(J.shape[0], dtype=J.dtype) + J * (1.0 - jnp.tanh(x) ** 2)[None, :]


def sparsity_mask(key: jax.Array, shape: tuple[int, ...], sparsity, dtype) -> jax.Array:
    """Bernoulli(1 - s) mask of 0/1; s may be traced. The same key gives nested masks across s."""
    return (jax.random.uniform(key, shape) >= sparsity).astype(dtype)


def soft_threshold(x: jax.Array, threshold: Any) -> jax.Array:
    """sign(x) · max(|x| - t, 0): the proximal operator of t|x|, exactly 0 for |x| <= t."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - threshold, 0.0)


# ------------------------------------------------------------------------------------------- activations
class Activation(NamedTuple):
    jax: Callable[[Any], Any]  # traced (models)
    numpy: Callable[[np.ndarray], np.ndarray]  # float64 on the host (fixed teachers), whatever JAX's precision


ACTIVATIONS = {
    "relu": Activation(jax.nn.relu, lambda z: np.maximum(z, 0.0)),
    "sigmoid": Activation(jax.nn.sigmoid, lambda z: 1.0 / (1.0 + np.exp(-z))),
    "tanh": Activation(jnp.tanh, np.tanh),
    "linear": Activation(lambda z: z, lambda z: z),
}
HIDDEN_ACTIVATIONS = ("relu", "sigmoid", "tanh")  # what a hidden layer may use ("linear" only for a readout)
ODD_ACTIVATIONS = ("tanh",)  # φ(-z) = -φ(z): a hidden unit's sign can be flipped without changing the function


def init_std(activation: str, fan_in: int, fan_out: int) -> float:
    """Kaiming (relu) or Xavier (sigmoid, tanh, linear) normal standard deviation."""
    return (2.0 / fan_in) ** 0.5 if activation == "relu" else (2.0 / (fan_in + fan_out)) ** 0.5


# -------------------------------------------------------------------------------- multilayer perceptrons
def mlp_apply(params: dict, h: Any, activation: str, output_activation: str = "same") -> Any:
    """hˡ = φ(Wˡ hˡ⁻¹ + bˡ), l = 1 … L - 1, and z = φ_out(Wᴸ hᴸ⁻¹ + bᴸ) from row inputs h⁰ = h (..., n_in),
    with params W1, b1, …, WL, bL (Wˡ of shape (out, in); a missing bˡ adds 0), φ = ACTIVATIONS[activation]
    and φ_out = φ when output_activation is "same", else ACTIVATIONS[output_activation] (traced, JAX).
    The MLP students' forward map (models/mlp.py) and the teacher of the rebound study (tasks/mlp_teacher.py)."""
    phi = ACTIVATIONS[activation].jax
    phi_out = phi if output_activation == "same" else ACTIVATIONS[output_activation].jax
    n_layers = sum(1 for name in params if name.startswith("W"))
    for l in range(1, n_layers + 1):
        z = h @ params[f"W{l}"].T + params.get(f"b{l}", 0.0)
        h = phi(z) if l < n_layers else phi_out(z)
    return h


# ------------------------------------------------------------------------------------------------ losses
def weighted_mse(outputs: Any, targets: Any, weights: Any) -> Any:
    """Σ_t w_t Σ_b,k (z - y)² / (Σ_t w_t · B · n_out): the MSE over the steps with weight 1."""
    sq = weights * (outputs - targets) ** 2
    return jnp.sum(sq) / (jnp.sum(weights) * outputs.shape[1] * outputs.shape[2])


def cross_entropy(logits, targets, weights=None):
    """Mean over samples of -Σ_k y_k log softmax(z)_k (one-hot y); `weights` unused (one step)."""
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def accuracy(logits, targets):
    """Fraction of samples whose largest logit is the true class."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1))
