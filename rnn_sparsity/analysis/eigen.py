"""Eigenvalues of recurrent matrices (on the host, in NumPy: eig has no accelerator kernel everywhere)."""

from __future__ import annotations

import numpy as np


def eigenvalues(matrix) -> np.ndarray:
    """Eigenvalues of a square matrix, sorted by descending real part (stable order for plotting)."""
    values = np.linalg.eigvals(np.asarray(matrix, dtype=float))
    return values[np.argsort(-values.real, kind="stable")]
