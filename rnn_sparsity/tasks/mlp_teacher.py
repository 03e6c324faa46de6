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

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.teacher_distance import aligned_distance, make_generic, raw_distance
from ..models.mlp import init_std
from . import Task


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
        h = np.tanh(h) if l < n else h
    return h


def make_task(cfg, model_cfg) -> Task:
    teacher = make_teacher(list(cfg.sizes), cfg.teacher_seed, cfg.generic_gap)
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

    def param_metrics(params: dict) -> dict[str, float]:
        return {"raw_distance": raw_distance(params, teacher), "aligned_distance": aligned_distance(params, teacher)}

    return Task(inputs=inputs, targets=targets, loss_weights=np.ones((1, 1, 1)), metrics=lambda outputs: {},
                arrays=lambda outputs: {}, test_inputs=test_inputs, test_targets=test_targets,
                param_metrics=param_metrics, initial_params=initial_params, track_param_metrics=True,
                project=lambda params: make_generic(params, cfg.generic_gap))
