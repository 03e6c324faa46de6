"""How far a student network is from its teacher, up to the symmetries that leave the function unchanged.

A feed-forward network with layers Wˡ (out, in), optional biases bˡ and activation φ computes the same
function after any permutation π of a hidden layer's units (rows of Wˡ, bˡ and columns of Wˡ⁺¹ together)
and, when φ is odd (tanh), after flipping the sign s = ±1 of a hidden unit (its row of Wˡ, its bˡ and its
column of Wˡ⁺¹): tanh(-z) = -tanh(z). Inputs and outputs are never permuted.

Alignment is greedy, layer by layer (`align_layers`): with the student's inputs to layer l already
permuted and signed by layer l-1's matching, each student unit i is matched to a teacher unit j by the
Hungarian assignment (scipy.optimize.linear_sum_assignment) on the cost

    C_ij = min_{s ∈ S} ‖ s·a_i - t_j ‖²,    S = {+1, -1} for odd φ, {+1} otherwise,

where a_i (t_j) is the incoming vector of the student (teacher) unit: its row of Wˡ, with bˡ appended
when the network has biases. The matched student unit takes the teacher unit's place with the sign
that attains the min. Greedy, because layer l's matching ignores what it does to layer l+1's cost:
the joint optimum is a quadratic assignment problem.

Study 1 (`recovery_distance`, bias-free, student wider than teacher) and Study 2 (`raw_distance`,
`aligned_distance`, same architecture with biases) measure the result differently; `make_generic`
enforces the Fefferman–Markel conditions under which the permutation and sign symmetries are the only ones.
"""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..maths import ACTIVATIONS, ODD_ACTIVATIONS


# ---------------------------------------------------------------------------------------------------------
# alignment


def match_units(student_rows: np.ndarray, teacher_rows: np.ndarray, flip_signs: bool):
    """(perm, signs) minimising Σ_j ‖signs_j · a_{perm_j} - t_j‖² over permutations (and, with flip_signs,
    signs ±1 chosen per pair): teacher unit j is matched by student unit perm[j]. Rows: (n, d), equal n."""
    a, t = np.asarray(student_rows, float), np.asarray(teacher_rows, float)
    inner = a @ t.T
    # ‖s a - t‖² = ‖a‖² + ‖t‖² - 2 s a·t, least for s = sign(a·t)
    signs = np.where(inner < 0, -1.0, 1.0) if flip_signs else np.ones_like(inner)
    cost = np.sum(a * a, 1)[:, None] + np.sum(t * t, 1)[None, :] - 2 * signs * inner
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(cols), dtype=int)
    perm[cols] = rows
    return perm, signs[perm, np.arange(len(perm))]


def align_layers(student_W: Sequence, teacher_W: Sequence, flip_signs: bool,
                 student_b: Sequence | None = None, teacher_b: Sequence | None = None):
    """The student's layers (and biases, when given) permuted and signed to match the teacher's hidden
    units greedily, layer by layer (see the module docstring). Shapes must agree layer by layer.
    Returns (W list, b list or None); the student computes the same function after it (for odd φ)."""
    W = [np.asarray(w, float) for w in student_W]
    b = None if student_b is None else [np.asarray(v, float) for v in student_b]
    for l in range(len(W) - 1):
        rows = W[l] if b is None else np.column_stack([W[l], b[l]])
        target = np.asarray(teacher_W[l], float)
        if teacher_b is not None:
            target = np.column_stack([target, np.asarray(teacher_b[l], float)])
        perm, signs = match_units(rows, target, flip_signs)
        W[l] = signs[:, None] * W[l][perm]
        W[l + 1] = W[l + 1][:, perm] * signs[None, :]
        if b is not None:
            b[l] = signs * b[l][perm]
    return W, b


# ---------------------------------------------------------------------------------------------------------
# Study 1: recovery of a bias-free teacher by a wider student


