"""One composition per sweep job (Hydra's config loader, wrapped).

A sweep composes a job's config twice: the sweeper composes it to check that it composes
(Sweeper.validate_batch_is_legal) or, the resume sweeper, to read its run directory and fingerprint;
then the launcher composes it again to run it. Composing costs Hydra ~0.1-0.3 s per job here.
`ComposedOnce` wraps the loader in the sweep's shared HydraContext so that the sweeper's composition
of a job is the one its launcher runs. It keeps a composition in one of two ways:

- first composition kept (Hydra's own sweepers, installed by the vmap launcher): the first
  composition of a job's overrides is kept, and the next one (the launcher's) returns it;
- kept when told (the resume sweeper): only what the sweeper hands to `keep` (a job it composed and
  will launch) is kept. It composes only the jobs it must look at, so a launcher's composition of any
  other job is used once and not kept: nothing piles up for jobs that never ask again.

`discard` drops what is still kept of a sweep (jobs composed and then not launched, such as those of
a launch that failed). A copy in another process (joblib's workers, submitit's jobs) keeps nothing: it
only composes the jobs it runs. No JAX here: Hydra plugins import this at setup.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


class ComposedOnce:
    """A config loader that hands the launcher the sweeper's composition of a job; everything else is
    the wrapped loader's. `keep_first`: whether a composition nobody kept is kept for the next ask."""

    def __init__(self, loader, keep_first: bool = True) -> None:
        self.loader = loader
        self.keep_first = keep_first
        self.kept: dict = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        """The kept composition of these overrides (no longer kept), or a new one (kept if keep_first)."""
        key = _key(master_config, sweep_overrides)
        if key in self.kept:
            return self.kept.pop(key)
        composed = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        if self.keep_first:
            self.kept[key] = composed
        return composed

    def keep(self, master_config: DictConfig, sweep_overrides: list, composed: DictConfig) -> None:
        """Keep a job's composition for its launcher's next ask."""
        self.kept[_key(master_config, sweep_overrides)] = composed

    def take(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        """The kept config of these overrides (composed again if there is none), no longer kept."""
        kept = self.kept.pop(_key(master_config, sweep_overrides), None)
        return kept if kept is not None else self.loader.load_sweep_config(master_config, list(sweep_overrides))

    def discard(self, master_config: DictConfig) -> None:
        """Drop every composition still kept for this sweep's master config: none of them will be launched."""
        for key in [key for key in self.kept if key[0] == id(master_config)]:
            del self.kept[key]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("loader", "kept", "keep_first"):  # unpickling asks before __init__ ran
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __getstate__(self) -> dict:
        return {"loader": self.loader, "kept": {}, "keep_first": False}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _key(master_config: DictConfig, sweep_overrides: list) -> tuple:
    return id(master_config), tuple(sweep_overrides)


def compose_once(hydra_context, keep_first: bool = True) -> ComposedOnce:
    """Wrap the context's config loader in ComposedOnce, unless it is already. keep_first=False (the
    resume sweeper keeps what it composes itself) holds whichever plugin wraps the loader first."""
    loader = hydra_context.config_loader
    if not isinstance(loader, ComposedOnce):
        loader = hydra_context.config_loader = ComposedOnce(loader)
    loader.keep_first = loader.keep_first and keep_first
    return loader
