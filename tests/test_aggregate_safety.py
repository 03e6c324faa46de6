"""rnn-sparsity-aggregate in a sweep dir it cannot fully trust or write: a full disk, a read-only folder,
links planted at its outputs, a run whose `_target_` names someone else's module, provenance in
metrics.json, and no Hydra internals."""

from __future__ import annotations

import ast
import errno
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import rnn_sparsity.aggregate
from rnn_sparsity import artifacts
from rnn_sparsity.aggregate import load_runs, main, swept_keys

TRUST_ENV = "RNN_SPARSITY_TRUST"  # spelled out, not imported: the file must collect on the code before it too


def two_runs(root: Path, synthetic_run) -> Path:
    """A sweep dir with λ = 0 and λ = 0.1, one seed each."""
    sweep = root / "sweep"
    for number, strength in enumerate((0.0, 0.1)):
        synthetic_run(sweep / str(number), strength=strength)
    return sweep


def temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if artifacts.is_temp_file(path)]


def error_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def cells(column: pd.Series) -> list:
    """A column's values, each missing one (None or NaN, as parquet gives it back) as None."""
    return [None if pd.isna(value) else value for value in column]


# ---------------------------------------------------------------------------------- a full disk
def fill_then_fail(self, path, *args, **kwargs):
    """A writer on a full disk: it leaves an empty file where it was told to write, then fails."""
    Path(path).write_bytes(b"")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("writer,failed", [
    ("pandas.DataFrame.to_parquet", "runs.parquet"),
    ("pandas.DataFrame.to_csv", "runs.csv"),
    ("matplotlib.figure.Figure.savefig", "figures"),
])
def test_a_full_disk_keeps_the_earlier_outputs_whole_and_says_so_in_one_line(
        tmp_path, synthetic_run, monkeypatch, capsys, writer, failed):
    sweep = two_runs(tmp_path, synthetic_run)
    out = sweep / "aggregate"
    assert main([str(sweep)]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    capsys.readouterr()

    monkeypatch.setattr(writer, fill_then_fail)
    assert main([str(sweep)]) == 1

    assert error_lines(capsys) == [f"rnn-sparsity-aggregate: cannot write {out / failed}: [Errno {errno.ENOSPC}] "
                                   f"{os.strerror(errno.ENOSPC)}; use --out <writable dir>"]
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert len(pd.read_parquet(out / "runs.parquet")) == 2
    assert not temp_files(out)


# ------------------------------------------------------------------------------ a read-only sweep
def chmod_read_only(sweep: Path, monkeypatch) -> None:
    """The sweep dir made r-x; skipped where that does not stop this process (root)."""
    sweep.chmod(0o555)
    if os.access(sweep, os.W_OK):
        sweep.chmod(0o755)
        pytest.skip("this process writes into a 0o555 folder (root): chmod cannot make it read-only")


def read_only_filesystem(sweep: Path, monkeypatch) -> None:
    """Every folder made below the sweep dir fails as on a read-only mount (works as root too)."""
    make_folder = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).resolve().is_relative_to(sweep.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return make_folder(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("make_read_only,reason", [(chmod_read_only, errno.EACCES),
                                                   (read_only_filesystem, errno.EROFS)])
def test_a_read_only_sweep_gives_one_line_status_works_and_out_goes_elsewhere(
        tmp_path, synthetic_run, monkeypatch, capsys, make_read_only, reason):
    sweep = two_runs(tmp_path, synthetic_run)
    make_read_only(sweep, monkeypatch)
    try:
        assert main([str(sweep)]) == 1
        assert error_lines(capsys) == [f"rnn-sparsity-aggregate: cannot write {sweep / 'aggregate'}: [Errno {reason}] "
                                       f"{os.strerror(reason)}; use --out <writable dir>"]

        assert main(["--status", str(sweep)]) == 0  # it writes nothing
        assert "2 runs: 2 completed" in capsys.readouterr().out

        elsewhere = tmp_path / "elsewhere"
        assert main([str(sweep), "--out", str(elsewhere)]) == 0
        assert len(pd.read_parquet(elsewhere / "runs.parquet")) == 2
        assert (elsewhere / "figures" / "final_loss_vs_regularizer.strength.png").is_file()
        assert not (sweep / "aggregate").exists()
    finally:
        sweep.chmod(0o755)


# ------------------------------------------------------------------------------------ planted links
def test_links_planted_at_output_files_are_replaced_and_their_targets_untouched(tmp_path, synthetic_run):
    sweep = two_runs(tmp_path, synthetic_run)
    names = ("runs.parquet", "runs.csv", "summary.csv", "figures/final_loss_vs_regularizer.strength.png")
    victims = {}
    for name in names:
        victim = tmp_path / "victim" / name.replace("/", "_")
        victim.parent.mkdir(exist_ok=True)
        victim.write_text("precious\n")
        planted = sweep / "aggregate" / name
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.symlink_to(victim)
        victims[planted] = victim

    assert main([str(sweep)]) == 0

    for planted, victim in victims.items():
        assert victim.read_text() == "precious\n"
        assert not planted.is_symlink() and planted.stat().st_size > 0
    assert len(pd.read_parquet(sweep / "aggregate" / "runs.parquet")) == 2


@pytest.mark.parametrize("linked", ["aggregate", "aggregate/figures"])
def test_a_link_planted_as_an_output_folder_is_refused_in_one_line(tmp_path, synthetic_run, capsys, linked):
    sweep = two_runs(tmp_path, synthetic_run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.png").write_bytes(b"not ours")
    planted = sweep / linked
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(elsewhere, target_is_directory=True)

    assert main([str(sweep)]) != 0

    assert error_lines(capsys) == [f"rnn-sparsity-aggregate: {planted} is a symbolic link (to {elsewhere}): not "
                                   "writing through it; remove it, or use --out <dir>"]
    assert sorted(path.name for path in elsewhere.iterdir()) == ["keep.png"]


# ------------------------------------------------------------------------------ foreign _target_
EVIL_PACKAGE = '''
from pathlib import Path

from rnn_sparsity.components import TaskComponent

(Path(__file__).parents[2] / "MARKER").write_text("imported")


class Thing(TaskComponent):
    summary_metrics = ("evil_score",)

    @classmethod
    def sweep_outputs(cls, runs, keys, out):
        path = out / "evil_scores.csv"
        runs[[*keys, "evil_score"]].to_csv(path, index=False)
        return [path]


class OtherThing(Thing):
    pass
'''


@pytest.fixture
def evil_sweep(tmp_path, synthetic_run, monkeypatch):
    """Two runs whose task `_target_`s (evil_pkg.Thing, evil_pkg.OtherThing) name a package importable
    here that writes tmp_path/MARKER when imported; their metrics hold its evil_score."""
    package = tmp_path / "plugins" / "evil_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(EVIL_PACKAGE)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    sweep = tmp_path / "sweep"
    for number, (strength, target) in enumerate(((0.0, "evil_pkg.Thing"), (0.1, "evil_pkg.OtherThing"))):
        run_dir = synthetic_run(sweep / str(number), strength=strength, done=False)
        config = yaml.safe_load((run_dir / artifacts.CONFIG).read_text())
        config["task"]["_target_"] = target
        (run_dir / artifacts.CONFIG).write_text(yaml.safe_dump(config))
        artifacts.write_metrics(run_dir, {**artifacts.read_metrics(run_dir), "evil_score": 1.0 + strength})
        artifacts.mark_done(run_dir)
    yield sweep
    sys.modules.pop("evil_pkg", None)


def test_a_run_naming_an_untrusted_module_is_listed_without_importing_it(evil_sweep, tmp_path, capsys):
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    (evil_sweep / "aggregate").mkdir()
    (evil_sweep / "aggregate" / "evil_scores.csv").symlink_to(victim)

    assert main([str(evil_sweep)]) == 0

    assert not (tmp_path / "MARKER").exists()
    notices = [line for line in error_lines(capsys) if "evil_pkg" in line]
    assert len(notices) == 1 and f"--trust evil_pkg or {TRUST_ENV}=evil_pkg" in notices[0]
    runs = pd.read_parquet(evil_sweep / "aggregate" / "runs.parquet")
    assert sorted(runs["task._target_"]) == ["evil_pkg.OtherThing", "evil_pkg.Thing"]
    assert (runs["status"] == "completed").all() and sorted(runs["evil_score"]) == [1.0, 1.1]
    assert "mean_evil_score" not in pd.read_csv(evil_sweep / "aggregate" / "summary.csv")
    assert victim.read_text() == "precious\n"  # its sweep outputs were not written


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_trusted_package_is_imported_and_its_outputs_written_atomically(evil_sweep, tmp_path, monkeypatch, how):
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    (evil_sweep / "aggregate").mkdir()
    (evil_sweep / "aggregate" / "evil_scores.csv").symlink_to(victim)
    if how == "environment":
        monkeypatch.setenv(TRUST_ENV, "some_other_pkg, evil_pkg")

    assert main([str(evil_sweep), *(["--trust", "evil_pkg"] if how == "flag" else [])]) == 0

    assert (tmp_path / "MARKER").read_text() == "imported"
    out = evil_sweep / "aggregate"
    assert pd.read_csv(out / "summary.csv")["mean_evil_score"].tolist() == [1.0, 1.1]
    assert len(pd.read_csv(out / "evil_scores.csv")) == 2  # the component's own output, through staging
    assert victim.read_text() == "precious\n" and not (out / "evil_scores.csv").is_symlink()
    assert not [path for path in out.iterdir() if path.name.startswith(".")]  # no staging folder left


# ---------------------------------------------------------------------------------- provenance
PROVENANCE = [  # (package_version, git_revision, git_dirty, jax_version, device, numerics) per run, or None
    ("0.4.0", "a1b2c3d", False, "0.4.30", "cpu", "float32-cpu"),
    ("0.4.0", "e4f5a6b", True, "0.4.30", "NVIDIA H100", "float32-gpu"),
    ("0.4.0", None, None, "0.4.31", "cpu", "float32-cpu"),  # installed from a wheel: no git
    None,  # a run of an earlier release: no provenance at all
]


def test_provenance_strings_are_columns_but_never_averaged_nor_swept(tmp_path, synthetic_run):
    sweep = tmp_path / "sweep"
    for number, (strength, provenance) in enumerate(zip((0.0, 0.0, 0.1, 0.1), PROVENANCE)):
        run_dir = synthetic_run(sweep / str(number), strength=strength, seed=number % 2, done=False)
        if provenance is not None:
            keys = ("package_version", "git_revision", "git_dirty", "jax_version", "device", "numerics")
            artifacts.write_metrics(run_dir, {**artifacts.read_metrics(run_dir), **dict(zip(keys, provenance))})
        artifacts.mark_done(run_dir)

    assert main([str(sweep)]) == 0

    runs = pd.read_parquet(sweep / "aggregate" / "runs.parquet").sort_values("run_dir")
    assert cells(runs["git_revision"]) == ["a1b2c3d", "e4f5a6b", None, None]
    assert runs["device"].tolist()[:3] == ["cpu", "NVIDIA H100", "cpu"]
    runs = load_runs(sweep)
    assert swept_keys(runs) == swept_keys(runs.assign(overrides="")) == ["regularizer.strength"]  # also unnamed
    summary = pd.read_csv(sweep / "aggregate" / "summary.csv")
    assert summary["regularizer.strength"].tolist() == [0.0, 0.1] and summary["completed"].tolist() == [2, 2]
    assert not [column for column in summary if any(key in column for key in ("git", "version", "device", "numerics"))]


def test_a_column_of_mixed_kinds_across_runs_still_goes_into_runs_parquet(tmp_path, synthetic_run):
    sweep = tmp_path / "sweep"
    for number, (dirty, numerics) in enumerate(((True, 32), ("unknown", "float32-cpu"), (None, None))):
        run_dir = synthetic_run(sweep / str(number), strength=0.1 * number, done=False)
        artifacts.write_metrics(run_dir, {**artifacts.read_metrics(run_dir), "git_dirty": dirty, "numerics": numerics})
        artifacts.mark_done(run_dir)

    assert main([str(sweep)]) == 0

    runs = pd.read_parquet(sweep / "aggregate" / "runs.parquet").sort_values("run_dir")
    assert cells(runs["git_dirty"]) == ["True", "unknown", None]  # as text: parquet holds one kind a column
    assert cells(runs["numerics"]) == ["32", "float32-cpu", None]
    assert pd.read_csv(sweep / "aggregate" / "summary.csv")["completed"].sum() == 3


# ------------------------------------------------------------------------------ no Hydra internals
def test_the_aggregator_imports_no_hydra_internals_and_expands_a_sweep_as_hydra_does():
    tree = ast.parse(Path(rnn_sparsity.aggregate.__file__).read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("hydra._internal")]

    from rnn_sparsity.aggregate import expand_sweep

    assert expand_sweep(["a=1,2", "b=x", "c=range(2)", "a=3,4"]) == [
        ["a=3", "b=x", "c=0"], ["a=3", "b=x", "c=1"], ["a=4", "b=x", "c=0"], ["a=4", "b=x", "c=1"]]
    assert expand_sweep(["+d=choice(p,q)", "~e"]) == [["+d=p", "~e=null"], ["+d=q", "~e=null"]]  # as Hydra writes it
