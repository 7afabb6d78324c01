"""The optimiser shared by every BTYD model: BFGS in log-parameters, warm-started from a subsample fit.

Objectives are callables of the log-parameters ``theta`` with a ``penalizer`` attribute; *analytic* ones return
``(value, gradient)``, the others the value only (the gradient is taken by finite differences).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

__all__ = ["WARM_START_ROWS", "fit_warm"]


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


def _inverse_if_positive_definite(hess: np.ndarray) -> np.ndarray | None:
    """Symmetrised inverse of a finite, positive definite Hessian (None otherwise)."""
    if not np.all(np.isfinite(hess)):
        return None
    try:
        np.linalg.cholesky(hess)
    except np.linalg.LinAlgError:
        return None
    inv = np.linalg.inv(hess)
    return (inv + inv.T) / 2


def _inverse_hessian(objective, theta, eps: float = 1e-5) -> np.ndarray | None:
    """Inverse of the central finite-difference Hessian of an analytic-gradient objective (None unless PD)."""
    k = len(theta)
    cols = [(objective(theta + eps * e)[1] - objective(theta - eps * e)[1]) / (2 * eps) for e in np.eye(k)]
    hess = np.array(cols)
    hess = (hess + hess.T) / 2
    return _inverse_if_positive_definite(hess)


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
    return _inverse_if_positive_definite(hess)


def fit_warm(build, rows: tuple, w: np.ndarray, x0, *, penalizer: float, analytic: bool, tol: float,
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
