"""`hydra/sweeper=resume` (rnn-sparsity's default): Hydra's basic sweeper that skips finished runs.

    rnn-sparsity -m sweeps=demo hydra.sweep.dir=multirun/demo      # again after a crash: only what is left runs
    rnn-sparsity -m sweeps=demo hydra.sweep.dir=multirun/demo resume=false   # every job again
    rnn-sparsity -m ... hydra.sweeper.wait_for_lock_s=600           # another sweep holds the dir: wait for it

The grid (the cartesian product of `hydra.sweeper.params` and the command line's sweeps, first key
slowest), its batches (`max_batch_size`), the job numbers and multirun.yaml are those of Hydra's basic
sweeper, written here on Hydra's public plugin API. A job whose run directory is complete (DONE,
status completed or diverged) and whose `fingerprint` equals the sha256 of this job's config
(rnn_sparsity.artifacts.config_fingerprint: all but Hydra's node and keys that do not change results,
such as `progress`) is skipped: it is not launched at all, so no byte and no mtime of its directory
changes, and it returns what a launcher returns for a job (overrides, config, Hydra's config of it,
working dir, task name), its stored objective (rnn_sparsity.artifacts.objective_value) as its value.

A sweep starts at once: only a job whose run directory holds a DONE or a checkpoint is composed to
look at it (with `resume=false`, none is); the others are left to the launcher, which composes them
anyway. The vmap launcher gets a batch's jobs to run all at once (`launch_indexed`), so they still
group into vmapped programs; another launcher gets each run of consecutive job numbers as soon as
the scan has found its end. The log says how many jobs were skipped and how many run.

One sweep per directory at a time: the sweeper holds an exclusive lock (flock on
`<sweep dir>/.rnn_sparsity.lock`, which names its holder) for the whole sweep; the OS releases it when
the process ends, however it ends. A second sweep into the directory refuses in one line, or waits up
to `wait_for_lock_s` seconds for it.

Like the vmap launcher, this module imports neither JAX nor rnn_sparsity at import time, and has no
`from __future__ import annotations` (Hydra imports plugins outside sys.modules).
"""



import copy
import fcntl
import itertools
import logging
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from hydra import version
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log
from hydra.errors import CompactHydraException, HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

LOCK_FILE = ".rnn_sparsity.lock"
MULTIRUN_RECORD = "multirun.yaml"


@dataclass
class ResumeSweeperConf:
    _target_: str = "hydra_plugins.rnn_sparsity_resume.resume_sweeper.ResumeSweeper"
    max_batch_size: Optional[int] = None  # jobs per launch (null: the whole grid)
    params: Optional[Dict[str, str]] = None  # the grid of a preset: {key: "v1,v2"}, before the command line's
    wait_for_lock_s: float = 0  # another sweep holds hydra.sweep.dir: wait up to this long for it (0: refuse at once)


ConfigStore.instance().store(group="hydra/sweeper", name="resume", node=ResumeSweeperConf, provider="rnn_sparsity")


class SweepDirLocked(CompactHydraException):
    """Another sweep holds the sweep directory (Hydra prints a CompactHydraException as its one line)."""


class ResumeSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 wait_for_lock_s: float = 0) -> None:
        super().__init__()
        if max_batch_size is not None and int(max_batch_size) < 1:
            raise HydraException(f"hydra.sweeper.max_batch_size={max_batch_size}: must be >= 1 (or null: one batch)")
        if float(wait_for_lock_s) < 0:
            raise HydraException(f"hydra.sweeper.wait_for_lock_s={wait_for_lock_s}: must be >= 0 (0: refuse at once)")
        self.max_batch_size = None if max_batch_size is None else int(max_batch_size)
        self.params = dict(params or {})
        self.wait_for_lock_s = float(wait_for_lock_s)
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)
        from rnn_sparsity.composition import compose_once  # no JAX there

        compose_once(hydra_context, keep_first=False)  # each job this sweeper composes is the one its launcher runs

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = parser.parse_overrides([f"{key}={value}" for key, value in self.params.items()])
        given = parser.parse_overrides(list(arguments))
        grid = job_grid([*params, *given])
        size = self.max_batch_size or len(grid)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        with sweep_dir_lock(sweep_dir, self.wait_for_lock_s):
            shortcuts = Shortcuts.of(self.config, self.hydra_context.config_loader, params, given, sweep_dir)
            OmegaConf.save(self.config, sweep_dir / MULTIRUN_RECORD)
            return [self._sweep_batch(grid[first:first + size], first, shortcuts)
                    for first in range(0, len(grid), size)]

    def _sweep_batch(self, batch: Sequence[Sequence[str]], first: int, shortcuts: "Shortcuts") -> List[JobReturn]:
        """Every job's JobReturn in job order: a finished run's without launching it, the others' from the
        launcher (each run of consecutive jobs launched once the scan has found its end; launch_indexed:
        all at once after the scan). A failed job raises its error once the whole batch has run."""
        start = time.perf_counter()
        launch_indexed = getattr(self.launcher, "launch_indexed", None)
        results: Dict[int, JobReturn] = {}
        pending: List[Tuple[int, List[str]]] = []  # to launch: (job number, overrides)
        skipped = checkpointed = 0
        try:
            for idx, overrides in enumerate(batch, start=first):
                done, from_checkpoint = self._look_up(idx, list(overrides), shortcuts)
                if done is None:
                    pending.append((idx, list(overrides)))
                    checkpointed += from_checkpoint
                    continue
                results[idx], skipped = done, skipped + 1
                if launch_indexed is None and pending:
                    results.update(self._launch_run(pending))
                    pending = []
            log.info(f"resume: {skipped} of {len(batch)} jobs already finished with the same config in "
                     f"{self.config.hydra.sweep.dir}, skipped; {len(batch) - skipped} to run, {checkpointed} of "
                     f"them with a checkpoint ({time.perf_counter() - start:.1f} s)")
            if pending:
                results.update(zip([idx for idx, _ in pending], launch_indexed(pending)) if launch_indexed is not None
                               else self._launch_run(pending))
        finally:
            self.hydra_context.config_loader.discard(self.config)  # kept for a job that was never launched
        for ret in results.values():
            _ = ret.return_value  # a failed job raises its error here, as with the basic sweeper
        return [results[idx] for idx in sorted(results)]

    def _launch_run(self, run: List[Tuple[int, List[str]]]) -> Dict[int, JobReturn]:
        """Launch jobs of consecutive numbers as one launch; their returns by job number."""
        returns = self.launcher.launch([overrides for _, overrides in run], initial_job_idx=run[0][0])
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)  # the last job's log file let go
        return dict(zip([idx for idx, _ in run], returns))

    def _look_up(self, idx: int, overrides: List[str], shortcuts: "Shortcuts") -> Tuple[Optional[JobReturn], bool]:
        """(the JobReturn of a job already finished with this config, else None; whether the job resumes
        from a checkpoint). Only a job whose run directory may hold a result or checkpoint is composed."""
        if not shortcuts.may_resume(idx):
            return None, False
        from rnn_sparsity.artifacts import (config_fingerprint, finished_metrics, latest_checkpoint, objective_value,
                                            read_fingerprint)

        loader = self.hydra_context.config_loader
        composed = loader.load_sweep_config(self.config, overrides)
        with open_dict(composed):
            composed.hydra.job.id = idx
            composed.hydra.job.num = idx
        output_dir = os.path.join(str(OmegaConf.select(composed, "hydra.sweep.dir")),
                                  str(OmegaConf.select(composed, "hydra.sweep.subdir")))
        fingerprint = config_fingerprint(composed)
        resume = bool(composed.get("resume", True))
        finished = finished_metrics(Path(output_dir), fingerprint) if resume else None
        if finished is not None:
            return skipped_return(composed, output_dir, objective_value(composed.objective, finished)), False
        loader.keep(self.config, overrides, composed)  # the launcher runs this composition
        # the run continues from its checkpoint (rnn_sparsity/checkpoints.py) if it has one of this config
        run_dir = Path(output_dir)
        return None, resume and latest_checkpoint(run_dir) is not None and read_fingerprint(run_dir) == fingerprint


