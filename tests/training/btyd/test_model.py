"""BTYDModel: the fallback chain and its log, pickling, predictions, posterior simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from btyd_data import simulate

from training.btyd import BTYDFitError, BTYDModel
from training.btyd.simulate import simulate_alive_ratio


def test_duplicated_rows_give_identical_parameters(synth, synth_model):
    doubled = pd.concat([synth, synth.iloc[::-1]]).reset_index(drop=True)
    refit = BTYDModel().fit(doubled)
    assert refit.n_unique_rows_ == synth_model.n_unique_rows_
    for k, v in synth_model.params_.items():
        assert refit.params_[k] == pytest.approx(v, rel=1e-6)
    for k, v in synth_model.gg_params_.items():
        assert refit.gg_params_[k] == pytest.approx(v, rel=1e-6)


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


def test_pickle_and_clone(synth, synth_model):
    import pickle

    from sklearn.base import clone

    restored = pickle.loads(pickle.dumps(synth_model))
    np.testing.assert_array_equal(restored.expected_spend(synth, 90), synth_model.expected_spend(synth, 90))
    fresh = clone(synth_model)
    assert fresh.get_params() == synth_model.get_params() and not hasattr(fresh, "params_")


# ---------------------------------------------------------------------------------------------- predictions

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
