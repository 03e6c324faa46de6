"""The ℓ2-distance rebound study: students start at or near a tanh teacher of their own shape.

Source: L0-and-behold/probabilistic-nonlinear-cs, folder l2-experiments/ (l2_vs_epoch.jl, l2_vs_noise_level.jl,
src/Teacher_nn/, src/Metrics/distances.jl, src/NonDegenerateProjection.jl). Each choice below names the
source's option first; the others are this tool's earlier definitions, kept under their own names.

Teacher: an MLP of `task.sizes` ([2, 25, 25, 1]) with biases, tanh hidden layers and a linear output, drawn
from `task.teacher_seed` in the run's precision:
  teacher_init  glorot_uniform: W ~ U[-a, a], a = √(6/(fan_in + fan_out)), drawn in float32, b = 0 (the
                source's get_random_teacher: Flux's glorot_uniform and Dense's zero biases);
                glorot_normal: W ~ N(0, 2/(fan_in + fan_out)), b ~ N(0, 0.1²) (earlier).
  projection    eps_nudge: the source's project_onto_F (analysis/teacher_distance.source_projection: every
                parameter moved by at most ~10 machine epsilons, relative); the teacher takes it once (in
                get_random_teacher) and once more when the student is projected (the script's
                `if projection_frequency != 0`);
                make_generic: margins `generic_gap` (teacher_distance.make_generic), the teacher made generic
                once (earlier).
Data (task.data), n_train points then n_test from `task.data_seed`, targets y = teacher(u) + σ ε, σ =
`task.noise_std`:
  source        u = 2·U[0, 1) - 1 and ε ~ N(0, 1) drawn in float32 (the source's get_dataset); teacher(u) is the
                student's own forward map (maths.mlp_apply) in the run's precision, so the teacher is a zero of
                the loss to the bit;
  numpy_float64 u ~ U[-1, 1]^d and ε in float64, teacher(u) in float64 NumPy, rounded to the run's precision (earlier).
Task loss: MSE, the mean over the points (Flux's mse), full batch.

Student start (`initial_params`): with `task.student_init: copy` the teacher plus δ·ε per parameter, δ =
`task.init_perturbation` (traced: a sweep over δ compiles once), ε ~ N(0, 1) with `perturbation: gaussian` (the
source's randn) or U[-1, 1] with `uniform` (earlier); with `random`, the model's own init. The teacher reaches
the compiled start through hyper["task"]["teacher"], so runs with other teachers (teacher_seed is a data key)
train as one program. Projection of the student with `task.project_every` n > 0, on the host after the epoch's
step and before its sample: `projection_schedule: divisors` at every epoch e with n % e == 0 (the script's
`projection_frequency % epoch == 0`: n = 1 projects after epoch 1 only), `multiples` at every e with e % n == 0.

Parameter metrics (every epoch with analysis on): `raw_distance` Σ(θ_s - θ_t)² over all weights and biases (the
source's l2_distance: squared, no alignment) and `aligned_distance`, the same after a greedy layer-by-layer
Hungarian alignment of hidden units (permutations and sign flips; not the joint optimum over all alignments).
The aggregator draws the source's figure over a sweep: each run's curve over epochs 1..E min-max normalised,
then averaged over runs (plots/rebound.py).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from ..analysis.teacher_distance import aligned_distance, make_generic, raw_distance, source_projection
from ..components import TaskComponent, check, non_negative, one_of, positive
from ..contracts import Task
from ..maths import ACTIVATIONS, init_std, mlp_apply
from ..probes import ParamMetricsProbe

DISTANCES = ("raw_distance", "aligned_distance")
TEACHER_INITS = ("glorot_uniform", "glorot_normal")
PERTURBATIONS = ("gaussian", "uniform")
PROJECTIONS = ("eps_nudge", "make_generic")
SCHEDULES = ("divisors", "multiples")
DATA = ("source", "numpy_float64")


@dataclass
class MLPTeacherConfig:
    _target_: str = "rnn_sparsity.tasks.mlp_teacher.MLPTeacher"
    name: str = "mlp_teacher"
    sizes: list[int] = field(default_factory=lambda: [2, 25, 25, 1])  # the teacher's widths (= the student's)
    n_train: int = 10000  # training points (full batch)
    n_test: int = 1000
    noise_std: float = 0.0  # σ of Gaussian noise added to the targets
    data: str = "source"  # source (float32 draws, targets by the student's module) | numpy_float64 (earlier)
    student_init: str = "copy"  # copy (the teacher + δ ε) | random (the model's init)
    init_perturbation: float = 0.0  # δ, traced
    perturbation: str = "gaussian"  # ε ~ N(0, 1) (the source's) | uniform: U[-1, 1] (earlier)
    teacher_init: str = "glorot_uniform"  # U[-a, a] weights, zero biases (the source's) | glorot_normal (earlier)
    teacher_seed: int = 0  # the teacher's draw (a data key: it reaches the compiled start through hyper)
    projection: str = "eps_nudge"  # the source's project_onto_F | make_generic (margins generic_gap, earlier)
    projection_schedule: str = "divisors"  # n % epoch == 0 (the source's condition) | multiples: epoch % n == 0
    project_every: int = 0  # n, the source's projection_frequency (0: never)
    generic_gap: float = 1e-3  # make_generic's δ (min |θ|, |b| gaps, distance from simple ratios)
    data_seed: int = 0


def make_teacher(sizes, seed: int, min_gap: float) -> dict[str, np.ndarray]:
    """The earlier teacher: Glorot-normal weights, biases N(0, 0.1²) (a zero bias is not generic), made
    generic (`make_generic`), float64."""
    return make_generic(glorot_normal_teacher(sizes, seed), min_gap)


def glorot_normal_teacher(sizes, seed: int) -> dict[str, np.ndarray]:
    """Wˡ ~ N(0, 2/(fan_in + fan_out)), bˡ ~ N(0, 0.1²), float64, drawn layer by layer from `seed`."""
    rng = np.random.default_rng(seed)
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"W{l}"] = init_std("tanh", fan_in, fan_out) * rng.standard_normal((fan_out, fan_in))
        params[f"b{l}"] = 0.1 * rng.standard_normal(fan_out)
    return params


def glorot_uniform_teacher(sizes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The source's draw (Flux.glorot_uniform and Dense's zero bias): Wˡ = (u - ½)·√(24/(fan_in + fan_out)),
    u ~ U[0, 1) in float32, i.e. U[-a, a) with a = √(6/(fan_in + fan_out)); bˡ = 0. float32."""
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        scale = np.float32(np.sqrt(24.0 / (fan_in + fan_out)))
        params[f"W{l}"] = (rng.random((fan_out, fan_in), dtype=np.float32) - np.float32(0.5)) * scale
        params[f"b{l}"] = np.zeros(fan_out, np.float32)
    return params


