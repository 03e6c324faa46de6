"""`rnn-sparsity-aggregate DIR [DIR ...] [--out OUT] [--trust PKG]`: run directories -> a tidy table -> files, figures.
`rnn-sparsity-aggregate --status DIR [DIR ...] [-q]`: what each job of each sweep is doing now, one line each.

A run directory is any folder holding `.hydra/config.yaml`, at any depth below the given folders (Hydra's
multirun lays them out as multirun/DATE/TIME/N/); folders named `aggregate` (this tool's output) are
skipped. Each run becomes one row: its config flattened to dotted columns (`regularizer.strength`), every
metric, and `run_dir`, `status`, `problem`, `overrides`. Everything is read from disk, so the tool can be
rerun at any time, also while a sweep is still going. Nothing it finds is fatal: each run gets a class
(`status`) and, unless it completed, a reason (`problem`):

  completed   DONE exists and every file opens
  diverged    finished, but training hit NaN/Inf (metrics.json says "diverged")
  failed      the run recorded its error in metrics.json; the error is the reason
  incomplete  no DONE and not failed: still running, or stopped before the end
  damaged     .hydra/config.yaml, metrics.json, history.parquet, params.npz or analysis.npz is empty or
              unreadable; the reason names the file and why ("metrics.json: truncated or invalid JSON ...")
  missing     a job of a sweep without a run directory: the sweep dir's multirun.yaml (written by Hydra
              when the sweep starts) is expanded into its jobs as Hydra's basic sweeper does, and each job
              number is looked for among the sweep's run dirs (`hydra.job.num`, else the folder name)

The printed report lists every run that did not complete with its class and reason, and counts each class.
Damaged and missing rows are never plotted and never make a key "swept"; keys that do not change
results (NON_RESULT_KEYS, hydra.*, objective.*, a group's `_target_`) never do either. Files named
`.*.tmp` (left by a killed atomic write) are never read.

Writes into OUT (default `<first DIR>/aggregate`): runs.parquet, runs.csv, summary.csv and figures/*.png,
and prints the summary table with the runs that did not complete. What else is written, and which
metrics summary.csv holds, the runs' components say (components.Component: `summary_metrics`,
`unplotted_metrics`, `sweep_outputs`), found by the `<group>._target_` of each run's config; for the
built-in analysis group, for instance, the unstable-eigenvalue tables by λ and s and the spectrum panels.
metrics.json's text and flag values (provenance: versions, git revision, device) are columns of
runs.parquet like any other, never averaged in summary.csv and never swept keys.

Finding a component means importing the module its `_target_` names, and a sweep dir may come from
someone else: only modules of trusted packages are imported. `rnn_sparsity` is always trusted; add your
own with `--trust PACKAGE` (repeatable) or `RNN_SPARSITY_TRUST=pkg1,pkg2`. A run whose component is in
another package is still a row (its metrics.json is data, not code), but that component's summary
metrics and sweep outputs are skipped, with one line per untrusted module saying how to trust it.

Every file is written as artifacts.atomic_path writes (a temporary name, renamed into place): a reader
never sees half a file, a full disk leaves the earlier file whole, and a symbolic link planted where an
output goes is replaced, its target never written. A component's sweep outputs are written into a
private staging folder inside OUT and renamed into place the same way, whatever its code does. The
folders this tool names itself inside a sweep dir (the default OUT and OUT/figures) are refused when
they are symbolic links: a link planted there would send the outputs, and the removal of stale
figures, elsewhere; an --out you name is used as named. Anything that cannot be written (a read-only
sweep dir, a full disk, such a link) ends the tool with one line on stderr naming the path and why, and
exit status 1; `--out` then puts the outputs elsewhere.

An Optuna search (`hydra/sweeper=optuna`, e.g. sweeps/iris_optuna) is read like any other sweep: its runs
are rows, the searched keys are swept keys (one run per value), and no job is missing (its trials are not
known ahead). Its sweep dir holds no multirun.yaml but, once the search has ended, hydra-optuna-sweeper's
optimization_results.yaml; both the report and --status then print its best trial, matched to its run
(`best_trial`). While the search runs, its runs count as runs outside any sweep.

`--status` reads only what the classes above need (check_run, the overrides, the job numbers, multirun.yaml;
an Optuna search's results and its best run's objective) and writes nothing: per sweep dir (a run outside
any sweep is grouped under the DIR that holds it), the overrides every job shares, then one line per job
(job number, class, final_loss of a finished run, its own overrides, the reason), a count line and an
Optuna search's best trial. A run without DONE is "running or incomplete": a run dir
does not say whether its process is alive, so one still training and one killed look alike; the age of
its newest file is shown. Neither JAX nor matplotlib is imported, nor any run's config composed.
"""

from __future__ import annotations

