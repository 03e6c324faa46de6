"""Low-rank control of fast-decaying linear dynamics: losses, decay curves and a differentiable eig.

The network is linear,   τ dx/dt = -x + J x,   J = J0 + Û V̂,

with J0 ~ N(0, 1/N) fixed, U (N×n) and V (n×N) trained (n = round(N · rank_fraction)), Û = U with each
column scaled to unit norm, V̂ = V with each row scaled to unit norm, and a fixed readout w ~ N(0, 1/N).

With A = (J - I)/τ (so dx/dt = A x), its eigenvalues γ_i, right eigenvectors R (columns, unit norm),
Γ = diag(γ) and L = (RᴴR)⁻¹ = R⁻¹R⁻ᴴ, the solution is x(t) = R e^{Γt} R⁻¹ x0, and over starts
x0 ~ N(0, I)

    E‖x(t)‖² = Tr(e^{At} e^{Aᵀt}) = Tr(R e^{Γt} L e^{Γ*t} Rᴴ) = Σ_ij L_ij e^{(γ_i + γ_j*)t} (RᴴR)_ji.

When every Re γ_i < 0, ∫_0^∞ e^{(γ_i + γ_j*)t} dt = -1/(γ_i + γ_j*) = F_ij, hence (s = t/τ: time in units of τ)

    decay       L1 = Tr(R (L∘F) Rᴴ) / (Nτ)   = (1/N) ∫ E‖x‖² ds          = Tr(P) / (Nτ),
    stability   L2 = Σ_i max(Re γ_i, 0)²,
    smoothness  L3 = τ wᵀ R (L∘G) Rᴴ w       = ∫ E(wᵀ dx/ds)² ds = τ ∫ E(wᵀ ẋ)² dt = τ wᵀ A P Aᵀ w,

with G_ij = γ_i γ_j* F_ij (ẋ = A x puts γ_i on the left and γ_j* on the right) and P the solution of the
Lyapunov equation A P + P Aᵀ = -I (P = ∫ e^{At} e^{Aᵀt} dt). Both L1 and L3 are τ-free: the 1/τ and the τ
turn integrals over t into integrals over s. L1 is the mean squared activity per unit, L3 the squared
readout velocity, each summed over the whole decay. When some Re γ_i ≥ 0 the integrals diverge and the
formulas are only their analytic continuation: F_ii = -1/(2 Re γ_i) < 0 for an unstable mode, so crossing
into instability can lower L1 (it jumps from +∞ to -∞ as Re γ_i crosses 0); L2, weighted by α, is what keeps
training on the stable side.

Gradients go through the eigen-decomposition by `eig`, a custom JVP (jnp.linalg.eig refuses eigenvector
derivatives of non-symmetric matrices); reverse mode is its transpose, so `jax.grad` works. The
decomposition itself is `jax.lax.linalg.eig`, which has a CPU kernel (the study runs on CPU); it assumes
distinct eigenvalues (generic for a random J, but not J = c I, where only the forward pass is defined).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import expm
from scipy.optimize import brentq



# ------------------------------------------------------------------------- differentiable eigensystem
@jax.custom_jvp
def eig(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(γ, R): eigenvalues and right eigenvectors (columns, ‖R_:k‖ = 1, phase LAPACK's) of a square A."""
    gamma, R = jax.lax.linalg.eig(A, compute_left_eigenvectors=False, compute_right_eigenvectors=True)
    return gamma, R


