"""Fixed and slow points of the CTRNN against cases with known answers (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from rnn_sparsity import blas
from rnn_sparsity.analysis import fixed_points as fp
from rnn_sparsity.maths import rate_jacobian, rate_velocity
from rnn_sparsity.models.ctrnn import rate_field


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def one_unit(w=2.0, b=0.0):
    """x' = -x + w tanh(x) + b."""
    return {"J": jnp.array([[w]]), "B": jnp.zeros((1, 0)), "b_x": jnp.array([b])}


def random_network(n, gain=1.5, seed=0, n_in=2):
    rng = np.random.default_rng(seed)
    return {"J": jnp.asarray(gain * rng.normal(size=(n, n)) / np.sqrt(n)),
            "B": jnp.asarray(rng.normal(size=(n, n_in))), "b_x": jnp.asarray(0.1 * rng.normal(size=n))}


def test_one_unit_bistable_has_three_fixed_points_with_analytic_jacobians():
    w = 2.0
    x_star = brentq(lambda x: -x + w * np.tanh(x), 0.5, 5.0)
    result = fp.find_fixed_points(fp.RateNetwork(*rate_field(one_unit(w), jnp.zeros(0))), jnp.linspace(-4, 4, 41)[:, None])
    order = np.argsort(result.points[:, 0])
    np.testing.assert_allclose(result.points[order, 0], [-x_star, 0.0, x_star], atol=1e-9)
    assert result.n_converged == 41 and np.all(result.residual_norms < 1e-10)
    slope_star = -1 + w * (1 - np.tanh(x_star) ** 2)
    np.testing.assert_allclose(result.eigenvalues[order, 0].real, [slope_star, w - 1, slope_star], atol=1e-9)
    assert slope_star < 0 < w - 1
    np.testing.assert_array_equal(result.n_unstable[order], [0, 1, 0])
    np.testing.assert_array_equal(result.is_stable[order], [True, False, True])
    assert [f.size for f in result.unstable_frequencies()] == [0 if s else 1 for s in result.is_stable]


def test_planted_fixed_point_and_its_spectrum_are_recovered():
    n = 30
    rng = np.random.default_rng(1)
    J = 2.0 * rng.normal(size=(n, n)) / np.sqrt(n)
    x0 = rng.normal(size=n)
    params = {"J": jnp.asarray(J), "B": jnp.zeros((n, 1)), "b_x": jnp.asarray(x0 - J @ np.tanh(x0))}
    starts = x0 + 0.05 * rng.normal(size=(8, n))
    result = fp.find_fixed_points(fp.RateNetwork(*rate_field(params, jnp.zeros(1))), starts)
    assert len(result.points) == 1
    np.testing.assert_allclose(result.points[0], x0, atol=1e-9)
    expected = np.linalg.eigvals(-np.eye(n) + J * (1 - np.tanh(x0) ** 2)[None, :])
    np.testing.assert_allclose(np.sort_complex(result.eigenvalues[0]), np.sort_complex(expected), atol=1e-8)
    assert result.n_unstable[0] == np.sum(expected.real > 0)
    np.testing.assert_allclose(np.sort(result.unstable_frequencies()[0]), np.sort(expected.imag[expected.real > 0]),
                               atol=1e-8)


def test_analytic_jacobian_matches_autodiff():
    params = random_network(20)
    u = jnp.array([0.3, -0.7])
    x = jnp.asarray(np.random.default_rng(2).normal(size=20))
    J, drive = rate_field(params, u)
    autodiff = jax.jacfwd(lambda x: rate_velocity(x, J.T, drive))(x)
    np.testing.assert_allclose(rate_jacobian(J, x), autodiff, rtol=1e-12, atol=1e-12)


def test_each_start_stops_on_its_own_and_is_not_moved_afterwards():
    w = 2.0
    x_star = brentq(lambda x: -x + w * np.tanh(x), 0.5, 5.0)
    starts = jnp.array([[x_star + 1e-6], [12.0], [-9.0], [0.3]])  # one step away ... many steps away
    tol = 1e-10
    result = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(one_unit(w), jnp.zeros(0))), starts, tol=tol, max_iter=200)
    n_iter = np.asarray(result.n_iter)
    assert np.all(np.asarray(result.residual_norms) < tol)
    assert n_iter[0] <= 2 < n_iter.max()
    # running longer must not move the points that had already converged
    longer = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(one_unit(w), jnp.zeros(0))), starts, tol=tol, max_iter=500)
    np.testing.assert_array_equal(np.asarray(longer.points), np.asarray(result.points))
    # and a start stopped by max_iter before converging is left exactly where it was
    capped = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(one_unit(w), jnp.zeros(0))), starts, tol=tol, max_iter=int(n_iter[0]))
    np.testing.assert_array_equal(np.asarray(capped.points)[0], np.asarray(result.points)[0])
    assert np.asarray(capped.residual_norms)[n_iter > n_iter[0]].min() >= tol