@functools.lru_cache(maxsize=16)
def cached_teacher(sizes: tuple, seed: int, init: str, projection: str, projections: int, gap: float,
                   precision: str) -> dict[str, np.ndarray]:
    """The teacher of a run in its precision (read-only arrays; cached, since the runs of a sweep share it).
    eps_nudge: `projections` passes of the source's projection in the run's float type, from the same
    generator as the draw; make_generic: made generic once (float64), then rounded to the precision."""
    dtype = np.dtype(precision)
    if init == "glorot_normal":
        drawn, rng = glorot_normal_teacher(sizes, seed), np.random.default_rng([seed, 1])
    else:
        rng = np.random.default_rng(seed)
        drawn = glorot_uniform_teacher(sizes, rng)
    if projection == "make_generic":
        teacher = {k: v.astype(dtype) for k, v in make_generic(drawn, gap).items()}
    else:
        teacher = {k: v.astype(dtype) for k, v in drawn.items()}
        for _ in range(projections):
            teacher = source_projection(teacher, rng)
    for value in teacher.values():
        value.flags.writeable = False
    return teacher


def teacher_forward(params: dict, u: np.ndarray) -> np.ndarray:
    """tanh hidden layers, linear output (NumPy, float64)."""
    n = len(params) // 2
    h = u
    for l in range(1, n + 1):
        h = h @ np.asarray(params[f"W{l}"], np.float64).T + np.asarray(params[f"b{l}"], np.float64)
        h = ACTIVATIONS["tanh"].numpy(h) if l < n else h
    return h


