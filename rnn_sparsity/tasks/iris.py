"""Iris classification (Fisher's 150 samples, 4 features, 3 classes; shipped in rnn_sparsity/data).

The samples are shuffled with `task.split_seed` and split 80/20 into train and test (120/30 at the
default `test_fraction` 0.2); features are used as they are. Layout (1, B, ·) like every static task:
inputs (1, B, 4), targets one-hot (1, B, 3). Task loss: softmax cross-entropy of the network's logits.
Metric: accuracy (train and test, every sample between chunks); `window_test_accuracy` is the mean
test accuracy over the epochs in `task.average_window` (the study's 500-900).
"""

from __future__ import annotations

from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from . import Task

N_CLASSES = 3


def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """features (150, 4) float64 and labels (150,) int from the shipped CSV."""
    with resources.files("rnn_sparsity.data").joinpath("iris.csv").open() as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",")
    n, n_features = int(header[0]), int(header[1])
    assert table.shape == (n, n_features + 1), "iris.csv does not match its header"
    return table[:, :n_features], table[:, n_features].astype(int)


def cross_entropy(logits, targets, weights=None):
    """Mean over samples of -Σ_k y_k log softmax(z)_k (one-hot y); `weights` unused (one step)."""
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def accuracy(logits, targets):
    """Fraction of samples whose largest logit is the true class."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1))


def make_task(cfg, model_cfg) -> Task:
    features, labels = load_iris()
    order = np.random.default_rng(cfg.split_seed).permutation(len(labels))
    n_test = int(round(cfg.test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    one_hot = np.eye(N_CLASSES)[labels]

    def metrics(outputs: np.ndarray) -> dict[str, float]:
        return {"train_accuracy": float(accuracy(outputs, one_hot[train][None]))}

    return Task(inputs=features[train][None], targets=one_hot[train][None], loss_weights=np.ones((1, 1, 1)),
                metrics=metrics, arrays=lambda outputs: {}, metric_names=("train_accuracy",),
                test_inputs=features[test][None], test_targets=one_hot[test][None], loss=cross_entropy,
                score=accuracy, average_window=tuple(cfg.average_window))
