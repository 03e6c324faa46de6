"""Dynamics of a trained CTRNN (`analysis=dynamics`): fixed and slow points per task input, their
Jacobian spectra, PCA of the trajectories, and fixed points tracked during training.

A *condition* is one static input u (tasks.Conditions): for the sine-wave task the level u_j of task j,
for the flip-flop task u = 0. Under each, fixed points F(x) = -x + J tanh(x) + B u + b_x = 0 are sought
from the starts researchers use: the drive-phase end state x_a, Gaussian perturbations x_a + σ ε
(σ = `perturbation_std`), and states sampled at random times of the condition's trajectory. A task
without a drive phase (flip-flop) perturbs sampled trajectory states instead of x_a.

Frequencies: F is τ ẋ, so an eigenvalue λ of DF oscillates at Im λ / τ rad per time unit. Sussillo &
Barak's finding for the sine task: the fixed point at the centre of task j's orbit has an unstable
complex pair with Im λ / τ ≈ ω_j; `fp_freq_error` is the median over tasks of |Im λ/τ - ω_j| / ω_j
(1.0 for a task whose central fixed point has no unstable complex pair).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from ..tasks import Conditions
from .fixed_points import FixedPoints, find_fixed_points, jacobian, slow_points
from .pca import fit_pca

TRAJECTORIES_KEPT = 64  # trials whose PC-space trajectories are written (all tasks of the sine study)
TRAJECTORY_POINTS = 400  # time points kept per written trajectory (strided)
OSCILLATORY = 1e-6  # |Im λ| above which an eigenvalue counts as part of a complex pair


class DynamicsSettings(NamedTuple):
    """The analysis.fixed_points / slow_points / pca keys as plain values."""
    fixed_points: bool = True
    n_perturbed: int = 49
    perturbation_std: float = 0.5
    n_sampled: int = 50
    tol: float | None = None
    max_iter: int = 200
    dedup_radius: float = 1e-2
    track_starts: int = 8
    slow_points: bool = False
    slow_tol: float = 1e-4
    pca: bool = True
    n_components: int = 10
    skip_steps: int = 0
    rates: bool = False

    @classmethod
    def from_config(cls, analysis) -> "DynamicsSettings":
        fp, sp, pca = analysis.fixed_points, analysis.slow_points, analysis.pca
        return cls(fixed_points=fp.enabled, n_perturbed=fp.n_perturbed, perturbation_std=fp.perturbation_std, n_sampled=fp.n_sampled,
                   tol=fp.tol, max_iter=fp.max_iter, dedup_radius=fp.dedup_radius, track_starts=fp.track_starts,
                   slow_points=sp.enabled, slow_tol=sp.tol, pca=pca.enabled, n_components=pca.n_components,
                   skip_steps=pca.skip_steps, rates=pca.rates)


# ------------------------------------------------------------------------------------------- starts
def trajectories(conditions: Conditions, states: np.ndarray) -> list[np.ndarray]:
    """Per condition, the states (M_c, N) its trials visit in their window (all trials, all steps)."""
    window = np.asarray(states)[conditions.window]  # (T_w, B, N)
    return [window[:, conditions.trial_condition == c].reshape(-1, window.shape[-1])
            for c in range(len(conditions.inputs))]


def anchors(conditions: Conditions, states: np.ndarray) -> np.ndarray | None:
    """Per condition, the drive-phase end state of its first trial (C, N); None without a drive phase."""
    if conditions.anchor_step is None:
        return None
    states = np.asarray(states)
    result = np.full((len(conditions.inputs), states.shape[-1]), np.nan)
    for c in range(len(conditions.inputs)):
        trials = np.flatnonzero(conditions.trial_condition == c)
        if trials.size:  # a condition without trials (not tracked) keeps a NaN row
            result[c] = states[conditions.anchor_step, trials[0]]
    return result


def make_starts(rng: np.random.Generator, anchor: np.ndarray | None, trajectory: np.ndarray,
                n_perturbed: int, std: float, n_sampled: int) -> np.ndarray:
    """1 + n_perturbed + n_sampled starts (S, N): the anchor, anchor + std·ε (ε ~ N(0, I)), and states
    drawn from the trajectory at random times. Without an anchor its slots go to perturbed samples."""
    def sample(count):
        return trajectory[rng.integers(0, len(trajectory), size=count)]

    n = trajectory.shape[-1]
    centres = np.broadcast_to(anchor, (n_perturbed + 1, n)) if anchor is not None else sample(n_perturbed + 1)
    perturbed = centres[1:] + std * rng.standard_normal((n_perturbed, n))
    return np.concatenate([centres[:1], perturbed, sample(n_sampled)])


# -------------------------------------------------------------------------------------- after training
def leading_unstable_direction(params: dict, point: np.ndarray) -> np.ndarray:
    """The main unstable direction at a point: the eigenvector of DF with the largest Re λ (for a complex
    pair, the major axis of its plane), unit norm."""
    values, vectors = np.linalg.eig(np.asarray(jacobian(params, point), dtype=np.float64))
    v = vectors[:, int(np.argmax(values.real))]
    # a complex eigenvector is defined up to a phase e^{iθ}: take the θ that makes vᵀv real and positive,
    # so Re v is the major axis of the ellipse the mode traces (the longest real direction in its plane)
    direction = (v * np.exp(-0.5j * np.angle(v @ v))).real
    return direction / max(np.linalg.norm(direction), np.finfo(float).tiny)


def unstable_frequency(eigenvalues: np.ndarray, tau: float) -> float:
    """|Im λ| / τ of the unstable complex eigenvalue with the largest Re λ; NaN if there is none."""
    pairs = eigenvalues[(eigenvalues.real > 0) & (np.abs(eigenvalues.imag) > OSCILLATORY)]
    return float(abs(pairs[np.argmax(pairs.real)].imag) / tau) if len(pairs) else float("nan")


def central_fixed_point(points: np.ndarray, trajectory: np.ndarray) -> int | None:
    """Index of the fixed point nearest the centroid of a trajectory (the centre of an orbit)."""
    if len(points) == 0:
        return None
    return int(np.argmin(np.linalg.norm(points - trajectory.mean(axis=0), axis=1)))


def frequency_check(found: list[FixedPoints], paths: list[np.ndarray], omegas: np.ndarray, tau: float):
    """(fp_omega (C,), fp_freq_error): the unstable frequency at each task's central fixed point and the
    median relative error against ω_j, a task without such a pair counting as error 1.0."""
    fp_omega = np.full(len(omegas), np.nan)
    for c, (fps, path) in enumerate(zip(found, paths)):
        centre = central_fixed_point(fps.points, path)
        if centre is not None:
            fp_omega[c] = unstable_frequency(fps.eigenvalues[centre], tau)
    return fp_omega, frequency_error(fp_omega, omegas)


def frequency_error(fp_omega: np.ndarray, omegas: np.ndarray) -> float:
    """Median over conditions of |fp_omega - ω_j| / ω_j, a condition without an unstable pair counting 1.0."""
    return float(np.median(np.where(np.isnan(fp_omega), 1.0, np.abs(fp_omega - omegas) / omegas)))


def fixed_point_metrics(n_unstable: np.ndarray) -> dict[str, Any]:
    """Counts over all conditions from the number of eigenvalues with Re > 0 at each fixed point."""
    n_unstable = np.asarray(n_unstable)
    return {"n_fixed_points": int(n_unstable.size), "n_stable_fixed_points": int(np.sum(n_unstable == 0)),
            "n_unstable_fixed_points": int(np.sum(n_unstable > 0)),
            "max_unstable_eigs": int(n_unstable.max()) if n_unstable.size else None,
            "mean_unstable_eigs": float(n_unstable.mean()) if n_unstable.size else None}


def analyse_dynamics(params: dict, conditions: Conditions, states, settings: DynamicsSettings, *,
                     tau: float, seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fixed points (and slow points) per condition, their spectra, the frequency check and PCA.

    params: the effective CTRNN parameters (J masked); states (T, B, N) of all trials from x = 0.
    Returns (metrics, arrays) following the analysis.npz keys fp_*, sp_*, pca_*, condition_*.
    """
    states = np.asarray(states)
    rng = np.random.default_rng(seed)
    paths, starts_at = trajectories(conditions, states), anchors(conditions, states)
    arrays: dict[str, np.ndarray] = {"condition_inputs": np.asarray(conditions.inputs, float)}
    metrics: dict[str, Any] = {}
    if settings.fixed_points or settings.slow_points:
        found, slow = search_conditions(params, conditions, paths, starts_at, settings, rng)
        if settings.fixed_points:
            arrays.update(stack_fixed_points(found, states.shape[-1]))
            metrics.update(fixed_point_metrics(arrays["fp_n_unstable"]),
                           n_fixed_point_starts=int(sum(f.n_starts for f in found)),
                           n_converged_starts=int(sum(f.n_converged for f in found)))
            if conditions.omegas is not None:
                arrays["condition_omegas"] = np.asarray(conditions.omegas, float)
                arrays["fp_omega"], metrics["fp_freq_error"] = frequency_check(found, paths, conditions.omegas, tau)
        if settings.slow_points:
            arrays.update(sp_points=np.concatenate([s.points for s in slow]).reshape(-1, states.shape[-1]),
                          sp_condition=np.concatenate([np.full(len(s.points), c) for c, s in enumerate(slow)]),
                          sp_q=np.concatenate([s.q_values for s in slow]))
    metrics["n_slow_points"] = int(len(arrays["sp_q"])) if settings.slow_points else None
    if settings.pca:
        pca_arrays, metrics["pca_var_explained_3"] = project_dynamics(params, conditions, states, arrays, settings)
        arrays.update(pca_arrays)
    return metrics, arrays


