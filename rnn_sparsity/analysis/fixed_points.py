"""Fixed points and slow points of a rate network under a static input: of the vector field

    F(x) = -x + J tanh(x) + c,        DF(x) = -I + J diag(1 - tanh² x)

(maths.rate_velocity, maths.rate_jacobian), given as its connectivity J and constant drive c (for the
CTRNN c = B u + b_x under input u: models/ctrnn.rate_field).

Fixed points solve F(x) = 0; slow points are local minima of q(x) = ½‖F(x)‖² with q small but > 0.

Both are found by one Levenberg–Marquardt iteration, run for all starts at once (one jitted
`lax.while_loop` over vmapped blocks of starts): with A = DF(x),

    (AᵀA + μ I) δ = -Aᵀ F,    x ← x + α δ  for the first α in (1, ½, ¼) with ‖F(x + α δ)‖ < ‖F(x)‖;
    μ by Nielsen's gain-ratio rule after a full step, doubled after a shortened one, grown after none.

Why AᵀA + μI rather than A + μI: AᵀA + μI is symmetric positive definite for every μ > 0, so it
always has a Cholesky factor and δ is always a descent direction of q (∇q = AᵀF); as μ → 0 the step
is the Newton step (quadratic convergence at a regular fixed point), as μ → ∞ it is gradient descent
on q with step 1/μ. A + μI is singular whenever DF has the eigenvalue -μ, and stable fixed points
have exactly such negative eigenvalues, so that damping can fail just where we want to converge.
(An LU solve of A itself would also cost twice the flops of the Cholesky factor of AᵀA + μI.)

AᵀA costs O(N²) per point, not O(N³): with d = 1 - tanh² x and G = JᵀJ formed once,
(AᵀA)_ij = δ_ij - J_ij d_j - d_i J_ji + d_i G_ij d_j. What is left per step is one N×N Cholesky,
and that is where the time goes (LAPACK potrf, about half of a step on CPU at N = 100). So:

  * Far from a root (‖F‖ ≥ NEAR = 1e-3) a float64 problem factors AᵀA + μI in float32: the step
    only has to be a good descent direction there, and float32 potrf is 1.6× (N = 100) to 2×
    (N = 200) faster. Its relative error (~κ·1e-7) left the iteration counts within 1% and the fixed
    points found unchanged on 12 test networks; F, ‖F‖ and the acceptance test stay float64, and
    below NEAR the factorisation is float64, so the final convergence and its accuracy are as before.
  * A step whose full length does not lower ‖F‖ tries ½ and ¼ of it (two evaluations of F, O(N²))
    before paying for a new factorisation with a larger μ: 10% fewer factorisations on 12 test
    networks, and slightly more starts converge. With everything here, 20 networks (N = 100, gain
    1.2–3, 100 starts each) gave 174 unique fixed points where the previous version found 162 and
    scipy's root(method='lm') 176, in 19% fewer iterations (the same counts as scipy's on all 10
    networks with gain ≤ 1.5; either side finds more on some of the others).
  * Each pass steps `block` (8 at N ≥ 100) running starts, chosen afresh each pass, so nearly every
    factorisation is spent on a running start (97% at N = 100, 100 starts; the former halving
    buckets of S, S/2, S/4, S/8 starts spent ~20% on starts that had already stopped).
  * OpenBLAS runs on one thread during the search and the eigenvalues (`blas.single_threaded_blas`):
    it splits even these small factorisations over its threads, and on a busy machine each split
    waits for a descheduled thread (measured: N = 200 search 1.4–30 s instead of 0.4 s).
Measured and not kept: an extra chord step per factorisation (15% fewer factorisations, but the
extra solves and evaluations cost as much), geodesic acceleration (4% fewer iterations), μ₀ = 1e-3
(4% fewer, but fewer distinct fixed points), iterative refinement of the float32 solves (costs what
float32 saves), two blocks per pass for the two cores (slower; concurrent LAPACK calls even hung).

Each start stops on its own (‖F‖ < tol, ‖∇q‖ < grad_tol, μ past 1/ε, or max_iter): a converged
point is never moved again, whatever the others do, and which starts share a pass does not change
a start's iteration (beyond rounding). `find_fixed_points` stops crawling starts a little earlier
than `levenberg_marquardt`'s default (FIXED_POINT_FTOL). Deduplication and eigenvalues run on the
host (eig has no accelerator kernel everywhere); deduplication is greedy over the points sorted by
residual, each compared only with the unique points kept so far, so memory is O(K·N), not O(S²).

Measured on a shared 2-core CPU (benchmarks/bench_fixed_points.py, N = 100, 100 starts): the
search with deduplication and eigenvalues takes ~70 ms (the previous version ~150–180 ms in the
same runs) and scipy's root(method='lm', jac=DF) per start ~1.6 s; compile ~1.8 s (was ~3.5 s).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from ..blas import single_threaded_blas
from ..contracts import Dynamics
from ..maths import rate_jacobian, rate_velocity, rate_velocity_vjp


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


MU_INIT = 1e-2           # initial damping μ
BACKTRACK = (0.5, 0.25)  # fractions of δ tried when the full step does not lower ‖F‖
NEAR = 1e-3              # ‖F‖ below which a float64 problem factors in float64 (float32 above)
# find_fixed_points' stall test (levenberg_marquardt's default is 1e-6): it wants roots only, and a
# start whose accepted steps lower ‖F‖ by < 1e-5 relative is crawling into a minimum of q > 0. On 20
# networks this cut 9% of the iterations and changed no unique fixed point (1 of 903 converged
# starts fewer); 1e-4 cut 19% but lost 2 of 174 unique points.
FIXED_POINT_FTOL = 1e-5


class RateNetwork(NamedTuple):
    """F(x) = -x + J tanh(x) + c (J (N, N), drive c (N,)): the finder's fast path (module docstring)."""
    J: jax.Array
    drive: jax.Array


