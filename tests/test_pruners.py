"""The pruner group in training (rnn_sparsity/pruners, the trainer's conditionals and retrainings): a
prune in a run zeroes exactly the ⌊s·n⌋ smallest |w| of the parameters at its step, the gradual schedule
reaches Zhu & Gupta's sparsity at each of its steps, the random control has the same counts elsewhere, a
lottery round rewinds every survivor to exactly its initial (or step-k) value and pruned weights stay 0
through training; masks survive a checkpoint (a run killed mid-round ends with the files of an
uninterrupted one); and a sparsity × seed grid trains as one vmapped program with the numbers of serial runs."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import assert_same_run, compose_cfg
from test_checkpoints import Killed, stop_after  # noqa: F401  (the fixture)

from rnn_sparsity import artifacts
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.experiment import run, run_batch
from rnn_sparsity.fit import Program
from rnn_sparsity.pruning import count_at, polynomial_sparsity

# TINY (helpers): a 16-unit ctrnn (J: 256 entries), Adam 60 steps then L-BFGS 20, in 20-step chunks
N = 256


def chunk_states(*overrides: str):
    """(program, hyper, [(stage index, chunk start, state after the chunk)], initial state) of a run
    trained through fit.Program's chunks, float64."""
    set_precision("float64")
    cfg = compose_cfg("precision=float64", *overrides)
    _, trainer, hyper = make_run(cfg)
    program = Program(trainer)
    key = jax.random.key(cfg.seed)
    initial = program.init(key, hyper)
    states = []
    for index, position, state, _ in program.chunks(initial, hyper):
        states.append((index, trainer.chunk_start(index, position), jax.device_get(state)))
    return program, hyper, states, jax.device_get(initial)


def zeros(mask) -> set[int]:
    return set(np.flatnonzero(np.asarray(mask).ravel() == 0).tolist())


def smallest(values, k: int) -> set[int]:
    return set(np.argsort(np.abs(np.asarray(values)).ravel(), kind="stable")[:k].tolist())


@pytest.mark.parametrize("scope", [pytest.param("tensor", marks=pytest.mark.slow), "global"])  # (8 s cold each)
def test_a_magnitude_prune_zeroes_the_floor_s_n_smallest_weights_of_its_step_and_they_stay_zero(scope):
    extra = ["pruner.targets=[J,w]"] if scope == "global" else []
    program, _, states, _ = chunk_states("pruner=magnitude", "pruner.step=20", "pruner.sparsity=0.6",
                                         f"pruner.scope={scope}", *extra)
    before = states[0][2]  # after steps 0..19: the parameters the prune at step 20 sees
    assert not zeros(before.mask["J"])
    after = states[1][2].mask
    if scope == "tensor":
        assert zeros(after["J"]) == smallest(before.params["J"], int(np.floor(0.6 * N)))
    else:
        flat = np.concatenate([np.ravel(before.params["J"]), np.ravel(before.params["w"])])
        pruned = zeros(np.concatenate([np.ravel(after["J"]), np.ravel(after["w"])]))
        assert pruned == smallest(flat, int(np.floor(0.6 * flat.size)))
    for _, _, state in states[1:]:  # fine-tuning (Adam, then L-BFGS) keeps them at exactly 0
        for t in program.trainer.pruner.targets:
            np.testing.assert_array_equal(state.mask[t], after[t])
            assert np.all(np.asarray(state.params[t])[np.asarray(after[t]) == 0] == 0)
            assert np.all(np.asarray(state.best_params[t])[np.asarray(after[t]) == 0] == 0)


@pytest.mark.slow  # a pruned training of its own to compile (~11 s cold)
def test_the_gradual_schedule_reaches_zhu_and_gupta_s_sparsity_at_every_pruning_step():
    s_i, s_f, t0, every, n = 0.1, 0.8, 0, 20, 2  # prunes before steps 0, 20 and 40 (each a chunk's first)
    _, _, states, initial = chunk_states("pruner=gradual", f"pruner.initial_sparsity={s_i}",
                                         f"pruner.sparsity={s_f}", f"pruner.start={t0}",
                                         f"pruner.every={every}", f"pruner.prunes={n}")
    seen = [initial] + [state for _, _, state in states]
    for j in range(n + 1):
        t = t0 + j * every
        expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * every)) ** 3
        assert float(polynomial_sparsity(t, s_i, s_f, t0, n, every)) == pytest.approx(expected)
        before, after = seen[j], seen[j + 1]  # the parameters at step t, and the masks just after
        k = int(count_at(expected, N))
        assert len(zeros(after.mask["J"])) == k
        survivors = np.asarray(before.mask["J"]).ravel() > 0
        newly = zeros(after.mask["J"]) - zeros(before.mask["J"])
        ranked = [i for i in np.argsort(np.abs(np.asarray(before.params["J"])).ravel(), kind="stable") if survivors[i]]
        assert newly == set(ranked[:k - len(zeros(before.mask["J"]))])
    assert len(zeros(seen[-1].mask["J"])) == int(np.floor(s_f * N))


