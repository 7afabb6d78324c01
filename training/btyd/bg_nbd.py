"""BG/NBD (Fader, Hardie and Lee 2005): objective, closed-form predictions and posterior simulation.

MBG/NBD (:mod:`training.btyd.mbg_nbd`) is the same family with ``modified = True``: the customer may also drop
out at time 0, so the dropout terms use ``x`` where BG/NBD uses ``x - 1`` (and apply to one-time buyers too).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import special

from training.btyd.base import PurchaseFamily
from training.btyd.rows import compress_rows, factorize

__all__ = ["BGNBD", "BGObjective", "bg_expected_orders"]


class BGObjective:
    """BG/NBD (``modified=False``) or MBG/NBD (``modified=True``) objective with analytic gradient.

    Same function as lifetimes' ``BetaGeoFitter._negative_log_likelihood`` /
    ``ModifiedBetaGeoFitter._negative_log_likelihood``: per customer
    ``ll = A1(x) + A2(x) + A3 + mask * log1p(exp(z))`` with ``A3 = -(r + x) log(alpha + T)`` and
    ``z = log a - log(b + d(x)) + (r + x) (log(alpha + T) - log(alpha + t_x))``, where ``d(x) = x - 1`` and
    ``mask = x > 0`` for BG/NBD and ``d(x) = x``, ``mask = 1`` for MBG/NBD.
    """

    def __init__(self, x, rec, T, w, *, modified: bool):
        self.k = 1 if modified else 0
        x = np.asarray(x, dtype=float)
        w = np.asarray(w, dtype=float)
        self.W = w.sum()
        ix, self.ux = factorize(x)
        iT, self.uT = factorize(T)
        iR, self.uR = factorize(rec)
        self.Wx = np.bincount(ix, w, minlength=len(self.ux))
        self.WT = np.bincount(iT, w, minlength=len(self.uT))
        self.WXT = np.bincount(iT, w * x, minlength=len(self.uT))
        self.ud = self.ux if modified else np.maximum(self.ux, 1) - 1
        mask = np.ones(len(x), dtype=bool) if modified else x > 0
        self.m_ix, self.m_iT, self.m_iR = ix[mask], iT[mask], iR[mask]
        self.m_x, self.m_w = x[mask], w[mask]
        self._buf = np.empty((6, int(mask.sum())))  # work arrays: no allocation per evaluation
        self.penalizer = 0.0

    def __call__(self, theta):
        params = np.exp(theta)
        r, al, a, b = params
        ux, k = self.ux, self.k
        A1x = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(al)
        A2x = (special.gammaln(a + b) + special.gammaln(b + ux + k) - special.gammaln(b)
               - special.gammaln(a + b + ux + k))
        LT = np.log(al + self.uT)
        LR = np.log(al + self.uR)
        IT = 1.0 / (al + self.uT)
        IR = 1.0 / (al + self.uR)
        cx = np.log(a) - np.log(b + self.ud)
        b1, b2, dl, z, e, wq = self._buf
        np.take(LT, self.m_iT, out=b1)
        np.take(LR, self.m_iR, out=b2)
        np.subtract(b1, b2, out=dl)  # log(alpha + T) - log(alpha + t_x)
        np.add(self.m_x, r, out=b1)  # r + x
        np.multiply(b1, dl, out=b2)
        np.take(cx, self.m_ix, out=z)
        np.add(z, b2, out=z)
        if z.size and z.max() > 700.0:  # exp would overflow: stable (allocating) path
            sp_sum = self.m_w @ np.logaddexp(0.0, z)
            np.multiply(self.m_w, special.expit(z), out=wq)
        else:
            np.exp(z, out=e)
            np.add(e, 1.0, out=b2)
            np.divide(e, b2, out=wq)
            np.log(b2, out=b2)  # log(1 + e): np.log is vectorised, log1p is not; the absolute error is < 1e-16
            sp_sum = self.m_w @ b2
            np.multiply(wq, self.m_w, out=wq)  # w * q, q = P(the "dropped out at t_x" branch)
        ll = self.Wx @ (A1x + A2x) - (r * (self.WT @ LT) + self.WXT @ LT) + sp_sum

        np.take(IT, self.m_iT, out=b2)
        np.take(IR, self.m_iR, out=e)
        np.subtract(b2, e, out=b2)
        np.multiply(b1, b2, out=b2)  # (r + x) * (1 / (alpha + T) - 1 / (alpha + t_x))
        Qx = np.bincount(self.m_ix, wq, minlength=len(ux))
        psi_ab = special.digamma(a + b)
        psi_abx = special.digamma(a + b + ux + k)
        g = np.array([
            self.Wx @ (special.digamma(r + ux) - special.digamma(r) + np.log(al)) - self.WT @ LT + wq @ dl,
            self.W * r / al - (r * (self.WT @ IT) + self.WXT @ IT) + wq @ b2,
            self.Wx @ (psi_ab - psi_abx) + Qx.sum() / a,
            self.Wx @ (psi_ab + special.digamma(b + ux + k) - special.digamma(b) - psi_abx) - Qx @ (1.0 / (b + self.ud)),
        ])
        f = -ll / self.W + self.penalizer * np.sum(params**2)
        grad = -g * params / self.W + 2.0 * self.penalizer * params**2
        return f, grad



def bg_expected_orders(params: dict, t: float, x, rec, T, *, modified: bool) -> np.ndarray:
    """BG/NBD (Fader et al. 2005, eq. 10) / MBG/NBD conditional expected orders in ``(T, T + t]``.

    Same expression as lifetimes' ``conditional_expected_number_of_purchases_up_to_time`` but without taking
    the log of the Gauss hypergeometric function (it is negative when ``a + b + x - 1 < 0``, e.g. one-time
    buyers with ``a + b < 1``, where lifetimes returns NaN), with Euler's transformation
    ``2F1(a, b; c; z) = (1 - z) ** (c - a - b) * 2F1(c - a, c - b; c; z)`` where the direct series overflows,
    and with the hypergeometric term evaluated once per distinct ``(x, T)`` pair.
    """
    r, al, a, b = params["r"], params["alpha"], params["a"], params["b"]
    x = np.asarray(x, dtype=float)
    rec = np.asarray(rec, dtype=float)
    T = np.asarray(T, dtype=float)
    k = 1.0 if modified else 0.0
    (px, pT), _, inv = compress_rows(x, T)
    ha, hb, hc = r + px, b + px + k, a + b + px + k - 1.0
    log1mz = np.log(al + pT) - np.log(al + pT + t)  # log(1 - z), z = t / (alpha + T + t)
    z = t / (al + pT + t)
    direct = special.hyp2f1(ha, hb, hc, z) * np.exp(ha * log1mz)
    h2 = special.hyp2f1(hc - ha, hc - hb, hc, z)
    euler = np.sign(h2) * np.exp((hc - hb) * log1mz + np.log(np.abs(h2)))
    use_direct = np.isfinite(direct) & (np.abs(direct) < 1e250)
    term = np.where(use_direct, direct, euler)[inv]
    numerator = (a + b + x - 1.0 + k) / (a - 1.0) * (1.0 - term)
    log_ratio = (r + x) * (np.log(al + T) - np.log(al + rec))
    if modified:
        denominator = 1.0 + a / (b + x) * np.exp(log_ratio)
    else:
        denominator = 1.0 + (x > 0) * a / (b + np.maximum(x, 1.0) - 1.0) * np.exp(log_ratio)
    return numerator / denominator



class BGNBD(PurchaseFamily):
    """BG/NBD: Poisson purchases at rate ``lambda ~ Gamma(r, alpha)``, dropout after each order with probability
    ``p ~ Beta(a, b)``. Fitted with lifetimes' objective and starting point (0.1 in log-parameters)."""

    name: ClassVar[str] = "bg_nbd"
    params: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    shape_params: ClassVar[tuple[str, ...]] = ("r", "a", "b")
    scale_params: ClassVar[tuple[str, ...]] = ("alpha",)
    analytic: ClassVar[bool] = True
    #: MBG/NBD: dropout possible at time 0 (``d(x) = x`` instead of ``x - 1``).
    modified: ClassVar[bool] = False

    def start(self) -> np.ndarray:
        return np.full(4, 0.1)

    def objective(self, rows: tuple, w: np.ndarray) -> BGObjective:
        return BGObjective(*rows, w, modified=self.modified)

    def lifetimes_fitter(self, params: dict):
        """A lifetimes fitter carrying ``params`` (no data), used for its closed-form P(alive)."""
        from lifetimes import BetaGeoFitter

        return self._with_params(BetaGeoFitter(), params)

    def _with_params(self, fitter, params: dict):
        fitter.params_ = pd.Series({k: float(params[k]) for k in self.params})
        return fitter

    def p_alive(self, params: dict, x, rec, T) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        fitter = self.lifetimes_fitter(params)
        return np.asarray(fitter.conditional_probability_alive(x, rec, T), dtype=float) * np.ones_like(x, dtype=float)

    def expected_orders(self, params: dict, t: float, x, rec, T) -> np.ndarray:
        return bg_expected_orders(params, t, x, rec, T, modified=self.modified)

    def p_quiet_if_alive(self, params: dict, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """``((alpha + T) / (alpha + T + t)) ** (r + x)``: posterior rate ``Gamma(r + x, alpha + T)``, and dropout
        only happens after an order."""
        r, al = params["r"], params["alpha"]
        return ((al + T) / (al + T + t)) ** (r + x)

    def simulate_orders(self, params: dict, lam: np.ndarray, xs: np.ndarray, Ts: np.ndarray, t: float,
                        rng: np.random.Generator) -> np.ndarray:
        """``min(Poisson(lambda t), K)`` with ``K ~ Geometric(p)`` orders until dropout, ``p ~ Beta(a, b + x)``
        (MBG/NBD: ``Beta(a, b + x + 1)``)."""
        orders = rng.poisson(lam * t)
        # K >= 1 orders until dropout: it only binds where the Poisson count is >= 2, so draw it only there
        many = np.flatnonzero(orders >= 2)
        if len(many):
            extra = 1.0 if self.modified else 0.0
            g1 = rng.standard_gamma(np.full(len(many), params["a"]))
            g2 = rng.standard_gamma(params["b"] + xs[many] + extra)
            with np.errstate(invalid="ignore"):
                p_drop = np.nan_to_num(g1 / (g1 + g2), nan=1.0)
            k = rng.geometric(np.clip(p_drop, 1e-300, 1.0))
            orders[many] = np.minimum(orders[many], k)
        return orders
