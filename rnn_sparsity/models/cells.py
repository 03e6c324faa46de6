"""Discrete-time recurrent networks from Flax cells: `model=rnn` (vanilla tanh, flax.linen.SimpleCell),
`model=gru` (GRUCell), `model=lstm` (LSTMCell), and `model=flax_rnn` with `model.cell._target_` naming a
researcher's own cell (any flax.linen.RNNCellBase: `__call__(carry, x) -> (carry, y)` and
`initialize_carry(key, input_shape)`), each with a linear readout:

    carry_t = cell(carry_{t-1}, u_t),   z_t = W y_t + b,   carry_0 = cell.initialize_carry (zeros for Flax's cells)

Parameters are a flat dict named by path ("cell/hn/kernel", "readout/kernel"), what
`regularizer.targets` and the pruners name. The state is the carry flattened to one vector per trial
(an LSTM's (c, h) as [c, h]); `apply` returns it as its states (T, B, N), and `Dynamics` (kind "map",
contracts.Dynamics) is the cell's one-step map f(h, u) on it, with Jacobians by jax.jacfwd: fixed points
f(h) = h, stability |λ| < 1, frequency |arg λ| / dt with `model.dt` the time one step stands for. The
GRU's fixed points are sought as the roots of n(h) − h (`gru_roots`), which has the same roots as
f(h) − h = (1 − z)(n(h) − h) but not its valleys where an update gate saturates (z → 1 makes f_i ≈ h_i
far from every fixed point): on the flip-flop GRU of benchmarks/bench_fpf_flipflop.py every one of 1024
starts converges instead of 985, and all 27 fixed points are found instead of 26.

Structural sparsity `model.sparsity` s (traced) pins a fraction s of each recurrent kernel at 0 with a
Bernoulli mask drawn from the seed, the kept entries scaled by 1 / sqrt(1 - s) so each row keeps its
variance (as the CTRNN's J). The recurrent kernels are the parameters matching `model.recurrent`
(fnmatch patterns; default `cell/h*/kernel`, the hidden-to-hidden kernels of every Flax cell); they are
also the model's weights (what a regularizer acts on unless `regularizer.targets` says otherwise) and
the spectrum tracked during training is that of the state map's Jacobian at h = 0, u = 0.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from omegaconf import OmegaConf

from ..components import ConfigError, ModelComponent, check, import_target, positive, variant
from ..contracts import Dynamics, Model, Params
from ..maths import sparsity_mask
from .flax import flat_params, nested_params

CELL, READOUT = "cell/", "readout/"


def flatten_carry(carry) -> jax.Array:
    """A carry (a pytree of (..., n_i) arrays) as one (..., N) array, its leaves in tree order."""
    return jnp.concatenate([jnp.asarray(leaf) for leaf in jax.tree.leaves(carry)], axis=-1)


def unflatten_carry(flat: jax.Array, template):
    """The carry of `template`'s structure and last-axis sizes from a flat (..., N) array."""
    leaves, treedef = jax.tree.flatten(template)
    sizes = [leaf.shape[-1] for leaf in leaves]
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    parts = [flat[..., lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    return jax.tree.unflatten(treedef, parts)


def recurrent_names(param_names, patterns) -> tuple[str, ...]:
    """The parameters matching any of the fnmatch patterns, in their order."""
    return tuple(name for name in param_names if any(fnmatch.fnmatchcase(name, p) for p in patterns))


def gru_roots(cell_params, h, u):
    """n(h, u) − h of flax.linen.GRUCell (its default gates): r = σ(u W_ir + b_ir + h W_hr),
    n = tanh(u W_in + b_in + r ⊙ (h W_hn + b_hn)). Its roots are the GRU's fixed points, f(h) − h =
    (1 − z)(n − h) with 1 − z > 0, without the valleys where z saturates (contracts.Dynamics.roots)."""
    p = cell_params
    r = jax.nn.sigmoid(u @ p["ir"]["kernel"] + p["ir"]["bias"] + h @ p["hr"]["kernel"])
    n = jnp.tanh(u @ p["in"]["kernel"] + p["in"]["bias"] + r * (h @ p["hn"]["kernel"] + p["hn"]["bias"]))
    return n - h


def cell_model(cell: nn.Module, n_inputs: int, n_outputs: int, dtype, *, recurrent=("cell/h*/kernel",),
               dt: float = 1.0, roots=None) -> Model:
    """The Model of a Flax cell with a linear readout (this module's docstring); `roots(cell params, h, u)`:
    a better-conditioned residual with the fixed points as roots (contracts.Dynamics.roots), or None."""
    key0 = jax.random.key(0)
    carry1 = cell.initialize_carry(key0, (1, n_inputs))  # the structure of one trial's carry
    template = jax.tree.map(lambda leaf: leaf[0], carry1)
    shapes = jax.eval_shape(lambda k: cell.init(k, carry1, jnp.zeros((1, n_inputs), dtype)), key0)
    y_size = jax.eval_shape(lambda v: cell.apply(v, carry1, jnp.zeros((1, n_inputs), dtype))[1], shapes).shape[-1]
    readout = nn.Dense(n_outputs)
    names = [CELL + name for name in flat_params(shapes["params"])]
    masked = recurrent_names(names, recurrent)

    def split(params: Params):
        cell_params = nested_params({k[len(CELL):]: v for k, v in params.items() if k.startswith(CELL)})
        readout_params = nested_params({k[len(READOUT):]: v for k, v in params.items() if k.startswith(READOUT)})
        return cell_params, readout_params

    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        k_cell, k_read, k_mask = jax.random.split(key, 3)
        variables = cell.init(k_cell, carry1, jnp.zeros((1, n_inputs), dtype))
        params = {CELL + k: v.astype(dtype) for k, v in flat_params(variables["params"]).items()}
        head = readout.init(k_read, jnp.zeros((1, y_size), dtype))
        params.update({READOUT + k: v.astype(dtype) for k, v in flat_params(head["params"]).items()})
        s = hyper.get("sparsity", 0.0)
        mask = {k: jnp.ones_like(v) for k, v in params.items()}
        for i, name in enumerate(masked):
            mask[name] = sparsity_mask(jax.random.fold_in(k_mask, i), params[name].shape, s, dtype)
            params[name] = params[name] * mask[name] / jnp.sqrt(1.0 - s)
        return params, mask

    def step(cell_params, carry, u):
        return cell.apply({"params": cell_params}, carry, u)

    def apply(params: Params, inputs: jax.Array):
        """inputs (T, B, n_in) -> outputs (T, B, n_out), states (T, B, N): the flat carry after each step."""
        cell_params, readout_params = split(params)
        carry = cell.initialize_carry(key0, inputs.shape[1:])
        dtype_ = jnp.result_type(inputs.dtype, *(v.dtype for v in jax.tree.leaves(cell_params)))
        carry = jax.tree.map(lambda leaf: leaf.astype(dtype_), carry)  # the step's own dtype: scan keeps it

        def body(carry, u):
            carry, y = step(cell_params, carry, u)
            return carry, (y, flatten_carry(carry))

        _, (ys, states) = jax.lax.scan(body, carry, inputs)
        return readout.apply({"params": readout_params}, ys), states

    def one_step(params: Params, h, u):
        cell_params = split(params)[0]
        carry = jax.tree.map(lambda leaf: leaf[None], unflatten_carry(h, template))
        new, y = step(cell_params, carry, jnp.asarray(u, h.dtype).reshape(1, -1))
        return flatten_carry(new)[0], y

    def state_map(params: Params, h, u):
        """f(h, u): one step of the cell from the flat state h (N,) under input u (n_in,)."""
        return one_step(params, h, u)[0]

    def outputs_at(params: Params, h, u):
        """The readout of the cell's output y in one step from h (at a fixed point, the output it holds)."""
        return readout.apply({"params": split(params)[1]}, one_step(params, h, u)[1])[0]

    def recurrent_matrix(params: Params):
        """∂f/∂h at h = 0, u = 0: the linearisation whose spectrum is tracked during training."""
        n = sum(leaf.shape[-1] for leaf in jax.tree.leaves(template))
        dtype_ = params[names[0]].dtype
        return jax.jacfwd(state_map, argnums=1)(params, jnp.zeros(n, dtype_), jnp.zeros(n_inputs, dtype_))

    def roots_at(params: Params, h, u):
        return roots(split(params)[0], h, jnp.asarray(u, h.dtype).reshape(-1))

    return Model(init=init, apply=apply, recurrent=jax.jit(recurrent_matrix), masked=masked,
                 dynamics=Dynamics(kind="map", field=state_map, time_constant=float(dt), readout=outputs_at,
                                   roots=None if roots is None else roots_at),
                 weights=masked)


# ------------------------------------------------------------------------------------------ the group
@dataclass
class CellRNNConfig:
    sparsity: float = 0.0  # s: fraction of each recurrent kernel pinned at 0 (Bernoulli mask from the seed; traced)
    dt: float = 1.0  # the time one step stands for (frequencies |arg λ| / dt in rad per time unit)
    recurrent: list = field(default_factory=lambda: ["cell/h*/kernel"])  # the recurrent kernels (fnmatch)


@dataclass
class BuiltinCellConfig(CellRNNConfig):
    n_units: int = 64  # the cell's features (hidden units; an LSTM's state holds 2 per unit: c and h)


class CellRNN(ModelComponent):
    """A Flax cell with a linear readout (this module's docstring)."""

    inputs = ("sequence",)
    has_dynamics = True
    traced = ("sparsity",)

    def make_cell(self) -> nn.Module:
        raise NotImplementedError

    def check(self, parts) -> None:
        cfg = self.cfg
        positive(cfg, "model.dt")
        s = cfg.model.sparsity
        check(0.0 <= s < 1.0, "model.sparsity", s, "must satisfy 0 <= s < 1")
        patterns = self.group_cfg.recurrent
        check(OmegaConf.is_list(patterns) and all(isinstance(p, str) for p in patterns), "model.recurrent",
              patterns, "must be a list of fnmatch patterns of parameter names (e.g. cell/h*/kernel)")

    roots: Any = None  # a better-conditioned residual with the fixed points as roots (cell params, h, u)

    def build(self, task, dtype) -> Model:
        cfg = self.group_cfg
        model = cell_model(self.make_cell(), task.n_inputs, task.n_outputs, dtype,
                           recurrent=tuple(cfg.recurrent), dt=float(cfg.dt), roots=type(self).roots)
        if not model.masked and cfg.sparsity:
            raise ConfigError("model.recurrent", list(cfg.recurrent),
                              "matches no parameter of the cell, so model.sparsity has nothing to prune")
        return model


class BuiltinCell(CellRNN):
    """Flax's own cells, `model.n_units` features."""

    size_keys = ("model.n_units",)
    cell_class: type = nn.SimpleCell

    def check(self, parts) -> None:
        super().check(parts)
        positive(self.cfg, "model.n_units")

    def make_cell(self) -> nn.Module:
        return self.cell_class(features=int(self.group_cfg.n_units))


class VanillaRNN(BuiltinCell):
    """h' = tanh(W_i u + b + W_h h): flax.linen.SimpleCell."""
    Config = variant(BuiltinCellConfig, "rnn_sparsity.models.cells.VanillaRNN", "rnn")
    cell_class = nn.SimpleCell


class GRU(BuiltinCell):
    """flax.linen.GRUCell: r, z gates; n = tanh(W_in u + b_in + r ⊙ (W_hn h + b_hn)); h' = (1 − z) n + z h."""
    Config = variant(BuiltinCellConfig, "rnn_sparsity.models.cells.GRU", "gru")
    cell_class = nn.GRUCell
    roots = staticmethod(gru_roots)


class LSTM(BuiltinCell):
    """flax.linen.LSTMCell: state (c, h); c' = f c + i g, h' = o tanh(c')."""
    Config = variant(BuiltinCellConfig, "rnn_sparsity.models.cells.LSTM", "lstm")
    cell_class = nn.LSTMCell


@dataclass
class FlaxRNNConfig(CellRNNConfig):
    _target_: str = "rnn_sparsity.models.cells.FlaxRNN"
    name: str = "flax_rnn"
    cell: Any = field(default_factory=dict)  # _target_: my_pkg.MyCell, and the cell's own fields


class FlaxRNN(CellRNN):
    """A researcher's own Flax cell (`model.cell`, instantiated with Hydra)."""

    Config = FlaxRNNConfig

    def check(self, parts) -> None:
        super().check(parts)
        cell = self.group_cfg.cell
        target = None if not cell or OmegaConf.is_missing(cell, "_target_") else cell.get("_target_")
        import_target("model.cell._target_", target, nn.RNNCellBase)

    def make_cell(self) -> nn.Module:
        from hydra.utils import instantiate

        cell = instantiate(self.group_cfg.cell)
        if not isinstance(cell, nn.RNNCellBase):
            raise ConfigError("model.cell._target_", self.group_cfg.cell._target_,
                              f"must be a flax.linen.RNNCellBase (carry, x) -> (carry, y), not {type(cell).__name__}")
        return cell
