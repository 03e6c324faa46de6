"""The lottery ticket (Frankle & Carbin 2019): iterative magnitude pruning with rewinding.

Round 0 trains the network. Each round r = 1..L then prunes the trained weights of round r−1 by magnitude
to the sparsity s_r = 1 − (1 − s)^(r/L) (each round removes the fraction p = 1 − (1 − s)^(1/L) of the
survivors; round L reaches s), rewinds every parameter to its initial value θ0 (`rewind: init`) or to
its value after k steps of round 0 (`rewind: step`, `rewind_step: k`, Frankle et al. 2019's rewinding),
the pruned ones to 0, and trains again with the optimizer's full schedule (its state afresh). Two
variants share the machinery: `rewind: none` goes on from the trained weights instead (train, prune,
fine-tune: Han et al. 2015's iterative pruning; one round is one-shot pruning of a trained network), and
`criterion: random` prunes entries at random with the same counts (the random control of either). With
`reinit_control: true` each round r >= 1 is preceded by its control: the same masks with a fresh draw of
θ0, trained the same way (the paper's "random reinitialisation").

The trainer runs the optimizer's stages once per training (contracts.Pruner.blocks); history rows carry
their round, a control's stages are named reinit/<stage>. Every training's best parameters are kept (in
the pruner's state, so a run killed mid-round resumes where it was), and experiment.evaluate scores each:
metrics round<r>_* and reinit<r>_*. The final sparsity s is traced; L, the rewind, k, the criterion and the control are static.

Departures from Frankle & Carbin: every round trains the whole schedule, also after a rewind to step k
(they train the remaining T − k steps); all targets prune at one rate (they prune output layers at half
the rate of the others).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..components import check, one_of
from ..contracts import Pruner
from ..pruning import lottery_sparsity, magnitude_scores, prune_masks, random_scores
from ..pruning import rewind as rewind_to
from . import SPARSITY_RANGE, PrunerConfig, Pruning


@dataclass
class LotteryConfig(PrunerConfig):
    _target_: str = "rnn_sparsity.pruners.lottery.Lottery"
    name: str = "lottery"
    sparsity: float = 0.8  # s (traced): the targets' sparsity after the last round
    rounds: int = 5  # L: prune-rewind-retrain rounds after the first training (L + 1 trainings)
    rewind: str = "init"  # init: each round from θ0 | step: from θ after rewind_step steps of round 0 |
    #                       none: from the round before's trained weights (iterative pruning with fine-tuning)
    rewind_step: int = 0  # k >= 1 with rewind: step
    criterion: str = "magnitude"  # magnitude: prune the smallest trained |w| | random: entries at random (the control)
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


def lottery(targets: tuple[str, ...], scope: str, rounds: int, rewind: str, rewind_step: int, criterion: str,
            control: bool) -> Pruner:
    """The Pruner: `rewind` init | step (to θ after `rewind_step` steps) | none (fine-tuning), `criterion`
    magnitude | random, `control` a reinit control before each round."""
    blocks = lottery_blocks(rounds, control)
    rewind_step = rewind_step if rewind == "step" else 0
    first = {r: min(b for b, (_, rr) in enumerate(blocks) if rr == r) for r in range(rounds + 1)}  # round r's first training

    def init(key, params, masks, hyper):
        state = {"masks": stack_rows(masks, rounds + 1), "trained": stack_rows(params, len(blocks) - 1),
                 "key": jax.random.key_data(key)}
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
            key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), r)
            scores = magnitude_scores(trained, targets) if criterion == "magnitude" else random_scores(key, trained, targets)
            new = prune_masks(scores, before, lottery_sparsity(hyper["sparsity"], r, rounds), scope)
            state["masks"] = jax.tree.map(lambda rows, m: rows.at[r].set(m), state["masks"], new)
        else:
            new = jax.tree.map(lambda rows: rows[r], state["masks"])
        if kind == "reinit":
            return rewind_to(fresh(r), new), new, state
        if rewind == "none":  # go on from the trained weights of round r−1 (its best), pruned
            previous = jax.tree.map(lambda rows: rows[first[r] - 1], state["trained"])
            return rewind_to(previous, new), new, state
        return rewind_to(state["rewind"] if rewind_step else initial, new), new, state

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
        one_of(self.cfg, "pruner.rewind", ("init", "step", "none"))
        one_of(self.cfg, "pruner.criterion", ("magnitude", "random"))
        if cfg.rewind == "step":
            check(cfg.rewind_step >= 1, "pruner.rewind_step", cfg.rewind_step, "must be >= 1 with pruner.rewind=step")
            self.check_step(parts, "pruner.rewind_step", cfg.rewind_step)

    def build(self, param_shapes, weights=()) -> Pruner:
        cfg = self.group_cfg
        return lottery(self.targets(param_shapes, weights), cfg.scope, int(cfg.rounds), str(cfg.rewind),
                       int(cfg.rewind_step), str(cfg.criterion), bool(cfg.reinit_control))

    def method(self) -> str:
        """lottery, lottery (rewind k), magnitude (retrained) for fine-tuning; random ... for the random criterion."""
        cfg = self.group_cfg
        kind = {"init": "lottery", "step": f"lottery (rewind {cfg.rewind_step})", "none": "retrained"}[cfg.rewind]
        if cfg.criterion == "random":
            return f"random ({kind})"
        return "magnitude (retrained)" if cfg.rewind == "none" else kind
