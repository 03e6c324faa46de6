"""Dominant angular frequency of short signals, by least-squares sinusoid fits.

An FFT bin is 2π/T wide, which for the sine task's slowest frequency (ω = 0.1 over T = 64, one cycle)
is as wide as the frequency itself. Instead, for each candidate ω we fit y ≈ c + a cos ωt + b sin ωt by
least squares and take the ω that explains the most power: exact for a pure sinusoid of any phase,
whatever the number of cycles, and robust to an offset.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar


def _basis(omega: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(G, T, 3) design matrices [1, cos ωt, sin ωt] for G frequencies."""
    phase = omega[:, None] * t[None, :]
    return np.stack([np.ones_like(phase), np.cos(phase), np.sin(phase)], axis=-1)


def explained_power(omega: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||P_ω y||² for each ω (G,) and signal column of y (T, B): the power of the best fit, (G, B)."""
    x = _basis(np.atleast_1d(omega), t)
    gram = np.einsum("gti,gtj->gij", x, x) + 1e-12 * np.eye(3)
    rhs = np.einsum("gti,tb->gib", x, y)
    coef = np.linalg.solve(gram, rhs)
    return np.einsum("gib,gib->gb", coef, rhs)


def dominant_frequency(signals: np.ndarray, dt: float, omega_max: float, oversample: int = 8) -> np.ndarray:
    """Angular frequency (rad per time unit) of the best-fitting sinusoid for each column of (T, B).

    A grid from a quarter cycle per window up to `omega_max` with spacing 2π/(T·oversample), then a
    bounded scalar refinement around each column's best grid point.
    """
    signals = np.asarray(signals, dtype=float)
    if signals.ndim == 1:
        return dominant_frequency(signals[:, None], dt, omega_max, oversample)[0]
    t = np.arange(signals.shape[0]) * dt
    span = t[-1] + dt
    spacing = 2 * np.pi / (span * oversample)
    grid = np.arange(0.5 * np.pi / span, max(omega_max, 2 * spacing), spacing)
    best = grid[np.argmax(explained_power(grid, t, signals), axis=0)]
    refined = np.empty(signals.shape[1])
    for b, w0 in enumerate(best):
        res = minimize_scalar(lambda w: -explained_power(np.array([w]), t, signals[:, b:b + 1])[0, 0],
                              bounds=(max(w0 - spacing, 1e-9), w0 + spacing), method="bounded",
                              options={"xatol": 1e-6 * max(w0, 1e-3)})
        refined[b] = res.x
    return refined
