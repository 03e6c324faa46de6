"""3-bit flip-flop (Sussillo & Barak 2013), the standard validation case for fixed-point tools.

Each of `n_bits` inputs receives, at every step, a pulse of ±1 (sign equally likely) with probability
`pulse_prob`; every bit pulses at t = 0. Output k must hold the sign of the last pulse on input k.
A trained network stores the 2^n_bits memories as stable fixed points near the cube's corners.
Trials are drawn once from `task.data_seed`, so the data set is fixed for a configuration.
Task loss: MSE over all steps, trials and bits. Metric `bit_accuracy`: fraction of (step, trial, bit)
whose output has the target's sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..components import TaskComponent, check, positive
from ..contracts import Conditions, Task


@dataclass
class FlipFlopConfig:
    _target_: str = "rnn_sparsity.tasks.flipflop.FlipFlop"
    name: str = "flipflop"
    n_bits: int = 3  # inputs = outputs = bits
    n_steps: int = 64  # steps per trial
    n_trials: int = 64  # trials in the (fixed) data set
    pulse_prob: float = 0.5  # probability of a ±1 pulse per bit and step (every bit pulses at t = 0)
    data_seed: int = 0  # the trials are drawn once from this seed


def flipflop_trials(n_trials: int, n_steps: int, n_bits: int, pulse_prob: float, seed: int):
    """inputs (T, B, n_bits) of pulses in {-1, 0, 1}, targets (T, B, n_bits) in {-1, 1}."""
    rng = np.random.default_rng(seed)
    pulses = rng.uniform(size=(n_steps, n_trials, n_bits)) < pulse_prob
    pulses[0] = True
    signs = np.where(rng.uniform(size=pulses.shape) < 0.5, -1.0, 1.0)
    inputs = np.where(pulses, signs, 0.0)
    last = np.where(pulses, np.arange(n_steps)[:, None, None], -1)
    last = np.maximum.accumulate(last, axis=0)  # index of the latest pulse up to each step
    targets = np.take_along_axis(inputs, last, axis=0)
    return inputs, targets


class FlipFlop(TaskComponent):
    Config = FlipFlopConfig
    layout = "sequence"
    data_keys = ("data_seed",)
    summary_metrics = ("bit_accuracy",)

    def check(self, parts) -> None:
        for key in ("task.n_bits", "task.n_steps", "task.n_trials"):
            positive(self.cfg, key)
        p = self.group_cfg.pulse_prob
        check(0.0 < p <= 1.0, "task.pulse_prob", p, "must satisfy 0 < p <= 1")

    def n_train(self) -> int:
        return int(self.group_cfg.n_trials)

    def n_conditions(self) -> int:
        return 1

    def build(self, dtype) -> Task:
        cfg = self.group_cfg
        inputs, targets = flipflop_trials(cfg.n_trials, cfg.n_steps, cfg.n_bits, cfg.pulse_prob, cfg.data_seed)

        def metrics(outputs: np.ndarray) -> dict[str, float]:
            return {"bit_accuracy": float(np.mean(np.sign(outputs) == targets))}

        def arrays(outputs: np.ndarray) -> dict[str, np.ndarray]:
            return {"task_inputs": inputs.astype(np.float32), "task_outputs": outputs.astype(np.float32),
                    "task_targets": targets.astype(np.float32)}

        # one condition, no input: the memories are fixed points of the input-free dynamics
        conditions = Conditions(inputs=np.zeros((1, cfg.n_bits)), trial_condition=np.zeros(cfg.n_trials, int),
                                window=slice(0, cfg.n_steps))
        return Task(inputs=inputs, targets=targets, loss_weights=np.ones((cfg.n_steps, 1, 1)), metrics=metrics,
                    arrays=arrays, conditions=conditions)
