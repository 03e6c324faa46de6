"""The resume sweeper (hydra_plugins/rnn_sparsity_resume) keeps Hydra's sweeper contracts: Hydra's own
plugin test suites, the basic sweeper's grid and job numbers, skipped jobs that return what a launch
returns, one sweep per directory at a time, and a sweep that starts its first job at once.

The tests other than Hydra's suites sweep a toy app (a ConfigStore config, in this process) whose task
writes a finished run directory with rnn_sparsity.artifacts, so that a rerun has runs to skip."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import TINY
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite, LauncherTestSuite
from hydra.test_utils.test_utils import SweepTaskFunction
from omegaconf import OmegaConf

from rnn_sparsity import artifacts

PLUGIN = Path(__file__).parents[1] / "hydra_plugins" / "rnn_sparsity_resume" / "resume_sweeper.py"
LOCK_FILE = ".rnn_sparsity.lock"  # in the sweep dir, held by the sweep running in it


@pytest.fixture(autouse=True)
def fresh_hydra_version_base(hydra_restore_singletons):
    """Hydra's suites expect a fresh process's version base (unspecified: chdir into the run dir by
    default); another test in the same process may have set 1.3 (helpers.compose_cfg). Restored after."""
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    Singleton._instances.pop(VersionBase, None)


# Hydra's own suites, as Hydra's plugins run them (fixtures instead of parametrize: the suites extend
# the `overrides` list they are given, which a shared parametrize value would carry into the next test)

class TestResumeSweeperLaunches(LauncherTestSuite):
    @pytest.fixture
    def launcher_name(self) -> str:
        return "basic"

    @pytest.fixture
    def overrides(self) -> list[str]:
        return ["hydra/sweeper=resume"]


class TestResumeSweeperBatches(BatchedSweeperTestSuite):
    @pytest.fixture
    def launcher_name(self) -> str:
        return "basic"

    @pytest.fixture
    def overrides(self) -> list[str]:
        return ["hydra/sweeper=resume", "hydra.sweeper.max_batch_size=2"]


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [(
    {"defaults": [{"override hydra/sweeper": "resume"}, {"override hydra/launcher": "basic"}, "_self_"]}, ["-m"])])
class TestResumeSweeperIntegration(IntegrationTestSuite):  # each test runs a small app in a subprocess (~1 s)
    pass


# the toy app

@dataclass
class Objective:
    metric: str = "score"
    direction: str = "minimize"


@dataclass
class ToyConfig:
    x: int = 0
    y: int = 0
    resume: bool = True
    objective: Objective = field(default_factory=Objective)


def write_run(cfg) -> float:
    """The toy task: a finished run directory, as rnn_sparsity's runs write theirs; its score is x + y."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    artifacts.begin_run(run_dir, artifacts.config_fingerprint(cfg))
    score = float(cfg.x + cfg.y)
    artifacts.write_metrics(run_dir, {"status": "completed", "score": score})
    artifacts.mark_done(run_dir)
    return score


def toy_sweep(sweep_dir: Path, *overrides: str, task=write_run, sweeper: str = "resume",
              config: str = "resume_toy") -> list:
    """A multirun of the toy app into sweep_dir, in this process: its JobReturns, batch by batch. (Hydra's
    own test runner, entered only: leaving it would delete the sweep dir.) config resume_toy_preset: a
    preset's grid in hydra.sweeper.params (which the command line cannot set while it is null)."""
    ConfigStore.instance().store(name="resume_toy", node=ToyConfig)
    ConfigStore.instance().store(name="resume_toy_preset", node={
        "defaults": ["resume_toy", "_self_"], "hydra": {"sweeper": {"params": {"x": "1,2", "y": "7,8"}}}})
    runner = SweepTaskFunction()
    runner.calling_file, runner.config_path, runner.config_name = __file__, None, config
    runner.task_function, runner.temp_dir = task, str(sweep_dir)
    runner.overrides = [f"hydra/sweeper={sweeper}", "hydra.job.chdir=true", *overrides]  # each job in its run dir
    return runner.__enter__().returns


def must_not_run(cfg):
    raise AssertionError(f"a finished job was launched: {OmegaConf.to_yaml(cfg)}")


# what happens when