def test_each_start_stops_on_its_own_in_a_large_batch():
    params = random_network(40, seed=3)
    u = jnp.array([0.5, 0.0])
    starts = np.random.default_rng(4).normal(size=(64, 40))
    result = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(params, u)), starts, max_iter=300)
    norms, n_iter = np.asarray(result.residual_norms), np.asarray(result.n_iter)
    converged = norms < fp.default_tol(jnp.float64, 40)
    assert converged.sum() >= 10 and np.ptp(n_iter[converged]) >= 5  # fast and slow starts both converge
    # the residual at the returned points is the one reported (points were not moved after the check)
    J, drive = rate_field(params, u)
    residual = rate_velocity(result.points, J.T, drive)
    np.testing.assert_allclose(np.linalg.norm(residual, axis=1), norms, rtol=1e-12, atol=1e-15)


def test_deduplication_merges_copies_and_keeps_distinct_points():
    params = one_unit(2.0)
    rng = np.random.default_rng(5)
    many_to_one = fp.find_fixed_points(fp.RateNetwork(*rate_field(params, jnp.zeros(0))), 3.0 + 0.5 * rng.random((50, 1)))
    assert len(many_to_one.points) == 1 and many_to_one.n_converged == 50
    two = fp.find_fixed_points(fp.RateNetwork(*rate_field(params, jnp.zeros(0))), np.concatenate([3 + rng.random((20, 1)),
                                                                     -3 - rng.random((20, 1))]))
    assert len(two.points) == 2
    keep = fp.deduplicate(np.array([[0.0, 0.0], [0.0, 0.005], [1.0, 0.0], [1.0, 0.02]]),
                          np.array([0.2, 0.1, 0.3, 0.4]), radius=1e-2)
    np.testing.assert_array_equal(keep, [1, 2, 3])


def test_default_tol_follows_the_dtype():
    assert fp.default_tol(jnp.float64, 100) == 1e-10
    assert 1e-5 <= fp.default_tol(jnp.float32, 100) < 1e-4


def test_slow_point_is_the_ghost_of_a_saddle_node():
    """x' = -x + 2 tanh x + c just past the saddle-node: F peaks at x_m = atanh(1/√2) with F(x_m) = -0.01,
    so q has a local minimum 5e-5 there, while a true fixed point remains on the negative side."""
    x_m = np.arctanh(1 / np.sqrt(2))
    c = -(-x_m + 2 / np.sqrt(2)) - 0.01
    starts = jnp.linspace(-3, 3, 31)[:, None]
    slow = fp.slow_points(fp.RateNetwork(*rate_field(one_unit(2.0, c), jnp.zeros(0))), starts, q_tol=1e-3)
    assert len(slow.points) == 1
    np.testing.assert_allclose(slow.points[0, 0], x_m, atol=1e-4)
    np.testing.assert_allclose(slow.q_values[0], 0.5 * 0.01 ** 2, rtol=1e-6)
    fixed = fp.find_fixed_points(fp.RateNetwork(*rate_field(one_unit(2.0, c), jnp.zeros(0))), starts)
    assert len(fixed.points) == 1 and fixed.points[0, 0] < 0 and fixed.is_stable[0]


