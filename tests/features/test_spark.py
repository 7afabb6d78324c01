"""Features on Spark: the same snapshot as DuckDB (rows, ids, values), PII hashed identically, clear input errors.

All tests share the session-scoped ``spark`` fixture (tests/conftest.py); skipped without pyspark or Java.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from test_pipeline import AS_OF as TINY_AS_OF  # noqa: E402
from test_pipeline import _dataset  # noqa: E402

from features.config import FeatureConfig  # noqa: E402
from features.contract import DataContractError, load_dataset  # noqa: E402
from features.identity import resolve_identities  # noqa: E402
from features.pipeline import build_snapshot, load_snapshot  # noqa: E402
from features.snapshot_check import validate_snapshot  # noqa: E402
from features.spark import (  # noqa: E402
    SparkTablesError,
    build_snapshot_spark,
    contract_frame,
    local_driver_memory,
    read_inputs,
    read_spark_tables_file,
)
from features.spec import column_dtypes  # noqa: E402
from training.publish import copy_snapshot  # noqa: E402

AS_OF = date(2025, 7, 1)


def assert_same_snapshot(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-9) -> None:
    """Same rows (person_id, in order), same columns; numbers within ``rtol`` relative, text and flags equal."""
    assert list(a.columns) == list(b.columns)
    assert a["person_id"].tolist() == b["person_id"].tolist()
    assert len(a) > 0
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x.dtype) and not pd.api.types.is_bool_dtype(x.dtype):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            assert (np.isnan(xv) == np.isnan(yv)).all(), col
            ok = ~np.isnan(xv)
            np.testing.assert_allclose(yv[ok], xv[ok], rtol=rtol, atol=0, err_msg=col)
        else:
            left = x.astype(object).where(x.notna(), None).tolist()
            right = y.astype(object).where(y.notna(), None).tolist()
            assert left == right, col


@pytest.fixture(scope="module")
def brand_dir(tmp_path_factory):
    """A 2,000-customer simulated brand written as Parquet (raw phones and unionids: PII hashed on read)."""
    from features.simulate import simulate, write_dataset

    out = tmp_path_factory.mktemp("brand2k")
    write_dataset(simulate(2000, seed=5, start="2023-01-01", end="2025-06-30"), out)
    return out


@pytest.fixture(scope="module")
def both(brand_dir, spark, tmp_path_factory):
    """The DuckDB snapshot (pandas contract, One-ID) and the Spark one (Spark reads the files)."""
    root = tmp_path_factory.mktemp("snaps")
    dataset = load_dataset(brand_dir)
    key_map = resolve_identities(dataset, as_of=AS_OF).key_to_person
    duck = build_snapshot(dataset, AS_OF, out_dir=root / "duckdb", identity=key_map)
    spark_snap = build_snapshot_spark(brand_dir, AS_OF, out_dir=root / "spark", spark=spark)
    return duck, load_snapshot(spark_snap.path), spark_snap


@pytest.mark.slow  # ~2-3 min for the module's 2k-customer snapshots on 2 shared cores
def test_spark_snapshot_equals_duckdb_on_a_simulated_brand(both):
    duck, spark_loaded, _ = both
    assert_same_snapshot(duck.features, spark_loaded.features)
    assert duck.identity["customer_key"].tolist() == spark_loaded.identity["customer_key"].tolist()
    assert duck.identity["person_id"].tolist() == spark_loaded.identity["person_id"].tolist()
    # people with several keys exist, so One-ID (on hashed phones/unionids) linked the same keys on both engines
    assert (duck.features["n_customer_keys"] > 1).sum() > 50


@pytest.mark.slow  # ~2-3 min for the module's 2k-customer snapshots on 2 shared cores
def test_spark_snapshot_has_the_manifest_and_dtypes_of_duckdb(both):
    duck, spark_loaded, spark_snap = both
    a, b = duck.manifest, spark_loaded.manifest
    assert set(a) <= set(b)
    for key in ("as_of", "features", "model_columns", "config", "pii_key_fingerprint"):
        assert a[key] == b[key], key
    assert a["rows"] == b["rows"]
    for name, fp in a["inputs"].items():
        assert {k: fp[k] for k in ("sha256", "rows_read", "rows_used")} == \
            {k: b["inputs"][name][k] for k in ("sha256", "rows_read", "rows_used")}
    assert b["engine"].startswith("ibis") and "pyspark" in b["engine"]
    dtypes = column_dtypes(FeatureConfig())
    for col in spark_loaded.features.columns:
        assert str(spark_loaded.features[col].dtype) == str(duck.features[col].dtype) or dtypes[col] == "str", col
    # partitioned Parquet: a directory of parts, as Spark writes it
    assert (spark_snap.path / "features.parquet").is_dir()
    assert json.loads((spark_snap.path / "manifest.json").read_text())["layout"] == "partitioned"


@pytest.mark.slow  # ~2-3 min for the module's 2k-customer snapshots on 2 shared cores
def test_no_raw_pii_in_the_spark_snapshot(both, brand_dir):
    _, spark_loaded, spark_snap = both
    raw = pd.read_parquet(brand_dir / "identities.parquet", columns=["phone", "unionid"])
    phones = set(raw["phone"].dropna().astype(str))
    unionids = set(raw["unionid"].dropna().astype(str))
    for frame in (spark_loaded.features, spark_loaded.identity):
        assert not {"phone", "unionid", "phone_hash", "unionid_hash"} & set(frame.columns)
        values = set(frame.astype(str).to_numpy().ravel())
        assert not values & phones and not values & unionids
    assert not set(spark_snap.features.columns) & {"phone", "unionid"}


def test_pii_hashes_equal_the_pandas_contract(spark, brand_dir):
    from pyspark.sql import functions as F

    df, read, used = contract_frame(spark.read.parquet(str(brand_dir / "identities.parquet")), "identities",
                                    brand_dir / "identities.parquet")
    assert "phone" not in df.columns and "unionid" not in df.columns
    got = df.select("customer_key", "phone_hash", "unionid_hash").orderBy(F.col("customer_key")).toPandas()
    expected = load_dataset(brand_dir).identities.sort_values("customer_key")
    assert read == used == len(expected)
    for col in ("phone_hash", "unionid_hash"):
        left = expected[col].astype(object).where(expected[col].notna(), None).tolist()
        right = got[col].astype(object).where(got[col].notna(), None).tolist()
        assert left == right, col
        assert sum(v is not None for v in left) > 100


def test_tiny_dataset_parity_with_a_given_key_map_and_non_default_config(spark, tmp_path):
    """Hand-made edge cases (multi-key person, refunds, events only, late rows) with fixed RFM edges, the
    median high rule and other windows: both engines agree."""
    data, identity = _dataset()
    config = FeatureConfig(high_rule="median", recency_edges=[10, 30, 90, 180], windows=(30, 365),
                           event_windows=(14,))  # the default config: the CLI test and the 2k-brand test
    duck = build_snapshot(data, TINY_AS_OF, out_dir=tmp_path / "d", identity=identity, config=config)
    on_spark = build_snapshot(data, TINY_AS_OF, out_dir=tmp_path / "s", identity=identity, config=config,
                              engine="spark", spark=spark)
    assert_same_snapshot(duck.features, on_spark.features)
    assert duck.features["lifecycle_stage"].notna().any() and "ev_view_14d" in on_spark.features
    # the key map as a Spark DataFrame (read by Spark, never on the driver): the same snapshot
    given = spark.createDataFrame(identity[["customer_key", "person_id"]].astype(object))
    from_spark = build_snapshot_spark(data, TINY_AS_OF, out_dir=tmp_path / "g", identity=given, config=config,
                                      spark=spark)
    assert_same_snapshot(duck.features, load_snapshot(from_spark.path).features)
    # each step is timed (wall, driver CPU): the read, the checkpointed query steps, the write
    assert {"read_inputs", "steps", "write", "manifest", "steps.scores"} <= set(from_spark.seconds)
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in from_spark.seconds.values())
    # the partitioned layout passes the serving checks and is copied whole into a publication
    validate_snapshot(on_spark.path)
    (tmp_path / "publication").mkdir()
    copied = copy_snapshot(on_spark.path, tmp_path / "publication")
    assert_same_snapshot(on_spark.features, load_snapshot(copied).features)


def _write_tiny(directory):
    data, _ = _dataset()
    directory.mkdir()
    for name, frame in data.tables().items():
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def test_cli_features_build_engine_spark_equals_duckdb(spark, tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    data = _write_tiny(tmp_path / "tiny")
    runner = CliRunner()
    for engine in ("duckdb", "spark"):
        result = runner.invoke(app, ["features", "build", "--data", str(data), "--as-of", TINY_AS_OF.isoformat(),
                                     "--out", str(tmp_path / engine), "--engine", engine])
        assert result.exit_code == 0, result.output
    duck, on_spark = load_snapshot(tmp_path / "duckdb"), load_snapshot(tmp_path / "spark")
    assert_same_snapshot(duck.features, on_spark.features)
    assert on_spark.features.set_index("person_id").loc[duck.features["person_id"].iloc[0], "n_customer_keys"] >= 1
    bad = runner.invoke(app, ["features", "build", "--data", str(data), "--engine", "flink"])
    assert bad.exit_code == 2 and "--engine must be duckdb or spark" in bad.output
    bad = runner.invoke(app, ["features", "build", "--data", str(data), "--spark-master", "local[1]"])
    assert bad.exit_code == 2 and "need --engine spark" in bad.output


def test_missing_required_column_names_file_and_column(spark, tmp_path):
    path = tmp_path / "orders.csv"
    pd.DataFrame({"order_id": ["o1"], "customer_key": ["k1"], "amount": [1.0]}).to_csv(path, index=False)
    raw = spark.read.option("header", True).csv(str(path))
    with pytest.raises(DataContractError, match=r"orders.csv: column 'order_ts': required column is missing"):
        contract_frame(raw, "orders", path)


def test_contract_rules_reject_bad_rows(spark, tmp_path):
    path = tmp_path / "orders.csv"
    pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5", "o1"],
        "customer_key": ["k1", "", "k3", "k4", "k5", "k1"],
        "order_ts": ["2025-01-01 10:00:00", "2025-01-02", "not a date", "2025-01-03", "2025-01-04T00:00:00+08:00",
                     "2025-01-01 10:00:00"],
        "amount": ["10.5", "3", "4", "-1", "7", "10.5"],
        "channel": ["TMALL", "jd", "jd", "jd", "", "tmall"],
    }).to_csv(path, index=False)
    df, read, used = contract_frame(spark.read.option("header", True).csv(str(path)), "orders", path)
    rows = df.orderBy("order_id").toPandas()
    assert (read, used) == (6, 2)  # empty key, bad timestamp, negative amount, a repeated order_id
    assert rows["order_id"].tolist() == ["o1", "o5"]
    assert rows["channel"].tolist() == ["tmall", "other"]  # lower-cased; blank → other
    assert rows["status"].tolist() == ["paid", "paid"]
    # an offset-carrying timestamp becomes Shanghai wall time, as in the pandas contract
    assert rows["order_ts"].iloc[1] == pd.Timestamp("2025-01-04 00:00:00")


def test_contract_rules_on_optional_columns(spark, tmp_path):
    """Optional values present but unreadable reject the row (as in the pandas contract); blanks are unknown."""
    path = tmp_path / "identities.csv"
    pd.DataFrame({
        "customer_key": ["k1", "k2", "k3", "k4", "k5"],
        "join_ts": ["2024-01-01", "garbage", "2024-01-01", "2024-01-01", ""],
        "marketing_opt_out": ["是", "no", "maybe", "0", ""],
        "birth_year": ["1990", "1980", "1970", "abc", ""],
        "member_card": [" m1 ", "m2", "m3", "m4", "  "],
    }).to_csv(path, index=False)
    df, read, used = contract_frame(spark.read.option("header", True).csv(str(path)), "identities", path)
    rows = df.orderBy("customer_key").toPandas()
    assert (read, used) == (5, 2)
    assert rows["customer_key"].tolist() == ["k1", "k5"]
    assert rows["marketing_opt_out"].tolist()[0] is True and pd.isna(rows["marketing_opt_out"].iloc[1])
    assert rows["member_card"].iloc[0] == "m1" and pd.isna(rows["member_card"].iloc[1])
    assert pd.isna(rows["join_ts"].iloc[1]) and rows["birth_year"].iloc[0] == 1990.0


def test_unknown_spark_table_is_an_input_error(spark):
    with pytest.raises(SparkTablesError, match=r"orders: Spark table 'lake.no_such_table' cannot be read"):
        read_inputs(spark, tables={"orders": "lake.no_such_table"})


def test_spark_tables_file_is_checked(tmp_path):
    good = tmp_path / "tables.yaml"
    good.write_text("orders: lake.crm_orders\nevents: lake.crm_events\n")
    assert read_spark_tables_file(good) == {"orders": "lake.crm_orders", "events": "lake.crm_events"}
    for text, message in (("- orders\n", "expected a mapping"), ("order: x\n", "unknown table"),
                          ("events: x\n", "no 'orders'")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(SparkTablesError, match=message):
            read_spark_tables_file(bad)


@pytest.mark.slow  # ~2-3 min for the module's 2k-customer snapshots on 2 shared cores
def test_spark_tables_input_gives_the_same_snapshot(spark, brand_dir, both, tmp_path):
    """Tables registered in the Spark catalog, named in a --spark-tables file, give the files' snapshot."""
    _, spark_loaded, _ = both
    mapping = {}
    for name in ("orders", "events", "identities", "campaign_touches"):
        view = f"lake_{name}"
        spark.read.parquet(str(brand_dir / f"{name}.parquet")).createOrReplaceTempView(view)
        mapping[name] = view
    snap = build_snapshot_spark(mapping, AS_OF, out_dir=tmp_path / "tables", spark=spark)
    assert_same_snapshot(spark_loaded.features, load_snapshot(snap.path).features)
    assert snap.manifest["inputs"]["orders"]["file"] == "lake_orders"


def test_local_driver_memory_is_half_the_machine_unless_the_launch_sets_it():
    from features.errors import InputError

    gb = 2**30
    free = dict(total_bytes=24 * gb, conf_sets_it=False)
    assert local_driver_memory({}, **free) == "12g"
    assert local_driver_memory({}, total_bytes=23.4 * gb, conf_sets_it=False) == "11g"
    assert local_driver_memory({}, total_bytes=1 * gb, conf_sets_it=False) == "1g"  # never below Spark's default
    assert local_driver_memory({"SCRM_SPARK_DRIVER_MEMORY": "6G"}, **free) == "6g"
    assert local_driver_memory({"PYSPARK_SUBMIT_ARGS": "--driver-memory 3g pyspark-shell"}, **free) is None
    assert local_driver_memory({}, total_bytes=24 * gb, conf_sets_it=True) is None  # spark-defaults / submit conf
    with pytest.raises(InputError, match="SCRM_SPARK_DRIVER_MEMORY"):
        local_driver_memory({"SCRM_SPARK_DRIVER_MEMORY": "lots"}, **free)