import argparse
import itertools
import numbers
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, suppress
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rnn_sparsity.artifacts import (CONFIG, DAMAGED, FIGURES, TEMP_SUFFIX, atomic_path, check_run, latest_checkpoint,
                                    read_job_number, read_overrides)

AGGREGATE_DIR = "aggregate"
MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of a sweep, written in the sweep dir when it starts
# hydra-optuna-sweeper's result (best_params, best_value), written in the sweep dir when the search ends;
# that sweeper writes no multirun.yaml
OPTUNA_RESULTS = "optimization_results.yaml"
SWEEP_RECORDS = (MULTIRUN_FILE, OPTUNA_RESULTS)  # a folder holding one of them is a sweep dir
BOOKKEEPING = ("run_dir", "status", "problem", "overrides", "error")
MISSING = "missing"
UNSOUND = (DAMAGED, MISSING)  # rows without a trustworthy config or metrics: listed, never plotted or swept
STATUS_ORDER = ("completed", "diverged", "failed", "incomplete", DAMAGED, MISSING)
# Keys that do not change results: never swept keys, however they vary (seeds are averaged over).
NON_RESULT_KEYS = ("seed", "progress", "analysis.figures", "compilation_cache")
NON_RESULT_PREFIXES = ("hydra.", "objective.")  # objective: what a job returns to the sweeper
LEADING_KEYS = ("regularizer.strength", "model.sparsity")  # λ and s, the tool's own axes, first among swept keys
TARGET = "._target_"  # `<group>._target_` names a run's component class: the group's name says the same
# what every run reports (experiment.evaluate), first in figures and summaries; components add theirs
RUN_PLOTTED = ("final_loss", "task_loss", "reg_loss", "sparsity", "near_zero_fraction")
RUN_UNPLOTTED = ("wall_s", "steps", "epochs", "initial_loss", "diverged_step", "activity_loss", "device_count")  # activity_loss = κ · activity
RUN_SUMMARY = ("final_loss", "test_loss", "sparsity")
GROUPS = ("model", "task", "regularizer", "optimizer", "pruner", "analysis")
PROG = "rnn-sparsity-aggregate"
ALWAYS_TRUSTED = ("rnn_sparsity",)
TRUST_ENV = "RNN_SPARSITY_TRUST"  # comma-separated packages whose components may be imported, like --trust