class StateDynamics(NamedTuple):
    """A model's dynamics (contracts.Dynamics) with its parameters, under the static input u: the
    residual r(h) = F(h, u) for a flow, f(h, u) - h for a map, with A = ∂r/∂h formed per step
    (analytic where the model gives one, jax.jacfwd otherwise), AᵀA + μI factored as on the fast path."""
    dynamics: Dynamics
    params: Any
    u: jax.Array


def problem(dynamics: Dynamics, params, u) -> RateNetwork | StateDynamics:
    """What the finder solves for these dynamics under input u: the rate network where the model
    has that form (its fast path), the general state dynamics otherwise."""
    if dynamics.rate_field is not None:
        J, drive = dynamics.rate_field(params, u)
        return RateNetwork(jnp.asarray(J), jnp.asarray(drive, jnp.asarray(J).dtype).reshape(-1))
    params = jax.tree.map(jnp.asarray, params)
    dtype = jax.tree.leaves(params)[0].dtype
    return StateDynamics(dynamics, params, jnp.asarray(u, dtype).reshape(-1))


def _static_and_args(prob: RateNetwork | StateDynamics):
    """(the static part jit keys on, the traced arrays) of a problem."""
    if isinstance(prob, RateNetwork):
        J = jnp.asarray(prob.J)
        return None, (J, jnp.asarray(prob.drive, J.dtype).reshape(-1))
    return prob.dynamics, (prob.params, prob.u)


def field_residual(dynamics: Dynamics, params, u) -> Callable:
    """r(h) of the model's field itself: F(h, u) for a flow, f(h, u) − h for a map."""
    def residual(h):
        f = dynamics.field(params, h, u)
        return f - h if dynamics.kind == "map" else f
    return residual


def field_jacobian(dynamics: Dynamics) -> Callable:
    """∂field/∂h at (params, h, u): the model's analytic one, or forward-mode autodiff of its field."""
    if dynamics.jacobian is not None:
        return dynamics.jacobian
    return jax.jacfwd(dynamics.field, argnums=1)


