"""`rnn-sparsity-aggregate DIR [DIR ...] [--out OUT]`: run directories -> one tidy table -> files and figures.

A run directory is any folder holding `.hydra/config.yaml`, at any depth below the given folders (Hydra's
multirun lays them out as multirun/DATE/TIME/N/); folders named `aggregate` (this tool's output) are
skipped. Each run becomes one row: its config flattened to dotted columns (`regularizer.strength`), every
metric, and `run_dir`, `status`, `overrides`. Everything is read from disk, so the tool can be rerun at any
time, also while a sweep is still going: runs without DONE are reported as incomplete, never fatal.

Writes into OUT (default `<first DIR>/aggregate`): runs.parquet, runs.csv, summary.csv and figures/*.png,
and prints the summary table with the runs that did not complete. When the runs counted fixed points
(`analysis=dynamics`), also, for λ (`regularizer.strength`) and s (`model.sparsity`) when swept:

  unstable_eigenvalues_by_<key>.csv, .md, .png
      one row per value of the key over its completed runs with fixed points: runs, mean number of fixed
      points, mean number of unstable ones, and the eigenvalues with Re λ > 0 per fixed point
      (mean of the runs' mean_unstable_eigs, max of their max_unstable_eigs)
"""

from __future__ import annotations

import argparse
from contextlib import suppress
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from rnn_sparsity.artifacts import HYDRA_DIR, METRICS, is_done, read_metrics
from rnn_sparsity.plots.rebound import power_law_fits
from rnn_sparsity.plots.run import save_figure
from rnn_sparsity.plots.sweep import draw_sweep_figures, format_cell, table_figure

AGGREGATE_DIR = "aggregate"
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"
OVERRIDES_FILE = f"{HYDRA_DIR}/overrides.yaml"
BOOKKEEPING = ("run_dir", "status", "overrides", "error")
NOT_SWEPT = ("seed",)
LEADING_KEYS = ("regularizer.strength", "model.sparsity")
PLOTTED_METRICS = ("final_loss", "task_loss", "reg_loss", "sparsity", "near_zero_fraction",
                   "spectral_radius", "freq_error", "n_fixed_points", "n_stable_fixed_points",
                   "n_unstable_fixed_points", "n_slow_points", "fp_freq_error", "pca_var_explained_3")
UNPLOTTED_METRICS = ("wall_s", "steps", "initial_loss", "diverged_step", "n_fixed_point_starts", "n_converged_starts",
                     "raw_distance_min_epoch", "aligned_distance_min_epoch", "activity_loss")  # activity_loss = κ · activity
# summary.csv columns, where the runs have them: losses and sparsity, the tasks' own metrics, dynamics counts
SUMMARY_METRICS = ("final_loss", "test_loss", "sparsity", "teacher_distance", "spectral_radius", "freq_error",
                   "bit_accuracy", "n_fixed_points",
                   "n_unstable_fixed_points", "fp_freq_error", "raw_distance", "aligned_distance", "raw_distance_rebound",
                   "max_real_eig", "decay_time_1_tau", "worst_decay_time_1_tau", "mode_decay_time_1_tau")
# unstable-eigenvalue table column: (metric, how the runs of one key value are combined)
UNSTABLE_COLUMNS = {
    "fixed points (mean)": ("n_fixed_points", "mean"),
    "unstable fixed points (mean)": ("n_unstable_fixed_points", "mean"),
    "unstable eigs per point: mean": ("mean_unstable_eigs", "mean"),
    "unstable eigs per point: max": ("max_unstable_eigs", "max"),
}


def find_run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """Every run directory (holding .hydra/config.yaml) at any depth below `paths`, outside `aggregate/`."""
    found = set()
    for root in map(Path, paths):
        for config in root.rglob(CONFIG_FILE):
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
    config = OmegaConf.load(Path(run_dir) / CONFIG_FILE)
    flat = flatten(OmegaConf.to_container(config, resolve=False))
    for key, value in flat.items():
        if isinstance(value, str) and "${" in value:
            with suppress(InterpolationResolutionError):
                resolved = OmegaConf.select(config, key, throw_on_resolution_failure=True)
                flat[key] = value if OmegaConf.is_config(resolved) else resolved
    return flat


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of a run ("regularizer.strength=0.001", ...); none if not recorded."""
    path = Path(run_dir) / OVERRIDES_FILE
    return list(yaml.safe_load(path.read_text()) or []) if path.exists() else []


def run_status(metrics: dict[str, Any], done: bool) -> str:
    """The metrics' status if the run failed (it may never reach DONE) or is done; else "incomplete"."""
    status = metrics.get("status")
    if status == "failed" or (done and status):
        return status
    return "incomplete"


def load_run(run_dir: Path) -> dict[str, Any]:
    """One table row: flattened config, metrics, then run_dir, status and the joined overrides."""
    metrics = read_metrics(run_dir) if (Path(run_dir) / METRICS).exists() else {}
    row = {**read_flat_config(run_dir), **metrics}
    row.update(run_dir=str(run_dir), status=run_status(metrics, is_done(run_dir)),
               overrides=" ".join(read_overrides(run_dir)))
    return row


