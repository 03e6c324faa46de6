"""Dynamics of a trained recurrent network (`analysis=dynamics`): fixed and slow points per task
input, their linearisations (spectra, input Jacobians), PCA of the trajectories, and fixed points
tracked during training, for any model with contracts.Dynamics (a CTRNN's flow, a vanilla, GRU, LSTM
or researcher's cell's state map).

A *condition* is one static input u (contracts.Conditions): for the sine-wave task the level u_j of task
j, for the flip-flop task u = 0. Fixed points of the dynamics under it (F(h, u) = 0 for a flow,
f(h, u) = h for a map; fixed_points.problem) are sought from the starts researchers use: the
drive-phase end state h_a, Gaussian perturbations h_a + σ ε (σ = `perturbation_std`), and states
sampled at random times of the condition's trajectory. A task without a drive phase (flip-flop)
perturbs sampled trajectory states instead of h_a.

Frequencies: for a flow F = τ ḣ an eigenvalue λ of DF oscillates at |Im λ| / τ rad per time unit;
for a map an eigenvalue λ of ∂f/∂h turns by |arg λ| per step, |arg λ| / dt rad per time unit.
Sussillo & Barak's finding for the sine task: the fixed point at the centre of task j's orbit has an
unstable complex pair at ≈ ω_j; `fp_freq_error` is the median over tasks of |ω_fp - ω_j| / ω_j (1.0
for a task whose central fixed point has no unstable complex pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import jax
import numpy as np

from ..contracts import Conditions, Dynamics, Probe
from .fixed_points import (FixedPoints, find_fixed_points, growth, input_jacobians, problem, readouts, rotation,
                           slow_points)
from .pca import fit_pca

TRAJECTORIES_KEPT = 64  # trials whose PC-space trajectories are written (all tasks of the sine study)
TRAJECTORY_POINTS = 400  # time points kept per written trajectory (strided)
OSCILLATORY = 1e-6  # |Im λ| above which an eigenvalue counts as part of a complex pair


@dataclass
class FixedPointsConfig:
    enabled: bool = False  # find fixed points of the trained network for every condition (task input)
    n_perturbed: int = 49  # starts: Gaussian perturbations of the drive-phase end state ...
    perturbation_std: float = 0.5  # ... with this standard deviation
    n_sampled: int = 50  # starts: states at random times of the condition's trajectory
    tol: Optional[float] = None  # accept ‖F(x)‖ < tol; null: 1e-10 in float64, 1e-5 in float32
    max_iter: int = 200  # Levenberg–Marquardt iterations per start at most
    dedup_radius: float = 1e-2  # points closer than this are one fixed point
    # FixedPointFinder's outlier tests (null: off): drop converged points farther from the starts'
    # centroid than this multiple of the starts' mean distance to it (its default 10) ...
    outlier_distance_scale: Optional[float] = None
    # ... and run again (max_iter more) starts that stopped unconverged with q above this multiple of the median q (its 10)
    rerun_q_outliers: Optional[float] = None
    input_jacobians: bool = True  # ∂F/∂u at each fixed point (fp_input_jacobians)
    track_starts: int = 8  # starts per tracked task during training, besides the previous sample's points


@dataclass
class SlowPointsConfig:
    enabled: bool = False  # also look for slow points: local minima of q = ½‖F‖² that are not fixed points
    tol: float = 1e-4  # keep minima with q below this


@dataclass
class PCAConfig:
    enabled: bool = False  # PCA of the train-phase states of all tasks
    n_components: int = 10
    skip_steps: int = 0  # leave out this many initial steps of every trajectory (a transient)
    rates: bool = False  # PCA of the rates tanh(x) rather than of x


class Settings(Protocol):
    """What the analysis reads of the `analysis` group (probes.AnalysisConfig)."""
    fixed_points: FixedPointsConfig
    slow_points: SlowPointsConfig
    pca: PCAConfig


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
def leading_unstable_direction(jacobian: np.ndarray, kind: str) -> np.ndarray:
    """The main unstable direction of a linearisation (N, N): the eigenvector whose mode grows fastest
    (largest Re λ for a flow, |λ| for a map; for a complex pair, the major axis of its plane), unit norm."""
    values, vectors = np.linalg.eig(np.asarray(jacobian, dtype=np.float64))
    v = vectors[:, int(np.argmax(growth(values, kind)))]
    # a complex eigenvector is defined up to a phase e^{iθ}: take the θ that makes vᵀv real and positive,
    # so Re v is the major axis of the ellipse the mode traces (the longest real direction in its plane)
    direction = (v * np.exp(-0.5j * np.angle(v @ v))).real
    return direction / max(np.linalg.norm(direction), np.finfo(float).tiny)


def unstable_frequency(eigenvalues: np.ndarray, kind: str, time_constant: float) -> float:
    """The angular frequency (rad per time unit) of the growing complex eigenvalue that grows fastest:
    |Im λ| / τ for a flow, |arg λ| / dt for a map; NaN if there is none."""
    grows = growth(eigenvalues, kind)
    pick = (grows > 0) & (np.abs(eigenvalues.imag) > OSCILLATORY)
    if not np.any(pick):
        return float("nan")
    return float(abs(rotation(eigenvalues[pick][np.argmax(grows[pick])], kind)) / time_constant)


def central_fixed_point(points: np.ndarray, trajectory: np.ndarray) -> int | None:
    """Index of the fixed point nearest the centroid of a trajectory (the centre of an orbit)."""
    if len(points) == 0:
        return None
    return int(np.argmin(np.linalg.norm(points - trajectory.mean(axis=0), axis=1)))


def frequency_check(found: list[FixedPoints], paths: list[np.ndarray], omegas: np.ndarray, time_constant: float):
    """(fp_omega (C,), fp_freq_error): the unstable frequency at each task's central fixed point and the
    median relative error against ω_j, a task without such a pair counting as error 1.0."""
    fp_omega = np.full(len(omegas), np.nan)
    for c, (fps, path) in enumerate(zip(found, paths)):
        centre = central_fixed_point(fps.points, path)
        if centre is not None:
            fp_omega[c] = unstable_frequency(fps.eigenvalues[centre], fps.kind, time_constant)
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


def analyse_dynamics(dynamics: Dynamics, params: dict, conditions: Conditions, states, settings: Settings, *,
                     seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fixed points (and slow points) per condition, their spectra, the frequency check and PCA.

    dynamics: the model's (params effective: masked); states (T, B, N) of all trials from the model's
    initial state. Returns (metrics, arrays) following the analysis.npz keys fp_*, sp_*, pca_*,
    condition_*, dynamics_*.
    """
    states = np.asarray(states)
    rng = np.random.default_rng(seed)
    paths, starts_at = trajectories(conditions, states), anchors(conditions, states)
    arrays: dict[str, np.ndarray] = {"condition_inputs": np.asarray(conditions.inputs, float),
                                     "dynamics_kind": np.asarray(dynamics.kind),
                                     "dynamics_time_constant": np.asarray(float(dynamics.time_constant))}
    metrics: dict[str, Any] = {}
    fp, sp = settings.fixed_points, settings.slow_points
    if fp.enabled or sp.enabled:
        found, slow, extra = search_conditions(dynamics, params, conditions, paths, starts_at, settings, rng)
        if fp.enabled:
            arrays.update(stack_fixed_points(found, states.shape[-1]), **extra)
            metrics.update(fixed_point_metrics(arrays["fp_n_unstable"]),
                           n_fixed_point_starts=int(sum(f.n_starts for f in found)),
                           n_converged_starts=int(sum(f.n_converged for f in found)))
            if conditions.omegas is not None:
                arrays["condition_omegas"] = np.asarray(conditions.omegas, float)
                arrays["fp_omega"], metrics["fp_freq_error"] = frequency_check(found, paths, conditions.omegas,
                                                                               dynamics.time_constant)
        if sp.enabled:
            arrays.update(sp_points=np.concatenate([s.points for s in slow]).reshape(-1, states.shape[-1]),
                          sp_condition=np.concatenate([np.full(len(s.points), c) for c, s in enumerate(slow)]),
                          sp_q=np.concatenate([s.q_values for s in slow]))
    metrics["n_slow_points"] = int(len(arrays["sp_q"])) if sp.enabled else None
    if settings.pca.enabled:
        pca_arrays, metrics["pca_var_explained_3"] = project_dynamics(conditions, states, arrays, settings.pca)
        arrays.update(pca_arrays)
    return metrics, arrays


