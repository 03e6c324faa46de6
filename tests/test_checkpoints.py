"""Checkpoints inside a run (rnn_sparsity/checkpoints.py): a run stopped after any chunk and run again
in its directory resumes from its checkpoint and ends with the files an uninterrupted run writes, bit
for bit (wall time aside); serially, as a vmapped batch, and across the two. A checkpoint holds no pickle:
what a save is given comes back, types included, and one that is planted, unreadable, replaced by a
file, truncated or otherwise damaged is reported in one line, removed, and the run starts over."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import TINY, assert_same_run, compose_cfg
from test_resume import snapshot

from rnn_sparsity import artifacts, checkpoints
from rnn_sparsity.aggregate import main as aggregate_main
from rnn_sparsity.contracts import Probe
from rnn_sparsity.experiment import run_batch
from rnn_sparsity.experiment import run

BASE = ["precision=float64", "checkpoint.every_s=1e-9"]  # a checkpoint after every chunk
# TINY: Adam 60 steps and L-BFGS 20 in chunks of 20 steps: 4 chunks, positions (0, 1), (0, 2), (0, 3), (1, 1)


class Killed(Exception):
    """Stands for the process dying right after the n-th checkpoint was committed."""


@pytest.fixture
def stop_after(monkeypatch):
    """stop_after(n): the n-th checkpoint written raises Killed once it is complete."""
    def arm(n: int):
        save, written = checkpoints.Checkpoints.save, []

        def counting(self, *args, **kwargs):
            path = save(self, *args, **kwargs)
            written.append(path)
            if len(written) == n:
                monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
                raise Killed(path)
            return path
        monkeypatch.setattr(checkpoints.Checkpoints, "save", counting)
        return written
    return arm


@pytest.mark.parametrize("n", [1, 3, 4])  # mid-Adam, the end of Adam (L-BFGS next), the last chunk
def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_files(tmp_path, stop_after, caplog, n):
    overrides = [*BASE, "regularizer.strength=1e-3"]
    run(compose_cfg(*overrides, "checkpoint.every_s=0"), tmp_path / "whole")
    assert not (tmp_path / "whole" / artifacts.CHECKPOINT).exists()  # every_s=0: none written
    stop_after(n)
    with pytest.raises(Killed):
        run(compose_cfg(*overrides), tmp_path / "resumed")
    assert not artifacts.is_done(tmp_path / "resumed")
    saved = artifacts.latest_checkpoint(tmp_path / "resumed")
    assert saved is not None and len(list(saved.parent.iterdir())) == 1  # only the newest is kept
    caplog.clear()
    with caplog.at_level("INFO"):
        run(compose_cfg(*overrides), tmp_path / "resumed")
    steps = 20 * n  # 20-step chunks; the rerun began there, not at step 0 (which would end the same)
    assert f"resuming from checkpoint {saved}: step {steps} " in caplog.text
    assert not (tmp_path / "resumed" / artifacts.CHECKPOINT).exists()  # removed when the run was complete
    assert_same_run(tmp_path / "whole", tmp_path / "resumed", rtol=0)


class Requeued(BaseException):
    """What submitit's requeue handler does last: it raises SystemExit (a BaseException) to end the job."""


@pytest.fixture
def cluster_signal(monkeypatch):
    """A submitit-like SIGUSR2 handler (it records the checkpoints there are, then ends the job), and
    the signal sent from the main thread right after the 2nd chunk's history is recorded (with a
    checkpoint only every 1e6 s: none is due then but for the signal)."""
    from rnn_sparsity import fit

    seen: list = []

    def submitit_like(signum, frame):
        seen.append(sorted(artifacts.checkpoint_names(seen_dir[0])))
        raise Requeued

    seen_dir: list = []
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    for module in (fit,):  # the one host loop records each chunk's rows
        rows, calls = module.records_to_rows, []

        def signalling(*args, _rows=rows, _calls=calls, **kwargs):
            _calls.append(1)
            if len(_calls) == 2:
                os.kill(os.getpid(), signal.SIGUSR2)
            return _rows(*args, **kwargs)
        monkeypatch.setattr(module, "records_to_rows", signalling)
    yield seen, seen_dir, submitit_like
    signal.signal(signal.SIGUSR2, previous)


