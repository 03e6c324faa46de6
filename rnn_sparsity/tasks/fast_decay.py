"""Fast-decaying linear dynamics (with model=lowrank_linear): no data, a loss on the connectivity.

With γ_i the eigenvalues of (J - I)/τ (τ = `model.tau`), R the right eigenvectors and L = (RᴴR)⁻¹
(analysis/decay.py): decay L1 = Tr(R(L∘F)Rᴴ)/(Nτ), F_ij = -1/(γ_i + γ_j*) (the expected ∫||x||² per
unit for unit-covariance starts); stability L2 = Σ max(Re γ_i, 0)²; smoothness L3 = τ wᵀR(L∘G)Rᴴw,
G_ij = γ_i γ_j* F_ij. Task loss L1 + α L2 + β L3, α = `task.alpha`, β = `task.beta`. With `task.cap`
(the default) L1 and L3 take Re γ capped at -1e-4/τ (analysis/decay.py: an unstable network is not
rewarded by the formulas' negative values there); `task.cap=false` takes them uncapped, as the source
does (sean-escola/thalamocortical, my_lbfgs.py `_loss_from_eigs`), so the stability loss alone keeps
training on the stable side.
Metrics of the outputs: each term, max Re eig(J). Its probe `DecayTimes` adds, after training, the times
at which the expected norm falls to 5% and 1% of its start (decay_time_5/_1, in time units and in τ),
with two other readings of "decay time" beside them: the worst start's (worst_decay_time_*: ‖e^{At}‖₂
falls to 5% / 1%) and the slowest eigenmode's (mode_decay_time_*: τ ln(1/f) / -max Re γτ, the
asymptotic rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from ..analysis.decay import _eigensystem, decay_losses, decay_times, expected_norm, max_real_eigenvalue
from ..components import TaskComponent, check, non_negative
from ..contracts import Probe, Task, split_connectivity

DECAY_HORIZON = 200.0  # decay times are sought up to this many τ
CURVE_SPAN = 30.0  # the stored decay curve covers this many τ


@dataclass
class FastDecayConfig:
    _target_: str = "rnn_sparsity.tasks.fast_decay.FastDecay"
    name: str = "fast_decay"
    alpha: float = 1e5  # weight of the stability loss Σ max(Re γ, 0)²
    beta: float = 0.01  # weight of the smoothness loss
    cap: bool = True  # cap Re γ at -1e-4/τ in the decay and smoothness terms (false: uncapped, the source's)


@jax.jit
def uncapped_decay_losses(J: jax.Array, w: jax.Array, tau) -> dict[str, jax.Array]:
    """`decay_losses` with F_ij = -1/(γ_i + γ_j*) and G_ij = γ_i γ_j* F_ij for every mode, Re γ not capped:
    the source's terms. Equal to `decay_losses` wherever every Re γ < -1e-4/τ; beyond the stability line
    F_ii = -1/(2 Re γ_i) < 0, so there L1 and L3 are the integrals' analytic continuation (any sign)."""
    gamma, R, gram, L = _eigensystem(J, tau)
    F = -1.0 / (gamma[:, None] + jnp.conj(gamma)[None, :])
    G = gamma[:, None] * jnp.conj(gamma)[None, :] * F
    a = R.T @ w.astype(R.dtype)
    return {"decay": jnp.real(jnp.sum(L * F * gram.T)) / (J.shape[0] * tau),
            "stability": jnp.sum(jnp.maximum(jnp.real(gamma), 0.0) ** 2),
            "smoothness": tau * jnp.real(a @ (L * G) @ jnp.conj(a))}


def make_task(cfg, tau: float) -> Task:
    """The task for task config `cfg` on a network of time constant τ."""

    losses = decay_losses if cfg.cap else uncapped_decay_losses

    def loss(outputs, targets=None, weights=None):
        terms = losses(*split_connectivity(outputs), tau)
        return terms["decay"] + cfg.alpha * terms["stability"] + cfg.beta * terms["smoothness"]

    def metrics(outputs: np.ndarray) -> dict[str, float]:
        J, w = (np.asarray(a, np.float64) for a in split_connectivity(outputs))
        out = {f"{name}_loss": float(v) for name, v in losses(J, w, tau).items()}
        out["max_real_eig"] = float(max_real_eigenvalue(J))
        return out

    dummy = np.zeros((1, 1, 1))
    return Task(inputs=dummy, targets=dummy, loss_weights=np.ones((1, 1, 1)), loss=loss, metrics=metrics)


class DecayTimes(Probe):
    """After training: when the trained network's activity has decayed to 5% and 1% of its start
    (decay_time_5/_1, in time units and in τ), with two other readings of "decay time" beside them:
    the worst start's (worst_decay_time_*) and the slowest eigenmode's (mode_decay_time_*); and the
    expected-norm decay curve over 0 … 30 τ (figures/decay_curve.png). J is the model's recurrent matrix."""

    def __init__(self, recurrent, tau: float):
        self.recurrent, self.tau = recurrent, tau
        self.result: tuple[dict, dict] = ({}, {})

    def finish(self, params, completed: bool) -> None:
        J, tau = np.asarray(self.recurrent(params), np.float64), self.tau
        metrics = {}
        for fraction, label in ((0.05, "5"), (0.01, "1")):
            times = decay_times(J, tau, fraction, DECAY_HORIZON * tau)
            for reading, name in (("expected", "decay_time"), ("worst", "worst_decay_time"), ("mode", "mode_decay_time")):
                metrics[f"{name}_{label}"], metrics[f"{name}_{label}_tau"] = times[reading], times[reading] / tau
        curve = np.linspace(0.0, CURVE_SPAN * tau, 301)
        self.result = (metrics, {"decay_curve_time": curve, "decay_curve_norm": np.asarray(expected_norm(J, tau, curve)),
                                 "decay_curve_tau": np.array(tau)})

    def metrics(self) -> dict:
        return self.result[0]

    def arrays(self) -> dict:
        return self.result[1]


class FastDecay(TaskComponent):
    """Scores a connectivity J (and readout w) that a `connectivity` model outputs as [J | w]."""

    Config = FastDecayConfig
    layout = "connectivity"
    summary_metrics = ("max_real_eig", "decay_time_1_tau", "worst_decay_time_1_tau", "mode_decay_time_1_tau")

    def tau(self) -> float:
        return float(OmegaConf.select(self.cfg, "model.tau"))

    def check(self, parts) -> None:
        check(OmegaConf.select(self.cfg, "model.tau") is not None, "model", self.cfg.model.get("name"),
              "task=fast_decay needs a model with a time constant model.tau")
        for key in ("task.alpha", "task.beta"):
            non_negative(self.cfg, key)

    def build(self, dtype) -> Task:
        return make_task(self.group_cfg, self.tau())

    def probes(self, trainer) -> list:
        return [DecayTimes(trainer.model.recurrent, self.tau())]

    def run_figures(self):
        from ..plots.decay import DECAY_FIGURES

        return DECAY_FIGURES
