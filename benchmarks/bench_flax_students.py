"""Does Flax cost the feed-forward students speed? The teacher-student MLP and CNN as Flax modules
(what runs) against the same maths written as plain jnp functions, in one Trainer each.

    python benchmarks/bench_flax_students.py [--rounds 5]

Both trainers get the same task, regularizer, stages and initial parameters (the Flax module's seeded
init); only model.apply differs. For each student it prints, side by side in one run, the compile time
of a 640-step SGD chunk (10 epochs of 64 minibatches of 16, proximal L1) and the median time of that
chunk compiled, interleaved round by round so machine noise hits both alike, as ratios flax / plain,
and checks that the two give the same losses. Only the ratios are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np
from hydra import compose, initialize_config_module

import rnn_sparsity.config  # noqa: F401
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.fit import Program
from rnn_sparsity.maths import ACTIVATIONS
from rnn_sparsity.models.cnn1d import conv_stride_k
from rnn_sparsity.train import Trainer

# sweeps/teacher_student's training: SGD 0.005 with momentum, minibatches of 16, proximal L1 (sum, 1e-5)
STUDY = ["task=teacher_student", "optimizer=sgd", "optimizer.lr=0.005", "optimizer.batch_size=16",
         "regularizer=l1", "regularizer.strength=1e-5", "regularizer.reduction=sum", "regularizer.mode=proximal",
         "regularizer.targets=[W1,W2,W3]", f"analysis.eig_every={640}", "analysis.figures=false", "progress=false"]
STUDENTS = {
    "mlp [12, 128, 128, 1] relu": ["model=mlp", "model.sizes=[12,128,128,1]", "model.init_scale=0.2"],
    "cnn channels [1, 4, 4, 1] relu": ["model=cnn", "model.channels=[1,4,4,1]"],
}
CHUNK = 640


def plain_apply(cfg):
    """The student's forward pass as plain jnp (what the package had before its students were Flax)."""
    phi = ACTIVATIONS[cfg.model.activation].jax
    if cfg.model.name == "cnn":
        def apply(params, inputs):
            t, b, length = inputs.shape
            h = inputs.reshape(t * b, 1, length)
            for l in range(1, len(cfg.model.kernels) + 1):
                h = phi(conv_stride_k(h, params[f"W{l}"]))
            return h.reshape(t, b, -1), None
        return apply
    n = len(cfg.model.sizes) - 1
    phi_out = phi if cfg.model.output_activation == "same" else ACTIVATIONS[cfg.model.output_activation].jax

    def apply(params, inputs):
        h = inputs
        for l in range(1, n + 1):
            z = h @ params[f"W{l}"].T + (params[f"b{l}"] if cfg.model.bias else 0.0)
            h = phi(z) if l < n else phi_out(z)
        return h, None
    return apply


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def bench(name: str, overrides: list[str], rounds: int) -> None:
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*STUDY, *overrides, "compilation_cache=off"])
    set_precision(cfg.precision)
    _, flax_trainer, hyper = make_run(cfg)
    t = flax_trainer
    plain_model = t.model._replace(apply=plain_apply(cfg))
    plain_trainer = Trainer(plain_model, t.task, t.regularizer, t.stages, t.proximal, t.chunk_steps, t.dtype,
                            t.batch_size, t.patience)  # the same options (full batch here)
    key = jax.random.key(0)
    results = {}
    for label, trainer in (("flax", flax_trainer), ("plain", plain_trainer)):
        program = Program(trainer)
        state = program.begin(0, program.init(key, hyper), hyper)
        chunk = jax.jit(lambda s, h, trainer=trainer: trainer.run_chunk(0, CHUNK, s, h))
        compile_s, (_, records) = timed(lambda: chunk(state, hyper))
        results[label] = {"state": state, "chunk": chunk, "compile": compile_s, "loss": np.asarray(records["loss"]),
                          "times": []}
    for _ in range(rounds):
        for label in ("flax", "plain"):
            r = results[label]
            r["times"].append(timed(lambda: r["chunk"](r["state"], hyper))[0])
    flax, plain = results["flax"], results["plain"]
    same = np.array_equal(flax["loss"], plain["loss"])
    run_ratio = statistics.median(flax["times"]) / statistics.median(plain["times"])
    print(f"{name}: first call (compile + run) flax/plain {flax['compile'] / plain['compile']:.2f}  "
          f"chunk time flax/plain {run_ratio:.3f} (median of {rounds})  same losses: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, overrides in STUDENTS.items():
        bench(name, overrides, args.rounds)


if __name__ == "__main__":
    main()
