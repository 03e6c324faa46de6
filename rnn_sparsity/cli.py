"""`rnn-sparsity` (also `python -m rnn_sparsity`): the Hydra app. compose -> validate -> run -> artifacts.

A bad value ends the run at once with exit status 2 and one line naming key, value and what is
allowed; unknown keys and unknown group options are refused by Hydra itself when it composes.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import config  # noqa: F401  (registers the schemas before Hydra composes)
from .config import ConfigError

log = logging.getLogger("rnn_sparsity")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    logging.getLogger("jax").setLevel(logging.WARNING)  # not "Unable to initialize backend 'tpu'"
    from .experiment import run  # JAX is imported here, in the process that runs the job

    try:
        metrics = run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as err:
        print(f"rnn-sparsity: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return metrics.get("final_loss")  # what an optimising sweeper would minimise


def main() -> None:
    app()


if __name__ == "__main__":
    main()
