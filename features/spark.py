"""Feature snapshots on Apache Spark: the session, the Spark-side inputs and the snapshot writer.

The feature query is the one of ``features.pipeline`` (the same Ibis expressions, compiled for Spark by the Ibis
PySpark backend); the RFM scores, segments and lifecycle stages are their Ibis twins in ``features.rfm``. Spark
reads the data directory's Parquet/CSV files (or Spark/Hive tables named in a ``--spark-tables`` file), applies
the data contract's type and value rules, hashes raw PII on the executors with the contract's own functions
(``features.pii``), and writes the snapshot as partitioned Parquet next to the usual ``manifest.json``.

One step runs on the driver: One-ID (``features.identity``), a connected-components pass over the identities
table, which needs every link at once. Spark first reduces orders and events to each key's first sighting, so
the driver holds one row per ``customer_key`` (never the orders or events). See ``docs/scale.md``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import pandas as pd

from features.backend import as_date, machine_memory_bytes, map_keys, replace_dir
from features.config import FeatureConfig
from features.contract import LOCAL_TZ, SCHEMAS, DataContractError, _find_files, _sha256
from features.dataset import TABLES, Dataset
from features.errors import InputError
from features.pii import normalize_phone, pii_key, pii_key_fingerprint, warn_if_pii_key_changed
from features.rfm import lifecycle_stage_expr, rfm_scores_expr, rfm_segments_expr
from features.spec import column_dtypes, column_order

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

#: The columns the feature query reads from each table (others are not read).
READ_COLUMNS = {
    "orders": ("order_id", "customer_key", "order_ts", "amount", "status", "channel", "discount", "category",
               "store_id"),
    "events": ("customer_key", "event_ts", "event_type"),
    "identities": ("customer_key", "phone", "phone_hash", "unionid", "unionid_hash", "member_card", "join_ts",
                   "linked_ts", "birth_year", "marketing_opt_out"),
    "campaign_touches": ("campaign_id", "customer_key", "sent_ts", "group"),
}
_TRUE = ("true", "t", "yes", "y", "1", "1.0", "是")
_FALSE = ("false", "f", "no", "n", "0", "0.0", "否")
_SPARK_TYPES = {"int64": "bigint", "float64": "double", "boolean": "boolean", "str": "string"}


class SparkTablesError(InputError):
    """A ``--spark-tables`` file that cannot be used (not a mapping, unknown table name, no orders)."""


def spark_session(master: str | None = None, *, app_name: str = "scrm-features", test: bool = False) -> SparkSession:
    """The SparkSession of a run.

    ``master`` (``--spark-master``) wins; else ``SPARK_REMOTE`` (a Spark Connect URL, ``sc://host:15002``); else
    the master ``spark-submit`` set; else ``local[*]``. ``test=True``: UI off, 2 shuffle partitions, 1 GB driver;
    other local masters: 2 shuffle partitions per core and a driver heap of :func:`local_driver_memory` (in local
    mode the driver JVM is also the executor, and Spark's own default of 1 GB spills a 1M-customer brand to disk).
    The session time zone is UTC, so naive timestamps (local time, as the contract keeps them) stay as written.
    """
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    remote = os.environ.get("SPARK_REMOTE")
    if master is None and remote:
        builder = builder.remote(remote)
    else:
        if master is None and not SparkConf().contains("spark.master"):
            master = "local[*]"
        if master is not None:
            builder = builder.master(master)
        use_local_python(master or SparkConf().get("spark.master", None))
        builder = builder.config("spark.sql.session.timeZone", "UTC")
        if test:
            builder = (builder.config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
                       .config("spark.default.parallelism", "2").config("spark.driver.memory", "1g"))
        elif (master or "").startswith("local"):  # one machine: Spark's 200 shuffle partitions are mostly overhead
            builder = builder.config("spark.sql.shuffle.partitions", str(max(4, 2 * (os.cpu_count() or 2))))
            memory = local_driver_memory()
            if memory is not None:
                builder = builder.config("spark.driver.memory", memory)
        builder = (builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.ui.showConsoleProgress", "false"))  # no progress bars among the CLI's tables
    session = builder.getOrCreate()
    if remote is None or master is not None:
        session.sparkContext.setLogLevel("FATAL")
    return session


def use_local_python(master: str | None, environ: dict[str, str] | None = None) -> None:
    """Python workers of a local session run this interpreter (pandas UDFs and ``mapInArrow`` need the project's
    environment): ``PYSPARK_PYTHON`` is set to ``sys.executable`` when ``master`` is local and it is unset. A cluster's
    executors keep their own Python (``PYSPARK_PYTHON`` as the launch sets it: docs/scale.md). The one place that
    sets it, before the session starts (PySpark reads it when the SparkContext starts)."""
    if (master or "").startswith("local"):
        (os.environ if environ is None else environ).setdefault("PYSPARK_PYTHON", sys.executable)


def local_driver_memory(environ: dict[str, str] | None = None, total_bytes: int | None = None, *,
                        conf_sets_it: bool | None = None) -> str | None:
    """The driver heap of a local-mode session: ``SCRM_SPARK_DRIVER_MEMORY`` (``8g``), else half the machine's
    memory (the cgroup limit when lower: :func:`~features.backend.machine_memory_bytes`) in whole GB (at least 1g); ``None`` when the launch already sets it (``spark.driver.memory`` in the
    Spark conf, ``--driver-memory`` in ``PYSPARK_SUBMIT_ARGS``), which then wins. ``conf_sets_it``: whether the
    Spark conf has ``spark.driver.memory`` (default: ask ``SparkConf()``, which reads a running JVM's conf)."""

    env = os.environ if environ is None else environ
    if env.get("SCRM_SPARK_DRIVER_MEMORY"):
        value = env["SCRM_SPARK_DRIVER_MEMORY"].strip().lower()
        if not value[:-1].isdigit() or value[-1] not in "mg":
            raise InputError(f"SCRM_SPARK_DRIVER_MEMORY={value!r}: expected a size such as 8g or 4096m",
                             field="SCRM_SPARK_DRIVER_MEMORY")
        return value
    if conf_sets_it is None:
        from pyspark import SparkConf

        conf_sets_it = SparkConf().contains("spark.driver.memory")
    if "--driver-memory" in env.get("PYSPARK_SUBMIT_ARGS", "") or conf_sets_it:
        return None
    if total_bytes is None:
        total_bytes = machine_memory_bytes()
    return f"{max(1, int(total_bytes / 2**30) // 2)}g"


# --- inputs -------------------------------------------------------------------------------------------------------


@dataclass
class SparkInputs:
    """The validated input tables of a Spark run (Spark DataFrames, PII hashed) and where they came from."""

    frames: dict[str, DataFrame]
    fingerprint: dict[str, dict] = field(default_factory=dict)
    source: str | None = None


def read_spark_tables_file(path: Path) -> dict[str, str]:
    """``{table: spark table name}`` from a YAML file such as ``orders: lake.crm_orders``."""
    import yaml

    try:
        mapping = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SparkTablesError(f"{path}: cannot read the Spark tables file ({exc})", file=path) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise SparkTablesError(f"{path}: expected a mapping of table name to Spark table, e.g. "
                               "'orders: lake.crm_orders'", file=path)
    unknown = sorted(set(mapping) - set(TABLES))
    if unknown:
        raise SparkTablesError(f"{path}: unknown table(s) {unknown}; known: {list(TABLES)}", file=path)
    if "orders" not in mapping:
        raise SparkTablesError(f"{path}: no 'orders' table (required)", file=path)
    return {str(k): v for k, v in mapping.items()}


def read_inputs(spark: SparkSession, data_dir: Path | None = None, *, tables: dict[str, str] | None = None) -> SparkInputs:
    """Read the input tables with Spark: a data directory's Parquet/CSV files, or Spark tables by name.

    Every table goes through ``contract_frame`` (types, enum defaults, the contract's row rules, PII hashing).
    """
    if (data_dir is None) == (tables is None):
        raise ValueError("give exactly one of data_dir and tables")
    frames, fingerprint = {}, {}
    if tables is not None:
        from pyspark.errors import AnalysisException

        sources = {}
        for name in (n for n in TABLES if n in tables):
            try:
                sources[name] = (tables[name], spark.table(tables[name]))
            except AnalysisException as exc:
                raise SparkTablesError(f"{name}: Spark table {tables[name]!r} cannot be read "
                                       f"({str(exc).splitlines()[0]})", field=name) from None
    else:
        files = _find_files(Path(data_dir))
        if "orders" not in files:
            raise DataContractError(data_dir, None, "no orders.parquet or orders.csv (the orders table is required)")
        sources = {}
        for name, path in files.items():
            reader = spark.read if path.suffix == ".parquet" else spark.read.option("header", True).option(
                "encoding", "UTF-8")
            sources[name] = (path, reader.parquet(str(path)) if path.suffix == ".parquet" else reader.csv(str(path)))
    for name, (where, raw) in sources.items():
        df, read, used = contract_frame(raw, name, where)
        frames[name] = df
        sha = _sha256(where) if isinstance(where, Path) and where.is_file() else None
        fingerprint[name] = {"file": str(where), "sha256": sha, "rows_read": read, "rows_used": used,
                             "rows_rejected": read - used}
    return SparkInputs(frames=frames, fingerprint=fingerprint, source=str(data_dir) if data_dir else "spark tables")


def contract_frame(raw: DataFrame, name: str, where) -> tuple[DataFrame, int, int]:
    """One table typed and filtered as ``features.contract`` does: ``(frame, rows read, rows used)``.

    Columns are lower-cased; required columns must exist (``DataContractError`` naming the file and column).
    Timestamps become naive local time (Asia/Shanghai) and unparseable ones reject the row, as do empty keys,
    missing or negative amounts, unknown enum values (blank channel → ``other``, blank status → ``paid``) and
    unreadable booleans; a repeated ``order_id`` keeps one row. Raw ``phone``/``unionid`` are replaced by their
    keyed hashes (``features.pii``, run on the executors) and never leave this function.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, TimestampNTZType, TimestampType

    columns = [c.strip().lstrip("\ufeff").lower() for c in raw.columns]  # a CSV may start with a UTF-8 BOM
    seen = set()
    for col in columns:
        if col in seen:
            raise DataContractError(where, col, "column appears more than once")
        seen.add(col)
    raw = raw.toDF(*columns)
    schema = SCHEMAS[name]
    missing = [c for c in schema.required if c not in columns]
    if missing:
        raise DataContractError(where, missing[0], "required column is missing")
    keep = [c for c in READ_COLUMNS[name] if c in columns]
    # every rule reads the column as read (``_raw_<col>``): the typed column replaces it under its own name
    df = raw.select(*keep, *[F.col(c).alias(f"_raw_{c}") for c in keep])
    types = dict(raw.select(*keep).dtypes)
    ok = F.lit(True)

    def text(col: str):
        value = F.trim(F.col(f"_raw_{col}").cast("string"))
        return F.when(F.length(value) > 0, value)

    def as_read(col: str):
        return F.col(f"_raw_{col}")

    for col in schema.timestamps:
        if col not in keep:
            continue
        field_type = raw.schema[col].dataType
        if isinstance(field_type, TimestampType):  # an instant (UTC-adjusted Parquet): to local wall time
            value = F.from_utc_timestamp(as_read(col), LOCAL_TZ)
        elif isinstance(field_type, TimestampNTZType) or types[col] == "date":
            value = as_read(col).cast("timestamp")
        elif isinstance(field_type, StringType):
            s = text(col)
            with_tz = s.rlike(r"([zZ]|[+-]\d\d:?\d\d)$")
            value = F.when(with_tz, F.from_utc_timestamp(F.try_to_timestamp(s), LOCAL_TZ)).otherwise(
                F.try_to_timestamp(s))
        else:
            raise DataContractError(where, col, f"wrong type: holds {types[col]} values, not timestamps")
        df = df.withColumn(col, value)
        # a required timestamp must parse; an optional one (join_ts) may be empty but not garbage
        ok = ok & (value.isNotNull() if col in schema.required else (value.isNotNull() | text(col).isNull()))
    for col in schema.keys:
        df = df.withColumn(col, text(col))
        ok = ok & text(col).isNotNull()
    if schema.amount:
        amount = as_read("amount").try_cast("double")
        df = df.withColumn("amount", amount)
        ok = ok & amount.isNotNull() & ~F.isnan(amount) & (amount >= 0) & (amount != float("inf"))
    for col in schema.numerics:
        if col in keep:
            parsed = as_read(col).try_cast("double")
            bad = text(col).isNotNull() & (parsed.isNull() | F.isnan(parsed))
            if col in schema.non_negative:
                bad = bad | F.coalesce(parsed < 0, F.lit(False))
            df = df.withColumn(col, F.when(~bad, parsed))
            ok = ok & ~bad
    for col, (allowed, default) in schema.enums.items():
        if col not in keep and default is None:
            continue
        value = F.lower(text(col)) if col in keep else F.lit(None).cast("string")
        if default is not None:
            value = F.coalesce(value, F.lit(default))
        df = df.withColumn(col, value)
        ok = ok & value.isin(list(allowed))
    for col in schema.bools:
        if col in keep and types[col] != "boolean":
            v = F.lower(text(col))
            df = df.withColumn(col, F.when(v.isin(list(_TRUE)), True).when(v.isin(list(_FALSE)), False))
            ok = ok & (v.isNull() | v.isin(list(_TRUE + _FALSE)))
        elif col not in keep:
            df = df.withColumn(col, F.lit(None).cast("boolean"))
    typed = {*schema.timestamps, *schema.keys, "amount", *schema.numerics, *schema.enums, *schema.bools,
             "phone", "phone_hash", "unionid", "unionid_hash"}
    for col in keep:
        if col not in typed:  # other text (member_card, category, store_id): stripped, blank as missing
            df = df.withColumn(col, text(col))
    df = df.filter(F.coalesce(ok, F.lit(False))).drop(*[f"_raw_{c}" for c in keep])
    if name == "identities":
        df = _hash_pii(df)
    read = raw.count()
    if schema.unique:
        df = df.dropDuplicates([schema.unique])
    if name == "campaign_touches":
        df = df.withColumn("touch_id", F.monotonically_increasing_id())
    used = df.count()
    if used == 0:
        raise DataContractError(where, None, f"no usable rows: all {read:,} rows rejected")
    return df, read, used


def _hash_pii(df: DataFrame) -> DataFrame:
    """``phone``/``unionid`` → ``phone_hash``/``unionid_hash`` with ``features.pii`` (a pandas UDF on the
    executors, so the hashes equal the DuckDB path's); the key travels inside the UDF, never as a literal."""
    from pyspark.sql import functions as F

    key = pii_key()
    cols = set(df.columns)

    def as_text(s: pd.Series) -> pd.Series:
        out = s.astype("string").str.strip()
        return out.where(out.str.len() > 0)

    @F.pandas_udf("string")
    def phone_udf(s: pd.Series) -> pd.Series:
        from features.pii import hmac_hash

        return hmac_hash(normalize_phone(s), key).astype(object).where(lambda x: x.notna(), None)

    @F.pandas_udf("string")
    def unionid_udf(s: pd.Series) -> pd.Series:
        from features.pii import hmac_hash

        return hmac_hash(as_text(s), key).astype(object).where(lambda x: x.notna(), None)

    for raw_col, hash_col, udf in (("phone", "phone_hash", phone_udf), ("unionid", "unionid_hash", unionid_udf)):
        given = F.lower(F.trim(F.col(hash_col).cast("string"))) if hash_col in cols else None
        if given is not None:
            given = F.when(F.length(given) > 0, given)
        if raw_col in cols:
            hashed = udf(F.col(raw_col).cast("string"))
            df = df.withColumn(hash_col, F.coalesce(given, hashed) if given is not None else hashed).drop(raw_col)
        elif given is not None:
            df = df.withColumn(hash_col, given)
    return df


def dataset_inputs(spark: SparkSession, dataset: Dataset) -> SparkInputs:
    """A validated pandas ``Dataset`` as Spark inputs (tests, and runs that start from ``load_dataset``)."""
    from pyspark.sql import functions as F

    frames = {}
    for name, df in dataset.tables().items():
        cols = [c for c in READ_COLUMNS[name] if c in df.columns and c not in ("phone", "unionid")]
        if name == "identities":
            cols += [c for c in ("phone_hash", "unionid_hash") if c in df.columns and c not in cols]
        frame = spark.createDataFrame(df[cols].astype({c: "object" for c in cols if df[c].dtype == "str"
                                                       or df[c].dtype == "category"}))  # contract categoricals
        for col in SCHEMAS[name].timestamps:
            if col in cols:
                frame = frame.withColumn(col, F.col(col).cast("timestamp"))
        if name == "campaign_touches":
            frame = frame.withColumn("touch_id", F.monotonically_increasing_id())
        frames[name] = frame
    return SparkInputs(frames=frames, fingerprint=dataset.fingerprint_dict(),
                       source=str(dataset.source) if dataset.source is not None else None)


def spark_inputs(spark: SparkSession, source: Path | dict[str, str] | Dataset | SparkInputs) -> SparkInputs:
    """The inputs of a run from any of the sources ``build_snapshot_spark`` accepts."""
    if isinstance(source, SparkInputs):
        return source
    if isinstance(source, Dataset):
        return dataset_inputs(spark, source)
    if isinstance(source, dict):
        return read_inputs(spark, tables=source)
    return read_inputs(spark, Path(source))


def default_as_of(inputs: SparkInputs) -> date:
    """The day after the last order or event (``training.train.default_as_of``, aggregated by Spark)."""
    from pyspark.sql import functions as F

    ends = [inputs.frames["orders"].agg(F.max("order_ts")).first()[0]]
    if "events" in inputs.frames:
        ends.append(inputs.frames["events"].agg(F.max("event_ts")).first()[0])
    end = max(pd.Timestamp(e) for e in ends if e is not None)
    return (end + pd.Timedelta(days=1)).date()


def summarize_spark(features: DataFrame, console) -> None:
    """People, buyers, RFM segment and lifecycle counts of a Spark snapshot (aggregated by Spark)."""
    from pyspark.sql import functions as F
    from rich.table import Table

    from features.vocab import LIFECYCLE_STAGES, SEGMENT_EN, SEGMENT_ORDER

    row = features.agg(F.count("*").alias("n"), F.sum((F.col("orders") > 0).cast("int")).alias("b")).first()
    n, nb = int(row["n"]), int(row["b"] or 0)
    segments = dict(features.groupBy("rfm_segment").count().collect())
    stages = dict(features.groupBy("lifecycle_stage").count().collect())
    head = Table(title="Feature snapshot (Spark)", show_header=False)
    head.add_row("people", f"{n:,}")
    head.add_row("buyers (≥1 paid order)", f"{nb:,} ({nb / max(n, 1):.1%})")
    console.print(head)
    seg = Table(title="RFM segments (buyers)")
    for col in ("segment", "English", "people", "share"):
        seg.add_column(col)
    for name in SEGMENT_ORDER:
        if segments.get(name):
            seg.add_row(name, SEGMENT_EN[name], f"{segments[name]:,}", f"{segments[name] / max(nb, 1):.1%}")
    console.print(seg)
    life = Table(title="Lifecycle stages (buyers)")
    for col in ("stage", "people", "share"):
        life.add_column(col)
    for stage in LIFECYCLE_STAGES:
        k = int(stages.get(stage, 0))
        life.add_row(stage, f"{k:,}", f"{k / max(nb, 1):.1%}")
    console.print(life)


# --- One-ID on the driver ---------------------------------------------------------------------------------------


def one_id(inputs: SparkInputs, as_of: date, *, max_keys_per_person: int = 20):
    """``features.identity.resolve_identities`` as of ``as_of`` over Spark inputs (``IdentityResult``).

    Spark reduces orders and events to each key's first timestamp and touches to their distinct keys; the
    driver gets those and the identities table (hashed identifiers only), one row per key or account.
    """
    from pyspark.sql import functions as F

    from features.identity import resolve_identities

    frames = inputs.frames
    ident_cols = [c for c in ("customer_key", "phone_hash", "unionid_hash", "member_card", "join_ts", "linked_ts")
                  if c in frames["identities"].columns]
    firsts = {}
    for name, ts in (("orders", "order_ts"), ("events", "event_ts")):
        if name in frames:
            firsts[name] = frames[name].groupBy("customer_key").agg(F.min(ts).alias(ts)).toPandas()
    touches = (frames["campaign_touches"].select("customer_key").distinct().toPandas()
               if "campaign_touches" in frames else None)
    dataset = Dataset(orders=firsts["orders"], events=firsts.get("events"),
                      identities=frames["identities"].select(*ident_cols).toPandas(), campaign_touches=touches)
    return resolve_identities(dataset, as_of=as_of, max_keys_per_person=max_keys_per_person)


# --- the snapshot -------------------------------------------------------------------------------------------------


@dataclass
class SparkSnapshot:
    """A snapshot written by Spark: its directory, manifest and the features as a Spark DataFrame."""

    path: Path
    manifest: dict
    features: Any = None  # pyspark DataFrame of the written features
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # step -> (wall, driver CPU) seconds


def _view(con, df: DataFrame, name: str) -> ir.Table:
    view = f"_scrm_in_{name}_{uuid.uuid4().hex[:8]}"
    df.createOrReplaceTempView(view)
    return con.table(view)


def features_expr(con, inputs: SparkInputs, as_of: date, config: FeatureConfig, key_map: ir.Table, stages):
    """The snapshot's features as one Ibis expression on the Spark backend (scores, segments, stages included)."""
    from features.pipeline import feature_query

    tables = {name: _view(con, df, name) for name, df in inputs.frames.items()}
    tables["given"] = key_map
    expr, _, _used = feature_query(con, tables, as_of, config, stages, numbered=False)
    dtypes = column_dtypes(config)
    fill = {c: v for c, v in {"n_categories": 0, "is_member": False}.items() if c in expr.columns}
    expr = expr.fill_null(fill) if fill else expr
    expr = stages.cache("wide", expr)
    expr = stages.cache("scores", rfm_scores_expr(expr, config))
    expr = lifecycle_stage_expr(rfm_segments_expr(expr, config), config)
    if "marketing_opt_out" not in expr.columns:
        expr = expr.mutate(marketing_opt_out=ibis.null("boolean"))
    present = set(expr.columns)
    order = [c for c in column_order(config) if c in present]
    casts = {"str": "string", "boolean": "boolean", "int64": "int64", "float64": "float64"}
    return expr.select(*[expr[c].cast(casts[dtypes.get(c, "float64")]).name(c) for c in order])


def build_snapshot_spark(
    source: Path | dict[str, str] | Dataset | SparkInputs,
    as_of,
    *,
    out_dir: Path,
    spark: SparkSession | None = None,
    config: FeatureConfig | None = None,
    identity: pd.DataFrame | DataFrame | None = None,
    max_keys_per_person: int = 20,
    console=None,
) -> SparkSnapshot:
    """Build the feature snapshot of ``as_of`` on Spark and write it under ``out_dir``.

    Parameters
    ----------
    source
        A data directory (Spark reads its files), ``{table: spark table}`` (``read_spark_tables_file``), a
        validated ``Dataset`` (its frames are handed to Spark) or inputs already read (``spark_inputs``).
    identity
        A One-ID ``key_to_person`` frame (pandas, or a Spark DataFrame, which stays on the executors); by default
        One-ID runs on the identities table (on the driver).

    Returns
    -------
    SparkSnapshot
        ``features.parquet/`` and ``identity.parquet/`` are directories of Parquet parts sorted by key, readable
        by ``features.pipeline.load_snapshot``; ``manifest.json`` has the keys of the DuckDB snapshot's.
    """
    from features.pipeline import _Stages, model_columns

    as_of = as_date(as_of)
    config = config or FeatureConfig()
    spark = spark or spark_session()
    timer = [time.perf_counter(), time.process_time()]
    seconds: dict[str, tuple[float, float]] = {}

    def lap(name: str) -> None:
        now = [time.perf_counter(), time.process_time()]
        seconds[name] = (round(now[0] - timer[0], 2), round(now[1] - timer[1], 2))
        timer[:] = now

    inputs = spark_inputs(spark, source)
    lap("read_inputs")
    con = ibis.pyspark.connect(spark)
    stages = _Stages(con)
    identity_stats = None
    try:
        if identity is None and "identities" in inputs.frames:
            result = one_id(inputs, as_of, max_keys_per_person=max_keys_per_person)
            identity, identity_stats = result.key_to_person, result.stats
            lap("one_id")
        given = None
        if identity is not None:
            frame = (identity.select("customer_key", "person_id") if not isinstance(identity, pd.DataFrame) else
                     spark.createDataFrame(identity[["customer_key", "person_id"]].astype(object)))
            given = _view(con, frame, "given")
        keys = [_view(con, df.select("customer_key").distinct(), f"keys_{name}") for name, df in inputs.frames.items()]
        key_map = stages.cache("complete_key_map", map_keys(keys, given))
        expr = features_expr(con, inputs, as_of, config, key_map, stages)
        lap("steps")
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            features = spark.sql(con.compile(expr))
            features.orderBy("person_id").write.mode("overwrite").parquet(str(tmp / "features.parquet"))
            spark.sql(con.compile(key_map)).orderBy("customer_key").write.mode("overwrite").parquet(
                str(tmp / "identity.parquet"))
            lap("write")
            written = spark.read.parquet(str(tmp / "features.parquet"))
            from pyspark.sql import functions as F

            counts = written.agg(F.count("*").alias("people"),
                                 F.sum((F.col("orders") > 0).cast("int")).alias("buyers")).first()
            n_keys = spark.read.parquet(str(tmp / "identity.parquet")).count()
            cutoff = pd.Timestamp(as_of).to_pydatetime()
            orders_before = inputs.frames["orders"].filter(F.col("order_ts") < F.lit(cutoff)).count()
            empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in column_dtypes(config).items()
                                  if c in written.columns})
            manifest = {
                "as_of": as_of.isoformat(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "source": inputs.source,
                "inputs": inputs.fingerprint,
                "rows": {"people": int(counts["people"]), "buyers": int(counts["buyers"] or 0),
                         "customer_keys": int(n_keys), "orders_before_as_of": int(orders_before)},
                "features": list(written.columns),
                "model_columns": model_columns(empty[list(written.columns)]),
                "config": config.model_dump(mode="json"),
                "engine": f"ibis {ibis.__version__} on pyspark {spark.version}",
                "layout": "partitioned",
                "pii_key_fingerprint": pii_key_fingerprint(required=False),
            }
            if identity_stats is not None:
                manifest["one_id"] = {k: identity_stats[k] for k in ("keys", "persons", "multi_key_persons")}
            warn_if_pii_key_changed(out_dir.parent, manifest["pii_key_fingerprint"], console=console)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
            replace_dir(tmp, out_dir)
            lap("manifest")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        stages.release()
    seconds = {**seconds, **{f"steps.{k}": v for k, v in stages.seconds.items()}}
    log.info("build_snapshot_spark as_of=%s: %d people; stage seconds (wall, driver cpu) %s", as_of,
             manifest["rows"]["people"], seconds)
    return SparkSnapshot(path=out_dir, manifest=manifest, features=spark.read.parquet(str(out_dir / "features.parquet")),
                         seconds=seconds)
