"""Low-rank control of linear dynamics wired into runs: the model, the task's loss and metrics, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import compose_cfg

from rnn_sparsity.config import ConfigError, validate
from rnn_sparsity.experiment import make_run, run, set_precision

SMALL = ["sweeps=thalamocortical", "model.n_units=20", "model.rank_fraction=0.2", "analysis.figures=false",
         "optimizer.steps=10", "optimizer.lbfgs_steps=40"]


@pytest.mark.slow  # a fast-decay training to compile (~8 s cold)
def test_task_loss_is_the_lyapunov_decay_plus_weighted_terms_and_only_u_v_train():
    cfg = compose_cfg(*SMALL, tiny=False)
    set_precision("float64")
    _, trainer, _ = make_run(cfg)
    params, mask = trainer.model.init(jax.random.key(0), {})
    params = {**params, "J0": 0.5 * params["J0"]}  # a stable network: the decay loss is the Lyapunov trace
    J = np.asarray(trainer.model.recurrent(params))
    tau, n = 0.01, 20
    A = (J - np.eye(n)) / tau
    P = scipy.linalg.solve_continuous_lyapunov(A, -np.eye(n))
    w = np.asarray(params["w"])
    expected = np.trace(P) / (n * tau) + 0.01 * tau * w @ A @ P @ A.T @ w
    assert float(trainer.task_loss(params, mask)) == pytest.approx(expected, rel=1e-8)
    grads = jax.grad(trainer.task_loss)(params, mask)
    assert float(jnp.abs(grads["J0"]).max()) == 0.0 and float(jnp.abs(grads["w"]).max()) == 0.0
    assert float(jnp.abs(grads["U"]).max()) > 0.0


@pytest.mark.slow  # its own Adam and L-BFGS programs (~20 s cold); test_vmap_launcher runs the study too
def test_optimised_network_is_stable_and_decays_faster_than_at_init(tmp_path):
    metrics = run(compose_cfg(*SMALL, tiny=False), tmp_path)
    assert metrics["status"] == "completed" and metrics["stages"] == "adam,lbfgs"
    assert metrics["final_loss"] < metrics["initial_loss"] and metrics["stability_loss"] == pytest.approx(0.0)
    assert metrics["max_real_eig"] < 1.0  # (J - I)/τ stable
    assert 0 < metrics["decay_time_5"] < metrics["decay_time_1"]
    assert metrics["decay_time_1_tau"] == pytest.approx(metrics["decay_time_1"] / 0.01)
    from rnn_sparsity import artifacts
    from rnn_sparsity.plots.decay import decay_curve_figure

    arrays = artifacts.read_arrays(tmp_path / artifacts.ANALYSIS)
    curve_t, curve = arrays["decay_curve_time"], arrays["decay_curve_norm"]
    assert curve[0] == pytest.approx(1.0)  # normalised to its start
    crossing = curve_t[np.flatnonzero(curve <= 0.01)[0]]  # the grid's first point below 1%
    assert crossing - (curve_t[1] - curve_t[0]) <= metrics["decay_time_1"] <= crossing
    # the other two readings of the decay time: worst start >= typical start, worst >= slowest eigenmode,
    # and the slowest mode's time is τ ln(100) / (1 - max Re λ)
    assert metrics["worst_decay_time_1"] >= max(metrics["decay_time_1"], metrics["mode_decay_time_1"])
    assert metrics["mode_decay_time_1_tau"] == pytest.approx(np.log(100) / (1 - metrics["max_real_eig"]))
    import matplotlib.pyplot as plt

    from rnn_sparsity.plots.decay import before_after_eigenvalue_figure

    for draw in (decay_curve_figure, before_after_eigenvalue_figure):
        fig = draw(tmp_path)
        assert fig is not None
        plt.close(fig)
    before = arrays["eig_values"][0]  # eig(J) before optimisation: J0 + the initial Û V̂
    assert before.real.max() > metrics["max_real_eig"]


@pytest.mark.parametrize("override,key", [("model.rank_fraction=0", "model.rank_fraction"),
                                          ("model.rank_fraction=1.5", "model.rank_fraction"),
                                          ("model.n_units=1", "model.n_units"), ("task.alpha=-1", "task.alpha"),
                                          ("task.beta=-0.1", "task.beta"), ("model.init=torch", "model.init"),
                                          ("model.init=notebook seed=-1", "seed")])
def test_bad_lowrank_input_fails_with_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*SMALL, *override.split(), tiny=False))
    assert err.value.key == key


def test_an_unstable_network_gets_large_positive_decay_terms_not_negative_ones():
    from rnn_sparsity.analysis.decay import STABILITY_MARGIN, decay_losses

    with jax.enable_x64(True):
        n, tau = 6, 0.01
        J = np.diag([1.5, 0.2, 0.1, -0.3, 0.4, 0.0])  # γ = (J - 1)/τ: one eigenvalue +50 (unstable)
        terms = decay_losses(jnp.asarray(J), jnp.ones(n), tau)
        stable = decay_losses(jnp.asarray(np.diag([1 - STABILITY_MARGIN, 0.2, 0.1, -0.3, 0.4, 0.0])),
                              jnp.ones(n), tau)
    assert float(terms["stability"]) == pytest.approx(50.0 ** 2)
    # the unstable mode counts as marginal: the same decay term as a mode at -STABILITY_MARGIN / τ
    assert float(terms["decay"]) == pytest.approx(float(stable["decay"]), rel=1e-9) and float(terms["decay"]) > 0
    assert float(terms["smoothness"]) > 0


def test_notebook_init_is_numpys_seeded_draw_in_the_notebooks_order_for_every_member():
    cfg = compose_cfg(*SMALL, "model.init=notebook", tiny=False)
    set_precision("float64")
    _, trainer, _ = make_run(cfg)
    n, rank = 20, 4

    def notebook(seed):  # the notebook's cell: np.random.seed, then J0, V, U, w from the global generator
        np.random.seed(seed)
        J0, V, U, w = (np.random.randn(*shape) / np.sqrt(n) for shape in ((n, n), (rank, n), (n, rank), (n,)))
        return {"J0": J0, "V": V, "U": U, "w": w}

    params, _ = jax.jit(trainer.model.init)(jax.random.key(3), {})
    keys = jnp.stack([jax.random.key(3), jax.random.key(11)])
    batch, _ = jax.jit(jax.vmap(trainer.model.init, in_axes=(0, None)))(keys, {})
    for got, seed in ((params, 3), (jax.tree.map(lambda a: a[0], batch), 3), (jax.tree.map(lambda a: a[1], batch), 11)):
        expected = notebook(seed)
        assert all(np.array_equal(np.asarray(got[k]), expected[k]) for k in expected), seed


def test_the_notebook_network_starts_at_the_notebooks_printed_loss_without_the_cap():
    """seed=2, N = 500, n/N = 0.1 with model.init=notebook is the source notebook's network, and the
    uncapped terms (task.cap=false) are the source's loss: at the start, L1 + α L2 + β L3 is what the notebook
    prints before the first Adam step (cell 11: 847949.969712 for β = 0.01, 847949.957052 for β = 0)."""
    from rnn_sparsity.tasks.fast_decay import uncapped_decay_losses

    cfg = compose_cfg("sweeps=thalamocortical", "model.n_units=500", "model.rank_fraction=0.1", "seed=2",
                      "model.init=notebook", tiny=False)
    set_precision("float64")
    _, trainer, _ = make_run(cfg)
    params, _ = jax.jit(trainer.model.init)(jax.random.key(2), {})
    terms = uncapped_decay_losses(trainer.model.recurrent(params), params["w"], 0.01)
    l1, l2, l3 = (float(terms[k]) for k in ("decay", "stability", "smoothness"))
    assert l1 + 1e5 * l2 + 0.01 * l3 == pytest.approx(847949.969712, rel=1e-10)
    assert l1 + 1e5 * l2 == pytest.approx(847949.957052, rel=1e-10)


def test_task_cap_false_makes_the_run_loss_the_uncapped_one():
    from rnn_sparsity.analysis.decay import decay_losses
    from rnn_sparsity.tasks.fast_decay import uncapped_decay_losses

    set_precision("float64")
    losses = {}
    for cap in (True, False):
        _, trainer, _ = make_run(compose_cfg(*SMALL, f"task.cap={cap}", tiny=False))
        params, mask = trainer.model.init(jax.random.key(0), {})
        params = {**params, "J0": 2.0 * params["J0"]}  # unstable: the cap matters
        losses[cap] = float(trainer.task_loss(params, mask))
    J, w = trainer.model.recurrent(params), params["w"]
    for cap, terms in ((True, decay_losses(J, w, 0.01)), (False, uncapped_decay_losses(J, w, 0.01))):
        total = terms["decay"] + 1e5 * terms["stability"] + 0.01 * terms["smoothness"]
        assert losses[cap] == pytest.approx(float(total), rel=1e-10)
    assert abs(losses[True] - losses[False]) > 100.0  # the decay and smoothness terms differ, the stability term not


def test_uncapped_terms_are_the_capped_ones_on_a_stable_network_and_negative_beyond_the_line():
    from rnn_sparsity.analysis.decay import decay_losses
    from rnn_sparsity.tasks.fast_decay import uncapped_decay_losses

    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        n, tau = 8, 0.01
        J = 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)  # stable: max Re λ < 1
        w = rng.standard_normal(n) / np.sqrt(n)
        J, w = jnp.asarray(J), jnp.asarray(w)
        capped, uncapped = decay_losses(J, w, tau), uncapped_decay_losses(J, w, tau)
        assert all(float(uncapped[k]) == pytest.approx(float(capped[k]), rel=1e-12) for k in capped)
        unstable = uncapped_decay_losses(jnp.asarray(np.diag([1.5, 0.2, -0.3])), jnp.zeros(3), tau)
    # γ = (1.5 - 1)/τ = 50 alone: F = -1/(2·50) for that mode, so L1 = (-1/100 + τ/1.6 + τ/2.6)/(3τ)
    assert float(unstable["decay"]) == pytest.approx((-1 / 100 + tau / 1.6 + tau / 2.6) / (3 * tau), rel=1e-12)
    assert float(unstable["stability"]) == pytest.approx(50.0 ** 2)
