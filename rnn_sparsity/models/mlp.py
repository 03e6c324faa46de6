"""Multilayer perceptrons (students of the teacher-student studies; the Iris classifier), as a Flax module.

    h⁰ = u,   hˡ = φ(Wˡ hˡ⁻¹ + bˡ),  l = 1 … L - 1,   z = φ_out(Wᴸ hᴸ⁻¹ + bᴸ)

Parameters W1, b1, …, WL, bL with Wˡ of shape (out, in); no b's when `bias` is false (maths.mlp_apply). The
weights (Model.weights: a regularizer's default targets) are the W's. `sizes` lists
every width, the task's input and output widths first and last. φ_out is φ when `output_activation` is
"same" (the teacher-student study's students), else the named one ("linear" for a regression readout).
Init (`init`), times s = `init_scale`; biases 0:
  normal                        Kaiming normal N(0, 2/fan_in) for relu, Xavier normal N(0, 2/(fan_in + fan_out))
                                otherwise
  kaiming_out_xavier_uniform    the teacher-student study's (laschulz/investigating_sparseNN, src/models.py,
                                PyTorch's initialisers): Kaiming normal N(0, 2/fan_out) for relu
                                (kaiming_normal_(mode="fan_out")), Xavier uniform U(-b, b) with
                                b = gain √(6/(fan_in + fan_out)) otherwise (xavier_uniform_ with
                                calculate_gain: 1 for sigmoid, 5/3 for tanh)
A layer's fans are those of its weight (out, in); the init follows `activation` in every layer.
Inputs are time-major like every task's: (T, B, n_in) with T = 1 for static data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from ..components import ModelComponent, check, one_of, positive
from ..contracts import Model
from ..maths import ACTIVATIONS, HIDDEN_ACTIVATIONS, init_std, mlp_apply
from .flax import flax_model, normal_init

INITS = ("normal", "kaiming_out_xavier_uniform")
TORCH_GAIN = {"sigmoid": 1.0, "tanh": 5.0 / 3.0}  # torch.nn.init.calculate_gain


def uniform_init(bound: float):
    """A Flax initializer: entries U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def weight_init(init: str, activation: str, fan_in: int, fan_out: int, scale: float):
    """The Flax initializer of one weight (module docstring): `init` for a layer with this activation
    and fans, times `scale`."""
    if init == "normal":
        return normal_init(scale * init_std(activation, fan_in, fan_out))
    if activation == "relu":
        return normal_init(scale * (2.0 / fan_out) ** 0.5)
    return uniform_init(scale * TORCH_GAIN.get(activation, 1.0) * (6.0 / (fan_in + fan_out)) ** 0.5)


class MLPModule(nn.Module):
    sizes: Sequence[int]
    activation: str = "relu"
    output_activation: str = "same"
    bias: bool = False
    init_scale: float = 1.0
    init_scheme: str = "normal"  # model.init (not `init`: that is the Module's init method)
    param_dtype: jnp.dtype = jnp.float32

    def weight_init(self, l: int):
        return weight_init(self.init_scheme, self.activation, self.sizes[l - 1], self.sizes[l], self.init_scale)

    @nn.compact
    def __call__(self, h):
        params = {}
        for l in range(1, len(self.sizes)):
            shape = (self.sizes[l], self.sizes[l - 1])
            params[f"W{l}"] = self.param(f"W{l}", self.weight_init(l), shape, self.param_dtype)
            if self.bias:
                params[f"b{l}"] = self.param(f"b{l}", nn.initializers.zeros, shape[:1], self.param_dtype)
        return mlp_apply(params, h, self.activation, self.output_activation)

    def seeded_init(self, key: jax.Array) -> dict:
        """The parameters from one split of `key` per layer (a seed's network, whatever Flax's rng folding)."""
        params = {}
        for l, k in enumerate(jax.random.split(key, len(self.sizes) - 1), start=1):
            shape = (self.sizes[l], self.sizes[l - 1])
            params[f"W{l}"] = self.weight_init(l)(k, shape, self.param_dtype)
            if self.bias:
                params[f"b{l}"] = jnp.zeros(shape[:1], self.param_dtype)
        return params


@dataclass
class MLPConfig:
    _target_: str = "rnn_sparsity.models.mlp.MLP"
    name: str = "mlp"
    sizes: list[int] = field(default_factory=lambda: [12, 128, 128, 1])  # widths, input and output included
    activation: str = "relu"  # relu | sigmoid | tanh, every hidden layer
    output_activation: str = "same"  # same (as hidden) | linear | relu | sigmoid | tanh
    bias: bool = False
    init_scale: float = 1.0  # s: every initial weight times this (the study: 0.2 or 1)
    init: str = "normal"  # normal (Kaiming fan_in / Xavier normal) | kaiming_out_xavier_uniform (the study's)


class MLP(ModelComponent):
    Config = MLPConfig
    inputs = ("static",)
    size_keys = ("model.sizes",)

    def check(self, parts) -> None:
        sizes = list(self.group_cfg.sizes)
        check(len(sizes) >= 2 and all(w > 0 for w in sizes), "model.sizes", sizes,
              "must list at least the input and output widths, all > 0")
        io = parts.task.io()
        if io is not None:
            check(sizes[0] == io[0], "model.sizes", sizes, f"must start with the task's input width {io[0]}")
            check(sizes[-1] == io[1], "model.sizes", sizes, f"must end with the task's output width {io[1]}")
        one_of(self.cfg, "model.activation", HIDDEN_ACTIVATIONS)
        one_of(self.cfg, "model.output_activation", ("same", *ACTIVATIONS))
        positive(self.cfg, "model.init_scale")
        one_of(self.cfg, "model.init", INITS)

    def module(self, dtype) -> MLPModule:
        c = self.group_cfg
        return MLPModule(tuple(c.sizes), c.activation, c.output_activation, bool(c.bias), float(c.init_scale),
                         c.init, param_dtype=dtype)

    def build(self, task, dtype) -> Model:
        widths = list(self.group_cfg.sizes)
        if (widths[0], widths[-1]) != (task.n_inputs, task.n_outputs):
            raise ValueError(f"model.sizes={widths} must start with {task.n_inputs} and end with "
                             f"{task.n_outputs} for this task")
        module = self.module(dtype)
        return flax_model(module, task.n_inputs, dtype, seeded_init=module.seeded_init)
