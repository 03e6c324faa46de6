"""The vmap launchers keep Hydra's launcher contracts with this app, as Hydra's basic launcher does:
`${hydra:...}` in a job's config, callbacks around each job's real training with its real return and
status, hydra.job.env_set and chdir, a user's resolver (on the node too), job numbers, records and run
directories; and another Hydra app is told in one line that they run rnn-sparsity experiments only.

Each sweep runs in this process through Hydra's own test runner (hydra.test_utils, the
`hydra_sweep_runner` fixture of Hydra's launcher suites, launcher_common_tests), for `hydra/launcher=vmap`
and for `vmap_slurm` through submitit's local executor (the training in a process of its own, as on a
node); the contracts of launcher_common_tests are ported to this app's config (the launchers train
nothing else)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from helpers import TINY
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException, HydraException
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from rnn_sparsity import artifacts
from rnn_sparsity.cli import app

pytestmark = pytest.mark.usefixtures("hydra_restore_singletons")

LAUNCHERS = {
    "vmap": ["hydra/launcher=vmap", "hydra.launcher.progress=false"],
    "vmap_slurm": ["hydra/launcher=vmap_slurm", "hydra.launcher.cluster=local", "hydra.launcher.poll_s=0.1"],
}
# each contract for both; a vmap_slurm sweep that trains costs a process of its own (~15 s here): those are
# slow, but for test_the_cluster_mode_keeps_hydras_job_contracts, which holds them all in one sweep
BOTH = ["vmap", pytest.param("vmap_slurm", marks=pytest.mark.slow)]
ENV_VAR = "RNN_SPARSITY_CONTRACT_TEST"


@pytest.fixture(autouse=True)
def tests_on_the_training_processs_path(monkeypatch):
    """A vmap_slurm job takes this process's Hydra state to the process that trains, its config store
    included: what other tests stored there (their own schemas) must import there, as a user's package
    must on a node."""
    tests = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])))


class JobRecorder(Callback):
    """What Hydra's job callbacks see, one JSON line per call appended to `path`: the job's number
    (from the config given and from HydraConfig), the env_set variable, the working directory, Hydra's
    original cwd, whether the run's metrics.json exists yet, and at the end the status and return value
    (a failed job's: its error's type)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_job_start(self, config, *, task_function, **kwargs) -> None:
        self.record("start", config)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        failed = job_return.status == JobStatus.FAILED
        value = type(job_return._return_value).__name__ if failed else job_return.return_value
        self.record("end", config, status=job_return.status.name, value=value, task_name=job_return.task_name)

    def record(self, event: str, config, **seen) -> None:
        run_dir = Path(config.hydra.runtime.output_dir)
        line = {"event": event, "num": config.hydra.job.num, "hydra_num": HydraConfig.get().job.num,
                "env": os.environ.get(ENV_VAR), "cwd": os.getcwd(), "run_dir": str(run_dir),
                "original_cwd": hydra.utils.get_original_cwd(), "absolute": hydra.utils.to_absolute_path("foo/bar"),
                "metrics": (run_dir / artifacts.METRICS).exists(), **seen}
        with open(self.path, "a") as file:
            file.write(json.dumps(line) + "\n")


def recorder(path: Path) -> list[str]:
    return [f"+hydra.callbacks.record._target_={__name__}.JobRecorder", f"+hydra.callbacks.record.path={path}"]


