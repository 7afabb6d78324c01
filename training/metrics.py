"""Evaluation metrics for churn, CLV and lookalike models, and the direction in which each one is better.

All functions take array-likes, drop rows where any input is NaN (so a missing prediction never counts as a
wrong one, and is never silently imputed), and return ``nan`` rather than raising when a metric is undefined
on the data (one class only, zero total, too few rows). Ties in the scores are handled without depending on
row order: ranked metrics (lift, recall@K, Gini) count tied rows at a cut-off in proportion, as random
tie-breaking would in expectation.

Metric names follow the MLflow conventions in ``docs/architecture.md``: the last dotted segment of a metric
key names the measure, and :func:`metric_direction` says which way is better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "auc",
    "pr_auc",
    "brier",
    "lift_at",
    "ece",
    "gini_normalized",
    "spearman",
    "total_error_pct",
    "decile_mape",
    "interval_coverage",
    "churn_metrics",
    "clv_metrics",
    "recall_at_k",
    "expansion_curve",
    "gains_table",
    "metric_direction",
    "is_better",
    "frac_label",
]


# --------------------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------------------
def _clean(*arrays: ArrayLike) -> list[np.ndarray]:
    """Float arrays of equal length with every row holding a NaN in any of them dropped."""
    arrs = [np.asarray(pd.to_numeric(pd.Series(np.asarray(a).ravel()), errors="raise"), dtype=float)
            for a in arrays]
    n = len(arrs[0])
    for a in arrs[1:]:
        if len(a) != n:
            raise ValueError(f"inputs must have the same length, got {[len(x) for x in arrs]}")
    keep = np.ones(n, dtype=bool)
    for a in arrs:
        keep &= ~np.isnan(a)
    return [a[keep] for a in arrs]


def _binary(y: np.ndarray, name: str = "y") -> np.ndarray:
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"{name} must be 0/1 (or boolean); found values {np.unique(y[bad])[:5].tolist()}")
    return y


def _check_frac(frac: float) -> float:
    frac = float(frac)
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    return frac


def frac_label(frac: float) -> str:
    """Key suffix for a population share: ``0.1 -> "10pct"``, ``0.01 -> "1pct"``, ``0.005 -> "0.5pct"``."""
    return f"{round(float(frac) * 100, 6):g}pct"


def _top_k_sum(values: np.ndarray, scores: np.ndarray, k: float) -> float:
    """Expected sum of ``values`` over the ``k`` highest ``scores``, splitting tied scores at the cut-off
    in proportion (the expectation under random tie-breaking). ``k`` may be fractional."""
    n = len(scores)
    if k <= 0 or n == 0:
        return 0.0
    if k >= n:
        return float(values.sum())
    order = np.argsort(-scores, kind="stable")
    s, v = scores[order], values[order]
    kk = int(math.ceil(k))
    threshold = s[kk - 1]
    above = s > threshold
    tied = s == threshold
    n_above = int(above.sum())
    take_tied = k - n_above
    return float(v[above].sum() + take_tied * v[tied].mean())


# --------------------------------------------------------------------------------------------------------------
# Classification (churn)
# --------------------------------------------------------------------------------------------------------------
def auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve.

    Parameters
    ----------
    y : array-like of {0, 1}
        Observed outcome (1 = churned).
    p : array-like of float
        Predicted score; higher means more likely 1.

    Returns
    -------
    float
        ROC AUC (0.5 = random, 1 = perfect); ``nan`` when only one class is present.
    """
    y, p = _clean(y, p)
    _binary(y)
    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, p))


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the precision-recall curve, as average precision (scikit-learn's step-wise definition).

    Random scoring gives the positive rate; ``nan`` when there is no positive.
    """
    y, p = _clean(y, p)
    _binary(y)
    if y.sum() == 0 or len(y) == 0:
        return math.nan
    return float(average_precision_score(y, p))


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared difference between the predicted probability and the 0/1 outcome.

    Lower is better; 0 is perfect, a constant prediction of the base rate ``r`` scores ``r (1 - r)``.
    """
    y, p = _clean(y, p)
    _binary(y)
    if len(y) == 0:
        return math.nan
    return float(np.mean((p - y) ** 2))


def lift_at(y: ArrayLike, p: ArrayLike, frac: float = 0.1) -> float:
    """Lift in the top ``frac`` of scores: outcome rate there divided by the overall outcome rate.

    Parameters
    ----------
    y : array-like of {0, 1}
    p : array-like of float
    frac : float, default 0.1
        Share of the population targeted (``0.1`` = top 10%); ``frac * n`` rows are taken, tied scores at
        the cut-off counted in proportion.

    Returns
    -------
    float
        1 = no better than random; ``nan`` when there is no positive.
    """
    frac = _check_frac(frac)
    y, p = _clean(y, p)
    _binary(y)
    n = len(y)
    if n == 0 or y.sum() == 0:
        return math.nan
    k = frac * n
    rate_top = _top_k_sum(y, p, k) / k
    return float(rate_top / y.mean())


def ece(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins on [0, 1].

    ``sum_b (n_b / n) * |mean(y in b) - mean(p in b)|``; lower is better, 0 = perfectly calibrated.
    Probabilities outside [0, 1] are an error.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _clean(y, p)
    _binary(y)
    if len(y) == 0:
        return math.nan
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"probabilities must lie in [0, 1]; found min {p.min():.4g}, max {p.max():.4g}")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / len(y))