def trusted_packages(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The packages whose modules a run's `_target_` may import: rnn_sparsity, those in
    RNN_SPARSITY_TRUST (comma-separated) and `extra` (--trust), each once."""
    from_env = os.environ.get(TRUST_ENV, "").split(",")
    return tuple(dict.fromkeys(name.strip() for name in (*ALWAYS_TRUSTED, *from_env, *extra) if name.strip()))


def is_trusted(module: str, trusted: Sequence[str]) -> bool:
    """Whether `module` is one of the `trusted` packages or inside one (`pkg`, `pkg.sub.mod`; not `pkg_x`)."""
    return any(module == package or module.startswith(f"{package}.") for package in trusted)


def run_components(runs: pd.DataFrame, trusted: Sequence[str] | None = None) -> list[type]:
    """The component classes the runs name (`<group>._target_`), each once, imported only from the
    `trusted` packages (default: trusted_packages()), since importing a module runs its code.

    A target in another module is not imported: one line per such module says how to trust it. One
    that cannot be imported is reported too. Either way it is left out: its metrics are then treated
    like any other, and its summary metrics and sweep outputs are skipped.
    """
    from rnn_sparsity.components import ConfigError, component_class

    trusted = trusted_packages() if trusted is None else tuple(trusted)
    found, untrusted = {}, {}
    for group in GROUPS:
        column = f"{group}{TARGET}"
        for target in sorted(map(str, runs[column].dropna().unique())) if column in runs else ():
            module = target.rpartition(".")[0]
            if not is_trusted(module, trusted):
                untrusted.setdefault(module, f"{column}={target}")
                continue
            try:
                found[target] = component_class(group, target)
            except ConfigError as err:
                print(f"{PROG}: {err}; its own tables and figures are skipped", file=sys.stderr)
    for module, named in untrusted.items():
        package = module.split(".")[0] or module
        print(f"{PROG}: not importing {module or repr(module)} ({named}), not a trusted package: its runs are "
              f"listed, its summary metrics and sweep outputs skipped; to trust it: --trust {package} or "
              f"{TRUST_ENV}={package}", file=sys.stderr)
    return list(found.values())


def declared(components: Sequence[type], attribute: str) -> list[str]:
    return list(dict.fromkeys(name for cls in components for name in getattr(cls, attribute)))


def find_run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every run directory (holding .hydra/config.yaml) at any depth below `paths`, outside `aggregate/`."""
    found = set()
    for root in map(Path, paths):
        for config in root.rglob(CONFIG):
            run_dir = config.parent.parent
            if AGGREGATE_DIR not in run_dir.relative_to(root).parts:
                found.add(run_dir.resolve())
    return sorted(found)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"group.key": value}; lists become one string like "[J, B]" so a cell stays scalar."""
    flat = {}
    for name, value in tree.items():
        column = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{column}."))
        elif isinstance(value, list):
            flat[column] = "[" + ", ".join(map(str, value)) + "]"
        else:
            flat[column] = value
    return flat


def read_flat_config(run_dir: Path) -> dict[str, Any]:
    """The composed config of a run, flattened, with each scalar interpolation resolved on its own.

    One by one, so that an interpolation only Hydra can resolve (`${hydra:...}`) stays as written
    without keeping `${model.n_units}` elsewhere from resolving.
    """
    config = OmegaConf.load(Path(run_dir) / CONFIG)
    flat = flatten(OmegaConf.to_container(config, resolve=False))
    for key, value in flat.items():
        if isinstance(value, str) and "${" in value:
            with suppress(InterpolationResolutionError):
                resolved = OmegaConf.select(config, key, throw_on_resolution_failure=True)
                flat[key] = value if OmegaConf.is_config(resolved) else resolved
    return flat


def load_run(run_dir: Path) -> dict[str, Any]:
    """One table row: flattened config, metrics, then run_dir, status, problem and the joined overrides.
    A damaged run keeps only what could be read (never a config read from a broken file)."""
    check = check_run(run_dir)
    row = {**(read_flat_config(run_dir) if check.damaged_file != CONFIG else {}), **check.metrics}
    row.update(run_dir=str(run_dir), status=check.status, problem=check.problem, overrides=run_overrides(run_dir))
    return row


def run_overrides(run_dir: Path) -> str:
    """The run's overrides joined by spaces; "" when overrides.yaml is absent or broken (it is Hydra's: a
    broken one only costs the overrides)."""
    with suppress(Exception):
        return " ".join(read_overrides(run_dir))
    return ""


def expand_sweep(arguments: Sequence[str]) -> list[list[str]]:
    """Every job's overrides of a sweep's arguments, in Hydra's job order, as the basic sweeper expands
    them: the cartesian product over keys in the order first given (a key given again keeps its place
    and takes the new values), each sweep (`k=a,b`, `k=range(3)`, `k=choice(a,b)`) giving its values
    and any other override itself. Written here with Hydra's public override parser rather than
    borrowed from the sweeper's internals."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:  # an interval: the basic sweeper refuses it too
            raise ValueError(f"{key}: an interval sweep has no list of jobs")
    return [list(job) for job in itertools.product(*choices.values())]


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The override list of every job of a sweep, in Hydra's job order (job i <-> index i), expanded
    from its multirun.yaml exactly as the basic sweeper expands it (and the resume sweeper, the default,
    which expands it the same way); None for other sweepers, and for a sweep without multirun.yaml (an
    Optuna search: its trials are not known ahead)."""
    if not (Path(sweep_dir) / MULTIRUN_FILE).exists():
        return None
    hydra_cfg = OmegaConf.load(Path(sweep_dir) / MULTIRUN_FILE).hydra
    if not any(name in str(OmegaConf.select(hydra_cfg, "sweeper._target_", default=""))
               for name in ("basic_sweeper", "resume_sweeper")):
        return None
    params = hydra_cfg.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    return expand_sweep([f"{key}={value}" for key, value in params.items()] + list(hydra_cfg.overrides.task))


def sweep_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every sweep dir (holding Hydra's multirun.yaml, or an Optuna search's results) at any depth below
    `paths`. An Optuna search still running has neither: its runs count as runs outside any sweep."""
    return sorted({record.parent.resolve() for root in map(Path, paths) for record in root.rglob("*.yaml")
                   if record.name in SWEEP_RECORDS})  # one walk of the tree for both names


def best_trial(sweep_dir: Path) -> str | None:
    """"best trial (optuna, maximize test_accuracy): job 7 test_accuracy=0.9667 regularizer.strength=0.0012
    optimizer.lr=0.011": the best trial hydra-optuna-sweeper recorded in the sweep dir's
    optimization_results.yaml, matched to the run dir below it whose overrides hold its best_params; the
    metric and direction are that run's `objective`. None for a sweep dir without the file; a line
    saying what is wrong for a file that cannot be read or a trial no run dir holds."""
    path = Path(sweep_dir) / OPTUNA_RESULTS
    if not path.exists():
        return None
    try:
        results = OmegaConf.to_container(OmegaConf.load(path))
        params, value = dict(results["best_params"]), float(results["best_value"])
    except Exception as err:  # noqa: BLE001 (a broken record is reported, not fatal)
        return f"best trial: {OPTUNA_RESULTS} unreadable, or without best_params and best_value ({type(err).__name__})"
    shown = " ".join(f"{key}={format_number(v)}" for key, v in params.items())
    for run_dir in find_run_dirs([sweep_dir]):
        overrides = override_values(run_dir)
        if all(same_value(overrides.get(key), v) for key, v in params.items()):
            metric, direction = run_objective(run_dir)
            return (f"best trial (optuna, {direction} {metric}): job {read_job_number(run_dir)} "
                    f"{metric}={format_number(value)} {shown}")
    return f"best trial (optuna): {format_number(value)} at {shown}, but no run dir below has these overrides"


