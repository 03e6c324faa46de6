"""Model families: each module exposes `make_model(cfg, n_inputs, n_outputs, dtype) -> Model`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

Params = dict[str, Any]


class Model(NamedTuple):
    """A model as the training code sees it: pure functions over a parameter pytree.

    init(key, hyper) -> (params, mask): mask has the structure of params, 1 where an entry is free,
        0 where structural sparsity pins it at exactly 0. `hyper` holds traced values (e.g. sparsity s,
        gain), so a sweep over them needs no recompilation.
    apply(params, inputs) -> (outputs, states) over time-major inputs (T, B, n_in).
    recurrent(params) -> the effective recurrent matrix whose spectrum is tracked (or None).
    masked: names of structurally masked parameters.
    rates(states) -> the firing rates of those states (None: the model has no rates, e.g. a feedforward net);
        `regularizer.activity` penalises their mean square.
    """

    init: Callable[..., tuple[Params, Params]]
    apply: Callable[..., tuple[Any, Any]]
    recurrent: Callable[[Params], Any]
    masked: tuple[str, ...] = ()  # parameters with a structural mask
    rates: Callable[[Any], Any] | None = None


def make_model(cfg, n_inputs: int, n_outputs: int, dtype) -> Model:
    from . import cnn1d, ctrnn, lowrank_linear, mlp

    builders = {"ctrnn": ctrnn.make_model, "mlp": mlp.make_model, "cnn": cnn1d.make_model,
                "lowrank_linear": lowrank_linear.make_model}
    return builders[cfg.name](cfg, n_inputs, n_outputs, dtype)
