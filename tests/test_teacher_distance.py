"""Teacher distances: zero on the symmetries of the network, growing off them; genericity conditions."""

import numpy as np
import pytest

from rnn_sparsity.analysis import teacher_distance as td
from rnn_sparsity.tasks.teachers import teacher_layers


def disguise(layers, widths, rng, flip_signs):
    """A copy of bias-free `layers` with hidden layer l widened to widths[l] by zero units, its units
    shuffled and (flip_signs) sign-flipped: the same function for odd φ. Also returns where each
    teacher unit went (new index of old unit i) per hidden layer."""
    out = [np.array(w, float) for w in layers]
    places = []
    for l, width in enumerate(widths):
        n = out[l].shape[0]
        out[l] = np.vstack([out[l], np.zeros((width - n, out[l].shape[1]))])
        out[l + 1] = np.hstack([out[l + 1], np.zeros((out[l + 1].shape[0], width - n))])
        perm = rng.permutation(width)
        signs = rng.choice([-1.0, 1.0], width) if flip_signs else np.ones(width)
        out[l] = signs[:, None] * out[l][perm]
        out[l + 1] = out[l + 1][:, perm] * signs[None, :]
        places.append(np.argsort(perm))
    return out, places


@pytest.mark.parametrize("name", ["baseline_cnn", "multichannel_cnn", "split_filter_cnn"])
def test_recovery_distance_is_zero_for_a_padded_permuted_copy(name):
    rng = np.random.default_rng(1)
    teacher = teacher_layers(name)
    widths = [w.shape[0] + 5 for w in teacher[:-1]]
    signed, _ = disguise(teacher, widths, rng, flip_signs=True)
    assert td.recovery_distance(signed, teacher, "tanh") == pytest.approx(0.0, abs=1e-12)
    assert td.recovery_distance(signed, teacher, "relu") > 0.1  # relu is not odd: a sign flip is a change
    permuted, _ = disguise(teacher, widths, rng, flip_signs=False)
    assert td.recovery_distance(permuted, teacher, "relu") == pytest.approx(0.0, abs=1e-12)


def test_recovery_distance_ignores_entries_below_zero_tol_and_grows_with_noise():
    rng = np.random.default_rng(2)
    teacher = teacher_layers("multichannel_cnn")
    student, _ = disguise(teacher, [20, 10], rng, flip_signs=True)
    noise = [rng.normal(size=w.shape) for w in student]
    tiny = [np.where(w == 0, 1e-5 * np.sign(e), w) for w, e in zip(student, noise)]  # below zero_tol
    assert td.recovery_distance(tiny, teacher, "tanh", zero_tol=1e-4) == pytest.approx(0.0, abs=1e-12)
    distances = [td.recovery_distance([w + sigma * e for w, e in zip(student, noise)], teacher, "tanh")
                 for sigma in (0.01, 0.03, 0.1, 0.3)]
    assert 0 < distances[0] and np.all(np.diff(distances) > 0)


def test_unmatched_units_add_the_norm_of_their_weights():
    rng = np.random.default_rng(3)
    teacher = teacher_layers("baseline_cnn")
    student, _ = disguise(teacher, [6, 4], rng, flip_signs=False)
    spare_1 = np.flatnonzero(~student[0].any(axis=1))[0]  # padding units of hidden layers 1 and 2
    spare_2 = np.flatnonzero(~student[1].any(axis=1))[0]
    w_in, w_out = rng.uniform(0.1, 0.3, 12), rng.uniform(0.1, 0.3, 4)
    w_out[spare_2] = 0.0
    student[0][spare_1], student[1][:, spare_1] = w_in, w_out
    one = np.sqrt(np.sum(w_in ** 2) + np.sum(w_out ** 2))
    assert td.recovery_distance(student, teacher, "relu") == pytest.approx(one, rel=1e-12)
    # a second spare unit, fed by the first: squares add, the spare-to-spare weight 0.25 counted once
    student[1][spare_2, spare_1], student[2][0, spare_2] = 0.25, 0.2
    two = np.sqrt(one ** 2 + 0.25 ** 2 + 0.2 ** 2)
    assert td.recovery_distance(student, teacher, "relu") == pytest.approx(two, rel=1e-12)


