"""Iris classification (Fisher's 150 samples, 4 features, 3 classes; shipped in rnn_sparsity/data).

The samples are shuffled with `task.split_seed` and split into test and train (30/120 at the default
`test_fraction` 0.2); features are used as they are. Layout (1, B, ·) like every static task: inputs
(1, B, 4), targets one-hot (1, B, 3). Task loss: softmax cross-entropy of the network's logits.
Metrics: accuracy (train and test); `window_test_accuracy` is the mean test accuracy over the epochs in
`task.average_window` (the study's 500-900), sampled every `analysis.eig_every` steps.

`ShippedClassification` is what Iris shares with the other shipped classification tables (the split,
the one-hot targets, the loss and the accuracy); `load_table` reads such a table.
"""

from __future__ import annotations

import functools
import gzip
import io
from dataclasses import dataclass, field
from importlib import resources
from typing import ClassVar

import numpy as np

from ..components import TaskComponent, check
from ..contracts import Task
from ..maths import accuracy, cross_entropy
from ..probes import WindowMean

N_CLASSES = 3


@dataclass
class IrisConfig:
    _target_: str = "rnn_sparsity.tasks.iris.Iris"
    name: str = "iris"
    split_seed: int = 42  # shuffles the samples before the train/test split
    test_fraction: float = 0.2  # 30 test, 120 training samples
    average_window: list[int] = field(default_factory=lambda: [500, 900])  # epochs of window_test_accuracy


def load_table(file_name: str) -> tuple[np.ndarray, np.ndarray]:
    """features (n, n_features) float64 and labels (n,) int of a table in rnn_sparsity/data: a header
    `n,n_features,<class names>`, then one row of features and a label per sample (gzip if it ends .gz)."""
    data = resources.files("rnn_sparsity.data").joinpath(file_name).read_bytes()
    lines = io.StringIO((gzip.decompress(data) if file_name.endswith(".gz") else data).decode())
    header = lines.readline().strip().split(",")
    table = np.loadtxt(lines, delimiter=",")
    n, n_features = int(header[0]), int(header[1])
    assert table.shape == (n, n_features + 1), f"{file_name} does not match its header"
    return table[:, :n_features], table[:, n_features].astype(int)


@functools.cache
def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """features (150, 4) float64 and labels (150,) int from the shipped CSV."""
    return load_table("iris.csv")


class ShippedClassification(TaskComponent):
    """Labelled samples, shuffled with `task.split_seed` and split into test (the first
    round(`task.test_fraction` · n) of the shuffle) and train; one-hot targets, softmax cross-entropy,
    accuracy. A subclass gives `n_classes` and `samples()`."""

    layout = "static"
    data_keys = ("split_seed",)
    summary_metrics = ("test_loss", "test_accuracy")
    n_classes: ClassVar[int] = 0

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """features (n, n_features) as the network sees them and integer labels (n,)."""
        raise NotImplementedError

    def check(self, parts) -> None:
        f = self.group_cfg.test_fraction
        check(0.0 < f < 1.0, "task.test_fraction", f, "must satisfy 0 < fraction < 1")

    def io(self) -> tuple[int, int]:
        return self.samples()[0].shape[1], self.n_classes

    def n_test(self) -> int:
        return int(round(self.group_cfg.test_fraction * len(self.samples()[1])))

    def n_train(self) -> int:
        return len(self.samples()[1]) - self.n_test()

    def build(self, dtype) -> Task:
        features, labels = self.samples()
        order = np.random.default_rng(self.group_cfg.split_seed).permutation(len(labels))
        test, train = order[:self.n_test()], order[self.n_test():]
        one_hot = np.eye(self.n_classes)[labels]

        def metrics(outputs: np.ndarray) -> dict[str, float]:
            return {"train_accuracy": float(accuracy(outputs, one_hot[train][None]))}

        return Task(inputs=features[train][None], targets=one_hot[train][None], loss_weights=np.ones((1, 1, 1)),
                    loss=cross_entropy, metrics=metrics, test_inputs=features[test][None],
                    test_targets=one_hot[test][None], score=accuracy)


class Iris(ShippedClassification):
    Config = IrisConfig
    n_classes = N_CLASSES
    summary_metrics = ("test_loss", "test_accuracy", "window_test_accuracy")

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        return load_iris()

    def check(self, parts) -> None:
        super().check(parts)
        window = list(self.group_cfg.average_window)
        check(len(window) == 2 and 0 <= window[0] <= window[1], "task.average_window", window,
              "must be [first epoch, last epoch] with 0 <= first <= last")

    def probes(self, trainer) -> list:
        return [WindowMean(trainer, self.group_cfg.average_window)]