class CountingLoader:
    """Stands between the sweep and Hydra's config loader: records every composition of a job."""

    def __init__(self, loader, events: list) -> None:
        self.loader, self.events = loader, events

    def load_sweep_config(self, master_config, sweep_overrides):
        self.events.append(("compose", tuple(sweep_overrides)))
        return self.loader.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("loader", "events"):
            raise AttributeError(name)
        return getattr(self.loader, name)


@pytest.fixture
def recording(monkeypatch, hydra_restore_singletons):
    """Events in order: each composition of a job, by the sweeper or the launcher (both compose through
    the ComposedOnce the resume sweeper installs, here around a CountingLoader), and each job's start."""
    from rnn_sparsity.composition import ComposedOnce

    events: list = []
    wrap = ComposedOnce.__init__
    monkeypatch.setattr(ComposedOnce, "__init__", lambda self, loader, *args, **kwargs:
                        wrap(self, CountingLoader(loader, events), *args, **kwargs))
    return events


def recorded(events: list):
    """The toy task, recording its job's start."""
    def task(cfg) -> float:
        events.append(("run", HydraConfig.get().job.num))
        return write_run(cfg)

    return task


def flat(returns: list) -> list:
    return [ret for batch in returns for ret in batch]


# the contracts

def test_the_sweeper_uses_no_hydra_internals():
    """Hydra's public plugin API only (hydra._internal may change in any release)."""
    from hydra_plugins.rnn_sparsity_resume.resume_sweeper import ResumeSweeper

    tree = ast.parse(PLUGIN.read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("hydra._internal")]
    assert not [cls for cls in ResumeSweeper.__mro__ if cls.__module__.startswith("hydra._internal")]


def test_the_grid_batches_and_job_numbers_are_the_basic_sweepers(tmp_path, hydra_restore_singletons):
    """Preset params before the command line (which overrides a param in its place), a range, batches
    of 3: the same jobs, overrides, numbers and batches as Hydra's basic sweeper."""
    args = ["y=range(0,2)", "+z=a,b", "hydra.sweeper.max_batch_size=3"]
    jobs = {}
    for sweeper in ("basic", "resume"):
        returns = toy_sweep(tmp_path / sweeper, *args, sweeper=sweeper, config="resume_toy_preset")
        jobs[sweeper] = [[(ret.overrides, ret.hydra_cfg.hydra.job.num, ret.return_value) for ret in batch]
                         for batch in returns]
    assert jobs["resume"] == jobs["basic"]
    assert [len(batch) for batch in jobs["resume"]] == [3, 3, 2]
    assert jobs["resume"][0][:2] == [(["x=1", "y=0", "+z=a"], 0, 1.0), (["x=1", "y=0", "+z=b"], 1, 1.0)]


def test_a_skipped_job_returns_what_its_launch_returned(tmp_path, hydra_restore_singletons):
    """A job whose run is finished is not launched, and its JobReturn has what the launcher's had: the
    overrides, the task config (no hydra node), Hydra's config of the job (its number and output dir),
    the working dir, the task name, COMPLETED and the stored objective."""
    sweep_dir = tmp_path / "sweep"
    launched = flat(toy_sweep(sweep_dir, "x=1,2", "y=10"))
    skipped = flat(toy_sweep(sweep_dir, "x=1,2", "y=10", task=must_not_run))
    assert [ret.return_value for ret in skipped] == [ret.return_value for ret in launched] == [11.0, 12.0]
    for ran, skip in zip(launched, skipped):
        assert skip.status == JobStatus.COMPLETED and skip.overrides == ran.overrides
        assert skip.cfg is not None and "hydra" not in skip.cfg
        assert OmegaConf.to_container(skip.cfg) == OmegaConf.to_container(ran.cfg)
        assert skip.hydra_cfg is not None and list(skip.hydra_cfg) == ["hydra"]
        assert OmegaConf.to_container(skip.hydra_cfg) == OmegaConf.to_container(ran.hydra_cfg)
        job, ran_job = skip.hydra_cfg.hydra.job, ran.hydra_cfg.hydra.job
        assert (job.num, job.id) == (ran_job.num, ran_job.id)
        assert skip.hydra_cfg.hydra.runtime.output_dir == str((sweep_dir / str(ran.hydra_cfg.hydra.job.num)).resolve())
        assert (skip.working_dir, skip.task_name) == (ran.working_dir, ran.task_name)