def network_outputs(params: dict, inputs: np.ndarray, dtype) -> np.ndarray:
    """The student's forward map (maths.mlp_apply, which the MLP student applies: tanh, linear output,
    biases), jitted, on (1, B, d) inputs in `dtype`: the source computes its targets with the teacher network."""
    apply = jax.jit(mlp_apply, static_argnums=(2, 3))
    return np.asarray(apply({k: jnp.asarray(v, dtype) for k, v in params.items()}, jnp.asarray(inputs, dtype),
                            "tanh", "linear"))


def projection_epochs(every: int, schedule: str, epoch: int) -> bool:
    """Whether the student is projected after `epoch` (≥ 1): divisors, n % epoch == 0 (the source's
    `projection_frequency % epoch == 0`, which fires at epoch 1 only for n = 1); multiples, epoch % n == 0."""
    if not every or epoch <= 0:
        return False
    return every % epoch == 0 if schedule == "divisors" else epoch % every == 0


def params_seed(epoch: int, params: dict) -> list[int]:
    """A seed from the parameters' bytes and the epoch: the source draws its nudges from an unseeded
    generator; this one is reproducible and the same whether a run trains alone or in a vmapped batch."""
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(params[k]).tobytes() for k in sorted(params)))
    return [int(epoch), int.from_bytes(digest.digest()[:8], "little")]


class DistanceProbe(ParamMetricsProbe):
    """ParamMetricsProbe plus <name>_last, each distance at the last sample (the source records the
    distance after the last epoch; <name> itself is that of the lowest-loss parameters)."""

    def metrics(self):
        out = super().metrics()
        if self.rows:
            out.update({f"{name}_last": float(value) for name, value in self.rows[-1].items()})
        return out


