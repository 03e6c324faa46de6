"""Regularizer components: a penalty R(θ) and its proximal operator over the parameters named in
`regularizer.targets` (contracts.Regularizer), by default (null) the model's weights: the CTRNN's J, the
MLP, CNN and Flax students' weight matrices and kernels (not their biases), the low-rank model's U and V.
elastic_net.py holds none, l1, l2 and elastic_net (one formula, one prox); drr.py the DRR penalty of the
teacher-student studies. Regularizers know nothing of models or tasks: they see a dict of arrays and the
names of the model's weights (contracts.Model.weight_names), which the trainer hands to `build`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..components import RegularizerComponent, check, non_negative, one_of, parameter_targets


@dataclass
class RegularizerConfig:
    """The keys every regularizer has."""
    _target_: str = ""
    name: str = ""
    strength: float = 0.0  # λ (traced)
    targets: list[str] | None = None  # parameter names the penalty acts on; null: the model's weights
    mode: str = "penalty"  # penalty (added to the loss) | proximal (its prox after each update)
    activity: float = 0.0  # κ: adds κ · mean squared rate over the loss-weighted steps (models with rates, traced)


def activity_weight(hyper: dict):
    """κ = regularizer.activity: every built-in regularizer's weight of the state penalty (Regularizer.state_weight)."""
    return hyper["activity"]


class Penalty(RegularizerComponent):
    """Checks and traced values shared by every regularizer (RegularizerConfig's keys)."""

    traced: ClassVar[tuple[str, ...]] = ("strength", "activity")

    def check(self, parts) -> None:
        reg, cfg = self.group_cfg, self.cfg
        non_negative(cfg, "regularizer.strength")
        non_negative(cfg, "regularizer.activity")
        check(reg.activity == 0 or parts.model.has_rates, "regularizer.activity", reg.activity,
              f"must be 0 for model={cfg.model.get('name')}: it has no rates to penalise")
        one_of(cfg, "regularizer.mode", ("penalty", "proximal"))
        check(reg.mode == "penalty" or self.proximal_operator, "regularizer.mode", reg.mode,
              f"regularizer={reg.name} has no proximal operator: use penalty")
        check(reg.targets is None or len(reg.targets) > 0, "regularizer.targets", reg.targets,
              "must name at least one parameter (or be null: the model's weights)")

    def known_targets(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...]) -> tuple[str, ...]:
        """`regularizer.targets`, or the model's `weights` where it is null; a name that is not a parameter
        of the model is refused, the message listing those that are."""
        return parameter_targets("regularizer.targets", self.group_cfg.targets, param_shapes, weights)

    @staticmethod
    def entries(param_shapes, targets) -> int:
        return sum(math.prod(param_shapes[t]) for t in targets)