def _pad(layers: Sequence[np.ndarray], widths: Sequence[int]) -> list[np.ndarray]:
    """Layers with zero units appended so hidden layer l has widths[l] units (zero rows of Wˡ, zero
    columns of Wˡ⁺¹): the function is unchanged."""
    sizes = [layers[0].shape[1], *widths, layers[-1].shape[0]]
    out = []
    for l, w in enumerate(layers):
        padded = np.zeros((sizes[l + 1], sizes[l]))
        padded[: w.shape[0], : w.shape[1]] = w
        out.append(padded)
    return out


def recovery_distance(student_layers: Sequence, teacher_layers: Sequence, activation: str,
                      zero_tol: float = 1e-4) -> float:
    """Teacher-recovery distance of bias-free networks given as dense layers Wˡ (out, in).

        D = ( Σ_l ‖ W̃ˡ - T̂ˡ ‖²_F )^½

    1. Entries with |w| < zero_tol are set to 0 (in student and teacher).
    2. Each hidden layer of the narrower network is padded with zero units (zero incoming and outgoing
       weights) to the wider one's width, giving T̂ˡ (usually the teacher is the narrower one).
    3. W̃ is the student aligned to T̂ greedily layer by layer (`align_layers`): Hungarian assignment on
       C_ij = ‖a_i - t_j‖² between incoming weight vectors, the student's inputs already permuted by the
       previous layer's matching; for odd φ (tanh) C_ij = min over s = ±1 of ‖s a_i - t_j‖², and the
       chosen sign also flips the unit's outgoing weights.
    Hence a student unit matched to a padding unit (an unmatched unit) adds ‖w_in‖² + ‖w_out‖² to D²:
    alone it contributes exactly the norm of its incoming and outgoing weights together; several add in
    quadrature. D = 0 iff, after zeroing, the student is a permuted (signed, for tanh) copy of the teacher
    plus units with no nonzero weights. Greedy: D is an upper bound on the distance over all alignments.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    student = [np.where(np.abs(w) < zero_tol, 0.0, np.asarray(w, float)) for w in student_layers]
    teacher = [np.where(np.abs(w) < zero_tol, 0.0, np.asarray(w, float)) for w in teacher_layers]
    if len(student) != len(teacher) or student[0].shape[1] != teacher[0].shape[1] \
            or student[-1].shape[0] != teacher[-1].shape[0]:
        raise ValueError("student and teacher need the same number of layers, inputs and outputs; got "
                         f"{[w.shape for w in student]} and {[w.shape for w in teacher]}")
    widths = [max(s.shape[0], t.shape[0]) for s, t in zip(student[:-1], teacher[:-1])]
    student, teacher = _pad(student, widths), _pad(teacher, widths)
    aligned, _ = align_layers(student, teacher, flip_signs=activation in ODD_ACTIVATIONS)
    return float(np.sqrt(sum(np.sum((s - t) ** 2) for s, t in zip(aligned, teacher))))


# ---------------------------------------------------------------------------------------------------------
# Study 2: a dense tanh MLP {"W1", "b1", ..., "WL", "bL"} against a teacher of the same shape


def mlp_layer_count(params: Mapping) -> int:
    """L for params named W1, b1, …, WL, bL (W (out, in)); a ValueError for anything else."""
    n = len(params) // 2
    expected = {f"{p}{l}" for l in range(1, n + 1) for p in "Wb"}
    if set(params) != expected:
        raise ValueError(f"MLP params must be named W1, b1, ..., WL, bL; got {sorted(params)}")
    return n


def squared_distance(a: Mapping, b: Mapping) -> float:
    """Σ over every parameter entry of (a - b)², the two dicts having the same keys and shapes."""
    if set(a) != set(b) or any(np.shape(a[k]) != np.shape(b[k]) for k in a):
        raise ValueError("the two parameter sets need the same names and shapes")
    return float(sum(np.sum((np.asarray(a[k], float) - np.asarray(b[k], float)) ** 2) for k in a))


def raw_distance(student: Mapping, teacher: Mapping) -> float:
    """Study 2's raw distance: the SQUARED Euclidean distance Σ_l (‖Wˡ_s - Wˡ_t‖²_F + ‖bˡ_s - bˡ_t‖²)
    over all weights and biases, with no alignment (and no square root, as the study defines it)."""
    return squared_distance(student, teacher)


def align(student: Mapping, teacher: Mapping, flip_signs: bool = True) -> dict[str, np.ndarray]:
    """The student with its hidden units permuted and (flip_signs: for tanh) sign-flipped to match the
    teacher's: greedy layer-by-layer Hungarian on the incoming [weights, bias] of each unit (see the
    module docstring). Computes the same function as the student. If the greedy alignment is farther
    from the teacher than the student as it is (greedy is not the joint optimum), the student is returned
    unchanged, so raw_distance(align(s, t), t) <= raw_distance(s, t) always."""
    n = mlp_layer_count(student)
    squared_distance(student, teacher)  # same names and shapes
    names = range(1, n + 1)
    W, b = align_layers([student[f"W{l}"] for l in names], [teacher[f"W{l}"] for l in names], flip_signs,
                        [student[f"b{l}"] for l in names], [teacher[f"b{l}"] for l in names])
    aligned = {**{f"W{l}": w for l, w in zip(names, W)}, **{f"b{l}": v for l, v in zip(names, b)}}
    unchanged = {k: np.asarray(v, float) for k, v in student.items()}
    return aligned if squared_distance(aligned, teacher) <= squared_distance(unchanged, teacher) else unchanged


def aligned_distance(student: Mapping, teacher: Mapping, flip_signs: bool = True) -> float:
    """Study 2's aligned distance: the squared distance `raw_distance` after `align` (same function,
    hidden units permuted and sign-flipped to the teacher's); 0 for a permuted, signed copy."""
    return raw_distance(align(student, teacher, flip_signs), teacher)


