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


def test_executor_parameters_are_ones_submitit_accepts():
    """Every key is one of submitit's (checked against its own lists, so a name it does not know, as
    slurm_max_num_timeout among the update parameters once was, fails here and not on a login node)."""
    import submitit

    cfg = {"timeout_min": 30, "name": "cli", "signal_delay_s": 60, "cpus_per_task": 4, "gpus_per_node": 1,
           "mem_gb": None, "partition": "gpu", "qos": None, "account": "lab", "constraint": "a100",
           "setup": ["module load cuda"], "additional_parameters": {"exclusive": True}}
    params = executor_parameters(cfg)
    assert params == {
        "timeout_min": 30, "name": "cli", "slurm_signal_delay_s": 60, "cpus_per_task": 4, "gpus_per_node": 1,
        "slurm_partition": "gpu", "slurm_account": "lab", "slurm_constraint": "a100",
        "slurm_setup": ["module load cuda"], "slurm_additional_parameters": {"exclusive": True}}  # None: left out
    shared, slurm = submitit.AutoExecutor._valid_parameters(), submitit.SlurmExecutor._valid_parameters()
    unknown = [key for key in params
               if key not in shared and not (key.startswith("slurm_") and key[len("slurm_"):] in slurm)]
    assert not unknown


@pytest.mark.slow  # two sweeps, one through submitit's local executor (~20 s); tests/test_slurm.py runs the same path
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


def test_an_unknown_cluster_is_refused_when_the_launcher_is_made():
    from hydra_plugins.rnn_sparsity_vmap.vmap_slurm_launcher import VmapSlurmLauncher

    with pytest.raises(ValueError, match="hydra.launcher.cluster=pbs: must be one of slurm | local"):
        VmapSlurmLauncher(cluster="pbs")
    assert VmapSlurmLauncher(cluster="local", batch_size=2).cluster == {"batch_size": 2, "cluster": "local"}