def search_conditions(params, conditions: Conditions, paths, starts_at, settings: DynamicsSettings, rng):
    """Fixed points (and slow points when asked) under each condition's input, from its starts."""
    found, slow = [], []
    for c, u in enumerate(conditions.inputs):
        starts = make_starts(rng, None if starts_at is None else starts_at[c], paths[c], settings.n_perturbed,
                             settings.perturbation_std, settings.n_sampled)
        if settings.fixed_points:
            found.append(find_fixed_points(params, u, starts, tol=settings.tol, max_iter=settings.max_iter,
                                           dedup_radius=settings.dedup_radius))
        if settings.slow_points:
            slow.append(slow_points(params, u, starts, q_tol=settings.slow_tol, tol=settings.tol,
                                    dedup_radius=settings.dedup_radius))
    return found, slow


def stack_fixed_points(found: list[FixedPoints], n: int) -> dict[str, np.ndarray]:
    """The per-condition results as flat fp_* arrays, one row per fixed point, fp_condition its condition."""
    return {"fp_points": np.concatenate([f.points for f in found]).reshape(-1, n),
            "fp_condition": np.concatenate([np.full(len(f.points), c) for c, f in enumerate(found)]).astype(int),
            "fp_residual_norms": np.concatenate([f.residual_norms for f in found]),
            "fp_eigenvalues": np.concatenate([f.eigenvalues for f in found]).reshape(-1, n),
            "fp_n_unstable": np.concatenate([f.n_unstable for f in found]).astype(int),
            "fp_is_stable": np.concatenate([f.is_stable for f in found]).astype(bool)}


