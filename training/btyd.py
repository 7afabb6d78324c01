"""Weighted BTYD ("buy till you die") models: BG/NBD, Pareto/NBD, MBG/NBD and Gamma-Gamma.

The CLV family (a) of the project. :class:`BTYDModel` fits a transaction model and a Gamma-Gamma spend model
on the lifetimes summary columns ``frequency``, ``recency``, ``T`` and ``monetary_value`` (daily units, as
produced by ``features.rfm``), and predicts per customer for a horizon of ``t`` days: P(alive), expected
orders, P(no purchase), expected spend, spend quantiles and the next order date.

Fitting on unique rows
    The log-likelihood of every model here is a sum over customers of a function of ``(frequency, recency,
    T)`` (Gamma-Gamma: ``(frequency, monetary_value)``), so customers with identical rows can be collapsed
    into one row carrying a weight (their count) — lifetimes' ``fit(..., weights=...)`` trick. On daily data
    this shrinks a million customers to a few hundred thousand rows. The objectives are the ones lifetimes
    minimises (same log-parametrisation, same time scaling ``1 / max(T)``, same L2 penalizer on the scaled
    parameters, same mean-per-customer normalisation), but evaluated in vectorised numpy with analytic
    gradients, and with every term that depends on one column only (``gammaln(r + x)``, ``log(alpha + T)``,
    ``log(alpha + recency)``, ...) computed once per distinct value. The parameters equal lifetimes' raw fit
    (``tests/training/test_btyd.py`` checks rtol 1e-4; ``benchmarks/bench_btyd_fit.py`` measures the speed).

Degenerate fits
    On real shop data the BG/NBD likelihood is often maximised at the boundary (``a, b -> 0``), Pareto/NBD can
    return NaN with a penalizer, and the Gamma-Gamma ``q`` can approach 1 (infinite mean spend). Each attempt
    is checked (:func:`check_fit`: finite parameters, shape parameters above ``min_param``, optimiser
    convergence, finite and sane predictions on the training rows) and, when it fails, the next option of
    ``chain`` is tried. Every attempt, with its reason and the warnings it raised, is recorded in
    ``fit_log_``; when every option fails :class:`BTYDFitError` is raised so callers can use the other
    (LightGBM) family.

References
----------
.. [1] Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD
   model", Marketing Science 24(2).
.. [2] Schmittlein, Morrison and Colombo (1987), "Counting your customers: who are they and what will they do
   next?", Management Science 33(1); Fader and Hardie (2005), note 009, "A note on deriving the Pareto/NBD model
   and related expressions".
.. [3] Batislam, Denizel and Filiztekin (2007), "Empirical validation and comparison of models for customer base
   analysis" (MBG/NBD).
.. [4] Fader and Hardie (2013), note 025, "The Gamma-Gamma model of monetary value".
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

__all__ = [
    "BTYDFitError",
    "BTYDModel",
    "DEFAULT_CHAIN",
    "DEFAULT_GG_PENALIZERS",
    "MODEL_PARAMS",
    "check_fit",
    "compress_rows",
]

RFM_COLUMNS = ("frequency", "recency", "T")
MODEL_PARAMS = {
    "bg_nbd": ("r", "alpha", "a", "b"),
    "mbg_nbd": ("r", "alpha", "a", "b"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
}
GG_PARAMS = ("p", "q", "v")
#: Shape parameters checked against ``min_param`` (scale parameters ``alpha``/``beta`` only need to be finite).
SHAPE_PARAMS = {"bg_nbd": ("r", "a", "b"), "mbg_nbd": ("r", "a", "b"), "pareto_nbd": ("r", "s")}
DEFAULT_CHAIN: tuple[tuple[str, float], ...] = (
    ("bg_nbd", 0.0),
    ("bg_nbd", 0.001),
    ("bg_nbd", 0.01),
    ("pareto_nbd", 0.0),
    ("pareto_nbd", 0.001),
    ("mbg_nbd", 0.0),
)
DEFAULT_GG_PENALIZERS: tuple[float, ...] = (0.0, 0.001, 0.01)


class BTYDFitError(RuntimeError):
    """Every option of the BTYD fit chain failed (or the data cannot support a BTYD model).

    Callers catch it to fall back to the other (LightGBM) family. ``fit_log`` holds one dict per attempt.
    """

    def __init__(self, message: str, fit_log: Sequence[dict] = ()):
        super().__init__(message)
        self.fit_log = list(fit_log)


# ----------------------------------------------------------------------------------------------------------
# Row compression
# ----------------------------------------------------------------------------------------------------------
def compress_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Collapse identical rows of several equally long columns into unique rows with counts.

    Parameters
    ----------
    *columns : numpy.ndarray
        1-D arrays of equal length without NaN.

    Returns
    -------
    uniques : list of numpy.ndarray
        The unique rows, one array per input column (first-seen order).
    weights : numpy.ndarray
        ``int64`` count of input rows per unique row (sums to the input length).
    inverse : numpy.ndarray
        Index of the unique row of every input row, so ``uniques[k][inverse] == columns[k]``.
    """
    n = len(columns[0])
    code = _integer_code(columns)
    if code is None:
        code = np.zeros(n, dtype=np.int64)
        span = 1
        for col in columns:
            codes, uniq = pd.factorize(col, sort=False)
            k = max(len(uniq), 1)
            if span * k >= 2**62:  # re-factorize the partial key to keep it small
                code, _ = pd.factorize(code, sort=False)
                span = int(code.max()) + 1 if n else 1
            code = code * k + codes
            span *= k
    inverse, uniq_codes = pd.factorize(code, sort=False)
    n_unique = len(uniq_codes)
    rep = np.empty(n_unique, dtype=np.int64)
    rep[inverse] = np.arange(n, dtype=np.int64)  # any representative: all rows of a group are identical
    weights = np.bincount(inverse, minlength=n_unique).astype(np.int64)
    return [np.asarray(c)[rep] for c in columns], weights, inverse


def _compress_rfm(x: np.ndarray, rec: np.ndarray, T: np.ndarray):
    """:func:`compress_rows` for ``(frequency, recency, T)``; one-time buyers (``x = 0``, so ``recency = 0``)
    are grouped by ``T`` alone, which is cheaper and usually covers most customers."""
    once = x == 0
    if not once.any() or once.all():
        return compress_rows(x, rec, T)
    (u0,), w0, inv0 = compress_rows(T[once])
    (u1x, u1r, u1T), w1, inv1 = compress_rows(x[~once], rec[~once], T[~once])
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[once] = inv0
    inverse[~once] = inv1 + len(w0)
    uniques = [np.concatenate([np.zeros(len(w0)), u1x]), np.concatenate([np.zeros(len(w0)), u1r]),
               np.concatenate([u0, u1T])]
    return uniques, np.concatenate([w0, w1]), inverse