def test_a_cluster_requeue_signal_is_held_until_a_checkpoint_is_written(tmp_path, cluster_signal, caplog):
    """submitit's handler runs at the next chunk boundary, after a checkpoint of that position: the
    requeued job resumes from there (not from the last periodic checkpoint) and ends as if never stopped."""
    seen, seen_dir, handler = cluster_signal
    overrides = ["precision=float64", "regularizer.strength=1e-3", "checkpoint.every_s=1e6"]
    seen_dir.append(tmp_path / "requeued")
    with pytest.raises(Requeued):
        run(compose_cfg(*overrides), tmp_path / "requeued")
    assert seen == [["0000000002"]] and signal.getsignal(signal.SIGUSR2) is handler  # handed over, restored
    assert not artifacts.is_done(tmp_path / "requeued")
    with caplog.at_level("INFO"):
        run(compose_cfg(*overrides), tmp_path / "requeued")  # the requeued job
    assert "step 40 (stage 0, 2 chunks done)" in caplog.text
    run(compose_cfg(*overrides), tmp_path / "whole")
    assert_same_run(tmp_path / "whole", tmp_path / "requeued", rtol=0)


def test_a_requeue_signal_from_the_jobs_start_is_held_to_the_first_checkpoint(tmp_path):
    """SLURM may send the signal up to a minute early, before submitit's handler is installed:
    cluster_entry records it (EARLY), and the fit holds it from its start, so the job checkpoints after
    its first chunk, hands over, and the requeued job ends as if never stopped."""
    from rnn_sparsity.cluster_entry import EARLY

    seen: list = []

    def submitit_like(signum, frame):
        seen.append(sorted(artifacts.checkpoint_names(tmp_path / "requeued")))
        raise Requeued

    overrides = ["precision=float64", "regularizer.strength=1e-3", "checkpoint.every_s=1e6"]
    previous = signal.signal(signal.SIGUSR2, submitit_like)
    EARLY.append(signal.SIGUSR2)
    try:
        with pytest.raises(Requeued):
            run(compose_cfg(*overrides), tmp_path / "requeued")
    finally:
        signal.signal(signal.SIGUSR2, previous)
        EARLY.clear()
    assert seen == [["0000000001"]]  # stage 0 after 1 chunk: the first boundary
    run(compose_cfg(*overrides), tmp_path / "requeued")
    run(compose_cfg(*overrides), tmp_path / "whole")
    assert_same_run(tmp_path / "whole", tmp_path / "requeued", rtol=0)


@pytest.mark.slow  # a vmapped batch of its own to compile (15 s cold); the serial requeue test stays in the default run
def test_a_batch_holds_the_requeue_signal_until_every_member_is_checkpointed(tmp_path, cluster_signal, caplog):
    seen, seen_dir, _ = cluster_signal
    grid = [["precision=float64", "checkpoint.every_s=1e6", f"seed={seed}"] for seed in (0, 1)]
    dirs = [tmp_path / "batch" / str(i) for i in range(2)]
    seen_dir.append(dirs[1])
    outcomes = None
    with pytest.raises(Requeued):
        outcomes = run_batch([compose_cfg(*o) for o in grid], dirs)
    assert outcomes is None and seen == [["0000000001"]]  # the 2nd call: the last member of chunk 1
    with caplog.at_level("INFO"):
        outcomes = run_batch([compose_cfg(*o) for o in grid], dirs)
    assert all(isinstance(o, dict) for o in outcomes) and caplog.text.count("step 20 (stage 0, 1 chunks done)") == 2
    whole = [tmp_path / "whole" / str(i) for i in range(2)]
    run_batch([compose_cfg(*o) for o in grid], whole)
    for a, b in zip(whole, dirs):
        assert_same_run(a, b, rtol=0)


