"""The numerics key of this machine: which recorded golden metrics it can be held to.

Training is chaotic in its rounding: the demo's λ=0.003, s=0.5 job ends with a final loss 0.29 on one
x86-64 machine and 0.40 on another (float32; 1.7e-3 apart even in float64 when XLA is only allowed AVX),
from the same code and inputs. What differs is how the machine rounds: the instructions XLA generates
for its CPU, how Eigen blocks a matmul for its caches, which kernels OpenBLAS picks for LAPACK. This
script runs small computations of every such kind on fixed inputs and hashes the bits of their results
(reductions kept small: XLA splits a large one over threads) together with what decides the rounding
(JAX's version, the CPU's model, vector extensions and caches, the core count, XLA_FLAGS); a job
recorded on one machine reproduces to the last bit on another with the same key.
`python -m rnn_sparsity.numerics` prints the key and what it was computed on; `cached_key()` is what
metrics.json records (provenance.py): computed once per machine and environment, then read from the cache.

It runs in its own process (in_own_process: the test, the recorder and cached_key start one), since it turns
on float64.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform


def probes(dtype):
    """Results, on fixed inputs, of the kinds of computation whose rounding differs across machines."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((256, 512)), dtype)
    w = jnp.asarray(rng.standard_normal((512, 512)) / np.sqrt(512), dtype)
    x = jnp.asarray(rng.standard_normal((8, 512)), dtype)
    m = jnp.asarray(rng.standard_normal((64, 64)), dtype)

    @jax.jit
    def rnn(w, x):  # the continuous-time RNN's Euler step, 50 steps: fused elementwise maths and matvecs
        def step(x, _):
            x = x + 0.1 * (-x + jnp.tanh(x) @ w.T)
            return x, x.sum()
        return jax.lax.scan(step, x, None, length=50)

    @jax.jit
    def mlp_grad(w, a):  # a gradient through a two-layer net: transposed matmuls and reductions
        return jax.grad(lambda w: jnp.mean(jnp.square(jnp.tanh(a @ w) @ w[:, :10])))(w)

    results = [
        a @ w,                                          # Eigen's blocked matmul (cache-dependent blocking)
        x[:1] @ w,                                      # matvec
        jnp.exp(a[:16]).sum(), jnp.log1p(jnp.abs(a[:16])).mean(), jnp.tanh(a[:16]).sum(axis=0),  # vectorised maths
        *rnn(w, x), mlp_grad(w, a),
        jnp.linalg.eigvals(m), jnp.linalg.eigh(m + m.T)[0],  # LAPACK
        jnp.linalg.solve(m, a[:64, :3]),
    ]
    return [np.asarray(r) for r in results]


def numerics_key() -> tuple[str, dict]:
    """(a 12-hex-digit hash of what the probes ran on and of their bits in float32 and float64, that).

    The probes alone miss some differences (XLA held to SSE4.2 and to AVX gives them the same bits but
    trains the demo otherwise), so the key also covers what decides the rounding: JAX's version, the
    CPU's model, vector extensions and caches, the core count and XLA_FLAGS. A machine that differs in
    any of them gets a key of its own; at worst that holds it to fewer records, never to a wrong one."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jaxlib

    about = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "backend": jax.default_backend(),
             "machine": platform.machine(), "cpu": cpu_model(), "cpu_flags": vector_flags(),
             "caches": caches(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    bits = hashlib.sha256()
    for dtype in (jnp.float32, jnp.float64):
        for result in probes(dtype):
            bits.update(result.tobytes())
    about["probes"] = bits.hexdigest()[:12]
    return hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:12], about


def in_own_process(**env: str) -> dict:
    """{"key", and what it was computed on}: this file run by this interpreter (with `env` added to the
    environment), so that float64 is not turned on in the caller."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rnn_sparsity.numerics"], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout)


def environment() -> dict:
    """What decides the rounding besides the probes' bits, read without turning float64 on: the key of a
    cached result (cached_key)."""
    import jax
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "machine": platform.machine(), "cpu": cpu_model(),
            "cpu_flags": vector_flags(), "caches": caches(), "cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def cached_key() -> str | None:
    """This machine's numerics key: read from <cache>/rnn_sparsity/numerics/<hash of environment()>.json,
    else computed in its own process (a few seconds, once per machine and environment) and stored there.
    None when it cannot be computed (the record says so rather than guess)."""
    from .compile_cache import user_cache_dir

    env = json.dumps(environment(), sort_keys=True)
    path = user_cache_dir().parent / "numerics" / f"{hashlib.sha256(env.encode()).hexdigest()[:16]}.json"
    try:
        return json.loads(path.read_text())["key"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        key = in_own_process()["key"]
    except Exception:  # noqa: BLE001 (no key rather than a failed run)
        return None
    try:
        from .artifacts import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "environment": json.loads(env)}) + "\n")
    except OSError:
        pass
    return key


def cpuinfo(field: str) -> str:
    """The first `field` line of /proc/cpuinfo ('' where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == field), "")
    except OSError:
        return ""


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor()


def vector_flags() -> list[str]:
    """The CPU's vector and fused-multiply-add extensions (x86 'flags', Arm 'Features')."""
    flags = (cpuinfo("flags") or cpuinfo("Features")).split()
    return sorted(f for f in flags if f.startswith(("sse", "avx", "fma", "f16c", "amx", "asimd", "sve", "neon")))


def caches() -> list[str]:
    """Level, type and size of each cache of CPU 0 (Eigen blocks matmuls by them)."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    found = []
    for index in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            found.append(" ".join(open(f"{root}/{index}/{k}").read().strip() for k in ("level", "type", "size")))
        except OSError:
            continue
    return found


if __name__ == "__main__":
    key, about = numerics_key()
    print(json.dumps({"key": key, **about}))
