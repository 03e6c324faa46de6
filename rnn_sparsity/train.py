"""`make_trainer(parts, dtype)` -> Trainer: training of one static configuration, pure in (key, hyper).

What fixes shapes and compilation (model sizes, task data, step counts, which regularizer and stages)
is closed over; what a sweep varies without changing shapes arrives in `key` and `hyper`, a nested
dict of traced scalars built from what each component declares traced:
hyper = {"model": {"sparsity", "gain"}, "regularizer": {"strength", ...}, "optimizer": {"lr", ...},
"task": {...}, "data": {"inputs", "targets", ...}}: the task's data arrays are arguments too (`task_data`),
so runs that differ only in a task's `data_keys` (a data seed, the noise on the targets) share one
compiled program and train as one batch. `Trainer.init`, `begin_stage` and `run_chunk` are pure and
jit-able; fit.Program compiles them (plain for one run, vmapped for a batch) and fit.fit runs training as
jitted chunks of `lax.scan`, so the host records history, runs the probes, updates a progress bar and
stops on divergence between chunks, never per step.

Divergence is per run, inside the chunk: a step whose loss is NaN/Inf or above divergence_factor times
the initial loss is not applied, the run is frozen and flagged, so a vmapped batch carries on with its
other members and `train` stays pure.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .contracts import Model, Pruner, Regularizer, Task
from .optimizers import Objective, Stage

RECORD_FIELDS = ("step", "loss", "task_loss", "reg_loss", "grad_norm")
DATA_FIELDS = ("inputs", "targets", "test_inputs", "test_targets")  # a Task's arrays that are traced arguments


def task_data(task: Task, dtype) -> dict[str, jax.Array]:
    """hyper["data"]: the task's data arrays (those it has) in the run's dtype."""
    return {name: jnp.asarray(getattr(task, name), dtype) for name in DATA_FIELDS if getattr(task, name) is not None}


class TrainState(NamedTuple):
    params: Any  # current parameters θ
    opt_state: Any  # the current stage's optimizer state (None before the first stage)
    mask: Any  # structural mask M (1 free, 0 pinned at 0)
    init_params: Any
    best_params: Any  # the lowest-loss parameters seen so far: what a run returns
    best_loss: jax.Array
    init_loss: jax.Array
    step: jax.Array  # global step count over all stages
    running: jax.Array  # this stage runs (False: skipped by its threshold, or the run diverged)
    diverged: jax.Array
    diverged_step: jax.Array  # -1 unless diverged
    data_key: jax.Array  # minibatch training: epoch e shuffles with fold_in(data_key, e)
    epoch_loss: jax.Array  # minibatch training: sum of the batch losses of the current epoch
    best_epoch_loss: jax.Array
    stale_epochs: jax.Array  # epochs since the epoch loss last fell
    stopped: jax.Array  # stopped early (patience exhausted)
    pruning: Any  # the pruner's state (contracts.Pruner.init): {} for none
    prune_key: jax.Array  # the pruner's randomness: fold_in(., 0) then the step for `act`, fold_in(., 1) for fresh draws


def mean_squared_rate(rates: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_tb w_tb mean_i r_tbi² / Σ_tb w_tb: the mean squared rate over units, weighted over steps and
    samples like the task loss (rates (T, B, N); weights broadcastable to (T, B, n_out))."""
    w = jnp.broadcast_to(weights[..., :1], rates.shape[:-1] + (1,))
    return jnp.sum(w * jnp.mean(rates ** 2, axis=-1, keepdims=True)) / jnp.sum(w)


def masked(params: dict, mask: dict) -> dict:
    """θ ⊙ M for the parameters `mask` names (a model's `masked` ones); the others as they are."""
    return {name: value * mask[name] if name in mask else value for name, value in params.items()}


