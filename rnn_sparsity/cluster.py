"""The vmap launcher's cluster mode (`hydra/launcher=vmap_slurm`): each vmapped group, or each batch of
one, is one SLURM job submitted with submitit.

The submitting process composes every job and writes its run directory and `.hydra/` records (as the
vmap launcher does), groups the valid runs by static configuration (experiment.group_runs) and by where
they train (`Place`: their job's hydra.job.env_set and, with hydra.job.chdir, their directory), and
records the invalid ones at once. Each group becomes one job (`batch_size` null: the node splits it into
batches that fit its memory) or one job per `batch_size` members. On the node a `BatchJob` sets Hydra's
state as it was in the submitter (the config store and OmegaConf's resolvers, a user's own included, as
Hydra's submitit and joblib launchers do), enters its place and calls experiment.run_batch on its runs,
exactly what the in-process vmap launcher calls, so every run directory holds the same files. The
submitter waits, logging each job as it ends, and returns each run's metrics or the error that ended it.

A job that SLURM preempts or that reaches its time limit gets SIGUSR2 (`signal_delay_s` before the
limit); the fit holds it until its next chunk boundary, checkpoints every member there
(checkpoints.held_requeue_signal) and hands it to submitit, which calls `BatchJob.checkpoint` and
requeues the same job (at most `max_num_timeout` times for time limits). The requeued job resumes the
batch from those checkpoints. The job's process starts through cluster_entry, which catches the signal
from its first line: SLURM may send it up to a minute early, while the process is still starting. A job cancelled or lost for good leaves its runs incomplete with their
checkpoints: the same sweep command again (the resume sweeper) submits only those, and they resume.

This module imports submitit only when it submits, and JAX only through batch (on the node, and in
the submitter to validate and group).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from omegaconf import DictConfig

log = logging.getLogger(__name__)

CLUSTERS = ("slurm", "local")  # local: submitit's LocalExecutor (the same jobs as processes on this machine)
# the command submitit's job lines start with, in place of `python`: submitit's entry behind cluster_entry
ENTRY = f"{shlex.quote(sys.executable)} -u -m rnn_sparsity.cluster_entry"


@dataclass(frozen=True)
class Place:
    """Where runs train: the environment variables their Hydra job sets (hydra.job.env_set) and the
    working directory (hydra.job.chdir=true: the run's directory; None: wherever the process is). Runs
    share a program only when they share a place."""

    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None

    @classmethod
    def of(cls, env_set: Mapping[str, Any], cwd: str | None = None) -> Place:
        return cls(tuple(sorted((str(name), str(value)) for name, value in env_set.items())), cwd)

    @contextlib.contextmanager
    def entered(self, env: bool = True) -> Iterator[None]:
        """Inside: this working directory and (unless env=False, as Hydra's on_job_end sees it) these
        environment variables; afterwards both as they were."""
        from hydra.core.utils import env_override

        before = os.getcwd()
        with env_override(dict(self.env) if env else {}):
            if self.cwd is not None:
                os.chdir(self.cwd)
            try:
                yield
            finally:
                os.chdir(before)


@dataclass
class BatchJob:
    """One cluster job: experiment.run_batch of its runs on the node, with the submitter's Hydra state
    (Singleton.get_state(): the config store and OmegaConf's resolvers) and in its runs' place.
    Checkpointable: submitit requeues it on preemption and time limits, and the requeued job resumes
    from the runs' checkpoints."""

    cfgs: list
    run_dirs: list
    log_files: list
    batch_size: int | None = None
    fingerprints: list | None = None  # each config's as composed (None: of `cfgs`), see run_batch
    place: Place = field(default_factory=Place)
    hydra_state: Any = None  # hydra.core.singleton.Singleton.get_state() in the submitter

    def __call__(self) -> list:
        from .experiment import run_batch

        # the job's stderr (in the submitit folder) gets what the submitter's console would: INFO, as Hydra's
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        logging.getLogger("jax").setLevel(logging.WARNING)
        self.restore_hydra_state()
        with self.place.entered():
            outcomes = run_batch(self.cfgs, self.run_dirs, batch_size=self.batch_size, log_files=self.log_files,
                                 fingerprints=self.fingerprints)
        return [portable(outcome) for outcome in outcomes]

    def restore_hydra_state(self) -> None:
        """Hydra's state as the submitter had it, as Hydra's own launchers set it on their workers: a
        resolver or config the user registered there (a callback, an imported module) works here too."""
        if self.hydra_state is None:
            return
        from hydra.core.singleton import Singleton
        from hydra.core.utils import setup_globals

        Singleton.set_state(self.hydra_state)
        setup_globals()

    def checkpoint(self, *args: Any, **kwargs: Any):
        """What submitit resubmits when it requeues this job: the job itself (its runs hold the state)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def portable(outcome: Any) -> Any:
    """An outcome as it can travel back from the node: an error that does not pickle becomes a
    RuntimeError with its type and message."""
    if isinstance(outcome, BaseException):
        try:
            pickle.loads(pickle.dumps(outcome))
        except Exception:  # noqa: BLE001
            return RuntimeError(f"{type(outcome).__name__}: {outcome}")
    return outcome


def plan_jobs(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], log_files: Sequence[Path | None],
              batch_size: int | None, places: Sequence[Place] | None = None,
              ) -> tuple[list[list[int]], dict[int, BaseException]]:
    """The cluster jobs as lists of run indices (each group of one static configuration and one place
    whole, or cut into `batch_size` members), and the runs refused before any job (recorded in their run
    directories, as run_batch does)."""
    from .experiment import group_runs, refuse

    groups, _, refused = group_runs(cfgs)
    for i, err in refused.items():
        refuse(Path(run_dirs[i]), log_files[i], err)
    placed = [part for group in groups for part in split_by_place(group, places)]
    jobs = [part[k:k + (batch_size or len(part))] for part in placed
            for k in range(0, len(part), batch_size or len(part))]
    return jobs, dict(refused)


def split_by_place(indices: Sequence[int], places: Sequence[Place] | None) -> list[list[int]]:
    """`indices` cut into the runs of each place, in order of first appearance (one part: no places)."""
    if places is None:
        return [list(indices)]
    parts: dict[Place, list[int]] = {}
    for i in indices:
        parts.setdefault(places[i], []).append(i)
    return list(parts.values())


def executor_parameters(launcher_cfg: dict) -> dict[str, Any]:
    """submitit.AutoExecutor.update_parameters' arguments from the launcher's config keys."""
    params = {"timeout_min": launcher_cfg["timeout_min"], "name": launcher_cfg["name"],
              "slurm_signal_delay_s": launcher_cfg["signal_delay_s"]}
    for key in ("cpus_per_task", "gpus_per_node", "mem_gb"):
        if launcher_cfg.get(key) is not None:
            params[key] = launcher_cfg[key]
    for key in ("partition", "qos", "account", "constraint"):
        if launcher_cfg.get(key) is not None:
            params[f"slurm_{key}"] = launcher_cfg[key]
    if launcher_cfg.get("setup"):
        params["slurm_setup"] = list(launcher_cfg["setup"])
    if launcher_cfg.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(launcher_cfg["additional_parameters"])
    return params


def check_cluster(cluster: str) -> str:
    """The launcher's `cluster` key, refused (before any job is composed) unless submitit can run it here."""
    if cluster not in CLUSTERS:
        raise ValueError(f"hydra.launcher.cluster={cluster}: must be one of {' | '.join(CLUSTERS)}")
    return cluster


def run_on_cluster(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], log_files: Sequence[Path | None],
                   launcher_cfg: dict, fingerprints: Sequence[str] | None = None,
                   places: Sequence[Place] | None = None) -> list[Any]:
    """Submit the runs as cluster jobs (launcher_cfg: the vmap_slurm launcher's keys; fingerprints and
    places: each run's, see run_batch and Place), wait for them all, polling every `poll_s`, and return
    each run's metrics or error."""
    import submitit
    from hydra.core.singleton import Singleton

    cluster = check_cluster(launcher_cfg["cluster"])
    outcomes: list[Any] = [None] * len(cfgs)
    jobs, refused = plan_jobs(cfgs, run_dirs, log_files, launcher_cfg["batch_size"], places)
    for i, err in refused.items():
        outcomes[i] = err
    if not jobs:
        return outcomes
    executor = submitit.AutoExecutor(folder=launcher_cfg["submitit_folder"], cluster=cluster,
                                     slurm_max_num_timeout=launcher_cfg["max_num_timeout"],
                                     **{f"{cluster}_python": ENTRY})
    executor.update_parameters(**executor_parameters(launcher_cfg))
    hydra_state = Singleton.get_state()  # once for every job: it copies the whole config store
    submitted = []
    for indices in jobs:
        work = BatchJob([cfgs[i] for i in indices], [Path(run_dirs[i]) for i in indices],
                        [log_files[i] for i in indices], launcher_cfg["batch_size"],
                        fingerprints=None if fingerprints is None else [fingerprints[i] for i in indices],
                        place=Place() if places is None else places[indices[0]], hydra_state=hydra_state)
        submitted.append((executor.submit(work), indices))
    log.info("submitted %d %s job%s for %d runs: %s", len(submitted), cluster, "s" * (len(submitted) > 1),
             sum(map(len, jobs)), ", ".join(f"{job.job_id} ({len(ix)} runs)" for job, ix in submitted))
    start, pending = time.perf_counter(), list(submitted)
    while pending:
        for job, indices in [entry for entry in pending if entry[0].done()]:
            pending.remove((job, indices))
            try:
                results = job.result()
            except Exception as err:  # noqa: BLE001 (cancelled, killed, failed on the node: its runs' error)
                results = [err] * len(indices)
            for i, result in zip(indices, results):
                outcomes[i] = result
            failed = sum(isinstance(r, BaseException) for r in results)
            log.info("job %s ended after %.0f s: %d of %d runs finished%s (%d jobs left)", job.job_id,
                     time.perf_counter() - start, len(results) - failed, len(results),
                     f", {failed} failed: {first_error(results)}" if failed else "", len(pending))
        if pending:
            time.sleep(launcher_cfg["poll_s"])
    return outcomes


def first_error(results: Sequence[Any]) -> str:
    err = next(r for r in results if isinstance(r, BaseException))
    return f"{type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
