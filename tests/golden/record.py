"""Record the golden metrics (seed 0) that tests/test_golden.py reproduces, for this machine's numerics.

Rounding differs across machines and training amplifies it (rnn_sparsity/numerics.py), so a case file
holds one record per numerics key: {"preset", "overrides", "platforms": {key: {"about", "commit",
"recorded", "jobs"}}}. Running this adds (or replaces) the record of this machine's key, keeping the
others. Record from the code a refactor starts from, and commit the JSON:
    .venv/bin/python tests/golden/record.py [case ...]      (about 5 minutes for all on 2 cores)
To record an older commit, run this file with that checkout's interpreter from that checkout
(its `python -m rnn_sparsity` is the one run). Each case is a study preset restricted to seed 0 (and,
where the preset is large, a few of its grid points), run through the real CLI as a multirun; the
metrics.json of every job is kept with the overrides that made it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rnn_sparsity.numerics import in_own_process
from omegaconf import OmegaConf

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "rnn_sparsity"]

# name -> (preset, sweep overrides replacing the preset's grid)
CASES = {
    "demo": ("demo", ["seed=0"]),
    "flipflop": ("flipflop", ["seed=0"]),
    # recorded when the preset dropped the last partial batch (7 batches a 120-sample epoch, 1000 epochs)
    "iris_l1": ("iris_l1", ["regularizer.strength=0,0.00222222,0.005", "seed=0", "optimizer.drop_last=True",
                            "optimizer.steps=7000", "analysis.eig_every=70"]),
    "teacher_student_small": ("teacher_student_small", ["seed=0"]),
    # the preset before the source's definitions (and before it had projection), pinned by its keys' old values
    "l2_rebound_a": ("l2_rebound_a", ["seed=0", "task.project_every=0", "precision=float64", "task.init_perturbation=0.5",
                                      "task.data=numpy_float64", "task.perturbation=uniform",
                                      "task.teacher_init=glorot_normal", "task.projection=make_generic",
                                      "task.projection_schedule=multiples", "task.teacher_seed=0", "task.data_seed=0"]),
    "thalamocortical": ("thalamocortical", ["model.n_units=100", "seed=0"]),
}
NOT_RESULTS = ("wall_s",)  # machine-dependent


def code_commit() -> str:
    """The commit of the rnn_sparsity package that `python -m rnn_sparsity` runs ('+dirty' if changed)."""
    out = subprocess.run([sys.executable, "-c", "import rnn_sparsity; print(rnn_sparsity.__file__)"],
                         capture_output=True, text=True, check=True)
    repo = Path(out.stdout.strip()).parent
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "rnn_sparsity", "conf", "sweeps"],
                           capture_output=True, text=True).stdout.strip()
    return (sha.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


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
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; the cases are {sorted(CASES)}")
    about = in_own_process()
    key = about.pop("key")
    commit = code_commit()
    for name in names:
        preset, overrides = CASES[name]
        with tempfile.TemporaryDirectory() as tmp:
            jobs = run_case(preset, overrides, Path(tmp) / name)
        path = HERE / f"{name}.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        if (record.get("preset"), record.get("overrides")) != (preset, overrides):
            record = {"preset": preset, "overrides": overrides, "platforms": {}}  # the case changed: start over
        record["platforms"][key] = {"about": about, "commit": commit, "jobs": jobs,
                                    "recorded": datetime.date.today().isoformat()}
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(jobs)} jobs recorded for numerics {key} ({commit})")


if __name__ == "__main__":
    main()
