"""Optimizer stages: optax chains (and one proximal solver) behind one (init, step) interface.

A run is a sequence of stages (Adam, then L-BFGS, say). Each stage minimises the objective

    f(θ) = task_loss(θ ⊙ M) + R(θ)

with M the structural mask: in `penalty` mode the gradient step sees all of f; in `proximal` mode it
sees only the task loss and R enters through prox_{ηR} after each update, η being the stage's own
step size per entry (lr for SGD, lr / (sqrt(v̂) + ε) for Adam: the prox in the optimiser's metric).
After every update θ ← θ ⊙ M, so pruned entries stay exactly 0.

Stage.step(params, opt_state, hyper, objective) -> (new_params, new_opt_state, loss, task, reg, |g|),
where the losses are those of the params before the update (f, task loss, R) and `hyper` holds the
optimizer's traced values (lr, momentum, ...). The optimizer components (`optimizer=adam|sgd|lbfgs|
adam_lbfgs`) share one schema; each says which stages it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .components import OptimizerComponent, check, non_negative, one_of, positive, variant
from .proximal import fista

Params = dict[str, Any]


class Objective(NamedTuple):
    """What a stage minimises. task(θ) and penalty(θ) are scalars; prox(θ, η) = prox_{ηR}(θ)."""

    task: Callable[[Params], jax.Array]
    penalty: Callable[[Params], jax.Array]
    prox: Callable[[Params, Any], Params]
    mask: Params  # M of the parameters it names (a model's `masked` ones); the others are free
    proximal: bool

    def smooth(self, params: Params) -> jax.Array:
        """The part that gradient steps see: f in penalty mode, the task loss in proximal mode."""
        task = self.task(params)
        return task if self.proximal else task + self.penalty(params)

    def project(self, params: Params) -> Params:
        return {name: value * self.mask[name] if name in self.mask else value for name, value in params.items()}


class Stage(NamedTuple):
    """One stage of a run. What the trainer asks of it beyond init and step is optional: `runs(best loss,
    hyper)` whether it runs at all (None: always), `loss_limit(hyper, initial loss)` the loss above which
    a run diverges (None: only a non-finite loss), `gradient_tol` the hyper key of a tolerance at which it
    stops (‖∇f‖ <= it, > 0). `hyper` is the optimizer's traced values."""
    name: str  # recorded in history.parquet's `stage` column
    steps: int
    init: Callable[[Params, dict, Objective], Any]
    step: Callable[[Params, Any, dict, Objective], tuple]
    gradient_tol: str | None = None
    runs: Callable[[jax.Array, dict], jax.Array] | None = None
    loss_limit: Callable[[dict, jax.Array], jax.Array] | None = None


def above_threshold(best_loss: jax.Array, hyper: dict) -> jax.Array:
    """A later stage runs while the best loss so far is above optimizer.loss_threshold (the seed's rule
    for L-BFGS after Adam)."""
    return best_loss > hyper["loss_threshold"]


def divergence_limit(hyper: dict, initial_loss: jax.Array) -> jax.Array:
    """divergence_factor x the initial loss; none (inf) for a run that starts at loss 0, where any
    progress would otherwise read as divergence."""
    return jnp.where(initial_loss > 0, hyper["divergence_factor"] * initial_loss, jnp.inf)


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

    return Stage("lbfgs", steps, init, step, gradient_tol="lbfgs_tol")


def fista_stage(steps: int) -> Stage:
    """FISTA on task(θ) + R(θ): the second stage in proximal mode (see proximal.py)."""

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


