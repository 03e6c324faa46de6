"""Fixed points and slow points of the CTRNN under a static input u.

    F(x) = -x + J tanh(x) + B u + b_x,        DF(x) = -I + J diag(1 - tanh² x)

Fixed points solve F(x) = 0; slow points are local minima of q(x) = ½‖F(x)‖² with q small but > 0.

Both are found by one Levenberg–Marquardt iteration, run for all starts at once (vmap over starts,
one jitted `lax.while_loop`): with A = DF(x),

    (AᵀA + μ I) δ = -Aᵀ F,      x ← x + δ  only if ‖F(x + δ)‖ < ‖F(x)‖;  μ by Nielsen's gain-ratio rule.

Why AᵀA + μI rather than A + μI: AᵀA + μI is symmetric positive definite for every μ > 0, so it
always has a Cholesky factor and δ is always a descent direction of q (∇q = AᵀF); as μ → 0 the step
is the Newton step (quadratic convergence at a regular fixed point), as μ → ∞ it is gradient descent
on q with step 1/μ. A + μI is singular whenever DF has the eigenvalue -μ, and stable fixed points
have exactly such negative eigenvalues, so that damping can fail just where we want to converge.

AᵀA costs O(N²) per point, not O(N³): with d = 1 - tanh² x and G = JᵀJ formed once,
(AᵀA)_ij = δ_ij - J_ij d_j - d_i J_ji + d_i G_ij d_j. What is left per step is one N×N Cholesky.

Each start stops on its own (‖F‖ < tol, ‖∇q‖ < grad_tol, μ past 1/ε, or max_iter): a converged
point is never moved again, whatever the others do. Deduplication and eigenvalues run on the host
(eig has no accelerator kernel everywhere); deduplication is greedy over the points sorted by
residual, each compared only with the unique points kept so far, so memory is O(K·N), not O(S²).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

Params = dict


def fixed_point_residual(params: Params, u, x: jax.Array) -> jax.Array:
    """F(x) = -x + J tanh(x) + B u + b_x (the velocity of the continuous-time RNN at x)."""
    return -x + params["J"] @ jnp.tanh(x) + params["B"] @ jnp.asarray(u) + params["b_x"]


def jacobian(params: Params, x: jax.Array) -> jax.Array:
    """DF(x) = -I + J diag(1 - tanh² x) (the input does not enter: it only shifts F)."""
    J = params["J"]
    return -jnp.eye(J.shape[0], dtype=J.dtype) + J * (1.0 - jnp.tanh(x) ** 2)[None, :]


def default_tol(dtype, n_units: int) -> float:
    """‖F‖ below which x counts as a fixed point: 1e-10 in float64, 1e-5 in float32, and never below
    10 ε √N, the size of the rounding error of F itself (N terms of J tanh x, each rounded by ε)."""
    eps = float(jnp.finfo(dtype).eps)
    base = 1e-10 if eps < 1e-12 else 1e-5 if eps < 1e-4 else 1e-2
    return max(base, 10.0 * eps * float(np.sqrt(n_units)))


class LMResult(NamedTuple):
    """Per-start output of `levenberg_marquardt` (JAX arrays, one row per start)."""
    points: jax.Array          # (S, N) where each start stopped
    residual_norms: jax.Array  # (S,) ‖F‖ there
    n_iter: jax.Array          # (S,) iterations each start ran before it stopped


class _State(NamedTuple):
    """One start's Levenberg–Marquardt state (batched: a leading axis over starts)."""
    x: jax.Array          # (N,) current point
    f: jax.Array          # (N,) F(x)
    norm: jax.Array       # ‖F(x)‖
    grad_norm: jax.Array  # ‖∇q(x)‖
    mu: jax.Array         # damping μ
    nu: jax.Array         # growth factor of μ after a rejected step (doubles on each rejection)
    stalled: jax.Array    # the last accepted step lowered ‖F‖ by less than ftol·‖F‖
    n_iter: jax.Array     # iterations run so far


