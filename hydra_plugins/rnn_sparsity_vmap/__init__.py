"""rnn-sparsity's Hydra launcher plugin, `hydra/launcher=vmap` (see vmap_launcher.py)."""
