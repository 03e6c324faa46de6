"""Fixed-point search: our batched, jitted Levenberg–Marquardt against scipy.optimize.root per start.

    python benchmarks/bench_fixed_points.py [--n-units 100] [--n-starts 100] [--gain 1.5] [--repeats 3]
                                            [--fd-repeats 1 | --no-fd] [--scipy-threaded-blas]

One random CTRNN (J = g·N(0, 1/N), B, b_x ~ N(0, 1/N)), one static input, float64. Starts: half
N(0, 1), half small perturbations (σ = 0.1) of states visited by the network when run from random
initial conditions under the input (where fixed points tend to be). All keep points with
‖F‖ < 1e-8 and deduplicate them the same way (radius 1e-2). Our time is `find_fixed_points` end to
end (search, deduplication, eigenvalues of DF at the unique points) after compilation; the compile
time is printed apart.

Baselines, each `scipy.optimize.root(method='lm')` (MINPACK) per start in a Python loop:
  * headline: with the analytic Jacobian, `root(F, x0, jac=DF, method='lm', options={'maxiter': 1000})`;
    its runs are interleaved with ours so that machine noise hits both alike.
  * without a Jacobian (finite differences, N + 1 evaluations of F per Jacobian), which is what most
    people call: `root(F, x0, method='lm')` with MINPACK's default budget of 200·(N + 1) evaluations
    (maxiter=1000 would mean 1000 evaluations, ~10 Jacobians at N = 100, and leave most starts
    unconverged). Slower (1.4× the headline, 3× with threaded BLAS on a busy machine), so it runs
    --fd-repeats times (default 1) after the others.
scipy runs with OpenBLAS on one thread, as `find_fixed_points` runs its own LAPACK calls (see
`rnn_sparsity.blas.single_threaded_blas`): OpenBLAS splits even the 100×100 matrix-vector product in F over its
threads, and on a busy machine that alone made scipy 2–6× slower, which would flatter our ratio
(--scipy-threaded-blas to run it with OpenBLAS's default instead).
Times are the minimum over repeats; on a shared machine only the ratios mean anything, and even they
move with the load.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import root  # noqa: E402

from rnn_sparsity.analysis.fixed_points import RateNetwork, deduplicate, find_fixed_points  # noqa: E402
from rnn_sparsity.blas import single_threaded_blas  # noqa: E402

KEEP_TOL, DEDUP_RADIUS = 1e-8, 1e-2


def make_network(n: int, gain: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"J": gain * rng.normal(size=(n, n)) / np.sqrt(n), "B": rng.normal(size=(n, 1)) / np.sqrt(n),
              "b_x": rng.normal(size=n) / np.sqrt(n)}
    u = np.array([0.5])
    return params, u


def make_starts(params, u, n_starts: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = params["J"].shape[0]
    gaussian = rng.normal(size=(n_starts - n_starts // 2, n))
    x = rng.normal(size=(n_starts // 2, n))  # Euler-run under the input, then perturb the visited states
    drive = params["B"] @ u + params["b_x"]
    for _ in range(int(rng.integers(20, 60))):
        x = x + 0.2 * (-x + np.tanh(x) @ params["J"].T + drive)
    return np.concatenate([gaussian, x + 0.1 * rng.normal(size=x.shape)])


def scipy_fixed_points(params, u, starts, *, analytic_jacobian: bool = True):
    """(unique points, their ‖F‖, number of converged starts) from scipy's root(method='lm') per start."""
    J, drive = params["J"], params["B"] @ u + params["b_x"]
    eye = np.eye(J.shape[0])

    def F(x):
        return -x + J @ np.tanh(x) + drive

    def DF(x):
        return -eye + J * (1 - np.tanh(x) ** 2)[None, :]

    if analytic_jacobian:
        points = np.array([root(F, x0, jac=DF, method="lm", options={"maxiter": 1000}).x for x0 in starts])
    else:
        points = np.array([root(F, x0, method="lm").x for x0 in starts])
    norms = np.linalg.norm([F(x) for x in points], axis=1)
    keep = np.flatnonzero(norms < KEEP_TOL)
    unique = keep[deduplicate(points[keep], norms[keep], DEDUP_RADIUS)]
    return points[unique], norms[unique], int(keep.size)