def test_recovery_distance_checks_shapes_and_activation():
    teacher = teacher_layers("baseline_cnn")
    with pytest.raises(ValueError, match="same number of layers"):
        td.recovery_distance(teacher[:2], teacher, "tanh")
    with pytest.raises(ValueError, match="relu, sigmoid, tanh"):
        td.recovery_distance(teacher, teacher, "softplus")


# ------------------------------------------------------------------------------ Study 2: [2, 25, 25, 1] tanh MLP

SIZES = [2, 25, 25, 1]


def random_mlp(seed):
    rng = np.random.default_rng(seed)
    params = {}
    for l, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        params[f"W{l}"] = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        params[f"b{l}"] = rng.normal(size=n_out)
    return params


def mlp_apply(params, x):
    h = np.tanh(x @ params["W1"].T + params["b1"])
    h = np.tanh(h @ params["W2"].T + params["b2"])
    return h @ params["W3"].T + params["b3"]


def permuted_signed_copy(params, seed):
    rng = np.random.default_rng(seed)
    p1, p2 = rng.permutation(25), rng.permutation(25)
    s1, s2 = rng.choice([-1.0, 1.0], 25), rng.choice([-1.0, 1.0], 25)
    return {"W1": s1[:, None] * params["W1"][p1], "b1": s1 * params["b1"][p1],
            "W2": s2[:, None] * params["W2"][p2][:, p1] * s1[None, :], "b2": s2 * params["b2"][p2],
            "W3": params["W3"][:, p2] * s2[None, :], "b3": params["b3"].copy()}


def test_aligned_distance_is_zero_for_a_permuted_signed_copy_while_raw_is_not():
    teacher = random_mlp(0)
    student = permuted_signed_copy(teacher, 1)
    x = np.random.default_rng(2).normal(size=(50, 2))
    np.testing.assert_allclose(mlp_apply(student, x), mlp_apply(teacher, x), atol=1e-12)  # the copy is exact
    assert td.raw_distance(student, teacher) > 1.0
    assert td.aligned_distance(student, teacher) <= 1e-12
    assert td.aligned_distance(student, teacher, flip_signs=False) > 1.0


def test_raw_distance_is_the_sum_of_squared_differences():
    a, b = random_mlp(0), random_mlp(1)
    expected = sum(np.sum((a[k] - b[k]) ** 2) for k in a)
    assert td.raw_distance(a, b) == pytest.approx(expected, rel=1e-12)


def test_align_keeps_the_function_and_never_increases_the_distance():
    x = np.random.default_rng(0).normal(size=(50, 2))
    for seed in range(20):
        student, teacher = random_mlp(2 * seed + 10), random_mlp(2 * seed + 11)
        aligned = td.align(student, teacher)
        np.testing.assert_allclose(mlp_apply(aligned, x), mlp_apply(student, x), atol=1e-12)
        # strictly: on random pairs the greedy alignment itself wins, not the fallback to the student
        assert td.aligned_distance(student, teacher) < td.raw_distance(student, teacher)


def test_align_falls_back_to_the_student_when_greedy_matching_is_worse():
    # swapping the two hidden units gains 4 in layer 1 and loses 200 in layer 2: greedy swaps anyway
    teacher = {"W1": np.eye(2), "b1": np.zeros(2), "W2": np.array([[10.0, 0.0], [0.0, 0.0]]), "b2": np.zeros(2),
               "W3": np.zeros((1, 2)), "b3": np.zeros(1)}
    student = {**teacher, "W1": np.array([[0.0, 1.0], [1.0, 0.0]])}
    greedy, _ = td.align_layers([student["W1"], student["W2"]], [teacher["W1"], teacher["W2"]], True,
                                [student["b1"], student["b2"]], [teacher["b1"], teacher["b2"]])
    assert np.sum((greedy[0] - teacher["W1"]) ** 2) + np.sum((greedy[1] - teacher["W2"]) ** 2) == 200.0
    assert td.raw_distance(student, teacher) == 4.0
    assert td.aligned_distance(student, teacher) == 4.0


