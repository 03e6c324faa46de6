"""XLA's persistent compilation cache, on by default: a shape is compiled once per machine, not once per process.

The first run of a static configuration compiles its training step (7.6 s for sine_small's N = 100
RNN on a 2-core CPU, more for larger networks and longer tasks); the executable is then written under the cache folder, and every later process with
the same program (a second sweep, each joblib worker, the test suite) loads it in milliseconds.

`compilation_cache` (top-level config key):
  auto     $RNN_SPARSITY_CACHE_DIR if set, else $XDG_CACHE_HOME/rnn_sparsity/xla (~/.cache/rnn_sparsity/xla)
  off      no persistent cache (every process compiles anew)
  <path>   that folder
The cache is keyed by the program, the compiler options, the JAX version and the device, so a stale
entry is never used; it is trimmed (least recently used first) to MAX_BYTES.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax

MAX_BYTES = 2 * 1024**3  # oldest entries are evicted beyond this
MIN_COMPILE_SECONDS = 0.0  # every program: the many small ones of a run cost more to compile (~30 ms each) than to load


def user_cache_dir() -> Path:
    """$RNN_SPARSITY_CACHE_DIR, else $XDG_CACHE_HOME/rnn_sparsity/xla, else ~/.cache/rnn_sparsity/xla."""
    if os.environ.get("RNN_SPARSITY_CACHE_DIR"):
        return Path(os.environ["RNN_SPARSITY_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rnn_sparsity" / "xla"


def cache_dir(setting: str) -> Path | None:
    """The folder the `compilation_cache` setting names (None for "off")."""
    if setting in ("off", "", None):
        return None
    return user_cache_dir() if setting == "auto" else Path(setting).expanduser()


def enable_compilation_cache(setting: str = "auto") -> Path | None:
    """Point JAX's persistent cache at the folder `setting` names (or turn it off); returns the folder.

    Must run before the first compilation of the process to cover it; later calls with the same
    folder change nothing (JAX initialises its cache once, at the first compile).
    """
    folder = cache_dir(setting)
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a read-only home, say: run without the cache rather than not at all
        warnings.warn(f"compilation cache off: cannot create {folder} ({err})", stacklevel=2)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
