"""Bias-free 1-D CNN students with the teacher's shape, as a Flax module: every layer a convolution with
stride = kernel size k (the windows tile the input), followed by the activation φ (the output layer too):

    hˡ[o, p] = φ( Σ_c Σ_t Wˡ[o, c, t] · hˡ⁻¹[c, p·k + t] )

`channels` lists the channel counts from the input's (1) to the output's (1), `kernels` the k of each
layer; the input length (12 for the teacher-student task) must be the product of the kernels, so the
last layer has one position. Parameters W1, W2, … of shape (C_out, C_in, k) (PyTorch's Conv1d layout),
initialised as the MLP's (`init`: normal | kaiming_out_xavier_uniform, models/mlp.py) with PyTorch's fans of
a kernel, fan_in = C_in·k and fan_out = C_out·k, times `init_scale`. Inputs (T, B, L) as every task's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from ..components import ModelComponent, check, one_of, positive
from ..contracts import Model
from ..maths import ACTIVATIONS, HIDDEN_ACTIVATIONS
from .flax import flax_model
from .mlp import INITS, weight_init


def conv_stride_k(h: jax.Array, kernel: jax.Array) -> jax.Array:
    """h (N, C_in, L), kernel (C_out, C_in, k) -> (N, C_out, L // k), windows of length k without overlap."""
    n, c_in, length = h.shape
    k = kernel.shape[-1]
    windows = h.reshape(n, c_in, length // k, k)
    return jnp.einsum("ncpt,oct->nop", windows, kernel)


class CNNModule(nn.Module):
    channels: Sequence[int]
    kernels: Sequence[int]
    activation: str = "relu"
    init_scale: float = 1.0
    init_scheme: str = "normal"  # model.init (not `init`: that is the Module's init method)
    param_dtype: jnp.dtype = jnp.float32

    def shape(self, l: int) -> tuple[int, int, int]:
        return self.channels[l], self.channels[l - 1], self.kernels[l - 1]

    def weight_init(self, l: int):
        c_out, c_in, width = self.shape(l)
        return weight_init(self.init_scheme, self.activation, c_in * width, c_out * width, self.init_scale)

    @nn.compact
    def __call__(self, inputs):
        """inputs (T, B, L) -> outputs (T, B, n_out)."""
        phi = ACTIVATIONS[self.activation].jax
        t, b, length = inputs.shape
        h = inputs.reshape(t * b, 1, length)
        for l in range(1, len(self.kernels) + 1):
            h = phi(conv_stride_k(h, self.param(f"W{l}", self.weight_init(l), self.shape(l), self.param_dtype)))
        return h.reshape(t, b, -1)

    def seeded_init(self, key: jax.Array) -> dict:
        """The kernels from one split of `key` per layer (a seed's network, whatever Flax's rng folding)."""
        return {f"W{l}": self.weight_init(l)(k, self.shape(l), self.param_dtype)
                for l, k in enumerate(jax.random.split(key, len(self.kernels)), start=1)}


@dataclass
class CNNConfig:
    _target_: str = "rnn_sparsity.models.cnn1d.CNN"
    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # from the input's 1 to the output's 1
    kernels: list[int] = field(default_factory=lambda: [3, 2, 2])  # kernel = stride per layer; product = input length
    activation: str = "relu"  # relu | sigmoid | tanh, every layer
    init_scale: float = 1.0  # s: every initial weight times this (the study: 0.2 or 1)
    init: str = "normal"  # normal (Kaiming fan_in / Xavier normal) | kaiming_out_xavier_uniform (the study's)


class CNN(ModelComponent):
    Config = CNNConfig
    inputs = ("static",)
    size_keys = ("model.channels",)

    def check(self, parts) -> None:
        channels, kernels = list(self.group_cfg.channels), list(self.group_cfg.kernels)
        check(len(channels) == len(kernels) + 1 and all(c > 0 for c in channels), "model.channels", channels,
              f"must list one more channel count than model.kernels ({len(kernels)} layers), all > 0")
        check(all(k > 0 for k in kernels), "model.kernels", kernels, "every kernel size must be > 0")
        io = parts.task.io()
        if io is not None:
            check(math.prod(kernels) == io[0], "model.kernels", kernels,
                  f"must multiply to the task's input length {io[0]} (stride = kernel, one output position)")
            check(channels[0] == 1 and channels[-1] == io[1], "model.channels", channels,
                  f"must start with 1 and end with the task's output width {io[1]}")
        one_of(self.cfg, "model.activation", HIDDEN_ACTIVATIONS)
        positive(self.cfg, "model.init_scale")
        one_of(self.cfg, "model.init", INITS)

    def build(self, task, dtype) -> Model:
        c = self.group_cfg
        channels, kernels = list(c.channels), list(c.kernels)
        if math.prod(kernels) != task.n_inputs or channels[-1] != task.n_outputs or channels[0] != 1:
            raise ValueError(f"model.kernels={kernels} must multiply to the input length {task.n_inputs} and "
                             f"model.channels={channels} run from 1 to {task.n_outputs}")
        module = CNNModule(tuple(channels), tuple(kernels), c.activation, float(c.init_scale), c.init,
                           param_dtype=dtype)
        return flax_model(module, task.n_inputs, dtype, seeded_init=module.seeded_init)
