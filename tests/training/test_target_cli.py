"""`scrm target` on orders-only data: the brand's consent policy decides, and the summary says why.

Acceptance (issue 11): orders-only data with ``consent: opt_in`` selects nobody and says why; with ``opt_out``
everyone eligible (with a positive expected value, budget permitting) is selected.
"""

from __future__ import annotations

import json
import shutil

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
