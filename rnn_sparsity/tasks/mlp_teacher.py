"""The ℓ2-distance rebound study: students start at or near a dense tanh teacher of their own shape.

Teacher: an MLP of `task.sizes` ([2, 25, 25, 1]) with biases, tanh hidden layers and a linear output,
Glorot (Xavier) normal init from `task.teacher_seed`, then made generic (`make_generic`: no parameter 0,
biases of a layer distinct in |b|, no simple rational ratio in a weight column), so that it is identifiable
up to hidden-unit permutations and sign flips. Inputs u ~ U[-1, 1]² (n_train, n_test from data_seed),
targets y = teacher(u) + σ ε, σ = `task.noise_std`. Task loss: MSE (full batch).

Student start (`initial_params`): with `task.student_init: copy` the teacher plus δ·ε, ε ~ U[-1, 1] per
parameter, δ = `task.init_perturbation` (traced: a sweep over δ compiles once); with `random`, the
model's own init. `task.project_every` n > 0 makes the student generic again (the same nudge as the
teacher's) every n epochs, on the host between training chunks. Parameter metrics: `raw_distance` Σ(θ_s - θ_t)² over all weights and biases, and
`aligned_distance` after the best hidden-unit permutation and sign flips (analysis/teacher_distance.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.teacher_distance import aligned_distance, make_generic, raw_distance
from ..components import TaskComponent, check, non_negative, one_of, positive
from ..contracts import Task
from ..maths import ACTIVATIONS, init_std
from ..models.mlp import MLP
from ..probes import ParamMetricsProbe

DISTANCES = ("raw_distance", "aligned_distance")


@dataclass
class MLPTeacherConfig:
    _target_: str = "rnn_sparsity.tasks.mlp_teacher.MLPTeacher"
    name: str = "mlp_teacher"
    sizes: list[int] = field(default_factory=lambda: [2, 25, 25, 1])  # the teacher's widths (= the student's)
    n_train: int = 10000  # training points u ~ U[-1, 1]^d (full batch)
    n_test: int = 1000
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    student_init: str = "copy"  # copy (the teacher + init_perturbation U[-1, 1]) | random (the model's init)
    init_perturbation: float = 0.0  # δ, traced
    teacher_seed: int = 0  # the teacher is drawn from this seed, then made generic
    generic_gap: float = 1e-3  # δ of the genericity conditions (min |θ|, |b| gaps, distance from simple ratios)
    project_every: int = 0  # make the student generic again every n epochs (0: never)
    data_seed: int = 0


def make_teacher(sizes, seed: int, min_gap: float) -> dict[str, np.ndarray]:
    """Glorot-normal weights, biases N(0, 0.1²) (a zero bias is not generic), made generic."""
    rng = np.random.default_rng(seed)
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = init_std("tanh", fan_in, fan_out) * rng.standard_normal((fan_out, fan_in))
        params[f"b{l}"] = 0.1 * rng.standard_normal(fan_out)
    return make_generic(params, min_gap)


def teacher_forward(params: dict, u: np.ndarray) -> np.ndarray:
    """tanh hidden layers, linear output (NumPy, float64)."""
    n = len(params) // 2
    h = u
    for l in range(1, n + 1):
        h = h @ params[f"W{l}"].T + params[f"b{l}"]
        h = ACTIVATIONS["tanh"].numpy(h) if l < n else h
    return h


class MLPTeacher(TaskComponent):
    Config = MLPTeacherConfig
    layout = "static"
    traced = ("init_perturbation",)
    data_keys = ("noise_std", "data_seed")
    summary_metrics = ("test_loss", *DISTANCES, "raw_distance_rebound")
    unplotted_metrics = tuple(f"{d}_min_epoch" for d in DISTANCES)

    def check(self, parts) -> None:
        cfg, task = self.cfg, self.group_cfg
        sizes = list(task.sizes)
        check(len(sizes) >= 3 and all(w > 0 for w in sizes), "task.sizes", sizes,
              "must list input, at least one hidden and the output width, all > 0")
        for key in ("task.n_train", "task.n_test", "task.generic_gap"):
            positive(cfg, key)
        non_negative(cfg, "task.noise_std")
        non_negative(cfg, "task.init_perturbation")
        one_of(cfg, "task.student_init", ("copy", "random"))
        every = task.project_every
        check(every >= 0, "task.project_every", every, "must be >= 0 (0: never)")
        if every:  # projections run between training chunks, which are analysis.eig_every steps (epochs) long
            check(every % cfg.analysis.eig_every == 0, "task.project_every", every,
                  f"must be a multiple of analysis.eig_every ({cfg.analysis.eig_every}): projections run between chunks")
        model = cfg.model
        student = "a tanh MLP student with biases and a linear output (model=mlp model.activation=tanh " \
                  "model.bias=true model.output_activation=linear)"
        check(isinstance(parts.model, MLP), "model.name", model.get("name"), f"the task needs {student}")
        check(list(model.sizes) == sizes, "model.sizes", list(model.sizes), f"must equal task.sizes {sizes}")
        check(model.bias and model.activation == "tanh" and model.output_activation == "linear", "model.activation",
              model.activation, f"the task needs {student}")

    def io(self) -> tuple[int, int]:
        return int(self.group_cfg.sizes[0]), int(self.group_cfg.sizes[-1])

    def n_train(self) -> int:
        return int(self.group_cfg.n_train)

    def teacher(self) -> dict[str, np.ndarray]:
        cfg = self.group_cfg
        return make_teacher(list(cfg.sizes), cfg.teacher_seed, cfg.generic_gap)

    def build(self, dtype) -> Task:
        cfg = self.group_cfg
        teacher = self.teacher()
        rng = np.random.default_rng(cfg.data_seed)

        def data(n_points):
            u = rng.uniform(-1.0, 1.0, size=(n_points, cfg.sizes[0]))
            y = teacher_forward(teacher, u)
            return u[None], (y + cfg.noise_std * rng.standard_normal(y.shape))[None]

        inputs, targets = data(cfg.n_train)
        test_inputs, test_targets = data(cfg.n_test)

        def initial_params(key: jax.Array, hyper: dict, params: dict) -> dict:
            if cfg.student_init == "random":
                return params
            keys = jax.random.split(key, len(teacher))
            return {name: jnp.asarray(value, params[name].dtype) + hyper["init_perturbation"]
                    * jax.random.uniform(k, value.shape, params[name].dtype, -1.0, 1.0)
                    for k, (name, value) in zip(keys, sorted(teacher.items()))}

        def project(epoch: int, params: dict) -> dict | None:
            if not cfg.project_every or epoch == 0 or epoch % cfg.project_every:
                return None
            return make_generic(params, cfg.generic_gap)

        return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)), test_inputs=test_inputs,
                    test_targets=test_targets, initial_params=initial_params, project=project)

    def probes(self, trainer) -> list:
        teacher = self.teacher()

        def distances(params: dict) -> dict[str, float]:
            return {"raw_distance": raw_distance(params, teacher), "aligned_distance": aligned_distance(params, teacher)}

        return [ParamMetricsProbe(distances, trainer.steps_per_epoch, track=bool(self.cfg.analysis.enabled),
                                  rebound=DISTANCES)]

    def run_figures(self):
        from ..plots.rebound import distance_figure

        return {"distance.png": distance_figure}

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        from ..plots.rebound import noise_outputs

        return noise_outputs(runs, DISTANCES, out)
