"""What a run's numbers came from, recorded in its metrics.json (and so in the aggregator's runs.parquet):
the package version, the git revision of the package's checkout (and whether it had uncommitted changes),
JAX's and jaxlib's versions, the device, and the machine's numerics key (numerics.py: runs on machines
with the same key round alike, bit for bit). Computed once per process."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path


def git_revision(folder: Path) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether tracked files differ from it) of the git checkout holding `folder`; (None,
    None) for an installed package or where git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != folder.parent.resolve():
            return None, None  # the package is not the checkout's own (a wheel installed inside another repo)
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


@functools.cache
def provenance() -> dict[str, str | bool | int | None]:
    """{rnn_sparsity_version, git_revision, git_dirty, jax_version, jaxlib_version, device, device_count,
    numerics_key}: flat scalars, as metrics.json holds."""
    from importlib.metadata import PackageNotFoundError, version

    import jax
    import jaxlib

    from .numerics import cached_key

    try:
        package = version("rnn-sparsity")
    except PackageNotFoundError:
        package = None
    revision, dirty = git_revision(Path(__file__).parent)
    device = jax.devices()[0]
    return {"rnn_sparsity_version": package, "git_revision": revision, "git_dirty": dirty,
            "jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "device": f"{device.platform}: {getattr(device, 'device_kind', '')}".rstrip(": "),
            "device_count": jax.device_count(), "numerics_key": cached_key()}
