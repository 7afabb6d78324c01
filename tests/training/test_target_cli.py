"""`scrm target` on orders-only data: the brand's consent policy decides, and the summary says why.

Acceptance (issue 11): orders-only data with ``consent: opt_in`` selects nobody and says why; with ``opt_out``
everyone eligible (with a positive expected value, budget permitting) is selected.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, FAST, FAST_CLV, HORIZON, N_CUTOFFS, QUICK_CHAIN, small
from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory):
    """An orders-only data directory (no identities: nobody's consent is recorded) and its scores file."""
    from features.contract import load_dataset
    from features.pipeline import build_features
    from training.fitting import fit_churn, fit_clv
    from training.frames import FeatureCache
    from training.scoring import Models, score

    data = tmp_path_factory.mktemp("orders_only")
    shutil.copy(small().data_dir / "orders.parquet", data / "orders.parquet")
    dataset = load_dataset(data)
    cache = FeatureCache(dataset, btyd_params=QUICK_CHAIN)
    churn = fit_churn(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST).model
    clv = fit_clv(cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST_CLV).model
    scores = score(build_features(dataset, AS_OF), Models(churn, clv), as_of=AS_OF)
    assert scores["marketing_opt_out"].isna().all()  # orders only: consent unknown, not "False"
    path = data / "scores.parquet"
    scores.to_parquet(path, index=False)
    campaign = data / "campaign.yaml"
    campaign.write_text("campaign_id: spring\nobjective: upsell\nbudget: 1000000\ncost_per_contact: 0.001\n"
                        "control_fraction: 0.0\n", encoding="utf-8")
    return data, path, campaign, scores


def _target(data, scores_path, campaign, tmp_path):
    out, summary = tmp_path / "audience.csv", tmp_path / "summary.json"
    result = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                                 str(campaign), "--out", str(out), "--json", str(summary)])
    assert result.exit_code == 0, result.output
    return result.output, pd.read_csv(out), json.loads(summary.read_text())


def test_opt_in_selects_nobody_and_says_why(orders_only, tmp_path):
    data, scores_path, campaign, scores = orders_only
    (data / "brand.yaml").write_text("consent: opt_in\n", encoding="utf-8")
    try:
        output, audience, summary = _target(data, scores_path, campaign, tmp_path)
    finally:
        (data / "brand.yaml").unlink()
    assert audience.empty and summary["audience"] == 0 and summary["consent"] == "opt_in"
    assert summary["excluded"]["consent_unknown"] == len(scores)
    assert f"nobody selected: {len(scores):,} of {len(scores):,} people consent unknown" in " ".join(output.split())


def test_opt_out_selects_everyone_eligible(orders_only, tmp_path):
    data, scores_path, campaign, scores = orders_only
    output, audience, summary = _target(data, scores_path, campaign, tmp_path)  # no brand.yaml: opt_out
    value = scores["clv_mean"] * 0.05 * (1 - scores["churn_probability"]) - 0.001  # upsell, net per contact
    eligible = scores.loc[scores["eligible"] & (value > 0), "person_id"]  # eligible and worth a contact
    assert summary["consent"] == "opt_out" and summary["excluded"]["consent_unknown"] == 0
    assert set(audience["person_id"]) == set(eligible) and summary["audience"] == len(eligible) > 0
    assert summary["excluded"] == {"opt_out": 0, "consent_unknown": 0,
                                   "ineligible": int((~scores["eligible"]).sum()), "filtered": 0,
                                   "not_positive_value": int((scores["eligible"] & (value <= 0)).sum()),
                                   "max_contacts": 0, "budget": 0}
    assert "nobody selected" not in output


def test_bad_campaign_file_exits_2_naming_the_key(orders_only, tmp_path):
    data, scores_path, _, _ = orders_only
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign_id: x\nobjective: retain\nbudget: -1\ncost_per_contact: 1\n", encoding="utf-8")
    result = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                                 str(bad), "--out", str(tmp_path / "a.csv")])
    assert result.exit_code == 2 and "budget" in result.output and str(bad) in " ".join(result.output.split())


def test_lookalike_campaign_from_a_seed_file(orders_only, tmp_path):
    data, scores_path, _, scores = orders_only
    seeds = tmp_path / "seeds.txt"
    best = scores[scores["eligible"]].sort_values(["clv_mean", "person_id"], ascending=[False, True])
    seeds.write_text("\n".join(best["person_id"].head(80)) + "\n", encoding="utf-8")
    campaign = tmp_path / "look.yaml"
    campaign.write_text("campaign_id: look\nobjective: lookalike\nbudget: 30\ncost_per_contact: 0.1\n",
                        encoding="utf-8")
    out = tmp_path / "audience.csv"
    result = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                                 str(campaign), "--seeds", str(seeds), "--out", str(out), "--as-of",
                                 AS_OF.isoformat()])
    assert result.exit_code == 0, result.output
    audience = pd.read_csv(out)
    assert 0 < (audience["group"] == "treatment").sum() <= 300  # the budget buys 300 contacts
    assert not audience["person_id"].isin(best["person_id"].head(80)).any()  # seeds are not prospects
    missing = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                                  str(campaign), "--out", str(out)])
    assert missing.exit_code == 2 and "--seeds is required" in missing.output


