"""The dynamics analysis (`analysis=dynamics`) on systems with known answers, and wired into runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compose_cfg
from scipy.optimize import brentq

from rnn_sparsity import artifacts
from rnn_sparsity.analysis import dynamics
from rnn_sparsity.analysis.dynamics import FixedPointsConfig, FixedPointTracker, PCAConfig, analyse_dynamics
from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.contracts import Conditions
from rnn_sparsity.models import ctrnn
from rnn_sparsity.probes import AnalysisConfig


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def oscillating_network(n, growth, omega, seed=0):
    """A CTRNN with a fixed point x* where DF(x*) = -I + J diag(1 - tanh² x*) has exactly the eigenvalues
    growth ± i omega and -1 (n - 2 times): J = (A + I) diag(1 / (1 - tanh² x*)), A = Q blocks Qᵀ."""
    rng = np.random.default_rng(seed)
    x_star = 0.5 * rng.normal(size=n)
    blocks = -np.eye(n)
    blocks[:2, :2] = [[growth, -omega], [omega, growth]]
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = q @ blocks @ q.T
    J = (A + np.eye(n)) / (1 - np.tanh(x_star) ** 2)[None, :]
    u = np.array([0.3])
    B = rng.normal(size=(n, 1))
    params = {"J": jnp.asarray(J), "B": jnp.asarray(B), "b_x": jnp.asarray(x_star - J @ np.tanh(x_star) - B @ u)}
    return params, x_star, u, q[:, :2]


def test_starts_are_the_anchor_its_perturbations_and_trajectory_samples():
    rng = np.random.default_rng(0)
    anchor, path = np.full(5, 3.0), rng.normal(size=(200, 5))
    starts = dynamics.make_starts(np.random.default_rng(1), anchor, path, n_perturbed=400, std=0.5, n_sampled=30)
    assert starts.shape == (431, 5)
    np.testing.assert_array_equal(starts[0], anchor)
    np.testing.assert_allclose(np.std(starts[1:401] - anchor), 0.5, rtol=0.05)
    assert all(any(np.array_equal(s, p) for p in path) for s in starts[401:])
    # no drive phase: the anchor's slots are filled with perturbed trajectory states
    starts = dynamics.make_starts(np.random.default_rng(1), None, path, n_perturbed=4, std=0.0, n_sampled=3)
    assert starts.shape == (8, 5) and all(any(np.array_equal(s, p) for p in path) for s in starts)


def test_unstable_frequency_picks_the_leading_unstable_pair():
    values = np.array([0.3 + 2j, 0.3 - 2j, 0.1 + 5j, 0.1 - 5j, 0.5, -1 + 7j, -1 - 7j])
    assert dynamics.unstable_frequency(values, "flow", 2.0) == pytest.approx(1.0)  # |Im| / τ of 0.3 ± 2i
    assert np.isnan(dynamics.unstable_frequency(np.array([0.5, -1 + 7j, -1 - 7j]), "flow", 1.0))
    # a map: |λ| > 1 grows; the fastest-growing complex pair turns by arg λ per step of dt
    values = np.array([1.2 * np.exp(0.5j), 1.2 * np.exp(-0.5j), 1.1 * np.exp(2j), 1.1 * np.exp(-2j), 0.9 * np.exp(3j), 1.5])
    assert dynamics.unstable_frequency(values, "map", 0.1) == pytest.approx(5.0)  # 0.5 rad per step of 0.1
    assert np.isnan(dynamics.unstable_frequency(np.array([0.9 * np.exp(1j), 0.9 * np.exp(-1j), 1.3]), "map", 1.0))


def test_designed_oscillatory_fixed_point_gives_its_frequency(float64):
    """Sussillo & Barak's check on a network whose fixed point has the unstable pair 0.05 ± 0.4 i."""
    n, tau, omega = 12, 2.0, 0.4
    params, x_star, u, plane = oscillating_network(n, growth=0.05, omega=omega)
    phase = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    orbit = x_star + 0.3 * (np.cos(phase)[:, None] * plane[:, 0] + np.sin(phase)[:, None] * plane[:, 1])
    states = orbit[:, None, :]  # (T, B = 1, N): one trial of one condition, its orbit around x*
    conditions = Conditions(inputs=u[None], trial_condition=np.array([0]), window=slice(0, 50), anchor_step=0,
                            omegas=np.array([0.25]))
    settings = AnalysisConfig(fixed_points=FixedPointsConfig(enabled=True, n_perturbed=9, perturbation_std=0.05,
                                                             n_sampled=10), pca=PCAConfig(enabled=True, n_components=3))
    metrics, arrays = analyse_dynamics(ctrnn.dynamics(tau)._replace(readout=None), params, conditions, states, settings, seed=0)

    centre = np.argmin(np.linalg.norm(arrays["fp_points"] - x_star, axis=1))
    np.testing.assert_allclose(arrays["fp_points"][centre], x_star, atol=1e-9)
    expected = np.sort_complex(np.r_[0.05 + 0.4j, 0.05 - 0.4j, -np.ones(n - 2)])
    np.testing.assert_allclose(np.sort_complex(arrays["fp_eigenvalues"][centre]), expected, atol=1e-8)
    assert arrays["fp_n_unstable"][centre] == 2 and not arrays["fp_is_stable"][centre]
    assert arrays["fp_omega"][0] == pytest.approx(omega / tau)  # Im λ / τ
    assert metrics["fp_freq_error"] == pytest.approx(abs(omega / tau - 0.25) / 0.25)
    # the orbit lies in a plane: two PCs hold all its variance; the unstable direction lies in that plane
    np.testing.assert_allclose(arrays["pca_variance_explained"][:2].sum(), 1.0, atol=1e-9)
    assert metrics["pca_var_explained_3"] == pytest.approx(1.0)
    direction = arrays["pca_unstable_directions"][centre]
    np.testing.assert_allclose(np.linalg.norm(direction[:2]), 1.0, atol=1e-8)


