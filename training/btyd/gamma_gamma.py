"""Gamma-Gamma spend model (Fader and Hardie 2013, note 025): objective, checks and expected spend per order.

Each order of a repeat buyer is worth ``Gamma(p, nu)``, the spend rate ``nu ~ Gamma(q, v)`` across customers; it
is fitted on ``(frequency, monetary_value)`` of repeat buyers, independently of the transaction model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from training.btyd.base import parameter_reasons
from training.btyd.rows import factorize, require_columns

__all__ = ["GG_PARAMS", "GGObjective", "check_gg", "expected_order_value", "gg_inputs"]

GG_PARAMS = ("p", "q", "v")


class GGObjective:
    """Gamma-Gamma objective with analytic gradient, as lifetimes' ``GammaGammaFitter._negative_log_likelihood``."""

    def __init__(self, x, m, w):
        x = np.asarray(x, dtype=float)
        m = np.asarray(m, dtype=float)
        w = np.asarray(w, dtype=float)
        self.x, self.m, self.w = x, m, w
        self.W = w.sum()
        self.wx = w * x
        ix, self.ux = factorize(x)
        self.Wx = np.bincount(ix, w, minlength=len(self.ux))
        self.C1 = self.wx @ (np.log(m) + np.log(x))
        self.Cm = w @ np.log(m)
        self.xm = x * m
        self._buf = np.empty((2, len(x)))
        self.penalizer = 0.0

    def __call__(self, theta):
        params = np.exp(theta)
        p, q, v = params
        ux = self.ux
        L, inv = self._buf
        np.add(self.xm, v, out=inv)
        np.log(inv, out=L)
        np.divide(1.0, inv, out=inv)
        ll = (self.Wx @ (special.gammaln(p * ux + q) - special.gammaln(p * ux)) - self.W * special.gammaln(q)
              + self.W * q * np.log(v) + p * self.C1 - self.Cm - p * (self.wx @ L) - q * (self.w @ L))
        psi_pq = special.digamma(p * ux + q)
        g = np.array([
            (self.Wx * ux) @ (psi_pq - special.digamma(p * ux)) + self.C1 - self.wx @ L,
            self.Wx @ psi_pq - self.W * special.digamma(q) + self.W * np.log(v) - self.w @ L,
            self.W * q / v - p * (self.wx @ inv) - q * (self.w @ inv),
        ])
        f = -ll / self.W + self.penalizer * np.sum(params**2)
        grad = -g * params / self.W + 2.0 * self.penalizer * params**2
        return f, grad


def check_gg(params: dict, mean_m: float, *, min_param: float, max_ratio: float) -> list[str]:
    """Reasons why Gamma-Gamma parameters are degenerate: not finite, ``p`` or ``q`` at the bound, ``q <= 1``
    (infinite mean spend), or a population mean spend more than ``max_ratio`` times off the observed mean."""
    finite, reasons = parameter_reasons(params, GG_PARAMS, ("p", "q"), min_param=min_param)
    if not finite:
        return reasons
    if params["q"] <= 1:
        reasons.append(f"q={params['q']:.4g} <= 1: the population mean spend per order is infinite")
    else:
        pop = params["v"] * params["p"] / (params["q"] - 1)
        if not (mean_m / max_ratio <= pop <= mean_m * max_ratio):
            reasons.append(f"population mean spend {pop:.4g} is absurd next to the observed mean {mean_m:.4g}")
    return reasons


def gg_inputs(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frequency``, ``monetary_value`` and the mask of repeat buyers with a usable (positive) spend."""
    require_columns(data, ("frequency", "monetary_value"))
    x = data["frequency"].to_numpy(dtype=float)
    m = data["monetary_value"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        valid = (x > 0) & np.isfinite(m) & (m > 0)
    return x, m, valid


def expected_order_value(p: float, q: float, v: float, data: pd.DataFrame) -> np.ndarray:
    """Conditional expected spend per order (see :meth:`training.btyd.BTYDModel.expected_order_value`)."""
    x, m, valid = gg_inputs(data)
    weight = np.where(valid, p * x / (p * x + q - 1), 0.0)
    pop = v * p / (q - 1)
    out = (1 - weight) * pop + weight * np.where(valid, m, 0.0)
    out[np.isnan(x)] = np.nan
    return out
