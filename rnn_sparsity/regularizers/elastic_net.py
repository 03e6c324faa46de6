"""Regularizers: a penalty R(θ) and its proximal operator, over the parameters named in `targets`.

With λ = `regularizer.strength`, r = `regularizer.l1_ratio` and c = 1/n (n targeted entries) for
`reduction: mean` or c = 1 for `sum`:

    R(θ) = λ c Σ_i ( r |θ_i| + (1 - r) θ_i² )          l1: r = 1,  l2: r = 0,  elastic_net: r given

    prox_{ηR}(θ)_i = soft_threshold(θ_i, η_i λ c r) / (1 + 2 η_i λ c (1 - r))

η may be a scalar or a pytree of per-entry step sizes (Adam's diagonal metric), so a proximal step
is the exact minimiser of ½ Σ_i (θ_i - z_i)²/η_i + R(θ): scaled consistently with the penalty, and it
sets entries exactly to 0. Regularizers know nothing of models or tasks: they see a dict of arrays.

`drr` (the ℓ2-rebound study's) is R(θ) = Σ_l (ρ_l Σ w² + λ_l Σ (1 - exp(-β|w|))) over the targeted
parameters grouped by layer (W1 with b1, ...), λ_l and ρ_l rescaled per layer (analysis/drr.py;
`reduction` does not apply); it has no proximal operator (penalty mode only).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .analysis.drr import drr_penalty
from .config import ConfigError

Params = dict[str, Any]


def soft_threshold(x: jax.Array, threshold: Any) -> jax.Array:
    """sign(x) · max(|x| - t, 0): the proximal operator of t|x|, exactly 0 for |x| <= t."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - threshold, 0.0)


class Regularizer(NamedTuple):
    """penalty(params, hyper) -> R(θ); prox(params, hyper, step) -> prox_{ηR}(params).

    hyper carries the traced λ ("strength") and, for elastic_net, r ("l1_ratio"); `targets` names
    the parameters. l1 and l2 fix r at 1 and 0; none is identically 0.
    """

    penalty: Callable[[Params, dict], jax.Array]
    prox: Callable[[Params, dict, Any], Params]
    targets: tuple[str, ...]


L1_RATIO = {"l1": 1.0, "l2": 0.0}


def make_regularizer(cfg, param_shapes: dict[str, tuple[int, ...]]) -> Regularizer:
    """Build the regularizer for a model whose parameters have `param_shapes`."""
    targets = tuple(cfg.targets)
    if cfg.name == "none":  # no penalty: the targets are never read
        targets = tuple(t for t in targets if t in param_shapes)
    unknown = [t for t in targets if t not in param_shapes]
    if unknown:
        raise ConfigError("regularizer.targets", list(targets),
                          f"names must be parameters of the model: {', '.join(param_shapes)}")
    if cfg.name == "drr":
        return drr_regularizer(targets)
    n_entries = sum(math.prod(param_shapes[t]) for t in targets)
    scale = 1.0 / max(n_entries, 1) if cfg.reduction == "mean" else 1.0
    active = cfg.name != "none"
    fixed_ratio = L1_RATIO.get(cfg.name)

    def coefficients(hyper: dict):
        r = hyper["l1_ratio"] if fixed_ratio is None else fixed_ratio
        return hyper["strength"] * scale, r

    def penalty(params: Params, hyper: dict) -> jax.Array:
        lam, r = coefficients(hyper)
        total = sum(jnp.sum(r * jnp.abs(params[t]) + (1 - r) * params[t] ** 2) for t in targets)
        return lam * total if active else jnp.zeros_like(total)

    def prox(params: Params, hyper: dict, step: Any) -> Params:
        if not active:
            return params
        lam, r = coefficients(hyper)
        out = dict(params)
        for t in targets:
            eta = step[t] if isinstance(step, dict) else step
            out[t] = soft_threshold(params[t], eta * lam * r) / (1 + 2 * eta * lam * (1 - r))
        return out

    return Regularizer(penalty=penalty, prox=prox, targets=targets)


def drr_regularizer(targets: tuple[str, ...]) -> Regularizer:
    """DRR on the targeted parameters; λ = hyper["strength"], ρ = hyper["rho"], β = hyper["beta"]."""

    def penalty(params: Params, hyper: dict) -> jax.Array:
        return drr_penalty({t: params[t] for t in targets}, hyper["strength"], hyper["rho"], hyper["beta"])

    def prox(params: Params, hyper: dict, step: Any) -> Params:
        raise ValueError("regularizer=drr has no proximal operator: use regularizer.mode=penalty")

    return Regularizer(penalty=penalty, prox=prox, targets=targets)