def _residual_parts(static, args):
    """(residual(x), gradient(x, f) = ∂rᵀ f, normal(x, μ, solve_dtype) = AᵀA + μI, dtype) of a problem
    (static None: the rate network)."""
    if static is None:
        return _rate_parts(*args)
    dynamics, (params, u) = static, args
    dtype = jax.tree.leaves(params)[0].dtype

    if dynamics.roots is not None:  # the model's better-conditioned residual with the same roots
        def residual(x):
            return dynamics.roots(params, x, u)

        def jacobian(x):
            return jax.jacfwd(residual)(x)
    else:
        residual = field_residual(dynamics, params, u)

        def jacobian(x):
            a = field_jacobian(dynamics)(params, x, u)
            return a - jnp.eye(a.shape[0], dtype=a.dtype) if dynamics.kind == "map" else a

    def gradient(x, f):
        return jax.vjp(residual, x)[1](f)[0]

    def normal(x, mu, solve_dtype):
        a = jacobian(x).astype(solve_dtype)
        return a.T @ a + mu.astype(solve_dtype) * jnp.eye(a.shape[0], dtype=solve_dtype)

    return residual, gradient, normal, dtype


def _rate_parts(J, drive):
    """The rate network's residual F, gradient DFᵀF and normal matrix in O(N²) (module docstring)."""
    dtype = J.dtype
    eye = jnp.eye(J.shape[0], dtype=dtype)
    gram = J.T @ J
    J_t = J.T
    # LAPACK wants the normal matrix column-major. Written as below, with Jᵀ stored (the barrier
    # stops XLA from folding (Jᵀ)ᵀ back into J) and G = Gᵀ read transposed, the fused loop that
    # writes it down the columns reads every operand along its rows (measured ~5% per step).
    consts = {jnp.dtype(dtype): (jax.lax.optimization_barrier(J.T), J, gram, eye)}
    if jnp.dtype(dtype) == jnp.float64:
        consts[jnp.dtype(jnp.float32)] = tuple(a.astype(jnp.float32) for a in consts[jnp.dtype(dtype)])

    def residual(x):
        return rate_velocity(x, J_t, drive)

    def gradient(x, f):  # ∇q = DFᵀ F
        return rate_velocity_vjp(x, J, f)

    def normal(x, mu, solve_dtype):
        d = (1.0 - jnp.tanh(x) ** 2).astype(solve_dtype)
        jt, j, g, e = consts[jnp.dtype(solve_dtype)]
        return e - jt.T * d[None, :] - d[:, None] * j.T + d[:, None] * g.T * d[None, :] + mu.astype(solve_dtype) * e

    return residual, gradient, normal, dtype