def test_scores_as_csv_keep_unknown_consent_unknown(orders_only, tmp_path):
    data, _, campaign, scores = orders_only
    csv = tmp_path / "scores.csv"
    flagged = scores.copy()
    flagged.loc[flagged.index[:3], "marketing_opt_out"] = True  # three recorded opt-outs, the rest unknown
    flagged.to_csv(csv, index=False)
    (data / "brand.yaml").write_text("consent: opt_in\n", encoding="utf-8")
    try:
        _, audience, summary = _target(data, csv, campaign, tmp_path)
    finally:
        (data / "brand.yaml").unlink()
    assert audience.empty
    assert summary["excluded"]["opt_out"] == 3 and summary["excluded"]["consent_unknown"] == len(scores) - 3


# --- objective incremental_margin ------------------------------------------------------------------------------


def test_incremental_margin_without_an_uplift_model_exits_2_naming_the_command(orders_only, tmp_path):
    data, scores_path, campaign, _ = orders_only
    result = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                                 str(campaign), "--objective", "incremental_margin", "--out",
                                 str(tmp_path / "a.csv"), "--as-of", AS_OF.isoformat()])
    out = " ".join(result.output.split())
    assert result.exit_code == 2 and "no champion uplift model" in out and "scrm train uplift" in out
    bad = runner.invoke(app, ["target", "--data", str(data), "--scores", str(scores_path), "--campaign",
                              str(campaign), "--objective", "margin", "--out", str(tmp_path / "a.csv")])
    assert bad.exit_code == 2 and "--objective" in bad.output


def test_train_uplift_without_control_groups_exits_2_with_the_reason(orders_only):
    data = orders_only[0]
    result = runner.invoke(app, ["train", "uplift", "--data", str(data), "--as-of", AS_OF.isoformat()])
    assert result.exit_code == 2
    assert "no campaign with both a treatment and a control group" in " ".join(result.output.split())


@pytest.mark.slow
def test_train_uplift_then_target_incremental_margin(tmp_path):
    """A simulated brand with randomised campaigns: `scrm train uplift` registers the champion, `scrm target
    --objective incremental_margin` ranks by it: nobody opted out, the same control group twice, the expected
    incremental revenue with its interval."""
    from training import registry
    from training.fitting import fit_churn, fit_clv
    from training.scoring import Models, score

    brand = small(3000, 5)
    as_of = "2025-01-01"
    trained = runner.invoke(app, ["train", "uplift", "--data", str(brand.data_dir), "--as-of", as_of,
                                  "--n-boot", "4"])
    assert trained.exit_code == 0, trained.output
    name = registry.model_name(brand.data_dir.name, "uplift")
    assert name.endswith(".uplift_14d") and registry.champion_version(name) == 1
    run = registry.load_model(name)
    assert run.tags[registry.TAG_AS_OF] == as_of and len(run.estimator.boots) == 4
    from training import tracking

    logged = tracking.client().get_run(run.run_id).data
    assert logged.params["learner"] == "txl" and int(logged.params["n_campaigns"]) >= 2
    assert int(logged.params["n_rows"]) == int(logged.params["n_treated"]) + int(logged.params["n_control"])
    assert "val.qini" in logged.metrics and logged.params["validation_campaign"] in logged.params["campaigns"]

    from datetime import date

    from features.pipeline import build_features

    day = date(2025, 1, 1)
    churn = fit_churn(brand.cache, day, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST).model
    clv = fit_clv(brand.cache, day, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **FAST_CLV).model
    scores = score(build_features(brand.dataset, day), Models(churn, clv), as_of=day)
    scores_path = tmp_path / "scores.parquet"
    scores.to_parquet(scores_path, index=False)
    campaign = tmp_path / "c.yaml"
    campaign.write_text("campaign_id: spring-uplift\nobjective: retain\nbudget: 300\ncost_per_contact: 0.5\n"
                        "control_fraction: 0.2\n", encoding="utf-8")

    def target(i: int):
        out, js = tmp_path / f"a{i}.csv", tmp_path / f"s{i}.json"
        result = runner.invoke(app, ["target", "--data", str(brand.data_dir), "--scores", str(scores_path),
                                     "--campaign", str(campaign), "--objective", "incremental_margin", "--as-of",
                                     as_of, "--out", str(out), "--json", str(js)])
        assert result.exit_code == 0, result.output
        return pd.read_csv(out), json.loads(js.read_text())

    first, summary = target(1)
    again, _ = target(2)
    assert summary["objective"] == "incremental_margin" and summary["audience"] > 0
    opted_out = set(scores.loc[scores["marketing_opt_out"].astype(object).eq(True), "person_id"])
    assert opted_out and not set(first["person_id"]) & opted_out
    assert first.equals(again)  # same ranking and the same control group
    assert set(first.loc[first["group"] == "control", "person_id"]) == set(
        again.loc[again["group"] == "control", "person_id"]) and (first["group"] == "control").any()
    block = summary["uplift"]
    lo, hi = block["revenue_ci"]
    assert block["expected_incremental_revenue"] > 0 and lo <= hi and block["n_boot"] == 4
    # ranked by the model's uplift: expected value = uplift × revenue per conversion × margin rate (0.3)
    uplift = run.estimator.scores(build_features(brand.dataset, day)).uplift
    np.testing.assert_allclose(first["expected_value"],
                               uplift.loc[first["person_id"]].to_numpy() * block["revenue_per_conversion"] * 0.3)