def records(path: Path) -> dict[tuple[str, int], dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len({(r["event"], r["num"]) for r in lines}), lines  # each callback once per job
    return {(r["event"], r["num"]): r for r in lines}


@contextlib.contextmanager
def sweep(runner, sweep_dir: Path, launcher: str, *overrides: str):
    """A multirun of this app in this process (Hydra's test runner; it removes sweep_dir on exit),
    yielding the JobReturns of every batch in job order."""
    with runner(calling_file=None, calling_module="rnn_sparsity.cli", task_function=app.__wrapped__,
                config_path="conf", config_name="config", overrides=[*LAUNCHERS[launcher], *overrides],
                temp_dir=sweep_dir) as run:
        yield run


def as_swept(overrides: list[str]) -> list[str]:
    """Overrides as Hydra's sweeper hands them to a job (values normalised: 1e-2 -> 0.01)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed]


def job_returns(run) -> list:
    return [ret for batch in run.returns for ret in batch]


def assert_seeds_are_job_numbers(sweep_dir: Path, given: dict[int, int]) -> None:
    """Jobs 0 and 1 (seed=${hydra:job.num}) start from the initial parameters of the jobs given seed 0
    and seed 1 (`given`: seed -> that job's number), and those differ."""
    def init(num: int) -> dict:
        return artifacts.read_params(sweep_dir / str(num), "init/")

    for num in (0, 1):
        mine, theirs = init(num), init(given[num])
        assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine), num
    seed_0, seed_1 = init(given[0]), init(given[1])
    assert any((seed_0[k] != seed_1[k]).any() for k in seed_0)


@pytest.mark.slow  # two sweeps to compile and run (the default suite stays within 5 minutes cold)
@pytest.mark.parametrize("launcher", BOTH)
def test_hydra_resolvers_in_a_jobs_config_resolve_as_that_job(hydra_sweep_runner, tmp_path, launcher):
    """seed=${hydra:job.num}: each job trains with its own number as its seed, as with the basic launcher
    (it once ended the whole sweep before any job trained: the configs were resolved after run_job)."""
    with sweep(hydra_sweep_runner, tmp_path, launcher, *TINY, "seed=${hydra:job.num},0,1",
               "regularizer.strength=0,0.01") as run:
        assert [ret.status for ret in job_returns(run)] == [JobStatus.COMPLETED] * 6
        assert_seeds_are_job_numbers(tmp_path, given={0: 2, 1: 4})


def test_a_job_whose_config_does_not_resolve_fails_alone(hydra_sweep_runner, tmp_path, monkeypatch):
    """seed=${oc.env:...} of a variable that is not set: that job fails with the resolver's error (its
    callbacks see FAILED), as its task function would under the basic launcher; the other trains."""
    monkeypatch.delenv("RNN_SPARSITY_UNSET", raising=False)
    log = tmp_path / "callbacks.jsonl"
    with pytest.raises(Exception, match="RNN_SPARSITY_UNSET"):
        with sweep(hydra_sweep_runner, tmp_path / "sweep", "vmap", *TINY, "seed=0,${oc.env:RNN_SPARSITY_UNSET}",
                   *recorder(log)):
            pass
    seen = records(log)
    assert seen["end", 0]["status"] == "COMPLETED" and seen["end", 1]["status"] == "FAILED"
    assert artifacts.read_metrics(tmp_path / "sweep" / "0")["status"] == "completed"


@pytest.mark.parametrize("launcher", BOTH)
def test_callbacks_wrap_each_jobs_training_and_see_its_real_return(hydra_sweep_runner, tmp_path, launcher):
    """on_job_start before the job trains (no metrics.json yet) with its HydraConfig and env_set;
    on_job_end after it, with its objective as return value (the final_loss of its metrics.json), or
    status FAILED and its error for a refused job (λ < 0). The sweep then raises that error."""
    log = tmp_path / "callbacks.jsonl"
    with pytest.raises(Exception, match="regularizer.strength"):
        with sweep(hydra_sweep_runner, tmp_path / "sweep", launcher, *TINY, "regularizer.strength=0,-1",
                   f"++hydra.job.env_set.{ENV_VAR}=job_${{hydra:job.num}}", *recorder(log)):
            pass
    seen = records(log)
    assert set(seen) == {("start", 0), ("end", 0), ("start", 1), ("end", 1)}
    for num in (0, 1):
        start, end = seen["start", num], seen["end", num]
        assert start["hydra_num"] == end["hydra_num"] == num
        assert start["env"] == f"job_{num}" and not start["metrics"] and end["metrics"]
        assert start["cwd"] == end["cwd"] == start["original_cwd"] == os.getcwd()  # chdir=false
    completed = artifacts.read_metrics(Path(seen["end", 0]["run_dir"]))
    assert seen["end", 0]["status"] == "COMPLETED" and seen["end", 0]["value"] == completed["final_loss"]
    assert seen["end", 0]["task_name"] == "cli"
    assert seen["end", 1]["status"] == "FAILED" and seen["end", 1]["value"] == "ConfigError"
    assert ENV_VAR not in os.environ


@pytest.mark.slow  # a sweep of its own to compile and run (the default suite stays within 5 minutes cold)
def test_the_cluster_mode_keeps_hydras_job_contracts(hydra_sweep_runner, tmp_path):
    """vmap_slurm through submitit's local executor, in one sweep: seed=${hydra:job.num} and a resolver
    registered only in this process (not in the training process) resolve; callbacks fire here before and
    after the training with each job's HydraConfig, env_set, real return and status (a refused job:
    FAILED, and the sweep raises its error)."""
    OmegaConf.register_new_resolver("contract_lr", lambda: 0.02)  # hydra_restore_singletons removes it
    log, sweep_dir = tmp_path / "callbacks.jsonl", tmp_path / "sweep"
    with pytest.raises(Exception, match="regularizer.strength"):
        with sweep(hydra_sweep_runner, sweep_dir, "vmap_slurm", *TINY, "seed=${hydra:job.num},0,1",
                   "regularizer.strength=0,0.01,-1", "optimizer.lr=${contract_lr:}",
                   f"++hydra.job.env_set.{ENV_VAR}=on", *recorder(log)):
            pass
    seen = records(log)
    assert set(seen) == {(event, num) for event in ("start", "end") for num in range(9)}
    for num in range(9):
        start, end = seen["start", num], seen["end", num]
        assert start["hydra_num"] == end["hydra_num"] == num and start["env"] == "on"
        assert not start["metrics"] and end["metrics"]
        if num % 3 == 2:  # λ = -1
            assert end["status"] == "FAILED" and end["value"] == "ConfigError"
        else:
            metrics = artifacts.read_metrics(sweep_dir / str(num))
            assert end["status"] == "COMPLETED" and end["value"] == metrics["final_loss"]
    assert_seeds_are_job_numbers(sweep_dir, given={0: 3, 1: 6})


def test_the_training_runs_with_its_jobs_env_set_and_chdir(hydra_sweep_runner, tmp_path, monkeypatch):
    """In the vmap launcher's process, run_batch trains with the job's env_set variables set and, with
    hydra.job.chdir=true, in its run directory (jobs in different directories train one by one).
    (A cluster job does the same on its node: test_cluster.)"""
    import rnn_sparsity.experiment as experiment

    trained, run_batch = [], experiment.run_batch

    def spy(cfgs, run_dirs, **kwargs):
        trained.append((os.environ.get(ENV_VAR), os.getcwd(), [str(d) for d in run_dirs]))
        return run_batch(cfgs, run_dirs, **kwargs)

    monkeypatch.setattr(experiment, "run_batch", spy)
    launch_dir = os.getcwd()
    with sweep(hydra_sweep_runner, tmp_path, "vmap", *TINY, "seed=0,1", f"++hydra.job.env_set.{ENV_VAR}=on",
               "hydra.job.chdir=true"):
        pass
    assert trained == [("on", str(tmp_path / str(num)), [str(tmp_path / str(num))]) for num in (0, 1)]
    assert ENV_VAR not in os.environ and os.getcwd() == launch_dir


@pytest.mark.parametrize("launcher", BOTH)
def test_chdir_and_a_custom_sweep_subdir(hydra_sweep_runner, tmp_path, launcher):
    """hydra.job.chdir=true with hydra.sweep.subdir=cli_dir_${hydra.job.num}: each job's run directory
    is its subdir and its working directory (JobReturn.working_dir, the callbacks' cwd), while Hydra's
    original cwd and to_absolute_path stay the launch directory's (launcher_common_tests'
    IntegrationTestSuite: custom sweep run workdir, get_original_cwd, to_absolute_path)."""
    log = tmp_path / "callbacks.jsonl"
    sweep_dir = tmp_path / "sweep"
    with sweep(hydra_sweep_runner, sweep_dir, launcher, *TINY, "seed=0,1", "hydra.job.chdir=true",
               "hydra.sweep.subdir=cli_dir_${hydra.job.num}", *recorder(log)) as run:
        rets = job_returns(run)
        assert [Path(ret.working_dir) for ret in rets] == [sweep_dir / f"cli_dir_{num}" for num in (0, 1)]
        assert all(artifacts.read_metrics(sweep_dir / f"cli_dir_{num}")["status"] == "completed" for num in (0, 1))
    seen = records(log)
    for num in (0, 1):
        for event in ("start", "end"):
            assert seen[event, num]["cwd"] == str(sweep_dir / f"cli_dir_{num}")
            assert seen[event, num]["original_cwd"] == os.getcwd()
            assert seen[event, num]["absolute"] == str(Path(os.getcwd()) / "foo/bar")


@pytest.mark.slow  # a user's resolver through a CLI sweep (~16 s cold)
@pytest.mark.parametrize("launcher", BOTH)
def test_a_resolver_registered_in_the_submitting_process_works_in_every_job(hydra_sweep_runner, tmp_path, launcher):
    """A user's resolver registered only here (not on a vmap_slurm node; launcher_common_tests:
    test_sweep_with_custom_resolver) resolves in the jobs' configs."""
    OmegaConf.register_new_resolver("contract_lr", lambda: 0.02)  # hydra_restore_singletons removes it
    with sweep(hydra_sweep_runner, tmp_path, launcher, *TINY, "optimizer.lr=${contract_lr:}", "seed=0,1") as run:
        rets = job_returns(run)
        assert [ret.status for ret in rets] == [JobStatus.COMPLETED] * 2
        assert all(artifacts.read_metrics(tmp_path / str(num))["status"] == "completed" for num in (0, 1))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_another_hydra_app_is_told_in_one_line(hydra_sweep_runner, tmp_path, launcher):
    """A foreign app (Hydra's own test app) that picks the launcher: one compact line, before any job."""
    with pytest.raises(CompactHydraException) as refused:
        with hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module", task_function=None,
                                config_path="configs", config_name="compose",
                                overrides=[*LAUNCHERS[launcher], "+a=0,1"],
                                temp_dir=tmp_path / "sweep"):
            pass
    message = str(refused.value)
    assert message == (f"hydra/launcher={launcher} runs rnn-sparsity experiments only: this app's config has no "
                       "model, task, regularizer, optimizer, pruner, analysis "
                       "(choose another launcher, e.g. hydra/launcher=basic)")
    assert not (tmp_path / "sweep" / "0").exists()


