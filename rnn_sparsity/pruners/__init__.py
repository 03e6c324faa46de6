"""Pruner components: how a run's masks change while it trains (contracts.Pruner), beside the
regularizers that make a network sparse through its loss. schedule.py holds none and the pruners that act
at steps of one training (magnitude: one shot then fine-tuning; random: its control; gradual: Zhu &
Gupta's schedule); lottery.py the lottery ticket's iterative magnitude pruning with rewinding (and its
random re-initialisation control), which retrains the network once per round. The maths is on the ground
floor (rnn_sparsity/pruning.py). Pruners prune `pruner.targets`, by default (null) the model's weights
(ctrnn: J; mlp, cnn, flax: the weight matrices and kernels; lowrank_linear: U, V), and know nothing of
models or tasks: they see a dict of arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..components import PrunerComponent, check, one_of, parameter_targets

SPARSITY_RANGE = "must satisfy 0 <= s < 1 (the fraction of the targets' entries that are 0 after it, structural zeros included)"


@dataclass
class PrunerConfig:
    """The keys every pruner that prunes has."""
    _target_: str = ""
    name: str = ""
    targets: list[str] | None = None  # parameter names it prunes; null: the model's weights
    scope: str = "tensor"  # tensor: each target to the sparsity | global: the targets' entries ranked together


class Pruners(PrunerComponent):
    """The built-in pruners, none included: their sweeps share one comparison of the methods at matched
    sparsity (plots/pruning.py; the aggregator draws an inherited sweep output once)."""

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        from ..plots.pruning import sweep_outputs

        return sweep_outputs(runs, keys, out)


class Pruning(Pruners):
    """Checks shared by every pruner that prunes (PrunerConfig's keys), and where its steps must fall."""

    summary_metrics: ClassVar[tuple[str, ...]] = ("mask_sparsity",)  # the fraction of the targets' mask at 0 (the achieved `sparsity` beside it)

    def check(self, parts) -> None:
        cfg = self.group_cfg
        one_of(self.cfg, "pruner.scope", ("tensor", "global"))
        check(cfg.targets is None or len(cfg.targets) > 0, "pruner.targets", cfg.targets,
              "must name at least one parameter (or be null: the model's weights)")

    def targets(self, param_shapes: dict[str, tuple[int, ...]], weights: tuple[str, ...]) -> tuple[str, ...]:
        return parameter_targets("pruner.targets", self.group_cfg.targets, param_shapes, weights)

    @staticmethod
    def first_stage(parts) -> tuple[str, int]:
        """(name, steps) of the optimizer's first stage: a pruner acts inside it (a later stage, L-BFGS's
        say, would carry a curvature memory of the loss before the prune)."""
        stage = parts.optimizer.stages(parts.regularizer.proximal)[0]
        return stage.name, stage.steps

    def check_step(self, parts, key: str, step: int) -> None:
        """A step at which the pruner acts: 0 <= step < the first stage's steps."""
        name, steps = self.first_stage(parts)
        check(0 <= step < steps, key, step, f"must satisfy 0 <= step < {steps}, the steps of the optimizer's "
              f"first stage ({name}): a pruner acts inside it, after `step` steps")