def test_align_rejects_mismatched_params():
    teacher = random_mlp(0)
    with pytest.raises(ValueError, match="W1, b1"):
        td.align({"W1": teacher["W1"]}, teacher)


# ------------------------------------------------------------------------------ genericity

def degenerate_params():
    params = random_mlp(5)
    params["W1"][3, 0] = 0.0                                 # a zero weight
    params["b2"][4] = -params["b2"][7]                       # equal |bias| in a layer
    params["W2"][11, 6] = 0.5 * params["W2"][2, 6]           # ratio 1/2 within a column
    params["b1"][0] = 0.0
    return params


def test_degenerate_params_are_made_generic_by_a_small_change():
    params, min_gap = degenerate_params(), 1e-3
    fixed = td.make_generic(params, min_gap=min_gap)
    assert td.is_generic(fixed, min_gap=min_gap) and not td.is_generic(params, min_gap=min_gap)
    for flaw in ("W1", "b1", "b2", "W2"):  # each flaw alone breaks genericity
        assert not td.is_generic({**fixed, flaw: params[flaw]}, min_gap=min_gap), flaw
    for k in params:
        change = np.abs(fixed[k] - params[k])
        assert np.all(change <= 10 * min_gap * np.maximum(1.0, np.abs(params[k]))), k
    assert abs(fixed["W1"][3, 0]) >= min_gap and abs(fixed["b1"][0]) >= min_gap
    assert abs(abs(fixed["b2"][4]) - abs(fixed["b2"][7])) >= min_gap
    assert abs(fixed["W2"][11, 6] / fixed["W2"][2, 6] - 0.5) >= 0.5 * min_gap


def test_generic_params_are_returned_unchanged():
    params = td.make_generic(degenerate_params())
    again = td.make_generic(params)
    assert set(again) == set(params)
    for k in params:
        np.testing.assert_array_equal(again[k], params[k])


def test_simple_ratios_are_the_22_signed_fractions_up_to_4():
    assert len(td.SIMPLE_RATIOS) == 22 and {0.25, 2 / 3, 1.0, 4.0, -0.75} <= set(td.SIMPLE_RATIOS)
    # pairs (0, 1), (0, 2), (1, 2): 1.5 = 3/2 clashes; 2.2 = 11/5 and 2.2/1.5 = 22/15 are not simple
    assert td._ratio_clashes(np.array([[1.0], [1.5], [2.2]]), 1e-3)[:, 0].tolist() == [True, False, False]


# ------------------------------------------------------------------------------ make_generic against the original
# column-by-column implementation, kept here as the reference it must match bit for bit

def reference_ratio_clashes(column, min_gap):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = column[None, :] / column[:, None]  # [j, j'] = w_j' / w_j
    near = np.abs(ratio[..., None] / td.SIMPLE_RATIOS - 1.0) < min_gap
    j, k = np.nonzero(np.triu(np.any(near, axis=-1), 1))
    return list(zip(j.tolist(), k.tolist()))


def reference_separate_biases(b, min_gap):
    order = np.argsort(np.abs(b), kind="stable")
    magnitudes = np.abs(b[order])
    step = min_gap * (1 + 1e-9)
    for i in range(len(magnitudes)):
        magnitudes[i] = max(magnitudes[i], magnitudes[i - 1] + step if i else min_gap)
    out = b.copy()
    out[order] = np.where(b[order] < 0, -1.0, 1.0) * magnitudes
    return out


def reference_nudge_weights(W, min_gap):
    W = np.where(np.abs(W) < min_gap, np.where(W < 0, -min_gap, min_gap), W)
    changed = False
    for k in range(W.shape[1]):
        clashes = reference_ratio_clashes(W[:, k], min_gap)
        if clashes:
            W[clashes[0][1], k] *= 1.0 + 3.0 * min_gap
            changed = True
    return W, changed


