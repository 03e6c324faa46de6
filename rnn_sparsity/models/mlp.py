"""Multilayer perceptrons (students of the teacher-student studies; the Iris classifier).

    h⁰ = u,   hˡ = φ(Wˡ hˡ⁻¹ + bˡ),  l = 1 … L - 1,   z = φ_out(Wᴸ hᴸ⁻¹ + bᴸ)

Parameters W1, b1, …, WL, bL with Wˡ of shape (out, in); no b's when `bias` is false. `sizes` lists
every width, the task's input and output widths first and last. φ_out is φ when `output_activation` is
"same" (the teacher-student study's students), else the named one ("linear" for a regression readout).
Init: Kaiming normal N(0, 2/fan_in) for relu, Xavier normal N(0, 2/(fan_in + fan_out)) otherwise, times
`init_scale`; biases 0. Inputs are time-major like every task's: (T, B, n_in) with T = 1 for static data.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import Model, Params

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "linear": lambda z: z}


def layer_names(n_layers: int, bias: bool) -> list[str]:
    return [f"{kind}{l}" for l in range(1, n_layers + 1) for kind in (("W", "b") if bias else ("W",))]


def init_std(activation: str, fan_in: int, fan_out: int) -> float:
    """Kaiming (relu) or Xavier (sigmoid, tanh, linear) normal standard deviation."""
    return (2.0 / fan_in) ** 0.5 if activation == "relu" else (2.0 / (fan_in + fan_out)) ** 0.5


def make_model(cfg, n_inputs: int, n_outputs: int, dtype) -> Model:
    widths = list(cfg.sizes)
    if (widths[0], widths[-1]) != (n_inputs, n_outputs):
        raise ValueError(f"model.sizes={widths} must start with {n_inputs} and end with {n_outputs} for this task")
    phi = ACTIVATIONS[cfg.activation]
    phi_out = phi if cfg.output_activation == "same" else ACTIVATIONS[cfg.output_activation]
    n_layers = len(widths) - 1

    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        params = {}
        for l, k in enumerate(jax.random.split(key, n_layers), start=1):
            fan_in, fan_out = widths[l - 1], widths[l]
            std = cfg.init_scale * init_std(cfg.activation, fan_in, fan_out)
            params[f"W{l}"] = std * jax.random.normal(k, (fan_out, fan_in), dtype)
            if cfg.bias:
                params[f"b{l}"] = jnp.zeros((fan_out,), dtype)
        return params, jax.tree.map(jnp.ones_like, params)

    def apply(params: Params, inputs: jax.Array):
        """inputs (T, B, n_in) -> outputs (T, B, n_out), last hidden layer (T, B, width)."""
        h = hidden = inputs
        for l in range(1, n_layers + 1):
            z = h @ params[f"W{l}"].T + (params[f"b{l}"] if cfg.bias else 0.0)
            h = phi(z) if l < n_layers else phi_out(z)
            hidden = h if l < n_layers else hidden
        return h, hidden

    return Model(init=init, apply=apply, recurrent=lambda p: None, masked=())