def _lm_problem(static, args, tol, grad_tol, ftol, max_iter):
    """(init, step, running) for one start; `step(s, solve_dtype)` is one LM iteration with the
    normal matrix factored in solve_dtype, `running` the stopping test."""
    residual, gradient, normal, dtype = _residual_parts(static, args)
    mu_min, mu_max = 10.0 * jnp.finfo(dtype).eps, 1.0 / jnp.finfo(dtype).eps
    alphas = jnp.asarray((1.0,) + BACKTRACK, dtype)

    def init(x0):
        f0 = residual(x0)
        return _State(x0, f0, jnp.linalg.norm(f0), jnp.linalg.norm(gradient(x0, f0)), jnp.asarray(MU_INIT, dtype),
                      jnp.asarray(2.0, dtype), jnp.asarray(False), jnp.asarray(0, jnp.int32))

    def running(s: _State):
        return (s.norm >= tol) & (s.grad_norm >= grad_tol) & (s.mu < mu_max) & ~s.stalled & (s.n_iter < max_iter)

    def step(s: _State, solve_dtype) -> _State:
        grad = gradient(s.x, s.f)
        chol = jax.lax.linalg.cholesky(normal(s.x, s.mu, solve_dtype), symmetrize_input=False)  # NaN where not positive definite
        if jnp.dtype(solve_dtype) == jnp.dtype(dtype):
            delta = -cho_solve((chol, True), grad)
        else:  # scaled so that float32 neither under- nor overflows
            scale = jnp.maximum(jnp.max(jnp.abs(grad)), jnp.finfo(dtype).tiny)
            delta = -cho_solve((chol, True), (grad / scale).astype(solve_dtype)).astype(dtype) * scale
        # the full step, and if it does not lower ‖F‖ the first fraction of it that does
        x_try = s.x + alphas[:, None] * delta
        f_try = jax.vmap(residual)(x_try)
        norm_try = jnp.linalg.norm(f_try, axis=1)
        lower = norm_try < s.norm  # False for NaN (a failed Cholesky), so that step is rejected too
        k = jnp.argmax(lower)
        accept, full = lower[k], lower[0]
        # gain ratio ρ = actual / predicted decrease of q, the model's being ½ δᵀ(μ δ - ∇q) (Nielsen's μ update)
        rho = (s.norm ** 2 - norm_try[0] ** 2) / jnp.maximum(delta @ (s.mu * delta - grad), jnp.finfo(dtype).tiny)
        mu_full = jnp.maximum(s.mu * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), mu_min)
        x, f, norm = (jnp.where(accept, new, old) for new, old in ((x_try[k], s.x), (f_try[k], s.f),
                                                                    (norm_try[k], s.norm)))
        return _State(
            x, f, norm,
            grad_norm=jnp.where(accept, jnp.linalg.norm(gradient(x, f)), s.grad_norm),
            # full step: Nielsen; a backtracked step: the model was too optimistic, so μ doubles
            mu=jnp.where(full, mu_full, jnp.where(accept, 2.0 * s.mu, s.mu * s.nu)),
            nu=jnp.where(accept, 2.0, 2.0 * s.nu).astype(dtype),
            stalled=accept & (s.norm - norm < ftol * s.norm),
            n_iter=s.n_iter + 1)

    return init, step, running


def _block_size(n_units: int, n_starts: int) -> int:
    """Starts stepped per pass: 8 for N ≥ 100 (4, 8 and 16 measured alike at N = 100 and 200; fewer
    leave a pass's fixed cost of ~20 µs uncovered, more idle in the last passes), more for small N,
    where the factorisations are cheap (measured best: 16 at N = 50, 32 at N = 20)."""
    block = 8
    while block < 64 and block * n_units < 800:
        block *= 2
    return max(1, min(n_starts, block))


