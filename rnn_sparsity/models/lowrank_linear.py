"""Linear rate network with low-rank trainable connectivity (the fast-decay study):

    τ dx/dt = -x + J x,    J = J0 + Û V̂

J0 ~ N(0, 1/N) and the readout w ~ N(0, 1/N) are drawn from the seed and stay fixed (they are carried in
the parameters but behind stop_gradient, so no optimizer moves them); U (N×n) and V (n×N), n =
round(N · `rank_fraction`), are trained, each column of U and row of V renormalised to unit norm in
the forward map (analysis/decay.py). `apply` has no data to run on: it returns the connectivity and
the readout as one array, outputs (1, N, N + 1) = [J | w], which the fast_decay task scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..analysis.decay import connectivity, lowrank_init
from . import Model, Params


def split_outputs(outputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(J, w) from the (1, N, N + 1) outputs of `apply`."""
    return outputs[0, :, :-1], outputs[0, :, -1]


def make_model(cfg, n_inputs: int, n_outputs: int, dtype) -> Model:
    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        trained, fixed = lowrank_init(key, int(cfg.n_units), float(cfg.rank_fraction), dtype)
        params = {**trained, **fixed}
        return params, jax.tree.map(jnp.ones_like, params)

    def effective(params: Params) -> tuple[jax.Array, jax.Array]:
        fixed = {"J0": jax.lax.stop_gradient(params["J0"]), "w": jax.lax.stop_gradient(params["w"])}
        return connectivity({"U": params["U"], "V": params["V"]}, fixed), fixed["w"]

    def apply(params: Params, inputs=None):
        J, w = effective(params)
        return jnp.concatenate([J, w[:, None]], axis=1)[None], None

    return Model(init=init, apply=apply, recurrent=lambda p: effective(p)[0], masked=())
