"""Every metric key the project logs to MLflow, with the direction `scrm runs compare` must give it.

``*`` stands for a table, feature, family or eligibility group. Tests that run training, the backtest, lookalike
and drift check that each key their run logged matches a pattern here (:func:`unlisted`), so a new metric cannot
be logged without deciding its direction; ``test_metric_directions.py`` checks each direction.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

_CHURN = {"auc": "higher", "pr_auc": "higher", "brier": "lower", "lift_at_10pct": "higher", "ece": "lower"}
_CLV = {"gini": "higher", "spearman": "higher", "total_error_pct": "abs_lower", "decile_mape": "lower",
        "interval_coverage": "closer_to_nominal"}

METRICS: dict[str, str | None] = {
    # scrm train (training/train.py): validation figures, family selection, data rows, the gate
    **{f"val.{k}": d for k, d in {**_CHURN, **_CLV}.items()},
    "selection.*.auc": "higher",
    "selection.*.gini": "higher",
    "selection.*.spearman": "higher",
    "selection.*.monotone_orders": None,
    "data.*.rows_read": None,
    "data.*.rows_used": None,
    "data.*.rows_rejected": None,
    "val.total_error_pct_before_level": "abs_lower",  # the CLV total before its level calibration
    "gate.new_value": None,
    # the training person sample (training/frames.py draw_sample): its size and share, and the bootstrap
    # standard error of the validation AUC / Gini (noise, not quality: no direction)
    "sample.people": None,
    "sample.fraction": None,
    "sample.val_auc_se": None,
    "sample.val_gini_se": None,
    "gate.champion_value": None,
    # scrm backtest (training/backtest.py): model, validation, baselines, oracle and the gap to it
    **{f"churn.{scope}.{k}": d for scope in ("model", "validation") for k, d in _CHURN.items()},
    **{f"churn.baselines.btyd.{k}": d for k, d in _CHURN.items()},
    "churn.baselines.recency.auc": "higher",
    "churn.baselines.recency.pr_auc": "higher",
    "churn.baselines.recency.lift_at_10pct": "higher",
    "churn.selection.*.auc": "higher",
    **{f"clv.{scope}.{k}": d for scope in ("model", "validation") for k, d in _CLV.items()},
    **{f"clv.baselines.{b}.{k}": d for b in ("btyd_gg", "last_period") for k, d in _CLV.items()
       if k != "interval_coverage"},
    "clv.interval_level": None,
    # the CLV level calibration (training/clv.py): its factor, the validation totals and the calendar it used
    "clv.level.factor": None,
    "clv.level.factor_at_as_of": None,
    # after the refit (training/fitting.py): the chosen model's factor, times its total over the refit's at as_of
    "clv.level.chosen_factor": None,
    "clv.level.refit_total_ratio": None,
    # ... shrunk towards 1 by the drift of the chosen model's error over the windows it had not seen
    "clv.level.carried_factor": None,
    "clv.level.drift.drift": None,
    "clv.level.drift.drift_raw": None,
    "clv.level.drift.drift_seasonal": None,
    "clv.level.drift.weight": None,
    "clv.level.drift.tolerance": None,
    "clv.level.calendar.*": None,
    "clv.level.seasonal.lifts.*": None,
    "clv.level.seasonal.occurrences.*": None,
    "clv.level.validation_actual_total": None,
    "clv.level.validation_predicted_total": None,
    "clv.level.validation_seasonal_index": None,
    "clv.level.validation_total_error_pct_before": "abs_lower",
    # how each CLV score ranks a window where most spend nothing (training/backtest.py clv_ranking)
    **{f"clv.ranking.{scope}.{k}": d for scope in ("model", "baselines.btyd_gg", "baselines.last_period")
       for k, d in {"auc_spends": "higher", "spearman_spenders": "higher", "tied_share": None}.items()},
    "clv.ranking.baselines.last_period.spearman_ties_broken": "higher",
    "clv.selection.*.gini": "higher",
    "clv.selection.*.spearman": "higher",
    "clv.selection.*.monotone_orders": None,
    "oracle.churn_auc": "higher",
    "oracle.clv_spearman": "higher",
    "oracle.clv_gini": "higher",
    "oracle.coverage": None,
    "oracle_gap.churn_auc": "lower",  # oracle − model: a widening gap is worse
    "oracle_gap.clv_spearman": "lower",
    # the backtest's uplift block (training/uplift_campaigns.py), when the data has campaigns with control groups
    **{f"uplift.{scope}.{k}": "higher" for scope in ("model", "baselines.by_churn_risk", "baselines.by_clv",
                                                     "baselines.random")
       for k in ("qini", "auuc", "uplift_at_30pct", "incremental_at_30pct", "true_incremental_at_30pct",
                 "true_incremental_spend_at_30pct", "true_qini")},
    "uplift.validation_qini.*": None,
    "uplift.ate.estimate": None,
    "uplift.true_ate": None,
    "uplift.n_train": None,
    "uplift.n_eval": None,
    "uplift.engaged_share": None,  # the treated share that engaged: describes the data, no better or worse
    **{f"oracle.uplift_{k}": "higher" for k in ("qini", "auuc", "uplift_at_30pct", "incremental_at_30pct",
                                                 "true_incremental_at_30pct", "true_incremental_spend_at_30pct",
                                                 "true_qini")},
    # the backtest's tiers block (training/tier_backtest.py): the tier-move probabilities against realised moves
    "tiers.horizon_days": None,
    "tiers.members": None,
    "tiers.tier_accuracy.*": None,
    "tiers.movers.*": None,
    "tiers.moves.*.brier": "lower",
    "tiers.moves.*.ece": "lower",
    "tiers.moves.*.brier_constant": None,
    "tiers.moves.*.mean_p": None,
    "tiers.moves.*.realised_rate": None,
    # scrm lookalike (training/lookalike.py)
    "holdout.recall_at_1pct": "higher",
    "holdout.recall_at_5pct": "higher",
    "holdout.recall_at_10pct": "higher",
    "holdout.lift_at_1pct": "higher",
    "holdout.lift_at_5pct": "higher",
    "holdout.lift_at_10pct": "higher",
    "holdout.auc": "higher",
    "holdout.n_seeds": None,
    "holdout.n_train_seeds": None,
    "holdout.n_candidates": None,
    # scrm drift (training/drift.py)
    "drift.*.psi": "lower",
    "drift.*.js": "lower",
    "drift.score.*.psi": "lower",
    "drift.score.*.js": "lower",
    "drift.population.change_pct": "abs_lower",
    "drift.population.current": None,
    "drift.eligibility.*.delta_pts": "abs_lower",
    "drift.n_ok": None,
    "drift.n_warn": "lower",
    "drift.n_alert": "lower",
}


def unlisted(keys) -> list[str]:
    """The logged metric keys no pattern of :data:`METRICS` covers."""
    return sorted(k for k in keys if not any(fnmatchcase(k, pattern) for pattern in METRICS))


def example(pattern: str) -> str:
    """A concrete key for a pattern (``*`` → a plausible name)."""
    return pattern.replace("*", "recency_days")
