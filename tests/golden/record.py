"""Record the golden metrics (seed 0) that tests/test_golden.py reproduces.

Run once, on the code a refactor starts from, and commit the JSON it writes:
    .venv/bin/python tests/golden/record.py          (about 5 minutes on 2 cores)
Each case is a study preset restricted to seed 0 (and, where the preset is large, a few of its
grid points), run through the real CLI as a multirun; the metrics.json of every job is kept with
the overrides that made it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "rnn_sparsity"]

# name -> (preset, sweep overrides replacing the preset's grid)
CASES = {
    "demo": ("demo", ["seed=0"]),
    "flipflop": ("flipflop", ["seed=0"]),
    "iris_l1": ("iris_l1", ["regularizer.strength=0,0.00222222,0.005", "seed=0"]),
    "teacher_student_small": ("teacher_student_small", ["seed=0"]),
    "l2_rebound_a": ("l2_rebound_a", ["seed=0"]),
    "thalamocortical": ("thalamocortical", ["model.n_units=100", "seed=0"]),
}
NOT_RESULTS = ("wall_s",)  # machine-dependent


def run_case(preset: str, overrides: list[str], sweep_dir: Path) -> list[dict]:
    subprocess.run([*CLI, "-m", f"sweeps={preset}", *overrides, f"hydra.sweep.dir={sweep_dir}",
                    "progress=false"], check=True)
    jobs = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        metrics = json.loads((job / "metrics.json").read_text())
        jobs.append({"overrides": OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml")),
                     "precision": OmegaConf.load(job / ".hydra" / "config.yaml").precision,
                     "metrics": {k: v for k, v in metrics.items() if k not in NOT_RESULTS}})
    return jobs


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    for name in names:
        preset, overrides = CASES[name]
        with tempfile.TemporaryDirectory() as tmp:
            jobs = run_case(preset, overrides, Path(tmp) / name)
        (HERE / f"{name}.json").write_text(json.dumps({"preset": preset, "overrides": overrides, "jobs": jobs},
                                                      indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(jobs)} jobs recorded")


if __name__ == "__main__":
    main()
