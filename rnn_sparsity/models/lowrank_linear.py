"""Linear rate network with low-rank trainable connectivity (the fast-decay study):

    τ dx/dt = -x + J x,    J = J0 + Û V̂

J0 ~ N(0, 1/N) and the readout w ~ N(0, 1/N) are drawn from the seed and stay fixed (they are carried in
the parameters but behind stop_gradient, so no optimizer moves them); U (N×n) and V (n×N), n =
round(N · `rank_fraction`), are trained, each column of U and row of V renormalised to unit norm in
the forward map (`connectivity`). `apply` has no data to run on: it returns the connectivity and the
readout as one array, outputs (1, N, N + 1) = [J | w] (contracts.connectivity_outputs), which a connectivity
task (fast_decay) scores. Its weights (Model.weights, a regularizer's default targets) are U and V.

`model.init` says which generator draws them: `jax` (the run's JAX key), or `notebook`, the source
notebook's own draw (sean-escola/thalamocortical, "Preparatory network optimization.ipynb": NumPy's
legacy generator seeded with the run's seed, then J0, V, U, w in that order), so that seed=2, N = 500,
rank fraction 0.1 is the network whose optimisation that notebook prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..components import ModelComponent, check, one_of, positive
from ..contracts import Model, Params, connectivity_outputs


@dataclass
class LowRankLinearConfig:
    _target_: str = "rnn_sparsity.models.lowrank_linear.LowRankLinear"
    name: str = "lowrank_linear"
    n_units: int = 500  # N
    rank_fraction: float = 0.1  # n = round(N · rank_fraction) columns of U, rows of V
    tau: float = 0.01  # time constant (s)
    init: str = "jax"  # who draws J0, w, U, V: "jax" (the run's key) | "notebook" (the source notebook's NumPy draw)


INITS = ("jax", "notebook")


def lowrank_init(key: jax.Array, n_units: int, rank_fraction: float, dtype=jnp.float32) -> tuple[Params, Params]:
    """({"U": (N, n), "V": (n, N)}, {"J0": (N, N), "w": (N,)}), every entry N(0, 1/N), n = round(N · rank_fraction).

    The scale of U and V never reaches J (their columns/rows are renormalised in `connectivity`); it only
    sets how far a gradient step turns them: the gradient of a scale-free function of U_:k is ∝ 1/‖U_:k‖,
    so a step η turns U_:k by ~ η/‖U_:k‖², and with N(0, 1/N) entries ‖U_:k‖ ≈ ‖V_k:‖ ≈ 1.
    """
    rank = int(round(n_units * rank_fraction))
    k_j0, k_w, k_u, k_v = jax.random.split(key, 4)
    std = n_units ** -0.5  # a Python float, so it keeps `dtype` (a NumPy scalar would promote to float64)
    normal = lambda k, shape: std * jax.random.normal(k, shape, dtype)  # noqa: E731
    return ({"U": normal(k_u, (n_units, rank)), "V": normal(k_v, (rank, n_units))},
            {"J0": normal(k_j0, (n_units, n_units)), "w": normal(k_w, (n_units,))})


def notebook_draw(seed: int, n_units: int, rank: int) -> tuple[np.ndarray, ...]:
    """(J0, V, U, w) as the source notebook draws them: numpy.random.seed(seed), then randn(N, N),
    randn(n, N), randn(N, n) and randn(N), each divided by √N (float64; a RandomState(seed) is the
    same stream as the seeded global generator)."""
    draw = np.random.RandomState(seed)
    shapes = ((n_units, n_units), (rank, n_units), (n_units, rank), (n_units,))
    return tuple(draw.randn(*shape) / np.sqrt(n_units) for shape in shapes)


def notebook_init(key: jax.Array, n_units: int, rank_fraction: float, dtype=jnp.float32) -> tuple[Params, Params]:
    """`lowrank_init`'s parameters, drawn by `notebook_draw` with the run's seed.

    The seed is read back from the run's key: a run starts from jax.random.key(seed), whose threefry
    key data is [0, seed] for 0 <= seed < 2³², so under vmap every member draws with its own seed (a
    host callback, run once, at init)."""
    data = jax.random.key_data(key)
    if data.shape != (2,):
        raise ValueError(f"model.init=notebook needs threefry keys (key data of shape (2,)), got {data.shape}")
    rank = int(round(n_units * rank_fraction))
    shapes = ((n_units, n_units), (rank, n_units), (n_units, rank), (n_units,))
    out = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape in shapes)
    host = lambda seed: tuple(a.astype(dtype) for a in notebook_draw(int(seed), n_units, rank))  # noqa: E731
    J0, V, U, w = jax.pure_callback(host, out, data[1], vmap_method="sequential")
    return {"U": U, "V": V}, {"J0": J0, "w": w}


def connectivity(params: Params, fixed: Params) -> jax.Array:
    """J = J0 + Û V̂, Û_:k = U_:k / ‖U_:k‖, V̂_k: = V_k: / ‖V_k:‖ (unit columns of U, unit rows of V)."""
    U, V = params["U"], params["V"]
    U_hat = U / jnp.linalg.norm(U, axis=0, keepdims=True)
    V_hat = V / jnp.linalg.norm(V, axis=1, keepdims=True)
    return fixed["J0"] + U_hat @ V_hat


class LowRankLinear(ModelComponent):
    """J = J0 + Û V̂ with U, V trained; outputs [J | w] for a task that scores the connectivity."""

    Config = LowRankLinearConfig
    inputs = ("connectivity",)
    size_keys = ("model.n_units",)

    def check(self, parts) -> None:
        n, r = self.group_cfg.n_units, self.group_cfg.rank_fraction
        check(n >= 2, "model.n_units", n, "must be >= 2")
        check(0.0 < r <= 1.0, "model.rank_fraction", r, "must satisfy 0 < rank_fraction <= 1")
        check(round(n * r) >= 1, "model.rank_fraction", r, f"gives rank round({n} * {r}) = 0: must give at least 1")
        positive(self.cfg, "model.tau")
        one_of(self.cfg, "model.init", INITS)
        if self.group_cfg.init == "notebook":
            seed = self.cfg.seed
            check(0 <= seed < 2 ** 32, "seed", seed, "model.init=notebook seeds NumPy: needs 0 <= seed < 2**32")

    def build(self, task, dtype) -> Model:
        cfg = self.group_cfg

        def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
            draw = notebook_init if cfg.init == "notebook" else lowrank_init
            trained, fixed = draw(key, int(cfg.n_units), float(cfg.rank_fraction), dtype)
            params = {**trained, **fixed}
            return params, jax.tree.map(jnp.ones_like, params)

        def effective(params: Params) -> tuple[jax.Array, jax.Array]:
            fixed = {"J0": jax.lax.stop_gradient(params["J0"]), "w": jax.lax.stop_gradient(params["w"])}
            return connectivity({"U": params["U"], "V": params["V"]}, fixed), fixed["w"]

        def apply(params: Params, inputs=None):
            return connectivity_outputs(*effective(params)), None

        return Model(init=init, apply=apply, recurrent=lambda p: effective(p)[0], masked=(), weights=("U", "V"))
