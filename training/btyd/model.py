"""The estimator: :class:`BTYDModel` fits the first transaction model of its fallback chain that passes the checks,
then the Gamma-Gamma spend model, and predicts per customer through the chosen family."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from training.btyd.base import BTYDFitError, PurchaseFamily
from training.btyd.families import FAMILIES, get_family
from training.btyd.gamma_gamma import GG_PARAMS, GGObjective, check_gg, expected_order_value, gg_inputs
from training.btyd.optim import fit_warm
from training.btyd.rows import check_horizon, compress_rfm, compress_rows, rfm_arrays
from training.btyd.simulate import simulate_alive_ratio

__all__ = ["DEFAULT_CHAIN", "DEFAULT_GG_PENALIZERS", "BTYDModel"]

DEFAULT_CHAIN: tuple[tuple[str, float], ...] = (
    ("bg_nbd", 0.0),
    ("bg_nbd", 0.001),
    ("bg_nbd", 0.01),
    ("pareto_nbd", 0.0),
    ("pareto_nbd", 0.001),
    ("mbg_nbd", 0.0),
)
DEFAULT_GG_PENALIZERS: tuple[float, ...] = (0.0, 0.001, 0.01)


def _warning_texts(caught) -> list[str]:
    seen = []
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text not in seen:
            seen.append(text)
    return seen[:10]


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
        unknown = sorted({m for m, _ in chain} - set(FAMILIES))
        if not chain or unknown:
            raise ValueError(f"chain must list (model, penalizer) with model in {sorted(FAMILIES)}; got {unknown or 'nothing'}")
        x, rec, T, keep = rfm_arrays(data, require_monetary=self.fit_spend)
        self.fit_log_: list[dict] = []
        self.n_excluded_ = int((~keep).sum())
        self.n_customers_ = int(keep.sum())
        (ux, urec, uT), w, _ = compress_rfm(x[keep], rec[keep], T[keep])
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
                    family = get_family(model)
                    res = fit_warm(family.objective, rows, w, family.start(), penalizer=penalizer,
                                   analytic=family.analytic, tol=family.optimiser_tol(self.tol),
                                   max_iter=self.max_iter)
                    params = family.natural_params(res["x"], scale)
                    entry.update(params=params, neg_log_likelihood=res["fun"], converged=res["converged"],
                                 n_iter=res["n_iter"], warm_start=res.get("warm_start"))
                    reasons = [] if res["converged"] else [f"no convergence ({res['message']}, |grad| {res['grad_norm']:.2g})"]
                    reasons += family.check_fit(params, ux, urec, uT, w, min_param=self.min_param,
                                                horizon_days=self.check_horizon_days,
                                                max_rate_ratio=self.max_rate_ratio)
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
            return GGObjective(*rows, wt)

        mean_m = float(gw @ gm / gw.sum())
        for penalizer in self.gg_penalizers:
            entry = {"model": "gamma_gamma", "penalizer": float(penalizer)}
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = fit_warm(build_gg, (gx, gm), gw, np.full(3, 0.1), penalizer=float(penalizer),
                                   analytic=True, tol=self.tol, max_iter=self.max_iter)
                    if not res["converged"]:  # retry from a data-driven start (p=1, q=2: mean spend = v)
                        res = fit_warm(build_gg, (gx, gm), gw, np.log([1.0, 2.0, mean_m]), penalizer=float(penalizer),
                                       analytic=True, tol=self.tol, max_iter=self.max_iter)
                    params = dict(zip(GG_PARAMS, np.exp(res["x"]).tolist(), strict=True))
                    entry.update(params=params, neg_log_likelihood=res["fun"], converged=res["converged"],
                                 n_iter=res["n_iter"], warm_start=res.get("warm_start"))
                    reasons = [] if res["converged"] else [f"no convergence ({res['message']})"]
                    reasons += check_gg(params, mean_m, min_param=self.min_param, max_ratio=self.max_rate_ratio)
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
        x, rec, T, keep = rfm_arrays(data, require_monetary=False)
        out = np.full(len(data), np.nan)
        if keep.any():
            (ux, urec, uT), _, inv = compress_rfm(x[keep], rec[keep], T[keep])
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
        return self._unique_predict(data, lambda x, r, T: self._family.p_alive(self.params_, x, r, T))

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
        t = check_horizon(t)
        return self._unique_predict(
            data, lambda x, r, T: np.maximum(self._family.expected_orders(self.params_, t, x, r, T), 0.0))

    def p_no_purchase(self, data: pd.DataFrame, t: float) -> np.ndarray:
        """Probability of no order in the next ``t`` days given the history.

        BG/NBD and MBG/NBD: ``1 - p_alive + p_alive * ((alpha + T) / (alpha + T + t)) ** (r + x)`` — a dead
        customer never buys; an active one (posterior purchase rate ``Gamma(r + x, alpha + T)``) has no order in
        ``t`` days with that probability (dropout only happens after an order). Pareto/NBD: lifetimes'
        ``conditional_probability_of_n_purchases_up_to_time(0, ...)`` (Hardie note 028), which also accounts for
        dying during the horizon.

        Parameters and return value as for :meth:`expected_orders`.
        """
        t = check_horizon(t)
        return self._unique_predict(
            data, lambda x, r, T: np.clip(self._family.p_no_purchase(self.params_, t, x, r, T), 0.0, 1.0))

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
        return expected_order_value(p, q, v, data)

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
        family, params = self._family, self.params_

        def func(x, rec, T):
            w = (al + T) * (2.0 ** (1.0 / (r + x)) - 1.0)
            pa = family.p_alive(params, x, rec, T)
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
            Horizon in days: the spend is that of the period ``(T, T + t]``.
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
        t = check_horizon(t)
        levels = [float(lv) for lv in levels]
        if not levels or any(not 0 < lv < 1 for lv in levels):
            raise ValueError(f"levels must lie in (0, 1); got {levels}")
        if int(n_draws) < 1:
            raise ValueError(f"n_draws must be >= 1; got {n_draws}")
        n_draws = int(n_draws)
        p_gg, q_gg, v_gg = self._gg()
        rng = np.random.default_rng(self.random_state if random_state is None else random_state)
        x, rec, T, keep = rfm_arrays(data, require_monetary=False)
        pa = self.p_alive(data)
        gx, gm, valid = gg_inputs(data)
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
                draws = simulate_alive_ratio(self.model_name_, self.params_, p_gg, kx[sl], kT[sl], shape[sl], t,
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
    @property
    def _family(self) -> PurchaseFamily:
        """The family of the fitted transaction model (looked up by name: the pickle holds no family object)."""
        check_is_fitted(self, "params_")
        return get_family(self.model_name_)

    def _gg(self) -> tuple[float, float, float]:
        check_is_fitted(self, "params_")
        if self.gg_params_ is None:
            raise ValueError("spend predictions need the Gamma-Gamma model: fit with fit_spend=True")
        return self.gg_params_["p"], self.gg_params_["q"], self.gg_params_["v"]
