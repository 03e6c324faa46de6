"""The vmap launcher's cluster mode (rnn_sparsity/cluster.py) without a cluster: how a sweep is cut
into jobs, and a sweep through submitit's local executor (real processes) that ends with the files the
in-process vmap launcher writes. tests/test_slurm.py runs the same through a real SLURM."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import TINY, assert_same_run, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.cluster import executor_parameters, plan_jobs


def test_jobs_are_whole_groups_or_batches_of_them_and_invalid_runs_are_refused_before_any_job(tmp_path):
    cfgs = [compose_cfg(f"seed={seed}") for seed in range(5)]  # one group (the seed is traced)
    cfgs.insert(2, compose_cfg("model.n_units=8", "seed=9"))  # another static configuration
    cfgs.append(compose_cfg("optimizer.lr=-1"))  # invalid
    dirs = [tmp_path / str(i) for i in range(len(cfgs))]
    jobs, refused = plan_jobs(cfgs, dirs, [None] * len(cfgs), batch_size=None)
    assert jobs == [[0, 1, 3, 4, 5], [2]] and list(refused) == [6]
    assert artifacts.read_metrics(dirs[6])["status"] == "failed" and "lr" in artifacts.read_metrics(dirs[6])["error"]
    jobs, _ = plan_jobs(cfgs, dirs, [None] * len(cfgs), batch_size=2)
    assert jobs == [[0, 1], [3, 4], [5], [2]]


def test_executor_parameters_name_submitits_keys():
    cfg = {"timeout_min": 30, "name": "cli", "signal_delay_s": 60, "cpus_per_task": 4, "gpus_per_node": 1,
           "mem_gb": None, "partition": "gpu", "qos": None, "setup": ["module load cuda"],
           "additional_parameters": {"exclusive": True}}
    assert executor_parameters(cfg) == {
        "timeout_min": 30, "name": "cli", "slurm_signal_delay_s": 60, "cpus_per_task": 4, "gpus_per_node": 1,
        "slurm_partition": "gpu", "slurm_setup": ["module load cuda"], "slurm_additional_parameters": {"exclusive": True}}


def test_a_sweep_through_submitits_local_executor_writes_what_the_vmap_launcher_writes(tmp_path):
    grid = [*TINY, "precision=float64", "regularizer.strength=0,0.01", "seed=0"]
    for name, launcher in (("inprocess", ["hydra/launcher=vmap"]),
                           ("local", ["hydra/launcher=vmap_slurm", "hydra.launcher.cluster=local",
                                      "hydra.launcher.poll_s=0.2"])):
        with open(tmp_path / f"{name}.log", "w") as log:
            code = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", *launcher, *grid,
                                   f"hydra.sweep.dir={tmp_path / name}"], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=300).returncode
        assert code == 0, (tmp_path / f"{name}.log").read_text()
    assert "submitted 1 local job for 2 runs" in (tmp_path / "local.log").read_text()
    for i in range(2):
        assert_same_run(tmp_path / "inprocess" / str(i), tmp_path / "local" / str(i), rtol=0)


def test_an_unknown_cluster_is_refused():
    from rnn_sparsity.cluster import run_on_cluster

    with pytest.raises(ValueError, match="hydra.launcher.cluster=pbs: must be one of slurm | local"):
        run_on_cluster([compose_cfg()], ["x"], [None], {"cluster": "pbs", "batch_size": None})
