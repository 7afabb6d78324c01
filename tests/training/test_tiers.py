"""Member tiers and value × risk action segments on small hand-made score frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.decisions.tiers import (
    TIER_OUTPUT_COLUMNS,
    TierRulesError,
    assign_tiers,
    clv_value_cut,
    load_tier_rules,
)

RULES_YAML = """
member_tiers:
  - {name: 普通, name_en: regular, min_spend: 0}
  - {name: 金卡, name_en: gold, min_spend: 500}
action_segments:
  value_quantile: 0.5
  churn_threshold: 0.3
"""


def scores_frame(spend, clv, churn, eligible=None, reasons=None) -> pd.DataFrame:
    n = len(spend)
    eligible = [True] * n if eligible is None else eligible
    reasons = [None if e else "history shorter than 90 days" for e in eligible] if reasons is None else reasons
    return pd.DataFrame(
        {
            "person_id": [f"p_{i:04d}" for i in range(n)],
            "eligible": eligible,
            "ineligible_reason": reasons,
            "churn_probability": churn,
            "clv_mean": clv,
            "spend_365d": spend,
        }
    )


def test_default_rules_have_documented_thresholds():
    rules = load_tier_rules()
    assert [(t.name, t.name_en, t.min_spend) for t in rules.member_tiers] == [
        ("普通", "regular", 0),
        ("银卡", "silver", 1000),
        ("金卡", "gold", 3000),
        ("铂金", "platinum", 8000),
        ("钻石", "diamond", 20000),
    ]
    assert rules.action_segments.value_quantile == 0.8
    assert rules.action_segments.churn_threshold == 0.5


def test_member_tier_boundaries():
    spend = [0.0, 999.99, 1000.0, 2999.0, 3000.0, 7999.5, 8000.0, 19999.0, 20000.0, 1e7, np.nan, -50.0]
    frame = scores_frame(spend, clv=[100.0] * len(spend), churn=[0.2] * len(spend))
    tiers = assign_tiers(frame)
    assert tiers["tier_en"].tolist() == [
        "regular",
        "regular",
        "silver",
        "silver",
        "gold",
        "gold",
        "platinum",
        "platinum",
        "diamond",
        "diamond",
        "regular",  # no spend in the last 12 months
        "regular",  # net refunds never lift anyone out of the base tier
    ]
    assert tiers["tier"].iloc[8] == "钻石"
    assert list(tiers.columns) == list(TIER_OUTPUT_COLUMNS)


def test_value_risk_quadrants_and_chinese_names():
    frame = scores_frame(
        spend=[0.0] * 4,
        clv=[5000.0, 5000.0, 10.0, 10.0],
        churn=[0.9, 0.1, 0.9, 0.1],
    )
    tiers = assign_tiers(frame, clv_cut=1000.0)
    assert tiers["action_segment"].tolist() == ["retain", "maintain", "low_cost_winback", "nurture"]
    assert tiers["action_segment_zh"].tolist() == ["挽留", "维护", "低成本唤回", "培育"]
    assert tiers["value_band"].tolist() == ["high", "high", "low", "low"]
    assert tiers["risk_band"].tolist() == ["at_risk", "safe", "at_risk", "safe"]
    assert tiers["not_scored_reason"].isna().all()


def test_churn_threshold_is_inclusive():
    frame = scores_frame(spend=[0.0, 0.0], clv=[1.0, 1.0], churn=[0.5, 0.4999])
    assert assign_tiers(frame)["risk_band"].tolist() == ["at_risk", "safe"]


def test_high_value_is_top_share_of_eligible_population_only():
    rng = np.random.default_rng(13)
    n = 1000
    clv = rng.gamma(2.0, 300.0, size=n)
    eligible = np.ones(n, dtype=bool)
    eligible[:100] = False
    clv[:100] = 1e9  # ineligible people with absurd CLV must not move the cut
    frame = scores_frame(spend=[0.0] * n, clv=clv, churn=rng.uniform(size=n), eligible=eligible.tolist())
    tiers = assign_tiers(frame)
    high_share = (tiers.loc[eligible, "value_band"] == "high").mean()
    assert high_share == pytest.approx(0.2, abs=0.002)
    assert clv_value_cut(frame) == pytest.approx(np.quantile(clv[100:], 0.8))


def test_all_zero_clv_means_nobody_is_high_value():
    frame = scores_frame(spend=[0.0] * 5, clv=[0.0] * 5, churn=[0.1] * 5)
    assert (assign_tiers(frame)["value_band"] == "low").all()


def test_ineligible_people_get_spend_tier_and_not_scored_with_reason():
    frame = scores_frame(
        spend=[4000.0, 4000.0, 25000.0],
        clv=[np.nan, 500.0, np.nan],  # unscored people may carry NaN scores
        churn=[np.nan, 0.2, np.nan],
        eligible=[False, True, False],
        reasons=["only one order", None, None],
    )
    tiers = assign_tiers(frame)
    assert tiers["tier_en"].tolist() == ["gold", "gold", "diamond"]
    assert tiers["action_segment"].tolist()[0::2] == ["not_scored", "not_scored"]
    assert tiers["action_segment_zh"].iloc[0] == "未评分"
    assert tiers["not_scored_reason"].tolist() == ["only one order", None, "not eligible"]
    assert tiers["value_band"].iloc[0] is None and tiers["risk_band"].iloc[2] is None


def test_result_follows_rows_under_shuffle():
    rng = np.random.default_rng(7)
    n = 200
    frame = scores_frame(
        spend=rng.gamma(1.0, 3000.0, size=n), clv=rng.gamma(2.0, 300.0, size=n), churn=rng.uniform(size=n)
    )
    base = assign_tiers(frame).set_index("person_id")
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = assign_tiers(shuffled)
    assert again["person_id"].tolist() == shuffled["person_id"].tolist()
    pd.testing.assert_frame_equal(again.set_index("person_id").loc[base.index], base)


def test_custom_rules_file(tmp_path):
    path = tmp_path / "tiers.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    rules = load_tier_rules(path)
    frame = scores_frame(spend=[100.0, 600.0], clv=[1.0, 3.0], churn=[0.35, 0.1])
    tiers = assign_tiers(frame, rules)
    assert tiers["tier_en"].tolist() == ["regular", "gold"]
    assert tiers["action_segment"].tolist() == ["low_cost_winback", "maintain"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RULES_YAML + "colour: blue\n", "unknown key 'colour'"),
        (RULES_YAML.replace("churn_threshold: 0.3", "churn_threshold: 0.3\n  churn_thresh: 0.4"),
         "unknown key 'action_segments.churn_thresh'"),
        (RULES_YAML.replace("min_spend: 500}", "min_spend: 500, colour: gold}"),
         "unknown key 'member_tiers.1.colour'"),
        (RULES_YAML.replace("min_spend: 500", "min_spend: 0"), "strictly increasing"),
        (RULES_YAML.replace("min_spend: 0}", "min_spend: 10}"), "must start at min_spend 0"),
        (RULES_YAML.replace("value_quantile: 0.5", "value_quantile: 1.5"), "action_segments.value_quantile"),
        ("- just\n- a list\n", "expected a mapping"),
        ("member_tiers: [", "not valid YAML"),
    ],
)
def test_bad_rules_are_rejected_naming_the_key(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TierRulesError, match=expected) as info:
        load_tier_rules(path)
    assert str(path) in str(info.value)


def test_rules_in_force_come_from_flag_then_env_then_brand_yaml_then_package(tmp_path, monkeypatch):
    from training.decisions.tiers import DEFAULT_RULES_PATH, TIERS_ENV, resolve_tier_rules, tier_rules_path

    monkeypatch.delenv(TIERS_ENV, raising=False)
    data = tmp_path / "brand"
    data.mkdir()
    assert tier_rules_path(data_dir=data) == (DEFAULT_RULES_PATH, "packaged default")
    brand_rules = data / "brand_tiers.yaml"
    brand_rules.write_text(RULES_YAML, encoding="utf-8")
    (data / "brand.yaml").write_text("tiers: brand_tiers.yaml\n", encoding="utf-8")
    assert tier_rules_path(data_dir=data)[0] == brand_rules
    assert resolve_tier_rules(data_dir=data).member_tiers[1].min_spend == 500  # not the packaged rules
    env_rules = tmp_path / "env.yaml"
    env_rules.write_text(RULES_YAML.replace("min_spend: 500", "min_spend: 700"), encoding="utf-8")
    monkeypatch.setenv(TIERS_ENV, str(env_rules))
    assert tier_rules_path(data_dir=data) == (env_rules, "$SCRM_TIERS")
    assert resolve_tier_rules(data_dir=data).member_tiers[1].min_spend == 700
    flag = tmp_path / "flag.yaml"
    assert tier_rules_path(flag, data_dir=data) == (flag, "--tiers")
    with pytest.raises(TierRulesError, match=r"cannot read tier rules .*named by --tiers"):
        resolve_tier_rules(flag, data_dir=data)
    monkeypatch.setenv(TIERS_ENV, str(tmp_path / "gone.yaml"))
    with pytest.raises(TierRulesError, match=r"gone.yaml.*named by \$SCRM_TIERS"):
        resolve_tier_rules(data_dir=data)


def test_missing_rules_file(tmp_path):
    with pytest.raises(TierRulesError, match="cannot read"):
        load_tier_rules(tmp_path / "nope.yaml")


def test_bad_scores_are_rejected_naming_the_column():
    frame = scores_frame(spend=[0.0, 0.0], clv=[1.0, 2.0], churn=[np.nan, 0.2])
    with pytest.raises(ValueError, match="churn_probability.*p_0000"):
        assign_tiers(frame)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['spend_365d'\]"):
        assign_tiers(frame.drop(columns="spend_365d"))
    dup = scores_frame(spend=[0.0, 0.0], clv=[1.0, 2.0], churn=[0.1, 0.2]).assign(person_id="p_x")
    with pytest.raises(ValueError, match="person_id must be unique"):
        assign_tiers(dup)


def test_tiering_a_few_ids_with_the_population_cut_matches_batch():
    rng = np.random.default_rng(21)
    n = 500
    frame = scores_frame(
        spend=rng.gamma(1.0, 3000.0, size=n), clv=rng.gamma(2.0, 300.0, size=n), churn=rng.uniform(size=n)
    )
    batch = assign_tiers(frame).set_index("person_id")
    few = frame.sample(7, random_state=1)
    alone = assign_tiers(few, clv_cut=clv_value_cut(frame)).set_index("person_id")
    pd.testing.assert_frame_equal(alone, batch.loc[alone.index])
