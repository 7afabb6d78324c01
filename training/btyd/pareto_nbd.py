"""Pareto/NBD (Schmittlein, Morrison and Colombo 1987): objective, closed-form predictions and simulation.

Purchases at rate ``lambda ~ Gamma(r, alpha)``, an exponential lifetime at rate ``mu ~ Gamma(s, beta)``. The
likelihood has no analytic gradient here (Gauss hypergeometric terms), so the optimiser differentiates it
numerically, from ``theta = 0`` with a fixed gradient tolerance of 1e-6.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import special

from training.btyd.base import PurchaseFamily
from training.btyd.rows import compress_rows, factorize

__all__ = ["ParetoNBD", "ParetoObjective"]


class ParetoObjective:
    """Pareto/NBD objective (value only), equation (18) of Hardie's note 009 as in lifetimes.

    The Gauss hypergeometric terms depend on ``(x, t_x)`` and ``(x, T)`` only and are evaluated once per
    distinct pair. Normalised like BG/NBD (weighted mean per customer), so penalizers mean the same in both;
    lifetimes' own Pareto objective divides by ``weights.mean()`` instead, which ties the penalizer's strength
    to the number of rows.
    """

    def __init__(self, x, rec, T, w):
        x = np.asarray(x, dtype=float)
        self.x = x
        self.w = np.asarray(w, dtype=float)
        self.W = self.w.sum()
        self.iT, self.uT = factorize(T)
        self.iR, self.uR = factorize(rec)
        # distinct (x, rec) and (x, T) pairs
        (self.p1x, self.p1v), _, self.inv1 = compress_rows(x, np.asarray(rec, dtype=float))
        (self.p2x, self.p2v), _, self.inv2 = compress_rows(x, np.asarray(T, dtype=float))
        self.penalizer = 0.0

    def log_terms(self, params) -> tuple[np.ndarray, np.ndarray]:
        """Per row: log-likelihood of the history *and* being alive at ``T``, and the full log-likelihood.

        ``exp(first - second)`` is P(alive). ``A0`` (Hardie's eq. 19-20) uses ``2F1(c - 1, b; c; z)``; where it
        overflows, Euler's transformation ``(1 - z) ** (1 - b) * 2F1(1, c - b; c; z)`` is used, and the
        difference of its two terms is taken in log space (no cancellation to a negative number).
        """
        r, al, s, be = (float(v) for v in params)
        x = self.x
        mx, ab = max(al, be), abs(al - be)

        def log_hyp(px, v):
            c = r + s + px + 1.0
            b = r + px if al < be else np.full_like(px, s + 1.0)
            z = ab / (mx + v)
            direct = np.log(special.hyp2f1(c - 1.0, b, c, z))
            euler = (1.0 - b) * np.log1p(-z) + np.log(special.hyp2f1(1.0, c - b, c, z))
            return np.where(np.isfinite(direct) & (direct < 690.0), direct, euler)

        with np.errstate(all="ignore"):
            rsf = r + s + x
            a1 = log_hyp(self.p1x, self.p1v)[self.inv1] - rsf * np.log(mx + self.uR)[self.iR]
            a2 = log_hyp(self.p2x, self.p2v)[self.inv2] - rsf * np.log(mx + self.uT)[self.iT]
            log_A0 = a1 + np.log1p(-np.exp(np.minimum(a2 - a1, 0.0)))
            A1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(al) + s * np.log(be)
            alive = A1 - (r + x) * np.log(al + self.uT)[self.iT] - s * np.log(be + self.uT)[self.iT]
            total = np.logaddexp(alive, A1 + np.log(s) + log_A0 - np.log(rsf))
        return alive, total

    def loglik_rows(self, params):
        """Per-row conditional log-likelihood (Hardie's eq. 18) for natural parameters ``(r, alpha, s, beta)``."""
        return self.log_terms(params)[1]

    def __call__(self, theta):
        params = np.exp(theta)
        ll = self.w @ self.loglik_rows(params)
        f = -ll / self.W + self.penalizer * np.sum(params**2)
        return float(f) if np.isfinite(f) else np.inf


class ParetoNBD(PurchaseFamily):
    """Pareto/NBD on the overflow-safe likelihood of :class:`ParetoObjective`."""

    name: ClassVar[str] = "pareto_nbd"
    params: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")
    shape_params: ClassVar[tuple[str, ...]] = ("r", "s")
    scale_params: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    analytic: ClassVar[bool] = False

    def start(self) -> np.ndarray:
        return np.zeros(4)

    def optimiser_tol(self, tol: float) -> float:
        """1e-6 whatever the estimator's ``tol``: finite-difference gradients are not more precise than that."""
        return 1e-6

    def objective(self, rows: tuple, w: np.ndarray) -> ParetoObjective:
        return ParetoObjective(*rows, w)

    def p_alive(self, params: dict, x, rec, T) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        prm = [params[k] for k in self.params]
        alive, total = ParetoObjective(x, rec, T, np.ones(len(x))).log_terms(prm)
        return np.minimum(np.exp(alive - total), 1.0)

    def expected_orders(self, params: dict, t: float, x, rec, T) -> np.ndarray:
        """Pareto/NBD conditional expected orders in ``(T, T + t]`` (Hardie's note 009, eq. 41).

        ``P(alive) * (r + x) / (alpha + T) * (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))``,
        the same expression as lifetimes but built on the overflow-safe P(alive) and continuous at ``s = 1``.
        """
        r, al, s, be = (params[k] for k in self.params)
        x = np.asarray(x, dtype=float)
        T = np.asarray(T, dtype=float)
        pa = self.p_alive(params, x, rec, T)
        log_ratio = np.log(be + T) - np.log(be + T + t)  # < 0
        if abs(s - 1.0) > 1e-10:
            life = -np.expm1((s - 1.0) * log_ratio) / (s - 1.0)
        else:
            life = -log_ratio
        return pa * (r + x) / (al + T) * (be + T) * life

    def p_quiet_if_alive(self, params: dict, t: float, x: np.ndarray, T: np.ndarray, *, nodes: int = 48,
                         chunk: int = 100_000) -> np.ndarray:
        """Pareto/NBD: P(no order in ``(T, T + t]`` | alive at ``T``, history).

        Given alive, ``lambda ~ Gamma(r + x, alpha + T)`` and ``mu ~ Gamma(s, beta + T)`` independently; there is no
        order when none happens before ``t`` while alive, or death comes first:
        ``E[exp(-(lambda + mu) t)] + E[int_0^t mu exp(-(lambda + mu) u) du]``, i.e.
        ``A(t) B(t) + int_0^t s / (beta + T + u) A(u) B(u) du`` with ``A(u) = ((alpha + T) / (alpha + T + u)) ** (r + x)``,
        ``B(u) = ((beta + T) / (beta + T + u)) ** s``. The integral is computed by Gauss-Legendre quadrature in
        ``y = log(1 + u / c)``, ``c = min(alpha, beta) + T`` (the integrand is smooth and decays like a power law).
        """
        r, al, s, be = (params[k] for k in self.params)
        y_nodes, y_weights = np.polynomial.legendre.leggauss(nodes)
        out = np.empty(len(x))
        for lo in range(0, len(x), chunk):
            xs, Ts = x[lo:lo + chunk, None], T[lo:lo + chunk, None]
            c = min(al, be) + Ts
            y_max = np.log1p(t / c)
            y = (y_nodes[None, :] + 1.0) / 2.0 * y_max
            u = c * np.expm1(y)
            log_ab = -(r + xs) * np.log1p(u / (al + Ts)) - s * np.log1p(u / (be + Ts))
            integrand = s / (be + Ts + u) * np.exp(log_ab) * c * np.exp(y)  # du = c e^y dy
            integral = (integrand * y_weights[None, :]).sum(axis=1) * y_max[:, 0] / 2.0
            end = np.exp(-(r + xs[:, 0]) * np.log1p(t / (al + Ts[:, 0])) - s * np.log1p(t / (be + Ts[:, 0])))
            out[lo:lo + chunk] = end + integral
        return np.clip(out, 0.0, 1.0)

    def simulate_orders(self, params: dict, lam: np.ndarray, xs: np.ndarray, Ts: np.ndarray, t: float,
                        rng: np.random.Generator) -> np.ndarray:
        """``Poisson(lambda * min(t, tau))`` with lifetime ``tau ~ Exponential(mu)``, ``mu ~ Gamma(s, beta + T)``."""
        mu = rng.standard_gamma(np.full(len(xs), params["s"])) / (params["beta"] + Ts)
        with np.errstate(divide="ignore"):
            tau = rng.standard_exponential(len(xs)) / mu
        return rng.poisson(lam * np.minimum(t, tau))
