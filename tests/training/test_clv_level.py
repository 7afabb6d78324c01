"""CLV level calibration: the total of the newest complete window, moved to the scored window's season."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, FAST_CLV, HORIZON, N_CUTOFFS, fitted_clv, small

from features.calendar import SeasonalIndex, load_calendar
from features.dataset import Dataset
from training.fitting import fit_clv
from training.frames import FeatureCache
from training.metrics import total_error_pct


@pytest.fixture(scope="module")
def clv():
    return fitted_clv()


def _buyers(cache: FeatureCache, as_of) -> pd.DataFrame:
    snap = cache.features(as_of)
    return snap[(snap["orders"] >= 1) & (snap["tenure_days"] >= 7)]


def test_the_total_is_within_ten_percent_on_a_seeded_simulated_brand(clv):
    cache = small().cache
    buyers = _buyers(cache, AS_OF)
    pred = clv.model.predict_frame(buyers, as_of=AS_OF, with_intervals=False)["clv_mean"].to_numpy()
    actual = buyers[["person_id"]].merge(cache.labels(AS_OF, HORIZON), on="person_id", how="left")
    assert abs(total_error_pct(actual["future_spend"].to_numpy(), pred)) <= 10.0
    info = clv.model.level_info_
    assert info["applied"] and info["validation_cutoff"] == (AS_OF - timedelta(days=HORIZON)).isoformat()
    # measured by the chosen (pre-refit) model on the validation window, carried to the refit model served
    assert info["chosen_factor"] == pytest.approx(info["validation_actual_total"] / info["validation_predicted_total"])
    assert info["carried_factor"] == pytest.approx(info["chosen_factor"] * info["refit_total_ratio"])
    assert clv.model.level_ == pytest.approx(info["carried_factor"] ** info["drift"]["weight"])
    # the drift is measured on the refit windows the chosen model had not seen, up to the validation one
    train, refit = clv.plan.train, clv.plan.refit
    unseen = [c.isoformat() for c in refit if c > max(train)]
    assert [w["cutoff"] for w in info["drift"]["windows"]] == unseen and unseen[-1] == info["validation_cutoff"]


@pytest.fixture(scope="module")
def chosen():
    """The chosen (pre-refit) model, without a seasonal index: the drift tests below see raw log errors."""
    model = fit_clv(small().cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, refit=False, **FAST_CLV).model
    model.seasonal_ = None
    return model


def _windows(chosen, log_errors) -> pd.DataFrame:
    """Labelled windows 30 days apart ending at the validation cutoff, where ``chosen`` was off by ``log_errors``."""
    days = [chosen.valid_cutoff_ - timedelta(days=30 * i) for i in reversed(range(len(log_errors)))]
    return pd.DataFrame({"cutoff": days, "predicted": 1000.0 * np.exp(log_errors), "actual": 1000.0})


def _carry(clv, chosen, windows):
    model = copy.deepcopy(clv.model)
    return model.carry_level(chosen, _buyers(small().cache, AS_OF), AS_OF, windows=windows)


def test_a_drifting_chosen_model_error_shrinks_the_carried_factor(clv, chosen):
    """Few, young training windows: the chosen model's error grows with every window it had not seen (0.15 in
    log per 30 days, 0.45 over the 90 days to as_of), so its calibrated total at as_of is not trusted."""
    model = _carry(clv, chosen, _windows(chosen, [0.1, 0.25, 0.4]))
    info = model.level_info_
    drift = info["drift"]
    assert drift["drift"] == pytest.approx(0.45)
    assert drift["weight"] == pytest.approx(1 / (1 + (0.45 / 0.2) ** 2))
    carried = chosen.level_ * info["refit_total_ratio"]
    assert info["carried_factor"] == pytest.approx(carried) and carried != pytest.approx(1.0, abs=0.01)
    assert model.level_ == pytest.approx(carried ** drift["weight"])
    assert abs(np.log(model.level_)) < 0.2 * abs(np.log(carried))  # most of the way back to the refit's own level
    assert model.level_factor(AS_OF) == pytest.approx(model.level_)  # no seasonal index here


def test_a_steady_chosen_model_error_is_carried_unchanged(clv, chosen):
    """A biased but steady error (the level factor's own assumption) is carried as it is."""
    model = _carry(clv, chosen, _windows(chosen, [-0.3, -0.3, -0.3]))
    assert model.level_info_["drift"]["drift"] == pytest.approx(0.0, abs=1e-9)
    assert model.level_ == pytest.approx(chosen.level_ * model.level_info_["refit_total_ratio"])
    one = _carry(clv, chosen, _windows(chosen, [0.4]))  # nothing to measure a drift on
    assert one.level_info_["drift"]["weight"] == 1.0 and "fewer than two" in one.level_info_["drift"]["reason"]
    assert one.level_ == pytest.approx(model.level_)
    with pytest.raises(ValueError, match="level_drift_tolerance"):
        copy.deepcopy(clv.model).set_params(level_drift_tolerance=0.0).carry_level(
            chosen, _buyers(small().cache, AS_OF), AS_OF, windows=_windows(chosen, [0.1, 0.2]))


def test_the_drift_is_measured_in_the_validation_window_season(clv, chosen):
    """Errors that only follow the brand's festival index are not a drift."""
    seasonal = SeasonalIndex(load_calendar(), {"d618": 3.0}, {"d618": 2})
    keep = chosen.seasonal_
    try:
        chosen.seasonal_ = seasonal
        windows = _windows(chosen, [0.0, 0.0, 0.0])
        index = np.array([seasonal.window_index(c, HORIZON) for c in windows["cutoff"]])
        assert index.std() > 0.05  # 618 moves through the windows
        windows["predicted"] = 1000.0 * index[-1] / index  # under-predicts exactly the festival windows
        model = _carry(clv, chosen, windows)
        drift = model.level_info_["drift"]
        assert drift["drift"] == pytest.approx(0.0, abs=1e-9) and drift["drift_raw"] > 0.05
        assert model.level_ == pytest.approx(chosen.level_ * model.level_info_["refit_total_ratio"])
        # nor is a flat error that a (mis-learned) seasonal index would bend into a slope
        flat = _carry(clv, chosen, _windows(chosen, [0.0, 0.0, 0.0])).level_info_["drift"]
        assert flat["drift"] == pytest.approx(0.0, abs=1e-9) and flat["drift_seasonal"] > 0.05
    finally:
        chosen.seasonal_ = keep


def test_the_factor_meets_the_validation_total_and_scales_the_interval(clv):
    """The chosen model (before the refit, which has seen the validation window) meets its total there."""
    chosen = fit_clv(small().cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, refit=False, **FAST_CLV)
    model, valid = chosen.model, chosen.valid
    assert model.level_ == pytest.approx(clv.model.level_info_["chosen_factor"])
    cutoff = model.valid_cutoff_
    out = model.predict_frame(valid, as_of=cutoff, btyd=small().cache.btyd(cutoff))
    raw = model._raw_frame(valid, as_of=cutoff, btyd=small().cache.btyd(cutoff))
    assert out["clv_mean"].sum() == pytest.approx(valid["future_spend"].sum(), rel=1e-6)
    for col in ("clv_mean", "clv_p10", "clv_p90"):
        np.testing.assert_allclose(out[col], raw[col] * model.level_, rtol=1e-9)
    assert clv.metrics["total_error_pct"] == pytest.approx(0.0, abs=1e-6)  # in-sample by construction


def test_a_festival_window_is_not_scored_like_a_quiet_one(clv):
    model = clv.model
    si = model.seasonal_
    assert si is not None and si.occurrences["d618"] >= 1 and si.lifts["d618"] > 1.2  # the simulator's 618
    june, july = date(2025, 6, 1), date(2025, 7, 1)
    ratio = model.level_factor(june) / model.level_factor(july)
    assert ratio == pytest.approx(si.window_index(june, HORIZON) / si.window_index(july, HORIZON))
    assert ratio > 1.05
    buyers = _buyers(small().cache, AS_OF)
    a = model.predict_frame(buyers, as_of=june, with_intervals=False)["clv_mean"].to_numpy()
    b = model.predict_frame(buyers, as_of=july, with_intervals=False)["clv_mean"].to_numpy()
    np.testing.assert_allclose(a / b, ratio, rtol=1e-9)
    assert model.window_calendar(june)["cal_days_d618"] == 18 and model.window_calendar(july)["cal_days_d618"] == 0


def test_seasonal_lifts_move_the_factor_by_the_ratio_of_window_indices(clv):
    model = clv.model
    calendar = load_calendar()
    keep = model.seasonal_
    try:
        model.seasonal_ = SeasonalIndex(calendar, {"d1111": 3.0}, {"d1111": 2})
        nov = date(2025, 10, 20)  # a 90-day window holding the whole 双11 period (12 days)
        expected = model.level_ * (1 + 12 * 2.0 / HORIZON) / model.seasonal_.window_index(model.valid_cutoff_,
                                                                                           HORIZON)
        assert model.level_factor(nov) == pytest.approx(expected)
    finally:
        model.seasonal_ = keep


def test_without_level_calibration_predictions_are_the_raw_ones():
    cache = small().cache
    fitted = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, level_calibration=False, **FAST_CLV)
    buyers = _buyers(cache, AS_OF)
    assert fitted.model.level_factor(AS_OF) == 1.0 and not fitted.model.level_info_["applied"]
    np.testing.assert_allclose(fitted.model.predict(buyers), fitted.model._raw_frame(buyers)["clv_mean"])


