"""Continuous-time rate RNN (Euler-discretised), with structural sparsity of J.

    x_{t+1} = x_t + (dt/τ) (-x_t + J tanh(x_t) + B u_t + b_x),      z_t = w tanh(x_{t+1}) + b_z

Init: J = g · N(0, 1/N) · M / sqrt(1 - s) with M ~ Bernoulli(1 - s) fixed from the key (so the
variance of each row of J is g²/N whatever s is); B, w ~ N(0, 1/N); biases 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import Model, Params


def sparsity_mask(key: jax.Array, shape: tuple[int, ...], sparsity, dtype) -> jax.Array:
    """Bernoulli(1 - s) mask of 0/1; s may be traced. The same key gives nested masks across s."""
    return (jax.random.uniform(key, shape) >= sparsity).astype(dtype)


def make_model(cfg, n_inputs: int, n_outputs: int, dtype) -> Model:
    n, alpha = int(cfg.n_units), float(cfg.dt) / float(cfg.tau)

    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        k_j, k_mask, k_b, k_w = jax.random.split(key, 4)
        mask_j = sparsity_mask(k_mask, (n, n), hyper["sparsity"], dtype)
        scale = hyper["gain"] / jnp.sqrt(n * (1.0 - hyper["sparsity"]))
        params = {
            "J": scale * jax.random.normal(k_j, (n, n), dtype) * mask_j,
            "B": jax.random.normal(k_b, (n, n_inputs), dtype) / jnp.sqrt(n),
            "b_x": jnp.zeros((n,), dtype),
            "w": jax.random.normal(k_w, (n_outputs, n), dtype) / jnp.sqrt(n),
            "b_z": jnp.zeros((n_outputs,), dtype),
        }
        mask = {k: (mask_j if k == "J" else jnp.ones_like(v)) for k, v in params.items()}
        return params, mask

    def apply(params: Params, inputs: jax.Array, x0: jax.Array | None = None):
        """inputs (T, B, n_in) -> outputs (T, B, n_out), states x (T, B, N)."""
        drive = inputs @ params["B"].T + params["b_x"]  # all input currents at once, off the loop
        if x0 is None:
            x0 = jnp.zeros(drive.shape[1:], drive.dtype)
        j_t = params["J"].T

        def step(x, d):
            x = x + alpha * (-x + jnp.tanh(x) @ j_t + d)
            return x, x

        _, states = jax.lax.scan(step, x0, drive)
        outputs = jnp.tanh(states) @ params["w"].T + params["b_z"]
        return outputs, states

    return Model(init=init, apply=apply, recurrent=lambda p: p["J"],
                 masked=("J",))
