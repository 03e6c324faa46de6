"""The vmap launcher's cluster mode (rnn_sparsity/cluster.py) without a cluster: how a sweep is cut
into jobs, what a job takes to its node (Hydra's state, its runs' place), and a sweep through submitit's
local executor (real processes) that ends with the files the in-process vmap launcher writes.
tests/test_slurm.py runs the same through a real SLURM."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY, assert_same_run, compose_cfg

from rnn_sparsity import artifacts
from rnn_sparsity.cluster import ENTRY, BatchJob, executor_parameters, plan_jobs

PLACE_VAR = "RNN_SPARSITY_PLACE_TEST"


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


def test_a_requeue_signal_while_the_jobs_process_starts_is_caught_not_fatal(tmp_path):
    """SLURM may send SIGUSR2 up to a minute before it was asked for, while the job's Python is still
    importing, before submitit installs its handler: started plainly the process dies of it; started
    through cluster_entry (submitit's `python` here) it records the signal and runs the module it names."""
    (tmp_path / "starting.py").write_text(
        "import os, signal, sys, time\nos.kill(os.getpid(), signal.SIGUSR2)\ntime.sleep(0.05)\n"
        "from rnn_sparsity import cluster_entry\nprint('early', cluster_entry.EARLY, sys.argv[1:])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    plain = subprocess.run([sys.executable, "-u", "-m", "starting"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == -signal.SIGUSR2, plain
    caught = subprocess.run([*shlex.split(ENTRY), "-u", "-m", "starting", "folder"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert caught.returncode == 0 and f"early [{int(signal.SIGUSR2)}] ['folder']" in caught.stdout, caught


def test_an_unknown_cluster_is_refused_when_the_launcher_is_made():
    from hydra_plugins.rnn_sparsity_vmap.vmap_slurm_launcher import VmapSlurmLauncher

    with pytest.raises(ValueError, match="hydra.launcher.cluster=pbs: must be one of slurm | local"):
        VmapSlurmLauncher(cluster="pbs")
    assert VmapSlurmLauncher(cluster="local", batch_size=2).cluster == {"batch_size": 2, "cluster": "local"}


def test_runs_of_one_group_in_different_places_are_different_jobs(tmp_path):
    """Runs share a job only where they share a place: their env_set and, with chdir, their directory."""
    from rnn_sparsity.cluster import Place

    cfgs = [compose_cfg(f"seed={seed}") for seed in range(4)]  # one static configuration
    here, there = Place.of({"VAR": "1"}), Place.of({"VAR": "2"})
    places = [here, there, Place.of({"VAR": 1}), Place.of({"VAR": "1"}, cwd=str(tmp_path))]
    jobs, _ = plan_jobs(cfgs, [tmp_path / str(i) for i in range(4)], [None] * 4, batch_size=None, places=places)
    assert jobs == [[0, 2], [1], [3]]


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_a_batch_job_trains_in_its_place_with_the_submitters_hydra_state(tmp_path, monkeypatch):
    """On the node, run_batch runs with Hydra's state as the submitter had it (a resolver registered
    there), the place's env_set and working directory, and the runs' fingerprints; both as before after."""
    import rnn_sparsity.experiment as experiment
    from hydra.core.singleton import Singleton
    from omegaconf import OmegaConf

    from rnn_sparsity.cluster import Place

    seen = {}

    def run_batch(cfgs, run_dirs, **kwargs):
        seen.update(env=os.environ.get(PLACE_VAR), cwd=os.getcwd(), fingerprints=kwargs["fingerprints"],
                    resolved=OmegaConf.create({"x": "${place_test:}"}).x)
        return [{"status": "completed"}]

    monkeypatch.setattr(experiment, "run_batch", run_batch)
    OmegaConf.register_new_resolver("place_test", lambda: "the submitter's")
    state = Singleton.get_state()
    OmegaConf.clear_resolver("place_test")  # as on a node, which never registered it
    launch_dir = os.getcwd()
    job = BatchJob([compose_cfg()], [tmp_path / "0"], [None], fingerprints=["f0"],
                   place=Place.of({PLACE_VAR: "on"}, cwd=str(tmp_path)), hydra_state=state)
    assert job() == [{"status": "completed"}]
    assert seen == {"env": "on", "cwd": str(tmp_path), "fingerprints": ["f0"], "resolved": "the submitter's"}
    assert PLACE_VAR not in os.environ and os.getcwd() == launch_dir


@pytest.mark.slow  # a fresh process running a job (~6-12 s cold)
@pytest.mark.usefixtures("hydra_restore_singletons")
def test_the_submitters_resolvers_reach_a_fresh_process(tmp_path):
    """A BatchJob as submitit sends it (cloudpickle) to a process that never registered the resolver:
    it resolves there once the job has set Hydra's state."""
    import cloudpickle
    from hydra.core.singleton import Singleton
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("node_test", lambda: "the submitter's")
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps(BatchJob([], [], [], hydra_state=Singleton.get_state())))
    script = ("import pickle, sys\nfrom omegaconf import OmegaConf\njob = pickle.load(open(sys.argv[1], 'rb'))\n"
              "print(OmegaConf.has_resolver('node_test'))\njob.restore_hydra_state()\n"
              "print(OmegaConf.create({'x': '${node_test:}'}).x)\n")
    tests = str(Path(__file__).parent)  # what this process's config store holds (a test's schema) unpickles there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "job.pkl")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.stdout.splitlines() == ["False", "the submitter's"], proc.stderr[-2000:]
