"""One composition per sweep job (Hydra's config loader, wrapped).

A sweep composes each job's config twice: the sweeper composes every job of a batch to check it
composes (Sweeper.validate_batch_is_legal; the resume sweeper, to read its run directory and
fingerprint), then the launcher composes it again to run it. Composing costs Hydra ~0.3 s per job
here, a sixth of a 30-run rebound sweep. `ComposedOnce` wraps the loader in the sweep's shared
HydraContext: the first composition of a job's overrides is kept, and the next one (the launcher's)
returns it, so each job is composed once. The resume sweeper and the vmap launcher install it
(`compose_once`); every launcher that composes through the context's loader profits (basic, vmap).

It crosses into other processes without what it keeps (joblib's workers compose their own jobs).
No JAX here: Hydra plugins import this at setup.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


class ComposedOnce:
    """A config loader that keeps each sweep config it composes until it is asked for it again (the
    launcher's composition, or `take`). Everything else is the wrapped loader's."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.kept: dict = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        """The kept composition of these overrides (no longer kept), or a new one, kept."""
        key = (id(master_config), tuple(sweep_overrides))
        if key in self.kept:
            return self.kept.pop(key)
        self.kept[key] = self.loader.load_sweep_config(master_config, sweep_overrides)
        return self.kept[key]

    def take(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        """The kept config of these overrides (composed again if there is none), no longer kept."""
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return kept if kept is not None else self.loader.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("loader", "kept"):  # unpickling asks before __init__ ran
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __getstate__(self) -> dict:
        return {"loader": self.loader, "kept": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def compose_once(hydra_context) -> None:
    """Wrap the context's config loader in ComposedOnce, unless it is already."""
    if not isinstance(hydra_context.config_loader, ComposedOnce):
        hydra_context.config_loader = ComposedOnce(hydra_context.config_loader)