def test_a_start_iterates_the_same_whichever_starts_share_its_passes():
    """Starts are stepped in blocks chosen afresh each pass (and factored in float32 or float64 by their
    own ‖F‖): reordering the batch or running a start alone must not change what it converges to."""
    params = random_network(60, seed=6)  # block of 16 starts: 40 starts take several blocks per pass
    u = jnp.array([0.2, -0.4])
    starts = np.random.default_rng(7).normal(size=(40, 60))
    full = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(params, u)), starts, max_iter=300)
    points, norms, n_iter = (np.asarray(a) for a in full)
    tol = fp.default_tol(jnp.float64, 60)
    converged = norms < tol
    assert 5 <= converged.sum() < 40  # some starts converge, some stall: both classes of start occur
    backwards = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(params, u)), starts[::-1], max_iter=300)
    np.testing.assert_array_equal(np.asarray(backwards.residual_norms)[::-1] < tol, converged)
    np.testing.assert_allclose(np.asarray(backwards.points)[::-1][converged], points[converged], atol=1e-8)
    assert np.mean(np.asarray(backwards.n_iter)[::-1] == n_iter) >= 0.9  # equal up to rounding
    for i in (0, 17, 39):
        alone = fp.levenberg_marquardt(fp.RateNetwork(*rate_field(params, u)), starts[i:i + 1], max_iter=300)
        assert (float(alone.residual_norms[0]) < tol) == converged[i]
        if converged[i]:
            np.testing.assert_allclose(np.asarray(alone.points)[0], points[i], atol=1e-8)


def test_finds_every_fixed_point_scipy_root_finds_from_the_same_starts():
    """The benchmark's claim on a small network: at least the fixed points of scipy's root(method='lm')."""
    from scipy.optimize import root
    params = random_network(50, seed=8)
    u = np.array([0.5, -0.3])
    J, drive = np.asarray(params["J"]), np.asarray(params["B"] @ u + params["b_x"])
    rng = np.random.default_rng(9)
    starts = np.concatenate([rng.normal(size=(30, 50)), 2 * rng.normal(size=(30, 50))])

    def F(x):
        return -x + J @ np.tanh(x) + drive

    def DF(x):
        return -np.eye(50) + J * (1 - np.tanh(x) ** 2)[None, :]

    found = np.array([root(F, x0, jac=DF, method="lm", options={"maxiter": 1000}).x for x0 in starts])
    norms = np.linalg.norm([F(x) for x in found], axis=1)
    keep = np.flatnonzero(norms < 1e-10)
    scipy_points = found[keep][fp.deduplicate(found[keep], norms[keep], 1e-2)]
    ours = fp.find_fixed_points(fp.RateNetwork(*rate_field(params, u)), starts)
    assert len(scipy_points) >= 2
    assert len(ours.points) >= len(scipy_points)
    for point in scipy_points:
        assert np.min(np.linalg.norm(ours.points - point, axis=1)) < 1e-6
    assert np.all(np.linalg.norm([F(x) for x in ours.points], axis=1) < 1e-10)


def test_no_starts_and_float32_networks():
    empty = fp.find_fixed_points(fp.RateNetwork(*rate_field(one_unit(2.0), jnp.zeros(0))), np.zeros((0, 1)))
    assert empty.points.shape == (0, 1) and empty.n_starts == 0 and empty.n_converged == 0
    params32 = {k: v.astype(jnp.float32) for k, v in one_unit(2.0).items()}
    result = fp.find_fixed_points(fp.RateNetwork(*rate_field(params32, jnp.zeros(0))), jnp.linspace(-4, 4, 41, dtype=jnp.float32)[:, None])
    assert len(result.points) == 3 and result.points.dtype == np.float32
    assert np.all(result.residual_norms < fp.default_tol(jnp.float32, 1))


def test_blas_runs_on_one_thread_inside_and_is_restored_after():
    controls = blas._openblas_thread_controls()
    if not controls:
        pytest.skip("neither NumPy's nor SciPy's LAPACK is an OpenBLAS with a thread-count API")
    before = [get() for get, _ in controls]
    with blas.single_threaded_blas():
        assert [get() for get, _ in controls] == [1] * len(controls)
    assert [get() for get, _ in controls] == before


def test_the_general_path_finds_what_the_rate_networks_fast_path_finds():
    """The CTRNN's flow solved as a general problem (its analytic Jacobian hidden: jax.jacfwd of F, the
    normal matrix AᵀA formed per step) gives the fast path's fixed points, residuals and spectra."""
    from rnn_sparsity.models import ctrnn

    params = random_network(30, gain=2.0, seed=4)
    u = np.array([0.2, -0.4])
    starts = np.random.default_rng(5).normal(size=(40, 30)) * 2
    fast = fp.find_fixed_points(fp.problem(ctrnn.dynamics(1.0), params, u), starts)
    general = fp.find_fixed_points(fp.problem(ctrnn.dynamics(1.0)._replace(rate_field=None, jacobian=None), params, u),
                                   starts)
    assert isinstance(fp.problem(ctrnn.dynamics(1.0), params, u), fp.RateNetwork)
    assert len(fast.points) >= 3 and len(general.points) == len(fast.points)
    order_fast, order_general = np.lexsort(fast.points.T), np.lexsort(general.points.T)
    np.testing.assert_allclose(general.points[order_general], fast.points[order_fast], atol=1e-8)
    np.testing.assert_allclose(general.eigenvalues[order_general], fast.eigenvalues[order_fast], atol=1e-8)


