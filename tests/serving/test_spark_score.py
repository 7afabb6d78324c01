"""`scrm score --engine spark`: the same scores as `scrm score`, computed by Spark executors (issue 13).

The session setup of ``conftest.py`` (3,000 simulated customers, a snapshot written by the DuckDB builder, churn and
CLV champions in a session MLflow store) is scored by both engines and compared; the population-level step (the
high-value CLV cut) is checked on its own against numpy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from training.cli import app
from training.spark_scoring import exact_quantile, numpy_linear_quantile, order_statistics

runner = CliRunner()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 11, 101, 1000, 4321])
@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.8, 0.95, 1.0])
def test_numpy_linear_quantile_is_numpy_bit_for_bit(n, q):
    values = np.sort(np.random.default_rng(n).lognormal(3, 2, n))
    assert numpy_linear_quantile(n, q, values.__getitem__) == np.quantile(values, q)
    assert numpy_linear_quantile(0, q, values.__getitem__) == float("inf")


@pytest.mark.slow
def test_exact_quantile_on_spark_equals_numpy(spark):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(4, 1.5, 5_000), np.zeros(700), np.full(300, 123.25)])
    df = spark.createDataFrame(pd.DataFrame({"v": rng.permutation(values)}))
    for q in (0.8, 0.999):
        assert exact_quantile(df, "v", q) == np.quantile(values, q)
    assert exact_quantile(df.filter("v < 0"), "v", 0.8) == float("inf")


def test_order_statistics_exact_even_when_the_bracket_misses(spark):
    """A bracket from a far too coarse approximation is widened until it holds the ranks: still exact."""
    values = np.arange(2_000, dtype=float)[::-1].copy()
    df = spark.createDataFrame(pd.DataFrame({"v": values}))
    ranks = [0, 1, 1_599, 1_600, 1_999]
    got = order_statistics(df, "v", ranks, len(values), rel_error=0.5)
    assert got == {r: float(r) for r in ranks}


def test_order_statistics_from_a_given_bracket(spark):
    """The bracket ``population_figures`` found with the counts: exact inside it, widened when it misses."""
    values = np.arange(2_000, dtype=float)[::-1].copy()
    df = spark.createDataFrame(pd.DataFrame({"v": values}))
    ranks = [1_599, 1_600]
    want = {r: float(r) for r in ranks}
    for bracket in [(1_500.0, 1_700.0), (1_599.0, 1_600.0), (1_650.0, 1_700.0), (1_500.0, 1_550.0), (None, 1_600.0),
                    (None, None)]:
        assert order_statistics(df, "v", ranks, len(values), bracket=bracket) == want, bracket


def _assert_same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same ids and columns; numbers within 1e-9 relative; dates and text equal."""
    a = a.sort_values("person_id").reset_index(drop=True)
    b = b.sort_values("person_id").reset_index(drop=True)
    assert list(b.columns) == list(a.columns)
    assert b["person_id"].tolist() == a["person_id"].tolist()
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_datetime64_any_dtype(x):
            assert (pd.to_datetime(x).fillna(pd.Timestamp(0)) == pd.to_datetime(y).fillna(pd.Timestamp(0))).all(), col
        elif pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            xv, yv = x.to_numpy(dtype=float, na_value=np.nan), y.to_numpy(dtype=float, na_value=np.nan)
            np.testing.assert_allclose(yv, xv, rtol=1e-9, atol=0, equal_nan=True, err_msg=col)
        else:
            xs = x.astype(object).where(x.notna(), None).tolist()
            ys = y.astype(object).where(y.notna(), None).tolist()
            assert xs == ys, col


@pytest.fixture(scope="module")
def batch_scores(trained_setup, tmp_path_factory) -> pd.DataFrame:
    """`scrm score` (DuckDB features, in-process scoring) of the session setup."""
    out = tmp_path_factory.mktemp("batch-scores") / "scores.parquet"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in trained_setup.env().items():
            mp.setenv(key, value)
        result = runner.invoke(app, ["score", "--data", str(trained_setup.data_dir), "--as-of",
                                     trained_setup.as_of.isoformat(), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert scores["eligible"].any() and (~scores["eligible"]).any()
    assert scores["action_segment"].isin(["retain", "maintain"]).any()  # the population cut matters
    return scores


@pytest.mark.slow
def test_score_engine_spark_equals_duckdb(serving_env, spark, batch_scores, tmp_path):
    """The DuckDB-built snapshot of the setup, scored on Spark: the scores of `scrm score`."""
    out = tmp_path / "spark_scores"
    on_spark = runner.invoke(app, ["score", "--data", str(serving_env.data_dir), "--as-of",
                                   serving_env.as_of.isoformat(), "--out", str(out), "--engine", "spark"])
    assert on_spark.exit_code == 0, on_spark.output
    assert "on Spark" in on_spark.output
    assert len(list(out.glob("*.parquet"))) >= 1
    _assert_same_scores(batch_scores, pd.read_parquet(out))


@pytest.mark.slow
def test_score_engine_spark_on_a_spark_built_snapshot_equals_duckdb(serving_env, spark, batch_scores, tmp_path):
    """The acceptance path: features built on Spark (`features build --engine spark`), scored on Spark."""
    from features.spark import build_snapshot_spark

    snap = tmp_path / "spark_snapshot"
    build_snapshot_spark(serving_env.data_dir, serving_env.as_of, out_dir=snap, spark=spark)
    assert (snap / "features.parquet").is_dir()
    out = tmp_path / "spark_scores"
    on_spark = runner.invoke(app, ["score", "--data", str(serving_env.data_dir), "--snapshot", str(snap),
                                   "--out", str(out), "--engine", "spark"])
    assert on_spark.exit_code == 0, on_spark.output
    _assert_same_scores(batch_scores, pd.read_parquet(out))


def test_engine_spark_refuses_a_missing_snapshot_csv_and_unknown_engines(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    common = ["score", "--data", str(data), "--engine", "spark"]

    def said(result) -> str:  # rich wraps long lines anywhere: compare without whitespace
        return "".join(result.output.split())

    missing = runner.invoke(app, [*common, "--as-of", "2025-12-01", "--out", str(tmp_path / "s")])
    assert missing.exit_code == 2
    assert "as_of=2025-12-01:nofeaturesnapshot" in said(missing) and "scrmfeaturesbuild" in said(missing)
    newest = runner.invoke(app, [*common, "--out", str(tmp_path / "s")])
    assert newest.exit_code == 2 and "nofeaturesnapshotunder" in said(newest)
    csv = runner.invoke(app, [*common, "--out", str(tmp_path / "s.csv")])
    assert csv.exit_code == 2 and "notCSV" in said(csv)
    engine = runner.invoke(app, ["score", "--data", str(data), "--engine", "polars", "--out", str(tmp_path / "s")])
    assert engine.exit_code == 2 and "--enginemustbeduckdborspark" in said(engine)
