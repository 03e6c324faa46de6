"""Fixed points of the discrete-time RNNs built from Flax cells (models/cells.py) against networks whose
fixed points are known exactly (float64), and the cells' state map against their own `apply`.

Each hand-built network is a product of independent units: the recurrent kernels are diagonal and every
gate that could couple units is a constant (its recurrent kernel 0), so a fixed point of the map is a
choice of one root per unit of a 1-D equation φ_k(h) = 0, each root found exhaustively (sign changes
on a fine grid over the whole range h can take, then brentq). The Jacobian of the map is then
block-diagonal per unit, so its eigenvalues are known in closed form at every fixed point too:

    SimpleCell  h' = tanh(w h + a)                    φ = tanh(w h + a) − h          λ = w (1 − h²)
    GRUCell     h' = (1 − z) n + z h,                 φ = tanh(a + r (w h + b)) − h  λ = z + (1 − z) r w (1 − h²)
                n = tanh(a + r (w h + b))
    LSTMCell    c' = f c + i g, h' = o tanh(c'),      φ = o tanh(κ g(h)) − h,        λ ∈ {0, f + β i w (1 − g²)}
                g = tanh(w h + a), κ = i / (1 − f)    c = κ g(h)                     β = o (1 − tanh² c)

(a, b, r, z, i, f, o per unit, from the static input u and the biases). The LSTM's state is its carry
(c, h) flattened to [c, h]; its 2×2 block [[f, i w g'], [β f, β i w g']] has determinant 0.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from scipy.optimize import brentq

from rnn_sparsity.analysis.fixed_points import default_tol, find_fixed_points, problem
from rnn_sparsity.models.cells import cell_model, flatten_carry, gru_roots
from rnn_sparsity.models.flax import nested_params


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def unit_roots(phi, lo=-1.0, hi=1.0, n=40_001):
    """Every root of the scalar function phi in [lo, hi]: the sign changes on a grid of n points, each
    refined by brentq. Exhaustive for simple roots at least 2 (hi − lo) / n apart (a double root, where a
    unit is at a fold, would be missed: the tests check each unit's root count, far from any fold)."""
    grid = np.linspace(lo, hi, n)
    values = phi(grid)
    assert np.all(values != 0.0)
    crossings = np.flatnonzero(np.sign(values[:-1]) != np.sign(values[1:]))
    return np.array([brentq(phi, grid[k], grid[k + 1], xtol=1e-15, rtol=4 * np.finfo(float).eps) for k in crossings])


def product_points(per_unit):
    """All fixed points of independent units: every combination of one root per unit, (K, n)."""
    return np.array(list(itertools.product(*per_unit)))


def set_params(params, **entries):
    """A copy of params with the named entries ("cell/h/kernel" as cell_h_kernel) replaced, shapes kept."""
    params = dict(params)
    for key, value in entries.items():
        name = key.replace("_", "/")
        value = jnp.asarray(value, jnp.float64)
        assert value.shape == params[name].shape, (name, value.shape, params[name].shape)
        params[name] = value
    return params


def init_params(model):
    return model.init(jax.random.key(0), {"sparsity": 0.0})[0]


# ------------------------------------------------------------------------------ the hand-built networks
U = np.array([0.4])  # the static input: it enters every unit through its input kernels


def vanilla_case():
    """3 units of h' = tanh(w h + a): bistable, monostable, bistable."""
    w = np.array([2.5, 0.6, 1.8])
    W_i = np.array([[0.5, -1.0, 0.25]])
    b = np.array([-0.1, 0.2, -0.15])
    a = U @ W_i + b
    model = cell_model(nn.SimpleCell(features=3), 1, 2, jnp.float64)
    params = set_params(init_params(model), cell_h_kernel=np.diag(w), cell_i_kernel=W_i, cell_i_bias=b)
    roots = [unit_roots(lambda h, k=k: np.tanh(w[k] * h + a[k]) - h) for k in range(3)]
    known = product_points(roots)
    eigenvalues = w * (1 - known ** 2)
    return model, params, roots, known, eigenvalues


def gru_case(roots=None):
    """3 units of a GRU with constant gates r, z (hr, hz kernels 0) and a diagonal hn kernel (`roots`:
    solved as the roots of that residual instead of f(h) − h)."""
    w = np.array([3.0, 0.8, 2.5])
    W_ir, b_ir = np.array([[0.5, -0.5, 1.0]]), np.array([1.2, 2.0, 0.0])
    W_iz, b_iz = np.array([[-1.0, 0.5, 0.5]]), np.array([-0.5, 0.0, 0.6])
    W_in, b_in = np.array([[0.25, 1.0, -0.5]]), np.array([-0.1, 0.1, 0.15])
    b_hn = np.array([0.05, -0.3, 0.0])
    r, z = sigmoid(U @ W_ir + b_ir), sigmoid(U @ W_iz + b_iz)
    a = U @ W_in + b_in
    model = cell_model(nn.GRUCell(features=3), 1, 2, jnp.float64, roots=roots)
    zero = np.zeros((3, 3))
    params = set_params(init_params(model), cell_hr_kernel=zero, cell_hz_kernel=zero, cell_hn_kernel=np.diag(w),
                        cell_hn_bias=b_hn, cell_ir_kernel=W_ir, cell_ir_bias=b_ir, cell_iz_kernel=W_iz,
                        cell_iz_bias=b_iz, cell_in_kernel=W_in, cell_in_bias=b_in)
    roots = [unit_roots(lambda h, k=k: np.tanh(a[k] + r[k] * (w[k] * h + b_hn[k])) - h) for k in range(3)]
    known = product_points(roots)
    eigenvalues = z + (1 - z) * r * w * (1 - known ** 2)
    return model, params, roots, known, eigenvalues


def lstm_case():
    """3 units of an LSTM with constant gates i, f, o (hi, hf, ho kernels 0) and a diagonal hg kernel;
    the state is [c, h] (6 numbers)."""
    w = np.array([2.0, 0.5, 1.5])
    b_i, b_f, b_o = np.array([1.2, 0.0, 0.8]), np.array([0.0, 0.3, 0.5]), np.array([2.0, 1.0, 1.2])
    W_ii, W_if, W_io = np.array([[0.5, 0.5, 0.2]]), np.array([[0.1, -0.5, -0.1]]), np.array([[0.5, -1.0, 0.5]])
    W_ig, b_g = np.array([[0.25, -0.5, 0.1]]), np.array([-0.05, 0.3, 0.0])
    i, f, o = sigmoid(U @ W_ii + b_i), sigmoid(U @ W_if + b_f), sigmoid(U @ W_io + b_o)
    a = U @ W_ig + b_g
    kappa = i / (1 - f)
    model = cell_model(nn.LSTMCell(features=3), 1, 2, jnp.float64)
    zero = np.zeros((3, 3))
    params = set_params(init_params(model), cell_hi_kernel=zero, cell_hf_kernel=zero, cell_ho_kernel=zero,
                        cell_hg_kernel=np.diag(w), cell_hi_bias=b_i, cell_hf_bias=b_f, cell_ho_bias=b_o,
                        cell_hg_bias=b_g, cell_ii_kernel=W_ii, cell_if_kernel=W_if, cell_io_kernel=W_io,
                        cell_ig_kernel=W_ig)
    roots = [unit_roots(lambda h, k=k: o[k] * np.tanh(kappa[k] * np.tanh(w[k] * h + a[k])) - h) for k in range(3)]
    h = product_points(roots)
    g = np.tanh(w * h + a)
    c = kappa * g
    known = np.concatenate([c, h], axis=1)  # the flat carry (c, h) as cells.flatten_carry orders it
    beta = o * (1 - np.tanh(c) ** 2)
    eigenvalues = np.concatenate([f + beta * i * w * (1 - g ** 2), np.zeros_like(h)], axis=1)
    return model, params, roots, known, eigenvalues


def unit_starts(n_units, span, seed, n_grid=5, n_random=60):
    """Starts spanning the box [-span, span]^n: every combination of n_grid values per unit, and random ones."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-span, span, n_grid)
    combos = np.array(list(itertools.product(*[grid] * n_units)))
    return np.concatenate([combos, rng.uniform(-span, span, (n_random, n_units))])


def lstm_starts(seed):
    """[c, h]: h over its box as unit_starts, c uniform over (−2, 2) ⊃ (−κ, κ), the range c can take."""
    h = unit_starts(3, 0.95, seed)
    c = np.random.default_rng(seed + 100).uniform(-2.0, 2.0, h.shape)
    return np.concatenate([c, h], axis=1)


CASES = {
    "SimpleCell": (vanilla_case, (3, 1, 3), lambda: unit_starts(3, 0.95, 1)),
    "GRUCell": (gru_case, (3, 1, 3), lambda: unit_starts(3, 0.95, 2)),
    "GRUCell, n(h) - h": (lambda: gru_case(roots=gru_roots), (3, 1, 3), lambda: unit_starts(3, 0.95, 2)),
    "LSTMCell": (lstm_case, (3, 1, 3), lambda: lstm_starts(3)),
}


def residual_norms(model, params, points):
    """‖f(h) − h‖ at each point, straight from the model's state map."""
    field = jax.jit(jax.vmap(model.dynamics.field, in_axes=(None, 0, None)))
    points = jnp.asarray(points)
    return np.linalg.norm(np.asarray(field(params, points, jnp.asarray(U)) - points), axis=1)


def by_growth(values):
    """Eigenvalues sorted as FixedPoints holds them for a map: descending |λ| (ties by value)."""
    values = np.asarray(values)
    return np.stack([row[np.lexsort((-row.real, -np.abs(row)))] for row in values])


@pytest.mark.parametrize("cell", list(CASES))
def test_every_known_fixed_point_is_found_and_every_found_one_is_true(cell):
    build, root_counts, starts = CASES[cell]
    model, params, roots, known, analytic = build()
    assert tuple(len(r) for r in roots) == root_counts  # the networks are what they are meant to be
    n = known.shape[1]
    tol = default_tol(jnp.float64, n)
    assert np.all(residual_norms(model, params, known) < tol)  # the roots are fixed points of the model's map

    result = find_fixed_points(problem(model.dynamics, params, jnp.asarray(U)), starts())
    found = result.points
    assert result.kind == "map"
    assert found.shape == known.shape, (len(found), len(known))
    # every found point is a true fixed point, by the model's own map
    assert np.all(residual_norms(model, params, found) < tol)
    assert np.all(result.residual_norms < tol)
    # every known point is found, and every found point is a known one (one to one)
    distance = np.linalg.norm(found[:, None, :] - known[None, :, :], axis=2)
    match = np.argmin(distance, axis=1)
    assert np.all(distance.min(axis=0) < 1e-6) and np.all(distance.min(axis=1) < 1e-6)
    assert sorted(match) == list(range(len(known)))
    np.testing.assert_allclose(found, known[match], atol=1e-9)

    # the spectrum of ∂f/∂h at each point, and hence its stability, is the analytic one
    expected = by_growth(analytic[match])
    assert np.all(np.abs(np.abs(expected) - 1) > 1e-3)  # no point is marginal: the flags below are sharp
    np.testing.assert_allclose(result.eigenvalues, expected, atol=1e-8)
    assert np.all(np.diff(np.abs(result.eigenvalues), axis=1) <= 1e-12)  # descending |λ|
    np.testing.assert_array_equal(result.n_unstable, np.sum(np.abs(expected) > 1, axis=1))
    np.testing.assert_array_equal(result.is_stable, np.all(np.abs(expected) < 1, axis=1))
    # both kinds occur: stable points (all |λ| < 1) and saddles/repellers
    assert result.is_stable.any() and not result.is_stable.all()


def test_eigenvalues_of_a_map_are_those_of_df_dh_not_of_the_residual():
    """At fixed points of a random LSTM (coupled units, complex eigenvalues), FixedPoints.eigenvalues are
    those of ∂f/∂h by jax.jacfwd, not of ∂(f − h)/∂h = ∂f/∂h − I (the finder's residual)."""
    model = cell_model(nn.LSTMCell(features=3), 2, 1, jnp.float64)
    params = model.init(jax.random.key(4), {"sparsity": 0.0})[0]
    params = {k: 2.0 * v if k.startswith("cell/h") else v for k, v in params.items()}
    u = jnp.array([0.3, -0.8])
    rng = np.random.default_rng(5)
    result = find_fixed_points(problem(model.dynamics, params, u), rng.uniform(-1.5, 1.5, (40, 6)))
    assert len(result.points) >= 1
    jac = jax.jit(jax.jacfwd(model.dynamics.field, argnums=1))
    for point, values in zip(result.points, result.eigenvalues):
        J = np.asarray(jac(params, jnp.asarray(point), u))
        expected = np.linalg.eigvals(J)
        np.testing.assert_allclose(np.sort_complex(values), np.sort_complex(expected), atol=1e-9)
        shifted = np.linalg.eigvals(J - np.eye(6))
        assert not np.allclose(np.sort_complex(values), np.sort_complex(shifted), atol=1e-3)
        np.testing.assert_array_equal(np.abs(values), np.sort(np.abs(values))[::-1])
    np.testing.assert_array_equal(result.n_unstable, np.sum(np.abs(result.eigenvalues) > 1, axis=1))
    np.testing.assert_array_equal(result.is_stable, np.all(np.abs(result.eigenvalues) < 1, axis=1))
    assert result.is_stable.any() and not result.is_stable.all()  # stable points and a saddle (|λ| > 1 and < 1)
    assert np.any(np.abs(result.eigenvalues.imag) > 1e-3)  # complex pairs: the comparison is not of real values only


@pytest.mark.parametrize("cell", [nn.SimpleCell, nn.GRUCell, nn.LSTMCell])
def test_apply_states_follow_the_state_map(cell):
    """apply's states (T, B, N) are the state map iterated from the zero carry, and its outputs the
    dynamics' readout: states[t] = f(states[t−1], u_t), outputs[t] = readout(states[t−1], u_t)."""
    n_in, n_out, features = 2, 2, 4
    model = cell_model(cell(features=features), n_in, n_out, jnp.float64)
    params = model.init(jax.random.key(7), {"sparsity": 0.0})[0]
    rng = np.random.default_rng(8)
    params = {k: v + 0.3 * jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}  # biases ≠ 0 too
    inputs = jnp.asarray(rng.normal(size=(6, 3, n_in)))
    outputs, states = model.apply(params, inputs)
    n = 2 * features if cell is nn.LSTMCell else features
    assert states.shape == (6, 3, n) and outputs.shape == (6, 3, n_out)
    assert states.dtype == jnp.float64

    # every step of every trial at once: f and the readout from the state before it (the zero carry at t = 0)
    previous = jnp.concatenate([jnp.zeros((1, 3, n)), states[:-1]]).reshape(-1, n)
    u = inputs.reshape(-1, n_in)
    np.testing.assert_allclose(jax.jit(jax.vmap(model.dynamics.field, in_axes=(None, 0, 0)))(params, previous, u),
                               states.reshape(-1, n), rtol=0, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.vmap(model.dynamics.readout, in_axes=(None, 0, 0)))(params, previous, u),
                               outputs.reshape(-1, n_out), rtol=0, atol=1e-12)
    assert np.abs(np.asarray(states[-1])).min() > 1e-3  # states that moved away from the zero carry

    if cell is nn.LSTMCell:  # the flat state is the carry (c, h) as [c, h], by Flax's own cell
        c_prev, h_prev = states[-2][:, :features], states[-2][:, features:]
        variables = {"params": nested_params({k[len("cell/"):]: v for k, v in params.items() if k.startswith("cell/")})}
        (c_new, h_new), _ = cell(features=features).apply(variables, (c_prev, h_prev), inputs[-1])
        np.testing.assert_allclose(states[-1], flatten_carry((c_new, h_new)), rtol=0, atol=1e-12)
        np.testing.assert_allclose(states[-1][:, :features], c_new, rtol=0, atol=1e-12)