def reference_make_generic(params, min_gap=1e-3, max_passes=10_000):
    out = {}
    for name, value in params.items():
        v = np.array(value, dtype=np.float64)
        if v.ndim == 1:
            v = reference_separate_biases(v, min_gap)
        elif v.ndim == 2:
            for _ in range(max_passes):
                v, changed = reference_nudge_weights(v, min_gap)
                if not changed:
                    break
            else:
                raise RuntimeError(f"make_generic: {name} still has simple weight ratios after {max_passes} passes")
        else:
            v = np.where(np.abs(v) < min_gap, np.where(v < 0, -min_gap, min_gap), v)
        out[name] = v
    return out


def reference_is_generic(params, min_gap=1e-3):
    for value in params.values():
        v = np.asarray(value, float)
        if np.any(np.abs(v) < min_gap):
            return False
        if v.ndim == 1 and not np.all(np.diff(np.sort(np.abs(v))) >= min_gap):
            return False
        if v.ndim == 2 and any(reference_ratio_clashes(v[:, k], min_gap) for k in range(v.shape[1])):
            return False
    return True


def glorot_mlp(rng, sizes=SIZES, dtype=np.float64):
    params = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = (rng.normal(size=(n_out, n_in)) * np.sqrt(2 / (n_in + n_out))).astype(dtype)
        params[f"b{l}"] = (0.1 * rng.normal(size=n_out)).astype(dtype)
    return params


def plant_clashes(params, rng, count):
    """Params with `count` flaws planted: weights set to exact ±p/q multiples of another weight of their
    column (or to 0, or below δ), biases set to 0 or to ± another bias of the layer."""
    params = {k: np.array(v) for k, v in params.items()}
    weights = [k for k in params if k.startswith("W") and params[k].shape[0] > 1]
    biases = [k for k in params if k.startswith("b") and params[k].size > 1]
    for _ in range(count):
        kind = rng.integers(6)
        if kind < 4:
            W = params[weights[rng.integers(len(weights))]]
            j, jp = rng.choice(W.shape[0], 2, replace=False)
            k = rng.integers(W.shape[1])
            if kind < 2:
                W[jp, k] = W[j, k] * rng.choice(td.SIMPLE_RATIOS)
            elif kind == 2:
                W[jp, k] = W[j, k] * rng.choice(td.SIMPLE_RATIOS) * (1 + rng.uniform(-2e-3, 2e-3))  # near it
            else:
                W[jp, k] = rng.choice([0.0, 1e-5, -3e-4, 1e-3, -1e-3])
        else:
            b = params[biases[rng.integers(len(biases))]]
            j, jp = rng.choice(b.size, 2, replace=False)
            b[jp] = rng.choice([0.0, 1.0, -1.0, 1.0005]) * b[j] if kind == 4 else rng.choice([0.0, 2e-4, -1e-3])
    return params


def assert_matches_reference(params, **kwargs):
    new, old = td.make_generic(params, **kwargs), reference_make_generic(params, **kwargs)
    assert list(new) == list(old)
    for k in old:
        assert new[k].dtype == old[k].dtype == np.float64, k
        assert np.array_equal(new[k], old[k]), k
    assert td.is_generic(new, kwargs.get("min_gap", 1e-3))
    return new


