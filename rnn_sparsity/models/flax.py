"""Flax modules as models: any linen module that maps inputs (T, B, n_in) to outputs (T, B, n_out).

`model=flax` with `model.module._target_=my_pkg.MyModule` (and the module's own fields beside it)
trains a researcher's Flax module on any task with static inputs (features laid out (1, B, n_in)).
Training code sees a flat dict of parameters named by their path in the module's `params` collection,
joined with "/" ("Dense_0/kernel"): that is what `regularizer.targets` and the sparsity metrics name.
Parameters are cast to the run's precision after `module.init`. Its weights, which a regularizer
targets unless `regularizer.targets` names others, are its parameters of two or more dimensions (the kernels,
not the biases: contracts.weight_matrices). The built-in students (mlp, cnn) are
Flax modules too (models/mlp.py, models/cnn1d.py); they pass their own seeded init, so that a seed
gives the same network as the tool's earlier hand-written students.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict
from omegaconf import OmegaConf

from ..components import ConfigError, ModelComponent, import_target
from ..contracts import Model, Params

SEPARATOR = "/"


def flat_params(tree) -> Params:
    """A nested Flax params tree as {"a/b": array}."""
    return {SEPARATOR.join(path): value for path, value in flatten_dict(dict(tree)).items()}


def nested_params(flat: Params) -> dict:
    return unflatten_dict({tuple(name.split(SEPARATOR)): value for name, value in flat.items()})


def normal_init(std: float) -> Callable:
    """A Flax initializer: std · N(0, 1) entries."""

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def flax_model(module: nn.Module, n_inputs: int, dtype, seeded_init: Callable | None = None) -> Model:
    """The Model of a Flax module: init through `module.init` (or `seeded_init(key)` where a module
    has its own), apply through `module.apply`; no mask (every entry free), no recurrence."""

    def init(key: jax.Array, hyper: dict) -> tuple[Params, Params]:
        if seeded_init is not None:
            params = seeded_init(key)
        else:
            variables = module.init(key, jnp.zeros((1, 1, n_inputs), dtype))
            params = {k: v.astype(dtype) for k, v in flat_params(variables["params"]).items()}
        return params, jax.tree.map(jnp.ones_like, params)

    def apply(params: Params, inputs: jax.Array):
        return module.apply({"params": nested_params(params)}, inputs), None

    return Model(init=init, apply=apply)


@dataclass
class FlaxConfig:
    _target_: str = "rnn_sparsity.models.flax.FlaxModel"
    name: str = "flax"
    module: Any = field(default_factory=dict)  # _target_: my_pkg.MyModule, and the module's fields


class FlaxModel(ModelComponent):
    """A researcher's own Flax module (`model.module`, instantiated with Hydra)."""

    Config = FlaxConfig
    inputs = ("static",)

    def check(self, parts) -> None:
        module = self.group_cfg.module
        target = None if not module or OmegaConf.is_missing(module, "_target_") else module.get("_target_")
        import_target("model.module._target_", target, nn.Module)

    def build(self, task, dtype) -> Model:
        from hydra.utils import instantiate

        module = instantiate(self.group_cfg.module)
        if not isinstance(module, nn.Module):
            raise ConfigError("model.module._target_", self.group_cfg.module._target_,
                              f"must be a flax.linen.Module, not {type(module).__name__}")
        model = flax_model(module, task.n_inputs, dtype)
        out = jax.eval_shape(lambda k: model.apply(model.init(k, {})[0], jnp.zeros(task.inputs.shape, dtype))[0],
                             jax.random.key(0))
        if out.shape[-1] != task.n_outputs:
            raise ConfigError("model.module", self.group_cfg.module._target_,
                              f"gives {out.shape[-1]} outputs, the task needs {task.n_outputs}")
        return model
