"""Write and read a run directory: the contract between a run and everything after it.

```
<run dir>/
  .hydra/            Hydra's record: config.yaml (composed config), overrides.yaml (list of "key=value")
  metrics.json       flat dict of scalars (see `write_metrics`)
  history.parquet    one row per recorded step: step, stage, loss, task_loss, reg_loss, grad_norm
  params.npz         trained (best-loss) parameters under their names; "init/<name>" and "mask/<name>"
  analysis.npz       arrays from analysis (eig_steps, eig_values, final_eigenvalues, task_* ...)
  figures/*.png      per-run figures, drawn from the files above
  DONE               written last: a run directory is complete only when it exists
```

Every file is written to a temporary name in the same directory and renamed into place, so a reader
never sees half a file and an interrupted run never looks complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import yaml

METRICS = "metrics.json"
HISTORY = "history.parquet"
PARAMS = "params.npz"
ANALYSIS = "analysis.npz"
FIGURES = "figures"
DONE = "DONE"
HYDRA_DIR = ".hydra"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_scalar(value: Any) -> Any:
    """Plain JSON value for a metric: numpy/JAX scalars to Python, NaN/Inf to None."""
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


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


def write_params(run_dir: Path, params: Mapping[str, Any], init: Mapping[str, Any] | None = None,
                 mask: Mapping[str, Any] | None = None) -> Path:
    arrays = dict(params)
    arrays.update({f"init/{k}": v for k, v in (init or {}).items()})
    arrays.update({f"mask/{k}": v for k, v in (mask or {}).items()})
    return write_arrays(Path(run_dir) / PARAMS, arrays)


def read_params(run_dir: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Final parameters (prefix ""), initial ones (prefix "init/") or masks (prefix "mask/")."""
    arrays = read_arrays(Path(run_dir) / PARAMS)
    if prefix:
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return {k: v for k, v in arrays.items() if "/" not in k}


def mark_done(run_dir: Path) -> Path:
    path = Path(run_dir) / DONE
    with atomic_path(path) as tmp:
        tmp.write_text("")
    return path


def clear_done(run_dir: Path) -> None:
    """Forget an earlier completion: a run re-using a directory is incomplete until it ends."""
    (Path(run_dir) / DONE).unlink(missing_ok=True)


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).exists()


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides Hydra recorded for a run ("regularizer.strength=0.001", ...); [] if none."""
    path = Path(run_dir) / HYDRA_DIR / "overrides.yaml"
    if not path.exists():
        return []
    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def figures_dir(run_dir: Path) -> Path:
    path = Path(run_dir) / FIGURES
    path.mkdir(parents=True, exist_ok=True)
    return path
