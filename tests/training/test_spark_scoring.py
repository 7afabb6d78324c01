"""`training.spark_scoring.score_snapshot` on the small shared brand: the frame `score` gives, on Spark (issue 13).

Unregistered models (``model_data``) and a snapshot written with ``write_snapshot``; the CLI path with registered
champions is in ``tests/serving/test_spark_score.py``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, fitted_churn, fitted_clv, small

from training.decisions.tiers import load_tier_rules
from training.frames import widen
from training.scoring import Models, label_scores, score


@pytest.mark.slow  # fits the small brand's models and starts Spark: minutes on a shared box
def test_score_snapshot_on_spark_is_score(spark, tmp_path):
    from features.pipeline import write_snapshot
    from training.spark_scoring import score_snapshot

    features = widen(small().cache.features(AS_OF))
    write_snapshot(features, pd.DataFrame({"customer_key": ["k"], "person_id": ["p"]}), tmp_path / "snap",
                   {"as_of": AS_OF.isoformat()})
    models = Models(fitted_churn().model, fitted_clv().model, "3", "4")
    rules = load_tier_rules()
    want = label_scores(score(features, models, as_of=AS_OF, tier_rules=rules, with_reasons=True), AS_OF, models)
    result = score_snapshot(spark, tmp_path / "snap", models, tmp_path / "out", as_of=AS_OF,
                            tier_rules=rules)
    got = pd.read_parquet(tmp_path / "out").sort_values("person_id").reset_index(drop=True)
    want = want.sort_values("person_id").reset_index(drop=True)
    assert (result.people, result.scored) == (len(want), int(want["eligible"].sum()))
    assert list(got.columns) == list(want.columns) and got["person_id"].tolist() == want["person_id"].tolist()
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]) and not pd.api.types.is_bool_dtype(want[col]):
            np.testing.assert_array_equal(got[col].to_numpy(dtype=float, na_value=np.nan),
                                          want[col].to_numpy(dtype=float, na_value=np.nan), err_msg=col)
        elif not pd.api.types.is_datetime64_any_dtype(want[col]):
            assert got[col].astype(object).where(got[col].notna(), None).tolist() == \
                want[col].astype(object).where(want[col].notna(), None).tolist(), col
    # the population cut, not a per-batch one: the high-value share is the rules' over everyone scored
    scored = want[want["eligible"]]
    assert (scored["value_band"] == "high").mean() == (got.loc[got["eligible"], "value_band"] == "high").mean()
    assert got["churn_model_version"].eq("3").all() and (got["feature_as_of"] == pd.Timestamp(AS_OF)).all()


def test_pyspark_python_is_set_in_one_place_for_local_sessions_only(monkeypatch):
    """``features.spark.use_local_python`` owns ``PYSPARK_PYTHON``: this interpreter for a local master unless it is
    set; a cluster's executors keep theirs. The scoring session leaves it to that (no second setter)."""
    import features.spark as fs
    from training import spark_scoring

    env: dict[str, str] = {}
    fs.use_local_python("local[2]", env)
    assert env == {"PYSPARK_PYTHON": sys.executable}
    env = {"PYSPARK_PYTHON": "/opt/env/bin/python"}
    fs.use_local_python("local[*]", env)
    assert env == {"PYSPARK_PYTHON": "/opt/env/bin/python"}
    env = {}
    for master in ("spark://master:7077", "yarn", "", None):
        fs.use_local_python(master, env)
    assert env == {}

    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    started = []
    monkeypatch.setattr(fs, "spark_session", lambda master, app_name: started.append(
        (master, app_name, os.environ.get("PYSPARK_PYTHON"))) or "session")
    assert spark_scoring.spark_session("spark://master:7077") == "session"
    assert started == [("spark://master:7077", "scrm-score", None)]
