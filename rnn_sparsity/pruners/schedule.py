"""Pruners that act at steps of one training: none, magnitude (one shot, then training goes on with the
mask: fine-tuning), random (the control: a prune of the same counts at random entries) and gradual
(Zhu & Gupta 2017). One formula: before step t of the schedule, where the pruner is due, the targets are
pruned to a sparsity s(t) by a score, per tensor or globally (pruning.prune_masks):

    magnitude   s(t) = s at t = pruner.step                        score |w|
    random      s(t) = s at t = pruner.step                        score uniform noise
    gradual     s(t) = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ at t = t0 + jΔt, j = 0..n     score |w|

The sparsities are traced (a grid over s is one compiled program); the steps are static. A prune starts
the run's best-so-far tracking afresh, so what a run returns was trained with its final masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar


from ..components import check
from ..contracts import Pruner
from ..pruning import magnitude_scores, polynomial_sparsity, prune_masks, random_scores
from . import SPARSITY_RANGE, PrunerConfig, Pruners, Pruning


@dataclass
class NoPrunerConfig:
    _target_: str = "rnn_sparsity.pruners.schedule.NoPruner"
    name: str = "none"


class NoPruner(Pruners):
    """No pruning: the masks are the structural ones (model.sparsity) throughout."""

    Config = NoPrunerConfig

    def build(self, param_shapes, weights=()) -> Pruner:
        return Pruner()

    def method(self) -> str:
        """The regularizer's name (and `proximal` where it is): a run without a pruner is as sparse as its
        regularizer makes it."""
        reg = self.cfg.regularizer
        return f"{reg.name} (proximal)" if reg.get("mode") == "proximal" else str(reg.name)


def scheduled(targets: tuple[str, ...], scope: str, due: Callable, sparsity_at: Callable, criterion: str) -> Pruner:
    """A Pruner that prunes its targets to sparsity_at(hyper, clock) by `criterion` where due(clock)."""

    def act(clock, params, masks, state, hyper, key):
        scores = magnitude_scores(params, targets) if criterion == "magnitude" else random_scores(key, params, targets)
        return prune_masks(scores, masks, sparsity_at(hyper, clock), scope), state

    return Pruner(targets=targets, due=due, act=act)


@dataclass
class MagnitudeConfig(PrunerConfig):
    _target_: str = "rnn_sparsity.pruners.schedule.Magnitude"
    name: str = "magnitude"
    sparsity: float = 0.5  # s (traced): the fraction of the targets' entries that are 0 after the prune
    step: int = 0  # t: it prunes after t steps (0: at initialisation), then training goes on with the mask


class Magnitude(Pruning):
    """One shot: after `step` steps the targets' ⌊s·n⌋ smallest |w| are pruned (per tensor or global)."""

    Config = MagnitudeConfig
    traced = ("sparsity",)
    criterion: ClassVar[str] = "magnitude"

    def check(self, parts) -> None:
        super().check(parts)
        s = self.group_cfg.sparsity
        check(0.0 <= s < 1.0, "pruner.sparsity", s, SPARSITY_RANGE)
        self.check_step(parts, "pruner.step", self.group_cfg.step)

    def build(self, param_shapes, weights=()) -> Pruner:
        step = int(self.group_cfg.step)
        return scheduled(self.targets(param_shapes, weights), self.group_cfg.scope, lambda clock: clock == step,
                         lambda hyper, clock: hyper["sparsity"], self.criterion)


@dataclass
class RandomConfig(MagnitudeConfig):
    _target_: str = "rnn_sparsity.pruners.schedule.RandomPruner"
    name: str = "random"


class RandomPruner(Magnitude):
    """The control of a magnitude prune: the same counts (per tensor, or across the targets with scope
    global) at entries drawn at random (from the run's key and the step)."""

    Config = RandomConfig
    criterion = "random"


@dataclass
class GradualConfig(PrunerConfig):
    _target_: str = "rnn_sparsity.pruners.schedule.Gradual"
    name: str = "gradual"
    initial_sparsity: float = 0.0  # s_i (traced): the first prune's target, at t0
    sparsity: float = 0.9  # s_f (traced): the last prune's target, at t0 + nΔt: the sparsity the run ends at
    start: int = 0  # t0: the step of the first prune
    every: int = 50  # Δt: steps between prunes
    prunes: int = 10  # n: prunes after the first (n + 1 in all)


class Gradual(Pruning):
    """Zhu & Gupta's gradual magnitude pruning: s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ at
    t = t0 + jΔt, j = 0..n, each prune removing the smallest |w| of the survivors up to s_t."""

    Config = GradualConfig
    traced = ("initial_sparsity", "sparsity")

    def check(self, parts) -> None:
        super().check(parts)
        cfg = self.group_cfg
        check(0.0 <= cfg.initial_sparsity < 1.0, "pruner.initial_sparsity", cfg.initial_sparsity, SPARSITY_RANGE)
        check(cfg.initial_sparsity <= cfg.sparsity < 1.0, "pruner.sparsity", cfg.sparsity,
              f"must satisfy initial_sparsity ({cfg.initial_sparsity}) <= s_f < 1")
        check(cfg.every >= 1, "pruner.every", cfg.every, "must be >= 1")
        check(cfg.prunes >= 1, "pruner.prunes", cfg.prunes, "must be >= 1")
        check(cfg.start >= 0, "pruner.start", cfg.start, "must be >= 0")
        name, steps = self.first_stage(parts)
        last = cfg.start + cfg.prunes * cfg.every
        check(last < steps, "pruner.prunes", cfg.prunes, f"the last prune, at start + prunes · every = {last}, must "
              f"come before the end of the optimizer's first stage ({name}, {steps} steps)")

    def build(self, param_shapes, weights=()) -> Pruner:
        t0, every, n = int(self.group_cfg.start), int(self.group_cfg.every), int(self.group_cfg.prunes)

        def due(clock):
            return (clock >= t0) & (clock <= t0 + n * every) & ((clock - t0) % every == 0)

        def sparsity_at(hyper, clock):
            return polynomial_sparsity(clock, hyper["initial_sparsity"], hyper["sparsity"], t0, n, every)

        return scheduled(self.targets(param_shapes, weights), self.group_cfg.scope, due, sparsity_at, "magnitude")