def _lm_problem(params, u, tol, grad_tol, ftol, max_iter):
    """(init, step, running) for one start; `step` is one LM iteration, `running` the stopping test."""
    J = params["J"]
    dtype = J.dtype
    eye = jnp.eye(J.shape[0], dtype=dtype)
    gram = J.T @ J
    drive = params["B"] @ u + params["b_x"]
    mu_min, mu_max = 10.0 * jnp.finfo(dtype).eps, 1.0 / jnp.finfo(dtype).eps

    def residual(x):
        return -x + J @ jnp.tanh(x) + drive

    def gradient(x, f):  # ∇q = DFᵀ F = -F + d ⊙ (Jᵀ F)
        return -f + (1.0 - jnp.tanh(x) ** 2) * (J.T @ f)

    def init(x0):
        f0 = residual(x0)
        return _State(x0, f0, jnp.linalg.norm(f0), jnp.linalg.norm(gradient(x0, f0)), jnp.asarray(1e-2, dtype),
                      jnp.asarray(2.0, dtype), jnp.asarray(False), jnp.asarray(0, jnp.int32))

    def running(s: _State):
        return (s.norm >= tol) & (s.grad_norm >= grad_tol) & (s.mu < mu_max) & ~s.stalled & (s.n_iter < max_iter)

    def step(s: _State) -> _State:
        d = 1.0 - jnp.tanh(s.x) ** 2
        normal = (eye - J * d[None, :] - d[:, None] * J.T + d[:, None] * gram * d[None, :]) + s.mu * eye
        grad = gradient(s.x, s.f)
        delta = -cho_solve(cho_factor(normal, lower=True), grad)
        x_try = s.x + delta
        f_try = residual(x_try)
        norm_try = jnp.linalg.norm(f_try)
        accept = norm_try < s.norm  # False for NaN (a failed Cholesky), so that step is rejected too
        # gain ratio ρ = actual / predicted decrease of q, the model's being ½ δᵀ(μ δ - ∇q) (Nielsen's μ update)
        rho = (s.norm ** 2 - norm_try ** 2) / jnp.maximum(delta @ (s.mu * delta - grad), jnp.finfo(dtype).tiny)
        x, f, norm = (jnp.where(accept, new, old) for new, old in ((x_try, s.x), (f_try, s.f), (norm_try, s.norm)))
        return _State(
            x, f, norm,
            grad_norm=jnp.where(accept, jnp.linalg.norm(gradient(x, f)), s.grad_norm),
            mu=jnp.where(accept, jnp.maximum(s.mu * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), mu_min), s.mu * s.nu),
            nu=jnp.where(accept, 2.0, 2.0 * s.nu).astype(dtype),
            stalled=accept & (s.norm - norm_try < ftol * s.norm),
            n_iter=s.n_iter + 1)

    return init, step, running


