"""Posterior simulation of the spend of customers alive at ``T`` (the draws behind ``BTYDModel.spend_quantiles``)."""

from __future__ import annotations

import numpy as np

from training.btyd.families import get_family

__all__ = ["simulate_alive_ratio"]


def simulate_alive_ratio(model: str, params: dict, p_gg: float, x, T, shape, t: float, n_draws: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``(len(x), n_draws)`` draws of ``R = G_N / G_nu`` for customers alive at ``T`` (see ``spend_quantiles``).

    The purchase rate ``lambda ~ Gamma(r + x, alpha + T)`` is drawn here, the order count ``N`` by the family
    (:meth:`~training.btyd.base.PurchaseFamily.simulate_orders`), then ``G_N ~ Gamma(N p)`` and
    ``G_nu ~ Gamma(shape)``.
    """
    family = get_family(model)
    n = len(x)
    xs, Ts = np.repeat(x, n_draws), np.repeat(T, n_draws)
    lam = rng.standard_gamma(params["r"] + xs) / (params["alpha"] + Ts)
    orders = family.simulate_orders(params, lam, xs, Ts, t, rng)
    ratio = np.zeros(len(xs))
    buy = orders > 0
    if buy.any():
        g_n = rng.standard_gamma(orders[buy] * p_gg)
        g_nu = rng.standard_gamma(np.repeat(shape, n_draws)[buy])
        ratio[buy] = g_n / g_nu
    return ratio.reshape(n, n_draws)