def job_grid(overrides: Sequence[Override]) -> List[List[str]]:
    """Every job's overrides, in the order of Hydra's basic sweeper: the cartesian product of each key's
    values (`key=a,b`, `range(...)`; a plain override is one value), the first key varying slowest; a key
    given again keeps its first place and takes the later values."""
    values: Dict[str, List[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise HydraException(f"ResumeSweeper does not support sweep type : {override.value_type.name}")
    return [list(job) for job in itertools.product(*values.values())]


@dataclass
class Shortcuts:
    """What the sweep's own config tells of every job without composing it (~0.1 s a job): whether any
    job may resume at all, and where a job's run directory is, where that is certain."""

    resume: bool  # False: every job's `resume` is false, so none needs looking at
    fresh: bool  # the sweep directory held no run directory when the sweep began
    sweep_dir: Optional[Path]  # every job's hydra.sweep.dir, where certain
    subdir: Optional[str]  # every job's hydra.sweep.subdir, unresolved, where it names nothing but the job's number

    PER_JOB = re.compile(r"\$\{hydra[.:]job\.(?:num|id)\}")
    INTERPOLATION = re.compile(r"\$\{([^}]*)\}")

    @classmethod
    def of(cls, master: DictConfig, loader, params: List[Override], given: List[Override],
           sweep_dir: Path) -> "Shortcuts":
        """Read from the master config, composed with the command line's plain overrides: a job's config
        differs from it only by what it varies (the sweeps, `params`). Where those are all plain values
        (no config group, which could bring its own `hydra.sweep` or `resume`), the master's sweep dir,
        subdir and resume are every job's; a plain `resume=...` on the command line is every job's anyway."""
        varying = [*params, *(o for o in given if o.is_sweep_override())]
        values_only = not any(o.package is not None or loader.get_group_options(o.key_or_group) for o in varying)
        resume_given = any(o.key_or_group == "resume" and not o.is_sweep_override() for o in given)
        resume_varies = any(o.key_or_group == "resume" for o in varying)
        every_job_has_masters_resume = resume_given or (values_only and not resume_varies)
        raw = OmegaConf.to_container(master.hydra.sweep, resolve=False)
        dir_refs, subdir = cls.INTERPOLATION.findall(str(raw["dir"])), str(raw["subdir"])
        certain = (values_only and all(ref.startswith("now:") for ref in dir_refs)
                   and "${" not in cls.PER_JOB.sub("", subdir))
        fresh = all(entry in (LOCK_FILE, MULTIRUN_RECORD) for entry in os.listdir(sweep_dir))
        return cls(resume=bool(master.get("resume", True)) or not every_job_has_masters_resume, fresh=fresh,
                   sweep_dir=sweep_dir if certain else None, subdir=subdir if certain else None)

    def may_resume(self, idx: int) -> bool:
        """Whether job idx must be composed to tell if it is finished or resumes: its run directory holds
        a DONE or a checkpoint (where it is not certain which directory is the job's: any directory may)."""
        if not self.resume or self.fresh:
            return False
        if self.sweep_dir is None:
            return True
        from rnn_sparsity.artifacts import CHECKPOINT, DONE

        run_dir = self.sweep_dir / self.PER_JOB.sub(str(idx), self.subdir)
        return os.path.lexists(run_dir / DONE) or os.path.lexists(run_dir / CHECKPOINT)


def skipped_return(composed: DictConfig, output_dir: str, value) -> JobReturn:
    """What Hydra's run_job returns for a job, for one that is not launched: its overrides, its task
    config (without the `hydra` node), Hydra's config of it as HydraConfig holds it (with its job number
    and runtime.output_dir), the working dir it would run in, the task name, COMPLETED and `value`."""
    with read_write(composed.hydra.runtime), open_dict(composed.hydra.runtime):
        composed.hydra.runtime.output_dir = os.path.abspath(output_dir)
    holder = HydraConfig.instance()
    previous = holder.cfg
    try:
        holder.set_config(composed)
        hydra_cfg = copy.deepcopy(holder.cfg)
    finally:
        holder.cfg = previous
    task_cfg = copy.deepcopy(composed)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    chdir = hydra_cfg.hydra.job.chdir
    if chdir is None:  # Hydra's default before version_base 1.2: the job runs in its output dir
        chdir = not version.base_at_least("1.2")
    return JobReturn(overrides=list(OmegaConf.to_container(composed.hydra.overrides.task)), cfg=task_cfg,
                     hydra_cfg=hydra_cfg, working_dir=output_dir if chdir else os.getcwd(),
                     task_name=JobRuntime.instance().get("name"), status=JobStatus.COMPLETED, _return_value=value)


@contextmanager
def sweep_dir_lock(sweep_dir: Path, wait_s: float) -> Iterator[None]:
    """Hold an exclusive lock on the sweep directory (flock on its LOCK_FILE, which then names this
    process and host) until the block ends; the OS lets go of it when the process ends, however it
    ends. Held by another sweep: wait up to wait_s seconds for it, then refuse (SweepDirLocked)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise SweepDirLocked(f"cannot lock the sweep dir {sweep_dir}: {err.strerror} ({path})") from None
    try:
        if _acquire(fd, sweep_dir, wait_s):
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)


def _acquire(fd: int, sweep_dir: Path, wait_s: float) -> bool:
    """Take the lock on fd (True), trying again each second until wait_s has passed; False where the
    file system has no locks (the sweep goes on unguarded, with a warning)."""
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            holder = _holder(sweep_dir / LOCK_FILE)
        except OSError as err:
            log.warning(f"cannot lock the sweep dir {sweep_dir} ({err.strerror}): a second sweep into it at once "
                        f"would run its jobs again")
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            waited = f" (waited {wait_s:g} s)" if wait_s else ""
            raise SweepDirLocked(f"another sweep ({holder}) is running in {sweep_dir}{waited}: two sweeps into one "
                                 f"directory would run its jobs twice; wait for it to end, or set "
                                 f"hydra.sweeper.wait_for_lock_s=<seconds> to wait for it")
        if not waiting:
            log.info(f"waiting up to {wait_s:g} s for another sweep ({holder}) in {sweep_dir} to end")
            waiting = True
        time.sleep(min(1.0, left))


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (pid and host)."""
    try:
        return path.read_text().strip() or "holder unknown"
    except OSError:
        return "holder unknown"
