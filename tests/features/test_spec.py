"""The feature schema as data: vocabularies defined once, the spec drives docs, order and model columns."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_pipeline import AS_OF, _dataset
from typer.testing import CliRunner

from features import contract, interactions, rfm, spec, vocab
from features import simulate as sim
from features.config import FeatureConfig, FeatureConfigError, FeatureConfigMismatch, check_config
from features.pipeline import FEATURE_DOCS, NON_MODEL_COLUMNS, build_features, model_columns

ROOT = Path(__file__).resolve().parents[2]


# --- one vocabulary ---------------------------------------------------------------------------------------------


def test_vocabularies_are_the_same_objects_everywhere():
    assert contract.CHANNELS is vocab.CHANNELS and contract.EVENT_TYPES is vocab.EVENT_TYPES
    assert contract.STATUSES is vocab.STATUSES and contract.GROUPS is vocab.GROUPS
    assert interactions.EVENT_TYPES is vocab.EVENT_TYPES
    assert rfm.CHANNELS is vocab.CHANNELS and rfm.SEGMENTS is vocab.SEGMENTS
    assert rfm.LIFECYCLE_STAGES is vocab.LIFECYCLE_STAGES
    # the data contract's enums are the vocabularies
    assert contract.SCHEMAS["orders"].enums["channel"][0] == vocab.CHANNELS
    assert contract.SCHEMAS["events"].enums["event_type"][0] == vocab.EVENT_TYPES


def test_simulator_uses_subsets_of_the_vocabulary():
    assert set(sim.CHANNELS) < set(vocab.CHANNELS)
    assert sim.EVENT_TYPES == vocab.EVENT_TYPES
    with pytest.raises(ValueError, match=r"unknown channel name\(s\) \['weibo'\]"):
        vocab.subset(("tmall", "weibo"), vocab.CHANNELS, "channel")


def test_no_copies_of_the_vocabularies_left_in_code():
    """No module other than features/vocab.py spells out the channel or event-type lists (a subset selected with
    ``vocab.subset``, which checks it against the vocabulary, is allowed)."""
    literal = re.compile(r'"tmall",\s*"jd",\s*"wechat"|"coupon_claim",\s*"coupon_redeem"')
    files = [*ROOT.glob("features/**/*.py"), *ROOT.glob("training/**/*.py"), *ROOT.glob("serving/**/*.py"),
             ROOT / "benchmarks" / "bench_features.py"]

    def unchecked(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if "vocab.subset(" not in line)

    copies = [str(f.relative_to(ROOT)) for f in files
              if f.name != "vocab.py" and literal.search(unchecked(f.read_text()))]
    assert copies == []


def test_targeting_winback_stages_are_lifecycle_stages():
    from training.decisions.targeting import WINBACK_STAGES

    assert set(WINBACK_STAGES) <= set(vocab.LIFECYCLE_STAGES)


# --- the spec drives the snapshot ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def feats() -> pd.DataFrame:
    data, identity = _dataset()
    return build_features(data, AS_OF, identity=identity)


def test_snapshot_columns_dtypes_and_model_columns_follow_the_spec(feats):
    assert list(feats.columns) == spec.column_order()  # every source present: every spec column, in order
    dtypes = spec.column_dtypes()
    assert {c: str(feats[c].dtype) for c in feats} == dtypes
    assert model_columns(feats) == [e.name if not e.templated else c
                                    for e, c, _ in spec.expand() if e.model_input]
    assert NON_MODEL_COLUMNS == {"person_id", "marketing_opt_out", "rfm_segment", "rfm_segment_en", "lifecycle_stage"}
    assert set(FEATURE_DOCS) == set(feats.columns)


def test_templates_expand_with_the_config_windows():
    config = FeatureConfig(windows=(14, 60), event_windows=(3,), rfm_bins=4, response_window_days=7)
    order = spec.column_order(config)
    assert [c for c in order if c.startswith("orders_")] == ["orders_14d", "orders_60d"]
    assert [c for c in order if c.startswith("ev_view_")] == ["ev_view_3d"]
    assert len([c for c in order if c.startswith("ev_")]) == len(vocab.EVENT_TYPES)
    docs = spec.feature_docs(config)
    assert docs["r_score"] == "recency score 1-4 (higher = bought more recently)"
    assert docs["ev_coupon_claim_3d"] == "number of coupon claim events in the last 3 days"
    assert docs["campaign_response_rate"].endswith("within 7 days")


def test_model_constants_are_derived_from_the_spec():
    from serving.state import NUMERIC_COLUMNS, TEXT_COLUMNS
    from training.churn import CHURN_MONOTONE, churn_monotone
    from training.clv import COUNT_COLUMNS, clv_monotone
    from training.scoring import PASSTHROUGH

    assert CHURN_MONOTONE == {"recency_days": 1, "recency_ratio": 1, "gap_ratio": 1, "recency": -1, "r_score": -1,
                              "btyd_p_alive": -1, "btyd_p_purchase": -1, "btyd_expected_orders": -1,
                              "btyd_expected_spend": -1}
    assert churn_monotone(["days_since_cart", "tenure_days", "r_score"]) == [1, 0, -1]
    assert set(COUNT_COLUMNS) == {"orders", "frequency", "total_spend", "order_rate"}
    assert clv_monotone(["orders_30d", "spend_365d", "avg_spend", "order_rate"]) == [1, 1, 0, 1]
    assert PASSTHROUGH == spec.SCORE_PASSTHROUGH
    assert {"r_score", "spend_365d", "tenure_days"} <= set(NUMERIC_COLUMNS)
    assert {"rfm_segment", "lifecycle_stage"} <= set(TEXT_COLUMNS)
    assert not set(NUMERIC_COLUMNS) & set(TEXT_COLUMNS)
    assert "marketing_opt_out" not in NUMERIC_COLUMNS + TEXT_COLUMNS


# --- docs/features.md ----------------------------------------------------------------------------------------------


def _docs_table() -> str:
    lines = (ROOT / "docs" / "features.md").read_text().splitlines()
    start = lines.index(spec.MARKDOWN_HEADER)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end]) + "\n"


def test_docs_table_equals_the_spec():
    assert _docs_table() == spec.markdown_table(), "regenerate with `python -m features.spec --markdown`"


def test_markdown_command_prints_the_table(capsys, tmp_path):
    spec.main(["--markdown"])
    assert capsys.readouterr().out == spec.markdown_table()
    cfg = tmp_path / "f.json"
    cfg.write_text(json.dumps({"windows": [7]}))
    spec.main(["--markdown", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert "| `orders_7d` |" in out and "orders_30d" not in out


# --- FeatureConfig from a file and the config check --------------------------------------------------------------


def test_config_from_yaml_and_json(tmp_path):
    y = tmp_path / "features.yaml"
    y.write_text("windows: [30, 60]\nrfm_bins: 4\nhigh_rule: median\n")
    cfg = FeatureConfig.from_file(y)
    assert cfg.windows == (30, 60) and cfg.rfm_bins == 4 and cfg.high_rule == "median"
    j = tmp_path / "features.json"
    j.write_text(json.dumps(cfg.model_dump(mode="json")))
    assert FeatureConfig.from_file(j) == cfg
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert FeatureConfig.from_file(empty) == FeatureConfig()


def test_config_file_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("windows: [30]\nwindow_days: 7\n")
    with pytest.raises(FeatureConfigError, match=r"bad\.yaml: unknown key 'window_days'"):
        FeatureConfig.from_file(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"rfm_bins": 1}')
    with pytest.raises(FeatureConfigError, match=r"wrong\.json: rfm_bins: .*greater than or equal to 2"):
        FeatureConfig.from_file(wrong)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 30\n- 90\n")
    with pytest.raises(FeatureConfigError, match=r"list\.yaml must hold a mapping"):
        FeatureConfig.from_file(listed)
    with pytest.raises(FeatureConfigError, match="cannot read feature config"):
        FeatureConfig.from_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{windows: ")
    with pytest.raises(FeatureConfigError, match=r"broken\.json is not valid JSON"):
        FeatureConfig.from_file(broken)


def test_check_config_names_differing_keys_and_values():
    default = FeatureConfig()
    check_config(default.model_dump(mode="json"), None)  # a manifest's config equals the defaults
    check_config(default, FeatureConfig())
    other = FeatureConfig(windows=(30, 60), new_days=60)
    with pytest.raises(FeatureConfigMismatch) as info:
        check_config(other.model_dump(mode="json"), default)
    assert isinstance(info.value, ValueError)
    assert info.value.differences == {"windows": ([30, 60], [30, 90, 180, 365]), "new_days": (60, 90)}
    msg = str(info.value)
    assert "windows: snapshot [30, 60] vs model [30, 90, 180, 365]" in msg and "new_days: snapshot 60 vs model 90" in msg
    assert spec.check_config is check_config and spec.FeatureConfigMismatch is FeatureConfigMismatch
    with pytest.raises(FeatureConfigError, match="snapshot config: unknown key 'bogus'"):
        check_config({"bogus": 1}, default)


def test_features_build_reads_a_config_file(tmp_path):
    from training.cli import app

    data, _ = _dataset()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name, df in data.tables().items():
        df.to_parquet(data_dir / f"{name}.parquet", index=False)
    cfg = tmp_path / "features.yaml"
    cfg.write_text("windows: [30, 60]\nevent_windows: [7]\n")
    runner = CliRunner()
    result = runner.invoke(app, ["features", "build", "--data", str(data_dir), "--as-of", AS_OF.isoformat(),
                                 "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((data_dir / "features" / f"as_of={AS_OF.isoformat()}" / "manifest.json").read_text())
    assert manifest["config"]["windows"] == [30, 60] and manifest["config"]["event_windows"] == [7]
    assert "orders_60d" in manifest["features"] and "orders_90d" not in manifest["features"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("windowz: [30]\n")
    result = runner.invoke(app, ["features", "build", "--data", str(data_dir), "--as-of", AS_OF.isoformat(),
                                 "--config", str(bad)])
    assert result.exit_code == 2
    assert "unknown key 'windowz'" in result.output


def test_features_build_defaults_as_of_like_train_and_score(tmp_path):
    """Without --as-of, the snapshot is as of the day after the last order or event (`train`, `score` agree)."""
    from features.contract import load_dataset
    from training.cli import app
    from training.train import default_as_of

    data, _ = _dataset()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name, df in data.tables().items():
        df.to_parquet(data_dir / f"{name}.parquet", index=False)
    result = CliRunner().invoke(app, ["features", "build", "--data", str(data_dir)])
    assert result.exit_code == 0, result.output
    expected = default_as_of(load_dataset(data_dir))
    manifest = json.loads((data_dir / "features" / f"as_of={expected.isoformat()}" / "manifest.json").read_text())
    assert manifest["as_of"] == expected.isoformat()
