"""Sweeps through a real SLURM cluster (scripts/local-slurm.sh: slurmctld, slurmd, slurmdbd on this
machine, no mocked scheduler): hydra/launcher=submitit_slurm and the vmap launcher's cluster mode
complete and aggregate, a job cancelled mid-training resumes when the sweep is run again, a job
that gets the scheduler's requeue signal (what SLURM sends before a time limit or a preemption)
checkpoints at once, is requeued and resumes, and so does one that reaches a real 1-minute time limit. Marked `slurm` (`pytest -m slurm`, .ci/run); skipped,
with the script's reason, where no cluster can be started (not root, no slurm-wlm and no apt)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock
from helpers import TINY, assert_same_run

from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import main as aggregate_main

pytestmark = pytest.mark.slurm

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local-slurm.sh"
GRID = [*TINY, "precision=float64", "regularizer.strength=0,0.01", "seed=0,1"]
# 2 runs of ~10 s of training each on one core, a checkpoint every second
LONG = [*TINY, "precision=float64", "optimizer.steps=12000", "regularizer.strength=0,0.001"]
ON_ONE_CORE = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]
VMAP_SLURM = ["hydra/launcher=vmap_slurm", *ON_ONE_CORE, "hydra.launcher.poll_s=0.5"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict:
    """The environment for SLURM clients: the local cluster, started if it is not up (one test process
    at a time: the script may install packages); stopped again at the end if this fixture started it."""
    with FileLock(str(tmp_path_factory.getbasetemp().parent / "local-slurm.lock")):
        was_up = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
        proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=1200)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conf = re.search(r"export SLURM_CONF=(\S+)", subprocess.run([str(SCRIPT), "env"], capture_output=True,
                                                                text=True, check=True).stdout).group(1)
    yield dict(os.environ, SLURM_CONF=conf)
    if not was_up:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)


def sweep(args: list[str], sweep_dir: Path, env: dict | None = None, wait: bool = True):
    """`rnn-sparsity -m ARGS` into sweep_dir, its output in sweep_dir.log: the exit code, or the process."""
    log = open(sweep_dir.with_suffix(".log"), "a")
    proc = subprocess.Popen([sys.executable, "-m", "rnn_sparsity", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc.wait(timeout=900) if wait else proc


def output(sweep_dir: Path) -> str:
    return sweep_dir.with_suffix(".log").read_text()


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM jobs of a sweep: submitit's folder holds one directory per job, or per task of an
    array (`<array>_<task>`, next to the array's own `<array>`, left out)."""
    names = sorted((p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name[0].isdigit()),
                   key=lambda name: [int(part) for part in name.split("_")])  # in submission order
    return [name for name in names if not any(other.startswith(f"{name}_") for other in names)]


def states(ids: list[str], env: dict, settle_s: float = 60) -> set[str]:
    """The jobs' final states in SLURM's accounting (sacct), as the scheduler recorded them: slurmdbd
    records a job's end a moment after the job has ended (COMPLETING, or a requeued job's REQUEUED
    record first), so this waits up to settle_s for every job to have a final state."""
    deadline = time.monotonic() + settle_s
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", ",".join(ids)], capture_output=True,
                             text=True, env=env, check=True).stdout
        found = {line.split()[0] for line in out.splitlines() if line.strip()}
        if not found & {"PENDING", "RUNNING", "COMPLETING", "REQUEUED"} or time.monotonic() > deadline:
            return found
        time.sleep(1)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_4_job_sweep_with_submitit_slurm_and_a_vmap_group_through_slurm_complete_and_aggregate(tmp_path, slurm):
    """hydra-submitit-launcher: 4 SLURM jobs (an array); the vmap launcher's cluster mode with
    batch_size=2: one group of 4 members as 2 SLURM jobs. Both end with the same run directories (to
    1e-9, vmapped against serial) and aggregate to 4 completed runs."""
    plain, grouped = tmp_path / "submitit_slurm", tmp_path / "vmap_slurm"
    assert sweep(["hydra/launcher=submitit_slurm", *GRID, *ON_ONE_CORE], plain, slurm) == 0, output(plain)
    assert sweep([*VMAP_SLURM, *GRID, "hydra.launcher.batch_size=2"], grouped, slurm) == 0, output(grouped)
    assert len(job_ids(plain)) == 4 and len(job_ids(grouped)) == 2
    assert states(job_ids(plain) + job_ids(grouped), slurm) == {"COMPLETED"}
    assert "submitted 2 slurm jobs for 4 runs" in output(grouped)
    for i in range(4):
        assert_same_run(plain / str(i), grouped / str(i))
    for sweep_dir in (plain, grouped):
        assert aggregate_main([str(sweep_dir)]) == 0
        runs = pd.read_csv(sweep_dir / "aggregate" / "runs.csv")
        assert len(runs) == 4 and set(runs.status) == {"completed"}