@eig.defjvp
def _eig_jvp(primals, tangents):
    """With C = R⁻¹ dA R (differentiating A R = R Γ):  dγ = diag C,  dR = R Ω - R diag(Re(Rᴴ R Ω)_kk),
    Ω_ij = C_ij / (γ_j - γ_i) for i ≠ j, 0 on the diagonal.

    The last term is the one that keeps ‖R_:k‖ = 1 (d‖r_k‖² = 2 Re r_kᴴ dr_k = 0): the forward map returns
    unit-norm eigenvectors, so its derivative must too, or a loss that depends on that normalisation gets a
    wrong gradient. The phase of each eigenvector is left fixed (Im of the diagonal of R⁻¹dR = 0), so a loss
    must not depend on the phase. This is the tangent form of Giles (2008) and of PyTorch's
    linalg_eig_backward; it agrees with JAX's opt-in rule (jax.lax.linalg.eig(..., enable_eigvec_derivs=True)).
    Plain jnp.linalg.eig refuses to differentiate eigenvectors of a non-symmetric matrix.
    """
    (A,), (dA,) = primals, tangents
    gamma, R = eig(A)
    C = jnp.linalg.solve(R, dA.astype(R.dtype) @ R)
    off = ~jnp.eye(gamma.shape[-1], dtype=bool)
    gap = gamma[None, :] - gamma[:, None]
    dR = R @ jnp.where(off, C / jnp.where(off, gap, 1.0), 0.0)
    dR = dR - R * jnp.real(jnp.sum(jnp.conj(R) * dR, axis=0, keepdims=True))
    return (gamma, R), (jnp.diagonal(C), dR)


