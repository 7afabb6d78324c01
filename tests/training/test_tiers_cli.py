"""Batch scoring adds the tier forecast, and `scrm tiers suggest` proposes thresholds from it (small fitted models)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, HORIZON, fitted_churn, fitted_clv, small
from typer.testing import CliRunner

from training.cli import app
from training.decisions.tier_forecast import PREDICTED_TIER_COLUMNS, predict_tiers, spend_carryover
from training.decisions.tiers import load_tier_rules

runner = CliRunner()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from training.scoring import Models, score

    features = small().cache.features(AS_OF)
    scores = score(features, Models(fitted_churn().model, fitted_clv().model), as_of=AS_OF)
    path = tmp_path_factory.mktemp("tiers") / "scores.parquet"
    scores.to_parquet(path, index=False)
    return features, scores, path


def test_scoring_adds_the_predicted_tier_of_the_shared_function(scored):
    features, scores, _ = scored
    assert set(PREDICTED_TIER_COLUMNS) <= set(scores.columns)
    assert scores["clv_horizon_days"].iloc[0] == HORIZON
    assert scores["spend_carryover"].to_numpy() == pytest.approx(spend_carryover(features, HORIZON))
    expected = predict_tiers(scores, load_tier_rules())
    pd.testing.assert_frame_equal(scores[list(PREDICTED_TIER_COLUMNS)], expected, check_dtype=False)
    ok = scores["eligible"].to_numpy(dtype=bool)
    assert scores.loc[ok, "tier_move"].isin(["up", "down", "stay"]).all()
    assert scores.loc[~ok, "predicted_tier"].isna().all()
    probs = scores.loc[ok, ["p_tier_up", "p_tier_down", "p_tier_stay"]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx(np.ones(ok.sum()))
    # the kept spend plus the predicted CLV: never below what is already kept
    assert (scores.loc[ok, "predicted_spend_365d"] >= scores.loc[ok, "spend_carryover"] - 1e-9).all()


def test_tiers_suggest_writes_the_summary_and_usable_rules(scored, tmp_path):
    _, scores, path = scored
    summary_path, rules_path = tmp_path / "summary.json", tmp_path / "tiers.yaml"
    result = runner.invoke(app, ["tiers", "suggest", "--data", str(small().data_dir), "--scores", str(path),
                                 "--shares", "钻石=2%,platinum=5%,金卡=15%,银卡=30%", "--round-to", "10",
                                 "--basis", "point", "--json", str(summary_path), "--out", str(rules_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["members"] == int(scores["eligible"].sum()) and summary["horizon_days"] == HORIZON
    assert [t["target_share"] for t in summary["tiers"]] == pytest.approx([0.48, 0.30, 0.15, 0.05, 0.02])
    assert summary["basis"] == "point"
    for tier in summary["tiers"]:  # the share of members whose expected spend reaches the tier
        assert tier["suggested"]["predicted"] / summary["members"] == pytest.approx(tier["target_share"], abs=0.01)
    suggested = [t["suggested"]["min_spend"] for t in summary["tiers"]]
    assert suggested[0] == 0 and (np.diff(suggested) > 0).all() and all(v % 10 == 0 for v in suggested)
    rules = load_tier_rules(rules_path)
    assert [t.min_spend for t in rules.member_tiers] == suggested
    moves = summary["moves"]["suggested"]
    assert moves["up"] + moves["down"] + moves["stay"] == summary["members"]
    for word in ("钻石", "suggested thresholds", "moves from now", "switching to the suggested thresholds today"):
        assert word in result.output


def test_tiers_suggest_on_the_distribution_basis_meets_expected_shares(scored, tmp_path):
    _, _, path = scored
    summary_path = tmp_path / "summary.json"
    result = runner.invoke(app, ["tiers", "suggest", "--data", str(small().data_dir), "--scores", str(path),
                                 "--basis", "distribution", "--json", str(summary_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["basis"] == "distribution"
    for tier in summary["tiers"][1:]:  # the base tier holds whoever is expected to spend nothing
        assert tier["suggested"]["expected_share"] == pytest.approx(tier["target_share"], abs=0.01)


@pytest.mark.parametrize(("args", "message"), [
    (["--basis", "median"], "--basis must be one of"),
    (["--shares", "钻石=1%,bronze=4%"], "unknown tier 'bronze'"),
    (["--shares", "钻石=1%"], "no share for tier(s)"),
    (["--round-to", "0"], "--round-to must be a positive amount"),
])
def test_tiers_suggest_bad_options_exit_2(scored, args, message):
    _, _, path = scored
    result = runner.invoke(app, ["tiers", "suggest", "--data", str(small().data_dir), "--scores", str(path), *args],
                           terminal_width=200)
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_tiers_suggest_on_scores_without_the_forecast_says_to_score_again(scored, tmp_path):
    _, scores, _ = scored
    old = tmp_path / "old.csv"
    scores.drop(columns=["spend_carryover", *PREDICTED_TIER_COLUMNS]).to_csv(old, index=False)
    result = runner.invoke(app, ["tiers", "suggest", "--data", str(small().data_dir), "--scores", str(old)],
                           terminal_width=200)
    assert result.exit_code == 2
    assert "spend_carryover" in result.output and "score again" in " ".join(result.output.split())
