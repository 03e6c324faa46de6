"""The PyTorch peers' side of the benchmarks that compare with them (bench_sweeps.py, bench_fpf_flipflop.py):
where the peers' code lies, and the virtual environment they run in (.venv-peers, git-ignored), created on
first use with torch 2.13.0 (CPU), scikit-learn and numpy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ.get("RNN_SPARSITY_PEERS", ROOT.parent / "shared" / "peers"))
PEER_VENV = ROOT / ".venv-peers"


def peer_python() -> Path:
    """The peer venv's python, creating the venv first when it is missing."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEER_VENV} (torch 2.13.0 CPU, scikit-learn) for the PyTorch peer ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "scikit-learn", "numpy"],
                       check=True)
    return python
