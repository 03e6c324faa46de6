"""Teachers against a direct NumPy evaluation of the stated CNN weights (loops over positions and channels)."""

from types import SimpleNamespace

import numpy as np
import pytest

from rnn_sparsity.tasks import teachers
from rnn_sparsity.tasks.teacher_student import teacher_data

# The weights as the study states them, written out again here (not read from the module):
# per layer, the filter bank at each output position, shape (C_out, C_in, k); stride = k.
BASE_1, BASE_2, BASE_3 = [[[2.59, -2.83, 0.87]]], [[[-1.38, 1.29]]], [[[0.86, -0.84]]]
SPLIT_1, SPLIT_2 = [[[-1.22, 0.45, 0.88]]], [[[0.35, -0.73]]]
MULTI_1 = [[[-0.78, -0.12, 0.70]], [[-1.16, 0.47, 0.05]], [[-0.73, 1.96, -1.01]], [[-0.32, 0.21, 0.63]]]
MULTI_2 = [[[0.00, 0.04], [0.68, 0.34], [0.54, -0.22], [-0.14, -0.33]],
           [[-0.14, 1.59], [1.48, -0.52], [-1.26, 0.30], [-0.40, -1.09]],
           [[-0.71, 0.44], [-0.02, -0.14], [0.37, -0.70], [-0.83, -0.38]],
           [[0.89, -0.48], [-0.27, -0.81], [1.76, -0.41], [0.15, 0.49]]]
MULTI_3 = [[[-0.54, 0.16], [-0.74, -0.46], [0.08, 0.18], [-0.22, 0.81]]]
STATED = {
    "baseline_cnn": [[BASE_1] * 4, [BASE_2] * 2, [BASE_3]],
    "multichannel_cnn": [[MULTI_1] * 4, [MULTI_2] * 2, [MULTI_3]],
    "split_filter_cnn": [[BASE_1, SPLIT_1, BASE_1, SPLIT_1], [BASE_2, SPLIT_2], [BASE_3]],
}
NUMPY_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0.0), "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
                     "tanh": np.tanh}


def conv_by_loops(h, banks, phi):
    """h (C_in, L_in) -> (C_out, L_out): out[o, p] = φ(Σ_c Σ_t bank_p[o][c][t] h[c, p k + t])."""
    c_out, k = len(banks[0]), len(banks[0][0][0])
    out = np.zeros((c_out, len(banks)))
    for p, bank in enumerate(banks):
        for o in range(c_out):
            total = 0.0
            for c in range(h.shape[0]):
                for t in range(k):
                    total += bank[o][c][t] * h[c, p * k + t]
            out[o, p] = phi(total)
    return out


def teacher_by_loops(name, activation, x):
    outputs = []
    for row in x:
        h = row[None, :]  # one channel, 12 positions
        for banks in STATED[name]:
            h = conv_by_loops(h, banks, NUMPY_ACTIVATIONS[activation])
        outputs.append(h.reshape(1))
    return np.array(outputs)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("name", teachers.TEACHERS)
def test_the_tasks_targets_equal_loops_over_stated_weights(name, activation):
    cfg = SimpleNamespace(teacher=name, activation=activation, noise_std=0.0)
    x, y = teacher_data(cfg, 16, np.random.default_rng(0))
    assert x.shape == (1, 16, 12) and y.shape == (1, 16, 1)
    np.testing.assert_allclose(y[0], teacher_by_loops(name, activation, x[0]), rtol=1e-12, atol=1e-12)


def test_dense_layers_are_channel_major_with_the_stated_widths():
    shapes = {name: [m.shape for m in teachers.teacher_layers(name)] for name in teachers.TEACHERS}
    assert shapes == {"baseline_cnn": [(4, 12), (2, 4), (1, 2)], "multichannel_cnn": [(16, 12), (8, 16), (1, 8)],
                      "split_filter_cnn": [(4, 12), (2, 4), (1, 2)]}
    second = teachers.teacher_layers("multichannel_cnn")[1]
    # out channel 1 at position 1 (row 1·2 + 1) reads input channel 2 at positions 2, 3 (columns 2·4 + 2, +3)
    np.testing.assert_array_equal(second[3, 10:12], [-1.26, 0.30])
    assert np.count_nonzero(second[3]) == 8  # 4 channels × 2 taps, nothing else