@dataclass
class OptimizerConfig:
    _target_: str = "rnn_sparsity.optimizers.AdamLBFGS"
    name: str = "adam_lbfgs"
    lr: float = 1e-3  # learning rate of the first-order stage (traced)
    steps: int = 1000  # steps of the first (or only) stage
    momentum: float = 0.9  # sgd only (traced)
    lbfgs_steps: int = 2000  # adam_lbfgs: iterations of the second stage
    loss_threshold: float = 1e-4  # adam_lbfgs: second stage runs only if the best first-stage loss is above (traced)
    lbfgs_tol: float = 0.0  # an L-BFGS stage stops once the gradient norm is <= this (0: runs all its steps; traced)
    divergence_factor: float = 1e4  # a run diverges when its loss is non-finite or above factor x initial loss (traced)
    batch_size: int = 0  # 0: full batch; else minibatches of this size, reshuffled every epoch
    drop_last: bool = False  # minibatches: drop an epoch's last partial batch (false: keep it, as PyTorch's DataLoader)
    patience: int = 0  # minibatch training: stop after this many epochs without a lower epoch loss (0: never)
    keep: str = "best"  # minibatch training: a run returns the params of its best epoch (lowest epoch loss) | last


class AdamLBFGS(OptimizerComponent):
    """Adam for `steps`, then L-BFGS (FISTA in proximal mode) for `lbfgs_steps` from the best Adam
    parameters, if the best loss is still above `loss_threshold`."""

    Config = OptimizerConfig
    traced = ("lr", "momentum", "loss_threshold", "lbfgs_tol", "divergence_factor")

    def check(self, parts) -> None:
        opt, cfg = self.group_cfg, self.cfg
        for key in ("optimizer.lr", "optimizer.steps", "optimizer.divergence_factor"):
            positive(cfg, key)
        check(0.0 <= opt.momentum < 1.0, "optimizer.momentum", opt.momentum, "must satisfy 0 <= momentum < 1")
        for key in ("optimizer.lbfgs_steps", "optimizer.loss_threshold", "optimizer.lbfgs_tol"):
            non_negative(cfg, key)
        non_negative(cfg, "optimizer.batch_size", " (0: full batch)")
        check(opt.batch_size == 0 or self.minibatches, "optimizer.batch_size", opt.batch_size,
              f"minibatches need a first-order optimizer (sgd, adam), not {opt.name}: set 0 for full batch")
        non_negative(cfg, "optimizer.patience", " (0: no early stopping)")
        one_of(cfg, "optimizer.keep", ("best", "last"))
        check(opt.keep == "best" or opt.batch_size, "optimizer.keep", opt.keep,
              "last needs minibatch training (optimizer.batch_size > 0): full batch returns the lowest-loss params")
        n_train = parts.task.n_train()
        if opt.batch_size and n_train is not None:
            check(opt.batch_size <= n_train, "optimizer.batch_size", opt.batch_size,
                  f"must be <= the number of training samples ({n_train})")

    def stages(self, proximal: bool) -> list[Stage]:
        second = fista_stage if proximal else lbfgs_stage
        lbfgs_steps = self.group_cfg.lbfgs_steps
        stages = [adam_stage(self.group_cfg.steps)]
        if lbfgs_steps:
            stages.append(second(lbfgs_steps)._replace(runs=above_threshold))
        return [stage._replace(loss_limit=divergence_limit) for stage in stages]


class Adam(AdamLBFGS):
    Config = variant(OptimizerConfig, "rnn_sparsity.optimizers.Adam", "adam")
    minibatches = True

    def stages(self, proximal: bool) -> list[Stage]:
        return [adam_stage(self.group_cfg.steps)._replace(loss_limit=divergence_limit)]


class SGD(AdamLBFGS):
    Config = variant(OptimizerConfig, "rnn_sparsity.optimizers.SGD", "sgd")
    minibatches = True

    def stages(self, proximal: bool) -> list[Stage]:
        return [sgd_stage(self.group_cfg.steps)._replace(loss_limit=divergence_limit)]


class LBFGS(AdamLBFGS):
    """L-BFGS for `steps` (FISTA in proximal mode)."""

    Config = variant(OptimizerConfig, "rnn_sparsity.optimizers.LBFGS", "lbfgs")

    def stages(self, proximal: bool) -> list[Stage]:
        return [(fista_stage if proximal else lbfgs_stage)(self.group_cfg.steps)._replace(loss_limit=divergence_limit)]