@pytest.mark.slow  # 3 trainings to compile (15 s cold); test_pruning has the counts of the maths
def test_the_random_control_prunes_the_same_count_at_other_entries_and_differs_by_seed():
    masks = {}
    for pruner, seed in [("magnitude", 0), ("random", 0), ("random", 1)]:
        _, _, states, _ = chunk_states(f"pruner={pruner}", "pruner.step=0", "pruner.sparsity=0.7", f"seed={seed}")
        masks[pruner, seed] = zeros(states[-1][2].mask["J"])
    assert {len(m) for m in masks.values()} == {int(np.floor(0.7 * N))}
    assert masks["random", 0] != masks["magnitude", 0] and masks["random", 0] != masks["random", 1]


@pytest.mark.slow  # 5 trainings (19 s cold); the retraining test below checks a round's start in the default suite
@pytest.mark.parametrize("rewind_step", [0, 20])
def test_a_lottery_round_rewinds_every_survivor_exactly_and_its_control_starts_afresh(rewind_step):
    """Rounds of Adam 60 + L-BFGS 20 (4 chunks each): round 0, control 1, round 1, control 2, round 2."""
    program, hyper, states, initial = chunk_states("pruner=lottery", "pruner.rounds=2", "pruner.sparsity=0.75",
                                                   f"pruner.rewind={'step' if rewind_step else 'init'}", f"pruner.rewind_step={rewind_step}",
                                                   "pruner.reinit_control=true")
    trainer = program.trainer
    assert [kind for kind, _ in trainer.blocks] == ["round", "reinit", "round", "reinit", "round"]
    reference = initial.params if not rewind_step else states[0][2].params  # after 20 steps of round 0
    per_block = [[s for i, _, s in states if trainer.block_of(i)[0] == b] for b in range(5)]
    for block, (kind, r) in enumerate(trainer.blocks):
        if block == 0:
            continue
        ended = per_block[block - 1][-1]  # the previous training's end
        begun = jax.device_get(program.begin(block * 2, ended, hyper))  # compiled for the chunks already
        mask = np.asarray(begun.mask["J"])
        assert len(zeros(mask)) == int(np.floor((1 - 0.25 ** (r / 2)) * N + 1e-9))
        if kind == "reinit":  # round r's masks from round r-1's trained |J|
            survivors = np.asarray(ended.mask["J"]).ravel() > 0
            ranked = [i for i in np.argsort(np.abs(np.asarray(ended.best_params["J"])).ravel(), kind="stable") if survivors[i]]
            assert zeros(mask) - zeros(ended.mask["J"]) == set(ranked[:len(zeros(mask)) - len(zeros(ended.mask["J"]))])
            assert not np.allclose(np.asarray(begun.params["J"])[mask > 0], np.asarray(reference["J"])[mask > 0])
        else:  # the same masks as its control, every parameter back to the reference
            np.testing.assert_array_equal(mask, np.asarray(per_block[block - 1][-1].mask["J"]))
            for name, value in begun.params.items():
                expected = np.asarray(reference[name]) * (mask if name == "J" else 1.0)
                np.testing.assert_array_equal(np.asarray(value), expected)
        for state in per_block[block]:  # pruned weights stay 0 through the round's training
            np.testing.assert_array_equal(np.asarray(state.mask["J"]), mask)
            assert np.all(np.asarray(state.params["J"])[mask == 0] == 0)


@pytest.mark.slow  # 2 trainings to compile (12 s cold)
def test_a_retraining_without_rewind_goes_on_from_the_trained_weights_and_random_prunes_other_entries():
    """rewind none (train, prune, fine-tune) with the random criterion: round 1 starts from round 0's best
    parameters times the mask, which has the count of a magnitude prune at entries not ranked by |J|."""
    program, hyper, states, _ = chunk_states("pruner=lottery", "pruner.rounds=1", "pruner.sparsity=0.7",
                                             "pruner.rewind=none", "pruner.criterion=random")
    ended = states[3][2]  # round 0's end (Adam 60 + L-BFGS 20: 4 chunks)
    begun = jax.device_get(program.begin(2, ended, hyper))
    mask = np.asarray(begun.mask["J"])
    assert len(zeros(mask)) == int(np.floor(0.7 * N))
    assert zeros(mask) != smallest(ended.best_params["J"], int(np.floor(0.7 * N)))
    for name, value in begun.params.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(ended.best_params[name]) * (mask if name == "J" else 1.0))