def test_minibatches_early_stopping_and_window_probes_resume_exactly(tmp_path, stop_after, caplog):
    """Iris: per-epoch shuffles from the data key in the state, the best epoch, the patience counter and
    the window-accuracy and loss probes' samples all continue where they were."""
    overrides = ["sweeps=iris_l1", "seed=0", "regularizer.strength=1e-3", "optimizer.steps=280",
                 "analysis.eig_every=35",
                 "analysis.figures=false", "progress=false", "task.average_window=[5,35]", "optimizer.patience=5",
                 *BASE]
    run(compose_cfg(*overrides, "checkpoint.every_s=0", tiny=False), tmp_path / "whole")
    stop_after(2)
    with pytest.raises(Killed):
        run(compose_cfg(*overrides, tiny=False), tmp_path / "resumed")
    with caplog.at_level("INFO"):
        run(compose_cfg(*overrides, tiny=False), tmp_path / "resumed")
    assert "resuming from checkpoint" in caplog.text and ": step 70 " in caplog.text  # 2 chunks of 35 steps
    metrics = assert_same_run(tmp_path / "whole", tmp_path / "resumed", rtol=0)
    assert metrics["stopped_early"] and metrics["epochs"] > 10 and metrics["window_test_accuracy"] is not None


@pytest.mark.slow  # a vmapped batch to compile (15 s cold); the serial resume tests stay in the default suite
def test_a_batch_resumes_from_its_members_checkpoints_and_a_member_resumes_alone(tmp_path, stop_after, caplog):
    grid = [[*BASE, f"seed={seed}", f"regularizer.strength={lam}"] for seed, lam in ((0, 0.0), (1, 1e-3), (2, 1e-2))]
    whole = [tmp_path / "whole" / str(i) for i in range(3)]
    assert all(isinstance(o, dict) for o in run_batch([compose_cfg(*o, "checkpoint.every_s=0") for o in grid], whole))
    batch = [tmp_path / "batch" / str(i) for i in range(3)]
    written = stop_after(2 * 3)  # the second save of the batch: one per member each time
    outcomes = run_batch([compose_cfg(*o) for o in grid], batch)
    assert all(isinstance(o, Killed) for o in outcomes)  # the batch's failure, recorded by every member
    assert [p.parent.parent for p in written[-3:]] == batch and len({p.name for p in written[-3:]}) == 1
    alone = tmp_path / "alone"  # member 2's directory, resumed by a serial run
    shutil.copytree(batch[2], alone)
    caplog.clear()
    with caplog.at_level("INFO"):
        outcomes = run_batch([compose_cfg(*o) for o in grid], batch)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert caplog.text.count(": step 40 (stage 0, 2 chunks done)") == 3  # every member picked up there
    for a, b in zip(whole, batch):
        assert_same_run(a, b, rtol=0)
    caplog.clear()
    with caplog.at_level("INFO"):
        run(compose_cfg(*grid[2]), alone)
    assert ": step 40 (stage 0, 2 chunks done)" in caplog.text
    run(compose_cfg(*grid[2], "checkpoint.every_s=0"), tmp_path / "serial")
    assert_same_run(tmp_path / "serial", alone)  # to test_batch's tolerance: batched arithmetic rounds otherwise

    # killed while the batch wrote its first checkpoints (members 0 and 1 have one, member 2 none):
    # no position in common, so the batch starts from the beginning, over the stale ones
    partial = [tmp_path / "partial" / str(i) for i in range(3)]
    stop_after(2)
    assert all(isinstance(o, Killed) for o in run_batch([compose_cfg(*o) for o in grid], partial))
    assert [len(artifacts.checkpoint_names(d)) for d in partial] == [1, 1, 0]
    caplog.clear()
    with caplog.at_level("INFO"):
        assert all(isinstance(o, dict) for o in run_batch([compose_cfg(*o) for o in grid], partial))
    assert "no checkpoint of one position in common" in caplog.text and "resuming" not in caplog.text
    for a, b in zip(whole, partial):
        assert_same_run(a, b, rtol=0)


