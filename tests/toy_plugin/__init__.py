"""A researcher's own components, outside the package: a toy task, a toy regularizer, a Flax module and
a Flax recurrent cell.

tests/test_plugins.py runs a real multirun with them (PYTHONPATH=tests, hydra.searchpath=[file://tests/toy_plugin/conf])
without any edit to rnn_sparsity: each YAML names its class by `_target_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import linen as nn

from rnn_sparsity.components import RegularizerComponent, TaskComponent, check, positive
from rnn_sparsity.contracts import Regularizer, Task
from rnn_sparsity.plots.common import read_analysis


# ------------------------------------------------------------------------------------------- the task
@dataclass
class ToyConfig:
    _target_: str = "toy_plugin.ToyTask"
    name: str = "toy"
    n_points: int = 64  # x ~ U[-1, 1]^2, y = sin(2 x_1) + x_2 / 2
    seed: int = 0


class ToyTask(TaskComponent):
    Config = ToyConfig
    layout = "static"
    summary_metrics = ("toy_score",)

    def check(self, parts) -> None:
        positive(self.cfg, "task.n_points")

    def io(self):
        return 2, 1

    def n_train(self):
        return int(self.group_cfg.n_points)

    def build(self, dtype) -> Task:
        rng = np.random.default_rng(self.group_cfg.seed)
        x = rng.uniform(-1, 1, (self.group_cfg.n_points, 2))
        y = (np.sin(2 * x[:, 0]) + x[:, 1] / 2)[:, None]

        def metrics(outputs):  # R² of the fit: 1 - MSE / Var(y)
            return {"toy_score": float(1 - np.mean((outputs[0] - y) ** 2) / np.var(y))}

        def arrays(outputs):
            return {"toy_outputs": np.asarray(outputs[0, :, 0]), "toy_targets": y[:, 0]}

        return Task(inputs=x[None], targets=y[None], loss_weights=np.ones((1, 1, 1)), metrics=metrics, arrays=arrays)

    def run_figures(self):
        return {"toy_fit.png": toy_fit_figure}

    @classmethod
    def sweep_outputs(cls, runs, keys, out):
        path = out / "toy_scores.csv"
        runs[[*keys, "toy_score"]].to_csv(path, index=False)
        return [path]


def toy_fit_figure(run_dir: Path):
    analysis = read_analysis(run_dir, ("toy_outputs", "toy_targets"))
    if analysis is None:
        return None
    fig, ax = plt.subplots()
    ax.scatter(analysis["toy_targets"], analysis["toy_outputs"], s=6)
    ax.set(xlabel="target", ylabel="output", title="toy fit")
    return fig


# -------------------------------------------------------------------------------------- the regularizer
@dataclass
class QuarticConfig:
    _target_: str = "toy_plugin.Quartic"
    name: str = "quartic"
    strength: float = 0.0  # λ: R = λ Σ θ⁴ over the targets
    targets: list[str] | None = None  # null: the model's weights (its kernels)


class Quartic(RegularizerComponent):
    Config = QuarticConfig
    traced = ("strength",)
    proximal_operator = False  # a penalty: it declares no `mode`, nor a state penalty

    def build(self, param_shapes, weights=()) -> Regularizer:
        """R over `targets`, or over the model's `weights` (contracts.Model.weight_names) where it is null."""
        targets = tuple(weights if self.group_cfg.targets is None else self.group_cfg.targets)
        missing = [t for t in targets if t not in param_shapes]
        check(not missing, "regularizer.targets", targets, f"must name parameters of the model: {list(param_shapes)}")

        def penalty(params, hyper):
            return hyper["strength"] * sum(jnp.sum(params[t] ** 4) for t in targets)

        return Regularizer(penalty=penalty, prox=lambda params, hyper, step: params, targets=targets)


# ------------------------------------------------------------------------------------- the Flax module
class TinyMLP(nn.Module):
    features: int = 8

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(jnp.tanh(nn.Dense(self.features)(x)))


# ----------------------------------------------------------------------------------- the recurrent cell
class LeakyTanhCell(nn.RNNCellBase):
    """A leaky rate cell of one's own: h' = (1 − α) h + α tanh(h W_rec + x W_in + b). Its recurrent
    kernel is `rec` (not h*: conf/model/leaky_cell.yaml names it in model.recurrent)."""
    features: int = 16
    alpha: float = 0.5

    @nn.compact
    def __call__(self, carry, x):
        drive = nn.Dense(self.features, use_bias=False, name="rec")(carry) + nn.Dense(self.features, name="inp")(x)
        h = (1.0 - self.alpha) * carry + self.alpha * jnp.tanh(drive)
        return h, h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros((*input_shape[:-1], self.features))

    @property
    def num_feature_axes(self) -> int:
        return 1
