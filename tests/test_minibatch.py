"""Minibatch training: which samples each step trains on, the last partial batch, members of a batch.

run_chunk gathers an epoch's data once and slices its batches; `Trainer.batch_indices` is the reference
for which samples step k sees. With a learning rate so small that no parameter moves (lr 1e-300 in
float64: every update is below half an ulp of every weight), the task loss a step records is the loss of
its batch at the initial parameters, so each step's batch can be checked against the reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compose_cfg, train_chunks

from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.fit import Program

N_TRAIN, BATCH = 100, 16  # 6 full batches and one of 4 per epoch
STILL = ["task=teacher_student", "model=mlp", "model.sizes=[12,8,1]", f"task.n_train={N_TRAIN}", "task.n_test=16",
         "optimizer=sgd", "optimizer.lr=1e-300", "optimizer.momentum=0", f"optimizer.batch_size={BATCH}",
         "regularizer=none", "analysis.figures=false", "progress=false", "precision=float64",
         "analysis.eig_every=5", "optimizer.steps=20"]  # chunks of 5 steps cut across epochs of 7


def trainer_of(*overrides):
    set_precision("float64")
    _, trainer, hyper = make_run(compose_cfg(*STILL, *overrides, tiny=False))
    return trainer, hyper


def batch_losses(trainer, params, data_key, steps) -> np.ndarray:
    """The task loss of each step's reference batch (batch_indices) at `params`."""
    out = []
    for step in range(steps):
        indices = np.asarray(trainer.batch_indices(data_key, step))
        data = {k: v[:, indices] for k, v in trainer.data.items() if k in ("inputs", "targets")}
        out.append(float(trainer.task_loss(params, jax.tree.map(jnp.ones_like, params), data)))
    return np.array(out)


def recorded_task_losses(trainer, key, hyper) -> tuple[np.ndarray, object]:
    losses, first = [], None
    for _, _, state, records in train_chunks(trainer, key, hyper):
        if records is None:
            first = state
            continue
        losses.append(np.asarray(records["task_loss"])[np.asarray(records["valid"])])
    assert np.array_equal(np.asarray(state.params["W1"]), np.asarray(first.params["W1"])), "parameters moved"
    return np.concatenate(losses), first


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_step_trains_on_the_batch_that_batch_indices_names(drop_last):
    trainer, hyper = trainer_of(f"optimizer.drop_last={drop_last}")
    assert trainer.steps_per_epoch == (6 if drop_last else 7)
    key = jax.random.key(5)
    recorded, first = recorded_task_losses(trainer, key, hyper)
    expected = batch_losses(trainer, first.params, first.data_key, len(recorded))
    assert len(recorded) == 20
    np.testing.assert_allclose(recorded, expected, rtol=1e-12)
    assert len(np.unique(np.round(recorded, 12))) > 15  # the batches differ, so the check has teeth


def test_an_epoch_keeps_its_last_partial_batch_unless_drop_last():
    kept, _ = trainer_of("optimizer.drop_last=false")
    dropped, _ = trainer_of("optimizer.drop_last=true")
    key = jax.random.key(0)
    for epoch in range(2):
        steps = range(epoch * 7, epoch * 7 + 7)
        batches = [np.asarray(kept.batch_indices(key, step)) for step in steps]
        assert [len(b) for b in batches] == [BATCH] * 6 + [N_TRAIN - 6 * BATCH]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(N_TRAIN))
        seen = np.concatenate([np.asarray(dropped.batch_indices(key, step)) for step in range(epoch * 6, epoch * 6 + 6)])
        assert len(np.unique(seen)) == 6 * BATCH
        np.testing.assert_array_equal(seen, np.concatenate(batches[:6]))  # the same order, the rest dropped


@pytest.mark.slow  # slow: a vmapped program of its own to compile (the default suite stays within 5 minutes cold)
def test_members_of_a_vmapped_batch_train_on_their_own_batches():
    trainer, hyper = trainer_of()
    keys = [jax.random.key(1), jax.random.key(2)]
    single = [recorded_task_losses(trainer, key, hyper)[0] for key in keys]
    batched = Program(trainer, [trainer, trainer])
    hypers = batched.stack([hyper, hyper])
    state = batched.begin(0, batched.init(batched.stack(keys), hypers), hypers)
    losses = []
    for position, n_steps in enumerate(trainer.chunk_lengths(0), start=1):
        state, records = batched.chunk(0, n_steps, state, hypers, trainer.chunk_start(0, position))
        losses.append(np.asarray(records["task_loss"]))
    losses = np.concatenate(losses, axis=1)
    for i in range(2):
        np.testing.assert_allclose(losses[i], single[i], rtol=1e-12)
    assert not np.allclose(single[0], single[1])


def test_history_by_epochs_holds_each_epochs_means_of_the_per_step_rows(tmp_path):
    from rnn_sparsity import artifacts
    from rnn_sparsity.experiment import run

    common = [o for o in STILL if not o.startswith(("optimizer.lr", "optimizer.steps", "analysis.eig_every"))]
    cfg = [*common, "optimizer.lr=0.05", "optimizer.steps=28", "analysis.eig_every=14"]  # 4 epochs of 7
    by_step = run(compose_cfg(*cfg, tiny=False), tmp_path / "steps")
    by_epoch = run(compose_cfg(*cfg, "analysis.history=epochs", tiny=False), tmp_path / "epochs")
    assert by_step["final_loss"] == by_epoch["final_loss"]
    steps = artifacts.read_history(tmp_path / "steps")
    epochs = artifacts.read_history(tmp_path / "epochs")
    assert len(steps) == 28 and list(epochs["step"]) == [6, 13, 20, 27]
    means = steps.groupby(steps["step"] // 7)[["loss", "task_loss", "grad_norm"]].mean()
    np.testing.assert_allclose(epochs[["loss", "task_loss", "grad_norm"]].to_numpy(), means.to_numpy(), rtol=1e-12)


def test_keep_last_returns_the_last_epochs_parameters_and_best_the_lowest_epoch_loss(tmp_path):
    set_precision("float64")
    common = [o for o in STILL if not o.startswith(("optimizer.lr", "optimizer.steps", "analysis.eig_every"))]
    cfg = [*common, "optimizer.lr=0.5", "optimizer.steps=70", "analysis.eig_every=7"]  # 10 epochs, lr large: noisy
    for keep in ("best", "last"):
        _, trainer, hyper = make_run(compose_cfg(*cfg, f"optimizer.keep={keep}", tiny=False))
        epoch_losses, epoch_params = [], []
        for _, _, state, records in train_chunks(trainer, jax.random.key(0), hyper):
            if records is not None:  # one chunk = one epoch
                epoch_losses.append(float(np.mean(np.asarray(records["loss"]))))
                epoch_params.append(np.asarray(state.params["W1"]))
        chosen = -1 if keep == "last" else int(np.argmin(epoch_losses))
        assert keep == "last" or chosen != len(epoch_losses) - 1, "the best epoch is the last: the check has no teeth"
        np.testing.assert_array_equal(np.asarray(state.best_params["W1"]), epoch_params[chosen])
