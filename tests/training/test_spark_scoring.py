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


def _count_staged_scans(monkeypatch) -> list[str]:
    """The Spark actions run on plans that read the scoring run's staging directory (``.<out>.staging-*``), by name."""
    from pyspark.sql.classic.dataframe import DataFrame
    from pyspark.sql.readwriter import DataFrameWriter

    scans: list[str] = []

    def counted(name, method, frame_of):
        def action(self, *args, **kwargs):
            if any(".staging-" in f for f in frame_of(self).inputFiles()):
                scans.append(name)
            return method(self, *args, **kwargs)
        return action

    for name in ("collect", "count", "approxQuantile"):
        monkeypatch.setattr(DataFrame, name, counted(name, getattr(DataFrame, name), lambda df: df))
    monkeypatch.setattr(DataFrameWriter, "parquet", counted("write", DataFrameWriter.parquet, lambda w: w._df))
    return scans


@pytest.mark.slow  # fits the small brand's models and starts Spark: minutes on a shared box
def test_score_snapshot_on_spark_is_score(spark, tmp_path, monkeypatch):
    from features.pipeline import write_snapshot
    from training.spark_scoring import score_snapshot

    features = widen(small().cache.features(AS_OF))
    write_snapshot(features, pd.DataFrame({"customer_key": ["k"], "person_id": ["p"]}), tmp_path / "snap",
                   {"as_of": AS_OF.isoformat()})
    models = Models(fitted_churn().model, fitted_clv().model, "3", "4")
    rules = load_tier_rules()
    want = label_scores(score(features, models, as_of=AS_OF, tier_rules=rules, with_reasons=True), AS_OF, models)
    scans = _count_staged_scans(monkeypatch)
    result = score_snapshot(spark, tmp_path / "snap", models, tmp_path / "out", as_of=AS_OF,
                            tier_rules=rules)
    # the staged scores are read three times: counts + σ parts + CLV bracket in one job, the values inside the
    # bracket, the re-tier pass (before: seven, the cut's count, bracket, rows below and inside, σ, re-tier, counts)
    assert scans == ["collect", "collect", "write"], scans
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


def test_snapshot_head_is_the_datasets_head(tmp_path):
    """The schema sample: the rows ``Dataset.head`` gives, across files, row groups and Spark's marker files."""
    import pyarrow.dataset as pds

    from training.spark_scoring import snapshot_head

    rng = np.random.default_rng(5)
    snap = tmp_path / "features.parquet"
    snap.mkdir()
    for i, (rows, group) in enumerate([(120, 120), (500, 100), (50, 50)]):
        frame = pd.DataFrame({"person_id": [f"p{i}-{j}" for j in range(rows)], "x": rng.normal(size=rows),
                              "k": rng.integers(0, 9, rows)})
        frame.to_parquet(snap / f"part-{i:05d}.parquet", index=False, row_group_size=group)
    (snap / "_SUCCESS").write_text("")
    dataset = pds.dataset(str(snap), format="parquet")
    for rows in (1, 119, 120, 121, 200, 670, 5000):
        assert snapshot_head(snap, rows).equals(dataset.head(rows)), rows
    one = tmp_path / "one.parquet"
    pd.read_parquet(snap).to_parquet(one, index=False)
    assert snapshot_head(one, 200).equals(pds.dataset(str(one), format="parquet").head(200))


def test_snapshot_head_reads_pages_not_whole_row_groups(tmp_path):
    """A 200-row sample of a 1M-row row group allocates a few MB on the driver, not the decoded row group (64 MB
    here; ``Dataset.head``, used before, decoded whole row groups with read-ahead: GBs for 5M people)."""
    import pyarrow as pa

    from training.spark_scoring import snapshot_head

    rows = 1_000_000
    path = tmp_path / "features.parquet"
    pd.DataFrame({f"x{i}": np.random.default_rng(i).normal(size=rows) for i in range(8)}).to_parquet(
        path, index=False, row_group_size=rows)
    default = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(default)  # counts what the read allocates (it reads synchronously, no threads)
    _POOLS.append(pool)  # outlives every buffer it gave out
    pa.set_memory_pool(pool)
    try:
        sample = snapshot_head(path, 200)
    finally:
        pa.set_memory_pool(default)
    assert sample.num_rows == 200 and sample.column_names == [f"x{i}" for i in range(8)]
    del sample
    assert pool.max_memory() < 16 * 2**20, pool.max_memory()


_POOLS: list = []
