"""Eigenvalues of recurrent matrices (on the host, in NumPy: eig has no accelerator kernel everywhere)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


def eigenvalues(matrix) -> np.ndarray:
    """Eigenvalues of a square matrix, sorted by descending real part (stable order for plotting)."""
    values = np.linalg.eigvals(np.asarray(matrix, dtype=float))
    return values[np.argsort(-values.real, kind="stable")]


class SpectrumTracker:
    """Collects eig(matrix_of(params)) with its training step; a step already sampled is not sampled twice.
    (experiment.fit samples only finite parameters: a diverged step's NaN/inf never reach eig.)"""

    def __init__(self, matrix_of: Callable[[Any], Any] = lambda params: params):
        self.matrix_of = matrix_of
        self.steps: list[int] = []
        self.values: list[np.ndarray] = []

    def sample(self, step: int, params) -> None:
        matrix = self.matrix_of(params)
        if matrix is None or (self.steps and self.steps[-1] == step):  # a model without recurrence: nothing to track
            return
        self.steps.append(int(step))
        self.values.append(eigenvalues(matrix))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.steps:
            return {}
        return {"eig_steps": np.array(self.steps), "eig_values": np.stack(self.values)}
