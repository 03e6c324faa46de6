"""`rnn-sparsity-aggregate DIR [DIR ...] [--out OUT]`: run directories -> one tidy table -> files and figures.

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
results (NON_RESULT_KEYS, hydra.*, a group's `_target_`) never do either. Files named `.*.tmp` (left by
a killed atomic write) are never read.

Writes into OUT (default `<first DIR>/aggregate`): runs.parquet, runs.csv, summary.csv and figures/*.png,
and prints the summary table with the runs that did not complete. What else is written, and which
metrics summary.csv holds, the runs' components say (components.Component: `summary_metrics`,
`unplotted_metrics`, `sweep_outputs`), found by the `<group>._target_` of each run's config; for the
built-in analysis group, for instance, the unstable-eigenvalue tables by λ and s and the spectrum panels.
"""

from __future__ import annotations

import argparse
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rnn_sparsity.artifacts import CONFIG, DAMAGED, check_run, read_job_number, read_overrides

AGGREGATE_DIR = "aggregate"
MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of a sweep, written in the sweep dir when it starts
BOOKKEEPING = ("run_dir", "status", "problem", "overrides", "error")
MISSING = "missing"
UNSOUND = (DAMAGED, MISSING)  # rows without a trustworthy config or metrics: listed, never plotted or swept
STATUS_ORDER = ("completed", "diverged", "failed", "incomplete", DAMAGED, MISSING)
# Keys that do not change results: never swept keys, however they vary (seeds are averaged over).
NON_RESULT_KEYS = ("seed", "progress", "analysis.figures", "compilation_cache")
NON_RESULT_PREFIXES = ("hydra.",)
LEADING_KEYS = ("regularizer.strength", "model.sparsity")  # λ and s, the tool's own axes, first among swept keys
TARGET = "._target_"  # `<group>._target_` names a run's component class: the group's name says the same
# what every run reports (experiment.evaluate), first in figures and summaries; components add theirs
RUN_PLOTTED = ("final_loss", "task_loss", "reg_loss", "sparsity", "near_zero_fraction")
RUN_UNPLOTTED = ("wall_s", "steps", "epochs", "initial_loss", "diverged_step", "activity_loss")  # activity_loss = κ · activity
RUN_SUMMARY = ("final_loss", "test_loss", "sparsity")
GROUPS = ("model", "task", "regularizer", "optimizer", "analysis")


def run_components(runs: pd.DataFrame) -> list[type]:
    """The component classes the runs name (`<group>._target_`), each once; one that cannot be
    imported here is reported and left out (its metrics are then treated like any other)."""
    from rnn_sparsity.components import ConfigError, component_class

    found = {}
    for group in GROUPS:
        column = f"{group}{TARGET}"
        for target in sorted(runs[column].dropna().unique()) if column in runs else ():
            try:
                found[target] = component_class(group, target)
            except ConfigError as err:
                print(f"rnn-sparsity-aggregate: {err}; its own tables and figures are skipped")
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
    with suppress(Exception):  # overrides.yaml is Hydra's; a broken one only costs the overrides column
        row["overrides"] = " ".join(read_overrides(run_dir))
    row.update(run_dir=str(run_dir), status=check.status, problem=check.problem)
    row.setdefault("overrides", "")
    return row


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The override list of every job of a sweep, in Hydra's job order (job i <-> index i), expanded
    from its multirun.yaml exactly as the basic sweeper expands it (and the resume sweeper, the default,
    which expands it the same way); None for other sweepers."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = OmegaConf.load(Path(sweep_dir) / MULTIRUN_FILE).hydra
    if not any(name in str(OmegaConf.select(hydra_cfg, "sweeper._target_", default=""))
               for name in ("basic_sweeper", "resume_sweeper")):
        return None
    params = hydra_cfg.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(hydra_cfg.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [list(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


def sweep_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every sweep dir (holding Hydra's multirun.yaml) at any depth below `paths`."""
    return sorted({record.parent.resolve() for root in map(Path, paths) for record in root.rglob(MULTIRUN_FILE)})


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
    """Whether a config column can change results (NON_RESULT_KEYS and hydra.* cannot; a group's
    `_target_` only repeats what its name says)."""
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
    unplotted = (*RUN_UNPLOTTED, *declared(components, "unplotted_metrics"))
    excluded = set(BOOKKEEPING + NON_RESULT_KEYS + unplotted) | override_keys(runs)
    numeric = {column for column in runs
               if "." not in column and column not in excluded and not same_as_global(runs, column)
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
        detail = f"  ({str(reason).splitlines()[0][:160]})" if isinstance(reason, str) and reason else ""
        job = f"  [{run['overrides']}]" if run["status"] == MISSING else ""
        lines.append(f"  {run['status']:<10}  {run['run_dir']}{job}{detail}")
    return "\n".join(lines)


def status_counts(runs: pd.DataFrame) -> str:
    """"16 runs: 12 completed, 2 diverged, 1 damaged, 1 missing" (classes in STATUS_ORDER)."""
    counts = Counter(runs["status"])
    parts = [f"{counts[s]} {s}" for s in (*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))) if counts[s]]
    return f"{len(runs)} runs: {', '.join(parts)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; a missing DIR or one without run directories is a usage error (exit 2)."""
    parser = argparse.ArgumentParser(
        prog="rnn-sparsity-aggregate",
        description="Collect run directories into runs.parquet/csv, a summary table and comparison figures.")
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                        help="folders searched at any depth for run directories (.hydra/config.yaml)")
    parser.add_argument("--out", type=Path, help="output folder (default: <first DIR>/aggregate)")
    args = parser.parse_args(argv)
    for directory in args.dirs:
        if not directory.is_dir():
            parser.error(f"{directory} is not a directory")
        if not find_run_dirs([directory]):
            parser.error(f"no run directories (folders with {CONFIG}) under {directory}")
    out = args.out or args.dirs[0] / AGGREGATE_DIR
    out.mkdir(parents=True, exist_ok=True)

    runs = load_runs(args.dirs)
    keys = swept_keys(runs)
    plotted = sound(runs)
    components = run_components(plotted)
    summary = summarize(runs, keys, components)
    runs.to_parquet(out / "runs.parquet", index=False)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    for stale in (out / "figures").glob("*.png"):  # an earlier aggregation's figures may not apply any more
        stale.unlink()
    from rnn_sparsity.plots.sweep import draw_sweep_figures

    figures = draw_sweep_figures(plotted, keys, metric_columns(runs, components), out / "figures")
    tables = []
    for cls in components:
        for path in cls.sweep_outputs(plotted, keys, out):
            (figures if path.suffix == ".png" and path.parent.name == "figures" else tables).append(path)

    n_completed = int((runs["status"] == "completed").sum())
    print(f"{status_counts(runs)}; swept: {', '.join(keys) or 'nothing'}\n")
    shown = [c for c in summary if not c.startswith(("std_", "n_"))]  # summary.csv has std and n as well
    print(summary[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    problems = problem_report(runs)
    if problems:
        print(f"\nNot completed ({len(runs) - n_completed}):\n{problems}")
    tables_written = "".join(f", {path.name}" for path in tables)
    print(f"\nWrote {out}/runs.parquet, runs.csv, summary.csv{tables_written} and {len(figures)} figures in {out}/figures")
    return 0