@functools.partial(jax.jit, static_argnames=("static", "max_iter", "block"))
def _lm_batch(static, args, starts, tol, grad_tol, ftol, max_iter, block):
    """All starts in one while loop that steps `block` running starts per pass (vmapped), each
    start's own iteration being unaffected by which others share its pass.

    A pass takes the running starts of one class, lowest index first: for float64 problems 'far'
    (‖F‖ ≥ NEAR, factored in float32) or 'near' (‖F‖ < NEAR, factored in float64); the class with
    at least `block` running starts, else the larger one. Rows of the block that have stopped or
    belong to the other class keep their state (masked), so stopped points never move.
    """
    init, step, running = _lm_problem(static, args, tol, grad_tol, ftol, max_iter)
    n_starts, n = starts.shape
    if n_starts == 0:
        return starts, jnp.zeros(0, starts.dtype), jnp.zeros(0, jnp.int32)
    index = jnp.arange(n_starts)
    dtype = starts.dtype
    mixed = jnp.dtype(dtype) == jnp.float64

    # The states live packed in one (S, 2N + 6) array, so that a pass gathers and scatters its block
    # once rather than once per field (flags and counters are exact as floats); this compiles ~15%
    # faster and runs as fast.
    def pack(s: _State):
        return jnp.concatenate([s.x, s.f, jnp.stack([s.norm, s.grad_norm, s.mu, s.nu, s.stalled.astype(dtype),
                                                     s.n_iter.astype(dtype)])])

    def unpack(p) -> _State:
        return _State(p[:n], p[n:2 * n], p[2 * n], p[2 * n + 1], p[2 * n + 2], p[2 * n + 3], p[2 * n + 4] > 0,
                      p[2 * n + 5].astype(jnp.int32))

    def running_all(packed):
        return jax.vmap(lambda p: running(unpack(p)))(packed)

    def stepped(block_packed, near_pass, solve_dtype):
        def masked_step(p):
            s = unpack(p)
            go = running(s) & ((s.norm < NEAR) == near_pass) if mixed else running(s)
            return jnp.where(go, pack(step(s, solve_dtype)), p)
        return jax.vmap(masked_step)(block_packed)

    def body(packed):
        active = running_all(packed)
        if mixed:
            near = packed[:, 2 * n] < NEAR
            n_near = jnp.sum(active & near)
            n_far = jnp.sum(active & ~near)
            near_pass = (n_far < block) & (n_near > n_far)
            key = jnp.where(active, index + n_starts * (near != near_pass), index + 2 * n_starts)
        else:
            key = jnp.where(active, index, index + n_starts)
        _, rows = jax.lax.top_k(-key, block)  # the `block` smallest keys: first the pass's class
        block_packed = packed[rows]
        if mixed:
            new = jax.lax.cond(near_pass, lambda b: stepped(b, True, jnp.float64),
                               lambda b: stepped(b, False, jnp.float32), block_packed)
        else:
            new = stepped(block_packed, False, dtype)
        return packed.at[rows].set(new, unique_indices=True)

    packed = jax.vmap(lambda x0: pack(init(x0)))(starts)
    packed = jax.lax.while_loop(lambda packed: jnp.any(running_all(packed)), body, packed)
    return packed[:, :n], packed[:, 2 * n], packed[:, 2 * n + 5].astype(jnp.int32)


def _default_ftol(dtype) -> float:
    return max(1e-6, 100 * float(jnp.finfo(dtype).eps))


def _dtype(prob) -> Any:
    return jnp.asarray(prob.J).dtype if isinstance(prob, RateNetwork) else jax.tree.leaves(prob.params)[0].dtype


def _n_state(prob, starts) -> int:
    return np.shape(prob.J)[0] if isinstance(prob, RateNetwork) else int(np.shape(starts)[-1])


def levenberg_marquardt(prob: RateNetwork | StateDynamics, starts, *, tol: float | None = None,
                        grad_tol: float = 0.0, ftol: float | None = None, max_iter: int = 200) -> LMResult:
    """Minimise q = ½‖r‖² from every row of `starts` (S, N) at once (r: F for a rate network or a flow,
    f(h) - h for a map), each start stopping on its own when ‖r‖ < tol, ‖∇q‖ < grad_tol, an accepted
    step lowers ‖r‖ by less than ftol·‖r‖ (a local minimum of q that is not a root: there Gauss–Newton
    crawls; default max(1e-6, 100 ε)), μ > 1/ε (no step lowers ‖r‖ any more) or after max_iter.
    Returns once the search is done (with OpenBLAS held to one thread meanwhile, see
    `blas.single_threaded_blas`)."""
    dtype = _dtype(prob)
    starts = jnp.asarray(starts, dtype)
    n = _n_state(prob, starts)
    tol = default_tol(dtype, n) if tol is None else tol
    ftol = _default_ftol(dtype) if ftol is None else ftol
    block = _block_size(n, starts.shape[0])
    static, args = _static_and_args(prob)
    with single_threaded_blas():  # held until the search is done: it runs on XLA's threads
        return LMResult(*jax.block_until_ready(_lm_batch(static, args, starts, tol, grad_tol, ftol, int(max_iter),
                                                         block)))


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