def _integer_code(columns) -> np.ndarray | None:
    """One int64 key per row when every column holds whole numbers of modest range (daily data), else None."""
    code = None
    span = 1
    for col in columns:
        col = np.asarray(col)
        if col.dtype.kind not in "fiu" or len(col) == 0:
            return None
        lo, hi = col.min(), col.max()
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= 2**31:
            return None
        k = int(hi - lo) + 1
        span *= k
        if span >= 2**62:
            return None
        shifted = col - lo
        as_int = shifted.astype(np.int64)
        if col.dtype.kind == "f" and not np.array_equal(as_int, shifted):
            return None
        code = as_int if code is None else code * k + as_int
    return code


# ----------------------------------------------------------------------------------------------------------
# Objectives (negative mean log-likelihood per customer + penalizer, in log-parameters)
# ----------------------------------------------------------------------------------------------------------
class _BGObjective:
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
        ix, self.ux = _factorize(x)
        iT, self.uT = _factorize(T)
        iR, self.uR = _factorize(rec)
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


class _ParetoObjective:
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
        self.iT, self.uT = _factorize(T)
        self.iR, self.uR = _factorize(rec)
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


class _GGObjective:
    """Gamma-Gamma objective with analytic gradient, as lifetimes' ``GammaGammaFitter._negative_log_likelihood``."""

    def __init__(self, x, m, w):
        x = np.asarray(x, dtype=float)
        m = np.asarray(m, dtype=float)
        w = np.asarray(w, dtype=float)
        self.x, self.m, self.w = x, m, w
        self.W = w.sum()
        self.wx = w * x
        ix, self.ux = _factorize(x)
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