def test_the_grus_roots_residual_is_n_minus_h_of_flaxs_own_cell():
    """f(h) − h = (1 − z)(n(h) − h) for flax.linen.GRUCell at random states and inputs, with z the update
    gate: gru_roots has the GRU's fixed points as its roots and nothing else (1 − z > 0)."""
    model = cell_model(nn.GRUCell(features=5), 2, 1, jnp.float64, roots=gru_roots)
    params = model.init(jax.random.key(3), {"sparsity": 0.0})[0]
    rng = np.random.default_rng(4)
    params = {k: v + 0.5 * jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
    h, u = jnp.asarray(rng.normal(size=(20, 5)) * 2), jnp.asarray(rng.normal(size=(20, 2)))
    f = jax.jit(jax.vmap(model.dynamics.field, in_axes=(None, 0, 0)))(params, h, u)
    n_minus_h = jax.jit(jax.vmap(model.dynamics.roots, in_axes=(None, 0, 0)))(params, h, u)
    z = jax.nn.sigmoid(u @ params["cell/iz/kernel"] + params["cell/iz/bias"] + h @ params["cell/hz/kernel"])
    np.testing.assert_allclose(f - h, (1 - z) * n_minus_h, rtol=0, atol=1e-12)
    assert np.all(np.abs(n_minus_h) >= np.abs(f - h) - 1e-15)  # ‖roots‖ < tol implies ‖f(h) − h‖ < tol
