"""`hydra/launcher=vmap`: the jobs of a sweep that share a static configuration train as one program.

    rnn-sparsity -m sweeps=demo hydra/launcher=vmap [hydra.launcher.batch_size=8]

Hydra finds this module in the `hydra_plugins` namespace package, so an installed wheel has it. It
launches like Hydra's basic launcher, in this process: every job is composed and gets the job number,
run directory, `.hydra/` records and log file the basic launcher gives it (Hydra's run_job, around a
task function that trains nothing: while the job's HydraConfig is set it keeps the job's config
fingerprint, its config resolved, so that `${hydra:job.num}` and the like resolve as they do for the
basic launcher, and where the job must train). Then, instead of calling the task function once per job,
it hands all of them to `rnn_sparsity.experiment.run_batch`, which validates each (a bad job fails
alone, with its message, recorded in its metrics.json), groups them by static configuration and trains
each group as one vmapped program (groups of one take the serial path).

Hydra's job contracts hold around the real training, as run_job keeps them around a task function:
the callbacks' on_job_start fires before a job trains and on_job_end after, with its real JobReturn
(the job's objective, rnn_sparsity.artifacts.objective_value, as the app returns; or its error, status
FAILED), each with that job's HydraConfig set; a job trains with its `hydra.job.env_set` variables set,
and with `hydra.job.chdir=true` in its run directory (jobs train together only where they share both:
rnn_sparsity.cluster.Place). Hydra raises a failed job's error once every job has run.

It runs rnn-sparsity experiments only: another app's config is refused in one line at setup.

Each job is composed once: the sweeper's composition of a job (to check it composes) is kept and
launched from (rnn_sparsity/composition.py, installed here and by the resume sweeper).

This module imports neither JAX nor rnn_sparsity until it launches: Hydra imports every plugin at start
(with exec_module, outside sys.modules: hence no `from __future__ import annotations`, which breaks the
dataclass there).
"""



import contextlib
import copy
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class VmapLauncherConf:
    _target_: str = "hydra_plugins.rnn_sparsity_vmap.vmap_launcher.VmapLauncher"
    # members per compiled program; null: as many as the memory estimate lets fit (rnn_sparsity.build)
    batch_size: Optional[int] = None
    # one bar per group on stderr (members done and diverged, steps, ETA); false: one log line per chunk
    progress: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="vmap", node=VmapLauncherConf, provider="rnn_sparsity")


class NotAnExperiment(CompactHydraException):
    """Another Hydra app chose this launcher (Hydra prints a compact exception as its one line)."""


@dataclass
class ComposedJob:
    """One job as run_job composed it, what its training needs, and its JobReturn (whose status and
    return value are set once it has trained)."""

    config: DictConfig  # the job's whole config, Hydra's node included: what Hydra's callbacks get
    ret: JobReturn
    log_file: Optional[Path]
    cfg: Optional[DictConfig] = None  # the task's config, resolved while the job's HydraConfig was set
    fingerprint: Optional[str] = None  # of the task's config as composed (unresolved), as the resume sweeper's
    place: Any = None  # rnn_sparsity.cluster.Place: its env_set and, with hydra.job.chdir, its directory
    error: Optional[BaseException] = None  # why its config could not be resolved: it fails without training

    @property
    def run_dir(self) -> Path:
        return Path(self.ret.hydra_cfg.hydra.runtime.output_dir)