def test_another_hydra_apps_command_line_gets_the_one_line(tmp_path):
    """What the user of that app sees on stderr: the line (then Hydra's usual hint), no traceback."""
    (tmp_path / "foreign.py").write_text(
        "import hydra\n\n@hydra.main(version_base='1.3', config_path=None)\n"
        "def main(cfg):\n    return 1\n\nif __name__ == '__main__':\n    main()\n")
    proc = subprocess.run([sys.executable, "foreign.py", "-m", "hydra/launcher=vmap", "+x=1,2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line] == [
        "hydra/launcher=vmap runs rnn-sparsity experiments only: this app's config has no model, task, "
        "regularizer, optimizer, pruner, analysis (choose another launcher, e.g. hydra/launcher=basic)",
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."]


def assert_job_records(ret, overrides: list[str], run_dir: Path) -> None:
    """launcher_common_tests' verify_dir_outputs for a job whose run directory is not its working
    directory (this app: hydra.job.chdir=false): its log file and .hydra records in its run directory."""
    assert ret.task_name is not None and ret.hydra_cfg is not None
    assert Path(ret.hydra_cfg.hydra.runtime.output_dir) == run_dir
    assert (run_dir / f"{ret.hydra_cfg.hydra.job.name}.log").exists()
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") == OmegaConf.create(overrides)


def composed(*overrides: str) -> dict:
    from helpers import compose_cfg

    return OmegaConf.to_container(compose_cfg(*overrides, tiny=False), resolve=False)


@pytest.mark.parametrize("launcher", BOTH)
def test_sweep_1_job(hydra_sweep_runner, tmp_path, launcher):
    """launcher_common_tests' sweep_1_job with this app (and test_custom_task_name: hydra.job.name)."""
    with sweep(hydra_sweep_runner, tmp_path, launcher, *TINY, "hydra.job.name=overridden_name") as run:
        assert len(run.returns) == 1 and len(run.returns[0]) == 1
        ret = run.returns[0][0]
        assert ret.overrides == as_swept(TINY)
        assert OmegaConf.to_container(ret.cfg, resolve=False) == composed(*TINY)
        assert ret.hydra_cfg.hydra.job.name == "overridden_name"  # ret.task_name: the app's, as run_job gives it
        assert ret.hydra_cfg.hydra.job.id is not None and ret.hydra_cfg.hydra.job.num is not None
        assert ret.return_value == artifacts.read_metrics(tmp_path / "0")["final_loss"]
        assert_job_records(ret, as_swept(TINY), tmp_path / "0")


@pytest.mark.slow  # a sweep of its own to compile and run (the default suite stays within 5 minutes cold)
@pytest.mark.parametrize("launcher", BOTH)
def test_sweep_2_jobs_over_a_group_with_an_override_inside_it(hydra_sweep_runner, tmp_path, launcher):
    """launcher_common_tests' sweep_2_jobs, sweep_2_optimizers (a group swept) and sweep_and_override (a
    key of the swept group set for both) with this app."""
    grid = ["regularizer=l1,l2", "regularizer.strength=0.01"]
    with sweep(hydra_sweep_runner, tmp_path, launcher, *TINY, *grid) as run:
        assert OmegaConf.load(tmp_path / "multirun.yaml").hydra.overrides.task == [*TINY, *grid]  # as given
        rets = job_returns(run)
        assert len(rets) == 2
        for num, (ret, name) in enumerate(zip(rets, ("l1", "l2"))):
            overrides = as_swept([*TINY, f"regularizer={name}", "regularizer.strength=0.01"])
            assert ret.overrides == overrides
            assert OmegaConf.to_container(ret.cfg, resolve=False) == composed(*overrides)
            assert ret.hydra_cfg.hydra.job.name == "cli" and ret.hydra_cfg.hydra.job.num == num
            assert ret.status == JobStatus.COMPLETED
            assert_job_records(ret, overrides, tmp_path / str(num))


@pytest.mark.slow  # a sweep of its own to compile and run (the default suite stays within 5 minutes cold)
def test_sweep_in_batches_numbers_the_jobs_on(hydra_sweep_runner, tmp_path):
    """launcher_common_tests' BatchedSweeperTestSuite with this app: hydra.sweeper.max_batch_size=2
    launches 3 jobs in 2 batches, numbered 0, 1, 2, each in its own run directory."""
    with sweep(hydra_sweep_runner, tmp_path, "vmap", *TINY, "seed=0,1,2", "hydra.sweeper.max_batch_size=2") as run:
        assert [len(batch) for batch in run.returns] == [2, 1]
        rets = job_returns(run)
        assert [ret.hydra_cfg.hydra.job.num for ret in rets] == [0, 1, 2]
        for num, ret in enumerate(rets):
            assert ret.overrides == as_swept([*TINY, f"seed={num}"])
            assert_job_records(ret, ret.overrides, tmp_path / str(num))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_hydra_overrides_are_not_swept_and_unknown_keys_are_refused(hydra_sweep_runner, tmp_path, launcher):
    """launcher_common_tests' test_not_sweeping_hydra_overrides and test_sweep_1_job_strict_and_bad_key."""
    with pytest.raises(HydraException, match="Sweeping over Hydra's configuration is not supported"):
        with sweep(hydra_sweep_runner, tmp_path / "a", launcher, *TINY, "seed=0,1", "hydra.verbose=true,false"):
            pass
    with pytest.raises(Exception, match="boo"):
        with sweep(hydra_sweep_runner, tmp_path / "b", launcher, *TINY, "boo=bar"):
            pass
