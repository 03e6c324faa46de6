"""Write and read a run directory: the contract between a run and everything after it.

```
<run dir>/
  .hydra/            Hydra's record: config.yaml (composed config), overrides.yaml (list of "key=value")
  metrics.json       flat dict of scalars (see `write_metrics`)
  history.parquet    one row per recorded step: step, stage, loss, task_loss, reg_loss, grad_norm
  params.npz         trained (best-loss) parameters under their names; "init/<name>" and "mask/<name>"
  analysis.npz       arrays from analysis (eig_steps, eig_values, final_eigenvalues, task_* ...)
  figures/*.png      per-run figures, drawn from the files above
  fingerprint        sha256 of the config the run started with (`config_fingerprint`), written by
                     `begin_run` (which clears DONE first) before the config is validated; then the
                     sha256 of .hydra/config.yaml once the run's record of it is final
  checkpoint/        while a run trains: its newest checkpoint (checkpoints.py), removed by `mark_done`
                     and by a `begin_run` of another config
  DONE               written last, listing every file it vouches for with its size: a run directory
                     is complete only when it exists, those files are there and the config record is
                     the one the run hashed (`trust_problem`)
```

A rerun of a sweep into the same directory skips every run that is complete (DONE, status completed
or diverged) and whose fingerprint equals its job's config now (the resume sweeper,
hydra_plugins/rnn_sparsity_resume): `finished_metrics(run_dir, config_fingerprint(cfg))`.

Every file is written to a temporary name in the same directory (`.<name>.<random>.tmp`) and renamed
into place, so a reader never sees half a file and an interrupted run never looks complete. Files get
the mode a plain open() would give (0666 minus the umask, normally 0644), so collaborators on a shared
filesystem can read results. A write killed outright (SIGKILL, a node lost) can leave its temporary
file behind: readers never look at `.*.tmp` names, and a run starting in a directory removes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

METRICS = "metrics.json"
HISTORY = "history.parquet"
PARAMS = "params.npz"
ANALYSIS = "analysis.npz"
FIGURES = "figures"
DONE = "DONE"
FINGERPRINT = "fingerprint"
CHECKPOINT = "checkpoint"
# top-level keys that do not change a run's results: a change in them does not make a finished run stale
NOT_RESULTS = ("progress", "compilation_cache", "resume", "checkpoint", "objective")
# what every run's metrics.json holds (experiment.evaluate); its components declare the rest
RUN_METRICS = ("final_loss", "task_loss", "reg_loss", "sparsity", "near_zero_fraction", "initial_loss", "steps",
               "wall_s")
HYDRA_DIR = ".hydra"
CONFIG = f"{HYDRA_DIR}/config.yaml"  # the composed config
OVERRIDES = f"{HYDRA_DIR}/overrides.yaml"  # the job's command-line overrides
HYDRA_RECORD = f"{HYDRA_DIR}/hydra.yaml"  # Hydra's own config of the job (hydra.job.num ...)


TEMP_SUFFIX = ".tmp"


def _read_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc/self/status), else by
    the os.umask round trip (once, at import, before any thread of ours writes files)."""
    with suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()  # what open(path, "w") would create


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` (mode FILE_MODE) only if the block
    succeeds. mkstemp creates its file 0600; it is widened before the rename, so the result is never
    briefly world-unreadable under its final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_temp_file(path: Path) -> bool:
    """A temporary file of atomic_path (left behind only by a write that was killed)."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files killed writes left in run_dir (and its figures/); returns them."""
    stale = [p for folder in (Path(run_dir), Path(run_dir) / FIGURES) if folder.is_dir()
             for p in folder.iterdir() if p.is_file() and is_temp_file(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _json_scalar(value: Any) -> Any:
    """Plain JSON value for a metric: numpy/JAX scalars to Python, NaN/Inf to None."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


WORST = {"minimize": math.inf, "maximize": -math.inf}  # a diverged run's objective value, by direction


def objective_value(objective: Mapping[str, Any], metrics: Mapping[str, Any]) -> float | None:
    """What a job returns to Hydra's sweeper: the run's `objective.metric` (Config.objective), the
    same from a run's metrics in memory as from its metrics.json (a resumed job's), as a float.

    A diverged run returns the worst value (inf when minimising, -inf when maximising): its metrics are
    those of its best parameters before it blew up, which can look good, and an optimising sweeper must
    see its setting as bad. hydra-optuna-sweeper 1.3 tells Optuna 2.10 `float(return value)`: inf is a
    completed trial that TPE ranks last; None makes the trial failed, left out by the sampler, and the
    search goes on ("Failed experiment" in the log); nan would end the whole search (Optuna refuses it,
    and the sweeper then tells the failed trial with the value, which Optuna refuses too).

    None where the run has no number for the metric: non-finite (written as null), or not measured,
    such as window_test_accuracy of a run that ends before its window. A name no run of the config
    reports is refused before training (config.validate, objective_metrics).
    """
    if metrics.get("status") == "diverged":
        return WORST[objective["direction"]]
    value = _json_scalar(metrics.get(objective["metric"]))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """metrics.json: a flat dict of scalars. Non-finite numbers are written as null."""
    path = Path(run_dir) / METRICS
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({k: _json_scalar(v) for k, v in metrics.items()}, indent=2) + "\n")
    return path


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS).read_text())


def write_history(run_dir: Path, history: pd.DataFrame) -> Path:
    path = Path(run_dir) / HISTORY
    with atomic_path(path) as tmp:
        history.to_parquet(tmp, index=False)
    return path


def read_history(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / HISTORY)


def write_arrays(path: Path, arrays: Mapping[str, Any]) -> Path:
    """A compressed .npz of named arrays; names may contain "/" (e.g. "init/J")."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(Path(path)) as data:
        return {k: data[k] for k in data.files}


INIT, MASK = "init/", "mask/"  # name prefixes of the initial parameters and the masks in params.npz


def write_params(run_dir: Path, params: Mapping[str, Any], init: Mapping[str, Any] | None = None,
                 mask: Mapping[str, Any] | None = None) -> Path:
    arrays = dict(params)
    arrays.update({f"{INIT}{k}": v for k, v in (init or {}).items()})
    arrays.update({f"{MASK}{k}": v for k, v in (mask or {}).items()})
    return write_arrays(Path(run_dir) / PARAMS, arrays)


def read_params(run_dir: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Final parameters (prefix ""), initial ones (prefix "init/") or masks (prefix "mask/"); a name
    may contain "/" itself (a Flax parameter path such as "Dense_0/kernel")."""
    arrays = read_arrays(Path(run_dir) / PARAMS)
    if prefix:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return {k: v for k, v in arrays.items() if not k.startswith((INIT, MASK))}


RESULTS = (METRICS, HISTORY, PARAMS, ANALYSIS)  # what a run writes before its figures and DONE


def mark_done(run_dir: Path) -> Path:
    """The run is complete: DONE, listing the results it vouches for with their sizes (figures are drawn
    from them and may be redrawn: not listed), then its checkpoint (no longer needed) removed."""
    run_dir = Path(run_dir)
    files = [name for name in RESULTS if (run_dir / name).is_file()]
    path = run_dir / DONE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"files": {name: (run_dir / name).stat().st_size for name in files}}, indent=1) + "\n")
    remove_checkpoint(run_dir)
    return path


def remove_results(run_dir: Path) -> None:
    """Remove a run's results and figures (those of another config, or of a refused rerun's last run)."""
    for name in RESULTS:
        (Path(run_dir) / name).unlink(missing_ok=True)
    shutil.rmtree(Path(run_dir) / FIGURES, ignore_errors=True)


def done_manifest_problem(run_dir: Path) -> str:
    """"" when every file DONE vouches for is there (the arrays and history with the size they had); else
    what is not. A DONE of an earlier release (empty) vouches for metrics, history and params."""
    run_dir = Path(run_dir)
    try:
        text = (run_dir / DONE).read_text()
        files = json.loads(text)["files"] if text.strip() else {name: None for name in (METRICS, HISTORY, PARAMS)}
        files = dict(files)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{DONE}: unreadable ({type(err).__name__})"
    for name, size in files.items():
        path = run_dir / name
        if not path.is_file():
            return f"{name}: missing although DONE lists it"
        if size is not None and name != METRICS and path.stat().st_size != size:  # metrics.json may gain keys by hand
            return f"{name}: {path.stat().st_size} bytes, DONE lists {size}"
    return ""


def trust_problem(run_dir: Path, record: Any = None) -> str:
    """"" when a finished run's results are its config's: DONE's files all there (done_manifest_problem)
    and .hydra/config.yaml saying what it said when the run began (record_fingerprint, kept beside the
    fingerprint; `record`: the file already loaded); else what is wrong."""
    if problem := done_manifest_problem(run_dir):
        return problem
    recorded = read_record_fingerprint(run_dir)
    if recorded is not None and record_fingerprint(run_dir, record) != recorded:
        return f"{CONFIG}: changed since the run (its results are not this config's)"
    return ""


CHECKPOINT_STEP = re.compile(r"^(\d{10})\.npz$")  # a committed checkpoint: <stage><chunks done>.npz (checkpoints.py)


def checkpoint_names(run_dir: Path) -> list[str]:
    """The positions (<stage><chunks done>) of a run directory's complete checkpoints, oldest first;
    [] when there is none, and when its checkpoint folder is a file or cannot be read (a run's
    checkpoints.load reports and removes that; a scan such as the resume sweeper's goes on)."""
    try:
        entries = os.listdir(Path(run_dir) / CHECKPOINT)
    except OSError:
        return []
    return sorted(match.group(1) for match in map(CHECKPOINT_STEP.match, entries) if match)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint file of a run directory, or None (also for a damaged folder)."""
    names = checkpoint_names(run_dir)
    return Path(run_dir) / CHECKPOINT / f"{names[-1]}.npz" if names else None


def remove_checkpoint(run_dir: Path) -> None:
    """Remove a run directory's checkpoint folder whatever became of it: a file or link in its place is
    unlinked (a link is never followed), a folder made unreadable gets its owner's permissions back
    and goes, and one that still cannot be removed is renamed aside (.checkpoint.<random>.removed), so
    a new run can write its own. Never raises: where not even a rename works, the run directory itself
    cannot be written, and the run fails on its own writes."""
    path = Path(run_dir) / CHECKPOINT
    if not os.path.lexists(path):
        return
    with suppress(OSError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
        try:
            shutil.rmtree(path)
        except OSError:
            _grant_owner_access(path)
            shutil.rmtree(path)
    if os.path.lexists(path):
        with suppress(OSError):
            path.rename(path.with_name(f".{CHECKPOINT}.{os.urandom(4).hex()}.removed"))


def _grant_owner_access(folder: Path) -> None:
    """Give the owner read, write and search permission on a folder and every folder below it (top
    down, so a folder made unreadable can then be walked), where this process may change them."""
    def grant(path: str) -> None:
        with suppress(OSError):
            if not os.path.islink(path):
                os.chmod(path, os.lstat(path).st_mode & 0o7777 | 0o700)

    grant(str(folder))
    for root, names, _ in os.walk(folder):  # each level's folders opened up before the walk enters them
        for name in names:
            grant(os.path.join(root, name))


def config_fingerprint(cfg) -> str:
    """sha256 of a job's composed config (as the task function gets it, unresolved), without Hydra's own
    node and the keys in NOT_RESULTS."""
    import hashlib

    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False)
    for key in ("hydra", *NOT_RESULTS):
        tree.pop(key, None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()


def begin_run(run_dir: Path, fingerprint: str, resume: bool = True) -> None:
    """A run starts in `run_dir` (before its config is validated): no DONE of an earlier attempt, no
    temporary files of a killed write, no results or checkpoint of another config (nor a checkpoint at
    all without `resume`), then the fingerprint of its config. A checkpoint of this config stays: the
    run resumes from it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_done(run_dir)
    remove_temp_files(run_dir)
    if read_fingerprint(run_dir) != fingerprint:
        remove_results(run_dir)
        remove_checkpoint(run_dir)
    elif not resume:
        remove_checkpoint(run_dir)
    write_fingerprint(run_dir, fingerprint)


def write_fingerprint(run_dir: Path, fingerprint: str, record_hash: str | None = None) -> None:
    """`fingerprint`: the config's (config_fingerprint, what a rerun compares); then, once the run's
    config record is final, its record_fingerprint (what a reader checks .hydra/config.yaml against)."""
    with atomic_path(Path(run_dir) / FINGERPRINT) as tmp:
        tmp.write_text(fingerprint + "\n" + (f"{record_hash}\n" if record_hash else ""))


def _fingerprint_lines(run_dir: Path) -> list[str]:
    try:
        return (Path(run_dir) / FINGERPRINT).read_text().split()
    except (OSError, UnicodeDecodeError):
        return []


def read_fingerprint(run_dir: Path) -> str | None:
    lines = _fingerprint_lines(run_dir)
    return lines[0] if lines else None


def read_record_fingerprint(run_dir: Path) -> str | None:
    """The record_fingerprint the run recorded (None: a run without a config record, or of an earlier release)."""
    lines = _fingerprint_lines(run_dir)
    return lines[1] if len(lines) > 1 else None


def record_fingerprint(run_dir: Path, record: Any = None) -> str | None:
    """The fingerprint of .hydra/config.yaml as a reader finds it (its keys that change results: not
    Hydra's node nor NOT_RESULTS), or None when there is none or it cannot be read; `record`: the file
    already loaded (load_record). Computed the same way when the run records it and when a reader checks
    it, so only a change of what the file says counts."""
    import hashlib

    record = load_record(run_dir)[0] if record is None else record
    if not isinstance(record, dict):
        return None
    kept = {key: value for key, value in record.items() if key not in ("hydra", *NOT_RESULTS)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def load_record(run_dir: Path) -> tuple[Any, str]:
    """(.hydra/config.yaml as plain YAML, "" ) or (None, what is wrong with it)."""
    try:
        loaded = yaml.load((Path(run_dir) / CONFIG).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        return None, f"unreadable ({type(err).__name__}: {str(err).splitlines()[0][:80]})"
    return loaded, "" if isinstance(loaded, dict) and loaded else ("empty" if not loaded else "not a mapping")


def finished_metrics(run_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The metrics of a run directory that holds the complete result of the config with this
    fingerprint (DONE, the same fingerprint, every file DONE lists there and the config record the run's
    own: trust_problem; status completed or diverged: a rerun would diverge again); None for any other."""
    run_dir = Path(run_dir)
    if not is_done(run_dir) or read_fingerprint(run_dir) != fingerprint or trust_problem(run_dir):
        return None
    try:
        metrics = read_metrics(run_dir)
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("status") in ("completed", "diverged") else None


def clear_done(run_dir: Path) -> None:
    """Forget an earlier completion: a run re-using a directory is incomplete until it ends."""
    (Path(run_dir) / DONE).unlink(missing_ok=True)


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).exists()


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides Hydra recorded for a run ("regularizer.strength=0.001", ...); [] if none."""
    path = Path(run_dir) / OVERRIDES
    if not path.exists():
        return []
    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def complete_config(run_dir: Path, cfg) -> bool:
    """Add to .hydra/config.yaml the keys of `cfg` it lacks (the schema defaults validation filled in for
    a component whose YAML did not name its schema): the run's record then holds every key it ran with,
    and says everything else as Hydra wrote it (an interpolation such as `${hydra:job.num}` stays one,
    also where a launcher hands over the job's config resolved). Returns whether it rewrote the file; a
    run without Hydra's record is left alone."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / CONFIG
    if not path.exists():
        return False
    saved = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not _add_missing(saved, OmegaConf.to_container(cfg, resolve=False)):
        return False
    with atomic_path(path) as tmp:
        OmegaConf.save(OmegaConf.create(saved), tmp, resolve=False)
    return True


def _add_missing(record: dict, current: dict) -> bool:
    """Add the keys of `current` that `record` lacks, at any depth; whether any was added."""
    added = False
    for key, value in current.items():
        if key not in record:
            record[key], added = value, True
        elif isinstance(value, dict) and isinstance(record[key], dict):
            added = _add_missing(record[key], value) or added
    return added


def figures_dir(run_dir: Path) -> Path:
    path = Path(run_dir) / FIGURES
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------ checking
DAMAGED = "damaged"


class RunCheck(NamedTuple):
    """What a reader can say about a run directory: `status` (completed | diverged | failed |
    incomplete | damaged), `problem` (the failed run's error, or the damaged file and why; "" if none),
    the metrics read (empty when metrics.json is absent or unreadable) and, for a damaged run, the
    file that is damaged (relative to the run directory)."""

    status: str
    problem: str
    metrics: dict
    damaged_file: str = ""


def _damaged(name: str, reason: str, metrics: dict) -> RunCheck:
    return RunCheck(DAMAGED, f"{name}: {reason}", metrics, name)


def _metrics_problem(run_dir: Path) -> tuple[dict, str]:
    if not (Path(run_dir) / METRICS).exists():
        return {}, ""
    try:
        metrics = read_metrics(run_dir)
    except (OSError, UnicodeDecodeError) as err:
        return {}, f"unreadable ({type(err).__name__})"
    except json.JSONDecodeError as err:
        return {}, "empty" if not err.doc.strip() else \
            f"truncated or invalid JSON ({err.msg}, line {err.lineno} col {err.colno})"
    return (metrics, "") if isinstance(metrics, dict) else ({}, "not a JSON object")


def _arrays_problem(path: Path) -> str:
    """"" if the .npz opens and every member's CRC matches (a truncated zip loses its directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        return f"unreadable ({type(err).__name__}: {err})"
    return f"member {bad} is corrupt" if bad else ""


def _history_problem(path: Path) -> str:
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as err:
        return f"unreadable ({type(err).__name__}: {str(err).splitlines()[0][:80]})"
    return ""


def check_run(run_dir: Path) -> RunCheck:
    """Classify a run directory without loading its arrays: every file a finished run holds is opened
    (config and metrics parsed, parquet footer read, npz members CRC-checked); the first unreadable
    one makes the run `damaged`. A `failed` record wins over DONE; no DONE means `incomplete`."""
    run_dir = Path(run_dir)
    metrics, problem = _metrics_problem(run_dir)
    record, config_problem = load_record(run_dir)
    if config_problem:
        return _damaged(CONFIG, config_problem, metrics)
    if problem:
        return _damaged(METRICS, problem, metrics)
    if metrics.get("status") == "failed":
        return RunCheck("failed", str(metrics.get("error") or ""), metrics)
    if not is_done(run_dir):
        return RunCheck("incomplete", "no DONE: still running, or stopped before the end", metrics)
    if not metrics:
        return _damaged(METRICS, "missing although DONE exists", metrics)
    for name, find_problem in ((HISTORY, _history_problem), (PARAMS, _arrays_problem), (ANALYSIS, _arrays_problem)):
        if (run_dir / name).exists() and (problem := find_problem(run_dir / name)):
            return _damaged(name, problem, metrics)
    if problem := trust_problem(run_dir, record):
        name, _, reason = problem.partition(": ")
        return _damaged(name, reason, metrics)
    return RunCheck(str(metrics.get("status") or "completed"), "", metrics)


def read_job_number(run_dir: Path) -> int | None:
    """Hydra's number of the job that made a run (`hydra.job.num` in .hydra/hydra.yaml), else the
    directory's name when it is a number (Hydra's default subdir), else None. Never raises: a full
    disk can leave hydra.yaml empty, and the job still has to be found."""
    run_dir = Path(run_dir)
    with suppress(OSError, yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: hydra.yaml is long
        number = yaml.load((run_dir / HYDRA_RECORD).read_text(), Loader=loader)["hydra"]["job"]["num"]
        return int(number)
    return int(run_dir.name) if run_dir.name.isdigit() else None