def test_input_jacobians_and_readouts_at_fixed_points_are_the_ctrnns_own():
    """∂F/∂u = B at every state, and the readout w tanh(x) + b_z, for the CTRNN (contracts.Dynamics)."""
    from rnn_sparsity.models import ctrnn

    params = {**random_network(12, seed=6, n_in=3), "w": jnp.asarray(np.random.default_rng(7).normal(size=(2, 12))),
              "b_z": jnp.array([0.1, -0.2])}
    points = np.random.default_rng(8).normal(size=(5, 12))
    dyn = ctrnn.dynamics(1.0)
    np.testing.assert_allclose(fp.input_jacobians(dyn, params, np.ones(3), points),
                               np.broadcast_to(params["B"], (5, 12, 3)), atol=1e-12)
    np.testing.assert_allclose(fp.readouts(dyn, params, np.ones(3), points),
                               np.tanh(points) @ np.asarray(params["w"]).T + np.asarray(params["b_z"]), atol=1e-12)
    assert fp.input_jacobians(dyn, params, np.ones(3), points[:0]).shape == (0, 12, 3)


def test_distance_outliers_are_dropped_and_reported_per_start():
    """FixedPointFinder's test: starts near x* = 1.9 (w = 2) and one at -3; the point -x* it converges to
    lies 9.5 spreads from the starts' centroid, so scale 5 drops it (outcome DISTANCE_OUTLIER) and 20 keeps it."""
    w = 2.0
    x_star = brentq(lambda x: -x + w * np.tanh(x), 0.5, 5.0)
    starts = np.r_[np.linspace(1.7, 2.3, 30), -3.0][:, None]
    prob = fp.RateNetwork(*rate_field(one_unit(w), jnp.zeros(0)))
    kept = fp.find_fixed_points(prob, starts, outlier_distance_scale=20.0)
    dropped = fp.find_fixed_points(prob, starts, outlier_distance_scale=5.0)
    np.testing.assert_allclose(np.sort(kept.points[:, 0]), [-x_star, x_star], atol=1e-9)
    np.testing.assert_allclose(dropped.points[:, 0], [x_star], atol=1e-9)
    assert dropped.start_outcome[-1] == fp.DISTANCE_OUTLIER and np.all(dropped.start_outcome[:-1] == fp.CONVERGED)
    assert np.all(kept.start_outcome == fp.CONVERGED) and kept.n_converged == dropped.n_converged == 31


def test_q_outliers_run_again_from_where_they_stopped():
    """With 3 iterations the far starts stop unconverged with large q; rerun_q_outliers gives exactly those
    (q above 10 × the median q) max_iter more from where they stopped, and lowers their q; the rest are untouched."""
    params = random_network(20, gain=1.8, seed=9)
    prob = fp.RateNetwork(*rate_field(params, np.zeros(2)))
    starts = np.random.default_rng(10).normal(size=(30, 20)) * np.r_[np.full(20, 0.1), np.full(10, 4.0)][:, None]
    once = fp.find_fixed_points(prob, starts, max_iter=3)
    again = fp.find_fixed_points(prob, starts, max_iter=3, rerun_q_outliers=10.0)
    outliers = (once.start_outcome == fp.NOT_CONVERGED) & (once.start_q > 10 * np.median(once.start_q))
    assert outliers.sum() >= 3 and again.n_rerun == outliers.sum()
    assert np.all(again.start_n_iter[outliers] > 3) and np.all(again.start_n_iter[~outliers] == once.start_n_iter[~outliers])
    assert again.n_converged >= once.n_converged
    assert np.all(again.start_q[outliers] <= once.start_q[outliers])  # LM never accepts a step that raises q
    assert np.median(again.start_q[outliers] / once.start_q[outliers]) < 0.1  # the extra iterations went somewhere
    np.testing.assert_array_equal(again.start_q[~outliers], once.start_q[~outliers])