def test_a_fresh_sweep_runs_each_job_before_composing_the_next(tmp_path, recording):
    """A fresh sweep dir: nothing can be finished, so the sweeper composes no job to find out; the
    launcher composes each job when it runs it, once."""
    n = 12
    returns = flat(toy_sweep(tmp_path / "sweep", f"x=range(0,{n})", task=recorded(recording)))
    assert [ret.return_value for ret in returns] == [float(x) for x in range(n)]
    assert recording == [event for x in range(n) for event in (("compose", (f"x={x}",)), ("run", x))]


def test_a_rerun_composes_only_finished_run_dirs_and_launches_each_run_of_jobs_when_found(tmp_path, recording):
    """Jobs 1, 2 and 4 lost their DONE: the sweeper composes 0, 3 and 5 (run dirs with a DONE) to compare
    their configs, launches 1-2 as soon as 3 has ended their run, 4 once 5 has; returns in job order."""
    sweep_dir = tmp_path / "sweep"
    toy_sweep(sweep_dir, "x=range(0,6)")
    for job in (1, 2, 4):
        (sweep_dir / str(job) / artifacts.DONE).unlink()
    recording.clear()
    returns = flat(toy_sweep(sweep_dir, "x=range(0,6)", task=recorded(recording)))
    assert [ret.return_value for ret in returns] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert recording == [("compose", ("x=0",)), ("compose", ("x=3",)),
                         ("compose", ("x=1",)), ("run", 1), ("compose", ("x=2",)), ("run", 2),
                         ("compose", ("x=5",)), ("compose", ("x=4",)), ("run", 4)]


def test_resume_false_composes_nothing_before_launching(tmp_path, recording):
    """resume=false on the command line: no job can be skipped, so the sweeper composes none to find out."""
    sweep_dir = tmp_path / "sweep"
    toy_sweep(sweep_dir, "x=0,1,2")
    recording.clear()
    returns = flat(toy_sweep(sweep_dir, "x=0,1,2", "resume=false", task=recorded(recording)))
    assert [ret.return_value for ret in returns] == [0.0, 1.0, 2.0]
    assert recording == [event for x in range(3) for event in (("compose", (f"x={x}", "resume=False")), ("run", x))]


# one sweep per directory

HOLD_LOCK = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"pid %d on a test host" % os.getpid())
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Another process that holds the lock of tmp_path/sweep as a running sweep does (killed after the test)."""
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(sweep_dir / LOCK_FILE)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.slow  # CLI sweeps in subprocesses (~8-16 s cold)
def test_a_second_sweep_into_a_locked_dir_refuses_in_one_line_and_runs_nothing(tmp_path, lock_holder):
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", "-m", *TINY, "seed=0,1",
                           f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    assert len(lines) == 1, proc.stderr
    assert str(sweep_dir) in lines[0] and f"pid {lock_holder.pid} on a test host" in lines[0]
    assert "wait_for_lock_s" in lines[0]
    assert sorted(p.name for p in sweep_dir.iterdir()) == [LOCK_FILE]  # no run dir, no multirun.yaml


TOY_APP = """import hydra
from omegaconf import DictConfig

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def app(cfg: DictConfig) -> int:
    return cfg.x

if __name__ == "__main__":
    app()
"""


def test_a_sweep_asked_to_wait_for_the_lock_runs_once_the_other_sweep_ends(tmp_path, lock_holder):
    """wait_for_lock_s: the sweep says it waits, runs nothing while the other holds the dir, and runs
    all its jobs once the other process has ended (killed: the OS lets go of its lock)."""
    sweep_dir = tmp_path / "sweep"
    (tmp_path / "app.py").write_text(TOY_APP)
    (tmp_path / "config.yaml").write_text("defaults:\n  - override hydra/sweeper: resume\n  - _self_\nx: 0\n")
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "app.py"), "-m", "x=1,2",
                                 f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.wait_for_lock_s=300"],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "waiting up to 300 s for another sweep" not in log.read_text():
            assert proc.poll() is None, f"the sweep did not wait:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert f"pid {lock_holder.pid} on a test host" in log.read_text()
        assert sorted(p.name for p in sweep_dir.iterdir()) == [LOCK_FILE]
        lock_holder.kill()
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (sweep_dir / "0" / ".hydra").is_dir() and (sweep_dir / "1" / ".hydra").is_dir()
    assert (sweep_dir / "multirun.yaml").is_file()
    assert f"pid {proc.pid} on " in (sweep_dir / LOCK_FILE).read_text()  # its holder now
