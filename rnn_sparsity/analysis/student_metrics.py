"""The teacher-student study's own distance between a student's and its teacher's weights
(laschulz/investigating_sparseNN, src/metrics.py: calc_distance_metric and match_layer_weights),
re-implemented.

It compares weights as numbers, not units. The teacher's and the student's weight tensors are paired in
order, T₁ with S₁, T₂ with S₂, ... (as `zip` pairs them: the shorter list ends the pairing). Within a pair
both are flattened into multisets of scalars t (n_t values) and s (n_s values); a student value with
|s_j| < ε (ε = `analysis.near_zero`, the source's 1e-4) counts as 0. The Hungarian assignment
(scipy.optimize.linear_sum_assignment) on the cost C_ij = |t_i - s_j| matches each teacher value to its own
student value (all min(n_t, n_s) of them), and the pair contributes

    d(T, S) = ‖t_matched - s_matched‖₂ + ‖s_unmatched‖₂

(two Euclidean norms: of the matched differences, and of the student values left over). The distance is
Σ over pairs. When teacher and student both use tanh, |·| is taken of every value first (tanh is odd, so a
unit's sign can flip). 0 only when every teacher value is matched exactly and every other student value is
near zero: a sparse student that copies the teacher's weights.

What the source does and this keeps: the pairing is by position in the parameter list, so a teacher with
more tensors than layers (split_filter_cnn's five banks) meets the student's three layers with its first
three banks (layer 1's two and layer 2's first); teacher values beyond n_s would go unmatched and cost
nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

NEAR_ZERO = 1e-4  # the source's threshold (match_layer_weights' default)


def matched_weight_distance(teacher: np.ndarray, student: np.ndarray, near_zero: float = NEAR_ZERO) -> float:
    """d(T, S) of one pair of tensors (module docstring): ‖t_i - s_π(i)‖₂ over the optimal one-to-one
    matching π of the values by |t_i - s_j|, plus ‖s_j‖₂ over the student values π leaves out; student
    values with |s| < near_zero count as 0."""
    t = np.ravel(np.asarray(teacher, dtype=np.float64))
    s = np.ravel(np.asarray(student, dtype=np.float64))
    s = np.where(np.abs(s) < near_zero, 0.0, s)
    rows, cols = linear_sum_assignment(np.abs(t[:, None] - s[None, :]))
    unmatched = np.setdiff1d(np.arange(s.size), cols)
    return float(np.linalg.norm(t[rows] - s[cols]) + np.linalg.norm(s[unmatched]))


def weight_match_distance(teacher: Sequence[np.ndarray], student: Sequence[np.ndarray], both_tanh: bool,
                          near_zero: float = NEAR_ZERO) -> float:
    """Σ_k d(T_k, S_k) over the tensors paired in order (zip), with |·| of both first when `both_tanh`."""
    total = 0.0
    for t, s in zip(teacher, student):
        t, s = np.asarray(t, dtype=np.float64), np.asarray(s, dtype=np.float64)
        if both_tanh:
            t, s = np.abs(t), np.abs(s)
        total += matched_weight_distance(t, s, near_zero)
    return total
