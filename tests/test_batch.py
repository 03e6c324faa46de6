"""Runs that share a static configuration, trained as one vmapped program (rnn_sparsity.experiment), write
what serial runs write: the same metrics, history and parameters, member by member."""

from __future__ import annotations

import pytest
from helpers import assert_same_run, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.experiment import run_batch
from rnn_sparsity.config import ConfigError
from rnn_sparsity.experiment import run

GRID = [[f"regularizer.strength={lam}", f"model.sparsity={s}", f"seed={seed}"]
        for lam, s, seed in ((0, 0, 0), (0.1, 0, 1), (0, 0.5, 0), (0.1, 0.5, 2))]
SPECIAL = [["optimizer.lr=1.0", "optimizer.divergence_factor=1.2", "seed=3"],  # diverges at step 1
           ["optimizer.loss_threshold=10", "seed=4"]]  # its best Adam loss is below 10: no L-BFGS
BASE = ["precision=float64", "analysis.figures=false"]


@pytest.mark.slow  # 12 trainings (~15 s): the default suite keeps within its 5 minutes
def test_a_batched_grid_writes_what_serial_runs_write(tmp_path):
    overrides = [[*BASE, *o] for o in GRID + SPECIAL]
    cfgs = [compose_cfg(*o) for o in overrides]
    serial_dirs = [tmp_path / "serial" / str(i) for i in range(len(cfgs))]
    batch_dirs = [tmp_path / "batch" / str(i) for i in range(len(cfgs))]
    for cfg, run_dir in zip(cfgs, serial_dirs):
        run(cfg, run_dir)
    outcomes = run_batch([compose_cfg(*o) for o in overrides], batch_dirs)
    assert all(isinstance(o, dict) for o in outcomes), outcomes

    statuses = []
    for a, b in zip(serial_dirs, batch_dirs):
        metrics = assert_same_run(a, b)
        statuses.append((metrics["status"], metrics["stages"]))
    assert statuses[4][0] == "diverged" and statuses[5] == ("completed", "adam")  # the special members did
    assert {s for s in statuses[:4]} == {("completed", "adam,lbfgs")}                # what they were set up to


@pytest.mark.slow  # ~18 s cold; test_vmap_launcher checks the same through the CLI
def test_a_bad_member_fails_alone(tmp_path):
    good = [compose_cfg(*BASE, f"seed={seed}") for seed in (0, 1)]
    bad = compose_cfg(*BASE, "regularizer.strength=-1")
    outcomes = run_batch([good[0], bad, good[1]], [tmp_path / str(i) for i in range(3)])
    assert isinstance(outcomes[1], ConfigError) and outcomes[1].key == "regularizer.strength"
    assert outcomes[0]["status"] == outcomes[2]["status"] == "completed"
    assert artifacts.is_done(tmp_path / "0") and artifacts.is_done(tmp_path / "2") and not artifacts.is_done(tmp_path / "1")
    recorded = artifacts.read_metrics(tmp_path / "1")  # refused before any compute, and recorded
    assert recorded["status"] == "failed" and "regularizer.strength" in recorded["error"]


@pytest.mark.slow  # 6 trainings of the demo's network (~30 s)
def test_batched_fista_writes_what_serial_fista_writes(tmp_path):
    """Proximal L1 (the demo's FISTA stage, a backtracking while-loop under vmap), float64."""
    grid = [(0, 0.0), (1, 0.001), (0, 0.003)]
    overrides = [["sweeps=demo", "precision=float64", "optimizer.steps=100", "optimizer.lbfgs_steps=100",
                  "analysis.figures=false", f"seed={seed}", f"regularizer.strength={lam}"] for seed, lam in grid]
    for i, o in enumerate(overrides):
        run(compose_cfg(*o, tiny=False), tmp_path / "serial" / str(i))
    outcomes = run_batch([compose_cfg(*o, tiny=False) for o in overrides], [tmp_path / "batch" / str(i) for i in range(3)])
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    for i in range(3):
        metrics = assert_same_run(tmp_path / "serial" / str(i), tmp_path / "batch" / str(i))
        assert metrics["stages"] == "adam,fista"
    assert artifacts.read_metrics(tmp_path / "serial" / "2")["sparsity"] > 0.05  # the soft threshold made zeros


SHARDED = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import jax
from helpers import compose_cfg, assert_same_run
from rnn_sparsity.experiment import run_batch
from rnn_sparsity.fit import member_sharding
from rnn_sparsity.experiment import run
root = Path({root!r})
assert len(jax.devices()) == 2 and member_sharding(3)[1] == 4  # 3 members padded to 2 x 2
overrides = [["precision=float64", "optimizer=adam", f"seed={{seed}}", f"regularizer.strength={{lam}}"]
             for seed, lam in ((0, 0.0), (1, 0.1), (2, 0.0))]
for i, o in enumerate(overrides):
    run(compose_cfg(*o), root / "serial" / str(i))
for name, size in (("sharded", None), ("batches_of_2", 2)):
    dirs = [root / name / str(i) for i in range(3)]
    outcomes = run_batch([compose_cfg(*o) for o in overrides], dirs, batch_size=size)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    for i in range(3):
        assert_same_run(root / "serial" / str(i), dirs[i])
print("ok")
"""


@pytest.mark.slow  # a fresh process, 9 trainings (~35 s)
def test_members_sharded_over_two_host_devices_and_split_in_batches(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    code = SHARDED.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.slow  # a batch and its serial runs (~11 s cold)
def test_runs_differing_only_in_their_data_train_as_one_program_and_write_what_serial_runs_write(tmp_path):
    """A task's data keys (the rebound study's data seed and target noise) change only its data arrays,
    which are traced arguments: the runs share one trainer, train as one batch, and each member sees its
    own data (its initial loss is its own noise floor), as a serial run of it does."""
    from test_mlp_teacher import STUDENT

    from rnn_sparsity.build import make_run, set_precision, static_key

    grid = [["task.noise_std=0.0", "task.data_seed=0"], ["task.noise_std=0.01", "task.data_seed=0"],
            ["task.noise_std=0.01", "task.data_seed=1"]]
    overrides = [[*STUDENT, "optimizer.steps=4", "task.n_train=500", "task.n_test=200", *o] for o in grid]
    cfgs = [compose_cfg(*o, tiny=False) for o in overrides]
    set_precision("float64")
    built = [make_run(cfg) for cfg in cfgs]
    assert len({static_key(cfg, p) for cfg, (p, _, _) in zip(cfgs, built)}) == 1  # one static configuration
    assert len({id(trainer.programs) for _, trainer, _ in built}) == 1  # one compiled trainer
    for i, o in enumerate(overrides):
        run(compose_cfg(*o, tiny=False), tmp_path / "serial" / str(i))
    outcomes = run_batch(cfgs, [tmp_path / "batch" / str(i) for i in range(len(cfgs))])
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    initial = [assert_same_run(tmp_path / "serial" / str(i), tmp_path / "batch" / str(i))["initial_loss"]
               for i in range(len(cfgs))]
    assert initial[0] < 1e-30 and initial[1] == pytest.approx(1e-4, rel=0.2) and initial[2] != initial[1]