LOTTERY = ["precision=float64", "pruner=lottery", "pruner.rounds=2", "pruner.sparsity=0.75", "pruner.rewind=step", "pruner.rewind_step=20",
           "pruner.reinit_control=true"]


@pytest.mark.slow  # 5 trainings (18 s cold); the checkpoint test runs the same lottery in the default suite
def test_a_lottery_run_records_every_round_and_its_control(tmp_path):
    metrics = run(compose_cfg(*LOTTERY, "checkpoint.every_s=0"), tmp_path)
    history = artifacts.read_history(tmp_path)
    assert sorted(history["round"].unique()) == [0, 1, 2]
    trainings = history.drop_duplicates(["round", "stage"]).query("stage.str.endswith('adam')")  # in order of first row
    assert trainings[["round", "stage"]].values.tolist() == [[0, "adam"], [1, "reinit/adam"], [1, "adam"],
                                                             [2, "reinit/adam"], [2, "adam"]]
    for kind, r in [("round", 0), ("reinit", 1), ("round", 1), ("reinit", 2), ("round", 2)]:
        expected = 1 - 0.25 ** (r / 2)
        assert metrics[f"{kind}{r}_mask_sparsity"] == pytest.approx(int(np.floor(expected * N + 1e-9)) / N)
        assert np.isfinite(metrics[f"{kind}{r}_task_loss"])
    assert metrics["round2_task_loss"] == pytest.approx(metrics["task_loss"], rel=1e-12)  # the run is its last round
    assert metrics["method"] == "lottery (rewind 20)"
    mask = artifacts.read_params(tmp_path, "mask/")["J"]
    assert np.all(artifacts.read_params(tmp_path)["J"][mask == 0] == 0)


@pytest.mark.parametrize("pruner,n", [pytest.param(LOTTERY, 7, marks=pytest.mark.slow),  # 20 s cold: 5 trainings
                                     (["precision=float64", "pruner=gradual", "pruner.every=20", "pruner.prunes=2",
                                       "pruner.sparsity=0.8"], 2)])
def test_masks_survive_a_checkpoint_a_run_killed_mid_round_ends_as_an_uninterrupted_one(tmp_path, stop_after, pruner, n):
    """The lottery run killed after its 7th chunk (control 1's L-BFGS... mid-way through its second
    training), the gradual one after its second prune: each resumes and writes what a whole run writes."""
    run(compose_cfg(*pruner, "checkpoint.every_s=0"), tmp_path / "whole")
    stop_after(n)
    with pytest.raises(Killed):
        run(compose_cfg(*pruner, "checkpoint.every_s=1e-9"), tmp_path / "resumed")
    run(compose_cfg(*pruner, "checkpoint.every_s=1e-9"), tmp_path / "resumed")
    assert_same_run(tmp_path / "whole", tmp_path / "resumed", rtol=0)


@pytest.mark.slow  # a vmapped batch to compile (13 s cold), as test_batch's
def test_a_sparsity_by_seed_grid_of_pruned_runs_trains_as_one_program_with_the_serial_numbers(tmp_path):
    grid = [[f"pruner.sparsity={s}", f"seed={seed}"] for s in (0.5, 0.9) for seed in (0, 1)]
    base = ["precision=float64", "pruner=magnitude", "pruner.step=20", "pruner.scope=global", "pruner.targets=[J,w]"]
    cfgs = [compose_cfg(*base, *o) for o in grid]
    for i, o in enumerate(grid):
        run(compose_cfg(*base, *o), tmp_path / "serial" / str(i))
    outcomes = run_batch(cfgs, [tmp_path / "batch" / str(i) for i in range(len(grid))])
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    sparsities = [assert_same_run(tmp_path / "serial" / str(i), tmp_path / "batch" / str(i))["mask_sparsity"]
                  for i in range(len(grid))]
    assert sparsities == [int(np.floor(s * 272)) / 272 for s in (0.5, 0.5, 0.9, 0.9)]


def test_the_memory_estimate_counts_a_lottery_runs_kept_trainings_and_masks():
    """A lottery run keeps the parameters of each training but the last and the masks of every round."""
    from rnn_sparsity.build import memory_estimate

    set_precision("float64")
    _, plain, hyper = make_run(compose_cfg("precision=float64"))
    _, lottery, lottery_hyper = make_run(compose_cfg("precision=float64", "pruner=lottery", "pruner.rounds=3",
                                                     "pruner.reinit_control=true"))
    params = sum(np.size(v) for v in jax.eval_shape(lambda: lottery.init(jax.random.key(0), lottery_hyper).params).values())
    assert memory_estimate(plain, hyper)["pruner state"] == 0
    kept = memory_estimate(lottery, lottery_hyper)["pruner state"]
    assert kept == 8 * ((len(lottery.blocks) - 1) * params + 4 * N) + 8  # float64 entries; the key's 2 uint32
