"""Runs that share a static configuration, trained as one vmapped program (rnn_sparsity.batch), write
what serial runs write: the same metrics, history and parameters, member by member."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import compose_cfg, mismatches

from rnn_sparsity import artifacts
from rnn_sparsity.batch import run_batch
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
    for i, (a, b) in enumerate(zip(serial_dirs, batch_dirs)):
        assert {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()}
        metrics_a, metrics_b = artifacts.read_metrics(a), artifacts.read_metrics(b)
        assert metrics_a.keys() == metrics_b.keys()
        problems = mismatches(metrics_a, metrics_b, 1e-9, ignore=("wall_s",))
        assert not problems, (overrides[i], problems)
        pd.testing.assert_frame_equal(artifacts.read_history(a), artifacts.read_history(b), rtol=1e-9)
        for prefix in ("", "init/", "mask/"):
            pa, pb = artifacts.read_params(a, prefix), artifacts.read_params(b, prefix)
            assert pa.keys() == pb.keys()
            for k in pa:
                np.testing.assert_allclose(pb[k], pa[k], rtol=1e-9, atol=1e-12)
        arrays_a, arrays_b = artifacts.read_arrays(a / artifacts.ANALYSIS), artifacts.read_arrays(b / artifacts.ANALYSIS)
        assert arrays_a.keys() == arrays_b.keys()
        for k in arrays_a:  # task outputs are stored as float32: equal to one rounding of that
            rtol = 1e-9 if arrays_a[k].dtype != np.float32 else 2.5e-7
            np.testing.assert_allclose(arrays_b[k], arrays_a[k], rtol=rtol, atol=1e-12)
        statuses.append((metrics_a["status"], metrics_a["stages"]))
    assert statuses[4][0] == "diverged" and statuses[5] == ("completed", "adam")  # the special members did
    assert {s for s in statuses[:4]} == {("completed", "adam,lbfgs")}                # what they were set up to


def test_a_bad_member_fails_alone(tmp_path):
    good = [compose_cfg(*BASE, f"seed={seed}") for seed in (0, 1)]
    bad = compose_cfg(*BASE, "regularizer.strength=-1")
    outcomes = run_batch([good[0], bad, good[1]], [tmp_path / str(i) for i in range(3)])
    assert isinstance(outcomes[1], ConfigError) and outcomes[1].key == "regularizer.strength"
    assert outcomes[0]["status"] == outcomes[2]["status"] == "completed"
    assert artifacts.is_done(tmp_path / "0") and artifacts.is_done(tmp_path / "2") and not (tmp_path / "1").exists()