def test_counts_of_fixed_points_by_stability():
    metrics = dynamics.fixed_point_metrics(np.array([0, 0, 1, 3, 0, 2]))
    assert metrics == {"n_fixed_points": 6, "n_stable_fixed_points": 3, "n_unstable_fixed_points": 3,
                       "max_unstable_eigs": 3, "mean_unstable_eigs": 1.0}
    assert dynamics.fixed_point_metrics(np.array([], int))["max_unstable_eigs"] is None


def test_tracker_warm_starts_from_the_previous_fixed_points(float64):
    """x' = -x + w tanh(x) + b with b > 0: from x = 0 the state settles at the positive fixed point x*(w);
    the tracker follows it as w changes, and its eigenvalue -1 + w (1 - tanh² x*) is recorded per step."""
    b = 0.1

    def apply(params, inputs):  # Euler from x = 0, as the ctrnn does: states (T, B, 1)
        def step(x, _):
            x = x + 0.5 * (-x + params["J"][0, 0] * jnp.tanh(x) + params["b_x"][0])
            return x, x
        return None, jax.lax.scan(step, jnp.zeros((inputs.shape[1], 1)), None, length=inputs.shape[0])[1]

    conditions = Conditions(inputs=np.zeros((1, 1)), trial_condition=np.array([0]), window=slice(0, 60))
    tracker = FixedPointTracker(apply, ctrnn.dynamics(1.0), np.zeros((60, 1, 1)), conditions, [0],
                                AnalysisConfig(fixed_points=FixedPointsConfig(track_starts=4)), jnp.float64, seed=0)
    for step, w in [(0, 2.0), (10, 2.5), (10, 9.0), (20, 3.0)]:  # a repeated step is not sampled twice
        tracker.sample(step, {"J": jnp.array([[w]]), "B": jnp.zeros((1, 1)), "b_x": jnp.array([b])})
        previous = tracker.previous[0]
        assert len(previous) >= 1
        np.testing.assert_array_equal(tracker.starts(0, None, np.zeros((3, 1)))[:4],
                                      previous[np.arange(4) % len(previous)])
    arrays = tracker.arrays()
    np.testing.assert_array_equal(np.unique(arrays["fp_track_step"]), [0, 10, 20])
    for step, w in [(0, 2.0), (10, 2.5), (20, 3.0)]:
        x_star = brentq(lambda x: -x + w * np.tanh(x) + b, 0.1, 10.0)
        values = arrays["fp_track_eigenvalues"][arrays["fp_track_step"] == step, 0].real
        assert np.min(np.abs(values - (-1 + w * (1 - np.tanh(x_star) ** 2)))) < 1e-9


def test_bad_dynamics_settings_fail_before_any_compute():
    for override, key in [("analysis.fixed_points.n_sampled=-1", "analysis.fixed_points.n_sampled"),
                          ("analysis.fixed_points.tol=0", "analysis.fixed_points.tol"),
                          ("analysis.track_tasks=[5]", "analysis.track_tasks"),
                          ("analysis.pca.n_components=0", "analysis.pca.n_components")]:
        with pytest.raises(ConfigError) as err:
            validate(compose_cfg("analysis=dynamics", override))
        assert err.value.key == key


def test_dynamics_run_writes_fixed_points_pca_and_tracking(tmp_path):
    cfg = compose_cfg("analysis=dynamics", "analysis.track_tasks=[1]", "analysis.fixed_points.n_perturbed=9",
                      "analysis.fixed_points.n_sampled=10", "analysis.fixed_points.track_starts=4")
    from rnn_sparsity.experiment import run

    metrics = run(cfg, tmp_path)
    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    assert metrics["n_fixed_points"] == len(arrays["fp_points"]) > 0
    assert metrics["n_stable_fixed_points"] + metrics["n_unstable_fixed_points"] == metrics["n_fixed_points"]
    assert metrics["n_fixed_point_starts"] == 3 * 20 and metrics["n_slow_points"] is None
    assert 0 <= metrics["fp_freq_error"] <= 1 and 0 < metrics["pca_var_explained_3"] <= 1
    assert set(arrays["fp_condition"]) <= {0, 1, 2} and np.all(arrays["fp_residual_norms"] < 1e-5)
    np.testing.assert_array_equal(arrays["fp_n_unstable"], np.sum(arrays["fp_eigenvalues"].real > 0, axis=1))
    assert arrays["pca_trajectories"].shape[:2] == (3, 120) and arrays["pca_components"].shape == (10, 16)
    assert set(arrays["fp_track_condition"]) == {1}
    assert set(arrays["fp_track_step"]) <= set(arrays["eig_steps"]) and len(set(arrays["fp_track_step"])) > 1