def test_ratio_clashes_match_the_reference_on_the_band_edges():
    # ratios at r(1 ± δ) and up to two ulps either side, for every simple r, and the ratios that are not numbers
    rng = np.random.default_rng(24)
    gaps = [1e-9, 1e-3, 2 ** -10, 1 / 96, 0.06, 0.3, 1.0, 2.5, 1e308, *10 ** rng.uniform(-8, -1, 6)]
    for min_gap in gaps:
        with np.errstate(over="ignore"):  # inf for δ = 1e308
            x = np.ravel(td.SIMPLE_RATIOS[:, None] * (1 + np.array([-min_gap, min_gap])))
        x = np.concatenate([x + k * np.spacing(x) for k in range(-2, 3)] + [
            td.SIMPLE_RATIOS, rng.uniform(-6, 6, 200), [0.0, -0.0, 1e-300, -1e300, 1e308, np.inf, -np.inf, np.nan]])
        for w in (1.0, -0.37, 3e-3):
            columns = np.stack([np.full_like(x, w), x * w])  # column k: [w, x_k w]
            with np.errstate(over="ignore", invalid="ignore"):  # the reference also forms w_j / w_j'
                expected = [bool(reference_ratio_clashes(columns[:, k], min_gap)) for k in range(x.size)]
            assert td._ratio_clashes(columns, min_gap)[0].tolist() == expected, (min_gap, w)


def test_make_generic_matches_the_reference_on_random_params():
    rng = np.random.default_rng(20)
    for _ in range(30):
        params = glorot_mlp(rng)
        assert td.is_generic(params) == reference_is_generic(params)
        fixed = assert_matches_reference(params)
        noisy = {k: v + 1e-4 * rng.normal(size=v.shape) for k, v in fixed.items()}  # a student one epoch on
        assert td.is_generic(noisy) == reference_is_generic(noisy)
        assert_matches_reference(noisy)
    assert_matches_reference(random_mlp(3))


def test_make_generic_matches_the_reference_on_planted_clashes():
    rng = np.random.default_rng(21)
    for trial in range(30):
        params = plant_clashes(glorot_mlp(rng), rng, count=1 + trial)
        assert td.is_generic(params) == reference_is_generic(params)
        assert_matches_reference(params)
    assert_matches_reference(degenerate_params())


def test_make_generic_matches_the_reference_for_float32_deeper_nets_and_other_gaps():
    rng = np.random.default_rng(22)
    for _ in range(5):
        single = plant_clashes(glorot_mlp(rng, dtype=np.float32), rng, 10)
        assert td.is_generic(single) == reference_is_generic(single)
        assert_matches_reference(single)
        deeper = plant_clashes(glorot_mlp(rng, sizes=[3, 12, 9, 7, 2]), rng, 10)
        assert_matches_reference(deeper)
        for min_gap in (1e-6, 0.01, 0.2, 0.7):  # bands r(1 ± δ) overlap for δ > 1/17
            assert td.is_generic(deeper, min_gap) == reference_is_generic(deeper, min_gap)
            assert_matches_reference(deeper, min_gap=min_gap)
    for shape in [(0, 3), (3, 0), (1, 4), (2, 1), (0, 0)]:  # no pairs, no columns
        assert_matches_reference({"W": np.ones(shape), "b": np.zeros(shape[0])})


def test_make_generic_matches_the_reference_when_many_passes_are_needed():
    rng = np.random.default_rng(23)
    W = np.ones((12, 4))  # every pair in a simple ratio: each pass resolves one pair per column
    W[:, 1] = 2.0 ** np.arange(12)
    W[:, 2] = rng.choice(td.SIMPLE_RATIOS, 12)
    W[:, 3] = rng.normal(size=12)  # generic already: done in the first pass
    params = {"W1": W, "b1": np.zeros(12), "W2": np.ones((1, 12)), "b2": np.zeros(1)}
    passes = 0
    v = np.array(W)
    while True:
        v, changed = reference_nudge_weights(v, 1e-3)
        passes += 1
        if not changed:
            break
    assert passes > 20
    assert_matches_reference(params)
    for max_passes in (0, 1, passes - 1):  # too few passes: both give up, with the same message
        with pytest.raises(RuntimeError, match=f"W1 still has simple weight ratios after {max_passes} passes"):
            td.make_generic(params, max_passes=max_passes)
        with pytest.raises(RuntimeError, match=f"W1 still has simple weight ratios after {max_passes} passes"):
            reference_make_generic(params, max_passes=max_passes)
    assert_matches_reference(params, max_passes=passes)  # exactly enough: the last pass finds no clash