# --------------------------------------------------------------------------------------------------------------
# Regression / ranking (CLV)
# --------------------------------------------------------------------------------------------------------------
def _gains_area(actual: np.ndarray, pred: np.ndarray) -> float:
    """Area under the cumulative-gains (Lorenz) curve: x = share of people by descending ``pred``, y = share
    of total ``actual``; tied predictions form one straight segment."""
    order = np.argsort(-pred, kind="stable")
    a, s = actual[order], pred[order]
    # collapse ties into groups
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    group_sum = np.add.reduceat(a, starts)
    group_n = np.diff(np.r_[starts, len(a)])
    x = np.r_[0.0, np.cumsum(group_n)] / len(a)
    yv = np.r_[0.0, np.cumsum(group_sum)] / a.sum()
    return float(np.sum((x[1:] - x[:-1]) * (yv[1:] + yv[:-1]) / 2))


def gini_normalized(actual: ArrayLike, pred: ArrayLike) -> float:
    """Normalised Gini: the model's Gini divided by the Gini of a perfect ranking.

    The Gini is the area between the cumulative-gains curve (share of total ``actual`` captured when people
    are taken by descending ``pred``) and the diagonal. 1 = ranks as well as the truth, 0 = random. Equal to
    the Kaggle ``normalized_gini`` without ties, and to ``2 * AUC - 1`` for a 0/1 ``actual``.

    Returns
    -------
    float
        ``nan`` when ``actual`` sums to zero or a perfect ranking has no Gini (all values equal).
    """
    a, p = _clean(actual, pred)
    if len(a) < 2 or a.sum() == 0:
        return math.nan
    perfect = _gains_area(a, a) - 0.5
    if perfect == 0:
        return math.nan
    return float((_gains_area(a, p) - 0.5) / perfect)


def _rank(x: np.ndarray) -> np.ndarray:
    return pd.Series(x).rank(method="average").to_numpy()


