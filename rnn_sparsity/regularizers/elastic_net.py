"""None, L1, L2 and elastic net: one penalty and one proximal operator over the targeted parameters.

With λ = `regularizer.strength`, r = `regularizer.l1_ratio` and c = 1/n (n targeted entries) for
`reduction: mean` or c = 1 for `sum`:

    R(θ) = λ c Σ_i ( r |θ_i| + (1 - r) θ_i² )          l1: r = 1,  l2: r = 0,  elastic_net: r given

    prox_{ηR}(θ)_i = soft_threshold(θ_i, η_i λ c r) / (1 + 2 η_i λ c (1 - r))

With ω = `regularizer.weight_decay` > 0 (penalty mode only) the squared term also acts as PyTorch's SGD
weight decay: the gradient of every targeted entry gets ω (1 - r) λ c θ_i more than ∇R, and the loss
nothing (SGD(weight_decay=ω (1 - r) λ c)). The teacher-student study (laschulz/investigating_sparseNN,
src/runner.py and src/trainer.py) trains its L2 runs so: λ Σ θ² in the loss and SGD(weight_decay=λ), i.e.
ω = 1 and a gradient of 3 λ θ against the loss's λ Σ θ²; its L1 runs have SGD weight decay 0, which ω = 1
gives too (r = 1). ω = 0, the default: the gradient of R alone. `none` ignores ω as it ignores λ.

η may be a scalar or a pytree of per-entry step sizes (Adam's diagonal metric), so a proximal step
is the exact minimiser of ½ Σ_i (θ_i - z_i)²/η_i + R(θ): scaled consistently with the penalty, and it
sets entries exactly to 0. `none` is identically 0 (its targets only say where sparsity is measured).
The targeted parameters are `regularizer.targets`, by default (null) the model's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ..components import check, one_of, variant
from ..contracts import Params, Regularizer
from ..maths import soft_threshold
from . import Penalty, RegularizerConfig, activity_weight


@dataclass
class L1Config(RegularizerConfig):
    _target_: str = "rnn_sparsity.regularizers.elastic_net.L1"
    name: str = "l1"
    reduction: str = "mean"  # mean | sum over the targeted entries
    weight_decay: float = 0.0  # ω >= 0: + ω (1-r) λ c θ on the gradient, not the loss (penalty mode)


@dataclass
class ElasticNetConfig(L1Config):
    _target_: str = "rnn_sparsity.regularizers.elastic_net.ElasticNet"
    name: str = "elastic_net"
    l1_ratio: float = 0.5  # r: λ (r |θ| + (1 - r) θ²) (traced)


class ElasticNet(Penalty):
    Config = ElasticNetConfig
    traced = (*Penalty.traced, "l1_ratio")
    fixed_ratio: ClassVar[float | None] = None  # r, where the regularizer fixes it

    def check(self, parts) -> None:
        super().check(parts)
        one_of(self.cfg, "regularizer.reduction", ("mean", "sum"))
        decay = self.group_cfg.weight_decay
        check(decay >= 0, "regularizer.weight_decay", decay, "must be >= 0")
        check(decay == 0 or self.group_cfg.mode == "penalty", "regularizer.weight_decay", decay,
              "must be 0 in proximal mode (it acts on the gradient of the penalty)")
        if self.fixed_ratio is None:
            r = self.group_cfg.l1_ratio
            check(0.0 <= r <= 1.0, "regularizer.l1_ratio", r, "must satisfy 0 <= r <= 1")

    def build(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...] = ()) -> Regularizer:
        """R over `regularizer.targets`, or over the model's `weights` (Model.weight_names) where it is null."""
        return elastic_net(self.known_targets(param_shapes, weights), param_shapes, self.group_cfg.reduction,
                           self.fixed_ratio, float(self.group_cfg.weight_decay))


class L1(ElasticNet):
    Config = L1Config
    traced = Penalty.traced
    fixed_ratio = 1.0


class L2(ElasticNet):
    Config = variant(L1Config, "rnn_sparsity.regularizers.elastic_net.L2", "l2")
    traced = Penalty.traced
    fixed_ratio = 0.0


class NoRegularizer(ElasticNet):
    Config = variant(L1Config, "rnn_sparsity.regularizers.elastic_net.NoRegularizer", "none")
    traced = Penalty.traced
    fixed_ratio = 0.0

    def build(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...] = ()) -> Regularizer:
        """R = 0; its targets (the named ones the model has; none where null, whatever `weights`) only say
        where sparsity is measured, and with none it is measured over every parameter (or the masked ones)."""
        named = self.group_cfg.targets or ()
        targets = tuple(t for t in named if t in param_shapes)  # never read by a penalty

        def penalty(params: Params, hyper: dict) -> jax.Array:
            return jnp.zeros((), next(iter(params.values())).dtype)

        return Regularizer(penalty=penalty, prox=lambda params, hyper, step: params, targets=targets, state_weight=activity_weight)


def elastic_net(targets: tuple[str, ...], param_shapes, reduction: str, fixed_ratio: float | None,
                weight_decay: float = 0.0) -> Regularizer:
    """R and prox_{ηR} of the module docstring; r = hyper["l1_ratio"] unless fixed. With weight_decay
    ω > 0 the penalty's value stays R(θ) and its gradient gains ω (1 - r) λ c θ (module docstring)."""
    n_entries = Penalty.entries(param_shapes, targets)
    scale = 1.0 / max(n_entries, 1) if reduction == "mean" else 1.0

    def coefficients(hyper: dict):
        r = hyper["l1_ratio"] if fixed_ratio is None else fixed_ratio
        return hyper["strength"] * scale, r

    def penalty(params: Params, hyper: dict) -> jax.Array:
        lam, r = coefficients(hyper)
        value = lam * sum(jnp.sum(r * jnp.abs(params[t]) + (1 - r) * params[t] ** 2) for t in targets)
        if weight_decay and fixed_ratio != 1.0:
            # ½ ω (1-r) λ c (Σθ² - the same held constant): 0 in value, ω (1-r) λ c θ in the gradient
            squares = sum(jnp.sum(params[t] ** 2) for t in targets)
            value = value + 0.5 * weight_decay * (1 - r) * lam * (squares - jax.lax.stop_gradient(squares))
        return value

    def prox(params: Params, hyper: dict, step: Any) -> Params:
        lam, r = coefficients(hyper)
        out = dict(params)
        for t in targets:
            eta = step[t] if isinstance(step, dict) else step
            out[t] = soft_threshold(params[t], eta * lam * r) / (1 + 2 * eta * lam * (1 - r))
        return out

    return Regularizer(penalty=penalty, prox=prox, targets=targets, state_weight=activity_weight)
