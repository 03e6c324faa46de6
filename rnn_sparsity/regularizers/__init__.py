"""Regularizer components: a penalty R(θ) and its proximal operator over the parameters named in
`regularizer.targets` (contracts.Regularizer). elastic_net.py holds none, l1, l2 and elastic_net (one
formula, one prox); drr.py the DRR penalty of the teacher-student studies. Regularizers know nothing of
models or tasks: they see a dict of arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..components import ConfigError, RegularizerComponent, check, non_negative, one_of


@dataclass
class RegularizerConfig:
    """The keys every regularizer has."""
    _target_: str = ""
    name: str = ""
    strength: float = 0.0  # λ (traced)
    targets: list[str] = field(default_factory=lambda: ["J"])  # parameter names the penalty acts on
    mode: str = "penalty"  # penalty (added to the loss) | proximal (its prox after each update)
    activity: float = 0.0  # κ: adds κ · mean squared rate over the loss-weighted steps (models with rates, traced)


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
        check(len(reg.targets) > 0, "regularizer.targets", list(reg.targets), "must name at least one parameter")

    def known_targets(self, param_shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
        targets = tuple(self.group_cfg.targets)
        unknown = [t for t in targets if t not in param_shapes]
        if unknown:
            raise ConfigError("regularizer.targets", list(targets),
                              f"names must be parameters of the model: {', '.join(param_shapes)}")
        return targets

    @staticmethod
    def entries(param_shapes, targets) -> int:
        return sum(math.prod(param_shapes[t]) for t in targets)
