"""The lottery ticket (Frankle & Carbin 2019): iterative magnitude pruning with rewinding.

Round 0 trains the network. Each round r = 1..L then prunes the trained weights of round r−1 by magnitude
to the sparsity s_r = 1 − (1 − s)^(r/L) (each round removes the fraction p = 1 − (1 − s)^(1/L) of the
survivors; round L reaches s), rewinds every parameter to its initial value θ0 (`rewind_step: 0`) or to
its value after k steps of round 0 (`rewind_step: k`, Frankle et al. 2019's rewinding), the pruned ones to
0, and trains again with the optimizer's full schedule (its state afresh). With `reinit_control: true` each
round r >= 1 is preceded by its control: the same masks with a fresh draw of θ0, trained the same way
(the paper's "random reinitialisation").

The trainer runs the optimizer's stages once per training (contracts.Pruner.blocks); history rows carry
their round, a control's stages are named reinit/<stage>. Every training's best parameters are kept (in
the pruner's state, so a run killed mid-round resumes where it was), and experiment.evaluate scores each:
metrics round<r>_* and reinit<r>_*. The final sparsity s is traced; L, k and the control are static.

Departures from Frankle & Carbin: every round trains the whole schedule, also after a rewind to step k
(they train the remaining T − k steps); all targets prune at one rate (they prune output layers at half
the rate of the others).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..components import check
from ..contracts import Pruner
from ..pruning import lottery_sparsity, magnitude_scores, prune_masks, rewind
from . import SPARSITY_RANGE, PrunerConfig, Pruning


@dataclass
class LotteryConfig(PrunerConfig):
    _target_: str = "rnn_sparsity.pruners.lottery.Lottery"
    name: str = "lottery"
    sparsity: float = 0.8  # s (traced): the targets' sparsity after the last round
    rounds: int = 5  # L: prune-rewind-retrain rounds after the first training (L + 1 trainings)
    rewind_step: int = 0  # k: 0 rewinds to θ0; k > 0 to the parameters after k steps of round 0
    reinit_control: bool = False  # before each round r >= 1, train its masks from a fresh θ0 too


def lottery_blocks(rounds: int, control: bool) -> tuple[tuple[str, int], ...]:
    """The trainings in order: round 0, then for r = 1..L its control (with `control`) and round r, so
    that round r's masks exist (from round r−1) when its control starts and the run ends on round L."""
    blocks = [("round", 0)]
    for r in range(1, rounds + 1):
        blocks += [("reinit", r)] * control + [("round", r)]
    return tuple(blocks)


def stack_rows(tree, n: int):
    """n copies of a pytree's leaves along a new first axis."""
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (n, *leaf.shape)), tree)


def lottery(targets: tuple[str, ...], scope: str, rounds: int, rewind_step: int, control: bool) -> Pruner:
    blocks = lottery_blocks(rounds, control)
    first = {r: min(b for b, (_, rr) in enumerate(blocks) if rr == r) for r in range(rounds + 1)}  # round r's first training

    def init(key, params, masks, hyper):
        state = {"masks": stack_rows(masks, rounds + 1), "trained": stack_rows(params, len(blocks) - 1)}
        if rewind_step:
            state["rewind"] = params  # replaced by the parameters after k steps (act)
        return state

    def note_rewind_point(clock, params, masks, state, hyper, key):
        return masks, {**state, "rewind": params}

    def begin(block, trained, initial, masks, state, hyper, fresh):
        kind, r = blocks[block]
        state = {**state, "trained": jax.tree.map(lambda rows, p: rows.at[block - 1].set(p), state["trained"], trained)}
        if block == first[r]:  # prune round r−1's trained weights (the training that just ended)
            before = jax.tree.map(lambda rows: rows[r - 1], state["masks"])
            new = prune_masks(magnitude_scores(trained, targets), before, lottery_sparsity(hyper["sparsity"], r, rounds), scope)
            state["masks"] = jax.tree.map(lambda rows, m: rows.at[r].set(m), state["masks"], new)
        else:
            new = jax.tree.map(lambda rows: rows[r], state["masks"])
        if kind == "reinit":
            return rewind(fresh(r), new), new, state
        return rewind(state["rewind"] if rewind_step else initial, new), new, state

    def results(state, best, masks):
        out = []
        for b, (_, r) in enumerate(blocks[:-1]):
            out.append(({k: v[b] for k, v in state["trained"].items()}, {t: state["masks"][t][r] for t in targets}))
        return out + [(best, masks)]

    return Pruner(targets=targets, init=init, due=(lambda clock: clock == rewind_step) if rewind_step else None,
                  act=note_rewind_point if rewind_step else None, blocks=blocks, begin=begin, results=results)


class Lottery(Pruning):
    Config = LotteryConfig
    traced = ("sparsity",)
    unplotted_metrics = ("round*_*", "reinit*_*")  # each training's: the lottery table and figure, not one figure each

    def check(self, parts) -> None:
        super().check(parts)
        cfg = self.group_cfg
        check(0.0 <= cfg.sparsity < 1.0, "pruner.sparsity", cfg.sparsity, SPARSITY_RANGE)
        check(cfg.rounds >= 1, "pruner.rounds", cfg.rounds, "must be >= 1")
        if cfg.rewind_step:
            self.check_step(parts, "pruner.rewind_step", cfg.rewind_step)

    def build(self, param_shapes, weights=()) -> Pruner:
        cfg = self.group_cfg
        return lottery(self.targets(param_shapes, weights), cfg.scope, int(cfg.rounds), int(cfg.rewind_step),
                       bool(cfg.reinit_control))

    def method(self) -> str:
        return "lottery" if not self.group_cfg.rewind_step else f"lottery (rewind {self.group_cfg.rewind_step})"
