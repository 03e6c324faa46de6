"""`hydra/sweeper=resume` (rnn-sparsity's default): Hydra's basic sweeper that skips finished runs.

    rnn-sparsity -m sweeps=demo hydra.sweep.dir=multirun/demo      # again after a crash: only what is left runs
    rnn-sparsity -m sweeps=demo hydra.sweep.dir=multirun/demo resume=false   # every job again

The grid, its order, the job numbers and multirun.yaml are the basic sweeper's. Before a batch is
launched, each job is composed (as the basic sweeper does to check it composes) and its run directory
looked at: a run that is complete (DONE, status completed or diverged) and whose `fingerprint` equals
the sha256 of this job's config (rnn_sparsity.artifacts.config_fingerprint: all but Hydra's node and
keys that do not change results, such as `progress`) is skipped. It is not launched at all, so no byte
and no mtime of its directory changes, and its stored objective (rnn_sparsity.artifacts.objective_value)
is its job's return value. The other jobs are launched with their own numbers: the vmap launcher gets them all at once (`launch_indexed`),
so they still group into vmapped programs; another launcher gets each run of consecutive job numbers.
The log says how many jobs were skipped and how many start.

Like the vmap launcher, this module imports neither JAX nor rnn_sparsity at import time, and has no
`from __future__ import annotations` (Hydra imports plugins outside sys.modules).
"""



import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class ResumeSweeperConf:
    _target_: str = "hydra_plugins.rnn_sparsity_resume.resume_sweeper.ResumeSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="resume", node=ResumeSweeperConf, provider="rnn_sparsity")


class ResumeSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        from rnn_sparsity.composition import compose_once  # no JAX there

        compose_once(hydra_context)  # each job's composition here is the one its launcher runs

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params_conf = self._parse_config()
        params_conf.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns: List[Sequence[JobReturn]] = []
        first = 0
        while not self.is_done():
            batch = self.get_job_batch()
            returns.append(self._sweep_batch(batch, first))
            first += len(batch)
        return returns

    def _sweep_batch(self, batch: Sequence[Sequence[str]], first: int) -> List[JobReturn]:
        from rnn_sparsity.artifacts import (config_fingerprint, finished_metrics, latest_checkpoint, objective_value,
                                            read_fingerprint)

        start = time.perf_counter()
        results: Dict[int, JobReturn] = {}
        todo, resumed = [], 0
        for idx, overrides in enumerate(batch, start=first):
            # composing checks the job composes (as Sweeper.validate_batch_is_legal does); the vmap
            # launcher's loader keeps the result for the launch
            composed = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(composed):
                composed.hydra.job.id = idx
                composed.hydra.job.num = idx
            run_dir = Path(str(OmegaConf.select(composed, "hydra.sweep.dir"))) / str(OmegaConf.select(composed, "hydra.sweep.subdir"))
            fingerprint = config_fingerprint(composed)
            resume = bool(composed.get("resume", True))
            finished = finished_metrics(run_dir, fingerprint) if resume else None
            if finished is not None:
                self.hydra_context.config_loader.take(self.config, list(overrides))  # not launched: dropped
                ret = JobReturn(overrides=list(overrides), working_dir=str(run_dir), status=JobStatus.COMPLETED,
                                _return_value=objective_value(composed.objective, finished))
                ret.task_name = str(composed.hydra.job.name)
                results[idx] = ret
            else:
                todo.append((idx, list(overrides)))
                # the run continues from its checkpoint (rnn_sparsity/checkpoints.py) if it has one of this config
                resumed += resume and latest_checkpoint(run_dir) is not None and read_fingerprint(run_dir) == fingerprint
        log.info(f"resume: {len(results)} of {len(batch)} jobs already finished with the same config in "
                 f"{self.config.hydra.sweep.dir}, skipped; {len(todo)} to run, {resumed} of them with a checkpoint "
                 f"({time.perf_counter() - start:.1f} s)")
        for (idx, _), ret in zip(todo, self._launch(todo)):  # a launcher returns its jobs in their order
            results[idx] = ret
        for ret in results.values():
            _ = ret.return_value  # a failed job raises its error here, as with the basic sweeper
        return [results[idx] for idx in sorted(results)]

    def _launch(self, todo: list) -> List[JobReturn]:
        if not todo:
            return []
        launch_indexed = getattr(self.launcher, "launch_indexed", None)
        if launch_indexed is not None:
            return list(launch_indexed(todo))
        rets: List[JobReturn] = []
        # each run of consecutive numbers as one launch: along a run, number - position is constant
        for _, run in itertools.groupby(enumerate(todo), key=lambda pair: pair[1][0] - pair[0]):
            jobs = [job for _, job in run]
            rets.extend(self.launcher.launch([overrides for _, overrides in jobs], initial_job_idx=jobs[0][0]))
        return rets
