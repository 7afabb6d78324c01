"""CLVModel: both families, blend, intervals, family choice, BTYD fallback, CDNOW through the CLV code path."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, FAST_CLV, HORIZON, cdnow_dir, fitted_clv, small
from sklearn.base import clone

from training.clv import CLVModel, clv_monotone, more_orders
from training.frames import BTYD_COLUMNS, FeatureCache
from training.lgbm import prepare

OUTPUT = ["clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive", "expected_next_order_date"]


@pytest.fixture(scope="module")
def clv():
    return fitted_clv()


@pytest.fixture(scope="module")
def frames(clv):
    cache = small().cache
    train = cache.labelled(clv.plan.train, HORIZON)
    return train, clv.valid, cache


@pytest.fixture(scope="module")
def buyers():
    snap = small().cache.features(AS_OF)
    return snap[(snap["orders"] >= 1) & (snap["tenure_days"] >= 7)]


def _fit(frames, **params) -> CLVModel:
    """A CLV model on the shared frames; without the level factor (tested in test_clv_level.py), so amounts here
    are the families' own."""
    train, valid, cache = frames
    return CLVModel(HORIZON, **{**FAST_CLV, "level_calibration": False, **params}).fit(
        train, train["future_spend"], orders=train["future_orders"], X_valid=valid, y_valid=valid["future_spend"],
        btyd=cache.btyd(AS_OF), btyd_valid=cache.btyd(valid["cutoff"].iloc[0]))


@pytest.mark.parametrize("family", ["lgbm", "btyd", "blend"])
def test_every_family_predicts_a_value_with_an_interval(frames, buyers, family):
    model = _fit(frames, family=family)
    assert model.family_ == family
    out = model.predict_frame(buyers, as_of=AS_OF)
    assert list(out.columns) == OUTPUT and out.index.equals(buyers.index)
    assert (out["clv_mean"] >= 0).all() and out["clv_mean"].notna().all()
    assert (out["clv_p10"] <= out["clv_mean"] + 1e-9).all() and (out["clv_mean"] <= out["clv_p90"] + 1e-9).all()
    assert out["p_alive"].between(0, 1).all() and (out["expected_orders"] >= 0).all()
    assert (out["expected_next_order_date"].dropna() >= pd.Timestamp(AS_OF)).all()
    assert out["expected_next_order_date"].notna().any()


def test_blend_is_the_mean_of_the_families(frames, buyers):
    lg, bt, bl = (_fit(frames, family=f).predict(buyers) for f in ("lgbm", "btyd", "blend"))
    np.testing.assert_allclose(bl, (lg + bt) / 2, rtol=1e-9)
    expected_spend = frames[2].btyd(AS_OF).expected_spend(buyers, HORIZON)
    np.testing.assert_allclose(bt, expected_spend, rtol=1e-9)


def test_auto_keeps_the_best_family_that_passes_the_orders_check(clv):
    model = clv.model
    sel = model.selection_
    assert set(sel) == {"lgbm", "btyd", "blend"}
    assert sel["lgbm"]["monotone_orders"]  # guaranteed by the monotone constraints
    eligible = {k: v for k, v in sel.items() if v["monotone_orders"]}
    assert model.family_ == max(eligible, key=lambda k: eligible[k]["gini"])
    for figures in sel.values():
        assert 0 < figures["gini"] <= 1 and -1 <= figures["spearman"] <= 1


def test_without_the_orders_check_auto_takes_the_best_gini(frames):
    model = _fit(frames, monotone_orders=False)
    assert model.family_ == max(model.selection_, key=lambda k: model.selection_[k]["gini"])


def test_lgbm_family_leaves_btyd_inputs_out(clv):
    model = clv.model
    assert not set(BTYD_COLUMNS) & set(model.feature_names_)
    mono = dict(zip(model.feature_names_, clv_monotone(model.feature_names_), strict=True))
    assert mono["orders"] == mono["frequency"] == mono["total_spend"] == mono["orders_90d"] == 1
    assert mono["recency_days"] == 0


def test_lgbm_family_ranks_by_the_blend_on_the_tweedie_scale(frames, buyers):
    """The log-spend model only reorders people; amounts stay on the Tweedie model's scale."""
    train = frames[0]
    blended = _fit(frames, family="lgbm")
    assert blended.log_model_ is not None
    Xf = prepare(buyers, HORIZON, None, with_btyd=False)[blended.feature_names_]
    tweedie, score = blended._tweedie_and_score(Xf)
    mean = blended.predict(buyers)
    # strictly increasing in the blended score: the isotonic steps do not tie people the score ranks apart
    order = np.argsort(score, kind="stable")
    apart = np.diff(score[order]) > 0
    assert apart.any() and np.all(np.diff(mean[order])[apart] > 0)
    assert not np.allclose(np.argsort(mean), np.argsort(tweedie))  # the blend did reorder people
    # on the latest training cutoff, where the isotonic map is fitted, it keeps the Tweedie model's total
    latest = train[train["cutoff"] == train["cutoff"].max()]
    t_latest, _ = blended._tweedie_and_score(prepare(latest, HORIZON, None, with_btyd=False)[blended.feature_names_])
    assert blended.predict(latest).sum() == pytest.approx(t_latest.sum(), rel=1e-6)

    tweedie_only = _fit(frames, family="lgbm", log_blend=0.0)
    assert tweedie_only.log_model_ is None and tweedie_only.scale_map_ is None
    np.testing.assert_allclose(tweedie_only.predict(buyers),
                               np.maximum(tweedie_only.mean_model_.predict(Xf), 0.0))