@functools.partial(jax.jit, static_argnums=0)
def _field_residuals(dynamics: Dynamics, params, u, points):
    return jnp.linalg.norm(jax.vmap(field_residual(dynamics, params, u))(points), axis=1)


def field_residual_norms(prob: StateDynamics, points) -> np.ndarray:
    """‖f(h) − h‖ (a map) or ‖F(h)‖ (a flow) at each point, of the model's field itself."""
    points = np.asarray(points)
    if len(points) == 0:
        return np.zeros(0)
    return np.asarray(_field_residuals(prob.dynamics, prob.params, prob.u, jnp.asarray(points, _dtype(prob))))


def distance_outliers(points: np.ndarray, starts: np.ndarray, scale: float) -> np.ndarray:
    """FixedPointFinder's distance test: True where a point lies farther than `scale` times the starts'
    mean distance from their centroid, measured from that centroid."""
    centroid = np.mean(starts, axis=0)
    spread = max(float(np.mean(np.linalg.norm(starts - centroid, axis=1))), np.finfo(float).tiny)
    return np.linalg.norm(np.asarray(points) - centroid, axis=1) > scale * spread


_rate_jacobians = jax.jit(jax.vmap(rate_jacobian, in_axes=(None, 0)))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _state_jacobians(dynamics: Dynamics, argnum: int, params, u, points):
    """∂field/∂h (argnum 1: the model's own where it has one) or ∂field/∂u (argnum 2) at every point."""
    jac = field_jacobian(dynamics) if argnum == 1 else jax.jacfwd(dynamics.field, argnums=2)
    return jax.vmap(jac, in_axes=(None, 0, None))(params, points, u)


def linearisations(prob: RateNetwork | StateDynamics, points) -> np.ndarray:
    """The linearisation (K, N, N) at each point: DF of a rate network or flow, ∂f/∂h of a map."""
    points = np.asarray(points)
    dtype = _dtype(prob)
    n = _n_state(prob, points)
    if len(points) == 0:
        return np.zeros((0, n, n))
    if isinstance(prob, RateNetwork):
        return np.asarray(_rate_jacobians(jnp.asarray(prob.J), jnp.asarray(points, dtype)))
    return np.asarray(_state_jacobians(prob.dynamics, 1, prob.params, prob.u, jnp.asarray(points, dtype)))


def input_jacobians(dynamics: Dynamics, params, u, points) -> np.ndarray:
    """∂field/∂u (K, N, n_in) at each point under the static input u (FixedPointFinder's dF/du)."""
    prob = problem(dynamics._replace(rate_field=None), params, u)
    points = np.asarray(points)
    if len(points) == 0:
        return np.zeros((0, points.shape[-1], prob.u.size))
    return np.asarray(_state_jacobians(prob.dynamics, 2, prob.params, prob.u,
                                       jnp.asarray(points, _dtype(prob))))


@functools.partial(jax.jit, static_argnums=0)
def _readouts(readout: Callable, params, u, points):
    return jax.vmap(readout, in_axes=(None, 0, None))(params, points, u)


def readouts(dynamics: Dynamics, params, u, points) -> np.ndarray:
    """The outputs (K, n_out) the network gives at each point under input u (contracts.Dynamics.readout)."""
    points = np.asarray(points)
    dtype = jax.tree.leaves(params)[0].dtype
    u = jnp.asarray(u, dtype).reshape(-1)
    if len(points) == 0:
        n_out = jax.eval_shape(dynamics.readout, params, jnp.zeros(points.shape[-1], dtype), u).shape[-1]
        return np.zeros((0, n_out))
    return np.asarray(_readouts(dynamics.readout, params, u, jnp.asarray(points, dtype)))


def kind_of(prob: RateNetwork | StateDynamics) -> str:
    return "flow" if isinstance(prob, RateNetwork) else prob.dynamics.kind


def growth(values: np.ndarray, kind: str) -> np.ndarray:
    """How fast each eigenvalue's mode grows: Re λ for a flow, |λ| − 1 for a map (> 0: unstable)."""
    return np.asarray(values).real if kind == "flow" else np.abs(values) - 1.0