def test_a_checkpoint_of_another_config_or_a_damaged_one_is_not_resumed(tmp_path, stop_after, caplog):
    overrides = [*BASE, "regularizer.strength=1e-3"]
    stop_after(2)
    with pytest.raises(Killed):
        run(compose_cfg(*overrides), tmp_path / "a")
    with caplog.at_level("INFO"):
        run(compose_cfg(*overrides, "regularizer.strength=3e-3"), tmp_path / "a")  # another config: from the start
    assert "resuming" not in caplog.text
    run(compose_cfg(*overrides, "regularizer.strength=3e-3", "checkpoint.every_s=0"), tmp_path / "b")
    assert_same_run(tmp_path / "a", tmp_path / "b", rtol=0)

    stop_after(2)
    with pytest.raises(Killed):
        run(compose_cfg(*overrides), tmp_path / "c")
    saved = artifacts.latest_checkpoint(tmp_path / "c")
    for leaf in [saved, *saved.rglob("*")]:  # the same config, but the checkpoint's files are damaged
        if leaf.is_file():
            leaf.write_bytes(b"garbage")
    run(compose_cfg(*overrides), tmp_path / "c")
    assert "does not fit this run" in caplog.text
    run(compose_cfg(*overrides, "checkpoint.every_s=0"), tmp_path / "d")
    assert_same_run(tmp_path / "c", tmp_path / "d", rtol=0)


# ------------------------------------------------------------------ planted, damaged and exotic checkpoints
def interrupted(stop_after, run_dir: Path, *overrides: str) -> Path:
    """A run of BASE (+ overrides) in run_dir stopped right after its 2nd checkpoint; that checkpoint."""
    stop_after(2)
    with pytest.raises(Killed):
        run(compose_cfg(*BASE, *overrides), run_dir)
    return artifacts.latest_checkpoint(run_dir)


def rerun(caplog, run_dir: Path, *overrides: str) -> None:
    """Run BASE (+ overrides) again in run_dir, logging into a cleared caplog; it must start over and
    complete, its checkpoint folder (or what stood in its place) gone."""
    caplog.clear()
    with caplog.at_level("INFO"):
        metrics = run(compose_cfg(*BASE, *overrides), run_dir)
    assert metrics["status"] == "completed" and artifacts.is_done(run_dir)
    assert "resuming" not in caplog.text
    assert not os.path.lexists(run_dir / artifacts.CHECKPOINT)


def checkpoint_warnings(caplog) -> list[logging.LogRecord]:
    """What the checkpoints logged at WARNING or above; no record of any logger carries a traceback."""
    assert "Traceback" not in caplog.text and all(r.exc_info is None for r in caplog.records)
    return [r for r in caplog.records if r.name == checkpoints.__name__ and r.levelno >= logging.WARNING]


