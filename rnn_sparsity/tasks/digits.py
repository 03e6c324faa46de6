"""Handwritten digits (scikit-learn's 8×8 digits: 1797 images, 64 pixels with integer values 0..16, 10
classes; the test set of UCI's "Optical Recognition of Handwritten Digits", CC BY 4.0; shipped in
rnn_sparsity/data as digits.csv.gz).

Iris's classification on a larger table (iris.ShippedClassification): the samples are shuffled with
`task.split_seed` and split into test and train (359/1438 at the default `test_fraction` 0.2); with
`task.scale` each pixel is divided by 16. Inputs (1, B, 64), targets one-hot (1, B, 10); softmax
cross-entropy of the network's logits; accuracy (train and test).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .iris import ShippedClassification, load_table


@dataclass
class DigitsConfig:
    _target_: str = "rnn_sparsity.tasks.digits.Digits"
    name: str = "digits"
    split_seed: int = 0  # shuffles the samples before the train/test split
    test_fraction: float = 0.2  # 359 test, 1438 training samples: round(0.2 · 1797), as Iris rounds
    # pixels / 16, in [0, 1]: raw counts up to 16 make first-layer pre-activations ~16x those of inputs of
    # order 1, which the initialisations (fan-in scaled) and the learning rates of the other tasks assume
    scale: bool = True


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """pixels (1797, 64) float64 (integers 0..16) and labels (1797,) int from the shipped table."""
    return load_table("digits.csv.gz")


class Digits(ShippedClassification):
    Config = DigitsConfig
    n_classes = 10

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        pixels, labels = load_digits()
        return (pixels / 16.0 if self.group_cfg.scale else pixels), labels
