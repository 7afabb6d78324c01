"""Every metric name the project logs, and the direction `scrm runs compare` / the report give it.

The list is :data:`metric_inventory.METRICS`; the training, backtest, lookalike and drift tests check that
their runs log nothing outside it.
"""

from __future__ import annotations

import pytest
from metric_inventory import METRICS, example, unlisted

from training.metrics import metric_direction
from training.runs import judge


@pytest.mark.parametrize(("pattern", "direction"), sorted(METRICS.items()))
def test_every_logged_metric_has_its_direction(pattern, direction):
    assert metric_direction(example(pattern)) == direction, pattern


def test_gaps_errors_and_losses_are_lower_is_better_whatever_the_measure():
    # the defect: the last segment `churn_auc` made a widening oracle gap read as better
    assert metric_direction("oracle_gap.churn_auc") == "lower"
    assert judge(0.0305, 0.0267, metric_direction("oracle_gap.churn_auc")) == "worse"
    assert judge(0.0305, 0.0267, metric_direction("oracle.churn_auc")) == "better"
    for name in ("val.mean_abs_error", "clv.model.error", "val.pinball_loss", "val.log_loss", "val.errors",
                 "calibration_gap.ece", "holdout.gap_auc"):
        assert metric_direction(name) == "lower", name
    assert metric_direction("clv.model.total_error_pct") == "abs_lower"


def test_drift_measures_and_bookkeeping():
    assert metric_direction("drift.score.churn_probability.psi") == "lower"
    assert metric_direction("drift.eligibility.no_paid_order.delta_pts") == "abs_lower"
    assert metric_direction("drift.population.current") is None
    assert metric_direction("gate.new_value") is None and metric_direction("data.orders.rows_used") is None


def test_unlisted_flags_new_metric_names():
    assert unlisted(["val.auc", "drift.orders.psi", "data.events.rows_read"]) == []
    assert unlisted(["val.auc", "val.new_measure"]) == ["val.new_measure"]
