"""Probes: what runs between training chunks and after training (contracts.Probe), and the `analysis`
group, which says which of them a run gets.

fit.fit calls `sample(step, params)` before the first chunk and after every chunk (finite
parameters only), `finish(params, completed)` once with the best parameters; a probe's `arrays()` go
into analysis.npz and its `metrics()` into metrics.json. A task asks for its own probes (a teacher
distance, a window accuracy) in its component's `probes()`; the analysis group adds the generic ones:

    SpectrumProbe     eig of the model's recurrent matrix at every sample; final eigenvalues, spectral_radius
    LossProbe         train and test loss (and accuracy) at every sample, for a task with held-out data
    FixedPointTracker fixed points of `analysis.track_tasks` at every sample (analysis/dynamics.py)
    DynamicsProbe     fixed and slow points, their spectra and PCA after training (analysis/dynamics.py)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .analysis.dynamics import FixedPointsConfig, FixedPointTracker, PCAConfig, SlowPointsConfig, analyse_dynamics
from .analysis.eigen import eigenvalues
from .components import AnalysisComponent, check, non_negative, one_of, positive
from .contracts import Probe

log = logging.getLogger(__name__)


def host(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in params.items()}


class SpectrumProbe(Probe):
    """eig(recurrent(params)) with its step at every sample (when `track`), and of the best parameters
    at the end (final_eigenvalues, spectral_radius = max |λ|); nothing for a model without recurrence.
    `of`: what the matrix is, recorded as eig_of when it is not a rate network's J ("map": a cell's ∂f/∂h
    at h = 0, whose origin is stable inside the unit circle, not left of Re λ = 1)."""

    checkpointed = ("steps", "values")

    def __init__(self, recurrent: Callable, track: bool = True, of: str | None = None):
        self.recurrent, self.track, self.of = recurrent, track, of
        self.steps: list[int] = []
        self.values: list[np.ndarray] = []
        self.final: np.ndarray | None = None

    def sample(self, step: int, params) -> None:
        matrix = self.recurrent(params) if self.track else None
        if matrix is None or (self.steps and self.steps[-1] == step):
            return
        self.steps.append(int(step))
        self.values.append(eigenvalues(matrix))

    def finish(self, params, completed: bool) -> None:
        matrix = self.recurrent(params)
        if matrix is not None and np.all(np.isfinite(np.asarray(matrix))):
            self.final = eigenvalues(matrix)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"eig_steps": np.array(self.steps), "eig_values": np.stack(self.values)} if self.steps else {}
        out.update({"final_eigenvalues": self.final} if self.final is not None else {})
        return {**out, "eig_of": np.asarray(self.of)} if out and self.of == "map" else out

    def metrics(self) -> dict[str, Any]:
        return {"spectral_radius": float(np.max(np.abs(self.final)))} if self.final is not None else {}


class LossProbe(Probe):
    """Train and test loss (all samples) of the current parameters at every sample, and train and test
    accuracy for a task with a score (classification): eval_step, eval_<split>_<loss|accuracy>."""

    checkpointed = ("rows",)

    def __init__(self, trainer):
        self.scores = trainer.score
        self.rows: list[dict[str, float]] = []

    def evaluate(self, params) -> dict:
        return {f"{split}_{name}": value for split in ("train", "test")
                for name, value in self.scores(params, split).items()}

    def sample(self, step: int, params) -> None:
        if self.rows and self.rows[-1]["step"] == step:
            return
        self.rows.append({"step": step, **{k: float(v) for k, v in self.evaluate(params).items()}})

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        return {f"eval_{k}": np.array([row[k] for row in self.rows]) for k in self.rows[0]}


class WindowMean(Probe):
    """window_<split>_<score>: the mean of a split's score over the samples whose epoch lies in
    [first, last] (an average that is less noisy than the last epoch's, e.g. Iris's epochs 500-900)."""

    checkpointed = ("steps", "values")

    def __init__(self, trainer, window: Sequence[int], split: str = "test", score: str = "accuracy"):
        self.name, self.window, self.steps_per_epoch = f"window_{split}_{score}", tuple(window), trainer.steps_per_epoch
        self.split, self.score, self.scores = split, score, trainer.score
        self.steps: list[int] = []
        self.values: list[float] = []

    def sample(self, step: int, params) -> None:
        if not self.window[0] <= step // self.steps_per_epoch <= self.window[1] or step in self.steps[-1:]:
            return
        self.steps.append(step)
        self.values.append(float(self.scores(params, self.split)[self.score]))

    def metrics(self) -> dict[str, Any]:
        return {self.name: float(np.mean(self.values)) if self.values else None}


class ParamMetricsProbe(Probe):
    """A task's metrics of the parameters (`of(params) -> {name: value}`, on the host): of the best
    parameters at the end, and with `track` at every sample too (param_step, param_<name>). For each
    tracked name in `rebound`: <name>_min_epoch, the epoch of its minimum, and <name>_rebound, the
    ratio of its final value to that minimum (how far a distance climbs back after its lowest point)."""

    checkpointed = ("steps", "rows")

    def __init__(self, of: Callable[[dict], dict], steps_per_epoch: int, track: bool = False,
                 rebound: Sequence[str] = ()):
        self.of, self.steps_per_epoch, self.track, self.rebound = of, steps_per_epoch, track, tuple(rebound)
        self.steps: list[int] = []
        self.rows: list[dict] = []
        self.final: dict = {}

    def sample(self, step: int, params) -> None:
        if not self.track or (self.steps and self.steps[-1] == step):
            return
        self.steps.append(int(step))
        self.rows.append(self.of(host(params)))

    def finish(self, params, completed: bool) -> None:
        params = host(params)
        if all(np.all(np.isfinite(v)) for v in params.values()):
            self.final = self.of(params)

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.rows:
            return {}
        return {"param_step": np.array(self.steps),
                **{f"param_{name}": np.array([row[name] for row in self.rows]) for name in self.rows[0]}}

    def metrics(self) -> dict[str, Any]:
        out = dict(self.final)
        for name in self.rebound:
            if not self.rows:
                continue
            values = np.array([row[name] for row in self.rows])
            lowest = int(np.argmin(values))
            out[f"{name}_min_epoch"] = self.steps[lowest] // self.steps_per_epoch
            out[f"{name}_rebound"] = float(values[-1] / values[lowest]) if values[lowest] > 0 else None
        return out


class DynamicsProbe(Probe):
    """After a completed fit: fixed points, slow points and PCA of the trained network under each of the
    task's conditions (analysis/dynamics.py), with its progress logged."""

    def __init__(self, trainer, settings: "AnalysisConfig", seed: int):
        self.trainer, self.settings, self.seed = trainer, settings, seed
        self.result: tuple[dict, dict] = ({}, {})

    def finish(self, params, completed: bool) -> None:
        if not completed:
            return
        trainer = self.trainer
        _, states = jax.jit(trainer.model.apply)(params, jax.numpy.asarray(trainer.task.inputs, trainer.dtype))
        start = time.perf_counter()
        log.info("dynamics analysis: fixed points of %d conditions ...", len(trainer.task.conditions.inputs))
        metrics, arrays = analyse_dynamics(trainer.model.dynamics, params, trainer.task.conditions, states,
                                           self.settings, seed=self.seed)
        log.info("dynamics analysis done (%.1fs): %s", time.perf_counter() - start,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
        self.result = (metrics, arrays)

    def arrays(self) -> dict[str, np.ndarray]:
        return self.result[1]

    def metrics(self) -> dict[str, Any]:
        return self.result[0]


# --------------------------------------------------------------------------------- the analysis group
@dataclass
class AnalysisConfig:
    _target_: str = "rnn_sparsity.probes.Analysis"
    name: str = "default"
    enabled: bool = True  # False: no spectrum tracking, no analysis.npz, no per-run figures
    eig_every: int = 50  # steps between samples of every probe (also the length of a jitted chunk)
    figures: bool = True  # draw per-run figures
    fixed_points: FixedPointsConfig = field(default_factory=FixedPointsConfig)
    slow_points: SlowPointsConfig = field(default_factory=SlowPointsConfig)
    pca: PCAConfig = field(default_factory=PCAConfig)
    track_tasks: list[int] = field(default_factory=list)  # task indices whose fixed points are found every eig_every steps
    history: str = "steps"  # history.parquet: a row per step | per epoch (minibatch means; eig_every a multiple of the epoch)
    near_zero: float = 1e-4  # ε > 0: |θ| < ε counts as near zero (near_zero_fraction); the teacher-student study's 1e-4


class Analysis(AnalysisComponent):
    """The spectrum of the recurrent matrix during training, train/test losses where a task has held-out
    data, and (options `dynamics`) fixed points, slow points and PCA of a rate network's dynamics."""

    Config = AnalysisConfig
    summary_metrics = ("spectral_radius", "n_fixed_points", "n_unstable_fixed_points", "fp_freq_error")
    unplotted_metrics = ("n_fixed_point_starts", "n_converged_starts")

    def wants_dynamics(self) -> bool:
        a = self.group_cfg
        return bool(a.enabled and (a.fixed_points.enabled or a.slow_points.enabled or a.pca.enabled))

    def check(self, parts) -> None:
        a, cfg = self.group_cfg, self.cfg
        positive(cfg, "analysis.eig_every")
        positive(cfg, "analysis.near_zero")
        one_of(cfg, "analysis.history", ("steps", "epochs"))
        for key in ("n_perturbed", "n_sampled", "track_starts", "perturbation_std", "dedup_radius"):
            non_negative(cfg, f"analysis.fixed_points.{key}")
        fp = a.fixed_points
        check(fp.tol is None or fp.tol > 0, "analysis.fixed_points.tol", fp.tol, "must be > 0 (or null for the dtype's default)")
        positive(cfg, "analysis.fixed_points.max_iter")
        for key in ("outlier_distance_scale", "rerun_q_outliers"):
            value = fp.get(key)
            check(value is None or value > 0, f"analysis.fixed_points.{key}", value, "must be > 0 (or null: off)")
        positive(cfg, "analysis.slow_points.tol")
        positive(cfg, "analysis.pca.n_components")
        non_negative(cfg, "analysis.pca.skip_steps")
        if self.wants_dynamics() or len(a.track_tasks) > 0:
            check(parts.model.has_dynamics, "model.name", cfg.model.get("name"),
                  "fixed points, slow points and PCA need a recurrent model (ctrnn, rnn, gru, lstm, flax_rnn)")
            check(a.enabled, "analysis.enabled", a.enabled,
                  "must be true when fixed points, slow points, PCA or tracking are asked for")
            check(not (a.pca.enabled and a.pca.rates) or parts.model.has_rates, "analysis.pca.rates", a.pca.rates,
                  "PCA of the rates tanh(x) needs a model with rates (ctrnn); a cell's states are its activity")
        n_conditions = parts.task.n_conditions()
        for index in a.track_tasks:
            check(0 <= index < n_conditions, "analysis.track_tasks", list(a.track_tasks),
                  f"task indices must lie in [0, {n_conditions})")

    def trainer_options(self) -> dict:
        """Chunks of eig_every steps (every probe samples between two), history rows per step or epoch."""
        return dict(chunk_steps=int(self.group_cfg.eig_every), history=str(self.group_cfg.history))

    def settings(self) -> AnalysisConfig:
        from omegaconf import OmegaConf

        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AnalysisConfig), self.group_cfg))

    def probes(self, trainer) -> list[Probe]:
        a = self.group_cfg
        dynamics = trainer.model.dynamics
        probes: list[Probe] = [SpectrumProbe(trainer.model.recurrent, track=bool(a.enabled),
                                             of=None if dynamics is None else dynamics.kind)]
        if not a.enabled:
            return probes
        settings = self.settings()
        if a.track_tasks:
            probes.append(FixedPointTracker(trainer.model.apply, trainer.model.dynamics, trainer.task.inputs,
                                            trainer.task.conditions, a.track_tasks, settings, trainer.dtype,
                                            seed=self.cfg.seed))
        if trainer.task.test_inputs is not None:
            probes.append(LossProbe(trainer))
        if self.wants_dynamics():
            probes.append(DynamicsProbe(trainer, settings, self.cfg.seed))
        return probes

    def run_figures(self):
        from .plots.dynamics import DYNAMICS_FIGURES
        from .plots.run import eigenvalue_figure

        return {"eigenvalues.png": eigenvalue_figure, **DYNAMICS_FIGURES}

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        from .plots.dynamics import write_unstable_tables
        from .plots.sweep import draw_panel_figures

        return write_unstable_tables(runs, keys, out) + draw_panel_figures(runs, keys, out / "figures")
