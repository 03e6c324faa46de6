"""Proximal-gradient stage (FISTA with backtracking), the one place the project uses jaxopt.

jaxopt is archived upstream; optax has no proximal-gradient solver, so this module wraps
`jaxopt.ProximalGradient` behind the same (init, step) pair as the optax stages. Swapping the
implementation touches this file only.
"""

from __future__ import annotations

from typing import Any, Callable

import jaxopt


def fista(smooth: Callable[[Any], Any], prox: Callable[[Any, Any, Any], Any], max_backtracking: int = 15):
    """Accelerated proximal gradient on smooth(θ) + R(θ), R given by prox(θ, hyper, η) = prox_{ηR}(θ).

    Returns (init(params, prox_hyper) -> state, update(params, state, prox_hyper) -> (params, state)).
    The step size η comes from a backtracking line search on the smooth part (sufficient decrease).
    """
    solver = jaxopt.ProximalGradient(fun=smooth, prox=prox, acceleration=True, maxls=max_backtracking,
                                     implicit_diff=False)

    def init(params, prox_hyper):
        return solver.init_state(params, hyperparams_prox=prox_hyper)

    def update(params, state, prox_hyper):
        return solver.update(params, state, hyperparams_prox=prox_hyper)

    return init, update