def load_runs(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run directory below `paths`; bookkeeping columns first."""
    runs = pd.DataFrame([load_run(run_dir) for run_dir in find_run_dirs(paths)])
    front = [column for column in BOOKKEEPING if column in runs]
    return runs[front + [column for column in runs if column not in front]]


def override_keys(runs: pd.DataFrame) -> set[str]:
    """Config keys named in any run's overrides; a group choice `model=x` also names `model.name`."""
    keys = set()
    for token in " ".join(runs["overrides"]).split():
        if "=" in token:
            key = token.split("=", 1)[0].lstrip("+~")
            keys.update((key, f"{key}.name"))
    return keys


def swept_keys(runs: pd.DataFrame) -> list[str]:
    """Config columns whose value differs across runs, `regularizer.strength` and `model.sparsity` first.

    Keys named in the overrides are preferred; without any, every varying dotted (config) column counts,
    since metric keys are flat. `seed` and `hydra.*` are never swept keys: seeds are what we average over.
    """
    varying = [column for column in runs
               if column not in BOOKKEEPING + NOT_SWEPT and not column.startswith("hydra.")
               and runs[column].nunique(dropna=False) > 1]
    named = override_keys(runs)
    keys = [column for column in varying if column in named] or [c for c in varying if "." in c]
    return sorted(keys, key=lambda k: (LEADING_KEYS.index(k) if k in LEADING_KEYS else len(LEADING_KEYS), k))


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """Numeric metric columns worth a figure: the standard ones in order, then any other (not wall_s, steps).

    Metric keys are flat names; config columns are dotted or named in the overrides (`seed`).
    """
    excluded = set(BOOKKEEPING + NOT_SWEPT + UNPLOTTED_METRICS) | override_keys(runs)
    numeric = {column for column in runs
               if "." not in column and column not in excluded
               and is_numeric_dtype(runs[column]) and not is_bool_dtype(runs[column])}
    standard = [metric for metric in PLOTTED_METRICS if metric in numeric]
    return standard + sorted(numeric - set(standard))


def summarize(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per combination of swept values: runs, completed runs, and metric means over completed runs."""
    metrics = [metric for metric in SUMMARY_METRICS if metric in runs and runs[metric].notna().any()]
    groups = runs.groupby(list(keys), dropna=False) if keys else [((), runs)]
    rows = []
    for values, group in groups:
        completed = group[group["status"] == "completed"]
        means = {f"mean_{m}": pd.to_numeric(completed[m], errors="coerce").mean() for m in metrics}
        rows.append({**dict(zip(keys, values)), "runs": len(group), "completed": len(completed), **means})
    return pd.DataFrame(rows)


def unstable_eigenvalue_table(runs: pd.DataFrame, key: str) -> pd.DataFrame | None:
    """Per value of `key`: the completed runs with fixed points, and UNSTABLE_COLUMNS over them.

    None when the runs hold no fixed-point counts (no `analysis=dynamics` run).
    """
    metrics = [metric for metric, _ in UNSTABLE_COLUMNS.values()]
    if not set(metrics) <= set(runs):
        return None
    counted = runs.loc[runs["status"] == "completed", [key, *metrics]].apply(pd.to_numeric, errors="coerce")
    counted = counted[counted["n_fixed_points"].notna()]
    if counted.empty:
        return None
    return counted.groupby(key).agg(runs=("n_fixed_points", "size"), **UNSTABLE_COLUMNS).reset_index()


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table, numbers right-aligned (no `tabulate` needed)."""
    rows = [list(map(str, table.columns))] + [list(map(format_cell, row)) for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("---:" for _ in table.columns) + "|")
    return "\n".join(lines) + "\n"


def write_unstable_tables(runs: pd.DataFrame, keys: Sequence[str], out: Path) -> list[Path]:
    """unstable_eigenvalues_by_<key>.csv, .md and .png for λ and s, when swept; returns the written paths."""
    written = []
    for key in LEADING_KEYS:
        table = unstable_eigenvalue_table(runs, key) if key in keys else None
        if table is None:
            continue
        csv, md, png = (out / f"unstable_eigenvalues_by_{key}.{ext}" for ext in ("csv", "md", "png"))
        table.to_csv(csv, index=False)
        md.write_text(markdown_table(table))
        title = f"Fixed points and unstable eigenvalues (Re λ > 0) by {key}"
        written += [csv, md, save_figure(table_figure(table, title), png)]
    return written


def problem_report(runs: pd.DataFrame) -> str:
    """The runs that did not complete, one line each: status, run_dir and the first line of any error."""
    lines = []
    for _, run in runs[runs["status"] != "completed"].iterrows():
        error = run.get("error")
        detail = f"  ({str(error).splitlines()[0][:120]})" if isinstance(error, str) and error else ""
        lines.append(f"  {run['status']:<10}  {run['run_dir']}{detail}")
    return "\n".join(lines)


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
            parser.error(f"no run directories (folders with {CONFIG_FILE}) under {directory}")
    out = args.out or args.dirs[0] / AGGREGATE_DIR
    out.mkdir(parents=True, exist_ok=True)

    runs = load_runs(args.dirs)
    keys = swept_keys(runs)
    summary = summarize(runs, keys)
    runs.to_parquet(out / "runs.parquet", index=False)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    tables = write_unstable_tables(runs, keys, out)
    fits = power_law_fits(runs)
    if fits is not None:
        fits.to_csv(out / "noise_power_law.csv", index=False)
        tables.append(out / "noise_power_law.csv")
        print("Power law of the final distance in σ (task.noise_std):\n" + fits.to_string(index=False) + "\n")
    figures = draw_sweep_figures(runs, keys, metric_columns(runs), out / "figures")

    n_completed = int((runs["status"] == "completed").sum())
    print(f"{len(runs)} runs, {n_completed} completed; swept: {', '.join(keys) or 'nothing'}\n")
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    problems = problem_report(runs)
    if problems:
        print(f"\nNot completed ({len(runs) - n_completed}):\n{problems}")
    tables_written = "".join(f", {path.name}" for path in tables)
    print(f"\nWrote {out}/runs.parquet, runs.csv, summary.csv{tables_written} and {len(figures)} figures in {out}/figures")
    return 0
