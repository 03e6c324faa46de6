"""`rnn-sparsity` (also `python -m rnn_sparsity`): the Hydra app. compose -> validate -> run -> artifacts.

A bad value ends the run at once with exit status 2 and one line naming key, value and what is
allowed; unknown keys and unknown group options are refused by Hydra itself when it composes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import config  # noqa: F401  (registers the schemas before Hydra composes)
from .artifacts import objective_value
from .config import ConfigError, sweeper_direction

log = logging.getLogger("rnn_sparsity")
CONF_DIR = Path(__file__).parent / "conf"
HIDDEN_GROUPS = ("hydra", "schema", "sweeps")  # Hydra's own, the typed schemas, and the presets (listed apart)


def describe(group: str, option: str, width: int = 96) -> str:
    """The first sentence of the comment that opens conf/<group>/<option>.yaml, cut to `width`
    characters ("" for an option that is not in this package, e.g. one from the user's search path)."""
    path = CONF_DIR / group / f"{option}.yaml"
    block = []
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.startswith("#"):
            break
        if "@package" not in line:
            block.append(line.lstrip("#").strip())
    sentence = " ".join(block).split(". ")[0].rstrip(".:")
    return sentence if len(sentence) <= width else sentence[:width - 3].rstrip() + "..."


def _options(group: str) -> list[str]:
    return GlobalHydra.instance().config_loader().get_group_options(group, results_filter=ObjectType.CONFIG)


def _cached_per_search_path(listing):
    """`listing()` once per config search path: Hydra resolves the help template's resolvers every time
    it composes a job's config (twice per job of a sweep), and listing the groups costs ~0.4 s."""
    cache: dict[str, str] = {}

    def cached() -> str:
        key = repr(GlobalHydra.instance().config_loader().get_sources())
        if key not in cache:
            cache[key] = listing()
        return cache[key]

    cached.__doc__ = listing.__doc__
    return cached


@_cached_per_search_path
def help_groups() -> str:
    """Each group on the config search path with its options (schema/* and hydra/* left out)."""
    groups = sorted(g for g in GlobalHydra.instance().config_loader().list_groups("") if g not in HIDDEN_GROUPS)
    lines = []
    for group in groups:
        lines.append(f"  {group}: {' | '.join(_options(group))}")
        lines += [f"      {name:<16} {describe(group, name)}" for name in _options(group)]
    return "\n".join(lines)


@_cached_per_search_path
def help_presets() -> str:
    """Each study preset in sweeps/ with its one-line summary."""
    return "\n".join(f"  {name:<22} {describe('sweeps', name)}" for name in _options("sweeps"))


OmegaConf.register_new_resolver("rnn_sparsity_groups", help_groups, replace=True)
OmegaConf.register_new_resolver("rnn_sparsity_presets", help_presets, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "Unable to initialize backend 'tpu'"
    from .experiment import run  # JAX is imported here, in the process that runs the job

    try:
        metrics = run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN and sweeper_direction() is None:
            raise  # a grid sweep: recorded as failed in its run directory, the launcher goes on with the next job
        # a single run, or an optimising sweeper's trial (it needs a number from every trial): stop here
        print(f"rnn-sparsity: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return objective_value(cfg.objective, metrics)  # what an optimising sweeper (hydra/sweeper=optuna) searches on


INTERRUPTED = 130  # the shell's code for a process ended by SIGINT
GRACE_S = 2.0  # how long an interrupted main thread may take to unwind before the process ends anyway


def exit_on_interrupt(grace_s: float = GRACE_S) -> None:
    """Make Ctrl-C end the process with code 130 and one line, also during XLA compilation.

    Python runs its SIGINT handler (KeyboardInterrupt) only between bytecodes, so while the main
    thread is inside a long C++ call (compiling) nothing happens, and a second Ctrl-C tearing the
    interpreter down under running XLA threads segfaults. Here the C-level handler also writes the
    signal to a socket (signal.set_wakeup_fd); a daemon thread waiting on it gives the main thread
    `grace_s` to unwind through KeyboardInterrupt, then ends the process itself with os._exit(130).

    The Python-level handler (raising KeyboardInterrupt) wakes the watcher too: a KeyboardInterrupt
    raised where it is only printed (a gc callback) must not leave the process running.

    SIGINT is unblocked and given that Python handler first: a process inherits its parent's signal mask
    and an ignored SIGINT (a test runner's worker, a job runner), and either would make every Ctrl-C
    vanish. Threads started later (XLA's) inherit the unblocked mask.
    """
    reader, writer = socket.socketpair()
    writer.setblocking(False)

    def interrupt(signum, frame):
        with contextlib.suppress(OSError):  # the wakeup fd's byte may have filled the socket already
            writer.send(bytes([signal.SIGINT]))
        raise KeyboardInterrupt

    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, interrupt)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while reader.recv(1) != bytes([signal.SIGINT]):
            pass
        time.sleep(grace_s)
        exit_interrupted()

    threading.Thread(target=watch, name="sigint-watch", daemon=True).start()


def exit_interrupted() -> None:
    """One line, then exit 130 at once: not through interpreter teardown, XLA's threads may be running."""
    os.write(2, b"rnn-sparsity: interrupted\n")  # not print: sys.stderr's lock may be held by the main thread
    os._exit(INTERRUPTED)


def main() -> None:
    exit_on_interrupt()
    try:
        app()
    except KeyboardInterrupt:
        exit_interrupted()


if __name__ == "__main__":
    main()
