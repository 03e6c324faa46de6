"""Fixed-point search: our vmapped, jitted Levenberg–Marquardt against scipy.optimize.root per start.

    python benchmarks/bench_fixed_points.py [--n-units 100] [--n-starts 100] [--gain 1.5] [--repeats 3]

One random CTRNN (J = g·N(0, 1/N), B, b_x ~ N(0, 1/N)), one static input, float64. Starts: half
N(0, 1), half small perturbations (σ = 0.1) of states visited by the network when run from random
initial conditions under the input (where fixed points tend to be). scipy is the field's usual
approach: `root(F, x0, jac=DF, method='lm')` for each start in a Python loop. Both keep points with
‖F‖ < 1e-8 and deduplicate them the same way (radius 1e-2). Our time is measured after compilation;
the compile time is printed apart. Runs of the two are interleaved so machine noise hits both alike;
only the ratio is meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import root  # noqa: E402

from rnn_sparsity.analysis.fixed_points import deduplicate, find_fixed_points  # noqa: E402

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


def scipy_fixed_points(params, u, starts):
    J, drive = params["J"], params["B"] @ u + params["b_x"]
    eye = np.eye(J.shape[0])

    def F(x):
        return -x + J @ np.tanh(x) + drive

    def DF(x):
        return -eye + J * (1 - np.tanh(x) ** 2)[None, :]

    points = np.array([root(F, x0, jac=DF, method="lm", options={"maxiter": 1000}).x for x0 in starts])
    norms = np.linalg.norm([F(x) for x in points], axis=1)
    keep = np.flatnonzero(norms < KEEP_TOL)
    unique = keep[deduplicate(points[keep], norms[keep], DEDUP_RADIUS)]
    return points[unique], norms[unique]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-units", type=int, default=100)
    parser.add_argument("--n-starts", type=int, default=100)
    parser.add_argument("--gain", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    params, u = make_network(args.n_units, args.gain)
    starts = make_starts(params, u, args.n_starts)
    jparams = {k: jnp.asarray(v) for k, v in params.items()}

    def ours():
        return find_fixed_points(jparams, u, starts, tol=KEEP_TOL, dedup_radius=DEDUP_RADIUS)

    t0 = time.perf_counter()
    ours()
    first = time.perf_counter() - t0

    times_ours, times_scipy = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = ours()
        times_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scipy_points, scipy_norms = scipy_fixed_points(params, u, starts)
        times_scipy.append(time.perf_counter() - t0)
    t_ours, t_scipy = min(times_ours), min(times_scipy)

    print(f"N={args.n_units}, {args.n_starts} starts, gain {args.gain}, float64, {jax.devices()[0].platform}")
    print(f"  ours : {t_ours * 1e3:8.1f} ms  (first call incl. compile {first:.2f} s, so compile ≈ "
          f"{first - t_ours:.2f} s); {len(result.points)} unique fixed points from {result.n_converged} "
          f"converged starts; max ||F|| {result.residual_norms.max(initial=0):.2e}; "
          f"unstable dims {sorted(result.n_unstable.tolist())}")
    print(f"  scipy: {t_scipy * 1e3:8.1f} ms  root(method='lm') per start; {len(scipy_points)} unique fixed "
          f"points; max ||F|| {scipy_norms.max(initial=0):.2e}")
    print(f"  speed ratio scipy/ours: {t_scipy / t_ours:.1f}x")


if __name__ == "__main__":
    main()