class Planted:
    """Unpickling it creates the file `marker`: it stands for whatever code a planted pickle runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def plant_in_the_orbax_format(folder: Path, payload: bytes) -> None:
    """The payload as the host blob of the orbax format (checkpoint/<position>/, which the code before
    this one unpickled), written with orbax where it is still installed: the package needs it no more."""
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        return
    logging.getLogger("absl").setLevel(logging.WARNING)
    ocp.PyTreeCheckpointer().save((folder / "0000000003").resolve(), {"host": np.frombuffer(payload, np.uint8)})


@pytest.mark.parametrize("planted", ["a pickle", "an object array"])
def test_a_planted_pickle_never_runs_and_the_run_starts_over(tmp_path, stop_after, caplog, planted):
    """A checkpoint someone put into a shared sweep directory, as a pickle with the newest checkpoint's
    name, as an archive whose member is a pickled object array, and in the old format: none is unpickled."""
    run_dir, marker = tmp_path / "run", tmp_path / "code-ran"
    folder = interrupted(stop_after, run_dir).parent
    shutil.rmtree(folder)
    folder.mkdir()
    with (folder / "0000000002.npz").open("wb") as file:
        if planted == "a pickle":
            file.write(pickle.dumps(Planted(marker)))
        else:
            np.savez(file, host=np.array([Planted(marker)], dtype=object))
    plant_in_the_orbax_format(folder, pickle.dumps(Planted(marker)))
    rerun(caplog, run_dir)
    assert not marker.exists()
    assert "does not fit this run" in caplog.text


def deny_listing(monkeypatch, folder: Path) -> None:
    """What chmod 000 does to a process that is not root: listing `folder` raises PermissionError, until
    the folder is removed (for root, whom chmod denies nothing)."""
    listdir, remove, denied = os.listdir, artifacts.remove_checkpoint, [True]

    def guarded(path="."):
        if denied[0] and Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return listdir(path)

    def removing(run_dir):
        denied[0] = False
        return remove(run_dir)

    monkeypatch.setattr(os, "listdir", guarded)
    monkeypatch.setattr(artifacts, "remove_checkpoint", removing)


def test_an_unreadable_checkpoint_folder_is_reported_and_the_run_starts_over(tmp_path, stop_after, caplog, monkeypatch):
    run_dir = tmp_path / "run"
    folder = interrupted(stop_after, run_dir).parent
    folder.chmod(0)
    try:
        with contextlib.suppress(PermissionError):
            os.listdir(folder)
            deny_listing(monkeypatch, folder)  # root: chmod denies nothing, so deny the listing as it would
        assert artifacts.latest_checkpoint(run_dir) is None and artifacts.checkpoint_names(run_dir) == []
        rerun(caplog, run_dir)
    finally:
        if folder.exists():
            folder.chmod(0o700)  # for pytest's own clean-up of tmp_path
    [warning] = checkpoint_warnings(caplog)
    assert "unreadable" in warning.getMessage()


def test_a_checkpoint_folder_that_cannot_be_removed_is_renamed_aside(tmp_path, monkeypatch):
    """Where even its owner's permissions do not let it go (someone else's folder), a new checkpoint
    folder can still be made: the old one is renamed aside."""
    folder = tmp_path / artifacts.CHECKPOINT
    (folder / "0000000001.npz").parent.mkdir()
    (folder / "0000000001.npz").write_bytes(b"stale")

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(shutil, "rmtree", refused)
    artifacts.remove_checkpoint(tmp_path)
    assert not os.path.lexists(folder) and artifacts.latest_checkpoint(tmp_path) is None
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(f".{artifacts.CHECKPOINT}.")]
    assert (aside / "0000000001.npz").read_bytes() == b"stale"


@pytest.mark.parametrize("resume", [True, False])
def test_a_file_in_place_of_the_checkpoint_folder_is_removed_and_the_run_starts_over(tmp_path, stop_after, caplog,
                                                                                      resume):
    run_dir = tmp_path / "run"
    folder = interrupted(stop_after, run_dir).parent
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    assert artifacts.latest_checkpoint(run_dir) is None and artifacts.checkpoint_names(run_dir) == []
    rerun(caplog, run_dir, f"resume={str(resume).lower()}")
    if resume:  # resume=false removes every checkpoint before the fit: nothing to report
        [warning] = checkpoint_warnings(caplog)
        assert "not a directory" in warning.getMessage()


def test_a_truncated_checkpoint_is_one_warning_line_and_the_run_starts_over(tmp_path, stop_after, caplog, capfd):
    run_dir = tmp_path / "run"
    saved = interrupted(stop_after, run_dir)
    for file in [saved, *saved.rglob("*")]:
        if file.is_file():
            file.write_bytes(file.read_bytes()[:file.stat().st_size // 2])
    capfd.readouterr()
    rerun(caplog, run_dir)
    [warning] = checkpoint_warnings(caplog)
    assert warning.levelno == logging.WARNING and str(saved) in warning.getMessage()
    assert "\n" not in warning.getMessage() and "Traceback" not in capfd.readouterr().err


def assert_same(saved, loaded, where: str = "") -> None:
    """`loaded` equals `saved` all the way down, types included (a list stays a list, an int an int,
    float64 float64; a Generator has the same state and seeds and draws the same numbers)."""
    assert type(loaded) is type(saved), (where, type(saved), type(loaded))
    if isinstance(saved, jax.Array) and checkpoints.is_key(saved):
        assert_same(np.asarray(jax.random.key_data(saved)), np.asarray(jax.random.key_data(loaded)), where)
    elif isinstance(saved, (np.ndarray, np.generic, jax.Array)):
        assert loaded.dtype == saved.dtype and loaded.shape == saved.shape, where
        assert np.array_equal(loaded, saved, equal_nan=saved.dtype.kind in "fc"), where
    elif isinstance(saved, (list, tuple)):
        assert len(loaded) == len(saved), where
        for i, (a, b) in enumerate(zip(saved, loaded)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(saved, dict):
        assert_same(list(saved), list(loaded), f"keys of {where}")
        for key in saved:
            assert_same(saved[key], loaded[key], f"{where}[{key!r}]")
    elif isinstance(saved, np.random.Generator):
        assert_same(saved.bit_generator.state, loaded.bit_generator.state, f"{where} state")
        assert_same(saved.bit_generator.seed_seq.state, loaded.bit_generator.seed_seq.state, f"{where} seeds")
        assert_same(copy.deepcopy(saved).random(8), copy.deepcopy(loaded).random(8), f"{where} draws")
    elif isinstance(saved, float) and math.isnan(saved):
        assert math.isnan(loaded), where
    else:
        assert loaded == saved, where


def test_a_checkpoint_gives_back_the_state_rows_and_every_probe_sample_of_a_ctrnn_run(tmp_path, monkeypatch):
    """The probes of a CTRNN run that tracks the spectrum and the fixed points of a task (a NumPy
    Generator among them): what `load` returns right after a save is what the save was given."""
    save, seen = checkpoints.Checkpoints.save, []

    def save_then_load(self, stage, chunks, state, rows, probes, prune=True):
        path = save(self, stage, chunks, state, rows, probes, prune)
        template = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), state)
        given = copy.deepcopy((state, list(rows), [{name: getattr(p, name) for name in p.checkpointed} for p in probes]))
        seen.append((given, [type(p).__name__ for p in probes], self.load(lambda stage: template)))
        if len(seen) == 2:
            raise Killed(path)
        return path
    monkeypatch.setattr(checkpoints.Checkpoints, "save", save_then_load)
    with pytest.raises(Killed):
        run(compose_cfg(*BASE, "analysis=dynamics", "analysis.track_tasks=[0]", "analysis.pca.enabled=false",
                        "analysis.fixed_points.enabled=false"), tmp_path / "run")
    (state, rows, samples), names, resume = seen[-1]
    assert names == ["SpectrumProbe", "FixedPointTracker"] and (resume.stage, resume.chunks) == (0, 2)
    tracker = samples[1]
    assert tracker["rows"] and tracker["previous"] and isinstance(tracker["rng"], np.random.Generator)
    assert rows[0]["stage"].dtype.kind == "U" and rows[0]["loss"].dtype == np.float64
    assert jax.tree.structure(resume.state) == jax.tree.structure(state)
    for i, (a, b) in enumerate(zip(jax.tree.leaves(state), jax.tree.leaves(resume.state))):
        assert_same(a if checkpoints.is_key(a) else np.asarray(a), b if checkpoints.is_key(b) else np.asarray(b),
                    f"state leaf {i}")
    assert_same(rows, resume.rows, "rows")
    assert_same(samples, resume.probes, "probes")


class Samples(Probe):
    """A probe whose one checkpointed attribute holds whatever a test puts there."""

    checkpointed = ("values",)

    def __init__(self, values):
        self.values = values


class SmallState(NamedTuple):
    """A stand-in TrainState: a parameter, the step and a PRNG key."""
    w: np.ndarray
    step: np.ndarray
    key: jax.Array


def small_state() -> SmallState:
    return SmallState(np.arange(6.0).reshape(2, 3), np.int32(7), jax.random.key(3))


def template_of(state):
    return lambda stage: jax.eval_shape(lambda: state)


def test_every_kind_of_sample_comes_back_as_it_was_saved(tmp_path):
    values = [None, True, 3, 2**70, 0.1, math.nan, -math.inf, "adam", np.float32(1.5), np.int64(-2), np.bool_(True),
              np.array(["adam", "lbfgs"]), np.zeros((0, 3)), np.array([1 + 2j]), (1, (2.0, "x")), [[], {}],
              {0: np.ones(2), "a": [1], (1, 2): None}, np.random.default_rng(5), jnp.arange(3)]
    values[-2].random(3)  # a Generator part-way through its stream
    store = checkpoints.Checkpoints(tmp_path, every_s=1)
    path = store.save(1, 4, small_state(), [], [Samples(values)])
    assert path.name == "0010000004.npz" and artifacts.latest_checkpoint(tmp_path) == path
    resume = store.load(template_of(small_state()))
    assert (resume.stage, resume.chunks, resume.rows) == (1, 4, [])
    assert_same(values, resume.probes[0]["values"])
    probe = Samples(None)
    resume.restore_probes([probe])
    assert_same(values, probe.values)


@pytest.mark.parametrize("value, what", [({1, 2}, r"values\[1\] is a builtins.set"),
                                         (np.array([None]), r"values\[1\] is an array of Python objects"),
                                         ({"a": Path("x")}, r"values\[1\]\['a'\] is a pathlib.PosixPath")])
def test_a_sample_a_checkpoint_cannot_store_fails_the_save_naming_the_probe(tmp_path, value, what):
    with pytest.raises(checkpoints.Unstorable, match=rf"Samples\.values: {what}"):
        checkpoints.Checkpoints(tmp_path, every_s=1).save(0, 1, small_state(), [], [Samples([1, value])])
    assert artifacts.checkpoint_names(tmp_path) == []


def rewrite(path: Path, change) -> None:
    """Write the archive at `path` again with change(members) as its members."""
    with np.load(path) as archive:
        members = change(dict(archive))
    with path.open("wb") as file:
        np.savez(file, **members)


DAMAGE = {
    "a leaf missing": lambda path: rewrite(path, lambda m: {k: v for k, v in m.items() if k != "leaf/00000"}),
    "a leaf of another shape": lambda path: rewrite(path, lambda m: {**m, "leaf/00000": np.zeros(5)}),
    "a node of no known kind": lambda path: rewrite(path, lambda m: {**m, "host": np.frombuffer(
        m["host"].tobytes().replace(b'{"list": [', b'{"eval": [', 1), np.uint8)}),
    "garbled bytes": lambda path: path.write_bytes(path.read_bytes()[:200] + bytes(64) + path.read_bytes()[264:]),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_archive_is_one_warning_line_and_every_checkpoint_goes(tmp_path, caplog, damage):
    store = checkpoints.Checkpoints(tmp_path, every_s=1)
    path = store.save(0, 1, small_state(), [], [Samples([1.0, [2]])])
    DAMAGE[damage](path)
    assert store.load(template_of(small_state())) is None
    [warning] = checkpoint_warnings(caplog)
    assert str(path) in warning.getMessage() and "\n" not in warning.getMessage()
    assert not os.path.lexists(tmp_path / artifacts.CHECKPOINT)


KILLED_SWEEP = ["optimizer=adam", "optimizer.steps=1500", "analysis.eig_every=25", "checkpoint.every_s=1e-9",
                "precision=float64", "seed=0,1,2", "regularizer.strength=0,0.001"]  # 6 jobs of 60 chunks each


def cli(*args: str, cwd: Path) -> subprocess.Popen:
    """The sweep as a process, its output in a file (a pipe nobody reads would stall it)."""
    out = (cwd / f"sweep-{time.monotonic_ns()}.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "rnn_sparsity", "-m", *TINY, *KILLED_SWEEP, *args],
                            cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.out = out
    return proc


def finished_log(proc: subprocess.Popen) -> str:
    proc.wait(timeout=600)
    proc.out.seek(0)
    out = proc.out.read()
    assert proc.returncode == 0, out[-3000:]
    return out


def runs_table(sweep_dir: Path) -> pd.DataFrame:
    """The aggregate's runs.csv of a sweep, without what differs between two sweeps of the same jobs
    (wall time, paths, and the checkpoint period, which the uninterrupted sweep sets to 0)."""
    assert aggregate_main([str(sweep_dir)]) == 0
    table = pd.read_csv(sweep_dir / "aggregate" / "runs.csv")
    return table.drop(columns=["wall_s", "run_dir", "overrides", "checkpoint.every_s"]) \
        .sort_values(["seed", "regularizer.strength"]).reset_index(drop=True)


@pytest.mark.slow  # 3 sweeps of 6 runs each (basic ~50 s, vmap ~80 s)
@pytest.mark.parametrize("launcher", ["basic", "vmap"])
def test_a_sweep_killed_mid_run_reruns_only_the_unfinished_jobs_and_the_killed_one_resumes(tmp_path, launcher):
    """SIGKILL once jobs 0 and 1 are done and job 2 has a checkpoint; the same command again runs
    exactly jobs 2-5, job 2 from its checkpoint, and the sweep aggregates as an uninterrupted one does.
    (vmap: batches of 2, so jobs 0 and 1 finish together and job 2 trains in the second batch.)"""
    launch = [f"hydra/launcher={launcher}", *(["hydra.launcher.batch_size=2"] if launcher == "vmap" else [])]
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = cli(*launch, f"hydra.sweep.dir={killed}", cwd=tmp_path)
    deadline = time.monotonic() + 300
    training = (2, 3) if launcher == "vmap" else (2,)  # vmap: the batch writes both members' checkpoints
    while not (artifacts.is_done(killed / "0") and artifacts.is_done(killed / "1")
               and all(artifacts.latest_checkpoint(killed / str(i)) is not None for i in training)):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not artifacts.is_done(killed / "2")
    untouched = {i: snapshot(killed / str(i)) for i in (0, 1)}

    log = finished_log(cli(*launch, f"hydra.sweep.dir={killed}", cwd=tmp_path))
    assert "resume: 2 of 6 jobs already finished with the same config" in log
    assert f"4 to run, {len(training)} of them with a checkpoint" in log
    assert all(snapshot(killed / str(i)) == untouched[i] for i in untouched)
    assert all("resuming from checkpoint" in (killed / str(i) / "cli.log").read_text() for i in training)
    assert not any((killed / str(i) / artifacts.CHECKPOINT).exists() for i in range(6))

    finished_log(cli(*launch, f"hydra.sweep.dir={whole}", "checkpoint.every_s=0", cwd=tmp_path))
    pd.testing.assert_frame_equal(runs_table(killed), runs_table(whole), check_exact=True)
