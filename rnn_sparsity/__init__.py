"""rnn_sparsity: Hydra-configured JAX sweeps of regularisation and sparsity studies of (recurrent) networks.

`from rnn_sparsity import load_runs` gives, in a notebook, the tidy table `rnn-sparsity-aggregate`
writes to runs.parquet (imported on first use, so `import rnn_sparsity` stays light).
"""

__version__ = "0.1.0"
__all__ = ["load_runs"]


def __getattr__(name: str):
    if name == "load_runs":
        from .aggregate import load_runs

        return load_runs
    raise AttributeError(f"module 'rnn_sparsity' has no attribute {name!r}")
