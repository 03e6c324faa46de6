"""Real multiruns through the console scripts into tmp_path, then aggregation."""

import subprocess
import sys

import pandas as pd
import pytest
from helpers import TINY

from rnn_sparsity.aggregate import main as aggregate


def rnn_sparsity(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "rnn_sparsity", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # a 4-job CLI sweep and its aggregation (18 s cold)
def test_sweep_with_a_diverging_job_completes_and_aggregates(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    rnn_sparsity("-m", *TINY, "analysis.figures=true", "optimizer=sgd", "optimizer.steps=40", "regularizer.strength=0,0.1",
                 "optimizer.lr=0.05,1e3", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert len(list(sweep.glob("*/DONE"))) == 4
    assert not (tmp_path / "outputs").exists()

    assert aggregate([str(sweep)]) == 0
    runs = pd.read_parquet(sweep / "aggregate" / "runs.parquet")
    assert len(runs) == 4
    assert set(runs.loc[runs["optimizer.lr"] == 1e3, "status"]) == {"diverged"}
    assert set(runs.loc[runs["optimizer.lr"] == 0.05, "status"]) == {"completed"}
    out = capsys.readouterr().out
    assert "diverged" in out
    figures = {p.name for p in (sweep / "aggregate" / "figures").glob("*.png")}
    assert {"sparsity_vs_regularizer.strength.png", "spectra_by_regularizer.strength.png"} <= figures
    assert {"loss.png", "eigenvalues.png"} <= {p.name for p in (sweep / "0" / "figures").glob("*.png")}


@pytest.mark.slow  # joblib's worker processes each import and compile anew (~20 s)
def test_joblib_launcher_runs_jobs_in_fresh_processes(tmp_path):
    sweep = tmp_path / "multirun"
    rnn_sparsity("-m", *TINY, "optimizer=adam", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 "seed=0,1", "precision=float32,float64", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert len(list(sweep.glob("*/DONE"))) == 4
    runs = pd.concat([pd.read_json(p, typ="series").to_frame().T for p in sweep.glob("*/metrics.json")])
    assert set(runs["status"]) == {"completed"}
