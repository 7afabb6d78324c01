"""Any horizon from short histories: choose how to serve a requested horizon, and extrapolate CLV when needed.

:func:`choose_horizon` decides, from the days of history before ``as_of`` (see :func:`training.frames.plan_cutoffs`
for what each layout needs, with ``m`` = 60 days of feature history):

* ``direct`` — the model is fitted for the requested horizon ``H`` (trees from ``2H + m`` days, the BTYD family
  alone from ``H + m``; the planner chooses);
* ``extrapolated`` (CLV only) — fewer than ``2H + m`` days: the CLV model is fitted on the longest window ``h``
  the trees support (``(history - m) / 2``, rounded down to whole months, at least 30 days) and its amounts are
  scaled to ``H`` per person by the BTYD model's ratio of expected orders (spend = orders × order value, so the
  same as its ratio of expected spend) over ``H`` and ``h``: :class:`ExtrapolatedCLV`;
* ``shortened`` — too little history even for that: the longest horizon the history supports is used instead;
  also when the BTYD family alone would serve but the BTYD model does not fit (short histories often show no
  dropout yet): then the longest horizon the trees support, ``(history - m) / 2``.

The choice and its reason go into the run's params (``horizon.*``) and the backtest JSON, and are printed once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.clv import _FITTED, CLVModel
from training.frames import MIN_CUTOFF_HISTORY_DAYS, HistoryTooShort, as_date, required_history

log = logging.getLogger(__name__)

#: Shortest label window the trees are fitted on when CLV is extrapolated.
MIN_FIT_HORIZON_DAYS = 30
#: Shortest horizon offered when the requested one is shortened.
MIN_HORIZON_DAYS = 7


@dataclass(frozen=True)
class HorizonChoice:
    """How a requested horizon is served (see the module docstring)."""

    kind: str
    requested: int
    horizon: int
    fit_horizon: int
    mode: str
    reason: str
    history_days: int | None = None

    def to_params(self) -> dict[str, str]:
        return {"horizon.requested_days": str(self.requested), "horizon.fit_days": str(self.fit_horizon),
                "horizon.mode": self.mode, "horizon.reason": self.reason[:500]}

    def describe(self) -> dict:
        return {"requested_days": self.requested, "horizon_days": self.horizon, "fit_days": self.fit_horizon,
                "mode": self.mode, "reason": self.reason, "history_days": self.history_days}


def _round_down(days: int, unit: int = 30) -> int:
    """Whole months (30 days) when at least one fits, else whole weeks (0 when not even a week)."""
    if days >= unit:
        return days // unit * unit
    return days // MIN_HORIZON_DAYS * MIN_HORIZON_DAYS


def choose_horizon(kind: str, requested: int, history_days: int | None, *,
                   min_history_days: int = MIN_CUTOFF_HISTORY_DAYS) -> HorizonChoice:
    """How to serve ``requested`` days for ``kind`` ("churn" or "clv") with ``history_days`` before ``as_of``.

    Raises
    ------
    HistoryTooShort
        When not even a ``MIN_HORIZON_DAYS``-day horizon fits the history.
    """
    if kind not in ("churn", "clv"):
        raise ValueError(f"kind must be 'churn' or 'clv', got {kind!r}")
    if requested < 1:
        raise ValueError(f"the horizon must be a positive number of days, got {requested}")
    m = min_history_days
    if history_days is None or history_days >= required_history(requested, "trees", min_history_days=m):
        return HorizonChoice(kind, requested, requested, requested, "direct",
                             f"{requested}-day {kind} fitted directly", history_days)
    trees = f"the trees need 2 × {requested} + {m} = {required_history(requested, 'trees', min_history_days=m)}"
    if kind == "clv":
        fit = _round_down((history_days - m) // 2)
        if fit >= MIN_FIT_HORIZON_DAYS:
            return HorizonChoice(
                kind, requested, requested, fit, "extrapolated",
                f"{history_days} days of history ({trees}): CLV fitted on {fit}-day windows and scaled to "
                f"{requested} days per person by the BTYD model's ratio of expected spend over the two horizons",
                history_days)
    if history_days >= required_history(requested, "btyd", min_history_days=m):
        return HorizonChoice(kind, requested, requested, requested, "direct",
                             f"{history_days} days of history ({trees}): the BTYD family alone at {requested} days",
                             history_days)
    short = _round_down(history_days - m)
    if short < MIN_HORIZON_DAYS:
        raise HistoryTooShort(
            f"not enough history for any {kind} horizon: {history_days} days before as_of, at least "
            f"{MIN_HORIZON_DAYS + m} needed ({MIN_HORIZON_DAYS}-day horizon + {m} days of history); use a later "
            "--as-of", horizon_days=requested, history_days=history_days, required_days=MIN_HORIZON_DAYS + m)
    return HorizonChoice(
        kind, requested, short, short, "shortened",
        f"{history_days} days of history: too short for a {requested}-day {kind} (at least {requested} + {m} "
        f"days); the longest supported horizon, {short} days, is used instead", history_days)


def history_days(data, as_of) -> int:
    """Whole days from the first order to ``as_of``."""
    return (as_date(as_of) - as_date(data.data_start)).days


class ExtrapolatedCLV:
    """CLV over ``horizon_days`` from a :class:`CLVModel` fitted on a shorter window, scaled by the BTYD ratio.

    Per person, ``clv_mean``, ``clv_p10`` and ``clv_p90`` of the fitted model (horizon ``h``) are multiplied by
    the BTYD model's expected orders over ``horizon_days`` divided by its expected orders over ``h``, clipped to
    ``[1, horizon_days / h]`` (a longer window never holds fewer orders, nor more than the same rate for longer);
    where the BTYD model gives no value, by the population's ratio; without a BTYD model, by ``horizon_days / h``.
    ``expected_orders`` is the BTYD model's over ``horizon_days``. Everything else (family, inputs, importance,
    BTYD model) is the fitted model's.
    """

    def __init__(self, base: CLVModel, horizon_days: int):
        if horizon_days < base.horizon_days:
            raise ValueError(f"can only extrapolate to a longer horizon than {base.horizon_days} days, "
                             f"got {horizon_days}")
        self.base = base
        self.horizon_days = int(horizon_days)

    def __getattr__(self, name):
        base = self.__dict__.get("base")
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)

    @property
    def fit_horizon_days(self) -> int:
        """The label window the fitted model learnt."""
        return int(self.base.horizon_days)

    def ratio(self, features: pd.DataFrame, btyd) -> np.ndarray:
        """The per-person factor from the fitted window to ``horizon_days`` (see the class docstring)."""
        h, H = self.fit_horizon_days, self.horizon_days
        cap = H / h
        if btyd is None:
            return np.full(len(features), cap)
        long = btyd.expected_orders(features, H)
        short = btyd.expected_orders(features, h)
        ok = np.isfinite(long) & np.isfinite(short) & (short > 1e-12)
        pop = float(long[ok].sum() / short[ok].sum()) if ok.any() else cap
        r = np.where(ok, long / np.where(ok, short, 1.0), pop)
        return np.clip(r, 1.0, cap)

    def predict_frame(self, features: pd.DataFrame, *, as_of=None, with_intervals: bool = True,
                      btyd=_FITTED) -> pd.DataFrame:
        """The fitted model's frame with the amounts scaled to ``horizon_days`` (see the class docstring)."""
        b = self.base.btyd_ if btyd is _FITTED else btyd
        out = self.base.predict_frame(features, as_of=as_of, with_intervals=with_intervals, btyd=b)
        r = self.ratio(features, b)
        for col in ("clv_mean", "clv_p10", "clv_p90"):
            out[col] = out[col].to_numpy(dtype=float) * r
        if b is not None:
            out["expected_orders"] = b.expected_orders(features, self.horizon_days)
        else:
            out["expected_orders"] = out["expected_orders"].to_numpy(dtype=float) * r
        return out

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Expected spend over ``horizon_days`` per row."""
        return self.predict_frame(features, with_intervals=False)["clv_mean"].to_numpy()

    def feature_importance(self) -> pd.Series:
        return self.base.feature_importance()


def fit_for_horizon(kind: str, cache, as_of, requested: int, **kwargs):
    """Fit ``kind`` for ``as_of`` serving ``requested`` days as :func:`choose_horizon` decides.

    ``kwargs`` go to :func:`training.fitting.fit_churn` / ``fit_clv``. The returned ``Fitted`` carries the
    choice in ``extra["horizon"]``; with an extrapolated CLV its validation figures are the fitted window's.
    """
    from training.fitting import BTYDUnavailable, fit_churn, fit_clv

    fit = fit_churn if kind == "churn" else fit_clv
    history = history_days(cache.data, as_of)
    choice = choose_horizon(kind, requested, history)
    if choice.mode != "direct" or "BTYD" in choice.reason:
        log.warning("%s: %s", kind, choice.reason)
    try:
        fitted = fit(cache, as_of, horizon_days=choice.fit_horizon, **kwargs)
    except BTYDUnavailable as exc:
        short = _round_down((history - MIN_CUTOFF_HISTORY_DAYS) // 2)
        if short < MIN_HORIZON_DAYS:
            raise
        choice = HorizonChoice(
            kind, requested, short, short, "shortened",
            f"{history} days of history: too short for the trees at {requested} days, and the BTYD fit at "
            f"{exc.day} failed ({cache.btyd_status(exc.day)[:200]}), so the BTYD family alone cannot serve them; "
            f"the longest horizon the trees support, {short} days, is used instead", history)
        log.warning("%s: %s", kind, choice.reason)
        fitted = fit(cache, as_of, horizon_days=short, **kwargs)
    if choice.mode == "extrapolated":
        fitted.model = ExtrapolatedCLV(fitted.model, choice.horizon)
    fitted.extra["horizon"] = choice
    return fitted
