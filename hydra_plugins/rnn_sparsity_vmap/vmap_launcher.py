"""`hydra/launcher=vmap`: the jobs of a sweep that share a static configuration train as one program.

    rnn-sparsity -m sweeps=demo hydra/launcher=vmap [hydra.launcher.batch_size=8]

Hydra finds this module in the `hydra_plugins` namespace package, so an installed wheel has it. It
launches like Hydra's basic launcher, in this process: every job is composed and gets the job number,
run directory, `.hydra/` records and log file the basic launcher gives it. Then, instead of calling the
task function once per job, it hands all of them to `rnn_sparsity.batch.run_batch`, which validates
each (a bad job fails alone, with its message, recorded in its metrics.json), groups them by static
configuration and trains each group as one vmapped program (groups of one take the serial path). Each
job's return value is its objective (rnn_sparsity.artifacts.objective_value), as the app returns; a
failed job reads FAILED, and Hydra raises its error once every job has run.

Each job is composed once: the sweeper's composition of a job (to check it composes) is kept and
launched from (rnn_sparsity/composition.py, installed here and by the resume sweeper).

This module imports neither JAX nor rnn_sparsity until it launches: Hydra imports every plugin at start
(with exec_module, outside sys.modules: hence no `from __future__ import annotations`, which breaks the
dataclass there).
"""



import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class VmapLauncherConf:
    _target_: str = "hydra_plugins.rnn_sparsity_vmap.vmap_launcher.VmapLauncher"
    # members per compiled program; null: as many as the memory estimate lets fit (rnn_sparsity.batch)
    batch_size: Optional[int] = None
    # one bar per group on stderr (members done and diverged, steps, ETA); false: one log line per chunk
    progress: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="vmap", node=VmapLauncherConf, provider="rnn_sparsity")


class VmapLauncher(Launcher):
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
        returns, cfgs, run_dirs, log_files = [], [], [], []
        for idx, overrides in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.take(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            composed: dict = {}
            ret = run_job(hydra_context=self.hydra_context, task_function=_collector(composed), config=sweep_config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            returns.append(ret)
            cfgs.append(composed["cfg"])
            run_dirs.append(Path(ret.hydra_cfg.hydra.runtime.output_dir))
            log_files.append(_log_file(ret))
            # the job's file handler off, as the basic launcher does: the next job's line is not in its log
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

        logging.getLogger("jax").setLevel(logging.WARNING)
        from rnn_sparsity.artifacts import objective_value

        outcomes = self.run_jobs(cfgs, run_dirs, log_files)
        for ret, cfg, outcome in zip(returns, cfgs, outcomes):
            if isinstance(outcome, BaseException):
                ret.status, ret.return_value = JobStatus.FAILED, outcome
            else:
                ret.status, ret.return_value = JobStatus.COMPLETED, objective_value(cfg.objective, outcome)
        return returns

    def run_jobs(self, cfgs: list, run_dirs: list, log_files: list) -> list:
        """Train and write the composed jobs: each run's metrics, or the error that ended it."""
        from rnn_sparsity.batch import run_batch  # JAX is imported here, in the process that trains

        return run_batch(cfgs, run_dirs, batch_size=self.batch_size, progress=self.progress, log_files=log_files)


def _collector(store: dict) -> TaskFunction:
    def collect(cfg: DictConfig) -> None:
        store["cfg"] = cfg

    return collect


def _log_file(ret: JobReturn) -> Optional[Path]:
    """The job's log file, where its job_logging config has one (Hydra's default: <run dir>/<job name>.log)."""
    handlers = ret.hydra_cfg.hydra.job_logging.get("handlers", {}) if ret.hydra_cfg is not None else {}
    file = handlers.get("file") if handlers else None
    return Path(str(file.filename)) if file is not None and "filename" in file else None
