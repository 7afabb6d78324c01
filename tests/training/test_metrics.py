"""Metric values against scikit-learn/scipy and hand-computed figures; directions per the MLflow conventions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training import metrics as m


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.35 * y + 0.65 * rng.uniform(size=2000), 0, 1)
    return y, p


@pytest.fixture(scope="module")
def spend_data():
    rng = np.random.default_rng(13)
    actual = rng.gamma(0.8, 120.0, 1500)
    pred = actual * rng.uniform(0.5, 1.5, 1500) + rng.uniform(0, 5, 1500)
    return actual, pred


def kaggle_normalized_gini(actual, pred):
    """The Kaggle reference implementation (valid without ties in ``pred``)."""

    def gini(a, p):
        data = np.asarray(np.c_[a, p, np.arange(len(a))], dtype=float)
        data = data[np.lexsort((data[:, 2], -1 * data[:, 1]))]
        total = data[:, 0].sum()
        g = data[:, 0].cumsum().sum() / total
        g -= (len(a) + 1) / 2.0
        return g / len(a)

    return gini(actual, pred) / gini(actual, actual)


# ------------------------------------------------------------------------------------------------ classification
def test_auc_pr_auc_brier_match_sklearn(binary_data):
    y, p = binary_data
    assert m.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m.pr_auc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert m.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_nan_rows_are_dropped_not_counted(binary_data):
    y, p = binary_data
    y_nan = y.astype(float).copy()
    p_nan = p.copy()
    y_nan[:10] = np.nan
    p_nan[10:20] = np.nan
    keep = np.ones(len(y), bool)
    keep[:20] = False
    assert m.auc(y_nan, p_nan) == pytest.approx(roc_auc_score(y[keep], p[keep]))
    assert m.brier(y_nan, p_nan) == pytest.approx(brier_score_loss(y[keep], p[keep]))
    assert m.spearman(pd.Series([1, 2, np.nan, 4]), [1, 2, 3, 4]) == pytest.approx(1.0)


def test_undefined_metrics_are_nan_not_errors():
    assert math.isnan(m.auc([1, 1, 1], [0.2, 0.3, 0.4]))
    assert math.isnan(m.pr_auc([0, 0], [0.2, 0.3]))
    assert math.isnan(m.lift_at([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(m.total_error_pct([0, 0], [1, 2]))
    assert math.isnan(m.gini_normalized([5, 5, 5], [1, 2, 3]))
    assert math.isnan(m.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(m.brier([np.nan], [0.5]))


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="0/1"):
        m.auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        m.brier([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.ece([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="frac"):
        m.lift_at([0, 1], [0.1, 0.2], frac=0)
    with pytest.raises(ValueError, match="lo > hi"):
        m.interval_coverage([1, 2], [0, 3], [2, 2])


def test_lift_at_hand_values():
    y = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    p = np.linspace(1, 0, 10)
    # top 10% = the first person, a positive: rate 1 vs base rate 0.2
    assert m.lift_at(y, p, frac=0.1) == pytest.approx(5.0)
    # top 30% holds both positives: 2/3 vs 0.2
    assert m.lift_at(y, p, frac=0.3) == pytest.approx((2 / 3) / 0.2)
    # constant scores: all tied, lift is exactly 1 whatever the row order
    assert m.lift_at(y, np.zeros(10), frac=0.1) == pytest.approx(1.0)
    assert m.lift_at(y[::-1], np.zeros(10), frac=0.1) == pytest.approx(1.0)


def test_ece_hand_value():
    # bin [0.1): |0.5 - 0.1| on half the rows, bin [0.9, 1]: |1 - 0.9| on the other half
    assert m.ece([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert m.ece([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert m.ece([1], [1.0]) == pytest.approx(0.0)  # p == 1 falls in the last bin


# ------------------------------------------------------------------------------------------------ CLV
def test_gini_matches_kaggle_reference_and_auc_identity(spend_data, binary_data):
    actual, pred = spend_data
    assert m.gini_normalized(actual, pred) == pytest.approx(kaggle_normalized_gini(actual, pred), abs=1e-9)
    assert m.gini_normalized(actual, actual) == pytest.approx(1.0)
    assert m.gini_normalized(actual, -actual) == pytest.approx(-1.0)
    y, p = binary_data
    # for a 0/1 outcome, normalised Gini = 2 AUC - 1 (ties in y handled the same way as AUC does)
    assert m.gini_normalized(y, p) == pytest.approx(2 * roc_auc_score(y, p) - 1, abs=1e-9)


def test_gini_ties_in_prediction_do_not_depend_on_row_order():
    actual = np.array([10.0, 0, 0, 5, 0, 1])
    pred = np.array([1.0, 1, 1, 0, 0, 0])
    order = np.array([2, 0, 5, 3, 1, 4])
    assert m.gini_normalized(actual, pred) == pytest.approx(m.gini_normalized(actual[order], pred[order]))
    assert m.gini_normalized(actual, np.ones(6)) == pytest.approx(0.0)


def test_spearman_matches_scipy(spend_data):
    actual, pred = spend_data
    assert m.spearman(actual, pred) == pytest.approx(spearmanr(actual, pred).statistic, abs=1e-12)
    ties = [1, 1, 2, 3, 3, 3]
    assert m.spearman(ties, [6, 5, 4, 3, 2, 2]) == pytest.approx(
        spearmanr(ties, [6, 5, 4, 3, 2, 2]).statistic
    )


def test_total_error_pct_and_decile_mape_hand_values():
    assert m.total_error_pct([100, 100], [110, 120]) == pytest.approx(15.0)
    assert m.total_error_pct([100, 100], [90, 90]) == pytest.approx(-10.0)
    # sorted by prediction: {8, 6} vs actual {10, 0} -> |14-10|/10; {4, 2} vs {5, 5} -> |6-10|/10
    assert m.decile_mape([10, 0, 5, 5], [8, 6, 4, 2], n=2) == pytest.approx(40.0)
    # a group whose actual total is zero has no percentage error and is left out: only |6-10|/10 counts
    assert m.decile_mape([0, 0, 5, 5], [8, 6, 4, 2], n=2) == pytest.approx(40.0)
    assert m.decile_mape([0, 0, 0, 1], [0, 0, 0, 5], n=2) == pytest.approx(400.0)
    assert m.decile_mape([3, 4], [3, 4], n=10) == pytest.approx(0.0)


def test_interval_coverage_hand_value():
    actual = [1.0, 2.0, 3.0, 4.0, np.nan]
    lo = [0.0, 2.0, 3.5, 0.0, 0.0]
    hi = [2.0, 2.0, 5.0, 3.0, 1.0]
    assert m.interval_coverage(actual, lo, hi) == pytest.approx(0.5)  # inclusive bounds; NaN row dropped


# ------------------------------------------------------------------------------------------------ targeting
def test_recall_at_k_hand_values():
    n = 200
    scores = np.arange(n, 0, -1, dtype=float)
    is_pos = np.zeros(n)
    is_pos[:10] = 1  # the 10 positives hold the top 10 scores
    out = m.recall_at_k(is_pos, scores)
    assert out["recall_at_1pct"] == pytest.approx(0.2)  # top 2 people
    assert out["lift_at_1pct"] == pytest.approx(20.0)
    assert out["recall_at_5pct"] == pytest.approx(1.0)
    assert out["recall_at_10pct"] == pytest.approx(1.0)
    assert out["lift_at_10pct"] == pytest.approx(10.0)
    assert set(out) == {f"{k}_at_{p}pct" for k in ("recall", "lift") for p in (1, 5, 10)}
    rand = m.recall_at_k(is_pos, np.zeros(n), fracs=(0.1,))
    assert rand["lift_at_10pct"] == pytest.approx(1.0)


def test_expansion_curve_shape(binary_data):
    y, p = binary_data
    curve = m.expansion_curve(y, p, n_points=20)
    assert list(curve.columns) == ["frac", "size", "recall", "lift", "random_recall"]
    assert len(curve) == 20
    assert curve["recall"].is_monotonic_increasing
    assert curve["recall"].iloc[-1] == pytest.approx(1.0)
    assert (curve["random_recall"] == curve["frac"]).all()
    assert curve["lift"].iloc[0] > 1.3  # informative scores beat random at the top
    assert curve.loc[curve["frac"].sub(0.1).abs().idxmin(), "recall"] == pytest.approx(
        m.recall_at_k(y, p, fracs=(0.1,))["recall_at_10pct"]
    )


def test_gains_table_accounts_for_everyone(spend_data):
    actual, pred = spend_data
    table = m.gains_table(actual, pred, n=10)
    assert list(table["decile"]) == list(range(1, 11))
    assert table["n"].sum() == len(actual)
    assert table["actual_sum"].sum() == pytest.approx(actual.sum())
    assert table["pred_sum"].sum() == pytest.approx(pred.sum())
    assert table["cum_gain"].iloc[-1] == pytest.approx(1.0)
    assert table["cum_lift"].iloc[-1] == pytest.approx(1.0)
    assert table["p_min"].is_monotonic_decreasing
    assert table["actual_mean"].iloc[0] > table["actual_mean"].iloc[-1]


def test_lift_matches_gains_table_top_decile(binary_data):
    y, p = binary_data
    assert m.lift_at(y, p, 0.1) == pytest.approx(m.gains_table(y, p)["lift"].iloc[0], rel=1e-9)


# ------------------------------------------------------------------------------------------------ directions
@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("val.auc", "higher"),
        ("val.pr_auc", "higher"),
        ("val.gini", "higher"),
        ("churn.model.lift_at_10pct", "higher"),
        ("churn.baselines.btyd.auc", "higher"),
        ("clv.model.spearman", "higher"),
        ("oracle.churn_auc", "higher"),
        ("oracle.clv_spearman", "higher"),
        ("lookalike.recall_at_5pct", "higher"),
        ("val.brier", "lower"),
        ("churn.model.ece", "lower"),
        ("clv.model.decile_mape", "lower"),
        ("val.logloss", "lower"),
        ("clv.model.total_error_pct", "abs_lower"),
        ("clv.model.interval_coverage", "closer_to_nominal"),
        ("data.orders.rows_used", None),
        ("gate.new_value", None),
    ],
)
def test_metric_direction(name, direction):
    assert m.metric_direction(name) == direction


def test_is_better_knows_each_direction():
    assert m.is_better("val.auc", 0.8, 0.7) is True
    assert m.is_better("val.brier", 0.2, 0.1) is False
    assert m.is_better("clv.model.total_error_pct", -3.0, 5.0) is True
    assert m.is_better("clv.model.interval_coverage", 0.78, 0.9) is True
    assert m.is_better("clv.model.interval_coverage", 0.78, 0.9, nominal=0.95) is False
    assert m.is_better("val.auc", 0.7, 0.7) is False
    assert m.is_better("val.auc", math.nan, 0.7) is None
    assert m.is_better("data.orders.rows_used", 1, 2) is None


def test_frac_label():
    assert [m.frac_label(f) for f in (0.01, 0.05, 0.1, 0.005, 1)] == ["1pct", "5pct", "10pct", "0.5pct", "100pct"]
