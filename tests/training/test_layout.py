"""The layout planner (history needed per horizon) and the refit on the newest complete window."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, small

from training.fitting import fit_churn, fit_clv
from training.frames import HistoryTooShort, plan_cutoffs, required_history

H = 90
A = date(2025, 7, 1)


def _start(history_days: int) -> date:
    return A - timedelta(days=history_days)


def test_required_history_per_horizon():
    assert required_history(90) == 240 and required_history(90, "btyd") == 150
    assert required_history(365) == 790 and required_history(365, "btyd") == 425
    assert required_history(30) == 120


@pytest.mark.parametrize("history", [H + 30, H + 59])
def test_too_short_for_any_layout_names_the_days(history):
    with pytest.raises(HistoryTooShort, match=f"{history} days of data since .*150 needed") as err:
        plan_cutoffs(A, H, data_start=_start(history))
    assert err.value.required_days == 150 and err.value.history_days == history


@pytest.mark.parametrize("history", [H + 60, H + 100, 2 * H + 59])
def test_between_h_plus_60_and_2h_plus_60_the_btyd_family_alone(history):
    plan = plan_cutoffs(A, H, n_cutoffs=8, data_start=_start(history))
    assert plan.layout == "btyd" and "BTYD family alone" in plan.reason and f"{history} days" in plan.reason
    assert plan.train == plan.refit == [A - timedelta(days=H)] == [plan.validation]
    assert plan.parts() == {"feature_history": history - H, "training_windows": 0, "validation_window": H}
    assert plan.required_days == H + 60 <= history


@pytest.mark.parametrize("history", [2 * H + 60, 2 * H + 100, 3 * H, 3 * H + 90])
def test_from_2h_plus_60_the_trees(history):
    plan = plan_cutoffs(A, H, n_cutoffs=8, step_days=30, data_start=_start(history))
    start = _start(history)
    assert plan.layout == "trees" and plan.required_days == 2 * H + 60 <= history
    assert plan.validation == A - timedelta(days=H)
    # every training label window ends on or before the validation cutoff; every cutoff has 60 days of history
    assert plan.train[-1] == A - timedelta(days=2 * H)
    assert all(c + timedelta(days=H) <= plan.validation for c in plan.train)
    assert all((c - start).days >= 60 for c in plan.train + plan.refit)
    # one training cutoff more per 30 days of extra history, up to n_cutoffs
    assert len(plan.train) == min(8, 1 + (history - 2 * H - 60) // 30)
    # the refit ends at as_of - H
    assert plan.refit[-1] == plan.validation
    parts = plan.parts()
    assert sum(parts.values()) == history or parts["feature_history"] >= 60
    params = plan.to_params()
    assert params["layout"] == "trees" and params["layout.history_days"] == str(history)
    assert params["layout.validation_window_days"] == str(H) and params["refit_cutoffs"].endswith("2025-04-02")


def test_layouts_can_be_forced():
    assert plan_cutoffs(A, H, data_start=_start(400), layout="btyd").layout == "btyd"
    with pytest.raises(HistoryTooShort, match="the trees: 2 × 90 \\+ 60 = 240"):
        plan_cutoffs(A, H, data_start=_start(200), layout="trees")


def test_refit_on_latest_the_served_model_has_seen_as_of_minus_h():
    cache = small().cache
    newest = (AS_OF - timedelta(days=HORIZON)).isoformat()
    churn = fit_churn(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, **FAST)
    stale = fit_churn(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, refit=False, **FAST)
    assert newest in churn.model.train_cutoffs_ and churn.extra["refit"]
    assert newest not in stale.model.train_cutoffs_ and max(stale.model.train_cutoffs_) < newest
    # same choice, same validation figures (the candidate's), different served model
    assert churn.model.family_ == stale.model.family_ and churn.metrics == stale.metrics
    snap = cache.features(AS_OF)
    buyers = snap[snap["orders"] >= 1]
    assert (churn.model.predict_frame(buyers) != stale.model.predict_frame(buyers)).any().any()
    clv = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, **FAST_CLV)
    assert newest in clv.model.train_cutoffs_ and clv.extra["candidate_cutoffs"][-1] < newest


def test_refit_clv_carries_the_out_of_sample_level_of_the_chosen_model():
    """The level factor is measured by the chosen model on the validation window (which the refit has seen);
    the refit model is scaled to the chosen model's calibrated total at as_of, with its seasonal index."""
    cache = small().cache
    clv = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, **FAST_CLV)
    chosen = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, refit=False, **FAST_CLV)
    assert clv.extra["refit"] and chosen.model.level_info_["applied"]
    info = clv.model.level_info_
    assert info["applied"] and info["chosen_factor"] == pytest.approx(chosen.model.level_)
    assert clv.model.level_calibration  # fitted with it off (nothing out of sample to measure), then carried
    assert info["validation_cutoff"] == chosen.model.level_info_["validation_cutoff"]
    assert clv.model.valid_cutoff_ == chosen.model.valid_cutoff_
    assert clv.model.seasonal_.to_dict() == chosen.model.seasonal_.to_dict()
    carried = chosen.model.level_ * info["refit_total_ratio"]
    assert info["carried_factor"] == pytest.approx(carried)
    # shrunk towards 1 by the drift of the chosen model's error over the refit windows it had not seen
    assert clv.model.level_ == pytest.approx(carried ** info["drift"]["weight"])
    assert clv.extra["level"] is info and clv.metrics == chosen.metrics  # validation figures: the chosen model's
    snap = cache.features(AS_OF)
    buyers = snap[snap["orders"] >= 1]
    total = clv.model.predict_frame(buyers, as_of=AS_OF, with_intervals=False)["clv_mean"].sum()
    # the chosen model's calibrated total at as_of, moved by the shrinkage only
    assert total == pytest.approx(chosen.model.predict_frame(buyers, as_of=AS_OF, with_intervals=False)["clv_mean"]
                                  .sum() * clv.model.level_ / carried, rel=1e-6)
    # the ranking is the refit model's own
    raw = clv.model._raw_frame(buyers, as_of=AS_OF, with_intervals=False)["clv_mean"]
    assert total == pytest.approx(raw.sum() * clv.model.level_factor(AS_OF), rel=1e-6)


def test_btyd_layout_fits_on_short_history():
    """A brand whose data starts 200 days before as_of: the 90-day models use the BTYD family alone."""
    from features.dataset import Dataset
    from training.frames import FeatureCache

    data = small().dataset
    start = AS_OF - timedelta(days=200)
    cut = Dataset(orders=data.orders[data.orders["order_ts"] >= pd.Timestamp(start)].reset_index(drop=True))
    cache = FeatureCache(cut)
    churn = fit_churn(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, **FAST)
    assert churn.plan.layout == "btyd" and churn.model.family_ == "btyd"
    assert churn.metrics["auc"] > 0.6
    clv = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=2, **FAST_CLV)
    assert clv.plan.layout == "btyd" and clv.model.family_ == "btyd" and clv.metrics["gini"] > 0.3
