"""Optimizer stages: optax chains (and one proximal solver) behind one (init, step) interface.

A run is a sequence of stages (Adam, then L-BFGS, say). Each stage minimises the objective

    f(θ) = task_loss(θ ⊙ M) + R(θ)

with M the structural mask: in `penalty` mode the gradient step sees all of f; in `proximal` mode it
sees only the task loss and R enters through prox_{ηR} after each update, η being the stage's own
step size per entry (lr for SGD, lr / (sqrt(v̂) + ε) for Adam: the prox in the optimiser's metric).
After every update θ ← θ ⊙ M, so pruned entries stay exactly 0.

Stage.step(params, opt_state, hyper, objective) -> (new_params, new_opt_state, loss, task, reg, |g|),
where the losses are those of the params before the update (f, task loss, R).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .proximal import fista

Params = dict[str, Any]


class Objective(NamedTuple):
    """What a stage minimises. task(θ) and penalty(θ) are scalars; prox(θ, η) = prox_{ηR}(θ)."""

    task: Callable[[Params], jax.Array]
    penalty: Callable[[Params], jax.Array]
    prox: Callable[[Params, Any], Params]
    mask: Params
    proximal: bool

    def smooth(self, params: Params) -> jax.Array:
        """The part that gradient steps see: f in penalty mode, the task loss in proximal mode."""
        task = self.task(params)
        return task if self.proximal else task + self.penalty(params)

    def project(self, params: Params) -> Params:
        return jax.tree.map(lambda p, m: p * m, params, self.mask)


class Stage(NamedTuple):
    name: str  # recorded in history.parquet's `stage` column
    steps: int
    init: Callable[[Params, dict, Objective], Any]
    step: Callable[[Params, Any, dict, Objective], tuple]


def global_norm(tree) -> jax.Array:
    """sqrt(Σ θ²) over all leaves of a pytree."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- first-order stages
def _first_order(name: str, steps: int, transform: Callable[[dict], optax.GradientTransformation],
                 step_sizes: Callable[[Any, dict, Params], Any]) -> Stage:
    """A stage from an optax transform built from the (traced) hyper-values, e.g. optax.adam(lr)."""

    def init(params, hyper, objective):
        return transform(hyper).init(params)

    def step(params, opt_state, hyper, objective: Objective):
        smooth, grads = jax.value_and_grad(objective.smooth)(params)
        updates, opt_state = transform(hyper).update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        if objective.proximal:
            new = objective.prox(new, step_sizes(opt_state, hyper, params))
        reg = objective.penalty(params)
        task = smooth if objective.proximal else smooth - reg
        return objective.project(new), opt_state, task + reg, task, reg, global_norm(grads)

    return Stage(name, steps, init, step)


ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam_stage(steps: int) -> Stage:
    """Adam: θ ← θ - lr · m̂ / (sqrt(v̂) + ε); per-entry step size for the prox lr / (sqrt(v̂) + ε)."""

    def transform(hyper):
        return optax.chain(optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS), optax.scale(-hyper["lr"]))

    def step_sizes(opt_state, hyper, params):
        adam = opt_state[0]
        correction = 1 - ADAM_B2 ** adam.count.astype(jnp.result_type(hyper["lr"]))
        return jax.tree.map(lambda nu: hyper["lr"] / (jnp.sqrt(nu / correction) + ADAM_EPS), adam.nu)

    return _first_order("adam", steps, transform, step_sizes)


def sgd_stage(steps: int) -> Stage:
    """Heavy-ball SGD: v ← μ v + g, θ ← θ - lr · v; step size for the prox lr."""

    def transform(hyper):
        return optax.chain(optax.trace(decay=hyper["momentum"]), optax.scale(-hyper["lr"]))

    return _first_order("sgd", steps, transform, lambda opt_state, hyper, params: hyper["lr"])


# ------------------------------------------------------------------------------ second-order stages
def lbfgs_stage(steps: int, memory_size: int = 10) -> Stage:
    """L-BFGS (optax.lbfgs) with the zoom line search (strong Wolfe conditions) on f."""
    transform = optax.lbfgs(memory_size=memory_size)

    def init(params, hyper, objective):
        return transform.init(params)

    def step(params, opt_state, hyper, objective: Objective):
        value, grads = optax.value_and_grad_from_state(objective.smooth)(params, state=opt_state)
        updates, opt_state = transform.update(grads, opt_state, params, value=value, grad=grads,
                                              value_fn=objective.smooth)
        reg = objective.penalty(params)
        new = objective.project(optax.apply_updates(params, updates))
        return new, opt_state, value, value - reg, reg, global_norm(grads)

    return Stage("lbfgs", steps, init, step)


def fista_stage(steps: int) -> Stage:
    """FISTA on task(θ) + R(θ): the second stage in proximal mode (jaxopt, see proximal.py)."""

    def solver(objective: Objective):
        def prox(params, hyper, eta):
            return objective.project(objective.prox(params, eta))

        return fista(objective.task, prox)

    def init(params, hyper, objective):
        return solver(objective)[0](params, None)

    def step(params, opt_state, hyper, objective: Objective):
        task, grads = jax.value_and_grad(objective.task)(params)
        reg = objective.penalty(params)
        new, opt_state = solver(objective)[1](params, opt_state, None)
        return new, opt_state, task + reg, task, reg, global_norm(grads)

    return Stage("fista", steps, init, step)


def make_stages(cfg, proximal: bool) -> list[Stage]:
    """The stage sequence of `optimizer=<name>`; in proximal mode L-BFGS is replaced by FISTA."""
    second = fista_stage if proximal else lbfgs_stage
    stages = {
        "adam": lambda: [adam_stage(cfg.steps)],
        "sgd": lambda: [sgd_stage(cfg.steps)],
        "lbfgs": lambda: [second(cfg.steps)],
        "adam_lbfgs": lambda: [adam_stage(cfg.steps)] + ([second(cfg.lbfgs_steps)] if cfg.lbfgs_steps else []),
    }
    return stages[cfg.name]()
