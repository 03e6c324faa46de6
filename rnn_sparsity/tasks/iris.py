"""Iris classification (Fisher's 150 samples, 4 features, 3 classes; shipped in rnn_sparsity/data).

The samples are shuffled with `task.split_seed` and split into test and train (30/120 at the default
`test_fraction` 0.2); features are used as they are. Layout (1, B, ·) like every static task: inputs
(1, B, 4), targets one-hot (1, B, 3). Task loss: softmax cross-entropy of the network's logits.
Metrics: accuracy (train and test); `window_test_accuracy` is the mean test accuracy over the epochs in
`task.average_window` (the study's 500-900), sampled every `analysis.eig_every` steps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

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


@functools.cache
def load_iris() -> tuple[np.ndarray, np.ndarray]:
    """features (150, 4) float64 and labels (150,) int from the shipped CSV."""
    with resources.files("rnn_sparsity.data").joinpath("iris.csv").open() as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",")
    n, n_features = int(header[0]), int(header[1])
    assert table.shape == (n, n_features + 1), "iris.csv does not match its header"
    return table[:, :n_features], table[:, n_features].astype(int)


class Iris(TaskComponent):
    Config = IrisConfig
    layout = "static"
    data_keys = ("split_seed",)
    summary_metrics = ("test_loss", "test_accuracy", "window_test_accuracy")

    def check(self, parts) -> None:
        f = self.group_cfg.test_fraction
        check(0.0 < f < 1.0, "task.test_fraction", f, "must satisfy 0 < fraction < 1")
        window = list(self.group_cfg.average_window)
        check(len(window) == 2 and 0 <= window[0] <= window[1], "task.average_window", window,
              "must be [first epoch, last epoch] with 0 <= first <= last")

    def io(self) -> tuple[int, int]:
        return load_iris()[0].shape[1], N_CLASSES

    def n_test(self) -> int:
        return int(round(self.group_cfg.test_fraction * len(load_iris()[1])))

    def n_train(self) -> int:
        return len(load_iris()[1]) - self.n_test()

    def build(self, dtype) -> Task:
        features, labels = load_iris()
        order = np.random.default_rng(self.group_cfg.split_seed).permutation(len(labels))
        test, train = order[:self.n_test()], order[self.n_test():]
        one_hot = np.eye(N_CLASSES)[labels]

        def metrics(outputs: np.ndarray) -> dict[str, float]:
            return {"train_accuracy": float(accuracy(outputs, one_hot[train][None]))}

        return Task(inputs=features[train][None], targets=one_hot[train][None], loss_weights=np.ones((1, 1, 1)),
                    loss=cross_entropy, metrics=metrics, test_inputs=features[test][None],
                    test_targets=one_hot[test][None], score=accuracy)

    def probes(self, trainer) -> list:
        return [WindowMean(trainer, self.group_cfg.average_window)]
