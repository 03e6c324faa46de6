"""The maths of pruning (rnn_sparsity/pruning.py) against NumPy done by hand: exact counts, the smallest
|w| removed, the schedule's formula, the random control's counts, a lottery round and its rewind."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_sparsity.pruning import lottery_sparsity, magnitude_scores, polynomial_sparsity, prune_masks, random_scores, rewind


def magnitude_masks(params, targets, sparsity, scope="tensor"):
    """A magnitude prune from all-1 masks, as the pruners call it (an entry whose value is 0 still ranks smallest)."""
    ones = {t: jnp.ones(params[t].shape, params[t].dtype) for t in targets}
    return prune_masks(magnitude_scores(params, targets), ones, sparsity, scope)


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"J": rng.normal(size=(12, 12)).astype(np.float32), "w": rng.normal(size=(7,)).astype(np.float32)}


def smallest(values: np.ndarray, k: int) -> set[int]:
    """Indices of the k smallest |values| (flat), ties by position: what a prune removes."""
    return set(np.argsort(np.abs(values).ravel(), kind="stable")[:k].tolist())


@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_a_per_tensor_prune_zeroes_exactly_the_floor_s_n_smallest_of_each_tensor(s):
    params = weights()
    masks = magnitude_masks(params, ["J", "w"], s)
    for name, value in params.items():
        k = int(np.floor(s * value.size + 1e-9))
        zeroed = set(np.flatnonzero(np.asarray(masks[name]).ravel() == 0).tolist())
        assert zeroed == smallest(value, k)
        assert masks[name].dtype == value.dtype and masks[name].shape == value.shape


@pytest.mark.parametrize("s", [0.25, 0.6])
def test_a_global_prune_zeroes_the_floor_s_n_smallest_across_the_targets(s):
    params = weights(1)
    params["w"] = params["w"] * 10  # a tensor of larger weights: a global prune spares it, a per-tensor one does not
    masks = magnitude_masks(params, ["J", "w"], s, scope="global")
    flat = np.concatenate([params["J"].ravel(), params["w"].ravel()])
    kept = np.concatenate([np.asarray(masks["J"]).ravel(), np.asarray(masks["w"]).ravel()])
    assert set(np.flatnonzero(kept == 0).tolist()) == smallest(flat, int(np.floor(s * flat.size)))
    per_tensor = magnitude_masks(params, ["J", "w"], s)
    assert int(np.sum(np.asarray(masks["w"]) == 0)) < int(np.sum(np.asarray(per_tensor["w"]) == 0))


def test_the_target_sparsity_is_traced_under_vmap():
    params = weights(2)
    sparsities = jnp.array([0.1, 0.5, 0.8])
    batched = jax.vmap(lambda s: magnitude_masks(params, ["J"], s)["J"])(sparsities)
    for i, s in enumerate(sparsities):
        np.testing.assert_array_equal(batched[i], magnitude_masks(params, ["J"], float(s))["J"])
        assert int(np.sum(np.asarray(batched[i]) == 0)) == int(np.floor(float(s) * 144))


def test_already_zero_entries_count_among_the_smallest():
    params = weights(3)
    params["J"][:3] = 0.0  # 36 entries masked before: a prune to 0.5 adds 36 more
    masks = magnitude_masks(params, ["J"], 0.5)
    assert np.all(np.asarray(masks["J"])[:3] == 0) and int(np.sum(np.asarray(masks["J"]) == 0)) == 72


def test_the_gradual_schedule_is_zhu_and_gupta_s_formula_at_every_pruning_step():
    s_i, s_f, t0, n, dt = 0.0, 0.9, 100, 10, 50
    for j in range(n + 1):
        t = t0 + j * dt
        expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
        assert float(polynomial_sparsity(t, s_i, s_f, t0, n, dt)) == pytest.approx(expected, abs=1e-7)
    assert float(polynomial_sparsity(0, s_i, s_f, t0, n, dt)) == s_i  # before t0
    assert float(polynomial_sparsity(t0 + 10 * n * dt, s_i, s_f, t0, n, dt)) == pytest.approx(s_f)  # after the end
    steps = [float(polynomial_sparsity(t0 + j * dt, s_i, s_f, t0, n, dt)) for j in range(n + 1)]
    assert all(a < b for a, b in zip(steps, steps[1:]))  # it rises fast, then slowly
    assert steps[1] - steps[0] > steps[-1] - steps[-2]


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_the_random_control_has_the_counts_of_a_magnitude_prune_at_other_positions(scope):
    params = weights(4)
    masks = magnitude_masks(params, ["J", "w"], 0.7, scope=scope)
    ones = {t: jnp.ones(params[t].shape, params[t].dtype) for t in ["J", "w"]}
    control = prune_masks(random_scores(jax.random.key(0), params, ["J", "w"]), ones, 0.7, scope=scope)
    if scope == "tensor":
        for t in masks:
            assert int(np.sum(np.asarray(control[t]) == 0)) == int(np.sum(np.asarray(masks[t]) == 0)) == int(np.floor(0.7 * params[t].size))
    else:
        assert sum(int(np.sum(np.asarray(control[t]) == 0)) for t in masks) == int(np.floor(0.7 * 151))
    assert not np.array_equal(control["J"], masks["J"])
    again = prune_masks(random_scores(jax.random.key(1), params, ["J", "w"]), ones, 0.7, scope=scope)
    assert not np.array_equal(again["J"], control["J"])


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_a_prune_from_masks_removes_the_smallest_survivors_up_to_the_count_and_revives_none(scope):
    params = weights(5)
    masks = magnitude_masks(params, ["J", "w"], 0.5, scope=scope)
    trained = {t: v * 3.0 + 1.0 for t, v in weights(6).items()}  # other magnitudes after training
    new = prune_masks(magnitude_scores(trained, ["J", "w"]), masks, 0.6, scope=scope)
    for t in masks:
        assert np.all(np.asarray(new[t])[np.asarray(masks[t]) == 0] == 0)  # pruned stays pruned
    alive = {t: np.asarray(masks[t]) > 0 for t in masks}
    if scope == "tensor":
        for t in masks:
            n = trained[t].size
            dropped = set(np.flatnonzero(alive[t].ravel() & (np.asarray(new[t]).ravel() == 0)).tolist())
            survivors = np.flatnonzero(alive[t].ravel())
            order = survivors[np.argsort(np.abs(trained[t].ravel()[survivors]), kind="stable")]
            assert dropped == set(order[:int(np.floor(0.6 * n)) - int(np.floor(0.5 * n))].tolist())
    else:
        n = sum(v.size for v in trained.values())
        assert sum(int(np.sum(np.asarray(new[t]) == 0)) for t in masks) == int(np.floor(0.6 * n))
        biggest_dropped = max(float(np.abs(trained[t])[alive[t] & (np.asarray(new[t]) == 0)].max(initial=0)) for t in masks)
        smallest_kept = min(float(np.abs(trained[t])[np.asarray(new[t]) > 0].min()) for t in masks)
        assert biggest_dropped <= smallest_kept
    fewer = prune_masks(magnitude_scores(trained, ["J", "w"]), masks, 0.2, scope=scope)  # below the zeros there
    for t in masks:
        np.testing.assert_array_equal(fewer[t], masks[t])


def test_lottery_rounds_prune_a_fixed_fraction_of_the_survivors_and_end_at_the_target():
    s, rounds = 0.9, 4
    levels = [float(lottery_sparsity(s, r, rounds)) for r in range(rounds + 1)]
    assert levels[0] == 0.0 and levels[-1] == pytest.approx(s)
    p = 1 - (1 - s) ** (1 / rounds)
    for before, after in zip(levels, levels[1:]):
        assert (after - before) / (1 - before) == pytest.approx(p)  # p of the survivors each round


def test_a_rewind_restores_the_reference_of_every_parameter_and_zero_where_pruned():
    init, trained = weights(7), {t: v + 5.0 for t, v in weights(8).items()}
    masks = magnitude_masks(trained, ["J"], 0.6)
    back = rewind({**init, "b": np.ones(3, np.float32)}, masks)
    kept = np.asarray(masks["J"]) > 0
    np.testing.assert_array_equal(np.asarray(back["J"])[kept], init["J"][kept])
    assert np.all(np.asarray(back["J"])[~kept] == 0)
    np.testing.assert_array_equal(back["w"], init["w"])  # not pruned, still rewound (Frankle & Carbin reset all)
    np.testing.assert_array_equal(back["b"], np.ones(3))
