"""What a transaction-model family (BG/NBD, MBG/NBD, Pareto/NBD) provides to :class:`~training.btyd.BTYDModel`.

A family is stateless: the fitted parameters travel as a plain dict (``params_`` of the estimator), so a pickled
model holds no family object. Subclasses state their parameter names and optimiser set-up as class attributes
and implement the objective, the closed-form predictions and the posterior simulation of the order count;
the fit checks (:meth:`PurchaseFamily.check_fit`) are shared.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

__all__ = ["BTYDFitError", "PurchaseFamily", "fmt_params", "parameter_reasons"]


class BTYDFitError(RuntimeError):
    """Every option of the BTYD fit chain failed (or the data cannot support a BTYD model).

    Callers catch it to fall back to the other (LightGBM) family. ``fit_log`` holds one dict per attempt.
    """

    def __init__(self, message: str, fit_log: Sequence[dict] = ()):
        super().__init__(message)
        self.fit_log = list(fit_log)


def fmt_params(params: dict) -> str:
    """``{k=v, ...}`` with 4 significant digits, for fit-log reasons."""
    return "{" + ", ".join(f"{k}={v:.4g}" for k, v in params.items()) + "}"


def parameter_reasons(params: dict, names: Sequence[str], shape_names: Sequence[str], *,
                      min_param: float) -> tuple[bool, list[str]]:
    """Whether every parameter in ``names`` is finite and positive, and the reasons the parameters are degenerate.

    Returns ``(False, ["non-finite or non-positive parameters ..."])`` when a value is not finite and positive;
    otherwise ``(True, reasons)`` where ``reasons`` names the shape parameters below ``min_param`` (if any).
    """
    values = np.array([params[k] for k in names], dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        return False, [f"non-finite or non-positive parameters {fmt_params(params)}"]
    low = [k for k in shape_names if params[k] < min_param]
    if low:
        return True, [f"parameters at the bound: {', '.join(f'{k}={params[k]:.3g}' for k in low)} < {min_param:g}"]
    return True, []


class PurchaseFamily(ABC):
    """A transaction (purchase and dropout) model: its parameters, objective, predictions and simulation.

    Parameters are natural (positive) values keyed by :attr:`params`; times are in the data's unit (days) except
    inside the objective, which runs on times scaled by ``1 / max(T)`` (lifetimes' ``_scale_time``).
    """

    #: Registry key, also ``BTYDModel.model_name_``.
    name: ClassVar[str]
    #: Natural parameter names, in the optimiser's order.
    params: ClassVar[tuple[str, ...]]
    #: Shape parameters checked against ``min_param`` (scale parameters only need to be finite).
    shape_params: ClassVar[tuple[str, ...]]
    #: Parameters in time units: divided by the time scale to return to the data's unit after the fit.
    scale_params: ClassVar[tuple[str, ...]]
    #: Whether :meth:`objective` returns ``(value, gradient)`` (else the value only).
    analytic: ClassVar[bool]

    # ------------------------------------------------------------------ fitting
    @abstractmethod
    def start(self) -> np.ndarray:
        """Starting point of the optimiser in log-parameters."""

    def optimiser_tol(self, tol: float) -> float:
        """Gradient tolerance of the optimiser given the estimator's ``tol``."""
        return tol

    @abstractmethod
    def objective(self, rows: tuple, w: np.ndarray):
        """Negative mean log-likelihood per customer of ``rows = (x, recency, T)`` (scaled times) with weights ``w``.

        Returns a callable of the log-parameters with a ``penalizer`` attribute (see :mod:`training.btyd.optim`).
        """

    def natural_params(self, theta: np.ndarray, scale: float) -> dict:
        """Natural parameters in the data's time unit from the optimiser's log-parameters on scaled times."""
        params = dict(zip(self.params, np.exp(theta).tolist(), strict=True))
        for k in self.scale_params:
            params[k] /= scale
        return params

    # ------------------------------------------------------------------ predictions
    @abstractmethod
    def p_alive(self, params: dict, x, rec, T) -> np.ndarray:
        """Probability of being alive at ``T`` given ``frequency, recency, T``."""

    @abstractmethod
    def expected_orders(self, params: dict, t: float, x, rec, T) -> np.ndarray:
        """Conditional expected orders in ``(T, T + t]``."""

    @abstractmethod
    def p_quiet_if_alive(self, params: dict, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no order in ``(T, T + t]`` | alive at ``T``, history)."""

    def p_no_purchase(self, params: dict, t: float, x, rec, T) -> np.ndarray:
        """P(no order in ``(T, T + t]`` | history): gone, or alive and quiet."""
        x = np.asarray(x, dtype=float)
        T = np.asarray(T, dtype=float)
        pa = self.p_alive(params, x, rec, T)
        return 1.0 - pa + pa * self.p_quiet_if_alive(params, t, x, T)

    @abstractmethod
    def simulate_orders(self, params: dict, lam: np.ndarray, xs: np.ndarray, Ts: np.ndarray, t: float,
                        rng: np.random.Generator) -> np.ndarray:
        """Posterior draws of the order count in ``(T, T + t]`` of customers alive at ``T``.

        ``lam`` holds the drawn purchase rates (one per draw, ``Gamma(r + x, alpha + T)``); ``xs``, ``Ts`` the
        customer of each draw.
        """

    # ------------------------------------------------------------------ checks
    def check_fit(self, params: dict, x, rec, T, w, *, min_param: float = 1e-3, horizon_days: float = 365.0,
                  max_rate_ratio: float = 10.0) -> list[str]:
        """Reasons why fitted parameters are degenerate (empty list when they look sane).

        See :func:`training.btyd.check_fit` for the parameters.
        """
        finite, reasons = parameter_reasons(params, self.params, self.shape_params, min_param=min_param)
        if not finite:
            return reasons
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pa = self.p_alive(params, x, rec, T)
            eo = self.expected_orders(params, horizon_days, x, rec, T)
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
