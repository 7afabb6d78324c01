"""Backtest of the tier forecast: predicted tier moves against the tier each member realised at ``as_of + H``.

:func:`tier_backtest` judges the columns :func:`training.decisions.tier_forecast.predict_tiers` adds to the scores
(``predicted_tier``, ``tier_move``, ``p_tier_up`` / ``p_tier_down`` / ``p_tier_stay``) with the trailing-12-month
spend each scored member actually had at ``as_of + H`` (:func:`realised_trailing_spend`), under the same tier rules:

* ``moves.<up|down|stay>``: per move, the mean predicted probability next to the realised rate, the Brier score next
  to that of a constant at the realised rate (``brier_constant``), the expected calibration error and the
  reliability table (members binned by predicted probability, equal-width bins: mean predicted and realised rate);
* ``movers``: how many members move up / down, realised, expected (the sum of the probabilities) and counted on
  ``tier_move`` (the tier of the expected spend);
* ``tier_accuracy``: the share whose predicted tier is the realised one, next to keeping today's tier.

``scrm backtest`` writes it as the ``tiers`` block (the CLV horizon's window), and
``benchmarks/bench_tier_calibration.py`` prints it for a simulated brand.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from features.labels import build_labels
from training.decisions.tier_forecast import YEAR_DAYS, tier_forecast
from training.decisions.tiers import TierRules, load_tier_rules, member_tier_index
from training.frames import FeatureCache, as_date
from training.metrics import brier, ece

#: Moves judged, with the sign of the tier change each stands for.
MOVES = {"up": 1, "down": -1, "stay": 0}


def realised_trailing_spend(cache: FeatureCache, scores: pd.DataFrame, as_of, horizon_days: int) -> np.ndarray:
    """Paid spend of the 365 days ending at ``as_of + H`` per row of ``scores`` (people as resolved at ``as_of``).

    For ``H <= 365`` it is the carried-over spend the forecast read at ``as_of`` (``spend_carryover``, exact when
    the snapshot has the ``spend_<365-H>d`` window; 0 for ``H = 365``) plus the realised spend of ``[as_of,
    as_of + H)``; for a longer horizon, the realised spend of its last 365 days. People without an order in the
    window spent 0.
    """
    as_of = as_date(as_of)
    horizon = int(horizon_days)
    if horizon <= YEAR_DAYS:
        window = cache.labels(as_of, horizon)  # the backtest's CLV labels: computed once
        carry = (np.nan_to_num(pd.to_numeric(scores["spend_carryover"], errors="coerce").to_numpy(dtype=float),
                               nan=0.0) if horizon < YEAR_DAYS else 0.0)
    else:
        window = build_labels(cache.data, as_of + timedelta(days=horizon - YEAR_DAYS), YEAR_DAYS,
                              identity=cache.identity_at(as_of))
        carry = 0.0
    spent = (scores[["person_id"]].merge(window[["person_id", "future_spend"]], on="person_id", how="left")
             ["future_spend"].fillna(0.0).to_numpy(dtype=float))
    return carry + spent


def reliability(p, outcome, n_bins: int = 10) -> list[dict]:
    """Members binned by predicted probability (``n_bins`` equal-width bins on [0, 1], empty bins left out): per
    bin its range, count, mean predicted probability and realised rate."""
    p, y = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        inside = which == b
        if inside.any():
            out.append({"bin": [round(float(edges[b]), 4), round(float(edges[b + 1]), 4)], "n": int(inside.sum()),
                        "mean_p": round(float(p[inside].mean()), 4), "realised": round(float(y[inside].mean()), 4)})
    return out


def tier_backtest(scores: pd.DataFrame, realised_spend_365d, rules: TierRules | None = None,
                  *, n_bins: int = 10) -> dict:
    """The ``tiers`` block (see the module docstring) for the scored rows of ``scores``.

    Parameters
    ----------
    scores : DataFrame
        From :func:`training.scoring.score` with the predicted-tier columns (``p_tier_*``, ``tier_move``).
    realised_spend_365d : array-like
        The trailing-12-month paid spend each row realised at ``as_of + H`` (row for row with ``scores``).
    rules : TierRules, optional
        The tier rules the forecast used (default: the packaged ones).
    """
    rules = rules or load_tier_rules()
    realised_all = np.asarray(realised_spend_365d, dtype=float)
    if len(realised_all) != len(scores):
        raise ValueError(f"realised_spend_365d has {len(realised_all)} rows, scores {len(scores)}")
    forecast = tier_forecast(scores)
    moves = forecast.moves(rules)
    rows = forecast.rows
    realised_tier = member_tier_index(realised_all[rows], rules)
    realised_move = np.sign(realised_tier - moves["current"])
    n = len(rows)
    block: dict = {
        "horizon_days": forecast.horizon_days,
        "members": n,
        "tier_accuracy": {"predicted": round(float(np.mean(moves["predicted"] == realised_tier)), 4) if n else None,
                          "keep_today": round(float(np.mean(moves["current"] == realised_tier)), 4) if n else None},
        "movers": {},
        "moves": {},
    }
    for name, sign in MOVES.items():
        happened = (realised_move == sign).astype(float)
        if name != "stay":
            block["movers"][name] = {"realised": int(happened.sum()),
                                     "expected": round(float(np.nansum(moves[f"p_{name}"])), 1),
                                     "tier_move": int((moves["move"] == sign).sum())}
        p = moves[f"p_{name}"]
        if not n or not np.isfinite(p).all():  # scored without the CLV interval: no probabilities to judge
            block["moves"][name] = {"realised_rate": round(float(happened.mean()), 4) if n else None}
            continue
        rate = float(happened.mean())
        block["moves"][name] = {
            "mean_p": round(float(p.mean()), 4), "realised_rate": round(rate, 4),
            "brier": round(brier(happened, p), 5), "brier_constant": round(rate * (1.0 - rate), 5),
            "ece": round(ece(happened, p, n_bins), 5), "reliability": reliability(p, happened, n_bins),
        }
    return block