def override_values(run_dir: Path) -> dict[str, str]:
    """{key: value as text} of a run's overrides; {} where overrides.yaml is absent or broken."""
    with suppress(Exception):
        return dict(o.split("=", 1) for o in read_overrides(run_dir) if "=" in o)
    return {}


def format_number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def same_value(text: str | None, value: Any) -> bool:
    """Whether an override's value (text) is an Optuna parameter's value: numbers by value (Optuna's
    overrides are written as `f"{name}={value}"`), anything else as text."""
    if text is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return text == str(value)
    with suppress(ValueError):
        return float(text) == float(value)
    return False


def run_objective(run_dir: Path) -> tuple[str, str]:
    """(objective.metric, objective.direction) of a run's config ("value", "?" where it has none)."""
    with suppress(Exception):
        objective = OmegaConf.load(Path(run_dir) / CONFIG).objective
        return str(objective.metric), str(objective.direction)
    return "value", "?"


def owning_sweep(run_dir: Path, sweeps: Sequence[Path]) -> Path | None:
    """The innermost sweep dir that holds `run_dir`, so a sweep nested in another owns its own runs."""
    holders = [sweep for sweep in sweeps if run_dir.is_relative_to(sweep)]
    return max(holders, key=lambda sweep: len(sweep.parts), default=None)