def test_an_unknown_teacher_raises_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="baseline_cnn, multichannel_cnn"):
        teachers.teacher_layers("lenet")


def test_source_parameters_list_the_banks_in_the_source_modules_order():
    shapes = {name: [p.shape for p in teachers.source_parameters(name)] for name in teachers.TEACHERS}
    assert shapes == {"baseline_cnn": [(1, 1, 3), (1, 1, 2), (1, 1, 2)],
                      "multichannel_cnn": [(4, 1, 3), (4, 4, 2), (1, 4, 2)],
                      "split_filter_cnn": [(1, 1, 3), (1, 1, 3), (1, 1, 2), (1, 1, 2), (1, 1, 2)]}
    split = teachers.source_parameters("split_filter_cnn")  # SplitFilterCNN: layer1_weights.0, .1, layer2_weights.0, ...
    for got, stated in zip(split, [BASE_1, SPLIT_1, BASE_2, SPLIT_2, BASE_3]):
        np.testing.assert_array_equal(got, stated)
    np.testing.assert_array_equal(teachers.source_parameters("multichannel_cnn")[1], MULTI_2)


# ------------------------------------------------------------------ the study's distance (src/metrics.py)
def test_the_studys_distance_on_a_hand_made_pair():
    from rnn_sparsity.analysis.student_metrics import matched_weight_distance, weight_match_distance

    teacher, student = np.array([1.0, -2.0]), np.array([[0.9, -2.0], [0.5e-4, 0.3]])
    # 1.0 ↔ 0.9 and -2.0 ↔ -2.0: ‖(0.1, 0)‖ = 0.1; left over: 0.5e-4 (counts as 0) and 0.3: ‖(0, 0.3)‖ = 0.3
    assert matched_weight_distance(teacher, student) == pytest.approx(0.4, abs=1e-12)
    assert matched_weight_distance(teacher, student, near_zero=1e-6) == pytest.approx(0.1 + np.hypot(0.5e-4, 0.3), abs=1e-12)
    # 1 ↔ 0 costs 1, 1 ↔ 3 costs 2: 0 is the match (1) and the left-over values add in quadrature, ‖(3, 4)‖ = 5
    assert matched_weight_distance(np.array([1.0]), np.array([0.0, 3.0, 4.0])) == pytest.approx(6.0, abs=1e-12)
    flipped = [np.array([1.0, -2.0])], [np.array([-1.0, 2.0])]
    # without |·|: 1 ↔ 2 and -2 ↔ -1, ‖(-1, -1)‖ = √2; with |·| (teacher and student tanh): an exact copy
    assert weight_match_distance(*flipped, both_tanh=False) == pytest.approx(np.sqrt(2), abs=1e-12)
    assert weight_match_distance(*flipped, both_tanh=True) == 0.0
    # tensors are paired in order and the pairing ends with the shorter list (the teacher's extra banks cost nothing)
    pairs = [np.array([1.0]), np.array([2.0]), np.array([5.0])], [np.array([1.0, 0.5]), np.array([2.5])]
    assert weight_match_distance(*pairs, both_tanh=False) == pytest.approx(0.5 + 0.5, abs=1e-12)


@pytest.mark.parametrize("name", ["baseline_cnn", "multichannel_cnn"])
def test_a_student_holding_the_teachers_kernels_is_at_distance_zero_and_one_more_weight_costs_its_size(name):
    from rnn_sparsity.analysis.student_metrics import weight_match_distance

    kernels = teachers.source_parameters(name)
    assert weight_match_distance(kernels, kernels, both_tanh=False) == 0.0
    padded = [np.concatenate([k.ravel(), [0.25, 0.5e-4]]) for k in kernels]  # one extra weight, one near zero
    assert weight_match_distance(kernels, padded, both_tanh=False) == pytest.approx(3 * 0.25, abs=1e-12)