def _where(cond, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


class Trainer:
    """Training of one static configuration; every method is pure in (key, hyper).

    Full batch by default. With batch_size > 0 every step sees one minibatch (along axis 1 of the task's
    arrays): epoch e is the permutation `epoch_order(data_key, e)` cut into ⌈n_train / batch_size⌉
    consecutive batches, the last one partial (as PyTorch's DataLoader), or ⌊n_train / batch_size⌋ with
    drop_last; then best_params are those at the end of the epoch with the lowest mean batch loss (the
    epoch loss), and with patience > 0 a run stops once `patience` epochs pass without a lower epoch loss.
    A chunk draws an epoch's permutation and gathers the epoch's data in that order once (when the epoch
    starts, and at the chunk's first step), not per step: a step slices its batch, so its cost does not
    grow with n_train. For that the chunk is told its first step in the schedule (`start`), the same for
    every member of a vmapped batch, so the epoch's work runs under a real conditional there too.

    The pure pieces read the data from hyper["data"], never from `task`, whose other parts (loss
    weights, loss, initial_params, ...) are static. `for_run(task)` is the same trainer (sharing every
    compiled function) holding another run's task: what its host-side code (evaluate, probes) reads.
    """

    def __init__(self, model: Model, task: Task, regularizer: Regularizer, stages: list[Stage],
                 proximal: bool, chunk_steps: int, dtype, batch_size: int = 0, patience: int = 0,
                 drop_last: bool = False, history: str = "steps", keep: str = "best", pruner: Pruner = Pruner()):
        self.model, self.task, self.regularizer, self.pruner = model, task, regularizer, pruner
        # the pruner's blocks (trainings) each run the optimizer's stages; a reinit control's are named apart
        self.base_stages, self.blocks = list(stages), tuple(pruner.blocks)
        self.stages = [stage if kind != "reinit" else stage._replace(name=f"reinit/{stage.name}")
                       for kind, _ in self.blocks for stage in stages]
        # the parameters a mask may zero: the model's structurally masked ones and the pruner's targets
        self.masked_names = tuple(dict.fromkeys([*model.masked, *pruner.targets]))
        self.proximal, self.chunk_steps, self.dtype = proximal, int(chunk_steps), dtype
        self.batch_size, self.patience = int(batch_size), int(patience)
        self.keep_last = keep == "last"  # minibatches: return the last epoch's params, not the best epoch's
        self.n_train = int(task.inputs.shape[1])
        if self.batch_size:
            full, rest = divmod(self.n_train, self.batch_size)
            self.steps_per_epoch = full + (1 if rest and not drop_last else 0)
            self.last_batch = rest if rest and not drop_last else 0  # size of a last partial batch (0: none)
        else:
            self.steps_per_epoch, self.last_batch = 1, 0
        self.history_every = self.steps_per_epoch if history == "epochs" else 1  # records_to_rows' `every`
        self.programs: dict[tuple, Callable] = {}  # fit.Program's jitted pieces, shared by every for_run view
        self.data = task_data(task, dtype)  # this run's hyper["data"]
        # scores of one split, compiled once per trainer (every probe and evaluate of its runs share it)
        self.compiled_scores = jax.jit(self.scores, static_argnums=2)

    def for_run(self, task: Task) -> "Trainer":
        """This trainer, its compiled functions shared, with `task` (same shapes, other data) as its task."""
        view = copy.copy(self)
        view.task, view.data = task, task_data(task, self.dtype)
        return view

    # ------------------------------------------------------------------ objective
    def task_loss(self, params, mask, data=None) -> jax.Array:
        """The task loss on all training samples of `data` (default this run's)."""
        return self.losses(params, mask, data)[0]

    def losses(self, params, mask, data=None, valid=None) -> tuple[jax.Array, jax.Array]:
        """(task loss, activity) on the training samples of `data` (default this run's; a minibatch's
        data in minibatch training): activity is the `mean_squared_rate` of r = model.rates(x) over the
        loss-weighted steps and samples (0 for a model without rates). With `valid` (1 for a real sample,
        0 for padding, along axis 1) both are means over the valid samples of per-sample values: a task's
        loss is a mean over samples, so over a whole batch this is the batch loss."""
        data = self.data if data is None else data
        inputs, targets = data["inputs"], data["targets"]
        weights = jnp.asarray(self.task.loss_weights, self.dtype)
        outputs, states = self.model.apply(masked(params, mask), inputs)
        rates = None if self.model.rates is None else self.model.rates(states)
        if valid is None:
            task = self.task.loss(outputs, targets, weights)
            activity = jnp.zeros_like(task) if rates is None else mean_squared_rate(rates, weights)
            return task, activity

        def per_sample(fn, *arrays):  # fn of arrays whose axis 1 is one sample, for each sample
            return jax.vmap(lambda *a: fn(*(x[:, None] for x in a)), in_axes=1)(*arrays)

        def valid_mean(values):
            return jnp.sum(values * valid) / jnp.sum(valid)

        task = valid_mean(per_sample(lambda o, t: self.task.loss(o, t, weights), outputs, targets))
        activity = jnp.zeros_like(task) if rates is None else \
            valid_mean(per_sample(lambda r: mean_squared_rate(r, weights), rates))
        return task, activity

    def scores(self, params, data: dict, split: str = "train") -> dict[str, jax.Array]:
        """{"loss": task loss, and "accuracy" for a task with a score} of (effective) params on all the
        samples of a split of `data`: "train" or "test" (the task's held-out data)."""
        inputs, targets = (data["inputs"], data["targets"]) if split == "train" else \
            (data["test_inputs"], data["test_targets"])
        outputs, _ = self.model.apply(params, inputs)
        out = {"loss": self.task.loss(outputs, targets, jnp.asarray(self.task.loss_weights, self.dtype))}
        if self.task.score is not None:
            out["accuracy"] = self.task.score(outputs, targets)
        return out

    def score(self, params, split: str = "train") -> dict[str, jax.Array]:
        """`scores` of this run's data, compiled once per trainer."""
        return self.compiled_scores(params, self.data, split)

    def fit_loss(self, params, mask, hyper, batch=None, valid=None) -> jax.Array:
        """The smooth data term that training minimises: task loss + κ · activity (κ the regularizer's
        state_weight: regularizer.activity for the built-in ones, traced), on the run's training data or on a minibatch's `batch` (its inputs and targets, with
        `valid` where it is padded). History's task_loss column records this; metrics.json keeps the two
        apart."""
        task, activity = self.losses(params, mask, hyper["data"] if batch is None else batch, valid)
        if self.regularizer.state_weight is None:  # a regularizer without a state penalty
            return task
        return task + self.regularizer.state_weight(hyper["regularizer"]) * activity

    # ------------------------------------------------------------------ minibatches
    def epoch_order(self, data_key: jax.Array, epoch) -> jax.Array:
        """The samples of epoch `epoch` in the order its batches take them: a fresh permutation of
        0..n_train-1 (from fold_in(data_key, epoch)), padded with 0s to steps_per_epoch · batch_size."""
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), self.n_train)
        pad = self.steps_per_epoch * self.batch_size - self.n_train
        return jnp.concatenate([order, jnp.zeros(pad, order.dtype)]) if pad > 0 else order

    def epoch_data(self, data: dict, data_key: jax.Array, epoch) -> dict:
        """The training inputs and targets of epoch `epoch`, in `epoch_order` along axis 1: gathered once
        an epoch, so that a step slices its batch (a gather per step costs more than the step on a CPU)."""
        order = self.epoch_order(data_key, epoch)
        return {name: data[name][:, order] for name in ("inputs", "targets")}

    def batch_at(self, epoch_data: dict, position) -> tuple[dict, jax.Array | None]:
        """(data, valid) of batch `position` of an epoch's data; valid (1 real, 0 padding) only when the
        epoch ends with a partial batch, else None."""
        batch = {name: jax.lax.dynamic_slice_in_dim(value, position * self.batch_size, self.batch_size, axis=1)
                 for name, value in epoch_data.items()}
        if not self.last_batch:
            return batch, None
        size = jnp.where(position == self.steps_per_epoch - 1, self.last_batch, self.batch_size)
        return batch, (jnp.arange(self.batch_size) < size).astype(self.dtype)

    def batch_indices(self, data_key: jax.Array, step) -> jax.Array:
        """The samples of minibatch `step` (the real ones: a last partial batch is shorter), as indices
        into the training data: what run_chunk's step `step` trains on."""
        epoch, position = step // self.steps_per_epoch, step % self.steps_per_epoch
        order = self.epoch_order(data_key, epoch)
        indices = jax.lax.dynamic_slice(order, (position * self.batch_size,), (self.batch_size,))
        last = self.last_batch and position == self.steps_per_epoch - 1
        return indices[:self.last_batch] if last else indices

    def objective(self, mask, hyper, batch=None, valid=None) -> Objective:
        mask = mask if self.masked_names else {}  # nothing masked nor pruned: no multiplies by 1
        return Objective(task=lambda p: self.fit_loss(p, mask, hyper, batch, valid),
                         penalty=lambda p: self.regularizer.penalty(p, hyper["regularizer"]),
                         prox=lambda p, eta: self.regularizer.prox(p, hyper["regularizer"], eta),
                         mask=mask, proximal=self.proximal)

    def total_loss(self, params, mask, hyper) -> jax.Array:
        return self.fit_loss(params, mask, hyper) + self.regularizer.penalty(params, hyper["regularizer"])

    # ------------------------------------------------------------------ pure pieces
    def init(self, key: jax.Array, hyper: dict) -> TrainState:
        params, mask = self.model.init(key, hyper["model"])
        if self.task.initial_params is not None:  # a task that sets the start (a copy of a teacher, say)
            params = jax.tree.map(jnp.multiply, self.task.initial_params(key, hyper["task"], params), mask)
        loss = self.total_loss(params, mask, hyper)
        false, zero = jnp.array(False), jnp.array(0, jnp.int32)
        prune_key = jax.random.fold_in(key, 2)
        pruning = self.pruner.init(prune_key, params, {t: mask[t] for t in self.pruner.targets}, hyper["pruner"])
        return TrainState(params=params, opt_state=None, mask=mask, init_params=params, best_params=params,
                          best_loss=loss, init_loss=loss, step=zero, running=jnp.array(True),
                          diverged=false, diverged_step=zero - 1, data_key=jax.random.fold_in(key, 1),
                          epoch_loss=jnp.zeros_like(loss), best_epoch_loss=jnp.full_like(loss, jnp.inf),
                          stale_epochs=zero, stopped=false, pruning=pruning, prune_key=prune_key)

    # ------------------------------------------------------------------ pruning
    @staticmethod
    def _restart(s: TrainState, params, mask, pruning) -> TrainState:
        """The state with new parameters and masks (params ⊙ M) and the best-so-far tracking started
        afresh from them: what a run returns is then trained with these masks, never from before them."""
        params = masked(params, mask)
        return s._replace(params=params, mask=mask, pruning=pruning, best_params=params,
                          best_loss=jnp.full_like(s.best_loss, jnp.inf), epoch_loss=jnp.zeros_like(s.epoch_loss),
                          best_epoch_loss=jnp.full_like(s.best_epoch_loss, jnp.inf),
                          stale_epochs=jnp.zeros_like(s.stale_epochs))

    def _act(self, s: TrainState, hyper: dict, clock) -> TrainState:
        """The pruner acts before step `clock` (pruner.due), on a running member only: new masks restart
        the best tracking (`_restart`); a pruner that only takes note (a rewind point) changes its state."""
        targets = self.pruner.targets
        old = {t: s.mask[t] for t in targets}
        key = jax.random.fold_in(jax.random.fold_in(s.prune_key, 0), clock)
        new, pruning = self.pruner.act(clock, s.params, old, s.pruning, hyper["pruner"], key)
        changed = jnp.any(jnp.stack([jnp.any(new[t] != old[t]) for t in targets]))
        noted = s._replace(pruning=pruning)
        pruned = self._restart(s, s.params, {**s.mask, **new}, pruning)
        fields = ("params", "mask", "pruning", "best_params", "best_loss", "epoch_loss", "best_epoch_loss", "stale_epochs")
        after = {f: _where(changed, getattr(pruned, f), getattr(noted, f)) for f in fields}
        return s._replace(**{f: _where(s.running, after[f], getattr(s, f)) for f in fields})

    def _begin_block(self, block: int, s: TrainState, hyper: dict) -> TrainState:
        """Block b >= 1 of a retraining pruner (a lottery round or its control) starts from what the
        pruner says (rewound or fresh parameters, its new masks), as a run of its own: best tracking,
        early stopping and the epoch loss afresh."""
        targets = self.pruner.targets
        fresh_key = jax.random.fold_in(s.prune_key, 1)

        def fresh(i: int):
            return self.model.init(jax.random.fold_in(fresh_key, i), hyper["model"])[0]

        params, new, pruning = self.pruner.begin(block, s.best_params, s.init_params, {t: s.mask[t] for t in targets},
                                                 s.pruning, hyper["pruner"], fresh)
        s = self._restart(s, params, {**s.mask, **new}, pruning)
        return s._replace(stopped=jnp.zeros_like(s.stopped))

    def block_of(self, index: int) -> tuple[int, str, int]:
        """(block, kind, round) of stage `index`."""
        block = index // len(self.base_stages)
        return (block, *self.blocks[block])

    def begin_stage(self, index: int, state: TrainState, hyper: dict) -> TrainState:
        """Start stage `index` from the best parameters so far; it runs only where its `runs` says (the
        optimizer's rule, e.g. L-BFGS after Adam only while the best loss is above a threshold)."""
        stage = self.stages[index]
        block = index // len(self.base_stages)
        if block and index % len(self.base_stages) == 0:
            state = self._begin_block(block, state, hyper)
        objective = self.objective(state.mask, hyper)
        needed = jnp.array(True) if stage.runs is None else stage.runs(state.best_loss, hyper["optimizer"])
        return state._replace(params=state.best_params,
                              opt_state=stage.init(state.best_params, hyper["optimizer"], objective),
                              running=needed & ~state.diverged)

    def chunk_start(self, index: int, position: int) -> int:
        """The schedule's step at which chunk `position` (from 1) of stage `index` begins."""
        return sum(stage.steps for stage in self.stages[:index]) + (position - 1) * self.chunk_steps

    def run_chunk(self, index: int, n_steps: int, state: TrainState, hyper: dict, start=0):
        """n_steps of stage `index` in one lax.scan; returns the state and per-step records.

        `start` = chunk_start(index, position), unbatched under vmap: minibatch i of the chunk is batch
        (start + i) of the schedule, which is the step count of every member still running (minibatches
        come with single-stage optimizers). Being the same for all members, it lets the scan draw an
        epoch's permutation under a real conditional, once per epoch, also in a vmapped batch."""
        stage = self.stages[index]
        limit = jnp.inf if stage.loss_limit is None else stage.loss_limit(hyper["optimizer"], state.init_loss)
        tol = hyper["optimizer"][stage.gradient_tol] if stage.gradient_tol else 0.0  # the stage stops at ‖∇f‖ <= tol
        spe = self.steps_per_epoch

        def one_step(carry, i):
            s, epoch = carry
            clock = start + i
            if self.pruner.due is not None:  # the schedule's clock is unbatched: a real conditional under vmap
                s = jax.lax.cond(self.pruner.due(clock), lambda s: self._act(s, hyper, clock), lambda s: s, s)
            if self.batch_size:
                epoch = jax.lax.cond((i > 0) & (clock % spe == 0),
                                     lambda: self.epoch_data(hyper["data"], s.data_key, clock // spe), lambda: epoch)
                objective = self.objective(s.mask, hyper, *self.batch_at(epoch, clock % spe))
            else:
                objective = self.objective(s.mask, hyper)  # the step's masks: a prune may have changed them
            params, opt_state, loss, task, reg, gnorm = stage.step(s.params, s.opt_state, hyper["optimizer"], objective)
            finite = jnp.isfinite(loss) & jnp.isfinite(gnorm) & (loss <= limit)
            ok = s.running & finite
            newly_diverged = s.running & ~finite
            record = dict(step=s.step, loss=loss, task_loss=task, reg_loss=reg, grad_norm=gnorm,
                          valid=s.running)
            before = s.params  # the params `loss` was evaluated at
            s = s._replace(params=_where(ok, params, s.params), opt_state=_where(ok, opt_state, s.opt_state),
                           diverged=s.diverged | newly_diverged,
                           diverged_step=jnp.where(newly_diverged, s.step, s.diverged_step))
            s = self._track_epochs(s, ok, loss, clock) if self.batch_size else self._track_steps(s, ok, loss, before)
            converged = (tol > 0) & (gnorm <= tol)  # ‖∇f‖ at the params before this step: the step is taken, then the stage ends
            s = s._replace(step=s.step + s.running.astype(jnp.int32), running=ok & ~s.stopped & ~converged)
            return (s, epoch), record

        # minibatches: the data of the epoch the chunk starts in; a placeholder for full batch
        epoch = self.epoch_data(hyper["data"], state.data_key, start // spe) if self.batch_size else {}
        (state, _), records = jax.lax.scan(one_step, (state, epoch), jnp.arange(n_steps))
        return state, records

    @staticmethod
    def _track_steps(s: TrainState, ok, loss, before) -> TrainState:
        """Full batch: the best parameters are the lowest-loss ones seen (`loss` is that of `before`,
        the params before this step's update)."""
        improved = ok & (loss < s.best_loss)
        return s._replace(best_params=_where(improved, before, s.best_params),
                          best_loss=jnp.where(improved, loss, s.best_loss))

    def _track_epochs(self, s: TrainState, ok, loss, clock) -> TrainState:
        """Minibatches: at the end of an epoch compare its mean batch loss with the best so far; keep
        the params of the best epoch; stop after `patience` epochs without improvement. The comparison
        runs under a conditional on the schedule's `clock` (unbatched), so only at an epoch's last step."""
        s = s._replace(epoch_loss=s.epoch_loss + jnp.where(ok, loss, 0.0))

        def end_of_epoch(s: TrainState) -> TrainState:
            end = ok & (s.step % self.steps_per_epoch == self.steps_per_epoch - 1)
            mean = s.epoch_loss / self.steps_per_epoch
            improved = end & (mean < s.best_epoch_loss)
            stale = jnp.where(improved, 0, s.stale_epochs + end.astype(jnp.int32))
            kept = end if self.keep_last else improved  # the params a run returns: the best epoch's or the last's
            return s._replace(best_params=_where(kept, s.params, s.best_params),
                              best_loss=jnp.where(kept, mean, s.best_loss),
                              best_epoch_loss=jnp.where(improved, mean, s.best_epoch_loss),
                              epoch_loss=jnp.where(end, 0.0, s.epoch_loss), stale_epochs=stale,
                              stopped=s.stopped | (self.patience > 0) & (stale >= self.patience))

        return jax.lax.cond(clock % self.steps_per_epoch == self.steps_per_epoch - 1, end_of_epoch, lambda s: s, s)

    def chunk_lengths(self, index: int) -> list[int]:
        steps, k = self.stages[index].steps, self.chunk_steps
        return [k] * (steps // k) + ([steps % k] if steps % k else [])

    def schedule(self, resume=None) -> Iterator[tuple[int, bool, list[tuple[int, int]]]]:
        """(stage index, whether it begins, [(position, chunk length)]) for every stage left to run:
        all from the start, or after a checkpoints.Resume (its stage already begun, its chunks up to
        `resume.chunks` done); position counts the stage's chunks from 1."""
        first, done = (0, 0) if resume is None else (resume.stage, resume.chunks)
        for index in range(first, len(self.stages)):
            resumed = resume is not None and index == first
            chunks = list(enumerate(self.chunk_lengths(index), start=1))
            yield index, not resumed, chunks[done:] if resumed else chunks

    def compiled(self, name: tuple, make: Callable[[], Callable]) -> Callable:
        """The jitted program `name` (fit.Program's init, begin and chunks, plain or vmapped), made once
        per trainer and shared by its for_run views, so the runs of a sweep share one compilation."""
        if name not in self.programs:
            self.programs[name] = make()
        return self.programs[name]

    def is_compiled(self, name: tuple) -> bool:
        return name in self.programs

    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)


def records_to_rows(records: dict, stage: str, every: int = 1, round_: int = 0) -> dict[str, np.ndarray]:
    """Host-side: the valid steps of one chunk's records of a stage (of the pruner's round `round_`) as
    NumPy columns, one row per step; with
    every > 1 (analysis.history=epochs: every = steps per epoch) one row per epoch of the chunk, its step
    the epoch's last, its losses and gradient norm the means over the epoch's steps. `n_steps` counts the
    steps a row stands for."""
    valid = np.asarray(records["valid"])
    rows = {k: np.asarray(records[k])[valid] for k in RECORD_FIELDS}
    if every > 1 and len(rows["step"]):
        epoch = rows["step"] // every
        starts = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
        counts = np.diff(np.r_[starts, len(epoch)])
        means = {k: np.add.reduceat(rows[k].astype(np.float64), starts) / counts
                 for k in RECORD_FIELDS if k != "step"}
        rows = {"step": rows["step"][starts + counts - 1], **{k: v.astype(rows[k].dtype) for k, v in means.items()}}
        rows["n_steps"] = counts
    else:
        rows["n_steps"] = np.ones(len(rows["step"]), np.int64)
    rows["stage"] = np.full(len(rows["step"]), stage)
    rows["round"] = np.full(len(rows["step"]), round_, np.int64)
    return rows


def steps_in(rows) -> int:
    """The training steps that history rows (records_to_rows, or a checkpoint's) stand for."""
    return int(sum(np.sum(r["n_steps"]) if "n_steps" in r else len(r["step"]) for r in rows))


TRAINER_GROUPS = ("model", "task", "regularizer", "optimizer", "pruner")  # the groups a Trainer is built from


def trainer_options(parts) -> dict[str, Any]:
    """The Trainer's options, as the components declare them (the only place make_trainer reads them):
    the regularizer whether it is proximal, the optimizer its minibatch schedule, the analysis its chunk
    length and history rows."""
    return dict(proximal=parts.regularizer.proximal, **parts.optimizer.minibatch_options(),
                **parts.analysis.trainer_options())


def trainer_spec(parts, precision: str) -> dict[str, Any]:
    """Everything a Trainer is built from (make_trainer): its groups' configs without their traced keys
    (which arrive in hyper) nor the task's data keys (which change only its data arrays, `for_run`), the
    precision and trainer_options. Runs with equal specs can share one compiled trainer: build.static_key
    is this spec, so a new option of the trainer is part of the key by construction."""
    from omegaconf import OmegaConf

    spec: dict[str, Any] = {}
    for group in TRAINER_GROUPS:
        part = getattr(parts, group)
        container = OmegaConf.to_container(part.group_cfg, resolve=True)
        for key in (*part.traced, *(part.data_keys if group == "task" else ())):
            container.pop(key, None)
        spec[group] = container
    return {**spec, "precision": precision, "options": trainer_options(parts)}


def make_trainer(parts, dtype) -> Trainer:
    """The Trainer of a run's components (components.Parts): builds the task, the model for it, the
    regularizer for the model's parameter shapes and the optimizer's stages, with trainer_options."""
    task = parts.task.build(dtype)
    model = parts.model.build(task, dtype)
    neutral = {group: {k: 0.0 for k in part.traced} for group, part in parts._asdict().items()}
    shapes = jax.eval_shape(lambda k: model.init(k, neutral["model"])[0], jax.random.key(0))  # no traced value sets a shape
    param_shapes = {k: v.shape for k, v in shapes.items()}
    weights = model.weight_names(param_shapes)
    regularizer = parts.regularizer.build(param_shapes, weights)
    pruner = parts.pruner.build(param_shapes, weights)
    options = trainer_options(parts)
    return Trainer(model, task, regularizer, parts.optimizer.stages(options["proximal"]), dtype=dtype,
                   pruner=pruner, **options)
