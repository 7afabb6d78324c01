"""Member tiers from predicted value: the tier each member is heading for, and thresholds that give target shares.

Definitions (see ``docs/decisions.md``, "Tiers from predicted value"); ``H`` is the CLV horizon in days, ``as_of``
the snapshot date, and a member tier is set by the paid spend of the trailing 365 days (``spend_365d``):

* **carried-over spend** ``R`` (:func:`spend_carryover`): the paid spend in ``[as_of + H - 365, as_of)``, the part
  of today's trailing 12 months that is still inside the 12 months ending at ``as_of + H``; 0 when ``H >= 365``.
  Read from the snapshot's ``spend_<w>d`` column for ``w = 365 - H`` when the snapshot has that window, otherwise
  interpolated linearly between the two nearest windows (spend spread evenly between their edges);
* **horizon spend** ``S``: paid spend in ``[as_of, as_of + H)``, predicted by the CLV model (``clv_mean`` with its
  interval ``clv_p10`` / ``clv_p90``);
* **predicted trailing spend** ``T = R + c·S`` with ``c = min(1, 365 / H)`` (for ``H > 365`` only the last 365
  days of the horizon count; the spend is taken as spread evenly over the horizon);
* **predicted tier**: the tier of the expected ``T`` (``predicted_spend_365d = R + c·clv_mean``);
  **tier move**: ``up`` / ``down`` / ``stay`` from the current tier (of ``spend_365d``) to the predicted tier;
* **move probabilities** from each member's predictive distribution of ``S``: ``P(up) = P(T >= min_spend of the
  next tier)``, ``P(down) = P(T < min_spend of the current tier)``, ``P(stay) = 1 - P(up) - P(down)``. With the churn
  or BTYD model over the CLV horizon, :class:`ZeroInflatedSpend` (no spend with ``churn_probability`` or
  ``p_no_purchase``, lognormal otherwise); else :class:`SpendDistribution` from ``clv_p10`` / ``clv_p90`` /
  ``clv_mean`` alone, which over-predicts falls.

:func:`suggest_tier_thresholds` proposes the ``min_spend`` of each tier so that the share of scored members at or
above it at ``as_of + H`` is the target share: by default the expected share ``mean(P(T >= min_spend))`` over the
members' distributions (``basis="distribution"``), or counted on the expected trailing spend (``basis="point"``).
On the 20k simulated brand the distribution basis (with the zero-inflated spend) met the realised shares a year
later more closely on every tier than the point basis (``docs/decisions.md``).
:func:`predict_tiers` is the one function batch scoring (:func:`training.scoring.score`), the HTTP service
(``/tier``) and ``scrm tiers suggest`` use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import InputError
from training.decisions.tiers import MemberTier, TierRules, eligible_mask, load_tier_rules, member_tier_index

#: Days of the trailing window that sets a member tier.
YEAR_DAYS = 365
#: Quantile levels of the CLV interval (``clv_p10``, ``clv_p90``; ``training.clv.CLVModel.quantiles``).
INTERVAL_LEVELS = (0.1, 0.9)
#: Columns of the scores frame :func:`predict_tiers` reads (``spend_carryover`` only for a CLV horizon under a year).
PREDICTED_TIER_INPUT_COLUMNS = ("person_id", "eligible", "spend_365d", "spend_carryover", "clv_mean", "clv_p10",
                                "clv_p90", "clv_horizon_days")
#: Every column :func:`tier_forecast` reads: the inputs above and the no-spend probability's sources (``_no_spend``).
TIER_FORECAST_READS = PREDICTED_TIER_INPUT_COLUMNS + ("churn_probability", "churn_horizon_days", "p_no_purchase")
#: Columns :func:`predict_tiers` returns (null / NaN for people who are not scored).
PREDICTED_TIER_COLUMNS = ("predicted_spend_365d", "predicted_tier", "predicted_tier_en", "tier_move", "p_tier_up",
                          "p_tier_down", "p_tier_stay")
#: Default target shares of the top tiers, highest first (钻石 1%, 铂金 4%, 金卡 15%, 银卡 30%; the base tier
#: gets the rest).
DEFAULT_TOP_SHARES = (0.01, 0.04, 0.15, 0.30)
#: What a suggested threshold's share is counted on (:func:`suggest_tier_thresholds`).
SHARE_BASES = ("point", "distribution")
_WINDOW = re.compile(r"^spend_(\d+)d$")


# --- carried-over spend ------------------------------------------------------------------------------------------


def spend_carryover(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Paid spend in ``[as_of + H - 365, as_of)`` per row of a feature snapshot (see the module docstring).

    Raises
    ------
    InputError
        When ``H`` is not a positive number of days, or the snapshot has no ``spend_<w>d`` window at least as long
        as ``365 - H`` days.
    """
    horizon = int(horizon_days)
    if horizon < 1:
        raise InputError(f"the CLV horizon must be a positive number of days, got {horizon_days}",
                         field="clv_horizon_days")
    if horizon >= YEAR_DAYS:
        return np.zeros(len(features), dtype=float)
    kept = YEAR_DAYS - horizon
    windows = sorted(int(m.group(1)) for c in features.columns if (m := _WINDOW.match(str(c))))

    def column(w: int) -> np.ndarray:
        if w == 0:
            return np.zeros(len(features), dtype=float)
        values = pd.to_numeric(features[f"spend_{w}d"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return np.nan_to_num(values, nan=0.0)

    if kept in windows:
        return column(kept)
    longer = [w for w in windows if w > kept]
    if not longer:
        raise InputError(f"features: no spend_<w>d column covers the {kept} days of the trailing year still inside "
                         f"the year ending {horizon} days ahead (windows: {windows or 'none'}); build the snapshot "
                         "with a 365-day window", field=f"spend_{kept}d")
    lo = max([0, *(w for w in windows if w < kept)])
    hi = min(longer)
    a, b = column(lo), column(hi)
    return a + (b - a) * (kept - lo) / (hi - lo)


# --- each member's predictive distribution of horizon spend ------------------------------------------------------


def _expm1_over(d: np.ndarray) -> np.ndarray:
    """``(e^d - 1) / d``, 1 at ``d = 0`` (the mean of ``e^L`` over a segment where ``L`` rises by ``d``, over
    ``e^L`` at its start)."""
    small = np.abs(d) < 1e-9
    safe = np.where(small, 1.0, d)
    return np.where(small, 1.0 + d / 2.0, np.expm1(safe) / safe)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0  # Gauss-Legendre on [0, 1]
_LOG_NODES = np.log(_NODES)


def _body_mean(l10: np.ndarray, l90: np.ndarray, inv_power: np.ndarray) -> np.ndarray:
    """Mean of ``exp(L) - 1`` over the body, ``L = l10 + (l90 - l10)·t^(1/inv_power)``, ``t`` uniform on [0, 1]."""
    rise = l90 - l10
    out = np.exp(l10) * _expm1_over(rise) - 1.0  # power 1: closed form
    at_p10 = inv_power <= 0
    out[at_p10] = np.expm1(l10[at_p10])  # power ∞: the body is a point mass at p10
    curved = ~at_p10 & (inv_power < 1.0)
    if curved.any():
        t = np.exp(_LOG_NODES[None, :] / inv_power[curved][:, None])  # t^γ at the quadrature nodes
        out[curved] = (np.exp(l10[curved][:, None] + rise[curved][:, None] * t) - 1.0) @ _WEIGHTS
    return out


@dataclass(frozen=True)
class SpendDistribution:
    """Per-person predictive distribution of horizon spend with the CLV model's p10, p90 and mean.

    Its quantile function is ``Q(u) = exp(L(u)) - 1``, ``L`` rising through the knots ``(0, 0)``,
    ``(0.1, log1p(p10))``, ``(0.9, log1p(p90))`` and ``(1, log1p(top))``: linear in ``u`` on the lowest and the top
    segment, and on the body ``L = log1p(p10) + (log1p(p90) - log1p(p10))·t^γ`` with ``t = (u - 0.1) / 0.8``. So
    the distribution starts at 0 (a ``p10`` of 0 is a point mass of at least 10% at no spend), has exactly the
    interval's 10th and 90th percentiles, and its mean is ``clv_mean``, reached in this order:

    1. ``γ = 1`` (spend log-uniform between the bounds: right-skewed, as spend is) and ``top >= p90`` solved for
       the mean;
    2. when the mean is below that with ``top = p90`` (the LightGBM family fits its mean and quantile models
       separately, and people who will probably buy nothing get a wide interval), ``top = p90`` and ``γ > 1``
       solved for the mean: the body's mass moves towards ``p10``;
    3. when even a body all at ``p10`` (``γ = ∞``) leaves the mean too high — a mean below ``0.8·p10 + 0.1·p90``
       plus the lowest segment's, which no distribution with those percentiles has — that limit is kept and the
       distribution's mean exceeds ``clv_mean`` (:attr:`mean_matched` is False).

    Attributes
    ----------
    knots : ndarray, shape (n, 4)
        ``log1p(spend)`` at the levels :attr:`levels`.
    inv_power : ndarray, shape (n,)
        ``1 / γ`` of the body, in ``[0, 1]`` (0: the body is a point mass at ``p10``).
    mean_matched : ndarray of bool, shape (n,)
        Whether the distribution's mean is ``clv_mean``.
    """

    knots: np.ndarray
    inv_power: np.ndarray
    mean_matched: np.ndarray
    levels: tuple[float, ...] = (0.0, *INTERVAL_LEVELS, 1.0)

    @classmethod
    def from_interval(cls, mean, p10, p90, *, iterations: int = 30) -> SpendDistribution:
        """The distribution of each row from its ``clv_mean``, ``clv_p10`` and ``clv_p90`` (finite, >= 0)."""
        mean, p10, p90 = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (mean, p10, p90))
        if not (np.isfinite(mean).all() and np.isfinite(p10).all() and np.isfinite(p90).all()):
            raise ValueError("clv_mean, clv_p10 and clv_p90 must be finite")
        lo_u, hi_u = INTERVAL_LEVELS
        body_w, tail_w = hi_u - lo_u, 1.0 - hi_u
        p10 = np.maximum(p10, 0.0)
        p90 = np.maximum(p90, p10)
        mean = np.maximum(mean, 0.0)
        l10, l90 = np.log1p(p10), np.log1p(p90)
        lower = lo_u * (_expm1_over(l10) - 1.0)
        ones = np.ones_like(l10)
        body = lower + body_w * _body_mean(l10, l90, ones)
        # 1. the top segment's mean over e^{l90}: (e^d - 1)/d = ratio, solved for d >= 0
        ratio = ((mean - body) / tail_w + 1.0) / np.exp(l90)
        d = _solve_expm1_over(np.maximum(ratio, 1.0))
        inv_power = ones.copy()
        matched = ratio >= 1.0 - 1e-12
        # 2. and 3. top = p90 (d = 0): the body's shape takes the rest of the mean
        short = ~matched
        if short.any():
            want = (mean[short] - lower[short] - tail_w * p90[short]) / body_w  # body mean wanted
            a, b = l10[short], l90[short]
            lo, hi = np.zeros(int(short.sum())), np.ones(int(short.sum()))  # body mean rises with inv_power
            for _ in range(iterations):
                mid = (lo + hi) / 2.0
                high = _body_mean(a, b, mid) > want
                lo, hi = np.where(high, lo, mid), np.where(high, mid, hi)
            reachable = want >= np.expm1(a) - 1e-9 * (1.0 + np.abs(want))
            inv_power[short] = np.where(reachable, (lo + hi) / 2.0, 0.0)
            matched[short] = reachable
        knots = np.column_stack([np.zeros_like(l10), l10, l90, l90 + d])
        return cls(knots=knots, inv_power=inv_power, mean_matched=matched)

    def mean(self) -> np.ndarray:
        """The mean of each row's distribution."""
        k, u = self.knots, np.diff(np.asarray(self.levels))
        lower = u[0] * (np.exp(k[:, 0]) * _expm1_over(k[:, 1] - k[:, 0]) - 1.0)
        top = u[2] * (np.exp(k[:, 2]) * _expm1_over(k[:, 3] - k[:, 2]) - 1.0)
        return lower + u[1] * _body_mean(k[:, 1], k[:, 2], self.inv_power) + top

    def prob_at_least(self, x) -> np.ndarray:
        """``P(S >= x)`` per row (``x`` a scalar or one value per row); 1 for ``x <= 0``."""
        k = self.knots
        level = np.log1p(np.maximum(np.broadcast_to(np.asarray(x, dtype=float), (len(k),)), 0.0))
        below = np.zeros(len(k), dtype=float)
        for i, width in enumerate(np.diff(np.asarray(self.levels))):
            start, rise = k[:, i], k[:, i + 1] - k[:, i]
            with np.errstate(divide="ignore", invalid="ignore"):
                part = np.clip((level - start) / np.where(rise > 0, rise, 1.0), 0.0, 1.0)
                if i == 1:  # the body: t = part^(1/γ) = part^inv_power (inv_power 0: a step just above p10)
                    part = np.where(part > 0, np.power(part, self.inv_power), 0.0)
            part = np.where(rise > 0, part, np.where(level > start, 1.0, 0.0))
            below += width * part
        return np.clip(1.0 - below, 0.0, 1.0)

    def upper(self) -> np.ndarray:
        """The top of each row's distribution."""
        return np.expm1(self.knots[:, -1])


def _solve_expm1_over(ratio: np.ndarray, iterations: int = 60) -> np.ndarray:
    """``d >= 0`` with ``(e^d - 1) / d = ratio`` (``ratio >= 1``), by bisection on all rows at once."""
    lo = np.zeros_like(ratio)
    hi = 2.0 * np.log(ratio) + 2.0  # (e^hi - 1)/hi >= ratio for every ratio >= 1
    for _ in range(iterations):
        mid = (lo + hi) / 2.0
        up = _expm1_over(mid) < ratio
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return (lo + hi) / 2.0


def _log_sd_from_p90(mean, p90, no_spend) -> np.ndarray:
    """Per row, the log-sd ``σ`` of a lognormal ``S | S > 0`` with mean ``m⁺ = clv_mean / (1 − π)`` whose quantile at
    the level ``q = (0.9 − π) / (1 − π)`` (where the interval's ``clv_p90`` falls once ``π`` is at 0) is ``clv_p90``:
    the smaller root of ``σ²/2 − z_q·σ + log(p90 / m⁺) = 0``; NaN where there is none (``q <= 0.5``, no real or
    positive root, no positive ``p90`` or mean)."""
    from scipy.special import ndtri

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        positive = mean / (1.0 - no_spend)
        q = (INTERVAL_LEVELS[1] - no_spend) / (1.0 - no_spend)
        z = ndtri(np.clip(q, 1e-12, 1.0 - 1e-12))
        disc = z ** 2 - 2.0 * np.log(p90 / positive)
        sigma = z - np.sqrt(disc)
    ok = (q > 0.5) & (no_spend < 1.0) & (p90 > 0) & (positive > 0) & np.isfinite(sigma) & (sigma > 0)
    return np.where(ok, sigma, np.nan)


def spend_sigma_parts(scores: pd.DataFrame) -> tuple[float, int]:
    """Sum and count of the per-person log-sds behind :class:`ZeroInflatedSpend`'s pooled ``σ`` over the scored rows
    of ``scores`` (0, 0 without a no-spend probability): batches add them up (Spark scoring)."""
    return tier_forecast(scores).sigma_parts


def _sigma_parts(mean, p90, no_spend) -> tuple[float, int]:
    each = _log_sd_from_p90(mean, p90, no_spend)
    ok = np.isfinite(each)
    return float(each[ok].sum()), int(ok.sum())


def pooled_sigma(total: float, count: int) -> float:
    """The pooled log-sd from :func:`spend_sigma_parts` (summed over batches): their mean rounded to 1e-9, so a
    sum in another order gives the same value; NaN when there is none."""
    return round(total / count, 9) if count else float("nan")


@dataclass(frozen=True)
class ZeroInflatedSpend:
    """Per-person predictive distribution of horizon spend: no spend with the model's probability ``π`` of no paid
    order in the horizon, otherwise lognormal with mean ``m⁺ = clv_mean / (1 − π)`` (so the mean is ``clv_mean``)
    and one log-sd ``σ`` for everyone: the mean of the per-person ``σ`` that put ``clv_p90`` at its level once ``π``
    is at 0 (:func:`spend_sigma_parts`). Used when the scores carry ``π`` (``churn_probability`` over the CLV
    horizon, else ``p_no_purchase``); :class:`SpendDistribution` otherwise.
    """

    no_spend: np.ndarray
    log_scale: np.ndarray  # μ of the lognormal: log(m⁺) − σ²/2 (−inf when m⁺ is 0)
    sigma: float
    mean_matched: np.ndarray  # whether the mean is clv_mean: not when π = 1 and clv_mean > 0

    @classmethod
    def from_scores(cls, mean, no_spend, sigma: float) -> ZeroInflatedSpend:
        """The distribution of each row from its ``clv_mean`` and ``π`` (``sigma``: the pooled log-sd, > 0)."""
        mean, no_spend = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (mean, no_spend))
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma}")
        no_spend = np.clip(no_spend, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            positive = np.where(no_spend < 1.0, np.maximum(mean, 0.0) / np.maximum(1.0 - no_spend, 1e-300), 0.0)
            log_scale = np.log(positive) - sigma ** 2 / 2.0
        return cls(no_spend=no_spend, log_scale=log_scale, sigma=float(sigma),
                   mean_matched=(no_spend < 1.0) | (mean <= 0))

    def mean(self) -> np.ndarray:
        """The mean of each row's distribution."""
        return (1.0 - self.no_spend) * np.exp(self.log_scale + self.sigma ** 2 / 2.0)

    def prob_at_least(self, x) -> np.ndarray:
        """``P(S >= x)`` per row (``x`` a scalar or one value per row); 1 for ``x <= 0``."""
        from scipy.special import ndtr

        x = np.broadcast_to(np.asarray(x, dtype=float), self.no_spend.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            above = ndtr((self.log_scale - np.log(np.maximum(x, 1e-300))) / self.sigma)
        above = np.where(np.isfinite(self.log_scale), above, 0.0)
        return np.where(x <= 0, 1.0, np.clip((1.0 - self.no_spend) * above, 0.0, 1.0))

    def upper(self) -> np.ndarray:
        """A spend no row reaches with a probability above 1e-9."""
        return np.where(np.isfinite(self.log_scale), np.exp(self.log_scale + 6.0 * self.sigma), 0.0)


# --- per-person forecast -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierForecast:
    """The scored members' predicted trailing spend at ``as_of + H`` (see the module docstring).

    ``rows`` are the positions of the scored (eligible) rows in the scores frame; every other array is over them.
    """

    rows: np.ndarray
    horizon_days: int
    carryover: np.ndarray
    scale: float
    spend_365d: np.ndarray
    clv_mean: np.ndarray
    distribution: ZeroInflatedSpend | SpendDistribution | None  # None: scored without the CLV interval
    no_spend: np.ndarray | None = None  # π per row, when the scores carry it
    sigma_parts: tuple[float, int] = (0.0, 0)  # sum and count of the per-row log-sds (spend_sigma_parts)

    @property
    def expected(self) -> np.ndarray:
        """Expected trailing-12-month spend at ``as_of + H``: ``R + c·clv_mean``."""
        return self.carryover + self.scale * self.clv_mean

    def prob_reach(self, thresholds) -> np.ndarray:
        """``P(T >= t)`` for each threshold ``t``: shape ``(n, len(thresholds))``."""
        t = np.asarray(thresholds, dtype=float)
        if self.distribution is None:
            raise InputError("scores: no CLV interval (clv_p10 / clv_p90 are empty: scored without intervals), so "
                             "no tier probabilities; score with intervals", field=("scores", "clv_p10"))
        return np.column_stack([self.distribution.prob_at_least((v - self.carryover) / self.scale) for v in t]) \
            if t.size else np.zeros((len(self.rows), 0))

    def moves(self, rules: TierRules) -> dict[str, np.ndarray]:
        """Current and predicted tier index, move code (-1, 0, 1) and ``P(up)``, ``P(down)``, ``P(stay)``."""
        thresholds = np.array([t.min_spend for t in rules.member_tiers], dtype=float)
        top = len(thresholds) - 1
        current = member_tier_index(self.spend_365d, rules)
        predicted = member_tier_index(self.expected, rules)
        move = np.sign(predicted - current)
        if self.distribution is None:
            nan = np.full(len(current), np.nan)
            return {"current": current, "predicted": predicted, "move": move, "p_up": nan, "p_down": nan,
                    "p_stay": nan}
        reach = self.prob_reach(thresholds)  # column 0 (min_spend 0) is 1
        reach = np.column_stack([reach, np.zeros(len(current))])  # P(T >= beyond the top tier) = 0
        rows = np.arange(len(current))
        p_up = np.where(current < top, reach[rows, current + 1], 0.0)
        p_down = np.where(current > 0, 1.0 - reach[rows, current], 0.0)
        return {"current": current, "predicted": predicted, "move": move,
                "p_up": p_up, "p_down": p_down, "p_stay": np.clip(1.0 - p_up - p_down, 0.0, 1.0)}


def _numbers(scores: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _no_spend(scores: pd.DataFrame, rows: np.ndarray, horizon: int) -> np.ndarray | None:
    """``π``, the probability of no paid order in the CLV horizon, when it is a probability on every scored row: the
    churn model's ``churn_probability`` when its horizon (``churn_horizon_days``) is the CLV horizon, else the BTYD
    model's ``p_no_purchase`` over the CLV horizon; None when neither is there."""
    if not len(rows):
        return None
    days = (pd.to_numeric(scores["churn_horizon_days"].iloc[rows], errors="coerce").to_numpy(dtype=float,
                                                                                             na_value=np.nan)
            if "churn_horizon_days" in scores.columns else np.array([np.nan]))
    source = "churn_probability" if (days == horizon).all() else "p_no_purchase"
    for col in dict.fromkeys([source, "p_no_purchase"]):
        p = _numbers(scores, col)[rows] if col in scores.columns else np.array([np.nan])
        if np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all():
            return p
    return None


def tier_forecast(scores: pd.DataFrame, *, spend_sigma: float | None = None) -> TierForecast:
    """The :class:`TierForecast` of the scored rows of ``scores`` (see :func:`predict_tiers` for the columns).

    ``spend_sigma``: the pooled log-sd of :class:`ZeroInflatedSpend` (default: estimated over these rows; NaN: use
    :class:`SpendDistribution` even when the scores carry the no-spend probability).

    Raises
    ------
    InputError
        A missing column (naming it and how to get it), several CLV horizons in one frame, or a scored row without a
        finite, non-negative CLV and interval.
    """
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    def require(columns) -> None:
        missing = [c for c in columns if c not in scores.columns]
        if missing:
            raise InputError(f"scores: missing column(s) {missing} for the predicted tier; scores written by "
                             "`scrm score` before the tier forecast lack spend_carryover: score again",
                             field=("scores", missing[0]))

    require([c for c in PREDICTED_TIER_INPUT_COLUMNS if c != "spend_carryover"])
    rows = np.flatnonzero(eligible_mask(scores))
    horizons = pd.to_numeric(scores["clv_horizon_days"].iloc[rows], errors="coerce").dropna().unique()
    if len(rows) and len(horizons) != 1:
        raise InputError(f"scores: the scored rows need one CLV horizon, got {sorted(horizons.tolist()) or 'none'}",
                         field=("scores", "clv_horizon_days"))
    horizon = int(horizons[0]) if len(horizons) else YEAR_DAYS
    if horizon < 1:
        raise InputError(f"scores: clv_horizon_days must be positive, got {horizon}", field=("scores", "clv_horizon_days"))
    if horizon < YEAR_DAYS:  # part of today's trailing year is still inside the year ending at as_of + H
        require(["spend_carryover"])
    values = {c: _numbers(scores, c)[rows] for c in ("clv_mean", "clv_p10", "clv_p90")}
    # scored without intervals (score(..., with_intervals=False)): no distribution, so no move probabilities
    with_interval = bool(np.isfinite(values["clv_p10"]).any() or np.isfinite(values["clv_p90"]).any()) \
        or not len(rows)
    for col in ("clv_mean", "clv_p10", "clv_p90") if with_interval else ("clv_mean",):
        v = values[col]
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            ids = scores["person_id"].iloc[rows[bad]].head(3).tolist()
            raise InputError(f"scores: column {col!r} must be finite and >= 0 for scored people; {int(bad.sum())} "
                             f"bad row(s), e.g. person_id {ids}", field=("scores", col), rows=int(bad.sum()))
    carry = np.nan_to_num(_numbers(scores, "spend_carryover")[rows], nan=0.0) if horizon < YEAR_DAYS \
        else np.zeros(len(rows))
    no_spend = _no_spend(scores, rows, horizon)
    distribution, parts = None, (0.0, 0)
    if with_interval:
        sigma = spend_sigma
        if no_spend is not None:
            parts = _sigma_parts(values["clv_mean"], values["clv_p90"], no_spend)
            if sigma is None:
                sigma = pooled_sigma(*parts)
        if no_spend is not None and sigma is not None and np.isfinite(sigma) and sigma > 0:
            distribution = ZeroInflatedSpend.from_scores(values["clv_mean"], no_spend, sigma)
        else:
            distribution = SpendDistribution.from_interval(values["clv_mean"], values["clv_p10"], values["clv_p90"])
    return TierForecast(
        rows=rows, horizon_days=horizon, carryover=np.maximum(carry, 0.0), scale=min(1.0, YEAR_DAYS / horizon),
        spend_365d=np.nan_to_num(_numbers(scores, "spend_365d")[rows], nan=0.0), clv_mean=values["clv_mean"],
        distribution=distribution, no_spend=no_spend, sigma_parts=parts,
    )


def predict_tiers(scores: pd.DataFrame, rules: TierRules | None = None, *,
                  spend_sigma: float | None = None) -> pd.DataFrame:
    """Predicted tier at ``as_of + H``, the tier move and its probabilities for every person.

    Parameters
    ----------
    scores : DataFrame
        One row per person from :func:`training.scoring.score`; reads ``person_id``, ``eligible``, ``spend_365d``,
        ``spend_carryover``, ``clv_mean``, ``clv_p10``, ``clv_p90`` and ``clv_horizon_days``. Scores made
        without the CLV interval get the predicted tier and move but NaN probabilities. With
        ``churn_probability`` over the CLV horizon (``churn_horizon_days``) or ``p_no_purchase`` the probabilities
        come from :class:`ZeroInflatedSpend`, otherwise from :class:`SpendDistribution`.
    rules : TierRules, optional
        Defaults to the packaged ``training/tiers.yaml``.
    spend_sigma : float, optional
        :class:`ZeroInflatedSpend`'s pooled log-sd (default: estimated over the scored rows of ``scores``; a
        batch of a larger population passes the population's, see :func:`spend_sigma_parts`).

    Returns
    -------
    DataFrame
        Same index as ``scores``, columns :data:`PREDICTED_TIER_COLUMNS`: ``predicted_spend_365d`` (expected
        trailing-12-month spend at ``as_of + H``), ``predicted_tier`` / ``predicted_tier_en``, ``tier_move``
        (up | down | stay) and ``p_tier_up`` / ``p_tier_down`` / ``p_tier_stay``; null for people not scored.
    """
    rules = rules or load_tier_rules()
    forecast = tier_forecast(scores, spend_sigma=spend_sigma)
    moves = forecast.moves(rules)
    n, rows = len(scores), forecast.rows
    out = pd.DataFrame(index=scores.index)
    spend = np.full(n, np.nan)
    spend[rows] = forecast.expected
    out["predicted_spend_365d"] = spend
    for col, names in (("predicted_tier", [t.name for t in rules.member_tiers]),
                       ("predicted_tier_en", [t.name_en for t in rules.member_tiers])):
        values = np.full(n, None, dtype=object)
        values[rows] = np.asarray(names, dtype=object)[moves["predicted"]]
        out[col] = pd.Series(values, dtype=object, index=scores.index)
    move = np.full(n, None, dtype=object)
    move[rows] = np.array(["down", "stay", "up"], dtype=object)[moves["move"] + 1]
    out["tier_move"] = pd.Series(move, dtype=object, index=scores.index)
    for key in ("up", "down", "stay"):
        p = np.full(n, np.nan)
        p[rows] = moves[f"p_{key}"]
        out[f"p_tier_{key}"] = p
    return out


def with_predicted_tiers(scores: pd.DataFrame, features: pd.DataFrame, rules: TierRules | None = None,
                         *, horizon_days: int | None = None, spend_sigma: float | None = None) -> pd.DataFrame:
    """``scores`` with ``spend_carryover`` (from ``features``, row for row) and :func:`predict_tiers`' columns.

    Batch scoring and the service (for published scores written without them) both add the columns here.
    ``horizon_days`` defaults to the scores' ``clv_horizon_days``.
    """
    out = scores.copy()
    if horizon_days is None:
        horizons = pd.to_numeric(out["clv_horizon_days"], errors="coerce").dropna().unique()
        horizon_days = int(horizons[0]) if len(horizons) else YEAR_DAYS
    out["spend_carryover"] = spend_carryover(features.reset_index(drop=True), horizon_days)
    predicted = predict_tiers(out, rules, spend_sigma=spend_sigma)
    for col in PREDICTED_TIER_COLUMNS:
        out[col] = predicted[col].set_axis(out.index)
    return out


# --- threshold suggestion ----------------------------------------------------------------------------------------


def tier_shares(rules: TierRules, shares: dict[str, float] | None = None) -> np.ndarray:
    """Target share of each tier of ``rules`` (in order, summing to 1) from ``{tier name: share}``.

    Names are Chinese or English; shares are fractions in (0, 1). The base (first) tier may be left out and gets
    the rest. Default: :data:`DEFAULT_TOP_SHARES` for the top tiers, highest first.

    Raises
    ------
    InputError
        An unknown tier, a share outside (0, 1), a tier named twice, shares that do not leave the base tier a
        positive rest (or do not sum to 1 when it is named), a higher tier left out, or no default for more than
        ``len(DEFAULT_TOP_SHARES) + 1`` tiers.
    """
    tiers = rules.member_tiers
    n = len(tiers)
    if shares is None:
        if n - 1 > len(DEFAULT_TOP_SHARES):
            raise InputError(f"--shares: the default shares cover {len(DEFAULT_TOP_SHARES) + 1} tiers, the rules have "
                             f"{n}; give one share per tier", field="shares")
        top = list(DEFAULT_TOP_SHARES[: n - 1])
        out = np.array([0.0, *reversed(top)])
        out[0] = 1.0 - out[1:].sum()
        return out
    index = {t.name: i for i, t in enumerate(tiers)} | {t.name_en: i for i, t in enumerate(tiers)}
    out = np.full(n, np.nan)
    for name, value in shares.items():
        if name not in index:
            raise InputError(f"--shares: unknown tier {name!r}; the tiers are "
                             f"{[t.name for t in tiers]} / {[t.name_en for t in tiers]}", field=("shares", str(name)))
        share = float(value)
        if not 0.0 < share < 1.0:
            raise InputError(f"--shares: the share of {name!r} must be in (0, 1) (or a percentage like 4%), got "
                             f"{value}", field=("shares", str(name)))
        if not np.isnan(out[index[name]]):
            raise InputError(f"--shares: tier {name!r} is given twice", field=("shares", str(name)))
        out[index[name]] = share
    left_out = [tiers[i].name for i in range(1, n) if np.isnan(out[i])]
    if left_out:
        raise InputError(f"--shares: no share for tier(s) {left_out} (only the base tier {tiers[0].name!r} may be left "
                         "out: it gets the rest)", field="shares")
    rest = 1.0 - out[1:].sum()
    if np.isnan(out[0]):
        if rest <= 0:
            raise InputError(f"--shares: the tiers above {tiers[0].name!r} add up to {out[1:].sum():.4f}, leaving "
                             "nothing for it", field="shares")
        out[0] = rest
    elif abs(out.sum() - 1.0) > 1e-6:
        raise InputError(f"--shares: the shares add up to {out.sum():.4f}, not 1", field="shares")
    return out


def _share_function(forecast: TierForecast, basis: str):
    """``G(t)``: the share of scored members at or above ``t`` at ``as_of + H`` on ``basis``, and a ``t`` where it
    is 0."""
    if basis == "point":
        expected = forecast.expected
        return (lambda t: float(np.mean(expected >= t))), float(expected.max())
    if forecast.distribution is None:
        forecast.prob_reach([0.0])  # raises: no interval, no distribution
    top = forecast.carryover + forecast.scale * forecast.distribution.upper()
    return (lambda t: float(forecast.prob_reach([t])[:, 0].mean())), float(top.max())


def suggest_tier_thresholds(forecast: TierForecast, shares: np.ndarray, *, basis: str = "distribution",
                            round_to: float = 1.0, iterations: int = 60) -> np.ndarray:
    """``min_spend`` per tier (the first 0) giving the target ``shares`` of scored members at ``as_of + H``.

    ``basis="point"``: the share of members whose expected trailing spend (``predicted_spend_365d``) reaches the
    threshold; ``basis="distribution"``: the expected share, ``mean(P(T >= t))`` over each member's
    :class:`SpendDistribution`. For tier ``k`` with target ``c_k`` (its share plus those of the tiers above), with
    ``G(t)`` that share of members at or above ``t`` (non-increasing in ``t``), ``t*`` = the lowest ``t`` with
    ``G(t) <= c_k`` (bisection); the threshold is the multiple of ``round_to`` just below or just above ``t*``,
    whichever gives the share nearer ``c_k`` (the higher on a tie). Where members tie (the same expected spend, or
    a point mass such as no spend) ``G`` jumps and the share can only be met up to that jump. Thresholds are then
    made strictly increasing (each at least ``round_to`` above the one below).

    Raises
    ------
    InputError
        No scored member, an unknown basis, a non-positive ``round_to``, or ``shares`` that are not one positive
        share per tier summing to 1.
    """
    shares = np.asarray(shares, dtype=float)
    if basis not in SHARE_BASES:
        raise InputError(f"--basis must be one of {list(SHARE_BASES)}, got {basis!r}", field="basis")
    if len(forecast.rows) == 0:
        raise InputError("scores: nobody is scored, so there is no predicted value to set thresholds from",
                         field="scores")
    if not (np.isfinite(round_to) and round_to > 0):
        raise InputError(f"--round-to must be a positive amount, got {round_to}", field="round_to")
    if (shares <= 0).any() or abs(shares.sum() - 1.0) > 1e-6:
        raise InputError(f"shares must be positive and add up to 1, got {shares.tolist()}", field="shares")
    at_or_above = np.cumsum(shares[::-1])[::-1]  # c_k
    share_at, top = _share_function(forecast, basis)
    ceiling = top + round_to
    thresholds = [0.0]
    for target in at_or_above[1:]:
        lo, hi = 0.0, ceiling  # G(0) = 1 > target >= G(ceiling) = 0
        for _ in range(iterations):
            mid = (lo + hi) / 2.0
            if share_at(mid) <= target:
                hi = mid
            else:
                lo = mid
        below, above = np.floor(hi / round_to) * round_to, np.ceil(hi / round_to) * round_to
        if above == below:
            above = below + round_to
        gap_below = abs(share_at(below) - target)
        gap_above = abs(share_at(above) - target)
        chosen = below if gap_below < gap_above else above
        thresholds.append(float(max(chosen, thresholds[-1] + round_to)))
    return np.round(np.asarray(thresholds), 6)


def rules_with_thresholds(rules: TierRules, thresholds) -> TierRules:
    """``rules`` with the tiers' ``min_spend`` replaced by ``thresholds`` (names and action segments kept)."""
    tiers = [MemberTier(name=t.name, name_en=t.name_en, min_spend=float(v))
             for t, v in zip(rules.member_tiers, thresholds, strict=True)]
    return TierRules(member_tiers=tiers, action_segments=rules.action_segments)


def read_shares(value: str) -> dict[str, float]:
    """Target shares from ``--shares``: a YAML/JSON file mapping tier names to shares, or ``name=share,...``.

    A share is a fraction (``0.04``) or a percentage (``4%``). ``InputError`` naming the file or the item.
    """
    from pathlib import Path

    import yaml

    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the shares file ({exc})", file=path, field="--shares") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML or JSON ({exc})", file=path, field="--shares") from None
        if not isinstance(raw, dict) or not raw:
            raise InputError(f"{path}: expected a mapping of tier name to share, e.g. {{钻石: 1%, 铂金: 4%}}",
                             file=path, field="--shares")
        items = [(str(k), v) for k, v in raw.items()]
        where = f"{path}: "
    else:
        items = []
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, share = part.partition("=")
            if not sep or not name.strip():
                raise InputError(f"--shares: expected name=share items like 钻石=1%,铂金=4%, got {part!r}",
                                 field="--shares")
            items.append((name.strip(), share.strip()))
        if not items:
            raise InputError("--shares: no name=share item given", field="--shares")
        where = "--shares: "
    out: dict[str, float] = {}
    for name, share in items:
        text = str(share).strip()
        try:
            number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        except ValueError:
            raise InputError(f"{where}the share of {name!r} must be a fraction or a percentage, got {share!r}",
                             field=("shares", name)) from None
        if name in out:
            raise InputError(f"{where}tier {name!r} is given twice", field=("shares", name))
        out[name] = number
    return out


@dataclass(frozen=True)
class TierSuggestion:
    """Suggested rules and what they do: :func:`suggest_tiers`."""

    rules: TierRules
    summary: dict


def _side(forecast: TierForecast, rules: TierRules) -> tuple[list[dict], dict]:
    """Members per tier (now, predicted, expected) and the moves under ``rules``."""
    n_tiers = len(rules.member_tiers)
    moves = forecast.moves(rules)
    reach = forecast.prob_reach([t.min_spend for t in rules.member_tiers])
    p_tier = reach - np.column_stack([reach[:, 1:], np.zeros(len(reach))])
    now = np.bincount(moves["current"], minlength=n_tiers)
    predicted = np.bincount(moves["predicted"], minlength=n_tiers)
    expected = p_tier.sum(axis=0)
    n = max(len(forecast.rows), 1)
    per_tier = [{"min_spend": t.min_spend, "now": int(now[i]), "predicted": int(predicted[i]),
                 "expected": round(float(expected[i]), 2), "expected_share": round(float(expected[i]) / n, 6)}
                for i, t in enumerate(rules.member_tiers)]
    summary = {
        "up": int((moves["move"] > 0).sum()), "down": int((moves["move"] < 0).sum()),
        "stay": int((moves["move"] == 0).sum()),
        "expected_up": round(float(moves["p_up"].sum()), 2), "expected_down": round(float(moves["p_down"].sum()), 2),
        "expected_stay": round(float(moves["p_stay"].sum()), 2),
    }
    return per_tier, summary


def suggest_tiers(scores: pd.DataFrame, rules: TierRules | None = None, shares: dict[str, float] | None = None,
                  *, basis: str = "distribution", round_to: float = 1.0) -> TierSuggestion:
    """Thresholds giving target tier shares at ``as_of + H``, and how many members move under them and now.

    Parameters
    ----------
    scores : DataFrame
        From :func:`training.scoring.score` (the columns :func:`predict_tiers` reads). Only scored members count.
    rules : TierRules, optional
        The rules in force (default: the packaged ones); their tier names and action segments are kept.
    shares : dict, optional
        ``{tier name: share}`` (:func:`tier_shares`; default :data:`DEFAULT_TOP_SHARES`).
    basis : {"point", "distribution"}
        What the shares are counted on (:func:`suggest_tier_thresholds`).
    round_to : float
        Thresholds are multiples of this (CNY).

    Returns
    -------
    TierSuggestion
        ``rules``: the suggested rules; ``summary``: per tier the target share, both thresholds and, under each set
        of thresholds, the members in the tier now (``spend_365d``), predicted at ``as_of + H`` (expected spend) and
        expected (sum of the members' probabilities of ending in the tier); the moves (up / down / stay, counted
        and expected) from now to ``as_of + H`` under each set; ``retiered_now``: members whose tier today changes
        if the suggested thresholds replace the current ones; ``notes``: the tiers whose share on ``basis`` misses
        the target by more than half a point, and why (members tied at one predicted spend, such as none at all).
    """
    rules = rules or load_tier_rules()
    target = tier_shares(rules, shares)
    forecast = tier_forecast(scores)
    if forecast.distribution is None:
        forecast.prob_reach([0.0])  # raises: the summary's expected counts need the interval
    thresholds = suggest_tier_thresholds(forecast, target, basis=basis, round_to=round_to)
    suggested = rules_with_thresholds(rules, thresholds)
    current_tiers, current_moves = _side(forecast, rules)
    suggested_tiers, suggested_moves = _side(forecast, suggested)
    retier = np.sign(member_tier_index(forecast.spend_365d, suggested) - member_tier_index(forecast.spend_365d, rules))
    tiers = [{"name": t.name, "name_en": t.name_en, "target_share": round(float(target[i]), 6),
              "current": current_tiers[i], "suggested": suggested_tiers[i]}
             for i, t in enumerate(rules.member_tiers)]
    n = len(forecast.rows)
    no_spend = {"point": float(np.mean(forecast.expected <= 0)),
                "distribution": float(1.0 - forecast.prob_reach([1e-9])[:, 0].mean())}
    notes = []
    for t in tiers:
        got = t["suggested"]["predicted"] / n if basis == "point" else t["suggested"]["expected_share"]
        if abs(got - t["target_share"]) > 0.005:
            notes.append(f"{t['name']} ({t['name_en']}): {got:.1%} of members on the {basis} basis against the "
                         f"target {t['target_share']:.1%} (thresholds are multiples of --round-to {round_to:g}, each "
                         "above the one below, and cannot split members tied at one predicted spend: "
                         f"{no_spend[basis]:.1%} have none at all by as_of + H on this basis)")
    summary = {
        "horizon_days": forecast.horizon_days,
        "members": n,
        "not_scored": len(scores) - n,
        "basis": basis,
        "round_to": round_to,
        "no_spend_share": {k: round(v, 4) for k, v in no_spend.items()},
        "interval_mean_matched_share": round(float(forecast.distribution.mean_matched.mean()), 4),
        "tiers": tiers,
        "moves": {"current": current_moves, "suggested": suggested_moves},
        "retiered_now": {"up": int((retier > 0).sum()), "down": int((retier < 0).sum()),
                         "stay": int((retier == 0).sum())},
        "notes": notes,
    }
    return TierSuggestion(rules=suggested, summary=summary)


def rules_yaml(rules: TierRules) -> str:
    """``rules`` as a tier rules YAML file (``--tiers`` / ``SCRM_TIERS`` / ``brand.yaml`` ``tiers:`` read it)."""
    import yaml

    header = ("# Member-tier rules written by `scrm tiers suggest` (docs/decisions.md); use with --tiers FILE,\n"
              "# SCRM_TIERS=FILE or `tiers: FILE` in the data directory's brand.yaml.\n")
    return header + yaml.safe_dump(rules.model_dump(), allow_unicode=True, sort_keys=False)