N_BUCKETS = 4  # the loop steps the first S, S/2, S/4 or S/8 starts, whichever is the least that holds all running


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _lm_batch(params, u, starts, tol, grad_tol, ftol, max_iter):
    """All starts in one while loop. Each pass puts the running starts first (stable argsort) and
    steps only the smallest leading block (S, S/2, S/4, S/8) that holds them all, vmapped; within
    the block a start that has stopped keeps its state (masked), so stopped points never move."""
    init, step, running = _lm_problem(params, u, tol, grad_tol, ftol, max_iter)
    states = jax.vmap(init)(starts)
    n_starts = starts.shape[0]
    sizes = sorted({-(-n_starts // 2 ** k) for k in range(N_BUCKETS)}, reverse=True)

    def masked_step(s):
        return jax.tree.map(functools.partial(jnp.where, running(s)), step(s), s)

    def step_first(size):
        def branch(states, order):
            rows = order[:size]
            block = jax.vmap(masked_step)(jax.tree.map(lambda a: a[rows], states))
            return jax.tree.map(lambda a, b: a.at[rows].set(b), states, block)
        return branch

    def body(states):
        active = jax.vmap(running)(states)
        order = jnp.argsort(~active, stable=True)
        branch = jnp.sum(jnp.asarray(sizes) >= jnp.sum(active)) - 1
        return jax.lax.switch(branch, [step_first(size) for size in sizes], states, order)

    states = jax.lax.while_loop(lambda states: jnp.any(jax.vmap(running)(states)), body, states)
    return states.x, states.norm, states.n_iter


def levenberg_marquardt(params: Params, u, starts, *, tol: float | None = None, grad_tol: float = 0.0,
                        ftol: float | None = None, max_iter: int = 200) -> LMResult:
    """Minimise q = ½‖F‖² from every row of `starts` (S, N) at once, each start stopping on its own
    when ‖F‖ < tol, ‖∇q‖ < grad_tol, an accepted step lowers ‖F‖ by less than ftol·‖F‖ (a local
    minimum of q that is not a root: there Gauss–Newton crawls; default max(1e-6, 100 ε)), μ > 1/ε
    (no step lowers ‖F‖ any more) or after max_iter."""
    J = params["J"]
    u = jnp.asarray(u, J.dtype).reshape(-1)
    starts = jnp.asarray(starts, J.dtype)
    tol = default_tol(J.dtype, J.shape[0]) if tol is None else tol
    ftol = max(1e-6, 100 * float(jnp.finfo(J.dtype).eps)) if ftol is None else ftol
    return LMResult(*_lm_batch(params, u, starts, tol, grad_tol, ftol, int(max_iter)))


def deduplicate(points: np.ndarray, scores: np.ndarray, radius: float) -> np.ndarray:
    """Indices of unique points: greedy in order of increasing score, a point is kept unless it lies
    within `radius` (Euclidean) of a point already kept. O(S·K·N) time, O(K·N) memory."""
    points = np.asarray(points)
    kept: list[int] = []
    for i in np.argsort(scores, kind="stable"):
        if kept and np.min(np.linalg.norm(points[kept] - points[i], axis=1)) < radius:
            continue
        kept.append(int(i))
    return np.array(kept, dtype=int)


def jacobian_eigenvalues(params: Params, points) -> np.ndarray:
    """Eigenvalues (K, N) of DF at each point, on the host, each row sorted by descending real part."""
    points = np.asarray(points)
    n = np.asarray(params["J"]).shape[0]
    if len(points) == 0:
        return np.zeros((0, n), complex)
    jacobians = np.asarray(jax.vmap(jacobian, in_axes=(None, 0))(params, jnp.asarray(points)))
    values = np.linalg.eigvals(jacobians.astype(np.float64))
    order = np.argsort(-values.real, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)


class FixedPoints(NamedTuple):
    """Unique fixed points, sorted by residual, with the spectrum of DF at each."""
    points: np.ndarray          # (K, N)
    residual_norms: np.ndarray  # (K,) ‖F‖
    eigenvalues: np.ndarray     # (K, N) complex, each row by descending real part
    n_unstable: np.ndarray      # (K,) eigenvalues with Re > 0
    is_stable: np.ndarray       # (K,) every eigenvalue has Re < 0
    n_converged: int            # starts that reached ‖F‖ < tol (before deduplication)
    n_starts: int

    def unstable_frequencies(self) -> list[np.ndarray]:
        """Per point, Im λ of the eigenvalues with Re λ > 0 (rad per unit time; ± pairs both listed)."""
        return [values.imag[values.real > 0] for values in self.eigenvalues]


def find_fixed_points(params: Params, u, starts, *, tol: float | None = None, max_iter: int = 200,
                      dedup_radius: float = 1e-2) -> FixedPoints:
    """Fixed points F(x) = 0 reached by Levenberg–Marquardt from the starts (S, N); keeps those with
    ‖F‖ < tol (default from the dtype, see `default_tol`), merges those within dedup_radius."""
    J = params["J"]
    tol = default_tol(J.dtype, J.shape[0]) if tol is None else tol
    result = levenberg_marquardt(params, u, starts, tol=tol, max_iter=max_iter)
    points, norms = np.asarray(result.points), np.asarray(result.residual_norms)
    converged = np.flatnonzero(norms < tol)
    unique = converged[deduplicate(points[converged], norms[converged], dedup_radius)]
    eigenvalues = jacobian_eigenvalues(params, points[unique])
    return FixedPoints(
        points=points[unique], residual_norms=norms[unique], eigenvalues=eigenvalues,
        n_unstable=np.sum(eigenvalues.real > 0, axis=1), is_stable=np.all(eigenvalues.real < 0, axis=1),
        n_converged=int(converged.size), n_starts=int(points.shape[0]))


class SlowPoints(NamedTuple):
    """Unique slow points (tol ≤ ‖F‖ and q < q_tol), sorted by q."""
    points: np.ndarray    # (K, N)
    q_values: np.ndarray  # (K,) q = ½‖F‖²
    n_starts: int


def slow_points(params: Params, u, starts, *, q_tol: float, tol: float | None = None,
                grad_tol: float | None = None, max_iter: int = 300, dedup_radius: float = 1e-2) -> SlowPoints:
    """Local minima of q(x) = ½‖F(x)‖² that are not fixed points: Levenberg–Marquardt on F from the
    starts, each stopping when ‖∇q‖ = ‖DFᵀF‖ < grad_tol (default tol²: far below any gradient seen
    away from a minimum) or ‖F‖ < tol; keeps q < q_tol with ‖F‖ ≥ tol, merged within dedup_radius."""
    J = params["J"]
    tol = default_tol(J.dtype, J.shape[0]) if tol is None else tol
    grad_tol = max(tol * tol, float(jnp.finfo(J.dtype).tiny)) if grad_tol is None else grad_tol
    result = levenberg_marquardt(params, u, starts, tol=tol, grad_tol=grad_tol, max_iter=max_iter)
    points, norms = np.asarray(result.points), np.asarray(result.residual_norms)
    q = 0.5 * norms ** 2
    slow = np.flatnonzero((q < q_tol) & (norms >= tol))
    unique = slow[deduplicate(points[slow], q[slow], dedup_radius)]
    return SlowPoints(points=points[unique], q_values=q[unique], n_starts=int(points.shape[0]))