class NoJobCallbacks:
    """The callbacks run_job fires around the composing task function: none (a job's callbacks fire
    around its training)."""

    def on_job_start(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_job_end(self, *args: Any, **kwargs: Any) -> None:
        pass


class VmapLauncher(Launcher):
    name = "vmap"

    def __init__(self, batch_size: Optional[int] = None, progress: bool = True) -> None:
        super().__init__()
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"hydra.launcher.batch_size={batch_size}: must be >= 1 (or null: from memory)")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.progress = bool(progress)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        refuse_other_apps(config, self.name)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        from rnn_sparsity.composition import compose_once  # no JAX there

        compose_once(hydra_context)  # the sweeper's composition of each job serves the launch

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_indexed(list(enumerate(job_overrides, start=initial_job_idx)))

    def launch_indexed(self, jobs: Sequence[Tuple[int, Sequence[str]]]) -> Sequence[JobReturn]:
        """Launch jobs with the given numbers (the resume sweeper's, which leaves finished ones out):
        all of them are grouped together, whatever the gaps between their numbers."""
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(jobs)} jobs as vmapped groups")
        composed = []
        for idx, overrides in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            composed.append(self.compose(idx, overrides))
            # the job's file handler off, as the basic launcher does: the next job's line is not in its log
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

        logging.getLogger("jax").setLevel(logging.WARNING)
        for job in composed:
            if job.error is not None:  # as run_job with a task function that raises: start, then FAILED
                self.start(job)
                self.end(job, job.error)
        self.train([job for job in composed if job.error is None])
        return [job.ret for job in composed]

    def compose(self, idx: int, overrides: Sequence[str]) -> ComposedJob:
        """Job `idx` composed as the basic launcher composes it (run_job: number, run directory, .hydra/
        records, log file) around a task function that trains nothing but keeps, while the job's
        HydraConfig, env_set and working directory are in place, its fingerprint, its resolved config
        and its place."""
        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.take(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        kept: dict = {}
        ret = run_job(hydra_context=dataclasses.replace(self.hydra_context, callbacks=NoJobCallbacks()),
                      task_function=_keeper(kept, launch_dir=os.getcwd()), config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        return ComposedJob(config=sweep_config, ret=ret, log_file=_log_file(ret), **kept)

    def train(self, jobs: List[ComposedJob]) -> None:
        """Train the jobs in this process, those of each place together (run_batch groups them by static
        configuration), each place's between its jobs' on_job_start and on_job_end."""
        from rnn_sparsity.experiment import run_batch  # JAX is imported here, in the process that trains

        for place, group in _by_place(jobs):
            for job in group:
                self.start(job)
            with place.entered():
                outcomes = run_batch([job.cfg for job in group], [job.run_dir for job in group],
                                     batch_size=self.batch_size, progress=self.progress,
                                     log_files=[job.log_file for job in group],
                                     fingerprints=[job.fingerprint for job in group])
            for job, outcome in zip(group, outcomes):
                self.end(job, outcome)

    def start(self, job: ComposedJob) -> None:
        """Hydra's callbacks' on_job_start, as run_job fires it: the job's HydraConfig, env_set and
        working directory in place."""
        assert self.hydra_context is not None
        with hydra_config_of(job.config), job.place.entered():
            self.hydra_context.callbacks.on_job_start(config=job.config, task_function=self.task_function)

    def end(self, job: ComposedJob, outcome: Any) -> None:
        """The job's return (its objective, or its error: FAILED), then Hydra's callbacks' on_job_end
        with it, as run_job fires it: the job's HydraConfig and working directory in place."""
        from rnn_sparsity.artifacts import objective_value

        assert self.hydra_context is not None
        if isinstance(outcome, BaseException):
            job.ret.status, job.ret.return_value = JobStatus.FAILED, outcome
        else:
            job.ret.status, job.ret.return_value = JobStatus.COMPLETED, objective_value(job.cfg.objective, outcome)
        with hydra_config_of(job.config), job.place.entered(env=False):
            self.hydra_context.callbacks.on_job_end(config=job.config, job_return=job.ret)


def refuse_other_apps(config: DictConfig, launcher: str) -> None:
    """This launcher trains rnn-sparsity experiments: a config without their groups (another Hydra app's)
    is refused in one line, before anything is composed."""
    from rnn_sparsity.components import Parts  # no JAX there

    missing = [group for group in Parts._fields if group not in config]
    if missing:
        raise NotAnExperiment(f"hydra/launcher={launcher} runs rnn-sparsity experiments only: this app's config "
                              f"has no {', '.join(missing)} (choose another launcher, e.g. hydra/launcher=basic)")


@contextlib.contextmanager
def hydra_config_of(config: DictConfig) -> Iterator[None]:
    """HydraConfig is the job's inside (as run_job sets it around the task function and the job's
    callbacks), and what it was before afterwards."""
    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = before


def _keeper(kept: dict, launch_dir: str) -> TaskFunction:
    """The task function run_job calls for each job: it keeps the job's fingerprint (of its config as
    composed), its config resolved (Hydra's resolvers need the job's HydraConfig, set only here) and its
    place (env_set; the directory run_job moved into if hydra.job.chdir), or the error resolving raised."""

    def keep(cfg: DictConfig) -> None:
        from rnn_sparsity.artifacts import config_fingerprint
        from rnn_sparsity.cluster import Place

        cwd = os.getcwd()
        kept["place"] = Place.of(HydraConfig.get().job.env_set, cwd if cwd != launch_dir else None)
        resolved = copy.deepcopy(cfg)
        try:
            OmegaConf.resolve(resolved)
        except Exception as err:  # noqa: BLE001 (the job fails with it, as its task function would)
            kept["error"] = err
            return
        kept.update(cfg=resolved, fingerprint=config_fingerprint(cfg))

    return keep


def _by_place(jobs: Sequence[ComposedJob]) -> List[Tuple[Any, List[ComposedJob]]]:
    """The jobs of each place, in order of first appearance."""
    groups: dict = {}
    for job in jobs:
        groups.setdefault(job.place, []).append(job)
    return list(groups.items())


def _log_file(ret: JobReturn) -> Optional[Path]:
    """The job's log file, where its job_logging config has one (Hydra's default: <run dir>/<job name>.log)."""
    handlers = ret.hydra_cfg.hydra.job_logging.get("handlers", {}) if ret.hydra_cfg is not None else {}
    file = handlers.get("file") if handlers else None
    return Path(str(file.filename)) if file is not None and "filename" in file else None
