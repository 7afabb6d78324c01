"""The plain words of the HTML run report: titles, baselines, measures, counts and charts as a marketer reads them.

:mod:`training.report` looks every label and explanation up here, so wording changes never touch its logic.
"""

from __future__ import annotations

KIND_TITLE = {
    "churn": "Churn risk model",
    "clv": "Customer lifetime value (CLV) model",
    "lookalike": "Lookalike audience",
    "backtest": "Backtest: churn and CLV models checked on past data",
}

BASELINE_NAMES = {
    "recency": "the simple recency rule",
    "btyd": "the BG/NBD buy-till-you-die formula",
    "btyd_gg": "the BG/NBD + Gamma-Gamma formula",
    "last_period": "the “same as last period” rule",
    "rfm": "the RFM score rule",
    "random": "random guessing",
    "prior": "the average rate for everyone",
    "family_btyd": "the BG/NBD + Gamma-Gamma formula alone",
    "family_lgbm": "LightGBM alone",
    "family_blend": "the blend of formula and LightGBM",
    "by_churn_risk": "targeting the highest churn risk",
    "by_clv": "targeting the highest CLV",
}

# measure → (label, what it means, phrase used in "the model <phrase> better than ...")
MEASURES = {
    "auc": (
        "AUC",
        "chance that a customer who left is ranked riskier than one who stayed: 0.5 is a coin toss, 1.0 is perfect",
        "ranks customers",
    ),
    "pr_auc": (
        "PR-AUC",
        "how precisely the customers who leave are found, averaged over all list lengths; higher is better",
        "finds the customers who leave",
    ),
    "brier": (
        "Brier score",
        "average squared gap between the predicted probability and what happened; lower is better",
        "predicts probabilities",
    ),
    "ece": (
        "calibration error",
        "average gap between predicted and observed rates across probability bands; lower is better",
        "is calibrated",
    ),
    "logloss": ("log loss", "penalty for confident wrong probabilities; lower is better", "predicts probabilities"),
    "lift_at_10pct": (
        "lift in the top 10%",
        "how many times more leavers are among the 10% flagged riskiest than in a random 10%",
        "concentrates leavers at the top of its list",
    ),
    "gini": (
        "Gini",
        "how well the order by predicted value matches the order by actual spend, relative to a perfect order (1.0)",
        "ranks customers by value",
    ),
    "auc_spends": (
        "AUC of spending at all",
        "chance that a customer who spends in the window is ranked above one who spends nothing: 0.5 is a coin toss",
        "tells who will spend at all",
    ),
    "spearman_spenders": (
        "Spearman among spenders",
        "rank agreement between predicted and actual spend among the customers who spent in the window",
        "orders the customers who spend by how much",
    ),
    "spearman": (
        "Spearman correlation",
        "rank agreement between predicted and actual spend: 1.0 means the same order",
        "orders customers by future spend",
    ),
    "total_error_pct": (
        "total spend error",
        "predicted total spend of all customers against the actual total, in percent; closer to 0 is better",
        "predicts total spend",
    ),
    "decile_mape": (
        "decile error",
        "average percentage gap between predicted and actual spend within each tenth of customers; lower is better",
        "predicts spend per customer group",
    ),
    "interval_coverage": (
        "range coverage",
        "share of customers whose actual spend fell inside the predicted low–high range; best near its nominal level",
        "sets its low–high ranges",
    ),
    "churn_auc": ("churn AUC", "AUC of the churn prediction", "ranks customers"),
    "qini": (
        "Qini",
        "area between the Qini curve (extra buyers as more of the campaign's audience is targeted, best first) and "
        "random targeting, as a share of the perfect ranking's: 0 is random, 1 is perfect",
        "finds the customers the campaign changes",
    ),
    "auuc": ("AUUC", "the same area for the uplift curve: 0 is random, 1 is perfect", "ranks by campaign effect"),
    "uplift_at_30pct": (
        "uplift in the top 30%",
        "treated minus control purchase rate among the 30% the ranking would target",
        "picks a top 30% the campaign moves",
    ),
    "incremental_at_30pct": (
        "extra buyers in the top 30%",
        "purchases the campaign adds if the top 30% of its audience by this ranking is treated (measured against "
        "the control group)",
        "adds purchases with 30% of the audience",
    ),
    "true_incremental_at_30pct": (
        "true extra buyers in the top 30%",
        "the simulator's true expected extra purchases in the top 30% (no sampling noise)",
        "adds purchases with 30% of the audience",
    ),
    "true_qini": (
        "true Qini",
        "the Qini on the simulator's true effects: 1 is the best possible ranking, 0 random (no sampling noise)",
        "finds the customers the campaign changes",
    ),
    "true_incremental_spend_at_30pct": (
        "true extra spend in the top 30%",
        "the simulator's true expected extra spend (CNY) in the top 30%",
        "adds spend with 30% of the audience",
    ),
    "clv_spearman": ("CLV Spearman", "Spearman correlation of the CLV prediction", "orders customers by value"),
}

COUNT_LABELS = {
    "n_customers": "customers (people after merging their channel accounts)",
    "n_people": "customers (people after merging their channel accounts)",
    "n_eligible": "customers eligible for the model",
    "n_ineligible": "customers not eligible",
    "n_scored": "customers scored",
    "n_train": "training rows (customers × cut-off dates)",
    "n_train_rows": "training rows (customers × cut-off dates)",
    "n_val": "validation customers",
    "n_valid_rows": "validation customers (latest complete window)",
    "n_calibration": "customers used to calibrate probabilities",
    "n_not_eligible": "customers not eligible",
    "n_validation": "validation customers",
    "n_test": "test customers",
    "n_seeds": "seed customers",
    "n_seed": "seed customers",
    "n_seeds_used": "seed customers used",
    "n_holdout": "seed customers held out to measure recall",
    "n_population": "population ranked",
    "n_candidates": "candidate customers ranked",
    "n_orders": "orders",
    "n_features": "features used",
    "n_seeds_given": "seed ids supplied",
    "seed_n_given": "seed people after matching ids to customers",
    "n_train_seeds": "seed customers the model learned from",
    "seed_n_valid": "seed customers usable",
    "audience_size": "audience size delivered",
}

CHARTS = {
    "roc": (
        "ROC curve",
        "The further the curve bows towards the top-left corner, the better the model separates customers who "
        "leave from those who stay; the diagonal is guessing.",
    ),
    "calibration": (
        "Calibration",
        "Predicted churn probability against the share who actually left. Points on the diagonal mean a "
        "predicted 30% really is about 30%.",
    ),
    "gains": (
        "Cumulative gains",
        "Share of all leavers caught when contacting the riskiest x% of customers first; the diagonal is random "
        "contact.",
    ),
    "clv_deciles": (
        "CLV by decile: predicted vs actual",
        "Customers split into ten groups by predicted value; bars of similar height mean the value predictions "
        "hold up group by group.",
    ),
    "expansion_curve": (
        "Audience expansion curve",
        "Share of held-out seed customers found as the audience grows; the steeper the early rise, the better "
        "the lookalike ranking.",
    ),
}

CHARTS_BY_KIND = {
    "churn": ("roc", "calibration", "gains"),
    "clv": ("clv_deciles",),
    "backtest": ("roc", "calibration", "gains", "clv_deciles"),
    "lookalike": ("expansion_curve",),
}
