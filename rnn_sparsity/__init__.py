"""rnn_sparsity: Hydra-configured JAX sweeps of regularisation and sparsity studies of (recurrent) networks."""

__version__ = "0.1.0"