def spearman(actual: ArrayLike, pred: ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties); ``nan`` when either side is constant."""
    a, p = _clean(actual, pred)
    if len(a) < 2:
        return math.nan
    ra, rp = _rank(a), _rank(p)
    if ra.std() == 0 or rp.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rp)[0, 1])


def spend_ranking(actual: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """How a CLV score ranks a window in which most people spend nothing.

    ``auc_spends``: AUC of the score for spending anything in the window; ``spearman_spenders``: Spearman among
    the people who spent; ``tied_share``: share of people in the score's largest group of equal values.
    Spearman over everyone uses average ranks for ties, so a score that is 0 for about as many people as spend
    nothing (last period's spend) gains from its tie alone; these figures tell that apart from ranking better.
    """
    a, p = _clean(actual, pred)
    spent = a > 0
    _, counts = np.unique(p, return_counts=True)
    return {"auc_spends": auc(spent.astype(int), p) if 0 < spent.sum() < len(a) else math.nan,
            "spearman_spenders": spearman(a[spent], p[spent]),
            "tied_share": float(counts.max() / len(p)) if len(p) else math.nan}


def ties_broken(score: ArrayLike, by: ArrayLike) -> np.ndarray:
    """Ranks ``0 … n-1`` ordering by ``score``, its ties ordered by ``by`` (a tie-free version of ``score``)."""
    order = np.lexsort((np.asarray(by, dtype=float), np.asarray(score, dtype=float)))
    out = np.empty(len(order), dtype=float)
    out[order] = np.arange(len(order), dtype=float)
    return out


def total_error_pct(actual: ArrayLike, pred: ArrayLike) -> float:
    """Error of the predicted total in percent: ``(sum(pred) - sum(actual)) / sum(actual) * 100``.

    Positive = over-forecast. Better when ``|x|`` is smaller. ``nan`` when ``sum(actual) == 0``.
    """
    a, p = _clean(actual, pred)
    total = a.sum()
    if total == 0:
        return math.nan
    return float((p.sum() - total) / total * 100)


def _decile_groups(pred: np.ndarray, n: int) -> list[np.ndarray]:
    """Row indices of ``n`` near-equal groups by descending ``pred`` (group 0 = highest predictions)."""
    order = np.argsort(-pred, kind="stable")
    return [g for g in np.array_split(order, n) if len(g)]


def decile_mape(actual: ArrayLike, pred: ArrayLike, n: int = 10) -> float:
    """Mean absolute percentage error of per-decile totals, in percent.

    People are sorted by ``pred`` (descending) and split into ``n`` near-equal groups; per group
    ``|sum(pred) - sum(actual)| / |sum(actual)|``; the mean over groups times 100. Groups whose actual total is
    zero are left out (their percentage error is undefined). Lower is better.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    a, p = _clean(actual, pred)
    errors = []
    for g in _decile_groups(p, n):
        act = a[g].sum()
        if act != 0:
            errors.append(abs(p[g].sum() - act) / abs(act))
    if not errors:
        return math.nan
    return float(np.mean(errors) * 100)


def interval_coverage(actual: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Share of ``actual`` values inside ``[lo, hi]`` (inclusive).

    An 80% interval should cover about 0.8: better when closer to the nominal level.
    """
    a, low, high = _clean(actual, lo, hi)
    if len(a) == 0:
        return math.nan
    if (low > high).any():
        raise ValueError(f"{int((low > high).sum())} interval(s) have lo > hi")
    return float(np.mean((a >= low) & (a <= high)))


# --------------------------------------------------------------------------------------------------------------
# Model figures (what a training run, the backtest and the report record for each model)
# --------------------------------------------------------------------------------------------------------------
def churn_metrics(y_churned, p) -> dict[str, float]:
    """Churn quality figures (``y_churned`` = 1 for churners, ``p`` = predicted churn probability)."""
    y = np.asarray(y_churned, dtype=int)
    p = np.asarray(p, dtype=float)
    return {
        "auc": auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier(y, p),
        "lift_at_10pct": lift_at(y, p, frac=0.1),
        "ece": ece(y, p),
    }



def clv_metrics(actual, pred, lo=None, hi=None) -> dict[str, float]:
    """CLV quality figures; ``interval_coverage`` only when bounds are given."""
    actual = np.asarray(actual, dtype=float)
    pred = np.asarray(pred, dtype=float)
    out = {
        "gini": gini_normalized(actual, pred),
        "spearman": spearman(actual, pred),
        "total_error_pct": total_error_pct(actual, pred),
        "decile_mape": decile_mape(actual, pred),
    }
    if lo is not None and hi is not None:
        out["interval_coverage"] = interval_coverage(actual, np.asarray(lo, dtype=float),
                                                       np.asarray(hi, dtype=float))
    return out



# --------------------------------------------------------------------------------------------------------------
# Targeting (lookalike, gains)
# --------------------------------------------------------------------------------------------------------------
def recall_at_k(
    is_positive: ArrayLike, scores: ArrayLike, fracs: Sequence[float] = (0.01, 0.05, 0.1)
) -> dict[str, float]:
    """Share of positives found in the top ``frac`` of scores, and the lift of that over random targeting.

    Parameters
    ----------
    is_positive : array-like of {0, 1}
        1 for the people that should be found (e.g. held-out seeds), over the whole scored population.
    scores : array-like of float
    fracs : sequence of float, default (0.01, 0.05, 0.1)
        Population shares K.

    Returns
    -------
    dict
        ``recall_at_<K>pct`` (0..1) and ``lift_at_<K>pct`` (recall / K; 1 = random) for each K, e.g.
        ``{"recall_at_1pct": 0.12, "lift_at_1pct": 12.0, ...}``; ``nan`` values when there is no positive.
    """
    y, s = _clean(is_positive, scores)
    _binary(y, "is_positive")
    out: dict[str, float] = {}
    n, n_pos = len(y), y.sum()
    for frac in fracs:
        frac = _check_frac(frac)
        label = frac_label(frac)
        if n == 0 or n_pos == 0:
            out[f"recall_at_{label}"] = math.nan
            out[f"lift_at_{label}"] = math.nan
            continue
        recall = _top_k_sum(y, s, frac * n) / n_pos
        out[f"recall_at_{label}"] = float(recall)
        out[f"lift_at_{label}"] = float(recall / frac)
    return out


def expansion_curve(is_positive: ArrayLike, scores: ArrayLike, *, n_points: int = 100) -> pd.DataFrame:
    """Recall of the positives as the targeted audience grows from the top score down.

    Parameters
    ----------
    is_positive : array-like of {0, 1}
        1 for held-out positives (e.g. seeds not used for training) in the scored population.
    scores : array-like of float
    n_points : int, default 100
        Audience sizes evaluated, evenly spaced shares ``1/n_points .. 1``.

    Returns
    -------
    DataFrame
        ``frac`` (share of the population targeted), ``size`` (people), ``recall`` (share of positives
        captured), ``lift`` (recall / frac; 1 = random), ``random_recall`` (= frac).
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    y, s = _clean(is_positive, scores)
    _binary(y, "is_positive")
    n, n_pos = len(y), y.sum()
    fracs = np.arange(1, n_points + 1) / n_points
    recall = np.array([_top_k_sum(y, s, f * n) / n_pos if n_pos else math.nan for f in fracs])
    return pd.DataFrame(
        {
            "frac": fracs,
            "size": np.round(fracs * n).astype(int),
            "recall": recall,
            "lift": recall / fracs,
            "random_recall": fracs,
        }
    )


def gains_table(y: ArrayLike, p: ArrayLike, n: int = 10) -> pd.DataFrame:
    """Per-decile table after sorting by ``p`` descending (decile 1 = highest scores).

    Works for a 0/1 outcome (churn: ``actual_mean`` is the churn rate) and for amounts (CLV: sums and means of
    spend). Ties in ``p`` keep input order across group boundaries.

    Returns
    -------
    DataFrame
        ``decile``, ``n``, ``p_min``, ``p_max``, ``pred_sum``, ``pred_mean``, ``actual_sum``, ``actual_mean``,
        ``cum_share_population``, ``cum_gain`` (share of total actual captured so far), ``lift``
        (group mean / overall mean), ``cum_lift``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    a, s = _clean(y, p)
    rows = []
    total, mean_all = a.sum(), a.mean() if len(a) else math.nan
    cum_n, cum_a = 0, 0.0
    for i, g in enumerate(_decile_groups(s, n), start=1):
        cum_n += len(g)
        cum_a += a[g].sum()
        act_mean = a[g].mean()
        rows.append(
            {
                "decile": i,
                "n": len(g),
                "p_min": s[g].min(),
                "p_max": s[g].max(),
                "pred_sum": s[g].sum(),
                "pred_mean": s[g].mean(),
                "actual_sum": a[g].sum(),
                "actual_mean": act_mean,
                "cum_share_population": cum_n / len(a),
                "cum_gain": cum_a / total if total else math.nan,
                "lift": act_mean / mean_all if mean_all else math.nan,
                "cum_lift": (cum_a / cum_n) / mean_all if mean_all else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# Directions (used by `scrm runs compare`, the report and the promotion gate)
# --------------------------------------------------------------------------------------------------------------
_HIGHER = {"auc", "pr_auc", "gini", "spearman", "churn_auc", "clv_spearman", "clv_gini", "r2", "accuracy",
           "precision", "recall", "f1", "lift",
           # uplift (training/uplift_campaigns.py): Qini / AUUC areas, uplift and incremental conversions in the top 30%
           "qini", "auuc", "uplift_at_30pct", "incremental_at_30pct", "true_incremental_at_30pct",
           "true_incremental_spend_at_30pct", "true_qini"}
_LOWER = {"brier", "ece", "decile_mape", "logloss", "log_loss", "mae", "mse", "rmse", "mape"}
_ABS_LOWER = {"total_error_pct"}
_NOMINAL = {"interval_coverage"}
_HIGHER_PREFIX = re.compile(r"^(recall_at_|lift_|gini_|auc_|spearman_|uplift_)")
#: Errors and losses of any kind (``mean_abs_error``, ``pinball_loss``, ``errors``): lower is better.
_LOWER_PATTERN = re.compile(r"(^|_)(errors?|loss)($|_)")
#: Namespaces whose figures are bookkeeping, not quality: gate inputs, row counts.
_NO_DIRECTION_NAMESPACES = {"gate", "data"}
_DRIFT_LOWER = {"psi", "js"}
_DRIFT_ABS_LOWER = {"change_pct", "delta_pts"}


def metric_direction(name: str) -> str | None:
    """Which way a metric is better, from its whole dotted key.

    Parameters
    ----------
    name : str
        Metric key, e.g. ``"val.auc"``, ``"churn.baselines.btyd.auc"``, ``"oracle_gap.churn_auc"``,
        ``"drift.recency_days.psi"``.

    Returns
    -------
    {"higher", "lower", "abs_lower", "closer_to_nominal"} or None
        The namespace decides first: anything under a ``*gap`` segment (``oracle_gap.churn_auc`` = oracle −
        model) is ``lower``; ``drift.*``: PSI / JS distance and alert/warn counts ``lower``, population and
        eligibility changes ``abs_lower``; ``gate.*``, ``data.*`` and ``selection.*.monotone_orders`` have no
        direction. Then the measure (last segment): ``higher`` for auc, pr_auc, gini, spearman, churn_auc,
        clv_spearman, clv_gini, recall_at_*, lift_*, the uplift figures (qini, auuc, uplift_at_30pct,
        incremental_at_30pct, their true_* forms and true_qini); ``lower`` for brier, ece, decile_mape, log loss and any
        error or loss (``*_error``, ``*_loss``); ``abs_lower`` for total_error_pct (|x| smaller is better);
        ``closer_to_nominal`` for interval_coverage (nominal level: param ``interval_level``, default 0.8);
        ``None`` when the measure has no known direction (row counts, coverage of the truth, gate figures, ...).
        ``tests/training/test_metric_directions.py`` lists every key the project logs with its direction.
    """
    parts = [p.strip().lower() for p in str(name).split(".")]
    measure = parts[-1]
    if parts[0] in _NO_DIRECTION_NAMESPACES:
        return None
    if any(p == "gap" or p.endswith("_gap") or p.startswith("gap_") for p in parts):
        return "lower"  # a gap to a ceiling (oracle − model): smaller is better whatever the measure
    if parts[0] == "drift":
        if measure in _DRIFT_LOWER or measure in ("n_alert", "n_warn"):
            return "lower"
        if measure in _DRIFT_ABS_LOWER:
            return "abs_lower"
        return None
    if any(m in measure for m in _ABS_LOWER):  # also total_error_pct_before_level and the like: signed errors
        return "abs_lower"
    if measure in _NOMINAL:
        return "closer_to_nominal"
    if measure in _LOWER or _LOWER_PATTERN.search(measure):
        return "lower"
    if measure in _HIGHER or _HIGHER_PREFIX.match(measure):
        return "higher"
    return None


def is_better(name: str, new: float, old: float, *, nominal: float = 0.8) -> bool | None:
    """Whether ``new`` is strictly better than ``old`` for metric ``name``.

    Returns ``None`` when the direction is unknown or either value is missing/NaN. ``nominal`` is the target
    for ``closer_to_nominal`` metrics (the run's ``interval_level``).
    """
    direction = metric_direction(name)
    if direction is None or new is None or old is None:
        return None
    new, old = float(new), float(old)
    if math.isnan(new) or math.isnan(old):
        return None
    if direction == "higher":
        return new > old
    if direction == "lower":
        return new < old
    if direction == "abs_lower":
        return abs(new) < abs(old)
    return abs(new - nominal) < abs(old - nominal)
