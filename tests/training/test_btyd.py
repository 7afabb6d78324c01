"""Tests of training.btyd: CDNOW reproduction, weighted == raw fits, degeneracy fallbacks, predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

from training.btyd import BTYDFitError, BTYDModel, compress_rows
from training.btyd.bg_nbd import BGObjective
from training.btyd.gamma_gamma import GGObjective
from training.btyd.pareto_nbd import ParetoObjective
from training.btyd.simulate import simulate_alive_ratio


def simulate(n: int, *, r: float = 0.25, alpha: float = 30.0, a: float = 0.8, b: float = 2.4,
             p_drop: np.ndarray | None = None, max_T: int = 700, seed: int = 0) -> pd.DataFrame:
    """Daily lifetimes summaries from the BG/NBD process (``p_drop`` overrides the Beta(a, b) dropout draws)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, max_T + 1, n).astype(float)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n) if p_drop is None else p_drop
    k = rng.geometric(p)
    events = rng.poisson(lam * T)
    x = np.minimum(events, k)
    pos = x > 0
    tx = np.zeros(n)
    tx[pos] = T[pos] * rng.beta(x[pos], (events - x + 1)[pos])
    recency = np.where(pos, np.clip(np.ceil(tx), 1.0, T), 0.0)
    monetary = np.where(pos, np.round(rng.gamma(4.0, 30.0, n), 2), 0.0)
    return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T, "monetary_value": monetary},
                        index=pd.Index([f"p_{i:05d}" for i in range(n)], name="person_id"))


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow_summary_data_with_monetary_value()


@pytest.fixture(scope="module")
def cdnow_model(cdnow) -> BTYDModel:
    return BTYDModel().fit(cdnow)


@pytest.fixture(scope="module")
def synth() -> pd.DataFrame:
    return simulate(4000, seed=7)


@pytest.fixture(scope="module")
def synth_model(synth) -> BTYDModel:
    return BTYDModel().fit(synth)


