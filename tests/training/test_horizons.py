"""Horizon choice from short histories, CLV extrapolated by the BTYD ratio, eligibility table, horizon columns."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, fitted_churn, fitted_clv, small

from training.frames import HistoryTooShort
from training.horizons import ExtrapolatedCLV, choose_horizon, fit_for_horizon
from training.scoring import Models, eligibility, eligibility_table, score


@pytest.mark.parametrize(("kind", "asked", "history", "mode", "horizon", "fit"), [
    ("clv", 365, 900, "direct", 365, 365),         # 2 × 365 + 60 = 790 days: the trees
    ("clv", 365, 545, "extrapolated", 365, 240),   # CDNOW: trees on 240-day windows, scaled to 365
    ("clv", 365, 273, "extrapolated", 365, 90),    # CDNOW before 1997-10-01
    ("churn", 90, 240, "direct", 90, 90),          # exactly 2H + 60
    ("churn", 90, 200, "direct", 90, 90),          # the BTYD family alone (the planner's choice)
    ("churn", 90, 120, "shortened", 60, 60),       # the longest supported horizon, whole months
    ("clv", 90, 100, "shortened", 30, 30),         # too short to extrapolate from 30 days, or for 90 + 60
    ("churn", 30, 72, "shortened", 7, 7),          # whole weeks below a month
])
def test_choose_horizon(kind, asked, history, mode, horizon, fit):
    c = choose_horizon(kind, asked, history)
    assert (c.mode, c.horizon, c.fit_horizon) == (mode, horizon, fit)
    assert c.to_params()["horizon.mode"] == mode and c.describe()["history_days"] == history
    if mode != "direct":
        assert f"{history} days of history" in c.reason


def test_no_horizon_at_all_names_the_days():
    with pytest.raises(HistoryTooShort, match="at least 67 needed"):
        choose_horizon("churn", 90, 60)


@pytest.fixture(scope="module")
def buyers():
    snap = small().cache.features(AS_OF)
    return snap[snap["orders"] >= 1].reset_index(drop=True)


def test_extrapolated_clv_scales_by_the_btyd_ratio(buyers):
    base = fitted_clv().model
    ext = ExtrapolatedCLV(base, 365)
    short = base.predict_frame(buyers, as_of=AS_OF)
    long = ext.predict_frame(buyers, as_of=AS_OF)
    ratio = ext.ratio(buyers, base.btyd_)
    assert (ratio >= 1.0).all() and (ratio <= 365 / HORIZON + 1e-12).all() and ratio.std() > 0
    np.testing.assert_allclose(long["clv_mean"], short["clv_mean"] * ratio)
    np.testing.assert_allclose(long["clv_p90"], short["clv_p90"] * ratio)
    np.testing.assert_allclose(long["expected_orders"], base.btyd_.expected_orders(buyers, 365))
    # per person, the ratio is the BTYD model's expected spend over 365 days divided by that over 90
    spend = base.btyd_.expected_spend(buyers, 365) / base.btyd_.expected_spend(buyers, HORIZON)
    ok = np.isfinite(spend)
    np.testing.assert_allclose(ratio[ok], np.clip(spend[ok], 1.0, 365 / HORIZON), rtol=1e-9)
    # everything else is the fitted model's; it survives a pickle round trip (the registry stores it so)
    assert ext.horizon_days == 365 and ext.fit_horizon_days == HORIZON and ext.family_ == base.family_
    again = pickle.loads(pickle.dumps(ext))
    np.testing.assert_allclose(again.predict(buyers), ext.predict(buyers))
    # without a BTYD model, the plain ratio of the horizons
    np.testing.assert_allclose(ext.ratio(buyers, None), 365 / HORIZON)
    with pytest.raises(ValueError, match="longer horizon"):
        ExtrapolatedCLV(base, 30)


def test_short_history_clv_is_extrapolated_end_to_end():
    """200 days of orders before as_of: a 365-day CLV from trees fitted on 60-day windows."""
    from features.dataset import Dataset
    from training.frames import FeatureCache

    data = small().dataset
    cut = Dataset(orders=data.orders[data.orders["order_ts"] >= pd.Timestamp(AS_OF - timedelta(days=200))]
                  .reset_index(drop=True))
    fitted = fit_for_horizon("clv", FeatureCache(cut), AS_OF, 365, n_cutoffs=2, **FAST_CLV)
    choice = fitted.extra["horizon"]
    assert choice.mode == "extrapolated" and choice.fit_horizon == 60 and fitted.plan.layout == "trees"
    assert isinstance(fitted.model, ExtrapolatedCLV) and fitted.model.horizon_days == 365
    from training.registry import model_name
    from training.train import served_horizon

    # registered under the horizon it answers for (<brand>.clv_365d), its fitted window in the params
    assert served_horizon(fitted) == 365 and fitted.plan.horizon_days == 60
    assert model_name("acme", "clv", served_horizon(fitted)) == "acme.clv_365d"
    snap = FeatureCache(cut).features(AS_OF)
    pred = fitted.model.predict_frame(snap[snap["orders"] >= 1], with_intervals=False)
    assert (pred["clv_mean"] >= fitted.model.base.predict(snap[snap["orders"] >= 1]) - 1e-9).all()


def test_eligibility_table_says_who_and_why():
    reasons = pd.Series([None, None, "no paid order before as_of", None, "first order less than 7 days before as_of",
                         "no paid order before as_of"])
    table = eligibility_table(reasons)
    assert table.to_dict("list") == {
        "status": ["scored", "not scored", "not scored"],
        "reason": ["", "no paid order before as_of", "first order less than 7 days before as_of"],
        "people": [3, 2, 1], "share": [0.5, 2 / 6, 1 / 6]}


def test_scores_carry_each_models_horizon():
    snap = small().cache.features(AS_OF)
    models = Models(fitted_churn().model, ExtrapolatedCLV(fitted_clv().model, 180))
    out = score(snap, models, as_of=AS_OF, with_intervals=False)
    assert (out["churn_horizon_days"] == HORIZON).all() and (out["clv_horizon_days"] == 180).all()
    assert eligibility_table(eligibility(snap))["people"].sum() == len(snap)


@pytest.mark.slow
def test_when_btyd_cannot_fit_the_longest_horizon_the_trees_support():
    """200 days of a brand where nobody drops out: BTYD alone cannot serve 90 days, so churn falls back to 60."""
    from features.dataset import Dataset
    from training.frames import FeatureCache
    from training.horizons import fit_for_horizon as fit

    frozen = small(config="frozen", quick_btyd=True)
    orders = frozen.dataset.orders
    cut = Dataset(orders=orders[orders["order_ts"] >= pd.Timestamp(AS_OF - timedelta(days=200))]
                  .reset_index(drop=True))
    cache = FeatureCache(cut, btyd_params={"chain": [("bg_nbd", 0.0)]})
    if cache.btyd(AS_OF - timedelta(days=90)) is not None:
        pytest.skip("BTYD fitted on this brand")
    fitted = fit("churn", cache, AS_OF, 90, n_cutoffs=2, **FAST)
    choice = fitted.extra["horizon"]
    assert (choice.mode, choice.horizon, fitted.plan.layout) == ("shortened", 60, "trees")
    assert "BTYD fit at" in choice.reason and "60 days" in choice.reason