def test_the_calibration_reads_no_order_on_or_after_as_of(clv):
    """Orders from ``as_of`` on multiplied by 10 (and new ones added): same factor, same seasonal lifts."""
    data = small().dataset
    orders = data.orders.copy()
    late = orders["order_ts"] >= pd.Timestamp(AS_OF)
    assert late.any()
    orders.loc[late, "amount"] = orders.loc[late, "amount"] * 10
    extra = orders[late].head(50).assign(order_id=lambda d: d["order_id"].astype(str) + "_x")
    changed = Dataset(orders=pd.concat([orders, extra], ignore_index=True), events=data.events,
                      identities=data.identities, campaign_touches=data.campaign_touches)
    refit = fit_clv(FeatureCache(changed), AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST_CLV)
    assert refit.model.level_ == pytest.approx(clv.model.level_, rel=1e-9)
    assert refit.model.seasonal_.lifts == pytest.approx(clv.model.seasonal_.lifts, rel=1e-12)
    assert refit.model.level_factor(AS_OF) == pytest.approx(clv.model.level_factor(AS_OF), rel=1e-9)


def test_a_family_that_cannot_be_predicted_on_the_validation_window_is_left_uncalibrated():
    from training.clv import CLVModel

    cache = small().cache
    fitted = fitted_clv()
    train = cache.labelled(fitted.plan.train, HORIZON)
    valid = fitted.valid
    model = CLVModel(HORIZON, family="btyd", **FAST_CLV).fit(
        train, train["future_spend"], X_valid=valid, y_valid=valid["future_spend"], btyd=cache.btyd(AS_OF),
        btyd_valid=None)
    assert model.family_ == "btyd" and model.level_factor(AS_OF) == 1.0
    assert "no BTYD model at the validation cutoff" in model.level_info_["reason"]


def test_the_brand_calendar_of_the_data_directory_is_used(tmp_path):
    (tmp_path / "festivals.yaml").write_text('festivals:\n  - {name: brand_day, date: "06-10", days: [-3, 0]}\n')
    (tmp_path / "brand.yaml").write_text("calendar: festivals.yaml\n")
    data = small().dataset
    mine = Dataset(orders=data.orders, events=data.events, identities=data.identities,
                   campaign_touches=data.campaign_touches, source=tmp_path)
    fitted = fit_clv(FeatureCache(mine), AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST_CLV)
    assert fitted.model.seasonal_.calendar.names == ("brand_day",)
    assert fitted.model.seasonal_.occurrences["brand_day"] >= 1
    assert set(fitted.model.window_calendar(AS_OF)) == {"cal_days_brand_day", "cal_festival_days",
                                                       "cal_seasonal_index"}