def test_more_orders_changes_only_the_order_counts(buyers):
    more = more_orders(buyers)
    for c in ("orders", "frequency", "orders_30d", "orders_365d"):
        np.testing.assert_array_equal(more[c], buyers[c] + 1)
    for c in ("recency_days", "total_spend", "T", "recency", "tenure_days"):
        pd.testing.assert_series_equal(more[c], buyers[c])


def test_validation_figures_and_interval_coverage(clv):
    m = clv.metrics
    assert set(m) == {"gini", "spearman", "total_error_pct", "decile_mape", "interval_coverage"}
    assert 0.5 < m["gini"] <= 1 and 0.3 < m["spearman"] <= 1
    assert 0.5 < m["interval_coverage"] <= 1  # nominal 0.8


def test_without_btyd_the_lightgbm_family_carries_on(frames, buyers, caplog):
    train, valid, _ = frames
    with caplog.at_level(logging.WARNING, logger="training.clv"):
        model = CLVModel(HORIZON, **FAST_CLV).fit(train, train["future_spend"], orders=train["future_orders"],
                                                   X_valid=valid, y_valid=valid["future_spend"], btyd=None,
                                                   btyd_status="every BTYD option failed: test")
    assert model.family_ == "lgbm" and set(model.selection_) == {"lgbm"}
    assert "BTYD family unavailable" in caplog.text and "every BTYD option failed: test" in caplog.text
    out = model.predict_frame(buyers, as_of=AS_OF)
    assert out["p_alive"].isna().all() and out["expected_next_order_date"].isna().all()
    assert (out["expected_orders"] >= 0).all() and out["expected_orders"].notna().all()  # Poisson model
    assert model.orders_model_ is not None


def test_without_intervals_the_bounds_are_empty(clv, buyers):
    out = clv.model.predict_frame(buyers, with_intervals=False)
    assert out["clv_p10"].isna().all() and out["clv_p90"].isna().all()
    np.testing.assert_allclose(out["clv_mean"], clv.model.predict(buyers))


def test_bad_inputs(frames):
    train = frames[0]
    with pytest.raises(ValueError, match="family"):
        CLVModel(family="pareto").fit(train, train["future_spend"])
    with pytest.raises(ValueError, match="quantiles"):
        CLVModel(quantiles=(0.9, 0.1)).fit(train, train["future_spend"])
    with pytest.raises(ValueError, match="log_blend"):
        CLVModel(log_blend=1.5).fit(train, train["future_spend"])
    with pytest.raises(ValueError, match="non-negative"):
        CLVModel(**FAST_CLV).fit(train, -train["future_spend"] - 1)
    assert clone(CLVModel(family="btyd")).get_params()["family"] == "btyd"


# ---------------------------------------------------------------------------------------------- CDNOW
def test_cdnow_published_parameters_through_the_clv_code_path():
    """CDNOW importer → contract → build_features → FeatureCache's BTYD fit → the CLVModel's ``btyd_``.

    BG/NBD (Fader, Hardie & Lee 2005, calibration period to 1997-09-30, weeks): r 0.243, α 4.414, a 0.793,
    b 2.426; Gamma-Gamma p 6.25, q 3.74, γ 15.44. Our features are in days, so α is in days (× 7).
    """
    from features.contract import load_dataset
    from training.fitting import fit_clv

    cache = FeatureCache(load_dataset(cdnow_dir()))
    fitted = fit_clv(cache, "1997-10-01", horizon_days=30, n_cutoffs=2, **FAST_CLV)
    btyd = fitted.model.btyd_
    assert btyd is cache.btyd("1997-10-01") and btyd.model_name_ == "bg_nbd" and btyd.penalizer_ == 0.0
    p, g = btyd.params_, btyd.gg_params_
    assert btyd.n_customers_ == 2357 and btyd.n_repeat_buyers_ == 946
    got = (round(p["r"], 3), round(p["alpha"] / 7, 3), round(p["a"], 3), round(p["b"], 3))
    assert got == (0.243, 4.414, 0.793, 2.426)
    for name, published in (("p", 6.25), ("q", 3.74), ("v", 15.44)):
        assert abs(g[name] - published) < 0.005, (name, g[name])
