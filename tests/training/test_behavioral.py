"""Behavioural model tests: directional expectations, the promotion gate, BTYD failure and part-way failures.

Directional tests perturb real snapshot rows "all else equal" and score them through the same path as
production (BTYD and derived inputs recomputed by the models from the perturbed snapshot), with models of the
default LightGBM settings: the unit tests' tiny ones lean on the strongest features (browsing) and leave the
order counts almost unused.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, N_CUTOFFS, fitted_churn, fitted_clv, small

from training import registry, tracking
from training.clv import more_orders
from training.train import train_all, train_churn


@pytest.fixture(scope="module")
def repeat_buyers():
    snap = small().cache.features(AS_OF)
    return snap[(snap["frequency"] >= 1) & (snap["tenure_days"] >= 7)]


@pytest.mark.parametrize("days", [1, 7, 30, 120])
def test_longer_since_the_last_order_never_lowers_churn_risk(repeat_buyers, days):
    """Same people, same first order and tenure, their last order ``days`` earlier: risk never falls."""
    base = repeat_buyers[repeat_buyers["recency"] >= days]
    later = base.copy()
    later["recency_days"] = later["recency_days"] + days  # days since the last paid order
    later["recency"] = later["recency"] - days  # BTYD recency: first to last purchase day
    model = fitted_churn(fast=False).model
    p0 = model.predict_frame(base)["churn_probability"].to_numpy()
    p1 = model.predict_frame(later)["churn_probability"].to_numpy()
    assert len(base) > 100
    assert np.all(p1 >= p0 - 1e-12), np.max(p0 - p1)
    # and it does rise, for people not already on the calibration's top step (isotonic steps are flat)
    below_top = p0 < p0.max()
    assert np.mean(p1[below_top] > p0[below_top]) > (0.3 if days >= 30 else 0.0)


@pytest.mark.parametrize("extra", [1, 3])
def test_more_past_orders_never_lower_clv(repeat_buyers, extra):
    model = fitted_clv(fast=False).model
    assert model.selection_[model.family_]["monotone_orders"]
    v0 = model.predict(repeat_buyers)
    v1 = model.predict(more_orders(repeat_buyers, extra))
    assert np.all(v1 >= v0 - 1e-9), np.max(v0 - v1)
    assert np.mean(v1 > v0) > 0.3


def test_the_btyd_family_alone_can_fall_with_more_orders(repeat_buyers):
    """Why the check exists: BG/NBD expects fewer orders from frequent buyers who went quiet."""
    btyd = small().cache.btyd(AS_OF)
    v0 = btyd.expected_spend(repeat_buyers, HORIZON)
    v1 = btyd.expected_spend(more_orders(repeat_buyers, 3), HORIZON)
    assert np.any(v1 < v0 - 1e-9)
    assert not fitted_clv().model.selection_["btyd"]["monotone_orders"]


def test_the_promotion_gate_keeps_a_worse_model_out():
    s = small()
    common = dict(cache=s.cache, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS)
    good = train_churn(s.dataset, AS_OF, model_params=FAST, **common)
    churn = good.registered_name
    assert churn == f"{s.data_dir.name}.churn_{HORIZON}d"
    assert good.decision.decision == "first_champion" and registry.champion_version(churn) == 1
    # one stump: a much worse model on the same validation window
    worse = train_churn(s.dataset, AS_OF, model_params={"n_estimators": 1, "num_leaves": 2, "n_jobs": 1}, **common)
    assert worse.metrics["auc"] < good.metrics["auc"]
    assert worse.decision.decision == "challenger"
    assert registry.champion_version(churn) == 1 and registry.challenger_version(churn) == 2
    run = tracking.client().get_run(worse.run_id)
    assert run.data.tags["scrm.gate_decision"] == "challenger"
    assert run.data.metrics["gate.new_value"] < run.data.metrics["gate.champion_value"]


def test_a_run_failing_part_way_leaves_champion_untouched(monkeypatch):
    s = small()
    common = dict(cache=s.cache, churn_horizon=HORIZON, clv_horizon=HORIZON, n_cutoffs=N_CUTOFFS,
                  churn_params=FAST, clv_params=FAST_CLV)
    first = train_all(s.dataset, AS_OF, **common)
    churn, clv = first["churn"].registered_name, first["clv"].registered_name
    assert registry.champion_version(churn) == 1 and registry.champion_version(clv) == 1

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while plotting")

    # the CLV run fails while logging, after the new churn version was fitted, logged and registered
    monkeypatch.setattr("training.train.plots.clv_decile_plot", broken)
    better = {**FAST, "n_estimators": 80}
    with pytest.raises(RuntimeError, match="disk full"):
        train_all(s.dataset, AS_OF, **{**common, "churn_params": better})
    c = tracking.client()
    assert registry.champion_version(churn) == 1 and registry.champion_version(clv) == 1
    assert registry.challenger_version(churn) is None
    new_churn = c.get_model_version(churn, "2")  # registered, but no alias moved, and marked as never gated
    assert not new_churn.aliases and new_churn.tags["gate_decision"] == "not_gated"
    assert c.get_run(new_churn.run_id).data.tags["scrm.gate_decision"] == "not_gated"
    failed = c.search_runs([c.get_experiment_by_name("clv").experiment_id], order_by=["start_time DESC"])[0]
    assert failed.info.status == "FAILED" and failed.info.run_id != first["clv"].run_id


def _degenerate(s, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        results = train_all(s.dataset, AS_OF, cache=s.cache, churn_horizon=HORIZON, clv_horizon=HORIZON,
                            n_cutoffs=N_CUTOFFS, churn_params=FAST, clv_params=FAST_CLV)
    assert s.cache.btyd(AS_OF) is None and "every BTYD option failed" in s.cache.btyd_status(AS_OF)
    clv, churn = results["clv"], results["churn"]
    assert clv.model.family_ == "lgbm" and clv.model.orders_model_ is not None
    assert not churn.model.uses_btyd_
    assert "BTYD family unavailable" in caplog.text
    run = tracking.client().get_run(clv.run_id)
    assert run.data.params["btyd.status"] == "failed" and run.data.tags["scrm.btyd_status"] == "failed"
    assert registry.champion_version(clv.registered_name) == 1 and 0 < clv.metrics["gini"] <= 1
    snap = s.cache.features(AS_OF)
    from training.scoring import Models, score

    out = score(snap, Models(churn.model, clv.model), as_of=AS_OF)
    ok = out[out["eligible"]]
    assert ok["clv_mean"].notna().all() and ok["churn_probability"].notna().all() and ok["p_alive"].isna().all()


def test_degenerate_btyd_data_does_not_crash_training(caplog):
    """Nobody ever drops out: BG/NBD and MBG/NBD end at a bound at every cutoff; LightGBM carries on."""
    _degenerate(small(800, 5, config="frozen", quick_btyd=True), caplog)


@pytest.mark.slow
def test_degenerate_btyd_data_with_the_full_fallback_chain(caplog):
    """The same with the default chain (Pareto/NBD included, ~30 s per degenerate fit)."""
    _degenerate(small(800, 5, config="frozen"), caplog)