def missing_jobs(paths: Iterable[Path | str], run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """A row (status "missing", its job number and overrides) for every job of a sweep below `paths`
    whose number no run dir of that sweep carries: Hydra never started it, or its directory was lost.

    Matched by job number within each sweep, never by overrides: the same grid in another sweep does
    not stand in for a lost job, and a run whose .hydra files a full disk emptied is still found.
    """
    sweeps = sweep_dirs(paths)
    present: dict[Path, set[int | None]] = {sweep: set() for sweep in sweeps}
    for run_dir in map(Path, run_dirs):
        if (sweep := owning_sweep(run_dir.resolve(), sweeps)) is not None:
            present[sweep].add(read_job_number(run_dir))
    rows = []
    for sweep in sweeps:
        try:
            jobs = expected_jobs(sweep)
        except Exception as err:  # noqa: BLE001 (an unreadable sweep record is reported, not fatal)
            rows.append({"run_dir": str(sweep / MULTIRUN_FILE), "status": DAMAGED, "overrides": "",
                         "problem": f"{MULTIRUN_FILE}: unreadable ({type(err).__name__})"})
            continue
        for number, job in enumerate(jobs or []):
            if number not in present[sweep]:
                rows.append({"run_dir": str(sweep / str(number)), "status": MISSING,
                             "overrides": " ".join(job), "problem": f"job {number} of the sweep has no run directory"})
    return rows


def load_runs(paths: Iterable[Path | str] | Path | str) -> pd.DataFrame:
    """The tidy table of every run below `paths`, one row per run directory (and per missing job of a
    sweep), bookkeeping columns first: what `rnn-sparsity-aggregate` writes to runs.parquet.

    >>> runs = load_runs("multirun/demo")
    >>> runs[runs.status == "completed"].groupby("regularizer.strength")["sparsity"].mean()
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    run_dirs = find_run_dirs(paths)
    runs = pd.DataFrame([load_run(run_dir) for run_dir in run_dirs] + missing_jobs(paths, run_dirs))
    front = [column for column in BOOKKEEPING if column in runs]
    return runs[front + [column for column in runs if column not in front]]


def sound(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows whose config and metrics could be read (not damaged, not missing)."""
    return runs[~runs["status"].isin(UNSOUND)]


def override_keys(runs: pd.DataFrame) -> set[str]:
    """Config keys named in any run's overrides; a group choice `model=x` also names `model.name`."""
    keys = set()
    for token in " ".join(runs["overrides"]).split():
        if "=" in token:
            key = token.split("=", 1)[0].lstrip("+~")
            keys.update((key, f"{key}.name"))
    return keys


def is_result_key(column: str) -> bool:
    """Whether a config column can change results (NON_RESULT_KEYS, hydra.* and objective.* cannot; a
    group's `_target_` only repeats what its name says)."""
    return column not in NON_RESULT_KEYS and not column.startswith(NON_RESULT_PREFIXES) and \
        not (column.endswith(TARGET) and column.count(".") == 1)


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Config columns whose value differs across the sound runs, `regularizer.strength` and
    `model.sparsity` first.

    Keys named in the overrides are preferred; without any, every varying dotted (config) column counts,
    since metric keys are flat. Damaged and missing rows do not count, and keys that do not change
    results (NON_RESULT_KEYS: seeds are what we average over; progress, figures, hydra.*) never do.
    """
    runs = sound(runs)
    varying = [column for column in runs
               if column not in BOOKKEEPING and is_result_key(column) and runs[column].nunique(dropna=False) > 1]
    named = override_keys(runs)
    keys = [column for column in varying if column in named] or [c for c in varying if "." in c]
    return sorted(keys, key=lambda k: (LEADING_KEYS.index(k) if k in LEADING_KEYS else len(LEADING_KEYS), k))


def same_as_global(runs: pd.DataFrame, column: str) -> bool:
    """A per-parameter metric (`sparsity/J`) equal to its global one (`sparsity`) in every run: the run
    regularises one parameter, and a figure of it would repeat the global one."""
    metric = column.split("/", 1)[0]
    if "/" not in column or metric not in runs:
        return False
    a, b = pd.to_numeric(runs[column], errors="coerce"), pd.to_numeric(runs[metric], errors="coerce")
    return bool(((a == b) | (a.isna() & b.isna())).all())


def metric_columns(runs: pd.DataFrame, components: Sequence[type] = ()) -> list[str]:
    """Numeric metric columns worth a figure: every run's own (RUN_PLOTTED) in order, then the
    components' summary metrics, then any other (not RUN_UNPLOTTED nor what a component declares
    unplotted, nor a per-parameter copy of a global metric).

    Metric keys are flat names; config columns are dotted or named in the overrides (`seed`).
    """
    runs = sound(runs)
    unplotted = (*RUN_UNPLOTTED, *declared(components, "unplotted_metrics"))  # names, or patterns (round*_*)
    excluded = set(BOOKKEEPING + NON_RESULT_KEYS) | override_keys(runs)
    numeric = {column for column in runs
               if "." not in column and column not in excluded and not any(fnmatch(column, u) for u in unplotted)
               and not same_as_global(runs, column)
               and is_numeric_dtype(runs[column]) and not is_bool_dtype(runs[column])}
    standard = [metric for metric in (*RUN_PLOTTED, *declared(components, "summary_metrics")) if metric in numeric]
    return list(dict.fromkeys(standard)) + sorted(numeric - set(standard))


def summarize(runs: pd.DataFrame, keys: Sequence[str], components: Sequence[type] = ()) -> pd.DataFrame:
    """One row per combination of swept values (sound runs only): runs, completed runs, and per metric
    (RUN_SUMMARY and the components' summary_metrics) the mean, standard deviation (ddof 1; empty for
    one run) and n over the completed runs."""
    runs = sound(runs)
    wanted = dict.fromkeys((*RUN_SUMMARY, *declared(components, "summary_metrics")))
    metrics = [metric for metric in wanted if metric in runs and runs[metric].notna().any()]
    groups = runs.groupby(list(keys), dropna=False) if keys else [((), runs)]
    rows = []
    for values, group in groups:
        completed = group[group["status"] == "completed"]
        row = {**dict(zip(keys, values)), "runs": len(group), "completed": len(completed)}
        for metric in metrics:
            values_m = pd.to_numeric(completed[metric], errors="coerce").dropna()
            row.update({f"mean_{metric}": values_m.mean(), f"std_{metric}": values_m.std(),
                        f"n_{metric}": len(values_m)})
        rows.append(row)
    return pd.DataFrame(rows)


def problem_report(runs: pd.DataFrame) -> str:
    """The runs that did not complete, one line each: status, run_dir (or the missing job's number and
    overrides) and the reason (a failed run's error, the damaged file and why)."""
    lines = []
    for _, run in runs[runs["status"] != "completed"].iterrows():
        reason = run.get("problem") if isinstance(run.get("problem"), str) and run.get("problem") else run.get("error")
        detail = f"  ({one_line(reason)})" if isinstance(reason, str) and reason else ""
        job = f"  [{run['overrides']}]" if run["status"] == MISSING else ""
        lines.append(f"  {run['status']:<10}  {run['run_dir']}{job}{detail}")
    return "\n".join(lines)


def one_line(reason: str) -> str:
    """A reason as one line of a report: its first line, at most 160 characters."""
    return (reason.splitlines() or [""])[0][:160]


def status_counts(statuses: Iterable[str], noun: str = "runs", labels: dict[str, str] | None = None) -> str:
    """"16 runs: 12 completed, 2 diverged, 1 damaged, 1 missing" (classes in STATUS_ORDER, each named by
    `labels` where it has an entry)."""
    counts = Counter(statuses)
    parts = [f"{counts[s]} {(labels or {}).get(s, s)}"
             for s in (*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))) if counts[s]]
    total = sum(counts.values())
    return f"{total} {noun.removesuffix('s') if total == 1 else noun}: {', '.join(parts)}"