def test_a_job_cancelled_mid_training_resumes_from_its_checkpoint_when_the_sweep_runs_again(tmp_path, slurm):
    reference = tmp_path / "whole"
    assert sweep(["hydra/launcher=vmap", *LONG], reference) == 0, output(reference)
    cancelled = tmp_path / "cancelled"
    args = [*VMAP_SLURM, *LONG, "checkpoint.every_s=1"]
    proc = sweep(args, cancelled, slurm, wait=False)
    wait_for(lambda: artifacts.latest_checkpoint(cancelled / "1") is not None, 300, "a checkpoint")
    [job] = job_ids(cancelled)
    subprocess.run(["scancel", job], env=slurm, check=True)
    assert proc.wait(timeout=300) != 0  # its jobs failed: Hydra raises their error
    assert "CANCELLED" in output(cancelled) and not any(artifacts.is_done(cancelled / str(i)) for i in range(2))
    assert sweep(args, cancelled, slurm) == 0, output(cancelled)  # the same command again
    assert "0 of 2 jobs already finished" in output(cancelled) and "2 to run, 2 of them with a checkpoint" in output(cancelled)
    [_, rerun] = job_ids(cancelled)
    steps = re.findall(r"resuming from checkpoint \S+: step (\d+)", (cancelled / ".submitit" / rerun / f"{rerun}_0_log.err").read_text())
    assert len(steps) == 2 and int(steps[0]) > 0
    for i in range(2):
        assert_same_run(reference / str(i), cancelled / str(i), rtol=0)


def test_a_job_given_the_requeue_signal_checkpoints_then_and_resumes_requeued(tmp_path, slurm):
    """SIGUSR2, which SLURM sends submitit's jobs signal_delay_s before the time limit and on preemption:
    with no periodic checkpoint (every 1e6 s) the one the requeued job resumes from was written when the
    signal came, at the next chunk boundary. The job is requeued by submitit, not by the test."""
    reference = tmp_path / "whole"
    assert sweep(["hydra/launcher=vmap", *LONG], reference) == 0, output(reference)
    requeued = tmp_path / "requeued"
    proc = sweep([*VMAP_SLURM, *LONG, "checkpoint.every_s=1e6"], requeued, slurm, wait=False)
    log_file = lambda: requeued / ".submitit" / job_ids(requeued)[0] / f"{job_ids(requeued)[0]}_0_log.err"  # noqa: E731
    wait_for(lambda: (requeued / ".submitit").exists() and job_ids(requeued) and log_file().exists()
             and "stage adam" in log_file().read_text(), 300, "training to start")
    time.sleep(2)
    subprocess.run(["scancel", "--signal=USR2", job_ids(requeued)[0]], env=slurm, check=True)
    assert proc.wait(timeout=600) == 0, output(requeued)
    text = log_file().read_text()
    assert "handing over to the cluster's handler" in text and "requeu" in text.lower()
    steps = re.findall(r"resuming from checkpoint \S+: step (\d+)", text)
    assert len(steps) == 2 and int(steps[0]) > 0, text[-3000:]
    assert states(job_ids(requeued), slurm) == {"COMPLETED"}
    for i in range(2):
        assert_same_run(reference / str(i), requeued / str(i), rtol=0)


def test_a_job_reaching_its_time_limit_is_requeued_and_resumes_to_the_same_files(tmp_path, slurm):
    """The real thing: a 1-minute time limit, SIGUSR2 from SLURM 40 s before it (submitit's
    --signal=USR2@40; SLURM looks every ~30 s), about 50 s of training: at least one requeue at the time
    limit, each attempt resuming from the checkpoint written when the signal came."""
    longer = [*LONG, "optimizer.steps=80000", "checkpoint.every_s=1e6"]
    reference = tmp_path / "whole"
    assert sweep(["hydra/launcher=vmap", *longer], reference) == 0, output(reference)
    limited = tmp_path / "limited"
    args = ["hydra/launcher=vmap_slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=1",
            "hydra.launcher.signal_delay_s=40", "hydra.launcher.poll_s=0.5",
            "hydra.launcher.max_num_timeout=8", *longer]  # 5 attempts on this machine once (4 requeues)
    assert sweep(args, limited, slurm) == 0, output(limited)
    [job] = job_ids(limited)
    text = (limited / ".submitit" / job / f"{job}_0_log.err").read_text()
    requeues = text.count(f"Requeued job {job}")
    assert requeues >= 1 and "this job is timed-out" in text
    steps = [int(s) for s in re.findall(r"resuming from checkpoint \S+: step (\d+)", text)]
    # both members resume after each requeue that reached a new attempt; a requeue whose signal lands as the
    # last attempt finishes starts none (seen once: 3 requeues, 2 resumes each), so count resumes, not requeues
    assert len(steps) % 2 == 0 and 1 <= len(steps) // 2 <= requeues and all(s > 0 for s in steps), text[-3000:]
    for i in range(2):
        assert_same_run(reference / str(i), limited / str(i), rtol=0)