# ---------------------------------------------------------------------------------------------------------
# Fefferman–Markel genericity

SIMPLE_RATIO_BOUND = 4
SIMPLE_RATIOS = np.array(sorted({s * p / q for p, q in itertools.product(range(1, SIMPLE_RATIO_BOUND + 1), repeat=2)
                                 for s in (1, -1)}))  # ±p/q, 1 ≤ p, q ≤ 4: 22 values


@functools.lru_cache(maxsize=None)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(j, j', containing) for the pairs j < j' of n entries in the row-major order of np.triu_indices:
    containing[i] (n - 1 of them) are the indices of the pairs that contain entry i."""
    j, later = np.triu_indices(n, 1)
    index = np.zeros((n, n), dtype=int)
    index[j, later] = index[later, j] = np.arange(len(j))
    return j, later, index[~np.eye(n, dtype=bool)].reshape(n, max(n - 1, 0))


def _near_simple_ratio(numerator: np.ndarray, denominator: np.ndarray, min_gap: float) -> np.ndarray:
    """Where x = numerator/denominator is within relative min_gap of a simple ratio r: |x - r| < δ|r|,
    tested as |x/r - 1| < δ. Simple ratios are multiples m/12 with |m| ≤ 48, so that needs 12x within 48δ
    of an integer (1e-12 more, for rounding): only such x are tested, and only against the two simple
    ratios next to x, where |x/r - 1| is least (it falls in |r| up to |x| and rises after, as rounded
    too, and is ≥ 1 for r of the other sign)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = numerator / denominator
        y = 12.0 * x
        maybe = np.flatnonzero(~(np.abs(y - np.rint(y)) >= 48.0 * min_gap + 1e-12))
    near = np.zeros(x.shape, dtype=bool)
    if maybe.size:
        x_maybe = x.ravel()[maybe]
        above = np.minimum(np.searchsorted(SIMPLE_RATIOS, x_maybe), len(SIMPLE_RATIOS) - 1)
        near.ravel()[maybe] = ((np.abs(x_maybe / SIMPLE_RATIOS[np.maximum(above - 1, 0)] - 1.0) < min_gap)
                               | (np.abs(x_maybe / SIMPLE_RATIOS[above] - 1.0) < min_gap))
    return near


def _ratio_clashes(W: np.ndarray, min_gap: float) -> np.ndarray:
    """Mask (pairs, columns) for W (n, k): pair p = (j, j'), j < j', in the order of `_pairs`, clashes in
    column k when W[j', k] / W[j, k] is within relative min_gap of a simple ratio (`_near_simple_ratio`).
    Zero entries are left to the zero condition."""
    j, later, _ = _pairs(W.shape[0])
    return _near_simple_ratio(W[later], W[j], min_gap)


def _bias_gaps_ok(b: np.ndarray, min_gap: float) -> bool:
    magnitudes = np.sort(np.abs(b))
    return bool(np.all(np.diff(magnitudes) >= min_gap))


def is_generic(params: Mapping, min_gap: float = 1e-3) -> bool:
    """The Fefferman–Markel genericity conditions, with a margin min_gap = δ (1-D arrays are biases,
    2-D arrays weight matrices W (out, in)):

      (a) every parameter is away from 0:               |θ| ≥ δ;
      (b) biases of a layer differ in magnitude:         | |b_j| - |b_j'| | ≥ δ  (j ≠ j');
      (c) no two weights of a column W[:, k] (the outgoing weights of one input unit) stand in a simple
          ratio: |W[j', k] / W[j, k] - r| ≥ δ |r| for every r = ±p/q, 1 ≤ p, q ≤ 4 (22 values).

    Then (Fefferman 1994) the network's function determines its parameters up to hidden-unit
    permutations and sign flips, which is what makes `aligned_distance` a distance between functions."""
    for value in params.values():
        v = np.asarray(value, float)
        if np.any(np.abs(v) < min_gap):
            return False
        if v.ndim == 1 and not _bias_gaps_ok(v, min_gap):
            return False
        if v.ndim == 2 and np.any(_ratio_clashes(v, min_gap)):
            return False
    return True


def _separate_biases(b: np.ndarray, min_gap: float) -> np.ndarray:
    """Biases with magnitudes ≥ δ and δ apart, each moved outward as little as this sweep allows: in
    increasing order of |b|, |b|_(i) ← max(|b|_(i), |b|_(i-1) + δ) with |b|_(-1) = 0; signs kept (0 → +)."""
    order = np.argsort(np.abs(b), kind="stable")
    magnitudes = np.abs(b[order]).tolist()  # a sequential recurrence: Python floats are the fast way
    step = min_gap * (1 + 1e-9)  # a hair over δ, so that the rounded difference is still ≥ δ
    for i in range(len(magnitudes)):
        magnitudes[i] = max(magnitudes[i], magnitudes[i - 1] + step if i else min_gap)
    out = b.copy()
    out[order] = np.where(b[order] < 0, -1.0, 1.0) * np.array(magnitudes)
    return out


def _nudge_weights(W: np.ndarray, min_gap: float, max_passes: int) -> np.ndarray | None:
    """W with entries |w| < δ set to ±δ (0 → +δ), then passes until one finds no clash: a pass scales
    |W[j', k]| by 1 + 3δ for the first clashing pair (j, j') of each column k (least j, then least j'),
    which takes w_j'/w_j out of the band r(1 ± δ) whichever side it was on, and never shrinks an entry.
    A pass changes one entry per clashing column, so only the pairs containing it are tested again.
    None if each of max_passes passes found a clash."""
    W = np.where(np.abs(W) < min_gap, np.where(W < 0, -min_gap, min_gap), W)
    j, later, containing = _pairs(W.shape[0])
    clashes = _ratio_clashes(W, min_gap)
    for _ in range(max_passes):
        columns = np.flatnonzero(clashes.any(axis=0))
        if not columns.size:
            return W
        rows = later[clashes[:, columns].argmax(axis=0)]
        W[rows, columns] *= 1.0 + 3.0 * min_gap
        pairs, columns = containing[rows], columns[:, None]
        clashes[pairs, columns] = _near_simple_ratio(W[later[pairs], columns], W[j[pairs], columns], min_gap)
    return None


def make_generic(params: Mapping, min_gap: float = 1e-3, max_passes: int = 10_000) -> dict[str, np.ndarray]:
    """Params that satisfy `is_generic(·, min_gap)`, changed as little as these rules allow:

      biases (1-D):  `_separate_biases` (magnitudes pushed outward to be ≥ δ and δ apart);
      weights (2-D): entries with |w| < δ set to sign(w)·δ; then, repeated until no clash is left, the
                     later weight of each column's first clashing pair scaled by (1 + 3δ).

    Magnitudes only grow, so a nudge never undoes the zero condition; max_passes bounds the loop (a
    RuntimeError past it). Each weight moves by 3δ|w| per nudge it takes. Returns
    float64 NumPy arrays; already generic params come back with the same values."""
    out = {}
    for name, value in params.items():
        v = np.array(value, dtype=np.float64)
        if v.ndim == 1:
            v = _separate_biases(v, min_gap)
        elif v.ndim == 2:
            v = _nudge_weights(v, min_gap, max_passes)
            if v is None:
                raise RuntimeError(f"make_generic: {name} still has simple weight ratios after {max_passes} passes")
        else:
            v = np.where(np.abs(v) < min_gap, np.where(v < 0, -min_gap, min_gap), v)
        out[name] = v
    return out


# ---------------------------------------------------------------------------------------------------------
# The rebound study's own projection (L0-and-behold/probabilistic-nonlinear-cs, l2-experiments/src/
# NonDegenerateProjection.jl: `project_onto_F`), re-implemented from the code, not from its docstrings

SOURCE_TEMPERATURE = 10  # the source's first nudge is at most 10 machine epsilons (relative)
SOURCE_RATIO_FACTOR = 100  # a weight ratio p/q fails when p or q <= 100 · D², D the network's output width


def _nudged(x: np.ndarray, dtype, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """The source's `pertubation` of each entry: x ← x + T·x·u·ε (x ≠ 0) or x ← x ± T·u·ε (x = 0),
    u ~ U[0, 1), ε = the machine epsilon of `dtype`. The sum is formed in float64 (as the source's
    Float32 · Float64 promotion does) and rounded to `dtype` on store; an entry whose float64 sum equals
    x is drawn again with T + 1 (the source's retry, at most 10 tries)."""
    eps = float(np.finfo(dtype).eps)
    x64 = np.asarray(x, np.float64)
    out = x64.copy()
    todo = np.ones(x64.shape, dtype=bool)
    for attempt in range(10):
        t = temperature + attempt
        u = rng.random(x64.shape)
        sign = np.where(rng.random(x64.shape) < 0.5, -1.0, 1.0)
        scaled = np.asarray(np.asarray(t * x, dtype), np.float64)  # T·x is formed in x's own type
        candidate = np.where(x64 == 0, t * u * eps * sign, x64 + scaled * u * eps)
        accept = todo & (candidate != x64)
        out[accept] = candidate[accept]
        todo &= ~accept
        if not todo.any():
            return out.astype(dtype)
    raise RuntimeError(f"the source's nudge could not move {int(todo.sum())} entries in 10 tries")


def _ratio_ok(a: Fraction, b: Fraction, bound: int) -> bool:
    """The source's `rationality_condition_is_met`: a, b ≠ 0, a ≠ b, and |a|/|b| in lowest terms p/q
    (of the exact values of the floats) with p > bound and q > bound."""
    if a == 0 or b == 0 or a == b:
        return False
    ratio = abs(a) / abs(b)
    return ratio.numerator > bound and ratio.denominator > bound


def _rational_projection(column: np.ndarray, bound: int, temperature: int, rng: np.random.Generator):
    """The source's `rationality_projection` of one column W[:, k] (the weights out of input unit k):
    each entry that fails `_ratio_ok` with any other entry of the column as it came in is nudged by
    x ← x·(1 ± T·u·ε) (exact, then rounded to the column's type) until it passes, T growing by one per
    try across the column (at most 50 tries an entry). Returns (column, temperature)."""
    dtype = column.dtype
    eps = float(np.finfo(dtype).eps)
    given = [Fraction(float(v)) for v in column]
    out = column.copy()
    for i, weight in enumerate(given):
        others = given[:i] + given[i + 1:]
        attempts = 0
        while not all(_ratio_ok(weight, other, bound) for other in others):
            for t in range(temperature, temperature + 10):  # a nudge lost in rounding is drawn again, T + 1
                sign = 1 if rng.random() < 0.5 else -1
                moved = Fraction(float(dtype.type(float(weight * (1 + sign * Fraction(t * rng.random() * eps))))))
                if moved != weight:
                    break
            weight = moved
            temperature += 1
            attempts += 1
            if attempts > 50:
                raise RuntimeError(f"the source's rationality projection could not move {float(weight)} in 50 tries")
        out[i] = dtype.type(float(weight))
    return out, temperature


def source_projection(params: Mapping, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`project_onto_F` of the rebound study, for params {W1, b1, …, WL, bL} (W (out, in)), in their own
    float type:

      1. every parameter is nudged once (`_nudged`, T = 10): |Δθ| ≤ ~10 ε |θ|, ≤ 10 ε where θ = 0;
      2. biases of a layer that are equal (as values: the code compares b_j = b_j', not |b_j| = |b_j'|
         as its docstring says) are nudged until they differ;
      3. each column of each weight matrix is nudged until every pair of its entries passes the source's
         rationality check with bound 100·D², D = the output width (`_rational_projection`).

    Step 1 moves every entry (the zero biases of a fresh teacher to ±T·u·ε); steps 2 and 3 almost never
    fire for random floats. The source draws u from Julia's unseeded global generator; here from `rng`."""
    n = mlp_layer_count(params)
    bound = SOURCE_RATIO_FACTOR * int(np.shape(params[f"b{n}"])[0]) ** 2
    out = {name: _nudged(value, np.asarray(value).dtype, SOURCE_TEMPERATURE, rng) for name, value in params.items()}
    for l in range(1, n + 1):
        b = out[f"b{l}"]
        distinct = b.copy()
        for j in range(len(b)):
            temperature = SOURCE_TEMPERATURE
            for _ in range(100):
                if not np.any(np.delete(b, j) == distinct[j]):
                    break
                distinct[j] = _nudged(distinct[j:j + 1], b.dtype, temperature, rng)[0]
                temperature += 1
        out[f"b{l}"] = distinct
        W = out[f"W{l}"]
        temperature = SOURCE_TEMPERATURE
        for k in range(W.shape[1]):
            W[:, k], temperature = _rational_projection(W[:, k], bound, temperature, rng)
    return out


def source_is_generic(params: Mapping) -> bool:
    """The conditions `source_projection` enforces, checked as the source's code checks them: no
    parameter 0, the biases of a layer pairwise different, and every pair of entries of a weight
    column passing the rationality check (bound 100·D², D the output width)."""
    n = mlp_layer_count(params)
    bound = SOURCE_RATIO_FACTOR * int(np.shape(params[f"b{n}"])[0]) ** 2
    for l in range(1, n + 1):
        W, b = np.asarray(params[f"W{l}"]), np.asarray(params[f"b{l}"])
        if np.any(W == 0) or np.any(b == 0) or len(np.unique(b)) < len(b):
            return False
        for column in W.T:
            exact = [Fraction(float(v)) for v in column]
            if not all(_ratio_ok(a, c, bound) for i, a in enumerate(exact) for c in exact[i + 1:]):
                return False
    return True


# ---------------------------------------------------------------------------------------------------------
# The rebound study's curves (l2-experiments/src/ExperimentHelpers.jl: normalize, normalize_and_average)


def min_max_normalised(curve: Sequence[float]) -> np.ndarray:
    """(d - min d) / (max d - min d) over one run's curve; all zeros when the curve is flat (the
    source's choice)."""
    d = np.asarray(curve, np.float64)
    low, high = d.min(), d.max()
    return np.zeros_like(d) if high == low else (d - low) / (high - low)


def normalised_mean(curves) -> np.ndarray:
    """The source's averaged curve: each run's curve (a row) min-max normalised on its own, then the
    mean over runs at every epoch. Every run counts alike, whatever its scale."""
    rows = np.atleast_2d(np.asarray(curves, np.float64))
    return np.mean([min_max_normalised(row) for row in rows], axis=0)