@jax.jit
def _eigensystem(J: jax.Array, tau) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(γ, R, RᴴR, L = (RᴴR)⁻¹) of A = (J - I)/τ."""
    A = (J - jnp.eye(J.shape[0], dtype=J.dtype)) / tau
    gamma, R = eig(A)
    gram = jnp.conj(R).T @ R
    return gamma, R, gram, jnp.linalg.inv(gram)


# ----------------------------------------------------------------------------------------- the losses
STABILITY_MARGIN = 1e-4  # Re γ τ above -this counts as marginal in L1 and L3 (a decay time of 10⁴ τ)
@jax.jit
def decay_losses(J: jax.Array, w: jax.Array, tau) -> dict[str, jax.Array]:
    """{"decay": L1, "stability": L2, "smoothness": L3} for A = (J - I)/τ (see the module docstring).

    Tr(R M Rᴴ) = Σ_ij M_ij (RᴴR)_ji and wᵀ R M Rᴴ w = aᵀ M a*, a = Rᵀ w: R (L∘F) Rᴴ itself is never formed.
    The imaginary parts (zero in exact arithmetic: L∘F and L∘G are Hermitian) are dropped.

    L1 and L3 are integrals over a decay, +∞ once any Re γ ≥ 0; the formulas then give finite values of
    either sign (F_ii = -1/(2 Re γ_i) flips to -∞ as Re γ_i crosses 0), which an optimiser would chase
    across the stability line. So in F and G the real parts are capped at -STABILITY_MARGIN/τ: where
    the network is stable by more than that the terms are exact, beyond it they stay large and positive
    (and flat), and the stability loss L2 on the uncapped γ pushes back.
    """
    gamma, R, gram, L = _eigensystem(J, tau)
    capped = jnp.minimum(jnp.real(gamma), -STABILITY_MARGIN / tau) + 1j * jnp.imag(gamma)
    F = -1.0 / (capped[:, None] + jnp.conj(capped)[None, :])
    G = capped[:, None] * jnp.conj(capped)[None, :] * F
    a = R.T @ w.astype(R.dtype)
    n_units = J.shape[0]
    return {"decay": jnp.real(jnp.sum(L * F * gram.T)) / (n_units * tau),
            "stability": jnp.sum(jnp.maximum(jnp.real(gamma), 0.0) ** 2),
            "smoothness": tau * jnp.real(a @ (L * G) @ jnp.conj(a))}


# --------------------------------------------------------------------------------------- decay curves
@jax.jit
def _norm_curve(gamma: jax.Array, weights: jax.Array, times) -> jax.Array:
    """√(E‖x(t)‖² / N) at each t = √(Re e(t)ᵀ K e(t)* / N), e(t) = e^{γt}, K = L∘(RᴴR)ᵀ (Σ_ij K_ij = N)."""
    modes = jnp.exp(gamma[None, :] * jnp.atleast_1d(jnp.asarray(times))[:, None])
    squared = jnp.real(jnp.sum((modes @ weights) * jnp.conj(modes), axis=1))
    return jnp.sqrt(jnp.maximum(squared, 0.0) / gamma.shape[0])


def _curve_parts(J, tau) -> tuple[jax.Array, jax.Array]:
    """(γ, K = L∘(RᴴR)ᵀ): all `_norm_curve` needs, from one eigen-decomposition of A = (J - I)/τ."""
    gamma, _, gram, L = _eigensystem(jnp.asarray(J), tau)
    return gamma, L * gram.T


def expected_norm(J: jax.Array, tau, times) -> jax.Array:
    """√(E‖x(t)‖² / N) over starts x0 ~ N(0, I), at each of `times` (same units as τ).

    As E‖x(0)‖² = N this is the root-mean-square norm relative to its value at t = 0: 1 at t = 0, and it
    equals ‖e^{At}‖_F / √N. It is not monotone in general: a non-normal J can amplify before it decays.
    """
    return _norm_curve(*_curve_parts(J, tau), times)


def _first_crossing(gamma, weights, fraction: float, t_max: float, n_grid: int = 2001) -> float:
    grid = np.linspace(0.0, t_max, n_grid)
    below = np.flatnonzero(np.asarray(_norm_curve(gamma, weights, grid)) < fraction)
    if below.size == 0:
        return float("nan")
    k = below[0]
    if k == 0:  # fraction ≥ 1: already there at t = 0
        return 0.0
    excess = lambda t: float(_norm_curve(gamma, weights, t)[0]) - fraction  # noqa: E731
    return float(brentq(excess, grid[k - 1], grid[k], xtol=1e-14 * max(t_max, 1.0), rtol=4 * np.finfo(float).eps))


def _mode_time(rate: float, fraction: float) -> float:
    """ln(1/fraction) / rate for a decay rate -max Re γ > 0, else NaN."""
    return float(np.log(1.0 / fraction) / rate) if rate > 0 else float("nan")


def decay_times(J: jax.Array, tau, fraction: float, t_max: float, steps_per_tau: int = 8) -> dict[str, float]:
    """The three readings of "decay to `fraction`", from one eigen-decomposition: {"expected": the mean start's,
    "mode": the slowest eigenmode's, "worst": the worst start's} (NaN where not reached by t_max).

    expected: the first t ≤ t_max at which `expected_norm` falls below `fraction` (of its value 1 at
    t = 0), on a grid of 2001 points refined by Brent's method (a dip narrower than the grid step can
    be missed; for J = c I it is τ ln(1/fraction) / (1 - c)). mode: τ ln(1/fraction) / (-max Re γ τ),
    the asymptotic decay time (every start ends up decaying at this rate). worst: the first t at which
    ‖e^{At}‖₂ < `fraction`, so that no start's norm is above `fraction` of where it began: as
    ‖e^{At}‖₂ is at least both other curves, the search starts at the later of the two, steps e^{At}
    forward by e^{A τ/steps_per_tau} and refines the crossing by bisection on expm(A t)."""
    gamma, weights = _curve_parts(J, tau)
    expected = _first_crossing(gamma, weights, fraction, t_max)
    mode = _mode_time(-float(jnp.max(jnp.real(gamma))), fraction)
    return {"expected": expected, "mode": mode,
            "worst": _worst_crossing(J, tau, fraction, t_max, max(expected, mode), steps_per_tau)}


def _worst_crossing(J, tau, fraction: float, t_max: float, start: float, steps_per_tau: int) -> float:
    """The worst-start search from the lower bound `start` (NaN: no bound within t_max)."""
    if not start <= t_max:  # NaN (never decays within t_max) or beyond it
        return float("nan")
    J = np.asarray(J, np.float64)
    A = (J - np.eye(len(J))) / tau
    h = tau / steps_per_tau
    step, t, M = expm(A * h), start, expm(A * start)
    while np.linalg.norm(M, 2) >= fraction:
        if t + h > t_max:
            return float("nan")
        t, M = t + h, M @ step
    if t == start:
        return start
    return float(brentq(lambda s: np.linalg.norm(expm(A * s), 2) - fraction, t - h, t, xtol=1e-12 * tau))


@jax.jit
def max_real_eigenvalue(J: jax.Array) -> jax.Array:
    """max_i Re λ_i(J) (the network is stable iff this is < 1, i.e. max Re γ < 0)."""
    return jnp.max(jnp.real(jnp.linalg.eigvals(J)))
