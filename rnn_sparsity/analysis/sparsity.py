"""Sparsity of parameter sets: exact zeros and near zeros (|θ| < ε, ε = `analysis.near_zero`, default 1e-4:
the teacher-student study's count of zeros, laschulz/investigating_sparseNN)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

NEAR_ZERO = 1e-4  # the default of analysis.near_zero (probes.AnalysisConfig)


def sparsity_metrics(params: Mapping[str, np.ndarray], names, near_zero: float = NEAR_ZERO) -> dict[str, float]:
    """Over the named parameters together: fraction of entries exactly 0 (`sparsity`) and with
    |θ| < near_zero (`near_zero_fraction`); also per parameter as `sparsity/<name>` and
    `near_zero_fraction/<name>`."""
    flat = np.concatenate([np.ravel(params[n]) for n in names])
    out = {"sparsity": float(np.mean(flat == 0)), "near_zero_fraction": float(np.mean(np.abs(flat) < near_zero))}
    out.update({f"sparsity/{n}": float(np.mean(np.asarray(params[n]) == 0)) for n in names})
    out.update({f"near_zero_fraction/{n}": float(np.mean(np.abs(np.asarray(params[n])) < near_zero)) for n in names})
    return out