def rotation(values: np.ndarray, kind: str) -> np.ndarray:
    """How fast each eigenvalue's mode turns, per time constant: Im λ for a flow (τ ḣ = F), arg λ per
    step for a map; divide by the time constant (τ or dt) for rad per time unit."""
    values = np.asarray(values)
    return values.imag if kind == "flow" else np.angle(values)


def sorted_eigenvalues(jacobians: np.ndarray, kind: str) -> np.ndarray:
    """Eigenvalues (K, N) of each linearisation (K, N, N), on the host, each row sorted by descending
    growth (Re λ for a flow, |λ| for a map)."""
    if len(jacobians) == 0:
        return np.zeros(jacobians.shape[:2], complex)
    with single_threaded_blas():
        values = np.linalg.eigvals(np.asarray(jacobians, np.float64))
    order = np.argsort(-growth(values, kind), axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)


# what became of each start (FixedPoints.start_outcome)
CONVERGED, NOT_CONVERGED, DISTANCE_OUTLIER = 0, 1, 2


class FixedPoints(NamedTuple):
    """Unique fixed points, sorted by residual, with the spectrum of the linearisation at each, and
    what became of every start (FixedPointFinder's per-start report)."""
    points: np.ndarray          # (K, N)
    residual_norms: np.ndarray  # (K,) ‖r‖
    eigenvalues: np.ndarray     # (K, N) complex, each row by descending growth
    n_unstable: np.ndarray      # (K,) eigenvalues that grow (Re λ > 0 for a flow, |λ| > 1 for a map)
    is_stable: np.ndarray       # (K,) no eigenvalue grows or is marginal
    n_converged: int            # starts that reached ‖r‖ < tol (before deduplication)
    n_starts: int
    kind: str = "flow"
    jacobians: np.ndarray | None = None     # (K, N, N) the linearisation at each point
    start_q: np.ndarray | None = None       # (S,) q = ½‖r‖² where each start stopped
    start_n_iter: np.ndarray | None = None  # (S,) iterations it ran (both rounds with a rerun)
    start_outcome: np.ndarray | None = None  # (S,) CONVERGED | NOT_CONVERGED | DISTANCE_OUTLIER
    n_rerun: int = 0                        # starts run again as q outliers

    def unstable_frequencies(self) -> list[np.ndarray]:
        """Per point, the angular frequency per unit time of the growing eigenvalues (Im λ for a flow,
        arg λ per step for a map; ± pairs both listed; divide by the time constant for rad per time)."""
        grow = growth(self.eigenvalues, self.kind) > 0
        return [a[g] for a, g in zip(rotation(self.eigenvalues, self.kind), grow)]