def n_shared(points, reference) -> int:
    """How many of the `reference` points have a point of `points` within the deduplication radius."""
    if len(points) == 0:
        return 0
    return int(sum(np.min(np.linalg.norm(points - r, axis=1)) < DEDUP_RADIUS for r in reference))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-units", type=int, default=100)
    parser.add_argument("--n-starts", type=int, default=100)
    parser.add_argument("--gain", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fd-repeats", type=int, default=1, help="repeats of the finite-difference baseline")
    parser.add_argument("--no-fd", action="store_true", help="skip the finite-difference baseline")
    parser.add_argument("--scipy-threaded-blas", action="store_true",
                        help="run scipy with OpenBLAS's default threads (ours always uses one)")
    args = parser.parse_args()
    scipy_blas = contextlib.nullcontext if args.scipy_threaded_blas else single_threaded_blas

    params, u = make_network(args.n_units, args.gain)
    starts = make_starts(params, u, args.n_starts)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}

    def ours():
        drive = jparams["B"] @ jnp.asarray(u) + jparams["b_x"]
        return find_fixed_points(RateNetwork(jparams["J"], drive), starts, tol=KEEP_TOL, dedup_radius=DEDUP_RADIUS)

    t0 = time.perf_counter()
    ours()
    first = time.perf_counter() - t0

    times_ours, times_scipy = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = ours()
        times_ours.append(time.perf_counter() - t0)
        with scipy_blas():
            t0 = time.perf_counter()
            scipy_points, scipy_norms, scipy_converged = scipy_fixed_points(params, u, starts)
            times_scipy.append(time.perf_counter() - t0)
    t_ours, t_scipy = min(times_ours), min(times_scipy)

    blas = "OpenBLAS default threads" if args.scipy_threaded_blas else "OpenBLAS on one thread"
    print(f"N={args.n_units}, {args.n_starts} starts, gain {args.gain}, float64, {jax.devices()[0].platform}; "
          f"scipy with {blas}")
    print(f"  ours      : {t_ours * 1e3:8.1f} ms (median {np.median(times_ours) * 1e3:.1f}; first call incl. compile "
          f"{first:.2f} s, so compile ≈ {first - t_ours:.2f} s); {len(result.points)} unique fixed points from "
          f"{result.n_converged} converged starts; max ||F|| {result.residual_norms.max(initial=0):.2e}; "
          f"unstable dims {sorted(result.n_unstable.tolist())}")
    print(f"  scipy jac : {t_scipy * 1e3:8.1f} ms (median {np.median(times_scipy) * 1e3:.1f}) root(F, jac=DF, "
          f"method='lm', maxiter=1000) per start; {len(scipy_points)} unique fixed points from {scipy_converged} "
          f"converged starts; max ||F|| {scipy_norms.max(initial=0):.2e}; ours found "
          f"{n_shared(result.points, scipy_points)} of them")
    lines = [f"  speed ratio scipy jac / ours: {t_scipy / t_ours:.1f}x (minimum over repeats; of the medians "
             f"{np.median(times_scipy) / np.median(times_ours):.1f}x)"]
    if not args.no_fd:
        times_fd = []
        for _ in range(args.fd_repeats):
            with scipy_blas():
                t0 = time.perf_counter()
                fd_points, fd_norms, fd_converged = scipy_fixed_points(params, u, starts, analytic_jacobian=False)
                times_fd.append(time.perf_counter() - t0)
        t_fd = min(times_fd)
        print(f"  scipy fd  : {t_fd * 1e3:8.1f} ms root(F, method='lm') per start, finite-difference Jacobian, "
              f"default budget; {len(fd_points)} unique fixed points from {fd_converged} converged starts; "
              f"max ||F|| {fd_norms.max(initial=0):.2e}; ours found {n_shared(result.points, fd_points)} of them")
        lines.append(f"  speed ratio scipy fd  / ours: {t_fd / t_ours:.1f}x")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
