"""Long checks (deselected by default; `pytest -m slow`): packaging and learning the task."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import compose_cfg

import rnn_sparsity
from rnn_sparsity.experiment import run

ROOT = Path(rnn_sparsity.__file__).parent.parent


@pytest.mark.slow
def test_wheel_ships_every_config_and_preset(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    yamls = {str(p.relative_to(ROOT)) for p in (ROOT / "rnn_sparsity" / "conf").rglob("*.yaml")}
    assert yamls and yamls <= shipped
    assert {"rnn_sparsity/conf/sweeps/demo.yaml", "rnn_sparsity/conf/config.yaml", "rnn_sparsity/data/iris.csv"} <= shipped
    # the vmap launcher, in Hydra's plugin namespace (no hydra_plugins/__init__.py: it is a namespace package)
    assert "hydra_plugins/rnn_sparsity_vmap/vmap_launcher.py" in shipped and "hydra_plugins/__init__.py" not in shipped


@pytest.mark.slow
def test_sine_small_learns_the_task_and_its_fixed_points_give_the_frequencies(tmp_path):
    """The `sine_small` preset (seed 0): freq_error under 5%, and the central fixed point's unstable pair
    gives each task's frequency (Sussillo & Barak): fp_freq_error under 10%."""
    cfg = compose_cfg("sweeps=sine_small", "seed=0", "analysis=dynamics", "analysis.figures=false",
                      "progress=false", tiny=False)
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed"
    assert metrics["freq_error"] < 0.05
    assert metrics["task_loss"] < 1e-2
    assert metrics["fp_freq_error"] < 0.10
