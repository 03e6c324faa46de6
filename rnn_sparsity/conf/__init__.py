"""Hydra config tree (shipped in the wheel): one folder per group, config.yaml at the root."""
