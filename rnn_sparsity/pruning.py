"""The maths of pruning, pure and jit/vmap-able in the target sparsity: which entries a prune removes
(per tensor or globally across the targets) by a score (|w|: magnitude pruning; uniform noise: the random
control), Zhu & Gupta's polynomial schedule, a lottery run's sparsity per round and its rewind. Masks are
arrays of 0/1 in the parameters' dtype (as the structural mask M); a prune never revives an entry.

Counts are exact: a prune to sparsity s of n entries leaves ⌊s·n⌋ of them 0 — those already 0 in the mask
first, then the surviving entries of smallest score (ties broken by position, first first) — so a target
is met to the entry, not approximately, also under vmap where s is traced. Ground floor: imports nothing
of the package.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

Params = Mapping[str, jax.Array]


def ranks(scores: jax.Array) -> jax.Array:
    """The rank of each entry of a flat array in ascending order (0: the smallest); equal scores are
    ranked by position (a stable sort), so every rank appears once."""
    order = jnp.argsort(scores, stable=True)
    return jnp.zeros(scores.shape, jnp.int32).at[order].set(jnp.arange(scores.size, dtype=jnp.int32))


def count_at(sparsity, n) -> jax.Array:
    """⌊s·n⌋ (s, and n, may be traced): how many of n entries a prune to sparsity s leaves at 0. 1e-9 is
    added before the floor so that an s·n that is whole in exact arithmetic (0.3 · 10) is not one short."""
    return jnp.floor(jnp.asarray(sparsity) * n + 1e-9).astype(jnp.int32)


def smallest_mask(scores: jax.Array, k) -> jax.Array:
    """0 where an entry is among the k smallest scores, 1 elsewhere (same shape as scores, float)."""
    keep = ranks(scores.ravel()) >= k
    return keep.reshape(scores.shape).astype(scores.dtype)


def masks_of_scores(scores: Mapping[str, jax.Array], sparsity, scope: str) -> dict[str, jax.Array]:
    """0 for the ⌊s·n⌋ smallest scores of each tensor's n entries (scope "tensor") or of all the
    tensors' entries together (scope "global"), 1 elsewhere; each mask in its tensor's shape."""
    if scope == "tensor":
        return {t: smallest_mask(v, count_at(sparsity, v.size)) for t, v in scores.items()}
    if scope != "global":
        raise ValueError(f"scope must be tensor or global, not {scope!r}")
    flat = jnp.concatenate([v.ravel() for v in scores.values()])
    keep = smallest_mask(flat, count_at(sparsity, flat.size))
    masks, start = {}, 0
    for t, v in scores.items():
        masks[t] = keep[start:start + v.size].reshape(v.shape)
        start += v.size
    return masks


def prune_masks(scores: Mapping[str, jax.Array], masks: Mapping[str, jax.Array], sparsity,
                scope: str = "tensor") -> dict[str, jax.Array]:
    """The masks after a prune to sparsity s: ⌊s·n⌋ of the n entries 0 (per tensor, or of all the
    targets together): the entries already 0 in `masks` count first (they rank below every score), then
    the survivors of smallest score. A pruned entry stays pruned (where ⌊s·n⌋ is below the zeros already
    there, nothing more is pruned)."""
    ranked = {t: jnp.where(m > 0, scores[t], -jnp.inf) for t, m in masks.items()}
    new = masks_of_scores(ranked, sparsity, scope)
    return {t: (new[t] * m).astype(m.dtype) for t, m in masks.items()}


def magnitude_scores(params: Params, targets: Sequence[str]) -> dict[str, jax.Array]:
    """|w| of each target: magnitude pruning removes the smallest."""
    return {t: jnp.abs(params[t]) for t in targets}


def random_scores(key: jax.Array, params: Params, targets: Sequence[str]) -> dict[str, jax.Array]:
    """Uniform noise in each target's shape: a prune by it removes entries at random, with the counts of
    a magnitude prune of the same sparsity and scope (the random control)."""
    keys = jax.random.split(key, len(targets))
    return {t: jax.random.uniform(k, params[t].shape) for k, t in zip(keys, targets)}


def polynomial_sparsity(step, initial, final, start, n_prunes: int, every: int) -> jax.Array:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ for t0 <= t <= t0 + nΔt; s_i
    before t0, s_f after. The schedule prunes at t = t0 + jΔt, j = 0..n."""
    progress = jnp.clip((jnp.asarray(step) - start) / (n_prunes * every), 0.0, 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def lottery_sparsity(final, round_: int, rounds: int) -> jax.Array:
    """The sparsity after round r of L of iterative magnitude pruning to a final sparsity s:
    1 − (1 − s)^(r/L), i.e. each round prunes the fraction p = 1 − (1 − s)^(1/L) of the survivors
    (Frankle & Carbin's p% per round) and round L reaches s."""
    return 1.0 - (1.0 - jnp.asarray(final)) ** (round_ / rounds)


def rewind(reference: Params, masks: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """A lottery ticket's rewind: every parameter back to `reference` (its initial value, or its value
    at an early step k), the masked ones times their mask."""
    return {name: value * masks[name] if name in masks else value for name, value in reference.items()}
