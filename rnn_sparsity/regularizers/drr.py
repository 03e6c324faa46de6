"""The DRR penalty of the teacher-student studies and the gradients the study adds to the loss's gradient.

With layers l = 1 … n, each a group of parameters (by default W_l and b_l: weights AND biases are
penalised, the study penalising every parameter of a layer unless told otherwise), P_l the number of
entries in layer l and P = Σ_l P_l:

    R(θ) = Σ_l ( ρ_l Σ_{w ∈ l} w²  +  α_l Σ_{w ∈ l} (1 - exp(-β |w|)) ),
    α_l = α c_l,   ρ_l = ρ c_l,   c_l = (P / n) / P_l                           (β = 10, ρ = 0 by default)

so Σ_l c_l P_l = P: the rescaling moves weight between layers, a small layer's entries each counting
more, without changing the total (uniform θ gives the unscaled penalty). The second term is a smooth
count of the nonzero entries: 1 - exp(-β|w|) ≈ β|w| near 0 and → 1 for |w| ≫ 1/β.

    ∂R/∂w = 2 ρ_l w + α_l β sign(w) exp(-β |w|)          (sign(0) = 0: no push at an exact zero)

The study adds this gradient (`drr_gradient`), or α sign(w) for its "l1" (`l1_gradient`), to the task
loss's gradient rather than differentiating the penalty. All functions are jnp and jit-able with
`layer_names` static; α, ρ, β may be traced.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

Params = Mapping[str, jax.Array]


def mlp_layers(params: Params) -> tuple[tuple[str, ...], ...]:
    """Parameter names grouped by layer: names ending in the same integer form one layer ("W1", "b1"),
    in increasing order of it; a name without a trailing integer is a layer of its own, after them."""
    numbered: dict[int, list[str]] = {}
    alone = []
    for name in params:
        match = re.search(r"(\d+)$", name)
        if match:
            numbered.setdefault(int(match.group(1)), []).append(name)
        else:
            alone.append((name,))
    return tuple(tuple(numbered[k]) for k in sorted(numbered)) + tuple(alone)


def _resolve(params: Params, layer_names) -> tuple[tuple[str, ...], ...]:
    """layer_names as a tuple of name tuples: None → `mlp_layers`; a str entry is a one-parameter layer."""
    layers = mlp_layers(params) if layer_names is None else tuple(
        (entry,) if isinstance(entry, str) else tuple(entry) for entry in layer_names)
    unknown = [n for names in layers for n in names if n not in params]
    if unknown or not layers or not all(layers):
        raise ValueError(f"layer_names must be non-empty groups of parameter names ({', '.join(params)}); "
                         f"got {layer_names!r}")
    return layers


def layer_scales(params: Params, layer_names: Sequence | None = None) -> tuple[float, ...]:
    """c_l = (P / n) / P_l per layer, P_l its entries (weights and biases), P their total, n the layers."""
    layers = _resolve(params, layer_names)
    sizes = [sum(math.prod(jnp.shape(params[n])) for n in names) for names in layers]
    return tuple(sum(sizes) / len(sizes) / size for size in sizes)


def drr_penalty(params: Params, alpha, rho=0.0, beta=10.0, layer_names: Sequence | None = None) -> jax.Array:
    """R(θ) = Σ_l c_l Σ_{w ∈ l} ( ρ w² + α (1 - exp(-β|w|)) ), c_l from `layer_scales`."""
    layers = _resolve(params, layer_names)
    return sum(c * sum(jnp.sum(rho * params[n] ** 2 + alpha * (1.0 - jnp.exp(-beta * jnp.abs(params[n]))))
                       for n in names)
               for c, names in zip(layer_scales(params, layers), layers))


def drr_gradient(params: Params, alpha, rho=0.0, beta=10.0, layer_names: Sequence | None = None) -> dict:
    """∂R/∂w = c_l (2 ρ w + α β sign(w) exp(-β|w|)) for every entry, written out (not by autodiff);
    parameters in no layer get zeros."""
    layers = _resolve(params, layer_names)
    grads = {n: jnp.zeros_like(w) for n, w in params.items()}
    for c, names in zip(layer_scales(params, layers), layers):
        for n in names:
            w = params[n]
            grads[n] = c * (2.0 * rho * w + alpha * beta * jnp.sign(w) * jnp.exp(-beta * jnp.abs(w)))
    return grads


def l1_gradient(params: Params, alpha) -> dict:
    """α sign(w) for every entry of every parameter: the study's "l1", added to the loss's gradient."""
    return {n: alpha * jnp.sign(w) for n, w in params.items()}