def _factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values (first-seen order) of a 1-D array, by hashing."""
    codes, uniques = pd.factorize(np.asarray(values), sort=False)
    return codes.astype(np.intp, copy=False), np.asarray(uniques, dtype=float)


def _minimize(objective, x0, *, analytic: bool, tol: float, max_iter: int, hess_inv0=None) -> dict:
    """Run BFGS in log-parameters and summarise the outcome (never raises for numerical trouble)."""
    options = {"gtol": tol, "maxiter": max_iter}
    if hess_inv0 is not None:
        options["hess_inv0"] = hess_inv0
    with np.errstate(all="ignore"):
        res = optimize.minimize(objective, x0, jac=True if analytic else "2-point", method="BFGS", options=options)
    grad = getattr(res, "jac", None)
    grad = np.full(len(x0), np.nan) if grad is None else np.asarray(grad, dtype=float)
    grad_norm = float(np.max(np.abs(grad))) if np.all(np.isfinite(grad)) else float("inf")
    # BFGS often stops with "precision loss" at the optimum; accept it when the gradient is (near) zero.
    grad_ok = 1e-6 if analytic else 1e-4
    converged = bool(np.isfinite(res.fun) and (res.success or grad_norm < grad_ok))
    return {"x": np.asarray(res.x, dtype=float), "fun": float(res.fun), "converged": converged,
            "n_iter": int(getattr(res, "nit", -1)), "n_eval": int(getattr(res, "nfev", -1)),
            "grad_norm": grad_norm, "message": str(res.message), "hess_inv": getattr(res, "hess_inv", None)}


#: Above this many unique rows, the optimiser first runs on a subsample of about this many rows and the full fit
#: starts from that optimum and its inverse Hessian (a handful of full iterations instead of ~30).
WARM_START_ROWS = 30_000


def _inverse_hessian(objective, theta, eps: float = 1e-5) -> np.ndarray | None:
    """Inverse of the central finite-difference Hessian of an analytic-gradient objective (None unless PD)."""
    k = len(theta)
    cols = [(objective(theta + eps * e)[1] - objective(theta - eps * e)[1]) / (2 * eps) for e in np.eye(k)]
    hess = np.array(cols)
    hess = (hess + hess.T) / 2
    if not np.all(np.isfinite(hess)):
        return None
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return None
    inv = np.linalg.inv(hess)
    return (inv + inv.T) / 2


def _inverse_hessian_from_values(objective, theta, eps: float = 1e-4) -> np.ndarray | None:
    """Inverse of the central finite-difference Hessian of a value-only objective (None unless PD)."""
    k = len(theta)
    f0 = objective(theta)
    E = np.eye(k) * eps
    hess = np.empty((k, k))
    for i in range(k):
        hess[i, i] = (objective(theta + 2 * E[i]) - 2 * f0 + objective(theta - 2 * E[i])) / (4 * eps**2)
        for j in range(i):
            hess[i, j] = hess[j, i] = (objective(theta + E[i] + E[j]) - objective(theta + E[i] - E[j])
                                       - objective(theta - E[i] + E[j]) + objective(theta - E[i] - E[j])) / (4 * eps**2)
    if not np.all(np.isfinite(hess)):
        return None
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return None
    inv = np.linalg.inv(hess)
    return (inv + inv.T) / 2


def _fit_warm(build, rows: tuple, w: np.ndarray, x0, *, penalizer: float, analytic: bool, tol: float,
              max_iter: int) -> dict:
    """Minimise ``build(rows, w)`` from ``x0``; with many rows, warm-start from a fixed-seed subsample fit.

    The subsample thins the customer counts binomially (seed 0, so fits are reproducible); it only moves the
    starting point, the optimum is that of the full objective (same gradient tolerance).
    """
    obj = build(rows, w)
    obj.penalizer = penalizer
    warm = None
    if len(w) > 2 * WARM_START_ROWS:
        rng = np.random.default_rng(0)
        w_sub = rng.binomial(w, min(1.0, WARM_START_ROWS / len(w)))
        sel = w_sub > 0
        if sel.sum() >= 100:
            sub = build(tuple(r[sel] for r in rows), w_sub[sel])
            sub.penalizer = penalizer
            warm = _minimize(sub, x0, analytic=analytic, tol=max(tol, 1e-6), max_iter=max_iter)
    if warm is not None and np.all(np.isfinite(warm["x"])) and np.isfinite(warm["fun"]):
        hess = _inverse_hessian(sub, warm["x"]) if analytic else _inverse_hessian_from_values(sub, warm["x"])
        if hess is None:
            hess = warm["hess_inv"]
            hess = hess if isinstance(hess, np.ndarray) and np.all(np.isfinite(hess)) else None
        try:
            res = _minimize(obj, warm["x"], analytic=analytic, tol=tol, max_iter=max_iter, hess_inv0=hess)
        except ValueError:  # inverse Hessian not positive definite
            res = _minimize(obj, warm["x"], analytic=analytic, tol=tol, max_iter=max_iter)
        if res["converged"]:
            res["warm_start"] = {"rows": int((w_sub > 0).sum()), "n_iter": warm["n_iter"]}
            return res
    return _minimize(obj, x0, analytic=analytic, tol=tol, max_iter=max_iter)


# ----------------------------------------------------------------------------------------------------------
# Closed-form predictions (natural parameters, original time units)
# ----------------------------------------------------------------------------------------------------------
def _lifetimes_fitter(model: str, params: dict):
    """A lifetimes fitter carrying ``params`` (no data), used for its closed-form conditional expressions."""
    from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

    cls = {"bg_nbd": BetaGeoFitter, "mbg_nbd": ModifiedBetaGeoFitter, "pareto_nbd": ParetoNBDFitter}[model]
    fitter = cls()
    fitter.params_ = pd.Series({k: float(params[k]) for k in MODEL_PARAMS[model]})
    return fitter


def _p_alive(model: str, params: dict, x, rec, T) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if model == "pareto_nbd":
        prm = [params[k] for k in MODEL_PARAMS[model]]
        alive, total = _ParetoObjective(x, rec, T, np.ones(len(x))).log_terms(prm)
        return np.minimum(np.exp(alive - total), 1.0)
    fitter = _lifetimes_fitter(model, params)
    return np.asarray(fitter.conditional_probability_alive(x, rec, T), dtype=float) * np.ones_like(x, dtype=float)


def _expected_orders(model: str, params: dict, t: float, x, rec, T) -> np.ndarray:
    if model == "pareto_nbd":
        return _pareto_expected_orders(params, t, x, rec, T)
    return _bg_expected_orders(params, t, x, rec, T, modified=model == "mbg_nbd")


def _pareto_expected_orders(params: dict, t: float, x, rec, T) -> np.ndarray:
    """Pareto/NBD conditional expected orders in ``(T, T + t]`` (Hardie's note 009, eq. 41).

    ``P(alive) * (r + x) / (alpha + T) * (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))``,
    the same expression as lifetimes but built on the overflow-safe P(alive) and continuous at ``s = 1``.
    """
    r, al, s, be = (params[k] for k in MODEL_PARAMS["pareto_nbd"])
    x = np.asarray(x, dtype=float)
    T = np.asarray(T, dtype=float)
    pa = _p_alive("pareto_nbd", params, x, rec, T)
    log_ratio = np.log(be + T) - np.log(be + T + t)  # < 0
    if abs(s - 1.0) > 1e-10:
        life = -np.expm1((s - 1.0) * log_ratio) / (s - 1.0)
    else:
        life = -log_ratio
    return pa * (r + x) / (al + T) * (be + T) * life


def _bg_expected_orders(params: dict, t: float, x, rec, T, *, modified: bool) -> np.ndarray:
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


def _p_no_purchase(model: str, params: dict, t: float, x, rec, T) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    T = np.asarray(T, dtype=float)
    r, al = params["r"], params["alpha"]
    pa = _p_alive(model, params, x, rec, T)
    if model == "pareto_nbd":
        return 1.0 - pa + pa * _pareto_p_quiet_if_alive(params, t, x, T)
    return 1.0 - pa + pa * ((al + T) / (al + T + t)) ** (r + x)


def _pareto_p_quiet_if_alive(params: dict, t: float, x, T, *, nodes: int = 48,
                             chunk: int = 100_000) -> np.ndarray:
    """Pareto/NBD: P(no order in ``(T, T + t]`` | alive at ``T``, history).

    Given alive, ``lambda ~ Gamma(r + x, alpha + T)`` and ``mu ~ Gamma(s, beta + T)`` independently; there is no
    order when none happens before ``t`` while alive, or death comes first:
    ``E[exp(-(lambda + mu) t)] + E[int_0^t mu exp(-(lambda + mu) u) du]``, i.e.
    ``A(t) B(t) + int_0^t s / (beta + T + u) A(u) B(u) du`` with ``A(u) = ((alpha + T) / (alpha + T + u)) ** (r + x)``,
    ``B(u) = ((beta + T) / (beta + T + u)) ** s``. The integral is computed by Gauss-Legendre quadrature in
    ``y = log(1 + u / c)``, ``c = min(alpha, beta) + T`` (the integrand is smooth and decays like a power law).
    """
    r, al, s, be = (params[k] for k in MODEL_PARAMS["pareto_nbd"])
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


# ----------------------------------------------------------------------------------------------------------
# Fit checks
# ----------------------------------------------------------------------------------------------------------
def check_fit(model: str, params: dict, x, rec, T, w, *, min_param: float = 1e-3,
              horizon_days: float = 365.0, max_rate_ratio: float = 10.0) -> list[str]:
    """Reasons why a fitted transaction model is degenerate (empty list when it looks sane).

    Parameters
    ----------
    model : {"bg_nbd", "mbg_nbd", "pareto_nbd"}
    params : dict
        Natural parameters in the data's time unit.
    x, rec, T, w : numpy.ndarray
        Training rows (unique rows and their weights).
    min_param : float
        Shape parameters (``r, a, b`` or ``r, s``) below this are "at the bound": the likelihood ran off to
        the boundary (e.g. BG/NBD's ``a, b -> 0``) and the predictions are unreliable.
    horizon_days : float
        Horizon of the prediction checks.
    max_rate_ratio : float
        Predictions are "absurd" when the mean expected orders per customer over ``horizon_days`` exceed
        ``max_rate_ratio`` times the observed repeat-purchase rate (``sum(x) / sum(T)``) over the same horizon,
        or one customer's expected orders exceed ``max_rate_ratio`` times the fastest observed rate
        (``max((x + 1) / (T + 1))``) over the horizon.

    Returns
    -------
    list of str
    """
    reasons = []
    values = np.array([params[k] for k in MODEL_PARAMS[model]], dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        return [f"non-finite or non-positive parameters {_fmt(params)}"]
    low = [k for k in SHAPE_PARAMS[model] if params[k] < min_param]
    if low:
        reasons.append(f"parameters at the bound: {', '.join(f'{k}={params[k]:.3g}' for k in low)} < {min_param:g}")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pa = _p_alive(model, params, x, rec, T)
        eo = _expected_orders(model, params, horizon_days, x, rec, T)
    if not np.all(np.isfinite(pa)) or np.any(pa < -1e-9) or np.any(pa > 1 + 1e-9):
        reasons.append(f"p_alive outside [0, 1] or non-finite on {int(np.sum(~((pa >= -1e-9) & (pa <= 1 + 1e-9))))} rows")
    bad = ~np.isfinite(eo) | (eo < -1e-9)
    if bad.any():
        reasons.append(f"expected orders negative or non-finite on {int(bad.sum())} training rows")
    else:
        observed = (w @ x) / max(w @ T, 1e-12) * horizon_days
        mean_pred = (w @ eo) / w.sum()
        if mean_pred > max_rate_ratio * max(observed, 1e-12):
            reasons.append(f"mean expected orders in {horizon_days:g} days {mean_pred:.3g} > {max_rate_ratio:g} x "
                           f"observed {observed:.3g}")
        cap = max_rate_ratio * horizon_days * float(np.max((x + 1.0) / (T + 1.0)))
        if np.max(eo) > cap:
            reasons.append(f"expected orders explode: max {np.max(eo):.3g} > {cap:.3g}")
    return reasons


def _fmt(params: dict) -> str:
    return "{" + ", ".join(f"{k}={v:.4g}" for k, v in params.items()) + "}"


def _warning_texts(caught) -> list[str]:
    seen = []
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text not in seen:
            seen.append(text)
    return seen[:10]


# ----------------------------------------------------------------------------------------------------------
# Estimator
# ----------------------------------------------------------------------------------------------------------
class BTYDModel(BaseEstimator):
    """BG/NBD-family transaction model + Gamma-Gamma spend model, fitted on unique rows with fallbacks.

    Parameters
    ----------
    chain : sequence of (str, float)
        Options tried in order until one passes :func:`check_fit`: ``(model, penalizer)`` with model in
        ``"bg_nbd"``, ``"pareto_nbd"``, ``"mbg_nbd"`` and the lifetimes-style L2 penalizer coefficient.
    gg_penalizers : sequence of float
        Penalizers tried in order for the Gamma-Gamma model.
    fit_spend : bool
        Fit the Gamma-Gamma model (needs ``monetary_value``); required for the spend predictions.
    min_param : float
        Shape parameters below this count as degenerate (see :func:`check_fit`).
    check_horizon_days : float
        Horizon of the prediction sanity checks at fit time.
    max_rate_ratio : float
        Tolerance of the "absurd predictions" check (see :func:`check_fit`).
    tol : float
        Gradient tolerance of the optimiser (mean negative log-likelihood per customer, log-parameters).
    max_iter : int
        Optimiser iteration limit per attempt.
    random_state : int
        Default seed of the posterior simulation (:meth:`spend_quantiles`) when none is passed.

    Attributes
    ----------
    model_name_ : str
        Transaction model kept (``"bg_nbd"``, ``"pareto_nbd"`` or ``"mbg_nbd"``).
    penalizer_ : float
    params_ : dict
        Natural parameters in days (BG/NBD and MBG/NBD: ``r, alpha, a, b``; Pareto/NBD: ``r, alpha, s, beta``).
    gg_params_ : dict or None
        Gamma-Gamma ``p, q, v`` (``None`` when ``fit_spend=False``).
    gg_penalizer_ : float or None
    fit_log_ : list of dict
        One dict per attempt: ``model``, ``penalizer``, ``status`` (``"ok"``, ``"rejected"``, ``"error"``),
        ``reason``, ``params``, ``neg_log_likelihood``, ``converged``, ``n_iter``, ``seconds``, ``warnings``.
    n_customers_ : int
        Rows used by the transaction fit (rows with NaN summaries are excluded).
    n_unique_rows_ : int
        Distinct ``(frequency, recency, T)`` rows the transaction fit ran on.
    n_excluded_ : int
        Rows excluded because ``frequency``, ``recency`` or ``T`` is NaN.
    n_repeat_buyers_ : int
        Rows used by the Gamma-Gamma fit (``frequency > 0`` and ``monetary_value > 0``).
    gg_n_unique_rows_ : int
        Distinct ``(frequency, monetary_value)`` rows of the Gamma-Gamma fit.

    Examples
    --------
    >>> from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value
    >>> data = load_cdnow_summary_data_with_monetary_value()
    >>> model = BTYDModel().fit(data)
    >>> round(model.params_["r"], 3), model.model_name_
    (0.243, 'bg_nbd')
    >>> model.predict_frame(data, 39).columns.tolist()[:3]
    ['p_alive', 'expected_orders', 'p_purchase']
    """

    def __init__(
        self,
        chain: Sequence[tuple[str, float]] = DEFAULT_CHAIN,
        *,
        gg_penalizers: Sequence[float] = DEFAULT_GG_PENALIZERS,
        fit_spend: bool = True,
        min_param: float = 1e-3,
        check_horizon_days: float = 365.0,
        max_rate_ratio: float = 10.0,
        tol: float = 1e-9,
        max_iter: int = 1000,
        random_state: int = 0,
    ):
        self.chain = chain
        self.gg_penalizers = gg_penalizers
        self.fit_spend = fit_spend
        self.min_param = min_param
        self.check_horizon_days = check_horizon_days
        self.max_rate_ratio = max_rate_ratio
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, data: pd.DataFrame, y=None) -> BTYDModel:
        """Fit the first option of ``chain`` that passes the checks, then the Gamma-Gamma model.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T`` (days) and, when ``fit_spend``, ``monetary_value``.
            Rows with NaN in ``frequency``, ``recency`` or ``T`` (people without a paid order) are excluded.
        y : None
            Ignored (unsupervised).

        Returns
        -------
        BTYDModel
            ``self``.

        Raises
        ------
        BTYDFitError
            When no option passes (``.fit_log`` lists the attempts), or the data cannot support a model
            (no rows, no repeat purchases, every ``T`` zero).
        ValueError
            When the inputs are malformed (missing columns, ``recency > T``, negative or non-integer
            frequency, ...).
        """
        with threadpool_limits(limits=1, user_api="blas"):  # BLAS threads only slow the 1-D dot products down
            return self._fit(data)

    def _fit(self, data: pd.DataFrame) -> BTYDModel:
        chain = [(str(m), float(p)) for m, p in self.chain]
        unknown = sorted({m for m, _ in chain} - set(MODEL_PARAMS))
        if not chain or unknown:
            raise ValueError(f"chain must list (model, penalizer) with model in {sorted(MODEL_PARAMS)}; got {unknown or 'nothing'}")
        x, rec, T, keep = _rfm_arrays(data, require_monetary=self.fit_spend)
        self.fit_log_: list[dict] = []
        self.n_excluded_ = int((~keep).sum())
        self.n_customers_ = int(keep.sum())
        (ux, urec, uT), w, _ = _compress_rfm(x[keep], rec[keep], T[keep])
        self.n_unique_rows_ = len(w)
        if self.n_customers_ == 0:
            raise BTYDFitError(f"no rows with a paid order to fit on ({self.n_excluded_} rows excluded for NaN)", self.fit_log_)
        if not np.any(ux > 0):
            raise BTYDFitError(f"no repeat purchases among {self.n_customers_} customers: a BTYD model is not identified",
                               self.fit_log_)
        if not uT.max() > 0:
            raise BTYDFitError("every customer has T = 0: no observation time to fit on", self.fit_log_)
        scale = 1.0 / float(uT.max())  # lifetimes' _scale_time
        rows = (ux, urec * scale, uT * scale)
        chosen = None
        for model, penalizer in chain:
            entry = {"model": model, "penalizer": penalizer}
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if model == "pareto_nbd":
                        res = _fit_warm(lambda rows, wt: _ParetoObjective(*rows, wt), rows, w, np.zeros(4),
                                        penalizer=penalizer, analytic=False, tol=1e-6, max_iter=self.max_iter)
                    else:  # lifetimes' starting point: 0.1 in log-parameters
                        modified = model == "mbg_nbd"
                        res = _fit_warm(lambda rows, wt, m=modified: _BGObjective(*rows, wt, modified=m), rows, w,
                                        np.full(4, 0.1), penalizer=penalizer, analytic=True, tol=self.tol,
                                        max_iter=self.max_iter)
                    params = dict(zip(MODEL_PARAMS[model], np.exp(res["x"]).tolist(), strict=True))
                    params["alpha"] /= scale
                    if model == "pareto_nbd":
                        params["beta"] /= scale
                    entry.update(params=params, neg_log_likelihood=res["fun"], converged=res["converged"],
                                 n_iter=res["n_iter"], warm_start=res.get("warm_start"))
                    reasons = [] if res["converged"] else [f"no convergence ({res['message']}, |grad| {res['grad_norm']:.2g})"]
                    reasons += check_fit(model, params, ux, urec, uT, w, min_param=self.min_param,
                                         horizon_days=self.check_horizon_days, max_rate_ratio=self.max_rate_ratio)
                    entry.update(status="rejected" if reasons else "ok", reason="; ".join(reasons))
                except Exception as exc:  # noqa: BLE001 - a fit attempt must never crash training
                    entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            entry.update(seconds=round(time.perf_counter() - start, 4), warnings=_warning_texts(caught))
            self.fit_log_.append(entry)
            if entry["status"] == "ok":
                chosen = entry
                break
        if chosen is None:
            raise BTYDFitError(
                "every BTYD option failed: " + " | ".join(f"{e['model']}(penalizer={e['penalizer']:g}): {e['reason']}"
                                                          for e in self.fit_log_),
                self.fit_log_,
            )
        self.model_name_ = chosen["model"]
        self.penalizer_ = chosen["penalizer"]
        self.params_ = dict(chosen["params"])
        self.gg_params_ = None
        self.gg_penalizer_ = None
        self.n_repeat_buyers_ = 0
        self.gg_n_unique_rows_ = 0
        if self.fit_spend:
            self._fit_gamma_gamma(data, keep)
        return self

    def _fit_gamma_gamma(self, data: pd.DataFrame, keep: np.ndarray) -> None:
        freq = data["frequency"].to_numpy(dtype=float)
        mon = data["monetary_value"].to_numpy(dtype=float)
        sel = keep & (freq > 0) & np.isfinite(mon) & (mon > 0)
        self.n_repeat_buyers_ = int(sel.sum())
        if self.n_repeat_buyers_ < 2:
            raise BTYDFitError(f"Gamma-Gamma needs repeat buyers with monetary_value > 0; found {self.n_repeat_buyers_}",
                               self.fit_log_)
        (gx, gm), gw, _ = compress_rows(freq[sel], mon[sel])
        self.gg_n_unique_rows_ = len(gw)
        def build_gg(rows, wt):
            return _GGObjective(*rows, wt)

        mean_m = float(gw @ gm / gw.sum())
        for penalizer in self.gg_penalizers:
            entry = {"model": "gamma_gamma", "penalizer": float(penalizer)}
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = _fit_warm(build_gg, (gx, gm), gw, np.full(3, 0.1), penalizer=float(penalizer),
                                    analytic=True, tol=self.tol, max_iter=self.max_iter)
                    if not res["converged"]:  # retry from a data-driven start (p=1, q=2: mean spend = v)
                        res = _fit_warm(build_gg, (gx, gm), gw, np.log([1.0, 2.0, mean_m]), penalizer=float(penalizer),
                                        analytic=True, tol=self.tol, max_iter=self.max_iter)
                    params = dict(zip(GG_PARAMS, np.exp(res["x"]).tolist(), strict=True))
                    entry.update(params=params, neg_log_likelihood=res["fun"], converged=res["converged"],
                                 n_iter=res["n_iter"], warm_start=res.get("warm_start"))
                    reasons = [] if res["converged"] else [f"no convergence ({res['message']})"]
                    reasons += _check_gg(params, mean_m, min_param=self.min_param, max_ratio=self.max_rate_ratio)
                    entry.update(status="rejected" if reasons else "ok", reason="; ".join(reasons))
                except Exception as exc:  # noqa: BLE001
                    entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            entry.update(seconds=round(time.perf_counter() - start, 4), warnings=_warning_texts(caught))
            self.fit_log_.append(entry)
            if entry["status"] == "ok":
                self.gg_params_ = dict(entry["params"])
                self.gg_penalizer_ = float(penalizer)
                return
        raise BTYDFitError(
            "every Gamma-Gamma option failed: " + " | ".join(
                f"penalizer={e['penalizer']:g}: {e['reason']}" for e in self.fit_log_ if e["model"] == "gamma_gamma"),
            self.fit_log_,
        )

    # ------------------------------------------------------------------ predictions
    def _unique_predict(self, data: pd.DataFrame, func) -> np.ndarray:
        """Evaluate ``func(x, rec, T)`` on the distinct summary rows of ``data``; NaN for excluded rows."""
        check_is_fitted(self, "params_")
        x, rec, T, keep = _rfm_arrays(data, require_monetary=False)
        out = np.full(len(data), np.nan)
        if keep.any():
            (ux, urec, uT), _, inv = _compress_rfm(x[keep], rec[keep], T[keep])
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vals = np.asarray(func(ux, urec, uT), dtype=float)
            out[keep] = vals[inv]
        return out

    def p_alive(self, data: pd.DataFrame) -> np.ndarray:
        """Probability that each customer is still active at the end of the observation period.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``; rows with NaN get NaN.

        Returns
        -------
        numpy.ndarray
        """
        return self._unique_predict(data, lambda x, r, T: _p_alive(self.model_name_, self.params_, x, r, T))

    def expected_orders(self, data: pd.DataFrame, t: float) -> np.ndarray:
        """Expected number of orders in the next ``t`` days (the period ``(T, T + t]``).

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``; rows with NaN get NaN.
        t : float
            Horizon in days.

        Returns
        -------
        numpy.ndarray
        """
        t = _check_horizon(t)
        return self._unique_predict(
            data, lambda x, r, T: np.maximum(_expected_orders(self.model_name_, self.params_, t, x, r, T), 0.0))

    def p_no_purchase(self, data: pd.DataFrame, t: float) -> np.ndarray:
        """Probability of no order in the next ``t`` days given the history.

        BG/NBD and MBG/NBD: ``1 - p_alive + p_alive * ((alpha + T) / (alpha + T + t)) ** (r + x)`` — a dead
        customer never buys; an active one (posterior purchase rate ``Gamma(r + x, alpha + T)``) has no order in
        ``t`` days with that probability (dropout only happens after an order). Pareto/NBD: lifetimes'
        ``conditional_probability_of_n_purchases_up_to_time(0, ...)`` (Hardie note 028), which also accounts for
        dying during the horizon.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``; rows with NaN get NaN.
        t : float
            Horizon in days.

        Returns
        -------
        numpy.ndarray
        """
        t = _check_horizon(t)
        return self._unique_predict(
            data, lambda x, r, T: np.clip(_p_no_purchase(self.model_name_, self.params_, t, x, r, T), 0.0, 1.0))

    def expected_order_value(self, data: pd.DataFrame) -> np.ndarray:
        """Gamma-Gamma conditional expected spend per order.

        ``(1 - w) * population_mean + w * monetary_value`` with ``w = p x / (p x + q - 1)`` and
        ``population_mean = v p / (q - 1)``; one-time buyers (``frequency == 0``, or ``monetary_value`` missing
        or not positive) get the population mean.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency`` and ``monetary_value``; rows with NaN ``frequency`` get NaN.

        Returns
        -------
        numpy.ndarray
        """
        p, q, v = self._gg()
        x, m, valid = self._gg_inputs(data)
        weight = np.where(valid, p * x / (p * x + q - 1), 0.0)
        pop = v * p / (q - 1)
        out = (1 - weight) * pop + weight * np.where(valid, m, 0.0)
        out[np.isnan(x)] = np.nan
        return out

    def expected_spend(self, data: pd.DataFrame, t: float) -> np.ndarray:
        """Expected spend in the next ``t`` days: expected orders x Gamma-Gamma expected spend per order.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``, ``monetary_value``.
        t : float
            Horizon in days.

        Returns
        -------
        numpy.ndarray
        """
        return self.expected_orders(data, t) * self.expected_order_value(data)

    def days_to_next_order(self, data: pd.DataFrame, *, min_p_alive: float = 0.05,
                           max_days: float = 730.0) -> np.ndarray:
        """Typical waiting time in days until the next order of a customer who is still active.

        For an active customer the posterior purchase rate is ``lambda ~ Gamma(r + x, alpha + T)`` and the
        waiting time ``W | lambda ~ Exponential(lambda)``, so ``P(W > w) = ((alpha + T) / (alpha + T + w)) **
        (r + x)``. Its mean ``(alpha + T) / (r + x - 1)`` is infinite for ``r + x <= 1`` (most one-time buyers)
        and dominated by the tail otherwise, so the *median* ``(alpha + T) * (2 ** (1 / (r + x)) - 1)`` is
        reported. NaN when ``p_alive < min_p_alive`` (probably gone: no date is meaningful) or the median exceeds
        ``max_days``. For Pareto/NBD the customer may also die before that order; the value is conditional on
        surviving.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``.
        min_p_alive : float
            Below this P(alive) the result is NaN.
        max_days : float
            Waiting times above this are NaN.

        Returns
        -------
        numpy.ndarray
        """
        r, al = self.params_["r"], self.params_["alpha"]
        model, params = self.model_name_, self.params_

        def func(x, rec, T):
            w = (al + T) * (2.0 ** (1.0 / (r + x)) - 1.0)
            pa = _p_alive(model, params, x, rec, T)
            return np.where((pa >= min_p_alive) & (w <= max_days), w, np.nan)

        return self._unique_predict(data, func)

    def expected_next_order_date(self, data: pd.DataFrame, as_of, *, min_p_alive: float = 0.05,
                                 max_days: float = 730.0) -> pd.Series:
        """Date of the next order: ``as_of`` + :meth:`days_to_next_order` (rounded down to whole days).

        ``T`` is measured to the day before ``as_of`` (the last observed day), so a waiting time of ``w`` days
        lands on ``as_of + floor(w)``. ``NaT`` where :meth:`days_to_next_order` is NaN (``p_alive <
        min_p_alive`` or more than ``max_days`` away).

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``.
        as_of : date-like
            First day after the observation period.
        min_p_alive, max_days : float
            See :meth:`days_to_next_order`.

        Returns
        -------
        pandas.Series
            ``datetime64`` indexed like ``data``.
        """
        days = self.days_to_next_order(data, min_p_alive=min_p_alive, max_days=max_days)
        base = pd.Timestamp(as_of).normalize()
        delta = pd.to_timedelta(np.floor(days), unit="D")
        return pd.Series(base + delta, index=data.index, name="expected_next_order_date")

    def spend_quantiles(self, data: pd.DataFrame, t: float, *, levels: Sequence[float] = (0.1, 0.9),
                        n_draws: int = 500, random_state: int | None = None,
                        max_chunk_elements: int = 4_000_000) -> pd.DataFrame:
        """Quantiles of the spend in the next ``t`` days by posterior simulation.

        The posterior predictive spend of a customer is ``S = 0`` with probability ``1 - p_alive`` (gone) and
        otherwise ``S = c * R``, where draws of ``R`` for a customer alive at ``T`` are simulated as

        1. purchase rate ``lambda ~ Gamma(r + x, rate = alpha + T)``;
        2. orders ``N``: BG/NBD: dropout probability ``p ~ Beta(a, b + x)`` (MBG/NBD: ``Beta(a, b + x + 1)``),
           orders until dropout ``K ~ Geometric(p)``, ``N = min(Poisson(lambda t), K)``; Pareto/NBD: dropout
           rate ``mu ~ Gamma(s, rate = beta + T)``, lifetime ``tau ~ Exponential(mu)``,
           ``N ~ Poisson(lambda * min(t, tau))``;
        3. spend: the Gamma-Gamma posterior of the customer's spend rate ``nu ~ Gamma(p x + q, rate = v + x m)``
           (one-time buyers: the prior ``Gamma(q, rate = v)``); ``N`` orders of ``Gamma(p, rate = nu)`` each sum
           to ``Gamma(N p, rate = nu)``, i.e. ``S = (v + x m) * G_N / G_nu`` with standard gamma variables
           ``G_N ~ Gamma(N p)``, ``G_nu ~ Gamma(p x + q)``. So ``c = v + x m`` (``v`` for one-time buyers) and
           ``R = G_N / G_nu``.

        The distribution of ``R`` depends on ``(x, T)`` and whether the customer has a usable
        ``monetary_value`` only, so ``n_draws`` draws are simulated once per distinct such key (vectorised, in
        chunks of at most ``max_chunk_elements`` draws) and summarised on a grid of 201 quantile levels. A
        customer's quantile at level ``l`` is then exact in the mixture and the scale: 0 when
        ``l <= 1 - p_alive``, else ``c * Q_R((l - (1 - p_alive)) / p_alive)`` (``Q_R`` interpolated on the grid).
        The simulated mean equals :meth:`expected_spend` up to Monte-Carlo error. The spend distribution has
        an atom at 0 (gone, or alive without an order), so when ``P(S = 0) >= 0.1`` the 10% quantile is 0 and
        ``[q0.1, q0.9]`` holds at least 90% of the probability, not 80%: interval coverage measured on real
        outcomes is expected to exceed the nominal level for low-activity customers.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T``, ``monetary_value``.
        t : float
            Horizon in days.
        levels : sequence of float
            Quantile levels in (0, 1).
        n_draws : int
            Draws per distinct ``(frequency, T)`` key.
        random_state : int, optional
            Seed (``numpy.random.default_rng``); defaults to the estimator's ``random_state``.
        max_chunk_elements : int
            Memory bound of one vectorised chunk.

        Returns
        -------
        pandas.DataFrame
            One column per level named ``q<level>`` (e.g. ``q0.1``), indexed like ``data``; NaN for rows with
            NaN summaries.
        """
        t = _check_horizon(t)
        levels = [float(lv) for lv in levels]
        if not levels or any(not 0 < lv < 1 for lv in levels):
            raise ValueError(f"levels must lie in (0, 1); got {levels}")
        if int(n_draws) < 1:
            raise ValueError(f"n_draws must be >= 1; got {n_draws}")
        n_draws = int(n_draws)
        p_gg, q_gg, v_gg = self._gg()
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        x, rec, T, keep = _rfm_arrays(data, require_monetary=False)
        pa = self.p_alive(data)
        gx, gm, valid = self._gg_inputs(data)
        scale = np.where(valid, v_gg + gx * np.where(valid, gm, 0.0), v_gg)
        result = np.full((len(data), len(levels)), np.nan)
        if keep.any():
            (kx, kT, kvalid), _, inv = compress_rows(x[keep], T[keep], valid[keep].astype(float))
            shape = np.where(kvalid > 0, p_gg * kx + q_gg, q_gg)
            grid = np.linspace(0.0, 1.0, 201)
            qgrid = np.empty((len(kx), len(grid)))
            chunk = max(1, int(max_chunk_elements) // n_draws)
            for lo in range(0, len(kx), chunk):
                sl = slice(lo, lo + chunk)
                draws = _simulate_alive_ratio(self.model_name_, self.params_, p_gg, kx[sl], kT[sl], shape[sl], t,
                                              n_draws, rng)
                draws.sort(axis=1)
                pos = grid * (n_draws - 1)  # numpy's default ("linear") quantile definition
                below = np.floor(pos).astype(np.int64)
                above = np.minimum(below + 1, n_draws - 1)
                qgrid[sl] = draws[:, below] * (1.0 - (pos - below)) + draws[:, above] * (pos - below)
            pa_k, scale_k = pa[keep], scale[keep]
            for j, lv in enumerate(levels):
                with np.errstate(divide="ignore", invalid="ignore"):
                    inner = np.clip((lv - (1.0 - pa_k)) / pa_k, 0.0, 1.0)
                pos = inner * (len(grid) - 1)
                below = np.minimum(np.floor(pos).astype(np.int64), len(grid) - 2)
                frac = pos - below
                q = qgrid[inv, below] * (1.0 - frac) + qgrid[inv, below + 1] * frac
                result[keep, j] = np.where(lv <= 1.0 - pa_k, 0.0, q * scale_k)
        return pd.DataFrame(result, index=data.index, columns=[f"q{lv:g}" for lv in levels])

    def predict_frame(self, data: pd.DataFrame, horizon_days: float, *, as_of=None, random_state: int | None = 0,
                      with_intervals: bool = True, n_draws: int = 500) -> pd.DataFrame:
        """All per-customer predictions for a horizon, indexed like ``data``.

        Parameters
        ----------
        data : pandas.DataFrame
            Columns ``frequency``, ``recency``, ``T`` and (for the spend columns) ``monetary_value``.
        horizon_days : float
            Horizon ``t`` in days.
        as_of : date-like, optional
            First day after the observation period; ``expected_next_order_date`` is ``NaT`` without it.
        random_state : int, optional
            Seed of the interval simulation.
        with_intervals : bool
            Compute ``spend_p10`` / ``spend_p90`` (posterior simulation, the slow part); omitted when False.
        n_draws : int
            Draws per distinct ``(frequency, T)`` key of the simulation (see :meth:`spend_quantiles`).

        Returns
        -------
        pandas.DataFrame
            ``p_alive``, ``expected_orders``, ``p_purchase`` (= 1 - P(no purchase)), ``expected_spend``,
            ``spend_p10``, ``spend_p90`` (when ``with_intervals``), ``days_to_next_order``,
            ``expected_next_order_date``. Spend columns need the Gamma-Gamma model (``fit_spend=True``).
        """
        check_is_fitted(self, "params_")
        out = pd.DataFrame(index=data.index)
        out["p_alive"] = self.p_alive(data)
        out["expected_orders"] = self.expected_orders(data, horizon_days)
        out["p_purchase"] = 1.0 - self.p_no_purchase(data, horizon_days)
        if self.gg_params_ is not None:
            out["expected_spend"] = out["expected_orders"].to_numpy() * self.expected_order_value(data)
            if with_intervals:
                qs = self.spend_quantiles(data, horizon_days, levels=(0.1, 0.9), n_draws=n_draws,
                                          random_state=random_state)
                out["spend_p10"] = qs.iloc[:, 0].to_numpy()
                out["spend_p90"] = qs.iloc[:, 1].to_numpy()
        out["days_to_next_order"] = self.days_to_next_order(data)
        if as_of is None:
            out["expected_next_order_date"] = pd.Series(pd.NaT, index=data.index, dtype="datetime64[ns]")
        else:
            base = pd.Timestamp(as_of).normalize()
            out["expected_next_order_date"] = base + pd.to_timedelta(np.floor(out["days_to_next_order"].to_numpy()),
                                                                     unit="D")
        return out

    # ------------------------------------------------------------------ helpers
    def _gg(self) -> tuple[float, float, float]:
        check_is_fitted(self, "params_")
        if self.gg_params_ is None:
            raise ValueError("spend predictions need the Gamma-Gamma model: fit with fit_spend=True")
        return self.gg_params_["p"], self.gg_params_["q"], self.gg_params_["v"]

    @staticmethod
    def _gg_inputs(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _require_columns(data, ("frequency", "monetary_value"))
        x = data["frequency"].to_numpy(dtype=float)
        m = data["monetary_value"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            valid = (x > 0) & np.isfinite(m) & (m > 0)
        return x, m, valid


def _simulate_alive_ratio(model: str, params: dict, p_gg: float, x, T, shape, t: float, n_draws: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``(len(x), n_draws)`` draws of ``R = G_N / G_nu`` for customers alive at ``T`` (see ``spend_quantiles``)."""
    n = len(x)
    xs, Ts = np.repeat(x, n_draws), np.repeat(T, n_draws)
    lam = rng.standard_gamma(params["r"] + xs) / (params["alpha"] + Ts)
    if model == "pareto_nbd":
        mu = rng.standard_gamma(np.full(len(xs), params["s"])) / (params["beta"] + Ts)
        with np.errstate(divide="ignore"):
            tau = rng.standard_exponential(len(xs)) / mu
        orders = rng.poisson(lam * np.minimum(t, tau))
    else:
        orders = rng.poisson(lam * t)
        # K >= 1 orders until dropout: it only binds where the Poisson count is >= 2, so draw it only there
        many = np.flatnonzero(orders >= 2)
        if len(many):
            extra = 1.0 if model == "mbg_nbd" else 0.0
            g1 = rng.standard_gamma(np.full(len(many), params["a"]))
            g2 = rng.standard_gamma(params["b"] + xs[many] + extra)
            with np.errstate(invalid="ignore"):
                p_drop = np.nan_to_num(g1 / (g1 + g2), nan=1.0)
            k = rng.geometric(np.clip(p_drop, 1e-300, 1.0))
            orders[many] = np.minimum(orders[many], k)
    ratio = np.zeros(len(xs))
    buy = orders > 0
    if buy.any():
        g_n = rng.standard_gamma(orders[buy] * p_gg)
        g_nu = rng.standard_gamma(np.repeat(shape, n_draws)[buy])
        ratio[buy] = g_n / g_nu
    return ratio.reshape(n, n_draws)


def _check_gg(params: dict, mean_m: float, *, min_param: float, max_ratio: float) -> list[str]:
    values = np.array([params[k] for k in GG_PARAMS])
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        return [f"non-finite or non-positive parameters {_fmt(params)}"]
    reasons = []
    low = [k for k in ("p", "q") if params[k] < min_param]
    if low:
        reasons.append(f"parameters at the bound: {', '.join(f'{k}={params[k]:.3g}' for k in low)} < {min_param:g}")
    if params["q"] <= 1:
        reasons.append(f"q={params['q']:.4g} <= 1: the population mean spend per order is infinite")
    else:
        pop = params["v"] * params["p"] / (params["q"] - 1)
        if not (mean_m / max_ratio <= pop <= mean_m * max_ratio):
            reasons.append(f"population mean spend {pop:.4g} is absurd next to the observed mean {mean_m:.4g}")
    return reasons


def _check_horizon(t) -> float:
    t = float(t)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"horizon must be a positive number of days; got {t}")
    return t


