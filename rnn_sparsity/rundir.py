"""The life of a run directory, the same from every launcher: begin -> refused | failed | written ->
figures -> DONE.

    run = RunDir(path, log_file)
    run.begin(fingerprint, resume)   # before validation: no DONE, no results of another config
    run.refuse(err)                  # a bad value: recorded as failed, the sweep goes on
    run.record_config(cfg)           # the config record completed; its hash beside the fingerprint
    run.write(...)                   # metrics.json, history.parquet, params.npz, analysis.npz
    finish(path, figures)            # the figures, then DONE listing every file (here or in a worker)
    run.fail(err)                    # anything else that ended it

So a run directory never shows results its config did not produce: `begin` clears DONE before the config
is even validated (a rerun refused for a bad value cannot leave the last run's DONE beside Hydra's new
config record) and removes the results of a run of another config; DONE is written last and lists the
files it vouches for with their sizes, and `artifacts.trusted` holds a run to them and to the hash of
its `.hydra/config.yaml`. No JAX here.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from . import artifacts

log = logging.getLogger(__name__)


@contextlib.contextmanager
def logging_to(files):
    """Log records (rnn_sparsity's and JAX's warnings) also go to each of `files` (appended: each job's
    log, where Hydra writes its own lines) for the duration of the block."""
    handlers = []
    for file in files:
        if file is None:
            continue
        handler = logging.FileHandler(file, mode="a")
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        handlers.append(handler)
        logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


class RunDir:
    """One run directory and the job log its lines also go to."""

    def __init__(self, path: str | Path, log_file: Path | None = None):
        self.path, self.log_file = Path(path), log_file

    def logging(self):
        return logging_to([self.log_file])

    def begin(self, fingerprint: str, resume: bool = True) -> None:
        """A run starts here (before its config is validated): no DONE of an earlier attempt, no
        temporary files of a killed write, no results or checkpoint of another config (nor a checkpoint
        at all without `resume`), then the fingerprint of its config. A checkpoint of this config stays:
        the run resumes from it."""
        artifacts.begin_run(self.path, fingerprint, resume)

    def record_config(self, cfg) -> None:
        """The config record (.hydra/config.yaml) completed with the keys validation filled in, and its
        fingerprint kept beside the config's: a reader trusts the results only while the record says this."""
        artifacts.complete_config(self.path, cfg)
        artifacts.write_fingerprint(self.path, artifacts.read_fingerprint(self.path), artifacts.record_fingerprint(self.path))

    def refuse(self, err: BaseException) -> None:
        """A job refused before any compute (a bad value, a run that cannot fit): logged, in its job log
        too, and recorded as failed; no DONE and no results of an earlier run stay."""
        with self.logging():
            log.error("%s: %s", self.path, err)
        self.path.mkdir(parents=True, exist_ok=True)
        artifacts.clear_done(self.path)
        artifacts.remove_results(self.path)
        self.fail(err)

    def fail(self, err: BaseException) -> None:
        """metrics.json := {status: failed, error}. If that cannot be written either (a full disk), no
        metrics.json that says completed is left behind (the run then reads as incomplete) and stderr says
        why; the caller reports the run's own error either way."""
        reason = f"{type(err).__name__}: {err}"
        try:  # DONE cannot exist here: begin cleared it and finish writes it last
            artifacts.write_metrics(self.path, {"status": "failed", "error": reason})
        except Exception as write_error:  # noqa: BLE001 (reported, then the run's own error stands)
            with contextlib.suppress(OSError):
                (self.path / artifacts.METRICS).unlink(missing_ok=True)
            print(f"rnn-sparsity: could not record the failure in {self.path / artifacts.METRICS} "
                  f"({type(write_error).__name__}: {write_error}); the run failed with {reason}", file=sys.stderr)

    def write(self, metrics: Mapping[str, Any], params: Mapping, init: Mapping, mask: Mapping,
              history: pd.DataFrame, arrays: Mapping | None) -> None:
        """The run's results; metrics.json last of them (analysis.npz only when `arrays` is given)."""
        artifacts.write_params(self.path, params, init=init, mask=mask)
        artifacts.write_history(self.path, history)
        if arrays is not None:
            artifacts.write_arrays(self.path / artifacts.ANALYSIS, arrays)
        artifacts.write_metrics(self.path, metrics)


def finish(run_dir: Path | str, figures: Mapping[str, Callable] | None) -> None:
    """The last step of every run: its figures (none when analysis.figures is off), then DONE listing the
    files it vouches for; in the run's process, or in a worker (runs.FigurePool: `figures` are
    module-level functions, pickled by reference)."""
    if figures:
        from .plots.run import draw_run_figures

        draw_run_figures(run_dir, figures)
    artifacts.mark_done(Path(run_dir))