def project_dynamics(params: dict, conditions: Conditions, states: np.ndarray, found: dict[str, np.ndarray],
                     settings: DynamicsSettings) -> tuple[dict[str, np.ndarray], float]:
    """PCA of the window states of all trials (after skip_steps; of x or of tanh(x)), and trajectories,
    fixed points, slow points and leading unstable directions in PC coordinates."""
    transform = np.tanh if settings.rates else (lambda x: x)
    window = transform(states[conditions.window][settings.skip_steps:])  # (T_w, B, N)
    if window.shape[0] == 0:
        raise ValueError(f"analysis.pca.skip_steps={settings.skip_steps} leaves no state of the trajectories")
    pca = fit_pca(window.reshape(-1, window.shape[-1]), min(settings.n_components, window.shape[-1]))
    kept = np.arange(min(window.shape[1], TRAJECTORIES_KEPT))
    stride = max(1, window.shape[0] // TRAJECTORY_POINTS)
    arrays = {"pca_mean": np.asarray(pca.mean), "pca_components": np.asarray(pca.components),
              "pca_variance_explained": np.asarray(pca.variance_explained),
              "pca_trajectories": np.asarray(pca.project(window[::stride, kept].transpose(1, 0, 2))),
              "pca_trajectory_condition": np.asarray(conditions.trial_condition)[kept]}
    if "fp_points" in found:
        arrays.update(fixed_points_in_pcs(params, pca, found["fp_points"], found["fp_is_stable"], settings.rates))
    if "sp_points" in found:
        arrays["pca_slow_points"] = project_points(pca, transform(found["sp_points"]))
    return arrays, float(np.sum(arrays["pca_variance_explained"][:3]))


def project_points(pca, points: np.ndarray) -> np.ndarray:
    """Points (K, N) in PC coordinates (K, P), also for K = 0."""
    return np.asarray(pca.project(points)).reshape(len(points), len(pca.variance_explained))


def fixed_points_in_pcs(params: dict, pca, points: np.ndarray, is_stable: np.ndarray, rates: bool):
    """pca_fixed_points (K, P) and pca_unstable_directions (K, P), NaN rows for stable points."""
    transform = np.tanh if rates else (lambda x: x)
    arrays = {"pca_fixed_points": project_points(pca, transform(points))}
    directions = np.full((len(points), len(pca.variance_explained)), np.nan)
    for k in np.flatnonzero(~is_stable):
        direction = leading_unstable_direction(params, points[k])
        if rates:  # tanh(x) moves along (1 - tanh² x) ⊙ v when x moves along v
            direction = (1 - np.tanh(points[k]) ** 2) * direction
            direction /= max(np.linalg.norm(direction), np.finfo(float).tiny)
        directions[k] = np.asarray(pca.project_directions(direction))
    arrays["pca_unstable_directions"] = directions
    return arrays


# ------------------------------------------------------------------------------------ during training
class FixedPointTracker:
    """Fixed points of the tracked conditions at each sample during training, warm-started from the
    previous sample's points: starts are those points (cycled to fill `track_starts` slots, or trajectory
    samples before any was found) plus the drive-end state and trajectory samples (`track_starts` more).
    The start count is fixed, so the search compiles once. `arrays()` gives one row per (step, point)."""

    def __init__(self, apply, inputs: np.ndarray, conditions: Conditions, track: Sequence[int],
                 settings: DynamicsSettings, dtype, seed: int):
        self.conditions, self.track, self.settings = conditions, [int(c) for c in track], settings
        self.trials = np.flatnonzero(np.isin(conditions.trial_condition, self.track))
        self.local = conditions._replace(trial_condition=np.asarray(conditions.trial_condition)[self.trials])
        self.inputs = jax.numpy.asarray(inputs[:, self.trials], dtype)
        self.apply = jax.jit(apply)
        self.rng = np.random.default_rng(seed)
        self.previous: dict[int, np.ndarray] = {}
        self.rows: list[tuple[int, int, np.ndarray]] = []

    def starts(self, c: int, anchor, path: np.ndarray) -> np.ndarray:
        k = self.settings.track_starts
        previous = self.previous.get(c)
        if previous is not None and len(previous):
            warm = previous[np.arange(k) % len(previous)]
        else:
            warm = path[self.rng.integers(0, len(path), size=k)]
        fresh = make_starts(self.rng, anchor, path, 0, 0.0, k - 1)  # anchor (or a sample) + k - 1 samples
        return np.concatenate([warm, fresh])

    def sample(self, step: int, params: dict) -> None:
        if self.settings.track_starts == 0 or not self.track or (self.rows and self.rows[-1][0] == step):
            return
        _, states = self.apply(params, self.inputs)
        states = np.asarray(states)
        if not np.all(np.isfinite(states)):
            return
        local_paths = trajectories(self.local, states)
        local_anchors = anchors(self.local, states)
        for c in self.track:
            anchor = None if local_anchors is None else local_anchors[c]
            fps = find_fixed_points(params, self.conditions.inputs[c], self.starts(c, anchor, local_paths[c]),
                                    tol=self.settings.tol, max_iter=self.settings.max_iter,
                                    dedup_radius=self.settings.dedup_radius)
            self.previous[c] = fps.points
            self.rows.extend((step, c, values) for values in fps.eigenvalues)

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        return {"fp_track_step": np.array([r[0] for r in self.rows]),
                "fp_track_condition": np.array([r[1] for r in self.rows]),
                "fp_track_eigenvalues": np.stack([r[2] for r in self.rows])}
