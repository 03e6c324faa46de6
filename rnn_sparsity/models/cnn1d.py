"""Bias-free 1-D CNN students with the teacher's shape: every layer a convolution with stride = kernel
size k (the windows tile the input), followed by the activation φ (the output layer too):

    hˡ[o, p] = φ( Σ_c Σ_t Wˡ[o, c, t] · hˡ⁻¹[c, p·k + t] )

`channels` lists the channel counts from the input's (1) to the output's (1), `kernels` the k of each
layer; the input length (12 for the teacher-student task) must be the product of the kernels, so the
last layer has one position. Parameters W1, W2, … of shape (C_out, C_in, k); init Kaiming (relu) or
Xavier (sigmoid, tanh) normal with fan_in = C_in·k, times `init_scale`. Inputs (T, B, L) as every task's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from . import Model, Params
from .mlp import ACTIVATIONS, init_std


def conv_stride_k(h: jax.Array, kernel: jax.Array) -> jax.Array:
    """h (N, C_in, L), kernel (C_out, C_in, k) -> (N, C_out, L // k), windows of length k without overlap."""
    n, c_in, length = h.shape
    k = kernel.shape[-1]
    windows = h.reshape(n, c_in, length // k, k)
    return jnp.einsum("ncpt,oct->nop", windows, kernel)


def make_model(cfg, n_inputs: int, n_outputs: int, dtype) -> Model:
    channels, kernels = list(cfg.channels), list(cfg.kernels)
    if math.prod(kernels) != n_inputs or channels[-1] != n_outputs or channels[0] != 1:
        raise ValueError(f"model.kernels={kernels} must multiply to the input length {n_inputs} and "
                         f"model.channels={channels} run from 1 to {n_outputs}")
    phi = ACTIVATIONS[cfg.activation]

    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        params = {}
        positions = n_inputs
        for l, k in enumerate(jax.random.split(key, len(kernels)), start=1):
            c_in, c_out, width = channels[l - 1], channels[l], kernels[l - 1]
            positions //= width
            std = cfg.init_scale * init_std(cfg.activation, c_in * width, c_out * width)
            params[f"W{l}"] = std * jax.random.normal(k, (c_out, c_in, width), dtype)
        return params, jax.tree.map(jnp.ones_like, params)

    def apply(params: Params, inputs: jax.Array):
        """inputs (T, B, L) -> outputs (T, B, n_out), hidden None."""
        t, b, length = inputs.shape
        h = inputs.reshape(t * b, 1, length)
        for l in range(1, len(kernels) + 1):
            h = phi(conv_stride_k(h, params[f"W{l}"]))
        return h.reshape(t, b, -1), None

    return Model(init=init, apply=apply, recurrent=lambda p: None, masked=())
