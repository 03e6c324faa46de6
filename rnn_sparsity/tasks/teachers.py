"""Fixed teacher networks for the teacher-student studies: bias-free 1-D CNNs on x ∈ R¹².

Every convolution has stride = kernel size k (the windows tile the input without overlap), no bias,
and is followed by the same activation φ ∈ {relu, sigmoid, tanh} — the output layer too:

    h⁰ = x,    hˡ[o, p] = φ( Σ_c Σ_t Fˡ_p[o, c, t] · hˡ⁻¹[c, p·k + t] ),    y = h^L  (1 channel, 1 position)

Fˡ_p is the filter bank at output position p: the same at every p for a true convolution
(`baseline_cnn`, `multichannel_cnn`), alternating between two banks for `split_filter_cnn`.

A layer is also written as the dense bias-free matrix Mˡ with hˡ = φ(Mˡ hˡ⁻¹) on flattened
activations, so that a dense MLP student can be compared with the teacher unit by unit. Flattening is
channel-major: entry c·L + p of the vector is channel c at position p (L positions), as
`h.reshape(-1)` flattens an array of shape (C, L).

    baseline_cnn       12 → 4 → 2 → 1      (1 channel throughout)
    multichannel_cnn   12 → 4×4 → 4×2 → 1  (dense widths 12 → 16 → 8 → 1)
    split_filter_cnn   12 → 4 → 2 → 1      (chunks alternate between two filters)
"""

from __future__ import annotations

import numpy as np

N_INPUTS = 12


def filter_banks(banks, n_positions: int) -> np.ndarray:
    """Per-position filters (P, C_out, C_in, k): bank p mod len(banks) at output position p, so one
    bank gives a convolution and two alternate chunk by chunk (chunk 0 the first)."""
    banks = [np.asarray(b, dtype=np.float64) for b in banks]
    return np.stack([banks[p % len(banks)] for p in range(n_positions)])


def locally_connected_matrix(filters: np.ndarray) -> np.ndarray:
    """The dense (C_out·P, C_in·P·k) matrix M of a stride-k, kernel-k layer with per-position filters
    (P, C_out, C_in, k): M[o·P + p, c·P·k + p·k + t] = F_p[o, c, t] (channel-major on both sides)."""
    n_pos, c_out, c_in, k = filters.shape
    dense = np.zeros((c_out, n_pos, c_in, n_pos, k))
    for p in range(n_pos):  # output position p sees only input positions p·k … p·k + k - 1
        dense[:, p, :, p, :] = filters[p]
    return dense.reshape(c_out * n_pos, c_in * n_pos * k)


def _baseline(first_filters, second_filters):
    """Layers (banks, output positions) of the 1-channel 12 → 4 → 2 → 1 teachers."""
    return [(first_filters, 4), (second_filters, 2), ([[[[0.86, -0.84]]]], 1)]


# Each layer: (list of filter banks of shape (C_out, C_in, k), number of output positions).
_TEACHERS = {
    "baseline_cnn": _baseline([[[[2.59, -2.83, 0.87]]]], [[[[-1.38, 1.29]]]]),
    "multichannel_cnn": [
        ([[[[-0.78, -0.12, 0.70]], [[-1.16, 0.47, 0.05]], [[-0.73, 1.96, -1.01]], [[-0.32, 0.21, 0.63]]]], 4),
        ([[[[0.00, 0.04], [0.68, 0.34], [0.54, -0.22], [-0.14, -0.33]],
           [[-0.14, 1.59], [1.48, -0.52], [-1.26, 0.30], [-0.40, -1.09]],
           [[-0.71, 0.44], [-0.02, -0.14], [0.37, -0.70], [-0.83, -0.38]],
           [[0.89, -0.48], [-0.27, -0.81], [1.76, -0.41], [0.15, 0.49]]]], 2),
        ([[[[-0.54, 0.16], [-0.74, -0.46], [0.08, 0.18], [-0.22, 0.81]]]], 1),
    ],
    "split_filter_cnn": _baseline([[[[2.59, -2.83, 0.87]]], [[[-1.22, 0.45, 0.88]]]],
                                  [[[[-1.38, 1.29]]], [[[0.35, -0.73]]]]),
}

TEACHERS = tuple(_TEACHERS)


def teacher_layers(name: str) -> list[np.ndarray]:
    """The teacher's layers as dense bias-free matrices Mˡ (out, in) on channel-major flattened
    activations (float64, fresh copies): y = φ(M³ φ(M² φ(M¹ x)))."""
    if name not in _TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; allowed: {', '.join(_TEACHERS)}")
    return [locally_connected_matrix(filter_banks(banks, n_pos)) for banks, n_pos in _TEACHERS[name]]


def source_parameters(name: str) -> list[np.ndarray]:
    """The teacher's weights as the source's PyTorch module lists them (`model.parameters()` order): one
    tensor per filter bank, layer by layer, in bank order. baseline_cnn and multichannel_cnn: one Conv1d
    kernel (C_out, C_in, k) per layer; split_filter_cnn: both banks of layer 1, both of layer 2, then
    layer 3's (five tensors). The source's distance (analysis/student_metrics.py) pairs these with the
    student's weight tensors in order."""
    if name not in _TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; allowed: {', '.join(_TEACHERS)}")
    return [np.array(bank, dtype=np.float64) for banks, _ in _TEACHERS[name] for bank in banks]