def _require_columns(data: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}; BTYD models need {list(RFM_COLUMNS)} (+ monetary_value)")


def _rfm_arrays(data: pd.DataFrame, *, require_monetary: bool):
    """Validated ``frequency, recency, T`` float arrays and the mask of usable (non-NaN) rows."""
    _require_columns(data, RFM_COLUMNS + (("monetary_value",) if require_monetary else ()))
    cols = {}
    for c in RFM_COLUMNS:
        try:
            cols[c] = data[c].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {c!r} must be numeric: {exc}") from exc
    x, rec, T = cols["frequency"], cols["recency"], cols["T"]
    keep = np.isfinite(x) & np.isfinite(rec) & np.isfinite(T)
    checks = [
        ("frequency", (x < 0) | (x != np.round(x)), "must be a non-negative integer"),
        ("recency", rec < 0, "must be >= 0"),
        ("T", T < 0, "must be >= 0"),
        ("recency", rec > T + 1e-9, "must not exceed T"),
        ("recency", (x == 0) & (rec != 0), "must be 0 when frequency is 0"),
    ]
    for column, bad, reason in checks:
        bad = bad & keep
        if bad.any():
            labels = list(data.index[bad][:5])
            raise ValueError(f"column {column!r} {reason}: {int(bad.sum())} row(s), e.g. index {labels}")
    x, rec, T = x[keep], rec[keep], T[keep]
    full = [np.full(len(data), np.nan) for _ in range(3)]
    for arr, vals in zip(full, (x, rec, T), strict=True):
        arr[keep] = vals
    return full[0], full[1], full[2], keep
