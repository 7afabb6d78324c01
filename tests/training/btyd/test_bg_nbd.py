"""BG/NBD and MBG/NBD: CDNOW reproduction, weighted == raw lifetimes fits, objectives, predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from btyd_data import lifetimes_fit
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter

from training.btyd import BTYDModel, compress_rows
from training.btyd.bg_nbd import BGObjective


def test_cdnow_published_parameters(cdnow_model):
    p, g = cdnow_model.params_, cdnow_model.gg_params_
    assert cdnow_model.model_name_ == "bg_nbd" and cdnow_model.penalizer_ == 0.0
    assert (round(p["r"], 3), round(p["alpha"], 3), round(p["a"], 3), round(p["b"], 3)) == (0.243, 4.414, 0.793, 2.426)
    # published to 2 decimals for p and q (6.25, 3.74); lifetimes' fit is p 6.2488, q 3.7446, v 15.4477
    assert (round(g["p"], 2), round(g["q"], 2), round(g["v"], 2)) == (6.25, 3.74, 15.45)
    assert (round(g["p"], 3), round(g["q"], 3), round(g["v"], 3)) == (6.249, 3.745, 15.448)
    assert [e["status"] for e in cdnow_model.fit_log_] == ["ok", "ok"]


@pytest.mark.parametrize("fitter_cls, model", [(BetaGeoFitter, "bg_nbd"), (ModifiedBetaGeoFitter, "mbg_nbd")])
def test_weighted_fit_equals_lifetimes_raw_fit(synth, fitter_cls, model):
    raw = lifetimes_fit(fitter_cls, synth["frequency"], synth["recency"], synth["T"]).params_
    ours = BTYDModel(chain=[(model, 0.0)], fit_spend=False).fit(synth)
    assert ours.n_unique_rows_ < len(synth)
    for k in raw.index:
        assert ours.params_[k] == pytest.approx(raw[k], rel=1e-4), k


def test_weighted_fit_with_penalizer_equals_lifetimes_raw_fit(cdnow):
    raw = lifetimes_fit(lambda: BetaGeoFitter(penalizer_coef=0.01), cdnow["frequency"], cdnow["recency"], cdnow["T"])
    ours = BTYDModel(chain=[("bg_nbd", 0.01)], fit_spend=False).fit(cdnow)
    for k in raw.params_.index:
        assert ours.params_[k] == pytest.approx(raw.params_[k], rel=1e-4), k


def test_bg_objectives_match_lifetimes_likelihoods(synth):
    rng = np.random.default_rng(3)
    x, rec, T = (synth[c].to_numpy() / (1 if c == "frequency" else synth["T"].max()) for c in ("frequency", "recency", "T"))
    (ux, ur, uT), w, _ = compress_rows(x, rec, T)
    for modified, ref in ((False, BetaGeoFitter), (True, ModifiedBetaGeoFitter)):
        obj = BGObjective(ux, ur, uT, w, modified=modified)
        obj.penalizer = 0.05
        for _ in range(3):
            theta = rng.normal(0.0, 0.5, 4)
            f, grad = obj(theta)
            assert f == pytest.approx(ref._negative_log_likelihood(theta, x, rec, T, np.ones(len(x)), 0.05), rel=1e-10)
            eps = 1e-6
            num = [(obj(theta + eps * e)[0] - obj(theta - eps * e)[0]) / (2 * eps) for e in np.eye(4)]
            np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_predictions_matchlifetimes_fit(cdnow, cdnow_model):
    ref = BetaGeoFitter()
    ref.params_ = pd.Series(cdnow_model.params_)
    x, rec, T = cdnow["frequency"], cdnow["recency"], cdnow["T"]
    np.testing.assert_allclose(cdnow_model.p_alive(cdnow), ref.conditional_probability_alive(x, rec, T), rtol=1e-10)
    np.testing.assert_allclose(cdnow_model.expected_orders(cdnow, 39),
                               ref.conditional_expected_number_of_purchases_up_to_time(39, x, rec, T), rtol=1e-8)
    gg = GammaGammaFitter()
    gg.params_ = pd.Series(cdnow_model.gg_params_)
    spend = cdnow_model.expected_spend(cdnow, 39)
    ref_value = gg.conditional_expected_average_profit(x, cdnow["monetary_value"])
    np.testing.assert_allclose(spend, cdnow_model.expected_orders(cdnow, 39) * ref_value, rtol=1e-8)


def test_p_no_purchase_closed_form_and_limits(cdnow, cdnow_model):
    p = cdnow_model.params_
    p0 = cdnow_model.p_no_purchase(cdnow, 39)
    pa = cdnow_model.p_alive(cdnow)
    x, T = cdnow["frequency"].to_numpy(), cdnow["T"].to_numpy()
    np.testing.assert_allclose(p0, 1 - pa + pa * ((p["alpha"] + T) / (p["alpha"] + T + 39)) ** (p["r"] + x))
    assert np.all(cdnow_model.p_no_purchase(cdnow, 1e-6) > 1 - 1e-5)
    assert np.all(cdnow_model.p_no_purchase(cdnow, 100) <= p0 + 1e-12)
    assert np.all(p0 >= 1 - pa - 1e-12)  # a dead customer never buys
