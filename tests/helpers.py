"""Shared helpers for the tests: compose configs with Hydra's compose API, tiny sizes."""

from __future__ import annotations

import math

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import rnn_sparsity.config  # noqa: F401  (registers schemas)

# A network small enough that a full training run takes a few seconds on 2 CPU cores.
TINY = [
    "model.n_units=16", "model.dt=0.2", "task.n_freqs=3", "task.drive_time=4", "task.train_time=24",
    "optimizer.steps=60", "optimizer.lbfgs_steps=20", "optimizer.lr=1e-2", "analysis.eig_every=20",
    "analysis.figures=false", "progress=false",
]


def compose_cfg(*overrides: str, tiny: bool = True) -> DictConfig:
    with initialize_config_module(config_module="rnn_sparsity.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*(TINY if tiny else []), *overrides])


def parts_of(cfg: DictConfig):
    """The run's components (validated), as the CLI builds them."""
    from rnn_sparsity.config import validate

    return validate(cfg)


def build_task(cfg: DictConfig, dtype=None):
    import jax.numpy as jnp

    return parts_of(cfg).task.build(dtype or jnp.float32)


def build_model(cfg: DictConfig, n_inputs: int, n_outputs: int, dtype=None):
    """The model of cfg for a task with these widths (a stand-in task record: only its shapes are read)."""
    import jax.numpy as jnp
    import numpy as np

    from rnn_sparsity.contracts import Task

    task = Task(inputs=np.zeros((1, 1, n_inputs)), targets=np.zeros((1, 1, n_outputs)), loss_weights=np.ones((1, 1, 1)))
    return parts_of(cfg).model.build(task, dtype or jnp.float32)


def build_regularizer(cfg: DictConfig, param_shapes: dict):
    return parts_of(cfg).regularizer.build(param_shapes)


def model_hyper(**values) -> dict:
    """hyper["model"] for a model's init: sparsity s and gain g (0 and 1 unless given)."""
    return {"sparsity": values.get("sparsity", 0.0), "gain": values.get("gain", 1.0)}


def mismatches(expected: dict, actual: dict, rtol: float, ignore: tuple[str, ...] = (),
               abs_tolerances: dict[str, float] | None = None) -> list[str]:
    """Every metric of `expected` (but `ignore`) that `actual` lacks or has otherwise (numbers beyond
    rtol, relative to the larger magnitude, with an absolute floor of rtol x 1e-3 for values at 0, or the
    key's entry in abs_tolerances)."""
    problems = []
    for key, want in expected.items():
        if key in ignore:
            continue
        if key not in actual:
            problems.append(f"{key}: missing (was {want!r})")
            continue
        got = actual[key]
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            if not math.isclose(want, got, rel_tol=rtol, abs_tol=(abs_tolerances or {}).get(key, rtol * 1e-3)):
                problems.append(f"{key}: {got!r} != {want!r} (rel {abs(got - want) / max(abs(want), 1e-300):.2g})")
        elif want != got:
            problems.append(f"{key}: {got!r} != {want!r}")
    return problems


# Metrics found by a scalar search to a set tolerance (absolute): analysis.spectral.dominant_frequency's
# bounded Brent search stops at xatol = 1e-6 ω, so rounding-level changes of the outputs move each
# |ω_out - ω| / ω by up to 1e-6 ω_out / ω (< 2e-6 for freq_error < 1).
SEARCHED_METRICS = {"freq_error": 2e-6}
# Eigenvalues of a non-normal J move by up to κ ‖δJ‖ (κ the eigenvector condition number): J equal to
# 1e-9 of its scale gives eigenvalues equal to about κ x 1e-9 (fast_decay's trained J: 1.6e-8 relative).
EIGENVALUE_CONDITION = 100.0


def assert_same_run(a, b, rtol: float = 1e-9) -> dict:
    """Two run directories of the same job hold the same files, and the same metrics, history,
    parameters and analysis arrays to `rtol` (wall time aside; an entry near 0 of a parameter or an
    analysis array to rtol of that array's largest entry, e.g. an eigenvalue near 0; task outputs stored as float32 to one rounding of that). Returns the
    metrics of `a`."""
    import numpy as np
    import pandas as pd

    from rnn_sparsity import artifacts

    assert {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()}, (a, b)
    metrics_a, metrics_b = artifacts.read_metrics(a), artifacts.read_metrics(b)
    assert metrics_a.keys() == metrics_b.keys(), (a, set(metrics_a) ^ set(metrics_b))
    problems = mismatches(metrics_a, metrics_b, rtol, ignore=("wall_s",), abs_tolerances=SEARCHED_METRICS)
    assert not problems, (a, problems)
    if metrics_a["status"] == "failed":
        return metrics_a
    pd.testing.assert_frame_equal(artifacts.read_history(a), artifacts.read_history(b), rtol=rtol)
    for prefix in ("", "init/", "mask/"):
        pa, pb = artifacts.read_params(a, prefix), artifacts.read_params(b, prefix)
        assert pa.keys() == pb.keys()
        for k in pa:
            scale = float(np.max(np.abs(pa[k]), initial=0.0))  # entries near 0: relative to the array's scale
            np.testing.assert_allclose(pb[k], pa[k], rtol=rtol, atol=rtol * scale, err_msg=f"{a} {prefix}{k}")
    if (a / artifacts.ANALYSIS).exists():
        arrays_a, arrays_b = artifacts.read_arrays(a / artifacts.ANALYSIS), artifacts.read_arrays(b / artifacts.ANALYSIS)
        assert arrays_a.keys() == arrays_b.keys()
        for k in arrays_a:
            tol = rtol if arrays_a[k].dtype != np.float32 else max(rtol, 2.5e-7)
            scale = float(np.max(np.abs(arrays_a[k]), initial=0.0)) if arrays_a[k].dtype.kind in "fc" else 0.0
            spread = EIGENVALUE_CONDITION if k.startswith("eig") else 1.0
            np.testing.assert_allclose(arrays_b[k], arrays_a[k], rtol=tol * spread, atol=max(tol * spread * scale, 1e-12),
                                       err_msg=f"{a} {k}")
    return metrics_a


def train_chunks(trainer, key, hyper):
    """The initial state as (-1, 0, state, None), then every chunk of every stage of one run (none skipped,
    so it also runs under an outer jax.vmap): (stage index, position, state, records), from fit.Program's
    plain jitted pieces."""
    from rnn_sparsity.fit import Program

    program = Program(trainer)
    state = program.init(key, hyper)
    yield -1, 0, state, None
    yield from program.chunks(state, hyper)