class MLPTeacher(TaskComponent):
    Config = MLPTeacherConfig
    layout = "static"
    traced = ("init_perturbation",)
    data_keys = ("noise_std", "data_seed", "teacher_seed")
    summary_metrics = ("test_loss", *DISTANCES, "raw_distance_last", "raw_distance_rebound")
    unplotted_metrics = tuple(f"{d}_min_epoch" for d in DISTANCES)

    def check(self, parts) -> None:
        cfg, task = self.cfg, self.group_cfg
        sizes = list(task.sizes)
        check(len(sizes) >= 3 and all(w > 0 for w in sizes), "task.sizes", sizes,
              "must list input, at least one hidden and the output width, all > 0")
        for key in ("task.n_train", "task.n_test", "task.generic_gap"):
            positive(cfg, key)
        for key in ("task.noise_std", "task.init_perturbation", "task.teacher_seed", "task.data_seed"):
            non_negative(cfg, key)
        for key, options in (("task.student_init", ("copy", "random")), ("task.data", DATA),
                             ("task.perturbation", PERTURBATIONS), ("task.teacher_init", TEACHER_INITS),
                             ("task.projection", PROJECTIONS), ("task.projection_schedule", SCHEDULES)):
            one_of(cfg, key, options)
        every = task.project_every
        check(every >= 0, "task.project_every", every, "must be >= 0 (0: never)")
        chunk = cfg.analysis.eig_every  # projections run between training chunks of eig_every steps (epochs)
        if every and task.projection_schedule == "multiples":
            check(every % chunk == 0, "task.project_every", every,
                  f"must be a multiple of analysis.eig_every ({chunk}): projections run between chunks")
        if every and task.projection_schedule == "divisors":
            check(chunk == 1, "analysis.eig_every", chunk, "must be 1 with task.projection_schedule=divisors "
                  "(it projects after epoch 1, and projections run between chunks)")
        model = cfg.model
        student = "a tanh MLP student with biases and a linear output (model=mlp model.activation=tanh " \
                  "model.bias=true model.output_activation=linear)"
        mlp_keys = ("sizes", "bias", "activation", "output_activation")  # the task reads the student's config by them
        check(all(OmegaConf.select(cfg, f"model.{key}") is not None for key in mlp_keys), "model.name",
              model.get("name"), f"the task needs {student}")
        check(list(model.sizes) == sizes, "model.sizes", list(model.sizes), f"must equal task.sizes {sizes}")
        check(model.bias and model.activation == "tanh" and model.output_activation == "linear", "model.activation",
              model.activation, f"the task needs {student}")

    def io(self) -> tuple[int, int]:
        return int(self.group_cfg.sizes[0]), int(self.group_cfg.sizes[-1])

    def n_train(self) -> int:
        return int(self.group_cfg.n_train)

    def teacher(self) -> dict[str, np.ndarray]:
        """The run's teacher, in its precision."""
        c = self.group_cfg
        projections = 1 + bool(c.project_every)  # get_random_teacher's, and the script's when it projects
        return cached_teacher(tuple(c.sizes), int(c.teacher_seed), c.teacher_init, c.projection, projections,
                              float(c.generic_gap), str(self.cfg.precision))

    def hyper(self, dtype) -> dict:
        """δ, and the teacher's parameters: the start copies them inside the compiled init."""
        return {**super().hyper(dtype), "teacher": {k: jnp.asarray(v, dtype) for k, v in self.teacher().items()}}

    def data(self, dtype) -> tuple[np.ndarray, ...]:
        """(inputs, targets, test inputs, test targets), each (1, B, width)."""
        cfg, teacher = self.group_cfg, self.teacher()
        rng = np.random.default_rng(cfg.data_seed)
        d_in, d_out = cfg.sizes[0], cfg.sizes[-1]
        if cfg.data == "numpy_float64":
            draws = []
            for n in (cfg.n_train, cfg.n_test):
                u = rng.uniform(-1.0, 1.0, size=(n, d_in))
                y = teacher_forward(teacher, u)
                draws += [u[None], (y + cfg.noise_std * rng.standard_normal(y.shape))[None]]
            return tuple(draws)
        draws = []
        for n in (cfg.n_train, cfg.n_test):  # inputs, then the noise, in float32 as the source draws them
            u = np.float32(2) * rng.random((n, d_in), dtype=np.float32) - np.float32(1)
            noise = np.float32(cfg.noise_std) * rng.standard_normal((n, d_out), dtype=np.float32)
            signal = network_outputs(teacher, u[None], dtype)
            draws += [u[None].astype(dtype), (signal + noise[None].astype(dtype)).astype(dtype)]
        return tuple(draws)

    def build(self, dtype) -> Task:
        cfg = self.group_cfg
        inputs, targets, test_inputs, test_targets = self.data(dtype)
        names = sorted(self.teacher())

        def initial_params(key: jax.Array, hyper: dict, params: dict) -> dict:
            if cfg.student_init == "random":
                return params
            check(sorted(params) == names, "model", sorted(params), f"the student copies the teacher: its "
                  f"parameters must be the teacher's {', '.join(names)}")
            keys = jax.random.split(key, len(names))
            draw = jax.random.normal if cfg.perturbation == "gaussian" else \
                functools.partial(jax.random.uniform, minval=-1.0, maxval=1.0)
            return {name: hyper["teacher"][name].astype(params[name].dtype) + hyper["init_perturbation"]
                    * draw(k, params[name].shape, params[name].dtype) for k, name in zip(keys, names)}

        def project(epoch: int, params: dict) -> dict | None:
            if not projection_epochs(cfg.project_every, cfg.projection_schedule, epoch):
                return None
            if cfg.projection == "make_generic":
                return make_generic(params, cfg.generic_gap)
            return source_projection(params, np.random.default_rng(params_seed(epoch, params)))

        return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)), test_inputs=test_inputs,
                    test_targets=test_targets, initial_params=initial_params, project=project)

    def probes(self, trainer) -> list:
        teacher = self.teacher()

        def distances(params: dict) -> dict[str, float]:
            return {"raw_distance": raw_distance(params, teacher),
                    "aligned_distance": aligned_distance(params, teacher)}

        return [DistanceProbe(distances, trainer.steps_per_epoch, track=bool(self.cfg.analysis.enabled),
                              rebound=DISTANCES)]

    def run_figures(self):
        from ..plots.rebound import distance_figure

        return {"distance.png": distance_figure}

    @classmethod
    def sweep_outputs(cls, runs, keys, out) -> list:
        from ..plots.rebound import noise_outputs, rebound_outputs

        return rebound_outputs(runs, keys, out) + noise_outputs(runs, ("raw_distance_last", *DISTANCES), out)