# -------------------------------------------------------------------------------------------- writing
class OutputError(Exception):
    """An output that cannot be written; the message names it and why, in one line."""


def os_reason(err: OSError) -> str:
    """"[Errno 28] No space left on device": the error without its file name (the message names the output;
    an atomic write's file name would be a temporary one)."""
    return f"[Errno {err.errno}] {err.strerror}" if err.errno and err.strerror else (str(err) or type(err).__name__)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` (a read-only directory, a full disk) into an OutputError
    that names `path`, so the user gets one line instead of a traceback."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"cannot write {path}: {os_reason(err)}; use --out <writable dir>") from err


def output_folder(folder: Path) -> Path:
    """Make `folder`, an output folder this tool names itself, refusing a symbolic link there: one planted
    in a sweep dir would send the outputs (and the removal of stale figures) elsewhere."""
    if folder.is_symlink():
        raise OutputError(f"{folder} is a symbolic link (to {os.readlink(folder)}): not writing through it; "
                          "remove it, or use --out <dir>")
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_output(path: Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` into a temporary file renamed onto `path` (artifacts.atomic_path): a reader never sees
    half a file, a full disk leaves the earlier file whole, and a symbolic link at `path` is replaced
    rather than its target written."""
    with writing(path), atomic_path(path) as tmp:
        write(tmp)
    return path


def value_kind(value: Any) -> str:
    """What parquet stores a cell as: flag, number or text (anything else as its type's name)."""
    if isinstance(value, bool):
        return "flag"
    return "number" if isinstance(value, numbers.Number) else "text" if isinstance(value, str) else type(value).__name__


def storable(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` as parquet can store it: a column whose values are of different kinds in different runs (a
    flag true in one run and "unknown" in another, a number in an old run and text in a new one) becomes
    text, missing values staying missing; parquet refuses a column of mixed kinds."""
    mixed = [column for column in runs if runs[column].dtype == object
             and len({value_kind(value) for value in runs[column].dropna()}) > 1]
    return runs.assign(**{column: runs[column].map(lambda v: v if pd.isna(v) else str(v)) for column in mixed})


def distinct_outputs(components: Sequence[type]) -> list[type]:
    """The components whose sweep_outputs are their own: of classes that inherit one implementation (the
    built-in pruners share the matched-sparsity comparison), the first alone, so it is drawn once."""
    seen, out = set(), []
    for cls in components:
        implementation = getattr(cls.sweep_outputs, "__func__", cls.sweep_outputs)
        if implementation not in seen:
            seen.add(implementation)
            out.append(cls)
    return out


def write_component_outputs(components: Sequence[type], runs: pd.DataFrame, keys: Sequence[str],
                            out: Path) -> list[Path]:
    """Each component's sweep outputs (`sweep_outputs(runs, keys, folder)`), written into a private
    staging folder inside `out` and then renamed into place file by file: whatever a component's code
    does (a user's too), its files appear whole and never through a symbolic link, as the tool's own.
    Returns the paths in `out` of every file they wrote, those they listed first and in their order."""
    with writing(out):
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging.", suffix=TEMP_SUFFIX))
    try:
        listed = []
        with writing(out):  # a component's own writes meet a full disk as ours do
            for cls in distinct_outputs(components):
                listed += [Path(path) for path in cls.sweep_outputs(runs, keys, staging)]
        moved = []
        for staged in sorted(path for path in staging.rglob("*") if path.is_file()):
            relative = staged.relative_to(staging)
            folder = out
            for part in relative.parent.parts:  # figures/ or a component's own folder, none of them a link
                folder = output_folder(folder / part)
            with writing(out / relative):
                os.replace(staged, out / relative)
            moved.append(out / relative)
        order = {out / path.relative_to(staging): n for n, path in enumerate(listed) if path.is_relative_to(staging)}
        return sorted(moved, key=lambda path: order.get(path, len(order)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_aggregate(runs: pd.DataFrame, summary: pd.DataFrame, keys: Sequence[str], components: Sequence[type],
                    out: Path) -> tuple[list[Path], list[Path]]:
    """runs.parquet, runs.csv, summary.csv, figures/ and the components' sweep outputs into `out` (made by
    output_folders), every file atomically; returns (figures, other files written). An earlier
    aggregation's figures that this one did not redraw are removed last (they may not apply any more),
    so a write that fails midway leaves every earlier file in place. Raises OutputError for anything
    that cannot be written."""
    from rnn_sparsity.plots.sweep import draw_sweep_figures

    stored = storable(runs)
    write_output(out / "runs.parquet", lambda tmp: stored.to_parquet(tmp, index=False))
    write_output(out / "runs.csv", lambda tmp: stored.to_csv(tmp, index=False))
    write_output(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    figures_folder, plotted = out / FIGURES, sound(runs)
    earlier = set(figures_folder.glob("*.png"))
    with writing(figures_folder):
        figures = draw_sweep_figures(plotted, keys, metric_columns(runs, components), figures_folder)
    tables = []
    for path in write_component_outputs(components, plotted, keys, out):
        (figures if path.suffix == ".png" and path.parent.name == FIGURES else tables).append(path)
    with writing(figures_folder):
        for stale in earlier - set(figures):
            stale.unlink()
    return figures, tables


# --------------------------------------------------------------------------------------------- status
# what --status calls a class (in a job's line with dashes: one word): no DONE is all a run dir says of
# its process, alive or killed
STATUS_LABELS = {"incomplete": "running or incomplete"}
FINISHED = ("completed", "diverged")  # the classes whose final_loss is a result


class JobState(NamedTuple):
    """One line of --status: the job's number (None: not known), its run dir relative to its sweep (a
    missing job's: the one Hydra would have made), class, overrides, final_loss if finished, reason."""

    number: int | None
    name: str
    status: str
    overrides: list[str]
    final_loss: float | None
    reason: str


def ago(seconds: float) -> str:
    """12 s, 5 min, 3 h, 2 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def last_write(run_dir: Path) -> float:
    """The last change in a run dir: the newest mtime of the dir, its entries and theirs (.hydra/, a
    checkpoint's); an atomic write's rename or a removed DONE changes the dir's own."""
    mtimes = [run_dir.stat().st_mtime]
    with suppress(OSError):  # a run still writing may rename a file away between listing and stat
        for entry in run_dir.iterdir():
            for path in entry.iterdir() if entry.is_dir() else (entry,):
                mtimes.append(path.stat().st_mtime)
    return max(mtimes)


def job_state(run_dir: Path, root: Path, in_sweep: bool) -> JobState:
    """A run dir's line of --status, classified by check_run as the table classifies it; a job number
    only within a sweep (`in_sweep`), where it names the job."""
    check = check_run(run_dir)
    reason = check.problem
    if check.status == "incomplete":
        reason += f"; newest file written {ago(time.time() - last_write(run_dir))} ago"
        if latest_checkpoint(run_dir) is not None:
            reason += "; a rerun resumes from its checkpoint"
    name = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    loss = check.metrics.get("final_loss") if check.status in FINISHED else None
    return JobState(read_job_number(run_dir) if in_sweep else None, name, check.status, run_overrides(run_dir).split(),
                    loss if isinstance(loss, (int, float)) else None, reason)


def sweep_status(paths: Iterable[Path | str]) -> dict[Path, list[JobState]]:
    """Every job below `paths` by the sweep dir that owns it (a run outside any sweep: by the given path
    that holds it), in job order: its run dirs (find_run_dirs) and its missing jobs (missing_jobs)."""
    paths = [Path(path) for path in paths]
    run_dirs, sweeps = find_run_dirs(paths), sweep_dirs(paths)
    groups: dict[Path, list[JobState]] = {sweep: [] for sweep in sweeps}
    for run_dir in run_dirs:
        sweep = owning_sweep(run_dir, sweeps)
        root = sweep or next(p.resolve() for p in paths if run_dir.is_relative_to(p.resolve()))
        groups.setdefault(root, []).append(job_state(run_dir, root, in_sweep=sweep is not None))
    for row in missing_jobs(paths, run_dirs):  # a missing job's run_dir is <sweep>/<its number>
        path = Path(row["run_dir"])
        number = int(path.name) if path.name.isdigit() else None
        groups[path.parent].append(JobState(number, path.name, row["status"], row["overrides"].split(), None, row["problem"]))
    return {root: sorted(jobs, key=lambda job: (job.number is None, job.number or 0, job.name))
            for root, jobs in sorted(groups.items())}


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it, else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)


def status_report(groups: dict[Path, list[JobState]], quiet: bool = False) -> str:
    """Per sweep: its path, the overrides every job shares, one aligned line per job, then the count line
    ("multirun/demo: 16 jobs: 12 completed, 1 diverged, ..."); with `quiet` only the count lines."""
    blocks = []
    for root, jobs in groups.items():
        noun = "jobs" if any((root / name).exists() for name in SWEEP_RECORDS) else "runs"
        counts = f"{shown_path(root)}: {status_counts((job.status for job in jobs), noun, STATUS_LABELS)}"
        if quiet:
            blocks.append(counts)
            continue
        best = best_trial(root)
        listed = [job.overrides for job in jobs if job.overrides]
        shared = [o for o in listed[0] if all(o in others for others in listed[1:])] if len(listed) > 1 else []
        rows = [("job", "status", "final_loss", "overrides", "")]
        for job in jobs:
            name = job.name if job.number is None or job.name == str(job.number) else f"{job.name} (job {job.number})"
            loss = f"{job.final_loss:.4g}" if job.final_loss is not None else "-"
            own = " ".join(o for o in job.overrides if o not in shared)
            label = STATUS_LABELS.get(job.status, job.status).replace(" ", "-")
            rows.append((name, label, loss, own, one_line(job.reason)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"  {a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:<{widths[3]}}  {e}".rstrip()
                 for a, b, c, d, e in rows]
        head = [shown_path(root)] + ([f"  every job: {' '.join(shared)}"] if shared else [])
        blocks.append("\n".join([*head, *lines, counts, *([f"{shown_path(root)}: {best}"] if best else [])]))
    return ("\n" if quiet else "\n\n").join(blocks)


def output_folders(dirs: Sequence[Path], out: Path | None) -> Path:
    """OUT and OUT/figures made, before anything is read, so that a read-only sweep dir or a planted link
    ends the tool at once: the default OUT (`<first DIR>/aggregate`) and figures/ are the tool's own
    names inside a sweep dir and may not be symbolic links; an --out the user names is used as named."""
    if out is None:
        out = output_folder(dirs[0] / AGGREGATE_DIR)
    else:
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
    output_folder(out / FIGURES)
    return out


def aggregate_dirs(dirs: Sequence[Path], out: Path | None, trusted: Sequence[str]) -> int:
    """The tool's work: the output folders (output_folders), the table, the summary, every file written
    (write_aggregate), then the report printed. Raises OutputError for anything that cannot be written."""
    out = output_folders(dirs, out)
    runs = load_runs(dirs)
    keys = swept_keys(runs)
    components = run_components(sound(runs), trusted)
    summary = summarize(runs, keys, components)
    figures, tables = write_aggregate(runs, summary, keys, components, out)

    n_completed = int((runs["status"] == "completed").sum())
    print(f"{status_counts(runs['status'])}; swept: {', '.join(keys) or 'nothing'}\n")
    shown = [c for c in summary if not c.startswith(("std_", "n_"))]  # summary.csv has std and n as well
    print(summary[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    problems = problem_report(runs)
    if problems:
        print(f"\nNot completed ({len(runs) - n_completed}):\n{problems}")
    for sweep in sweep_dirs(dirs):
        if best := best_trial(sweep):
            print(f"\n{shown_path(sweep)}: {best}")
    tables_written = "".join(f", {path.name}" for path in tables)
    print(f"\nWrote {out}/runs.parquet, runs.csv, summary.csv{tables_written} and {len(figures)} figures in {out}/figures")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; a missing DIR or one without run directories is a usage error (exit 2), an
    output that cannot be written one line on stderr (exit 1)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Collect run directories into runs.parquet/csv, a summary table and comparison figures.")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="folders searched at any depth for run directories (.hydra/config.yaml)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: <first DIR>/aggregate); a read-only sweep is aggregated "
                             "into a writable folder named here")
    parser.add_argument("--trust", action="append", default=[], metavar="PACKAGE",
                        help="also import the components (`_target_`) of runs from PACKAGE and its modules, for "
                             "their summary metrics and sweep outputs; repeatable. rnn_sparsity is always "
                             f"trusted; {TRUST_ENV}=pkg1,pkg2 adds packages too. A run whose component is "
                             "untrusted is still listed: importing a module runs its code, and a sweep dir may "
                             "come from someone else")
    parser.add_argument("--status", action="store_true",
                        help="only print each job's state (completed, diverged, failed, running or incomplete, "
                             "damaged, missing) and a count per sweep; writes nothing, draws nothing")
    parser.add_argument("-q", "--quiet", action="store_true", help="with --status: only the count line of each sweep")
    args = parser.parse_args(argv)
    if args.status and args.out:
        parser.error("--status writes nothing: --out does not go with it")
    if args.quiet and not args.status:
        parser.error("-q/--quiet goes with --status")
    for directory in args.dirs:
        if not directory.is_dir():
            parser.error(f"{directory} is not a directory")
        if not find_run_dirs([directory]) and not (args.status and sweep_dirs([directory])):
            sweeps = f" or sweep records ({MULTIRUN_FILE})" if args.status else ""
            parser.error(f"no run directories (folders with {CONFIG}){sweeps} under {directory}")
    if args.status:
        print(status_report(sweep_status(args.dirs), quiet=args.quiet))
        return 0
    try:
        return aggregate_dirs(args.dirs, args.out, trusted_packages(args.trust))
    except OutputError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
