"""The DRR penalty of the teacher-student studies (`regularizer=drr`, penalty mode only).

With layers l = 1 … n, each a group of parameters (by default W_l and b_l: weights AND biases are
penalised, the study penalising every parameter of a layer unless told otherwise), P_l the number of
entries in layer l and P = Σ_l P_l:

    R(θ) = Σ_l ( ρ_l Σ_{w ∈ l} w²  +  α_l Σ_{w ∈ l} (1 - exp(-β |w|)) ),
    α_l = α c_l,   ρ_l = ρ c_l,   c_l = (P / n) / P_l                           (β = 10, ρ = 0 by default)

so Σ_l c_l P_l = P: the rescaling moves weight between layers, a small layer's entries each counting
more, without changing the total (uniform θ gives the unscaled penalty). The second term is a smooth
count of the nonzero entries: 1 - exp(-β|w|) ≈ β|w| near 0 and → 1 for |w| ≫ 1/β.

All functions are jnp and jit-able with `layer_names` static; α (λ = `regularizer.strength`), ρ and β
may be traced; training differentiates R with autodiff.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from ..components import non_negative, positive
from ..contracts import Regularizer
from . import Penalty, RegularizerConfig, activity_weight

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


@dataclass
class DRRConfig(RegularizerConfig):
    _target_: str = "rnn_sparsity.regularizers.drr.DRR"
    name: str = "drr"
    rho: float = 0.0  # weight ρ of its Σ w² term (per layer rescaled like λ; traced)
    beta: float = 10.0  # sharpness β of its Σ (1 - exp(-β|w|)) term (traced)


class DRR(Penalty):
    """R(θ) of the module docstring on the targeted parameters grouped by layer (`mlp_layers`);
    λ = hyper["strength"], ρ = hyper["rho"], β = hyper["beta"]. No proximal operator."""

    Config = DRRConfig
    traced = (*Penalty.traced, "rho", "beta")
    proximal_operator = False

    def check(self, parts) -> None:
        super().check(parts)
        non_negative(self.cfg, "regularizer.rho")
        positive(self.cfg, "regularizer.beta")

    def build(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...] = ()) -> Regularizer:
        """R over `regularizer.targets` (the YAML's: every weight and bias), or the model's `weights` where null."""
        targets = self.known_targets(param_shapes, weights)

        def penalty(params: Params, hyper: dict) -> jax.Array:
            return drr_penalty({t: params[t] for t in targets}, hyper["strength"], hyper["rho"], hyper["beta"])

        def prox(params: Params, hyper: dict, step: Any) -> Params:
            raise ValueError("regularizer=drr has no proximal operator: use regularizer.mode=penalty")

        return Regularizer(penalty=penalty, prox=prox, targets=targets, state_weight=activity_weight)