def search_conditions(dynamics: Dynamics, params, conditions: Conditions, paths, starts_at, settings: Settings, rng):
    """Fixed points (and slow points when asked) under each condition's input, from its starts; and
    per fixed point its leading unstable direction and input Jacobian, per start its report
    (fp_start_*: FixedPointFinder's per-start convergence report)."""
    found, slow = [], []
    directions, inputs_jac, outputs = [], [], []
    report: dict[str, list] = {"condition": [], "q": [], "n_iter": [], "outcome": []}
    fp, sp = settings.fixed_points, settings.slow_points
    for c, u in enumerate(conditions.inputs):
        starts = make_starts(rng, None if starts_at is None else starts_at[c], paths[c], fp.n_perturbed,
                             fp.perturbation_std, fp.n_sampled)
        prob = problem(dynamics, params, u)
        if fp.enabled:
            fps = find_fixed_points(prob, starts, tol=fp.tol, max_iter=fp.max_iter, dedup_radius=fp.dedup_radius,
                                    outlier_distance_scale=fp.outlier_distance_scale,
                                    rerun_q_outliers=fp.rerun_q_outliers)
            found.append(fps)
            directions.extend(leading_unstable_direction(j, fps.kind) if not stable else np.full(len(j), np.nan)
                              for j, stable in zip(fps.jacobians, fps.is_stable))
            if fp.input_jacobians:
                inputs_jac.append(input_jacobians(dynamics, params, u, fps.points))
            if dynamics.readout is not None:
                outputs.append(readouts(dynamics, params, u, fps.points))
            for key, values in (("condition", np.full(fps.n_starts, c)), ("q", fps.start_q),
                                ("n_iter", fps.start_n_iter), ("outcome", fps.start_outcome)):
                report[key].append(values)
        if sp.enabled:
            slow.append(slow_points(prob, starts, q_tol=sp.tol, tol=fp.tol, dedup_radius=fp.dedup_radius))
    extra: dict[str, np.ndarray] = {}
    if fp.enabled:
        n = np.shape(paths[0])[-1]
        extra["fp_unstable_directions"] = np.asarray(directions, float).reshape(-1, n)
        extra.update({f"fp_start_{key}": np.concatenate(values) for key, values in report.items()})
        if fp.input_jacobians:
            extra["fp_input_jacobians"] = np.concatenate(inputs_jac).reshape(-1, n, np.shape(conditions.inputs)[-1])
        if outputs:
            extra["fp_outputs"] = np.concatenate(outputs)
    return found, slow, extra


