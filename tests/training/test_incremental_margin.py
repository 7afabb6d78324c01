"""Objective incremental_margin: ranking by predicted uplift × revenue per conversion × margin − cost, consent, the
deterministic control group and the expected incremental revenue with its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from training.decisions.targeting import UpliftScores, ValueAssumptions, select_audience

RPC = 250.0  # revenue per conversion
SCORES_SEED = 21  # the `scores` fixture's (conftest.py)


def uplift_for(scores: pd.DataFrame, seed: int = 0, n_boot: int = 30) -> UpliftScores:
    """Predicted uplift for ~90% of people (some negative: people a contact puts off) and bootstrap draws."""
    rng = np.random.default_rng(seed)
    ids = scores["person_id"].to_numpy().astype(str)
    keep = rng.uniform(size=len(ids)) < 0.9
    point = rng.normal(0.03, 0.05, size=int(keep.sum()))
    draws = point + rng.normal(0.0, 0.02, size=(n_boot, len(point)))
    return UpliftScores(uplift=pd.Series(point, index=ids[keep]), draws=draws, revenue_per_conversion=RPC,
                        window_days=14)


def test_shared_scores_fixture_uses_this_modules_seed(scores, tiers):
    """``scores`` / ``tiers`` come from ``conftest.py``, seeded by ``SCORES_SEED`` (not the targeting tests' 11)."""
    assert len(scores) == 3000 and scores["person_id"].str.startswith(f"p_{SCORES_SEED:03d}").all()
    assert tiers["person_id"].tolist() == scores["person_id"].tolist()


SPEC = {"campaign_id": "m1", "objective": "incremental_margin", "budget": 2000.0, "cost_per_contact": 1.0,
        "offer_cost": 1.0, "control_fraction": 0.2}


def test_ranks_by_uplift_times_margin_minus_cost(scores, tiers):
    up = uplift_for(scores)
    result = select_audience(scores, tiers, {**SPEC, "budget": 1e9}, uplift_scores=up,
                             assumptions=ValueAssumptions(margin_rate=0.4))
    aud = result.audience
    expected = up.uplift.loc[aud["person_id"]].to_numpy() * RPC * 0.4
    np.testing.assert_allclose(aud["expected_value"], expected)
    np.testing.assert_allclose(aud["expected_net_value"], expected - 2.0)
    assert aud["expected_net_value"].is_monotonic_decreasing and (aud["expected_net_value"] > 0).all()
    # money no object: everyone eligible, not opted out, scored by the model and worth the contact is in
    s = scores.set_index("person_id")
    u = up.uplift.reindex(s.index)
    wanted = s.index[s["eligible"] & s["marketing_opt_out"].astype(object).ne(True) & (u * RPC * 0.4 - 2.0 > 0)]
    assert set(aud["person_id"]) == set(wanted)
    # people the model does not score are outside the scope, those a contact puts off are not worth it
    excluded = result.summary["excluded"]
    assert excluded["filtered"] > 0 and excluded["not_positive_value"] > 0


def test_budgeted_audience_is_the_top_uplift_and_never_opted_out(scores, tiers):
    up = uplift_for(scores)
    # the opted-out people get the highest uplift of all: still never selected
    opted_out = scores.loc[scores["marketing_opt_out"].astype(object).eq(True), "person_id"].astype(str)
    boosted = up.uplift.copy()
    boosted[boosted.index.isin(opted_out)] = 0.9
    up = UpliftScores(boosted, up.draws, RPC, 14)
    result = select_audience(scores, tiers, {**SPEC, "budget": 500.0}, uplift_scores=up)
    aud, summary = result.audience, result.summary
    assert len(opted_out) > 0 and not set(aud["person_id"]) & set(opted_out)
    assert summary["excluded"]["opt_out"] == len(opted_out)
    assert summary["spend"] <= 500.0 and summary["excluded"]["budget"] > 0
    # the chosen are the best by uplift among the allowed candidates
    chosen_min = up.uplift.loc[aud["person_id"]].min()
    left_out = up.uplift.drop(aud["person_id"]).drop(opted_out, errors="ignore")
    allowed = scores.set_index("person_id").loc[left_out.index]
    assert (left_out[allowed["eligible"].to_numpy()] <= chosen_min).all()


def test_control_group_is_deterministic(scores, tiers):
    first = select_audience(scores, tiers, SPEC, uplift_scores=uplift_for(scores)).audience
    again = select_audience(scores.sample(frac=1.0, random_state=3), tiers, SPEC,
                            uplift_scores=uplift_for(scores)).audience
    ctrl = set(first.loc[first["group"] == "control", "person_id"])
    assert ctrl == set(again.loc[again["group"] == "control", "person_id"])
    assert len(ctrl) == round(0.2 * len(first)) > 0


def test_expected_incremental_revenue_and_its_interval(scores, tiers):
    up = uplift_for(scores)
    result = select_audience(scores, tiers, SPEC, uplift_scores=up)
    aud, block = result.audience, result.summary["uplift"]
    treated = aud.loc[aud["group"] == "treatment", "person_id"]
    conversions = up.uplift.loc[treated].sum()
    assert block["ranking_model_conversions"] == pytest.approx(conversions)
    pos = up.uplift.index.get_indexer(treated)
    sums = up.draws[:, pos].sum(axis=1)
    # the estimate and the interval: mean and percentiles over the bootstrap refits
    assert block["expected_incremental_conversions"] == pytest.approx(sums.mean())
    assert block["expected_incremental_revenue"] == pytest.approx(sums.mean() * RPC)
    lo, hi = block["revenue_ci"]
    assert lo == pytest.approx(np.quantile(sums, 0.025) * RPC) and hi == pytest.approx(np.quantile(sums, 0.975) * RPC)
    assert lo < block["expected_incremental_revenue"] < hi
    assert block["conversions_ci"] == pytest.approx([lo / RPC, hi / RPC])
    # without bootstrap refits: the ranking model's own sum and no interval
    bare = UpliftScores(up.uplift, np.empty((0, len(up.uplift))), RPC, 14)
    block = select_audience(scores, tiers, SPEC, uplift_scores=bare).summary["uplift"]
    assert block["expected_incremental_conversions"] == pytest.approx(conversions)
    assert block["revenue_ci"] == [None, None] and block["n_boot"] == 0
    block = result.summary["uplift"]
    assert block["n_boot"] == 30 and block["window_days"] == 14 and block["revenue_per_conversion"] == RPC
    # gross value of the treated = incremental revenue × margin rate (default 0.3)
    assert result.summary["expected_incremental_value"] == pytest.approx(conversions * RPC * 0.3)


def test_uplift_scores_required_there_and_only_there(scores, tiers):
    with pytest.raises(InputError, match="uplift_scores: required with objective 'incremental_margin'"):
        select_audience(scores, tiers, SPEC)
    with pytest.raises(InputError, match="only used there"):
        select_audience(scores, tiers, {**SPEC, "objective": "retain"}, uplift_scores=uplift_for(scores))
    # the old objectives carry no uplift block
    assert "uplift" not in select_audience(scores, tiers, {**SPEC, "objective": "retain"}).summary