def find_fixed_points(prob: RateNetwork | StateDynamics, starts, *, tol: float | None = None, max_iter: int = 200,
                      dedup_radius: float = 1e-2, outlier_distance_scale: float | None = None,
                      rerun_q_outliers: float | None = None) -> FixedPoints:
    """Fixed points (r(x) = 0) reached by Levenberg–Marquardt from the starts (S, N); keeps those with
    ‖r‖ < tol (default from the dtype, see `default_tol`), merges those within dedup_radius. Starts
    stall out at ftol = FIXED_POINT_FTOL (only roots are wanted here; see there).

    As FixedPointFinder offers: `rerun_q_outliers` (its outlier_q_scale): starts that did not converge
    with q above this multiple of the median q run again, max_iter more iterations from where they
    stopped; `outlier_distance_scale`: converged points farther from the starts' centroid than this
    multiple of the starts' mean distance to it are dropped (distance_outliers)."""
    dtype = _dtype(prob)
    starts = np.asarray(starts)
    tol = default_tol(dtype, _n_state(prob, starts)) if tol is None else tol
    ftol = max(FIXED_POINT_FTOL, _default_ftol(dtype))
    result = levenberg_marquardt(prob, starts, tol=tol, ftol=ftol, max_iter=max_iter)
    points, norms = np.array(result.points), np.array(result.residual_norms)
    n_iter = np.array(result.n_iter)
    q = 0.5 * norms ** 2
    rerun = np.zeros(0, int)
    if rerun_q_outliers is not None and len(q):
        rerun = np.flatnonzero((norms >= tol) & (q > rerun_q_outliers * np.median(q)))
        if rerun.size:
            again = levenberg_marquardt(prob, points[rerun], tol=tol, ftol=ftol, max_iter=max_iter)
            points[rerun], norms[rerun] = np.asarray(again.points), np.asarray(again.residual_norms)
            n_iter[rerun] += np.asarray(again.n_iter)
            q = 0.5 * norms ** 2
    outcome = np.where(norms < tol, CONVERGED, NOT_CONVERGED)
    if isinstance(prob, StateDynamics) and prob.dynamics.roots is not None:
        norms = field_residual_norms(prob, points)  # reported of the field itself: ≤ the roots' where accepted
    if outlier_distance_scale is not None and len(starts):
        outcome[(outcome == CONVERGED) & distance_outliers(points, starts, outlier_distance_scale)] = DISTANCE_OUTLIER
    converged = np.flatnonzero(outcome == CONVERGED)
    unique = converged[deduplicate(points[converged], norms[converged], dedup_radius)]
    kind = kind_of(prob)
    jacobians = linearisations(prob, points[unique])
    eigenvalues = sorted_eigenvalues(jacobians, kind)
    grows = growth(eigenvalues, kind)
    return FixedPoints(
        points=points[unique], residual_norms=norms[unique], eigenvalues=eigenvalues,
        n_unstable=np.sum(grows > 0, axis=1), is_stable=np.all(grows < 0, axis=1),
        n_converged=int(np.sum(outcome != NOT_CONVERGED)), n_starts=int(points.shape[0]), kind=kind, jacobians=jacobians,
        start_q=q, start_n_iter=n_iter, start_outcome=outcome, n_rerun=int(rerun.size))


class SlowPoints(NamedTuple):
    """Unique slow points (tol ≤ ‖F‖ and q < q_tol), sorted by q."""
    points: np.ndarray    # (K, N)
    q_values: np.ndarray  # (K,) q = ½‖F‖²
    n_starts: int


def slow_points(prob: RateNetwork | StateDynamics, starts, *, q_tol: float, tol: float | None = None,
                grad_tol: float | None = None, max_iter: int = 300, dedup_radius: float = 1e-2) -> SlowPoints:
    """Local minima of q(x) = ½‖r(x)‖² that are not fixed points: Levenberg–Marquardt on r from the
    starts, each stopping when ‖∇q‖ = ‖∂rᵀr‖ < grad_tol (default tol²: far below any gradient seen
    away from a minimum) or ‖r‖ < tol; keeps q < q_tol with ‖r‖ ≥ tol, merged within dedup_radius."""
    if isinstance(prob, StateDynamics):  # minima of the field's own q, not of a better-conditioned proxy's
        prob = prob._replace(dynamics=prob.dynamics._replace(roots=None))
    dtype = _dtype(prob)
    tol = default_tol(dtype, _n_state(prob, starts)) if tol is None else tol
    grad_tol = max(tol * tol, float(jnp.finfo(dtype).tiny)) if grad_tol is None else grad_tol
    result = levenberg_marquardt(prob, starts, tol=tol, grad_tol=grad_tol, max_iter=max_iter)
    points, norms = np.asarray(result.points), np.asarray(result.residual_norms)
    q = 0.5 * norms ** 2
    slow = np.flatnonzero((q < q_tol) & (norms >= tol))
    unique = slow[deduplicate(points[slow], q[slow], dedup_radius)]
    return SlowPoints(points=points[unique], q_values=q[unique], n_starts=int(points.shape[0]))
