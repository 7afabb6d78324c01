"""ScrmService methods called directly on the small trained setup (see conftest.py)."""

from __future__ import annotations

import asyncio
import io
import json

import pandas as pd
import pytest
from pydantic import ValidationError

from features.errors import InputError
from serving.schemas import MAX_IDS
from serving.service import ScrmService, bad_request
from serving.state import ServingSetupError

run = asyncio.run  # /score and /tier are async methods (they answer on the event loop)


def error_locs(exc: pytest.ExceptionInfo) -> list[tuple]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


# --- start-up ------------------------------------------------------------------------------------------------


def test_start_without_data_dir_names_the_command(serving_env, monkeypatch):
    monkeypatch.delenv("SCRM_DATA_DIR")
    with pytest.raises(ServingSetupError, match=r"scrm serve --data"):
        ScrmService()


def test_start_without_snapshot_names_the_command(serving_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SCRM_DATA_DIR", str(tmp_path))
    with pytest.raises(ServingSetupError, match=r"scrm features build --data"):
        ScrmService()


def test_start_without_champion_names_the_command(trained_setup, monkeypatch):
    monkeypatch.setenv("SCRM_DATA_DIR", str(trained_setup.data_dir))  # MLflow: this test's empty store
    with pytest.raises(ServingSetupError, match=r"scrm train all --data \S+ --as-of 2026-01-01"):
        ScrmService()


def test_ready_with_the_champions_and_the_snapshot(service, serving_env):
    from training import registry

    assert service.__is_ready__() and service.__is_alive__()
    state = service.state
    assert state.model_versions == {"churn": str(registry.champion_version("data.churn_90d")),
                                    "clv": str(registry.champion_version("data.clv_365d"))}
    assert str(state.as_of) == "2026-01-01"
    assert len(state.scores) == len(state.features) > 3_000


# --- /score --------------------------------------------------------------------------------------------------


def test_score_by_person_id_or_customer_key_with_unknowns_and_duplicates(service, people, sample_ids):
    ids = sample_ids(20, seed=1)
    keys = people.set_index("person_id").loc[ids, "customer_key"].tolist()
    by_person = run(service.score(customer_ids=ids, with_reasons=False))
    request = [keys[0], "nobody-1", *keys, ids[3], "nobody-2", "nobody-1"]
    by_key = run(service.score(customer_ids=request, with_reasons=False))

    assert by_key.not_found == ["nobody-1", "nobody-2"]
    assert [r.id for r in by_key.results] == [*keys, ids[3]]  # request order, each distinct id once
    assert [r.person_id for r in by_key.results] == [*ids, ids[3]]
    strip = [r.model_dump(exclude={"id"}) for r in by_key.results[:20]]
    assert strip == [r.model_dump(exclude={"id"}) for r in by_person.results]
    assert by_person.model_versions.model_dump() == service.state.model_versions
    assert str(by_person.feature_as_of) == "2026-01-01"


def test_score_fields_for_scored_and_unscored_people(service, sample_ids):
    eligible = run(service.score(customer_ids=sample_ids(30, seed=2, eligible=True))).results
    for r in eligible:
        assert r.eligible and r.ineligible_reason is None
        assert 0 <= r.churn_probability <= 1 and 0 <= r.p_alive <= 1
        assert r.clv.mean >= 0 and r.clv.p10 <= r.clv.p90
        assert r.tier.action_segment != "not_scored" and r.tier.value_band in ("high", "low")
        assert r.rfm.r in range(1, 6) and r.rfm.segment and r.rfm.segment_en
        assert len(r.reasons) <= 3
        contributions = [x.contribution for x in r.reasons]
        assert all(c > 0 for c in contributions) and contributions == sorted(contributions, reverse=True)
        assert all(x.description for x in r.reasons)
    assert any(r.reasons for r in eligible)
    unscored = run(service.score(customer_ids=sample_ids(10, seed=3, eligible=False))).results
    assert unscored
    horizons = (service.state.models.churn.horizon_days, service.state.models.clv.horizon_days)
    for r in [*eligible, *unscored]:  # every answer names the horizons its numbers cover
        assert (r.churn_horizon_days, r.clv_horizon_days) == horizons
    for r in unscored:
        assert not r.eligible and r.ineligible_reason
        assert r.churn_probability is None and r.clv is None and r.reasons == []
        assert r.tier.action_segment == "not_scored" and r.tier.value_band is None


def test_score_equals_scrm_score_on_every_person(service, serving_env, tmp_path):
    """The service answers exactly the rows `scrm score` writes for the same data, as_of and champions."""
    from typer.testing import CliRunner

    from training.cli import app

    out = tmp_path / "scores.parquet"
    cli = CliRunner().invoke(app, ["score", "--data", str(serving_env.data_dir), "--as-of", "2026-01-01",
                                   "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    batch = pd.read_parquet(out).set_index("person_id")
    response = run(service.score(customer_ids=batch.index.tolist(), with_reasons=False))
    assert response.not_found == [] and len(response.results) == len(batch)
    assert (batch["churn_model_version"].astype(str) == response.model_versions.churn).all()
    assert (batch["clv_model_version"].astype(str) == response.model_versions.clv).all()
    assert (batch["feature_as_of"] == pd.Timestamp("2026-01-01")).all()

    def same(got, want) -> bool:
        if got is None:
            return want is None or pd.isna(want)
        return got == want

    for r in response.results:
        row = batch.loc[r.person_id]
        expected_date = None if pd.isna(row["expected_next_order_date"]) else row["expected_next_order_date"].date()
        pairs = [
            (r.eligible, bool(row["eligible"])),
            (r.ineligible_reason, None if pd.isna(row["ineligible_reason"]) else row["ineligible_reason"]),
            (r.churn_probability, row["churn_probability"]),
            (r.clv.mean if r.clv else None, row["clv_mean"]),
            (r.clv.p10 if r.clv else None, row["clv_p10"]),
            (r.clv.p90 if r.clv else None, row["clv_p90"]),
            (r.expected_orders, row["expected_orders"]),
            (r.p_alive, row["p_alive"]),
            (r.expected_next_order_date, expected_date),
            (r.rfm.segment, row["rfm_segment"]),
            (r.lifecycle_stage, row["lifecycle_stage"]),
            (r.tier.tier, row["tier"]),
            (r.tier.action_segment, row["action_segment"]),
            (r.tier.value_band, None if pd.isna(row["value_band"]) else row["value_band"]),
            (r.spend_365d, row["spend_365d"]),
        ]
        for got, want in pairs:
            assert same(got, want), (r.person_id, got, want)


def test_reasons_are_those_of_the_shared_scoring_function(service, sample_ids):
    from training.scoring import reasons_from_table, score

    state = service.state
    ids = sample_ids(25, seed=4)
    features = state.features.set_index("person_id").loc[ids].reset_index()
    expected = score(features, state.models, as_of=state.as_of, clv_cut=state.clv_cut, with_reasons=True)
    got = run(service.score(customer_ids=ids)).results
    assert [[x.model_dump() for x in r.reasons] for r in got] == reasons_from_table(expected)
    # not scored: null in the answer, NaN in the frame
    want = [None if pd.isna(v) else v for v in expected["churn_probability"].tolist()]
    assert [r.churn_probability for r in got] == pytest.approx(want)
    assert [r.tier.action_segment for r in got] == expected["action_segment"].tolist()


@pytest.mark.parametrize(
    ("ids", "loc"),
    [([], ("customer_ids",)), ([""], ("customer_ids", 0)), (["   "], ("customer_ids", 0)),
     (["a", 7], ("customer_ids", 1)), ([f"id{i}" for i in range(MAX_IDS + 1)], ("customer_ids",)),
     (["ok", "\r" + "x" * 128], ("customer_ids", 1))],  # maxLength 128 holds for the id as sent (the document's rule)
)
def test_score_rejects_bad_id_lists_naming_the_field(service, ids, loc):
    with pytest.raises(ValidationError) as exc:
        run(service.score(customer_ids=ids))
    assert loc in error_locs(exc)


@pytest.mark.parametrize("flag", [1, 0, "true", "yes"])
def test_with_reasons_must_be_a_boolean(service, flag):
    with pytest.raises(ValidationError) as exc:
        run(service.score(customer_ids=["a"], with_reasons=flag))
    assert error_locs(exc) == [("with_reasons",)]


def test_ids_are_matched_without_surrounding_whitespace(service, people):
    pid = people["person_id"].iloc[0]
    response = run(service.score(customer_ids=[f"  {pid}\t"], with_reasons=False))
    assert [r.person_id for r in response.results] == [pid] and response.results[0].id == pid


def test_score_accepts_the_largest_request(service, people):
    ids = [f"unknown-{i}" for i in range(MAX_IDS - 3)] + people["person_id"].head(3).tolist()
    response = run(service.score(customer_ids=ids, with_reasons=False))
    assert len(response.results) == 3 and len(response.not_found) == MAX_IDS - 3


# --- /tier ---------------------------------------------------------------------------------------------------


def test_tier_uses_the_rules_and_the_population_cut(service, people, sample_ids):
    from training.decisions.tiers import assign_tiers, clv_value_cut, load_tier_rules

    state = service.state
    rules = load_tier_rules()
    ids = sample_ids(200, seed=5)
    response = run(service.tier(customer_ids=[*ids, "nobody"]))
    assert response.not_found == ["nobody"] and [t.person_id for t in response.tiers] == ids
    assert response.rules.clv_cut == pytest.approx(clv_value_cut(state.scores, rules))
    assert [t.model_dump() for t in response.rules.member_tiers] == [t.model_dump() for t in rules.member_tiers]

    batch = assign_tiers(state.scores, rules).set_index("person_id").loc[ids]
    assert [t.tier for t in response.tiers] == batch["tier"].tolist()
    assert [t.action_segment for t in response.tiers] == batch["action_segment"].tolist()
    thresholds = {t.name: t.min_spend for t in rules.member_tiers}
    ordered = [t.name for t in rules.member_tiers]
    for t in response.tiers:
        assert t.spend_365d >= thresholds[t.tier]
        nxt = ordered.index(t.tier) + 1
        assert nxt == len(ordered) or t.spend_365d < thresholds[ordered[nxt]]
        if t.value_band is not None:
            assert (t.value_band == "high") == (t.clv_mean >= response.rules.clv_cut and t.clv_mean > 0)
            assert (t.risk_band == "at_risk") == (t.churn_probability >= response.rules.churn_threshold)


def test_tier_answers_the_predicted_tier_move_and_probabilities_of_batch_scoring(service, sample_ids):
    from datetime import timedelta

    from training.decisions.tier_forecast import predict_tiers

    state = service.state
    ids = [*sample_ids(40, seed=8, eligible=True), *sample_ids(5, seed=9, eligible=False)]
    response = run(service.tier(customer_ids=ids))
    horizon = state.models.clv.horizon_days
    expected = predict_tiers(state.scores, state.rules).set_axis(state.scores["person_id"]).loc[ids]
    assert response.horizon_days.clv == horizon
    for t in response.tiers:
        row = expected.loc[t.person_id]
        assert t.tier_horizon_days == horizon and t.predicted_at == state.as_of + timedelta(days=horizon)
        if t.not_scored_reason is not None:  # not scored: nothing predicted
            assert t.predicted_tier is None and t.tier_move is None and t.tier_move_probability is None
            continue
        assert (t.predicted_tier, t.predicted_tier_en, t.tier_move) == (
            row["predicted_tier"], row["predicted_tier_en"], row["tier_move"])
        assert t.predicted_spend_365d == pytest.approx(row["predicted_spend_365d"])
        p = t.tier_move_probability
        assert (p.up, p.down, p.stay) == pytest.approx((row["p_tier_up"], row["p_tier_down"], row["p_tier_stay"]))
        assert p.up + p.down + p.stay == pytest.approx(1.0)
    assert any(t.tier_move_probability is None for t in response.tiers)


def test_published_scores_without_the_tier_forecast_get_it_from_the_shared_function(service, sample_ids):
    from serving.state import ServingState
    from training.decisions.tier_forecast import PREDICTED_TIER_COLUMNS

    state = service.state
    old = state.scores.drop(columns=["spend_carryover", *PREDICTED_TIER_COLUMNS])
    rebuilt = ServingState(state.models, state.snapshot, rules=state.rules, data_dir=state.data_dir, scores=old)
    ids = sample_ids(30, seed=10)
    positions = state.resolve(ids).positions
    assert rebuilt.tier_records(positions) == state.tier_records(positions)


# --- /lookalike ----------------------------------------------------------------------------------------------


def test_lookalike_audience_excludes_seed_and_opt_outs_and_is_logged(service, people, serving_env):
    from training import tracking

    buyers = people[people["eligible"]].sort_values(["spend_365d", "person_id"], ascending=[False, True])
    seeds = buyers["person_id"].head(120).tolist()
    as_keys = buyers["customer_key"].head(60).tolist() + seeds[60:]  # half given as channel keys
    response = service.lookalike(seed_customer_ids=[*as_keys, "nobody"], size=150, exclude_columns=["spend_365d"])

    audience = pd.DataFrame([a.model_dump() for a in response.audience])
    assert len(audience) == 150 and audience["rank"].tolist() == list(range(1, 151))
    assert audience["score"].is_monotonic_decreasing and audience["score"].between(0, 1).all()
    assert not audience["person_id"].isin(seeds).any()
    opted_out = set(people.loc[people["marketing_opt_out"].fillna(True).astype(bool), "person_id"])
    assert opted_out and not set(audience["person_id"]) & opted_out
    assert response.seed_report.n_valid == 120 and response.seed_report.n_unknown == 1
    assert response.seed_report.unknown_examples == ["nobody"]
    assert response.holdout.n_seeds == 24 and response.holdout.lift_at_10pct > 1
    run = tracking.client().get_run(response.mlflow_run_id)
    assert run.data.tags["scrm.kind"] == "lookalike"
    assert run.data.metrics["holdout.recall_at_10pct"] == pytest.approx(response.holdout.recall_at_10pct)
    # the run says which data it was fitted on: the snapshot's input fingerprint, as training runs do
    fingerprint = tracking.data_fingerprint(service.state.snapshot.manifest["inputs"])
    assert run.data.tags[tracking.TAG_FINGERPRINT] == fingerprint
    assert response.excluded["seed"] == 120 and response.excluded["opt_out"] > 0
    assert any("1 of 121 seed id(s) match no person_id" in note for note in response.notes)


def test_unknown_consent_is_null_in_score_and_the_brand_policy_decides_target(service, monkeypatch, tmp_path):
    """A person without a recorded consent is shown as unknown (null), never as opted out; /target includes
    them under the brand's consent: opt_out (the default) and leaves them out, counted, under opt_in."""
    from features.pipeline import Snapshot
    from serving.state import ServingState

    base = service.state
    features = base.features.copy()
    eligible = base.scores["eligible"].to_numpy() & base.scores["marketing_opt_out"].eq(False).to_numpy()
    # people worth an upsell contact at any consent (value = clv × 5% × (1 − churn) well above the cost below)
    worth = (base.scores["clv_mean"] * 0.05 * (1 - base.scores["churn_probability"])).gt(0.01).to_numpy()
    unknown_rows = features.index[eligible & worth][:40]
    features["marketing_opt_out"] = features["marketing_opt_out"].astype("boolean")
    features.loc[unknown_rows, "marketing_opt_out"] = pd.NA
    unknown_ids = features.loc[unknown_rows, "person_id"].tolist()
    snapshot = Snapshot(features=features, identity=base.identity, manifest=base.snapshot.manifest)
    campaign = {"campaign_id": "all-in", "objective": "upsell", "budget": 1e9, "cost_per_contact": 0.001,
                "control_fraction": 0.0}
    chosen = {}
    for policy in ("opt_out", "opt_in"):
        data_dir = tmp_path / policy
        data_dir.mkdir()
        (data_dir / "brand.yaml").write_text(f"consent: {policy}\n", encoding="utf-8")
        state = ServingState(base.models, snapshot, data_dir=data_dir)
        assert state.consent == policy
        monkeypatch.setattr(service, "state", state)
        scored = run(service.score(customer_ids=unknown_ids[:5], with_reasons=False)).results
        assert [r.marketing_opt_out for r in scored] == [None] * 5
        response = service.target(**campaign)
        assert response.summary.consent == policy
        chosen[policy] = {a.person_id for a in response.audience}
        assert response.summary.excluded.consent_unknown == (len(unknown_ids) if policy == "opt_in" else 0)
    assert set(unknown_ids) <= chosen["opt_out"] and not set(unknown_ids) & chosen["opt_in"]


def test_lookalike_bad_requests_name_the_field(service, people):
    seeds = people["person_id"].head(10).tolist()
    with pytest.raises(ValidationError) as exc:
        service.lookalike(seed_customer_ids=seeds, size=10)
    assert error_locs(exc) == [("seed_customer_ids",)] and "at least 50" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        service.lookalike(seed_customer_ids=seeds, size=10, fraction=0.1)
    assert error_locs(exc) == [("fraction",)]
    with pytest.raises(ValidationError) as exc:
        service.lookalike(seed_customer_ids=seeds, size=10, exclude_columns=["no_such_column"])
    assert error_locs(exc) == [("exclude_columns",)]


# --- /target -------------------------------------------------------------------------------------------------

CAMPAIGNS = [
    {"campaign_id": "retain-q1", "objective": "retain", "budget": 100, "cost_per_contact": 0.7},
    {"campaign_id": "winback-q1", "objective": "winback", "budget": 55.5, "cost_per_contact": 0.3,
     "offer_cost": 0.2, "control_fraction": 0.2},
    {"campaign_id": "upsell-gold", "objective": "upsell", "budget": 10_000, "cost_per_contact": 1.0,
     "max_contacts": 37, "control_fraction": 0.5, "filters": {"tiers": ["gold", "铂金", "diamond"]}},
    {"campaign_id": "retain-risky", "objective": "retain", "budget": 1_000, "cost_per_contact": 0.1,
     "control_fraction": 0.0, "filters": {"churn_range": [0.4, 1.0], "lifecycle_stages": ["at_risk", "active"]}},
]


@pytest.mark.parametrize("campaign", CAMPAIGNS, ids=[c["campaign_id"] for c in CAMPAIGNS])
def test_target_budget_control_and_opt_out_properties(service, people, campaign):
    first = service.target(**campaign)
    again = service.target(**campaign)
    s = first.summary
    audience = pd.DataFrame([a.model_dump() for a in first.audience])
    assert audience.equals(pd.DataFrame([a.model_dump() for a in again.audience]))  # same split every call
    assert s.audience == len(audience) > 0
    assert s.spend <= campaign["budget"] + 1e-9
    assert s.spend == pytest.approx(s.contacts * (campaign["cost_per_contact"] + campaign.get("offer_cost", 0)))
    assert abs(s.control - campaign.get("control_fraction", 0.1) * s.audience) <= 1
    assert (audience["group"] == "control").sum() == s.control and s.treatment + s.control == s.audience
    if "max_contacts" in campaign:
        assert s.contacts <= campaign["max_contacts"]
    opted_out = set(people.loc[people["marketing_opt_out"].fillna(True).astype(bool), "person_id"])
    assert not set(audience["person_id"]) & opted_out
    assert audience["expected_net_value"].is_monotonic_decreasing and (audience["expected_net_value"] > 0).all()
    assert first.model_versions.model_dump() == service.state.model_versions


def test_target_csv_is_the_json_audience(service):
    campaign = CAMPAIGNS[1]
    csv = pd.read_csv(io.StringIO(service.target_csv(**campaign)))
    audience = pd.DataFrame([a.model_dump() for a in service.target(**campaign).audience])
    assert csv["person_id"].tolist() == audience["person_id"].tolist()
    assert csv["group"].tolist() == audience["group"].tolist()
    assert csv["expected_net_value"].to_numpy() == pytest.approx(audience["expected_net_value"].to_numpy())


@pytest.mark.parametrize(
    "money",
    [{"budget": 1e308}, {"budget": 1.7976931348623157e308, "cost_per_contact": 5e-324},
     {"budget": 1e-10, "cost_per_contact": 5e-324}, {"budget": 5e-324, "cost_per_contact": 5e-324},
     {"budget": 0}, {"budget": 50, "cost_per_contact": 1e300, "offer_cost": 1e300}],
)
def test_target_answers_any_finite_money(service, money):
    """Huge budgets and tiny costs were a 500 (Decimal division); now capped to the population."""
    campaign = {**CAMPAIGNS[0], "control_fraction": 0.0, **money}
    s = service.target(**campaign).summary
    assert s.spend <= campaign["budget"] and 0 <= s.audience <= s.population
    if campaign["budget"] >= 1e300 * campaign["cost_per_contact"]:  # pays for everyone
        assert s.excluded.budget == 0 and s.audience > 0
    assert service.target_csv(**campaign).count("\n") == s.audience + 1


def test_target_csv_neutralises_formula_cells(service):
    campaign = {**CAMPAIGNS[0], "campaign_id": "=cmd|' /C calc'!A0"}
    csv = pd.read_csv(io.StringIO(service.target_csv(**campaign)))
    assert len(csv) > 0 and (csv["campaign_id"] == "'=cmd|' /C calc'!A0").all()
    assert {a.campaign_id for a in service.target(**campaign).audience} == {campaign["campaign_id"]}


@pytest.mark.parametrize(
    ("change", "loc"),
    [({"budget": -1}, ("budget",)),
     ({"cost_per_contact": 1.7e308, "offer_cost": 1e308}, ("offer_cost",)), ({"objective": "acquire"}, ("objective",)),
     ({"cost_per_contact": 0}, ("cost_per_contact",)), ({"control_fraction": 0.9}, ("control_fraction",)),
     ({"filters": {"tiers": ["gld"]}}, ("filters", "tiers")),
     ({"filters": {"segments": ["vip"]}}, ("filters", "segments")),
     ({"filters": {"churn_range": [0.9, 0.1]}}, ("filters", "churn_range")),
     ({"seed_customer_ids": ["p_1"]}, ("seed_customer_ids",)), ({"budget": "lots"}, ("budget",)),
     # the document's types hold (the fuzz found lax coercions): no numbers as strings, no 3.0 for a count
     ({"budget": "50"}, ("budget",)), ({"max_contacts": 3.0}, ("max_contacts",)),
     ({"filters": {"min_clv": "3"}}, ("filters", "min_clv")), ({"assumptions": {"save_rate": "0.2"}},
                                                               ("assumptions", "save_rate")),
     ({"colour": "red"}, ("colour",))],
)
def test_target_bad_specs_name_the_field(service, change, loc):
    with pytest.raises(ValidationError) as exc:
        service.target(**{**CAMPAIGNS[0], **change})
    assert loc in error_locs(exc)


# --- /evaluate_campaign --------------------------------------------------------------------------------------


def test_evaluate_campaign_matches_the_shared_evaluation(service, serving_env):
    from features.contract import load_dataset
    from features.contract_rules import known_customer_keys
    from features.pipeline import complete_key_map
    from training.decisions.campaigns import evaluate_campaign

    data = load_dataset(serving_env.data_dir, rejects_dir=serving_env.data_dir.parent / "rejects")
    campaign_id = str(data.campaign_touches["campaign_id"].iloc[0])
    expected = evaluate_campaign(data.campaign_touches, data.orders,
                                 complete_key_map(data, service.state.identity), campaign_id, window_days=21,
                                 known_keys=known_customer_keys(data.orders, data.identities))
    got = service.evaluate_campaign(campaign_id=campaign_id, window_days=21)
    for lift in (expected["conversion"], expected["revenue_per_head"]):  # intervals come as {low, high}
        for key in ("absolute_ci", "relative_ci"):
            lift[key] = None if lift[key] is None else dict(zip(("low", "high"), lift[key], strict=True))
    assert json.loads(got.model_dump_json(exclude={"model_versions", "feature_as_of", "brand", "horizon_days"})) == json.loads(
        json.dumps(expected))
    assert got.treatment.persons > 0 and got.control.persons > 0
    ci = got.conversion.absolute_ci
    assert ci.low <= got.conversion.absolute_lift <= ci.high


def test_evaluate_campaign_leaves_out_touches_of_unknown_keys(service, monkeypatch):
    """Touches of keys in neither orders nor identities were phantom non-converters; now left out and counted."""
    import dataclasses

    data = service.state.evaluation_data()
    campaign_id = str(data.touches["campaign_id"].iloc[0])
    before = service.evaluate_campaign(campaign_id=campaign_id)
    sent = data.touches.loc[data.touches["campaign_id"] == campaign_id, "sent_ts"].min()
    ghosts = pd.Series([f"ghost{i}" for i in range(50)], dtype="str")
    phantoms = pd.DataFrame({"campaign_id": campaign_id, "customer_key": ghosts, "sent_ts": sent, "group": "control"})
    key_map = pd.concat([data.key_to_person, pd.DataFrame({"customer_key": ghosts, "person_id": "p_" + ghosts})])
    monkeypatch.setattr(service.state, "_evaluation", dataclasses.replace(
        data, touches=pd.concat([data.touches, phantoms], ignore_index=True), key_to_person=key_map))
    got = service.evaluate_campaign(campaign_id=campaign_id)
    assert before.unknown_key_touches == 0 and got.unknown_key_touches == 50
    assert got.control == before.control and got.conversion == before.conversion
    assert any("50 touch(es) of customer_keys found in neither orders nor identities" in w for w in got.warnings)


@pytest.mark.parametrize(
    ("model", "error", "loc"),
    [
        ("LookalikeRequest", InputError("seed: only 3 valid seed id(s)", field="seed_ids"), ("seed_customer_ids",)),
        ("LookalikeRequest", InputError("no feature columns left", field="exclude_columns"), ("exclude_columns",)),
        ("TargetRequest", InputError("lookalike_scores: bad", field="lookalike_scores"), ("seed_customer_ids",)),
        ("TargetRequest", InputError("filters.segments: unknown", field=("filters", "segments")),
         ("filters", "segments")),
        ("TargetRequest", InputError("scores: person_id must be unique", field=("scores", "person_id")), ()),
        ("TargetRequest", ValueError("filters.tiers: looks like a field but is untyped"), ()),
        ("EvaluateRequest", InputError("campaign_id 'x': unknown campaign", field="campaign_id"), ("campaign_id",)),
    ],
)
def test_bad_request_reads_the_typed_field_not_the_message(model, error, loc):
    """The 400's loc is the error's field when the request has it; server-side data and untyped errors: default."""
    from serving import schemas

    with pytest.raises(ValidationError) as exc, bad_request(getattr(schemas, model), ()):
        raise error
    assert error_locs(exc) == [loc] and str(error) in str(exc.value)


def test_evaluate_campaign_bad_requests_name_the_field(service):
    with pytest.raises(ValidationError) as exc:
        service.evaluate_campaign(campaign_id="no-such-campaign")
    assert error_locs(exc) == [("campaign_id",)] and "unknown campaign" in str(exc.value)
    known = service.state.evaluation_data().touches["campaign_id"].astype(str).unique()
    assert not [c for c in known if c in str(exc.value)]  # other campaigns are counted, never listed
    with pytest.raises(ValidationError) as exc:
        service.evaluate_campaign(campaign_id="x", window_days=0)
    assert error_locs(exc) == [("window_days",)]


# --- no raw PII ----------------------------------------------------------------------------------------------


def _scalars(value) -> set[str]:
    """Every string and number inside a JSON document, as text."""
    if isinstance(value, dict):
        return set().union(*(_scalars(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_scalars(v) for v in value)) if value else set()
    return {str(value)}


def test_no_raw_pii_in_any_response(service, people, serving_env, sample_ids):
    identities = pd.read_parquet(serving_env.data_dir / "identities.parquet")
    raw = {str(v).strip() for col in ("phone", "unionid") for v in identities[col].dropna()}
    raw |= {"".join(ch for ch in v if ch.isdigit()) for v in raw}  # phones without their formatting
    raw = {v for v in raw if len(v) >= 6}
    assert len(raw) > 1_000
    ids = sample_ids(300, seed=6)
    keys = people.set_index("person_id").loc[ids, "customer_key"].tolist()
    responses = [run(service.score(customer_ids=ids + keys)), run(service.tier(customer_ids=ids + keys)),
                 service.target(**CAMPAIGNS[0])]
    for response in responses:
        values = _scalars(json.loads(response.model_dump_json()))
        assert len(values) > 100 and not values & raw


def test_a_response_that_breaks_its_schema_is_a_server_error_not_a_400():
    from serving.schemas import ClvEstimate
    from serving.service import respond

    assert respond(ClvEstimate, mean=1.0, p10=0.5, p90=2.0).mean == 1.0
    with pytest.raises(RuntimeError, match="ClvEstimate does not match its schema"):
        respond(ClvEstimate, mean="lots", p10=0.5, p90=2.0)


def test_openapi_document_is_3_1_keeps_nullable_fields_and_describes_the_400_body():
    """BentoML declared 3.0.2, dropped the null branch of top-level fields and called the 400 detail a string."""
    doc = json.loads(json.dumps(ScrmService.openapi_spec.asdict()))
    assert doc["openapi"] == "3.1.0"
    body = {path: doc["paths"][path]["post"] for path in ("/target", "/lookalike", "/evaluate_campaign")}
    target = body["/target"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert target["lookalike"]["anyOf"] == [{"$ref": "#/components/schemas/HoldoutQuality"}, {"type": "null"}]
    evaluation = body["/evaluate_campaign"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"type": "null"} in evaluation["properties"]["incremental_revenue"]["anyOf"]
    request = body["/lookalike"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"type": "null"} in request["size"]["anyOf"] and {"type": "null"} in request["fraction"]["anyOf"]
    detail = doc["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    assert detail["type"] == "array" and detail["items"]["required"] == ["loc", "msg"]
    client_schema = ScrmService.apis["lookalike"].schema()  # what bentoml's HTTP clients read: still resolved
    assert "$defs" not in json.dumps(client_schema)


# --- /target objective incremental_margin ----------------------------------------------------------------------

UPLIFT_CAMPAIGN = {"campaign_id": "uplift-q1", "objective": "incremental_margin", "budget": 200,
                   "cost_per_contact": 0.3, "control_fraction": 0.2}


def test_target_incremental_margin_without_uplift_model_is_a_400_naming_objective(service, serving_env):
    """No registered uplift model: a 400 naming ``objective`` and the command that trains one, never a 500."""
    with pytest.raises(ValidationError) as exc:
        service.target(**UPLIFT_CAMPAIGN)
    assert error_locs(exc) == [("objective",)]
    assert "data.uplift_14d" in str(exc.value) and "scrm train uplift" in str(exc.value)
    assert service.state.uplift_cache is None


@pytest.mark.slow
def test_target_incremental_margin_with_the_uplift_champion(service, serving_env, people, monkeypatch, tmp_path):
    """Train and register the uplift model in a copy of the store; /target then ranks by it."""
    from features.contract import load_dataset
    from training.uplift_model import train_uplift

    setup = serving_env.copy_store(tmp_path / "store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", setup.tracking_uri)
    trained = train_uplift(load_dataset(setup.data_dir), setup.as_of, n_boot=3)
    assert trained.decision.decision == "first_champion"
    try:
        first = service.target(**UPLIFT_CAMPAIGN)
        again = service.target(**UPLIFT_CAMPAIGN)
        s = first.summary
        audience = pd.DataFrame([a.model_dump() for a in first.audience])
        assert audience.equals(pd.DataFrame([a.model_dump() for a in again.audience]))  # same control group
        assert s.audience == len(audience) > 0 and s.spend <= UPLIFT_CAMPAIGN["budget"]
        assert (audience["group"] == "control").sum() == s.control == round(0.2 * s.audience)
        opted_out = set(people.loc[people["marketing_opt_out"].fillna(True).astype(bool), "person_id"])
        assert not set(audience["person_id"]) & opted_out
        assert audience["expected_net_value"].is_monotonic_decreasing
        u = s.uplift
        assert u.model_version == f"data.uplift_14d/{trained.version}" and u.n_boot == 3
        assert u.expected_incremental_revenue == pytest.approx(u.expected_incremental_conversions
                                                              * u.revenue_per_conversion)
        assert u.revenue_ci[0] <= u.revenue_ci[1]
    finally:
        service.state.uplift_cache = None  # other tests see the session store (no uplift model)
