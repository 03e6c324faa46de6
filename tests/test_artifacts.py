"""Run-directory files: modes follow the umask; a write killed outright leaves nothing to trip on."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from rnn_sparsity import artifacts

WRITE_ALL = r"""
import os, sys
os.umask(int(sys.argv[2], 8))  # before artifacts reads it (at import), as a shell's umask would be
import numpy as np, pandas as pd
from rnn_sparsity import artifacts
d = sys.argv[1]
artifacts.write_metrics(d, {"status": "completed"})
artifacts.write_history(d, pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]}))
artifacts.write_arrays(f"{d}/analysis.npz", {"x": np.arange(3)})
artifacts.write_params(d, {"J": np.eye(2)})
artifacts.mark_done(d)
with open(f"{d}/plain.txt", "w"):  # what a plain open() gives under the same umask
    pass
"""


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give_under_the_umask(tmp_path, umask, mode):
    subprocess.run([sys.executable, "-c", WRITE_ALL, str(tmp_path), oct(umask)], check=True, timeout=60)
    written = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    names = ["metrics.json", "history.parquet", "analysis.npz", "params.npz", "DONE", "plain.txt"]
    assert written == dict.fromkeys(names, mode)


KILLED_WRITE = r"""
import sys, numpy as np
from rnn_sparsity import artifacts
big = {f"a{i}": np.random.default_rng(i).normal(size=(1000, 1000)) for i in range(8)}  # ~2 s to compress
print("writing", flush=True)
artifacts.write_arrays(sys.argv[1], big)
"""


def temp_files(folder):
    return [p for p in folder.iterdir() if artifacts.is_temp_file(p)]


def test_a_write_killed_midway_keeps_the_old_file_and_its_temp_file_is_cleared(tmp_path):
    target = tmp_path / "analysis.npz"
    artifacts.write_arrays(target, {"old": np.arange(4)})
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while not any(p.stat().st_size for p in temp_files(tmp_path)) and time.time() < deadline:
        time.sleep(0.01)  # until the temp file holds part of the archive: killed mid-write
    proc.send_signal(signal.SIGKILL)  # no finally, no cleanup: as a lost node or the OOM killer
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    (leftover,) = temp_files(tmp_path)
    assert leftover.name.startswith(".analysis.npz.") and leftover.stat().st_size > 0

    assert artifacts.read_arrays(target)["old"].tolist() == [0, 1, 2, 3]  # the previous file is intact
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    artifacts.write_metrics(tmp_path, {"status": "completed"})
    artifacts.mark_done(tmp_path)
    assert artifacts.check_run(tmp_path) == ("completed", "", {"status": "completed"}, "")  # the leftover is not read
    assert artifacts.remove_temp_files(tmp_path) == [leftover]
    assert not leftover.exists()


def test_a_run_starting_in_a_directory_clears_stale_temp_files(tmp_path):
    from helpers import compose_cfg

    from rnn_sparsity.experiment import run

    stale = tmp_path / ".metrics.json.k2j3.tmp"
    stale.write_text("")
    metrics = run(compose_cfg("optimizer=adam", "optimizer.steps=20"), tmp_path)
    assert metrics["status"] == "completed"
    assert not stale.exists()
    assert not [p for p in tmp_path.rglob("*") if artifacts.is_temp_file(p)]
    assert pd.read_parquet(tmp_path / "history.parquet")["step"].tolist() == list(range(20))
