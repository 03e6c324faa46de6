"""What the pieces of a run hand each other: plain records of pure functions and arrays.

Models, tasks, regularizers, probes and analysis meet only through these records, so that none imports
another. The components (components.py) that build them from a config live in models/, tasks/,
regularizers/, optimizers.py and probes.py.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np

from .maths import weighted_mse

Params = dict[str, Any]


class Dynamics(NamedTuple):
    """A recurrent model's state dynamics under a static input u, stated once for every analysis.

    kind "flow": a vector field F(h, u) = τ ḣ (continuous time). Fixed points solve F = 0; the
        linearisation DF is stable where every Re λ < 0; a complex pair oscillates at |Im λ| / τ rad per
        time unit (τ = `time_constant`).
    kind "map": a state map h' = f(h, u) (discrete time). Fixed points solve f(h) = h; the linearisation
        ∂f/∂h is stable where every |λ| < 1; a complex pair turns by |arg λ| per step, |arg λ| / dt rad
        per time unit (dt = `time_constant`, the time one step stands for).
    field(params, h, u) -> F(h, u) or f(h, u): h the flat state (N,) (an LSTM's (c, h) concatenated,
        as the model's apply returns its states), u (n_in,).
    jacobian(params, h, u) -> ∂field/∂h (N, N), analytic where the model has one; None: jax.jacfwd.
    rate_field(params, u) -> (J, c) for a flow of the rate-network form F(x) = -x + J tanh(x) + c
        (maths.rate_velocity), which the finder solves on its fast path (O(N²) normal equations);
        None: the general path (the Jacobian formed per step).
    readout(params, h, u) -> the outputs (n_out,) the network gives in state h under input u (at a fixed
        point: what it reports there, e.g. a flip-flop memory's corner); None: none.
    roots(params, h, u) -> a residual (N,) with exactly the fixed points as roots, better conditioned, that
        the finder solves in place of F or f(h) − h, with ‖roots‖ ≤ ‖f(h) − h‖ wherever both are small
        (so a point accepted at ‖roots‖ < tol is a fixed point to tol). A GRU's n(h) − h: f(h) − h =
        (1 − z)(n(h) − h) with 1 − z > 0, whose valleys where an update gate saturates trap a search on
        f(h) − h far from every fixed point. None: the field itself. Residuals are reported of the field.
    """

    kind: str
    field: Callable[[Params, Any, Any], Any]
    time_constant: float = 1.0
    jacobian: Callable[[Params, Any, Any], Any] | None = None
    rate_field: Callable[[Params, Any], tuple[Any, Any]] | None = None
    readout: Callable[[Params, Any, Any], Any] | None = None
    roots: Callable[[Params, Any, Any], Any] | None = None


class Model(NamedTuple):
    """A model as the training code sees it: pure functions over a flat parameter dict.

    init(key, hyper) -> (params, mask): mask has the structure of params, 1 where an entry is free,
        0 where structural sparsity pins it at exactly 0. `hyper` holds the model's traced values
        (e.g. sparsity s, gain), so a sweep over them needs no recompilation.
    apply(params, inputs) -> (outputs, states) over time-major inputs (T, B, n_in).
    recurrent(params) -> the effective recurrent matrix whose spectrum is tracked (None: none).
    masked: names of structurally masked parameters: the only ones whose mask may hold 0s. With none
        (an empty tuple) training skips the mask altogether (no multiplies by 1 in the forward pass and
        after every update); with some, every parameter is multiplied by its mask.
    rates(states) -> the firing rates of those states (None: no rates); `regularizer.activity`
        penalises their mean square.
    dynamics: its state dynamics under a static input (`Dynamics`: what the fixed-point analysis,
        slow points, linearisations and PCA work on); None: a model without recurrent state.
    weights: the names of the parameters that are its weights (what a regularizer acts on unless told
        otherwise: `regularizer.targets` null); None: every parameter of two or more dimensions
        (`weight_matrices`: the weight matrices and kernels of a Flax module, not its biases).
    """

    init: Callable[..., tuple[Params, Params]]
    apply: Callable[..., tuple[Any, Any]]
    recurrent: Callable[[Params], Any] = lambda params: None
    masked: tuple[str, ...] = ()
    rates: Callable[[Any], Any] | None = None
    dynamics: Dynamics | None = None
    weights: tuple[str, ...] | None = None

    def weight_names(self, param_shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, ...]:
        """The model's weights among parameters of these shapes (`weights`, or `weight_matrices`)."""
        return self.weights if self.weights is not None else weight_matrices(param_shapes)


def weight_matrices(param_shapes: Mapping[str, tuple[int, ...]]) -> tuple[str, ...]:
    """The parameters of two or more dimensions, in their order: weight matrices and convolution kernels,
    not biases or scales (one dimension)."""
    return tuple(name for name, shape in param_shapes.items() if len(shape) >= 2)


def connectivity_outputs(J: Any, w: Any) -> Any:
    """The outputs of a model for a `connectivity` task (no data; the task scores the network itself):
    its connectivity J (N, N) and readout w (N,) as one array [J | w] of shape (1, N, N + 1)."""
    return jnp.concatenate([J, w[:, None]], axis=1)[None]


def split_connectivity(outputs: Any) -> tuple[Any, Any]:
    """(J, w) from the (1, N, N + 1) outputs of `connectivity_outputs`."""
    return outputs[0, :, :-1], outputs[0, :, -1]


class Conditions(NamedTuple):
    """The static inputs under which a dynamical task's fixed points are sought, and where its trials
    show the network's dynamics under them.

    inputs (C, n_in): one static input per condition. trial_condition (B,): the condition of each trial
    (batch entry). window: the steps of a trial that form its trajectory under its condition's input
    (the sine task's free-running phase). anchor_step: the step whose state ends the drive phase and
    starts the trajectory (None when a task has none). omegas (C,): the target angular frequency per
    condition (None for non-oscillatory tasks).
    """

    inputs: np.ndarray
    trial_condition: np.ndarray
    window: slice
    anchor_step: int | None = None
    omegas: np.ndarray | None = None


def _no_metrics(outputs) -> dict:
    return {}


class Task(NamedTuple):
    """Data and scoring of one task, all samples as one batch.

    inputs (T, B, n_in), targets (T, B, n_out) and loss_weights (T, 1, 1) are NumPy arrays.
    loss(outputs, targets, loss_weights) -> the task loss (jnp; the weighted MSE unless said);
    metrics(outputs) -> flat dict of task metrics of the trained network's outputs (T, B, n_out);
    arrays(outputs) -> named arrays worth keeping in analysis.npz.
    Optional parts: held-out data (test_loss, and test_accuracy with a score); conditions for the
    fixed-point analysis; initial_params(key, hyper, params) -> the start (a copy of a teacher, say);
    project(epoch, params) -> params or None, a host-side map applied between training chunks.
    """

    inputs: np.ndarray
    targets: np.ndarray
    loss_weights: np.ndarray
    loss: Callable[..., Any] = weighted_mse
    metrics: Callable[[np.ndarray], dict[str, float]] = _no_metrics
    arrays: Callable[[np.ndarray], dict[str, np.ndarray]] = _no_metrics
    test_inputs: np.ndarray | None = None
    test_targets: np.ndarray | None = None
    score: Callable[..., Any] | None = None  # (outputs, targets) -> accuracy, for classification
    conditions: Conditions | None = None
    initial_params: Callable[..., Params] | None = None
    project: Callable[[int, Params], Params | None] | None = None

    @property
    def n_inputs(self) -> int:
        return self.inputs.shape[-1]

    @property
    def n_outputs(self) -> int:
        return self.targets.shape[-1]


class Regularizer(NamedTuple):
    """penalty(params, hyper) -> R(θ); prox(params, hyper, η) -> prox_{ηR}(params) (η a scalar or a
    pytree of per-entry step sizes); `targets` names the parameters it acts on. `hyper` is the
    regularizer's own traced values (λ = hyper["strength"], ...). A regularizer component builds it
    from the model's parameter shapes and the model's weights (Model.weight_names), which it targets
    where `regularizer.targets` is null."""

    penalty: Callable[[Params, dict], Any]
    prox: Callable[[Params, dict, Any], Params]
    targets: tuple[str, ...]
    # κ(hyper): the weight of a penalty on the network's state, κ · mean squared rate over the loss-weighted
    # steps (models with rates); None: the regularizer has none
    state_weight: Callable[[dict], Any] | None = None


class Pruner(NamedTuple):
    """How a run's masks change while it trains (the `pruner` group); `hyper` is the pruner's own traced
    values (its target sparsity, ...). Masks are 0/1 arrays; a pruned entry is 0 in θ and in M.

    targets: the parameters it prunes; their masks join the structural mask M (all 1 where the model
        masks nothing), so the forward pass sees θ ⊙ M and every update keeps θ ⊙ M.
    init(key, params, masks, hyper) -> its state: a dict of arrays it carries through training in the
        TrainState (so it is checkpointed, resumed and vmapped with the run).
    due(clock) -> bool array: whether it acts before step `clock` of the schedule (the schedule's step,
        every member's: unbatched under vmap, so `act` runs under a real conditional); None: never.
    act(clock, params, masks, state, hyper, key) -> (masks, state): the targets' masks after it acts (a
        prune turns 1s to 0; masks left as they were: the trainer then changes nothing else).
    blocks: the trainings of a run, in order, as (kind, round): ("train", 0) alone unless it retrains
        (a lottery run: ("round", r) for each round, ("reinit", r) for a control round).
    begin(block, trained, initial, masks, state, hyper, fresh) -> (params, masks, state): the start of
        block b >= 1, from `trained` (block b−1's best parameters), `initial` (θ0) and `fresh(i)` (the
        i-th fresh draw of θ0).
    results(state, best, masks) -> [(params, masks)] of every block, the last one's (best, masks).
    """

    targets: tuple[str, ...] = ()
    init: Callable[..., dict] = lambda key, params, masks, hyper: {}
    due: Callable[[Any], Any] | None = None
    act: Callable[..., tuple[Params, dict]] | None = None
    blocks: tuple[tuple[str, int], ...] = (("train", 0),)
    begin: Callable[..., tuple[Params, Params, dict]] | None = None
    results: Callable[..., list[tuple[Params, Params]]] | None = None


class Probe:
    """What runs between training chunks and after training.

    sample(step, params) is called before the first chunk and after each (params: the current,
    masked parameters, finite); finish(params, completed) once with the best (masked, finite)
    parameters of a fit, `completed` False when the run diverged;
    arrays() -> what joins analysis.npz; metrics() -> what joins metrics.json. Every method is
    optional: the defaults do nothing. `checkpointed` names the attributes that sample() accumulates
    (arrays, numbers, strings, lists/tuples/dicts of them, NumPy Generators): a checkpoint inside a run stores them and a resumed run restores them (checkpoints.py).
    """

    checkpointed: tuple[str, ...] = ()

    def sample(self, step: int, params: Params) -> None:
        pass

    def finish(self, params: Params, completed: bool) -> None:
        pass

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def metrics(self) -> dict[str, Any]:
        return {}
