"""The maths of pruning, pure and jit/vmap-able in the target sparsity: which entries a magnitude prune
removes (per tensor or globally across the targets), Zhu & Gupta's polynomial schedule, the random
control with the same per-tensor counts, and a lottery ticket's rewind. Masks are arrays of 0/1 in the
parameters' dtype (as the structural mask M); a new mask composes with an old one by multiplication.

Counts are exact: a prune to sparsity s of n entries zeroes the ⌊s·n⌋ entries of smallest |w| (ties
broken by position, first first), so a target is met to the entry, not approximately, also under vmap
where s is traced. Ground floor: imports nothing of the package.
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
    """⌊s·n⌋ (s, and n, may be traced): how many of n entries a prune to sparsity s removes. 1e-9 is added
    before the floor so that an s·n that is whole in exact arithmetic (0.3 · 10) is not one short."""
    return jnp.floor(jnp.asarray(sparsity) * n + 1e-9).astype(jnp.int32)


def smallest_mask(scores: jax.Array, k) -> jax.Array:
    """0 where an entry is among the k smallest scores, 1 elsewhere (same shape and dtype as scores)."""
    keep = ranks(scores.ravel()) >= k
    return keep.reshape(scores.shape).astype(scores.dtype)


def masks_of_scores(scores: Mapping[str, jax.Array], count, scope: str) -> dict[str, jax.Array]:
    """0 for the smallest scores, 1 elsewhere: `count(n)` of each tensor's n (scope "tensor"), or of all
    the tensors' entries together (scope "global"); each mask in its tensor's shape. `count` gets the
    scores it ranks, so it may count what they say (a lottery round, its survivors)."""
    if scope == "tensor":
        return {t: smallest_mask(v, count(v)) for t, v in scores.items()}
    if scope != "global":
        raise ValueError(f"scope must be tensor or global, not {scope!r}")
    flat = jnp.concatenate([v.ravel() for v in scores.values()])
    keep = smallest_mask(flat, count(flat))
    masks, start = {}, 0
    for t, v in scores.items():
        masks[t] = keep[start:start + v.size].reshape(v.shape)
        start += v.size
    return masks


def magnitude_masks(params: Params, targets: Sequence[str], sparsity, scope: str = "tensor") -> dict[str, jax.Array]:
    """Masks that zero, for each target (scope "tensor") or across all targets together (scope
    "global"), the ⌊s·n⌋ entries of smallest |w|; entries already zero count among them (a masked or
    pruned weight is a smallest one)."""
    masks = masks_of_scores({t: jnp.abs(params[t]) for t in targets}, lambda v: count_at(sparsity, v.size), scope)
    return {t: m.astype(params[t].dtype) for t, m in masks.items()}


def survivors_masks(params: Params, masks: Mapping[str, jax.Array], fraction, scope: str = "tensor") -> dict[str, jax.Array]:
    """A lottery round: prune ⌊p·m⌋ of the m surviving entries (mask 1) with the smallest |w|, per tensor
    or globally; pruned entries stay pruned. Returns the new masks."""
    scores = {t: jnp.where(m > 0, jnp.abs(params[t]), -jnp.inf) for t, m in masks.items()}  # the pruned rank first

    def count(v):  # the pruned ones, then ⌊p·m⌋ of the m survivors
        alive = jnp.sum(jnp.isfinite(v))
        return v.size - alive + count_at(fraction, alive)

    return {t: m.astype(masks[t].dtype) for t, m in masks_of_scores(scores, count, scope).items()}


def polynomial_sparsity(step, initial, final, start, n_prunes: int, every: int) -> jax.Array:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ for t0 <= t <= t0 + nΔt; s_i
    before t0, s_f after. The schedule prunes at t = t0 + jΔt, j = 0..n."""
    progress = jnp.clip((jnp.asarray(step) - start) / (n_prunes * every), 0.0, 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def random_masks(key: jax.Array, masks: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The random control: each mask's entries in a random order, so each tensor keeps exactly its count
    of zeros (its sparsity) at random positions."""
    keys = jax.random.split(key, len(masks))
    return {t: jax.random.permutation(k, m.ravel()).reshape(m.shape) for k, (t, m) in zip(keys, masks.items())}


def rewind(reference: Params, masks: Mapping[str, jax.Array], params: Params) -> dict[str, jax.Array]:
    """A lottery ticket's rewind: the masked parameters back to `reference` (their initial values, or
    those at an early step k) times their mask; the others as they are."""
    return {name: reference[name] * masks[name] if name in masks else value for name, value in params.items()}
