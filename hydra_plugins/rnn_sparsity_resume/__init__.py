"""rnn-sparsity's Hydra sweeper plugin, `hydra/sweeper=resume` (the default; see resume_sweeper.py)."""