def _lifetimes(fitter_cls, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter_cls().fit(*args, **kwargs)


# ---------------------------------------------------------------------------------------------- validity
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
    raw = _lifetimes(fitter_cls, synth["frequency"], synth["recency"], synth["T"]).params_
    ours = BTYDModel(chain=[(model, 0.0)], fit_spend=False).fit(synth)
    assert ours.n_unique_rows_ < len(synth)
    for k in raw.index:
        assert ours.params_[k] == pytest.approx(raw[k], rel=1e-4), k


def test_weighted_fit_with_penalizer_equals_lifetimes_raw_fit(cdnow):
    raw = _lifetimes(lambda: BetaGeoFitter(penalizer_coef=0.01), cdnow["frequency"], cdnow["recency"], cdnow["T"])
    ours = BTYDModel(chain=[("bg_nbd", 0.01)], fit_spend=False).fit(cdnow)
    for k in raw.params_.index:
        assert ours.params_[k] == pytest.approx(raw.params_[k], rel=1e-4), k


def test_gamma_gamma_equals_lifetimes_raw_fit(synth, synth_model):
    rep = synth[synth["frequency"] > 0]
    raw = _lifetimes(GammaGammaFitter, rep["frequency"], rep["monetary_value"]).params_
    for k in raw.index:
        assert synth_model.gg_params_[k] == pytest.approx(raw[k], rel=1e-4), k


def test_duplicated_rows_give_identical_parameters(synth, synth_model):
    doubled = pd.concat([synth, synth.iloc[::-1]]).reset_index(drop=True)
    refit = BTYDModel().fit(doubled)
    assert refit.n_unique_rows_ == synth_model.n_unique_rows_
    for k, v in synth_model.params_.items():
        assert refit.params_[k] == pytest.approx(v, rel=1e-6)
    for k, v in synth_model.gg_params_.items():
        assert refit.gg_params_[k] == pytest.approx(v, rel=1e-6)


def test_objectives_match_lifetimes_likelihoods(synth):
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
    par = ParetoObjective(ux, ur, uT, w)
    params = np.array([0.6, 0.05, 0.7, 0.08])
    ours = par.loglik_rows(params)
    theirs = ParetoNBDFitter._conditional_log_likelihood(params, ux, ur, uT)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    rep = synth[synth["frequency"] > 0]
    (gx, gm), gw, _ = compress_rows(rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy())
    gg = GGObjective(gx, gm, gw)
    theta = np.log([3.0, 2.5, 40.0])
    f, grad = gg(theta)
    ref = GammaGammaFitter._negative_log_likelihood(theta, rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy(),
                                                    np.ones(len(rep)), 0.0)
    assert f == pytest.approx(ref, rel=1e-10)
    num = [(gg(theta + 1e-6 * e)[0] - gg(theta - 1e-6 * e)[0]) / 2e-6 for e in np.eye(3)]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_pareto_reaches_at_least_lifetimes_likelihood(cdnow):
    ours = BTYDModel(chain=[("pareto_nbd", 0.0)], fit_spend=False).fit(cdnow)
    theirs = _lifetimes(ParetoNBDFitter, cdnow["frequency"], cdnow["recency"], cdnow["T"],
                        initial_params=np.ones(4)).params_
    x, rec, T = cdnow["frequency"].to_numpy(), cdnow["recency"].to_numpy(), cdnow["T"].to_numpy()
    ll = lambda prm: ParetoNBDFitter._conditional_log_likelihood(prm, x, rec, T).sum()  # noqa: E731
    ours_ll = ll([ours.params_[k] for k in ("r", "alpha", "s", "beta")])
    assert ours_ll >= ll(theirs.to_numpy()) - 1e-6
    for k in theirs.index:  # lifetimes stops Nelder-Mead at tol 1e-4, so compare loosely
        assert ours.params_[k] == pytest.approx(theirs[k], rel=2e-2), k


# ---------------------------------------------------------------------------------------------- degeneracy
def test_dropout_all_or_nothing_drives_bgnbd_to_bounds_and_falls_back():
    """Half the customers die after their first order, the rest never: BG/NBD's a, b -> 0 (as on shop data)."""
    rng = np.random.default_rng(11)
    data = simulate(2000, r=0.5, alpha=20.0, p_drop=np.where(rng.random(2000) < 0.5, 1.0, 1e-6), seed=1)
    model = BTYDModel().fit(data)
    log = model.fit_log_
    assert log[0]["model"] == "bg_nbd" and log[0]["status"] == "rejected"
    assert "at the bound" in log[0]["reason"] and log[0]["params"]["a"] < 1e-3
    assert model.model_name_ != "bg_nbd" or model.penalizer_ > 0
    assert log[-2]["status"] == "ok" and log[-1]["model"] == "gamma_gamma"
    assert all({"model", "penalizer", "status", "reason", "seconds", "warnings"} <= set(e) for e in log)
    pred = model.predict_frame(data, 90, with_intervals=False)
    assert np.isfinite(pred[["p_alive", "expected_orders", "p_purchase", "expected_spend"]].to_numpy()).all()


def test_everyone_bought_once_raises_btyd_fit_error():
    data = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": np.arange(1, 301, dtype=float), "monetary_value": 0.0})
    with pytest.raises(BTYDFitError, match="no repeat purchases"):
        BTYDModel().fit(data)


def test_all_identical_rows_do_not_crash():
    data = pd.DataFrame({"frequency": [3.0] * 500, "recency": [100.0] * 500, "T": [200.0] * 500,
                         "monetary_value": [50.0] * 500})
    try:
        model = BTYDModel().fit(data)
    except BTYDFitError as exc:
        assert len(exc.fit_log) >= 1 and all(e["status"] != "ok" for e in exc.fit_log if e["model"] != "gamma_gamma")
    else:  # a logged fallback: some attempt was rejected before one passed
        assert model.fit_log_[-1]["status"] == "ok"
        assert any(e["status"] == "rejected" and e["reason"] for e in model.fit_log_)


def test_regular_buyers_without_dropout_exhaust_the_chain_with_a_log():
    rng = np.random.default_rng(5)
    n = 1500
    T = rng.integers(200, 700, n).astype(float)
    events = rng.poisson(rng.gamma(50.0, 1 / 1500, n) * T)
    rec = np.where(events > 0, np.clip(np.ceil(T * rng.beta(np.maximum(events, 1), 1)), 1, T), 0.0)
    data = pd.DataFrame({"frequency": events.astype(float), "recency": rec, "T": T, "monetary_value": 10.0})
    with pytest.raises(BTYDFitError) as info:
        BTYDModel(chain=[("bg_nbd", 0.0), ("mbg_nbd", 0.0)]).fit(data)
    assert [e["model"] for e in info.value.fit_log] == ["bg_nbd", "mbg_nbd"]
    assert all(e["status"] == "rejected" and e["reason"] for e in info.value.fit_log)


def test_spend_model_without_repeat_spend_raises_btyd_fit_error(synth):
    with pytest.raises(BTYDFitError, match="Gamma-Gamma needs repeat buyers"):
        BTYDModel().fit(synth.assign(monetary_value=0.0))
    assert BTYDModel(fit_spend=False).fit(synth.assign(monetary_value=0.0)).gg_params_ is None


def test_pickle_and_clone(synth, synth_model):
    import pickle

    from sklearn.base import clone

    restored = pickle.loads(pickle.dumps(synth_model))
    np.testing.assert_array_equal(restored.expected_spend(synth, 90), synth_model.expected_spend(synth, 90))
    fresh = clone(synth_model)
    assert fresh.get_params() == synth_model.get_params() and not hasattr(fresh, "params_")


def test_nan_rows_are_excluded_and_predicted_nan(synth, synth_model):
    extra = pd.DataFrame({"frequency": [np.nan, np.nan], "recency": [np.nan, np.nan], "T": [np.nan, np.nan],
                          "monetary_value": [np.nan, np.nan]}, index=pd.Index(["p_new1", "p_new2"], name="person_id"))
    data = pd.concat([synth, extra])
    model = BTYDModel().fit(data)
    assert model.n_excluded_ == 2 and model.n_customers_ == len(synth)
    assert model.params_ == pytest.approx(synth_model.params_, rel=1e-9)
    pred = model.predict_frame(data, 90, as_of="2025-01-01", with_intervals=False)
    assert pred.index.equals(data.index)
    assert pred.loc[["p_new1", "p_new2"], ["p_alive", "expected_orders", "expected_spend"]].isna().all().all()
    assert pred.loc[["p_new1", "p_new2"], "expected_next_order_date"].isna().all()
    assert pred.drop(index=["p_new1", "p_new2"])[["p_alive", "expected_orders", "p_purchase"]].notna().all().all()


def test_bad_inputs_name_column_and_rows(synth):
    bad = synth.copy()
    bad.iloc[3, bad.columns.get_loc("recency")] = bad["T"].iloc[3] + 5
    with pytest.raises(ValueError, match=r"'recency' must not exceed T: 1 row\(s\), e.g. index \['p_00003'\]"):
        BTYDModel().fit(bad)
    with pytest.raises(ValueError, match="monetary_value"):
        BTYDModel().fit(synth.drop(columns="monetary_value"))
    with pytest.raises(ValueError, match="frequency"):
        BTYDModel().fit(synth.assign(frequency=synth["frequency"] + 0.5))


# ---------------------------------------------------------------------------------------------- predictions
def test_predictions_match_lifetimes(cdnow, cdnow_model):
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


def test_pareto_predictions_are_probabilities(cdnow):
    model = BTYDModel(chain=[("pareto_nbd", 0.0)]).fit(cdnow)
    ref = ParetoNBDFitter()
    ref.params_ = pd.Series(model.params_)
    x, rec, T = (cdnow[c].to_numpy() for c in ("frequency", "recency", "T"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [ref.conditional_probability_alive(x, rec, T),
                    ref.conditional_expected_number_of_purchases_up_to_time(39, x, rec, T),
                    ref.conditional_probability_of_n_purchases_up_to_time(0, 39, x, rec, T)]
    ours = [model.p_alive(cdnow), model.expected_orders(cdnow, 39), model.p_no_purchase(cdnow, 39)]
    for mine, theirs in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-8, atol=1e-12)
    pred = model.predict_frame(cdnow, 39, random_state=1, n_draws=200)
    assert pred["p_alive"].between(0, 1).all() and pred["p_purchase"].between(0, 1).all()
    assert (pred["expected_orders"] >= 0).all()
    assert (pred["p_purchase"] <= 1 - (1 - pred["p_alive"]) + 1e-9).all()


def test_more_orders_never_lower_expected_orders():
    model = BTYDModel(fit_spend=False).fit(simulate(3000, seed=2))
    for T, rec in ((300.0, 290.0), (300.0, 300.0), (100.0, 95.0)):
        grid = pd.DataFrame({"frequency": np.arange(1, 40, dtype=float), "recency": rec, "T": T})
        assert (model.p_alive(grid) > 0.5).all()
        assert np.all(np.diff(model.expected_orders(grid, 180)) >= -1e-12)


def test_longer_since_last_order_never_raises_p_alive(synth_model):
    for x in (1.0, 3.0, 10.0):
        grid = pd.DataFrame({"frequency": x, "recency": np.arange(400, 0, -1, dtype=float), "T": 400.0})
        assert np.all(np.diff(synth_model.p_alive(grid)) <= 1e-12)
        assert np.all(np.diff(synth_model.expected_orders(grid, 90)) <= 1e-12)


def test_predict_frame_columns_and_intervals(synth, synth_model):
    pred = synth_model.predict_frame(synth, 180, as_of="2025-07-01", random_state=0, n_draws=200)
    assert list(pred.columns) == ["p_alive", "expected_orders", "p_purchase", "expected_spend", "spend_p10",
                                  "spend_p90", "days_to_next_order", "expected_next_order_date"]
    assert pred.index.equals(synth.index)
    assert pred["p_purchase"].between(0, 1).all()
    assert (pred["spend_p10"] <= pred["spend_p90"]).all() and (pred["spend_p10"] >= 0).all()
    dates = pred["expected_next_order_date"].dropna()
    assert len(dates) > 0 and (dates >= pd.Timestamp("2025-07-01")).all()
    gone = pred["p_alive"] < 0.05
    assert pred.loc[gone, "expected_next_order_date"].isna().all()
    again = synth_model.predict_frame(synth, 180, as_of="2025-07-01", random_state=0, n_draws=200)
    pd.testing.assert_frame_equal(pred, again)
    lean = synth_model.predict_frame(synth, 180, with_intervals=False)
    assert "spend_p10" not in lean and lean["expected_next_order_date"].isna().all()


@pytest.mark.parametrize("model", ["bg_nbd", "mbg_nbd", "pareto_nbd"])
def test_simulated_spend_mean_matches_expected_spend(cdnow, model):
    fitted = BTYDModel(chain=[(model, 0.0)]).fit(cdnow)
    few = cdnow.iloc[[0, 1, 2, 5, 8]]  # repeat and one-time buyers
    p, q, v = (fitted.gg_params_[k] for k in ("p", "q", "v"))
    x, m, T = few["frequency"].to_numpy(), few["monetary_value"].to_numpy(), few["T"].to_numpy()
    repeat = x > 0
    shape = np.where(repeat, p * x + q, q)
    scale = np.where(repeat, v + x * m, v)
    draws = simulate_alive_ratio(model, fitted.params_, p, x, T, shape, 39.0, 200_000, np.random.default_rng(0))
    simulated = fitted.p_alive(few) * scale * draws.mean(axis=1)
    np.testing.assert_allclose(simulated, fitted.expected_spend(few, 39), rtol=0.03)


def test_spend_quantiles_mix_dead_mass_and_scale(cdnow, cdnow_model):
    qs = cdnow_model.spend_quantiles(cdnow, 39, levels=(0.1, 0.5, 0.9), n_draws=500, random_state=0)
    pa = cdnow_model.p_alive(cdnow)
    assert np.all(qs["q0.1"].to_numpy()[pa < 0.9] == 0.0)  # P(gone) > 10%: the 10% quantile is 0
    assert (qs["q0.1"] <= qs["q0.5"]).all() and (qs["q0.5"] <= qs["q0.9"]).all()
    # same (x, T) and alive probability, doubled spend per order history -> larger upper quantile
    row = cdnow[cdnow["frequency"] == 3].iloc[[0]]
    richer = row.assign(monetary_value=row["monetary_value"] * 2)
    assert (cdnow_model.spend_quantiles(richer, 39, random_state=0)["q0.9"].iloc[0]
            > cdnow_model.spend_quantiles(row, 39, random_state=0)["q0.9"].iloc[0])


def test_compress_rows_roundtrip():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 1000).astype(float)
    b = rng.integers(0, 3, 1000).astype(float)
    (ua, ub), w, inv = compress_rows(a, b)
    assert w.sum() == 1000 and len(w) == len(set(zip(a, b, strict=True)))
    np.testing.assert_array_equal(ua[inv], a)
    np.testing.assert_array_equal(ub[inv], b)