def stack_fixed_points(found: list[FixedPoints], n: int) -> dict[str, np.ndarray]:
    """The per-condition results as flat fp_* arrays, one row per fixed point, fp_condition its condition."""
    return {"fp_points": np.concatenate([f.points for f in found]).reshape(-1, n),
            "fp_condition": np.concatenate([np.full(len(f.points), c) for c, f in enumerate(found)]).astype(int),
            "fp_residual_norms": np.concatenate([f.residual_norms for f in found]),
            "fp_eigenvalues": np.concatenate([f.eigenvalues for f in found]).reshape(-1, n),
            "fp_n_unstable": np.concatenate([f.n_unstable for f in found]).astype(int),
            "fp_is_stable": np.concatenate([f.is_stable for f in found]).astype(bool)}


def project_dynamics(conditions: Conditions, states: np.ndarray, found: dict[str, np.ndarray],
                     settings: PCAConfig) -> tuple[dict[str, np.ndarray], float]:
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
        arrays.update(fixed_points_in_pcs(pca, found["fp_points"], found["fp_unstable_directions"], settings.rates))
    if "sp_points" in found:
        arrays["pca_slow_points"] = project_points(pca, transform(found["sp_points"]))
    return arrays, float(np.sum(arrays["pca_variance_explained"][:3]))


def project_points(pca, points: np.ndarray) -> np.ndarray:
    """Points (K, N) in PC coordinates (K, P), also for K = 0."""
    return np.asarray(pca.project(points)).reshape(len(points), len(pca.variance_explained))


def fixed_points_in_pcs(pca, points: np.ndarray, unstable_directions: np.ndarray, rates: bool):
    """pca_fixed_points (K, P) and pca_unstable_directions (K, P), NaN rows for stable points."""
    transform = np.tanh if rates else (lambda x: x)
    arrays = {"pca_fixed_points": project_points(pca, transform(points))}
    directions = np.full((len(points), len(pca.variance_explained)), np.nan)
    for k in np.flatnonzero(np.all(np.isfinite(unstable_directions), axis=1)):
        direction = unstable_directions[k]
        if rates:  # tanh(x) moves along (1 - tanh² x) ⊙ v when x moves along v
            direction = (1 - np.tanh(points[k]) ** 2) * direction
            direction /= max(np.linalg.norm(direction), np.finfo(float).tiny)
        directions[k] = np.asarray(pca.project_directions(direction))
    arrays["pca_unstable_directions"] = directions
    return arrays


# ------------------------------------------------------------------------------------ during training
class FixedPointTracker(Probe):
    """Fixed points of the tracked conditions at each sample during training, warm-started from the
    previous sample's points: starts are those points (cycled to fill `track_starts` slots, or trajectory
    samples before any was found) plus the drive-end state and trajectory samples (`track_starts` more).
    The start count is fixed, so the search compiles once. `arrays()` gives one row per (step, point)."""

    checkpointed = ("previous", "rows", "rng")

    def __init__(self, apply, dynamics: Dynamics, inputs: np.ndarray, conditions: Conditions, track: Sequence[int],
                 settings: Settings, dtype, seed: int):
        self.conditions, self.track, self.settings = conditions, [int(c) for c in track], settings.fixed_points
        self.dynamics = dynamics
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
            fps = find_fixed_points(problem(self.dynamics, params, self.conditions.inputs[c]),
                                    self.starts(c, anchor, local_paths[c]),
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
