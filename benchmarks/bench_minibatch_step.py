"""Does a minibatch step cost what the step itself costs? The tool's SGD step on the teacher-student study's
student against the plain-JAX lower bound of the same step, at two data set sizes, for 1 and 9 members.

    python benchmarks/bench_minibatch_step.py [--rounds 5] [--sizes 1000 100000] [--members 1 9]

The study (laschulz/investigating_sparseNN): a bias-free 12-128-128-1 relu MLP student (init scale 0.2),
SGD lr 0.005 with momentum 0.9, batches of 16 reshuffled every epoch, MSE plus λ·Σ|w| (λ = 1e-5, penalty mode),
float32, x ~ N(0, I₁₂). The tool runs `Trainer.run_chunk` (one jitted lax.scan of CHUNK steps, as a run does,
with its divergence check, best-epoch tracking and records); 9 members run as the vmap launcher runs them
(`fit.Program`, one vmapped program). The bound is what one would write by hand in plain JAX: per epoch one
permutation, the data gathered into batches, a lax.scan of value_and_grad + optax.sgd over them; 9 members
are its jax.vmap. Both start from the same parameters and see the same data; each is compiled first, then
timed round by round, interleaved, so machine noise hits both alike. It prints µs per step, as CPU time of
the process (all its threads: what a step costs, and steady on a loaded machine) and as wall time, the
ratios tool / bound of both (aim ≤ 1.5), the per-step ratio of 100 000 samples to 1 000 (aim ≈ 1: a step's
cost must not grow with the data set) and 9 members against 9 single runs one after another. Only ratios
are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from hydra import compose, initialize_config_module

import rnn_sparsity.config  # noqa: F401
from rnn_sparsity.build import make_run, set_precision
from rnn_sparsity.fit import Program, stack

BATCH, LR, MOMENTUM, LAMBDA = 16, 0.005, 0.9, 1e-5
STUDY = ["task=teacher_student", "model=mlp", "model.sizes=[12,128,128,1]", "model.init_scale=0.2",
         "optimizer=sgd", f"optimizer.lr={LR}", f"optimizer.momentum={MOMENTUM}", f"optimizer.batch_size={BATCH}",
         "regularizer=l1", f"regularizer.strength={LAMBDA}", "regularizer.reduction=sum", "regularizer.mode=penalty",
         "regularizer.targets=[W1,W2,W3]", "analysis.figures=false", "progress=false", "precision=float32",
         "compilation_cache=off"]
CHUNK = 6250  # one epoch of the study's 100 000 samples


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def tool(n_train: int, members: int):
    """(run one chunk, steps per call) of the tool's trainer."""
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*STUDY, f"task.n_train={n_train}",
                                                       f"optimizer.steps={CHUNK}", f"analysis.eig_every={CHUNK}"])
    set_precision(cfg.precision)
    _, trainer, hyper = make_run(cfg)
    keys = [jax.random.key(seed) for seed in range(members)]
    program = Program(trainer, [trainer] * members)  # one member: the plain program; more: vmapped
    hypers = program.stack([hyper] * members)
    state = program.begin(0, program.init(program.stack(keys), hypers), hypers)
    params = program.split(state.params)
    if members == 1:
        return (lambda: program.chunk(0, CHUNK, state, hypers, 0)), trainer, params
    return (lambda: program.chunk(0, CHUNK, state, hypers, 0)), trainer, params


def bound(trainer, params: list[dict]):
    """The same SGD steps in plain JAX, vmapped over the members' parameters and data keys."""
    x, y = trainer.data["inputs"][0], trainer.data["targets"][0]
    n, spe = x.shape[0], x.shape[0] // BATCH
    epochs = -(-CHUNK // spe)
    optimizer = optax.sgd(LR, momentum=MOMENTUM)

    def forward(p, xb):
        h = jax.nn.relu(xb @ p["W1"].T)
        h = jax.nn.relu(h @ p["W2"].T)
        return jax.nn.relu(h @ p["W3"].T)  # the study's students apply the activation after every layer

    def loss(p, xb, yb):
        return jnp.mean((forward(p, xb) - yb) ** 2) + LAMBDA * sum(jnp.sum(jnp.abs(w)) for w in p.values())

    def step(carry, batch):
        p, opt_state = carry
        value, grads = jax.value_and_grad(loss)(p, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

    def epoch(carry, key):
        order = jax.random.permutation(key, n)[:spe * BATCH]
        return jax.lax.scan(step, carry, (x[order].reshape(spe, BATCH, -1), y[order].reshape(spe, BATCH, -1)))

    def run(p, key):
        carry = (p, optimizer.init(p))
        carry, losses = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
        return carry[0], losses

    p = stack(params) if len(params) > 1 else params[0]
    keys = jax.random.split(jax.random.key(0), len(params))
    fn = jax.jit(jax.vmap(run) if len(params) > 1 else run)
    k = keys if len(params) > 1 else keys[0]
    return (lambda: fn(p, k)), epochs * spe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 9])
    args = parser.parse_args()
    cases = {}
    for n in args.sizes:
        for m in args.members:
            run_tool, trainer, params = tool(n, m)
            run_bound, bound_steps = bound(trainer, params)
            run_tool(), run_bound()  # compile
            cases[n, m] = {"tool": (run_tool, CHUNK), "bound": (run_bound, bound_steps)}
    times = {(case, side): [] for case in cases for side in ("tool", "bound")}
    for _ in range(args.rounds):
        for case, sides in cases.items():
            for side, (fn, steps) in sides.items():
                times[case, side].append([t / steps * 1e6 for t in timed(fn)])
    us = {k: [statistics.median(t[j] for t in v) for j in (0, 1)] for k, v in times.items()}  # [wall, cpu]
    print(f"µs per step, median of {args.rounds} chunks of {CHUNK} steps (a step of m members counts once)")
    print(f"{'samples':>8} {'members':>7} | {'cpu: tool':>9} {'bound':>7} {'ratio':>6} | {'wall: tool':>10} {'bound':>7} "
          f"{'ratio':>6}")
    for (n, m) in cases:
        tool_us, bound_us = us[(n, m), "tool"], us[(n, m), "bound"]
        print(f"{n:>8} {m:>7} | {tool_us[1]:>9.1f} {bound_us[1]:>7.1f} {tool_us[1] / bound_us[1]:>6.2f} | "
              f"{tool_us[0]:>10.1f} {bound_us[0]:>7.1f} {tool_us[0] / bound_us[0]:>6.2f}")
    sizes, members = sorted(args.sizes), sorted(args.members)
    if len(sizes) > 1:
        for m in members:
            cpu = us[(sizes[-1], m), "tool"][1] / us[(sizes[0], m), "tool"][1]
            print(f"tool, {m} member(s): a step at {sizes[-1]} samples costs {cpu:.2f}x one at {sizes[0]} (cpu)")
    if len(members) > 1:
        one, many = members[0], members[-1]
        for n in sizes:
            wall = us[(n, many), "tool"][0] / (many / one * us[(n, one), "tool"][0])
            cpu = us[(n, many), "tool"][1] / (many / one * us[(n, one), "tool"][1])
            print(f"tool, {n} samples: {many} members as one program cost {cpu:.2f}x (cpu), {wall:.2f}x (wall) "
                  f"{many} single runs in a row")


if __name__ == "__main__":
    main()
