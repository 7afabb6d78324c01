"""Point-in-time feature snapshots: one row per person, built only from rows strictly before ``as_of``.

The aggregates are Ibis expressions (``features.rfm``, ``features.interactions``) executed step by step (each
step a temporary table) on an in-process DuckDB connection by default. numpy reshapes the per-(person, event
type) counts into columns, and pandas does the last small steps on the one-row-per-person table: RFM quintile
scores, segment names and lifecycle stages. ``build_snapshot(..., engine="spark")`` runs the same query
(``feature_query``) on Spark with those last steps as Ibis expressions too (``features.spark``). See
``docs/features.md`` and ``docs/scale.md``.

"Before ``as_of``" means ``timestamp < as_of 00:00``. The columns (order, dtypes, plain-words docs in
``FEATURE_DOCS`` and ``docs/features.md``, which are model inputs) come from the spec in ``features.spec``;
``FeatureConfig`` and ``connect`` live in ``features.config`` and ``features.backend`` and are re-exported here.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from features.backend import (
    Inputs,
    as_date,
    check_identity,
    connect,
    input_table,
    map_keys,
    replace_dir,
    require,
)
from features.config import FeatureConfig  # noqa: F401 - re-exported: the pipeline's public settings
from features.dataset import Dataset
from features.identity import resolve_identities
from features.interactions import (
    campaign_aggregates,
    event_key_aggregates,
    event_key_days,
    pivot_events,
    pivot_events_expr,
    profile_aggregates,
)
from features.pii import check_pii_fingerprint, pii_key_fingerprint, warn_if_pii_key_changed
from features.rfm import (
    daily_aggregates,
    lifecycle_stage,
    order_aggregates,
    rfm_scores,
    rfm_segments,
    slim_orders,
)
from features.spec import column_dtypes, column_order, feature_docs, non_model_columns
from features.vocab import CHANNELS, LIFECYCLE_STAGES, SEGMENT_EN, SEGMENT_ORDER

if TYPE_CHECKING:  # pragma: no cover
    import ibis.expr.types as ir

log = logging.getLogger(__name__)

SNAPSHOT_FILES = ("features.parquet", "identity.parquet", "manifest.json")


# --- column documentation ---------------------------------------------------------------------------------------


FEATURE_DOCS: dict[str, str] = feature_docs()

NON_MODEL_COLUMNS = non_model_columns()


def model_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns a model may use: excludes ids, strings, the opt-out flag and segment names.

    Parameters
    ----------
    df
        A features frame (extra columns such as labels are kept if numeric; callers remove labels).
    """
    out = []
    for col in df.columns:
        if col in NON_MODEL_COLUMNS:
            continue
        dtype = df[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        out.append(col)
    return out


# --- identity -----------------------------------------------------------------------------------------------------


def complete_key_map(data: Dataset, identity: pd.DataFrame | None, *, backend=None) -> pd.DataFrame:
    """``customer_key`` → ``person_id`` for every key in any table, sorted by key.

    ``identity`` (a One-ID ``key_to_person`` frame) is used where given; keys it does not cover, or all keys
    when it is ``None``, are their own person (``"p_" + sha1(customer_key)[:12]``).
    """
    con = backend if backend is not None else connect()
    inputs = Inputs(con)
    try:
        keys = [input_table(df, ["customer_key"], inputs) for df in data.tables().values() if "customer_key" in df.columns]
        given = (input_table(check_identity(identity), ["customer_key", "person_id"], inputs)
                 if identity is not None else None)
        return con.to_pyarrow(map_keys(keys, given).order_by("customer_key")).to_pandas()
    finally:
        inputs.close()
        if backend is None:
            con.disconnect()


def resolve_key_map(data: Dataset, identity: pd.DataFrame | None = None, *, as_of=None, backend=None) -> pd.DataFrame:
    """The key map to use: ``identity`` if given, else One-ID as of ``as_of`` if there are identities, else none."""
    if identity is None and data.identities is not None and len(data.identities):
        identity = resolve_identities(data, as_of=as_of).key_to_person
    return complete_key_map(data, identity, backend=backend)


# --- the feature query ---------------------------------------------------------------------------------------------

_COUNT_PREFIXES = ("orders", "total_spend", "spend_", "n_channels", "ev_", "_n_")


def _safe_div(num, den):
    return ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


def _left(a: ir.Table, b: ir.Table) -> ir.Table:
    """Left join on ``person_id`` keeping a single ``person_id`` column."""
    return a.left_join(b, a.person_id == b.person_id).drop("person_id_right")


class _Stages:
    """Materialises intermediate results in the backend and times each step.

    On DuckDB each step is a temporary table. On Spark a step is a local checkpoint on the executors (computed
    at once) under a temporary view: it cuts the query plan, which would otherwise grow with every step (and
    repeat shared parts), and no row reaches the driver.
    (``Table.cache()`` would use Ibis' default backend for in-memory inputs, not the one passed in.)
    """

    def __init__(self, con) -> None:
        self.con = con
        self.spark = getattr(con, "name", "") == "pyspark"
        self.inputs = Inputs(con)
        self.tables: dict[str, str] = {}
        self.frames: dict[str, object] = {}
        self.seconds: dict[str, tuple[float, float]] = {}

    def cache(self, name: str, expr: ir.Table) -> ir.Table:
        t, cpu = time.perf_counter(), time.process_time()
        table_name = f"_scrm_{name}_{uuid.uuid4().hex[:8]}"
        if self.spark:
            self.con._run_pre_execute_hooks(expr)
            df = self.con._session.sql(self.con.compile(expr)).localCheckpoint(eager=True)
            df.createOrReplaceTempView(table_name)
            self.frames[name] = df
            out = self.con.table(table_name)
        else:
            out = self.con.create_table(table_name, expr, temp=True)
        self.tables[name] = table_name
        self.seconds[name] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
        return out

    def release(self, *names: str) -> None:
        """Drop the tables of the named steps (all steps and the inputs when no name is given)."""
        if not names:
            self.inputs.close()
        for name in names or list(self.tables):
            table_name = self.tables.pop(name, None)
            if table_name is None:
                continue
            try:
                if self.spark:
                    self.con._session.catalog.dropTempView(table_name)
                    self.frames.pop(name).unpersist()
                else:
                    self.con.drop_table(table_name, force=True)
            except Exception:  # noqa: BLE001 - the connection may already be closed
                pass


def _dataset_tables(data: Dataset, identity: pd.DataFrame | None, stages: _Stages) -> dict[str, object]:
    """The input tables of a run from a pandas ``Dataset`` (registered with the backend via Arrow).

    Optional tables that are absent or empty are left out; ``given`` is the One-ID key map when there is one.
    Touches and identities are functions giving the table: converted only when the query reaches them, after the
    event tables are dropped (a lower peak).
    """
    require(data.orders, ["customer_key", "order_ts", "amount"], "orders")
    tables = {"orders": input_table(data.orders, ["customer_key", "order_ts", "amount", "status", "channel",
                                                  "discount", "category", "store_id"], stages.inputs)}
    if data.events is not None and len(data.events) > 0:
        require(data.events, ["customer_key", "event_ts", "event_type"], "events")
        tables["events"] = input_table(data.events, ["customer_key", "event_ts", "event_type"], stages.inputs)
    if data.campaign_touches is not None and len(data.campaign_touches) > 0:
        require(data.campaign_touches, ["customer_key", "sent_ts", "group"], "campaign_touches")

        def touches() -> ir.Table:
            t_df = data.campaign_touches[["customer_key", "sent_ts", "group"]].copy()
            t_df["touch_id"] = np.arange(len(t_df), dtype="int64")
            return input_table(t_df, ["customer_key", "sent_ts", "group", "touch_id"], stages.inputs)

        tables["campaign_touches"] = touches
    if data.identities is not None and len(data.identities) > 0:
        tables["identities"] = lambda: input_table(data.identities, ["customer_key", "birth_year", "join_ts",
                                                                     "marketing_opt_out", "member_card"],
                                                   stages.inputs)
    if identity is not None:
        tables["given"] = input_table(check_identity(identity), ["customer_key", "person_id"], stages.inputs)
    return tables


def _feature_table(
    con, data: Dataset, as_of: date, identity: pd.DataFrame | None, config: FeatureConfig, stages: _Stages
) -> tuple[pa.Table, np.ndarray, dict[str, bool]]:
    """Run the feature query on DuckDB: the per-person Arrow table (before pandas scoring), the person ids by pidx
    and which optional sources were used."""
    tables = _dataset_tables(data, identity, stages)
    return feature_query(con, tables, as_of, config, stages, numbered=True)


def _table(tables: dict[str, object], name: str) -> ir.Table:
    """An input table of ``feature_query`` (a table, or a function giving it when first needed)."""
    table = tables[name]
    return table() if callable(table) and not isinstance(table, ibis.expr.types.Table) else table


def feature_query(con, tables: dict[str, object], as_of: date, config: FeatureConfig, stages: _Stages, *,
                  numbered: bool):
    """The feature query over input tables (``orders`` and optionally ``events``, ``campaign_touches`` with a
    ``touch_id``, ``identities`` and ``given``, the One-ID key map; a table or a function giving it), before RFM
    scores, segments and stages.

    ``numbered=True`` (DuckDB, the fast path): people are numbered (``pidx``, 0-based dense rank of
    ``person_id``) so every heavy group-by and join runs on integers, the per-(person, event type) counts are
    pivoted with numpy, and the result is collected: ``(Arrow table with integer person_id, person_id by pidx,
    used sources)``. ``numbered=False`` (Spark): string ``person_id`` throughout, the pivot as conditional
    aggregates, and nothing is collected: ``(Ibis table, None, used sources)``.
    """
    cutoff = ibis.literal(pd.Timestamp(as_of), type="timestamp")
    has_events = "events" in tables
    has_touches = "campaign_touches" in tables
    has_ids = "identities" in tables

    orders_raw = tables["orders"]
    if "status" not in orders_raw.columns:
        orders_raw = orders_raw.mutate(status=ibis.literal("paid"))
    if "channel" not in orders_raw.columns:
        orders_raw = orders_raw.mutate(channel=ibis.literal("other"))
    orders_before = orders_raw.filter(orders_raw.order_ts < cutoff)
    order_keys = stages.cache("order_keys", orders_before.group_by("customer_key").aggregate(
        _first_order_ts=orders_before.order_ts.min()))
    keys = [order_keys.select("customer_key")]
    ev_key = None
    if has_events:
        ev_raw = tables["events"]
        events = ev_raw.filter(ev_raw.event_ts < cutoff)
        ev_kt = stages.cache("events_by_key", event_key_aggregates(events, as_of, windows=config.event_windows))
        ev_key = ev_kt.group_by("customer_key").aggregate(_first_event_ts=ev_kt._first.min())
        keys.append(ev_key.select("customer_key"))
    km_named = map_keys(keys, tables.get("given"))
    names = None
    if numbered:
        km_named = km_named.mutate(pidx=ibis.dense_rank().over(order_by=km_named.person_id))
        km_named = stages.cache("key_map", km_named)
        n_people = int(con.execute(km_named.pidx.max()) or 0) + 1  # ibis ranks start at 0
        km = km_named.select("customer_key", person_id="pidx")  # integer person ids inside the query
        names = km_named.select("pidx", "person_id").distinct().order_by("pidx")
        names = con.to_pyarrow(names).column("person_id").to_numpy(zero_copy_only=False)  # pidx -> person_id
    else:
        km = stages.cache("key_map", km_named)

    # people seen before as_of (any order or event) and how many of their keys
    seen = [order_keys.select("customer_key", first_ts=order_keys._first_order_ts)]
    if ev_key is not None:
        seen.append(ev_key.select("customer_key", first_ts=ev_key._first_event_ts))
    seen = seen[0].union(*seen[1:]) if len(seen) > 1 else seen[0]
    seen = seen.join(km, "customer_key")
    seen = seen.group_by(["person_id", "customer_key"]).aggregate(first_ts=seen.first_ts.min())
    people = seen.group_by("person_id").aggregate(n_customer_keys=seen.count(), _first_seen_ts=seen.first_ts.min())
    expr = stages.cache("people", people)
    stages.release("order_keys")
    if ev_key is not None:
        # events first, so their per-key table is gone before the orders are materialised (lower peak memory)
        t, cpu = time.perf_counter(), time.process_time()
        if numbered:
            long = con.to_pyarrow(event_key_days(ev_kt, km, as_of))
            wide = pivot_events(long, n_people, windows=config.event_windows)
            del long
            stages.release("events_by_key")
            expr = _left(expr, ibis.memtable(wide))
            del wide
        else:
            wide = pivot_events_expr(event_key_days(ev_kt, km, as_of), windows=config.event_windows)
            expr = _left(expr, stages.cache("events_wide", wide))
        stages.seconds["events_agg"] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
    orders = stages.cache("orders", slim_orders(orders_before.join(km, "customer_key")))
    expr = _left(expr, stages.cache("orders_agg", order_aggregates(orders, as_of, windows=config.windows)))
    expr = _left(expr, stages.cache("purchase_days", daily_aggregates(orders, as_of)))
    if has_touches:
        touches = _table(tables, "campaign_touches").join(km, "customer_key")
        paid = orders.filter(orders.paid).select("person_id", "order_ts")
        cagg = campaign_aggregates(touches, paid, as_of, response_window_days=config.response_window_days)
        expr = _left(expr, stages.cache("campaigns", cagg))
    stages.release("orders")
    if has_ids:
        expr = _left(expr, stages.cache("profile", profile_aggregates(_table(tables, "identities"), km, as_of)))

    # zero-fill counts for people without any row of that kind, then derived ratios
    expr = expr.fill_null({c: 0 for c in expr.columns if c.startswith(_COUNT_PREFIXES)})
    asof_date = ibis.literal(as_of, type="date")
    first_seen = expr._first_seen_ts
    muts = {
        "recency_days": asof_date.delta(expr._last_paid_ts.date(), unit="day").cast("float64"),
        "tenure_days": asof_date.delta(expr._first_paid_ts.date(), unit="day").cast("float64"),
        "first_seen_days": asof_date.delta(first_seen.date(), unit="day").cast("float64"),
        "avg_spend": _safe_div(expr.total_spend, expr.orders),
        "refund_rate": _safe_div(expr._n_refunded, expr.orders + expr._n_refunded),
        "store_share": _safe_div(expr._n_offline, expr.orders),
    }
    if "_n_discounted" in expr.columns:
        muts["discount_share"] = _safe_div(expr._n_discounted, expr.orders)
    for ch in CHANNELS:
        muts[f"channel_share_{ch}"] = _safe_div(expr[f"_n_ch_{ch}"], expr.orders)
    if has_events:
        muts["cart_to_order_ratio"] = _safe_div(expr.orders, expr._n_cart)
    if has_touches:
        muts["campaign_touches"] = expr._n_treat
        muts["campaign_response_rate"] = _safe_div(expr._n_responded, expr._n_eligible)
        if has_events:
            muts["msg_open_rate"] = ibis.least(_safe_div(expr._n_open, expr._n_treat), 1.0)
            muts["msg_click_rate"] = ibis.least(_safe_div(expr._n_click, expr._n_treat), 1.0)
    expr = expr.mutate(**muts)
    used = {"events": has_events, "touches": has_touches, "identities": has_ids}
    if not numbered:
        return expr, None, used
    t, cpu = time.perf_counter(), time.process_time()
    result = con.to_pyarrow(expr)
    stages.seconds["final_join"] = (round(time.perf_counter() - t, 2), round(time.process_time() - cpu, 2))
    return result, names, used


def _to_frame(box: list[pa.Table], names: np.ndarray) -> pd.DataFrame:
    """Arrow result (integer ``person_id`` = pidx) to pandas, sorted by and labelled with the string person_id.

    pidx is the rank of ``person_id``, so sorting by it sorts by ``person_id``. Columns are converted and
    reordered one at a time (each its own block) while the Arrow columns are dropped, so the peak stays about
    one column above the result itself. ``box`` holds the only reference to the result and is emptied.
    """
    result = box.pop()
    pidx = result.column("person_id").to_numpy()
    order = np.argsort(pidx, kind="stable")
    in_order = len(order) < 2 or bool((order[1:] > order[:-1]).all())
    cols: dict[str, object] = {"person_id": pd.array(names[pidx if in_order else pidx[order]], dtype="str")}
    result = result.drop_columns(["person_id"])
    for name in list(result.column_names):
        col = result.column(name).to_pandas()
        result = result.drop_columns([name])
        cols[name] = col if in_order else col.take(order).reset_index(drop=True)
    return pd.DataFrame(cols, copy=False)


def _column_order(cols: list[str], config: FeatureConfig) -> list[str]:
    """The snapshot columns among ``cols``, in spec order (``features.spec.column_order``)."""
    present = set(cols)
    return [c for c in column_order(config) if c in present]


def build_features(
    data: Dataset,
    as_of,
    *,
    identity: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    backend=None,
    console: Console | None = None,
) -> pd.DataFrame:
    """Point-in-time features: one row per person with any order or event strictly before ``as_of``.

    Parameters
    ----------
    data
        Validated tables.
    as_of
        Cut-off date (``date`` or ``YYYY-MM-DD``); rows with a timestamp ``< as_of 00:00`` are used.
    identity
        ``key_to_person`` frame (``customer_key``, ``person_id``) from One-ID. When ``None``, One-ID runs if
        the data has identities; otherwise every ``customer_key`` is its own person. Keys the frame does not
        cover are their own person.
    config
        Windows, RFM binning, high/low rule and lifecycle thresholds.
    backend
        An Ibis backend; a fresh in-process DuckDB connection when ``None``.
    console
        Where the one-line note about missing optional tables goes (stderr by default).

    Returns
    -------
    pandas.DataFrame
        Sorted by ``person_id``; columns described in ``FEATURE_DOCS``.
    """
    as_of = as_date(as_of)
    config = config or FeatureConfig()
    if identity is None and data.identities is not None and len(data.identities):
        identity = resolve_identities(data, as_of=as_of).key_to_person
    con = backend if backend is not None else connect()
    stages = _Stages(con)
    try:
        result, names, used = _feature_table(con, data, as_of, identity, config, stages)
    finally:
        stages.release()
        if backend is None:
            con.disconnect()  # frees DuckDB's memory before the pandas steps
    box = [result]
    del result
    df = _to_frame(box, names)
    log.info("build_features as_of=%s: %d people; stage seconds (wall, cpu) %s", as_of, len(df), stages.seconds)
    missing = [name for name, ok in used.items() if not ok]
    if missing:
        what = {"events": "interaction features", "touches": "campaign features",
                "identities": "profile features (consent unknown: marketing_opt_out left empty)"}
        (console or Console(stderr=True)).print(
            f"[yellow]note:[/] no {', '.join(missing)} table(s): {', '.join(what[m] for m in missing)} left out"
        )
    return _finish(df, config)


def _finish(df: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """pandas step on the per-person table: scores, segments, lifecycle, dtypes, column order."""
    fill = {"n_categories": 0, "is_member": False}
    df = df.fillna({c: v for c, v in fill.items() if c in df})
    dtypes = column_dtypes(config)
    casts: dict[str, object] = {c: "int64" for c in df.columns if dtypes.get(c) == "int64"}
    # marketing_opt_out stays nullable: <NA> = no recorded consent (the brand's consent policy decides)
    casts.update({"marketing_opt_out": "boolean", "is_member": "float64"})
    df = df.astype({c: t for c, t in casts.items() if c in df})
    scores = rfm_scores(df, config).astype("float64")
    segment, segment_en = rfm_segments(scores, config)
    added = scores.assign(rfm_segment=segment, rfm_segment_en=segment_en,
                          lifecycle_stage=lifecycle_stage(df, config))
    if "marketing_opt_out" not in df:  # no identities: nobody's consent is recorded
        added["marketing_opt_out"] = pd.array([pd.NA] * len(df), dtype="boolean")
    df = pd.concat([df.drop(columns=[c for c in added.columns if c in df]), added.set_index(df.index)], axis=1)
    return df[_column_order(list(df.columns), config)]


# --- snapshots -----------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """A feature snapshot on disk: features, the key map it used and its manifest."""

    features: pd.DataFrame
    identity: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def as_of(self) -> date:
        return date.fromisoformat(self.manifest["as_of"])


def write_snapshot(features: pd.DataFrame, identity: pd.DataFrame, out_dir: Path, manifest: dict) -> Path:
    """Write ``features.parquet``, ``identity.parquet`` and ``manifest.json`` atomically.

    Files go to a temporary sibling directory first, which is renamed into place only when all three are
    written, so a failure leaves no partial snapshot (an existing snapshot at ``out_dir`` is replaced).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        features.to_parquet(tmp / "features.parquet", index=False)
        identity.to_parquet(tmp / "identity.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def build_snapshot(
    dataset: Dataset,
    as_of,
    *,
    out_dir: Path,
    console: Console | None = None,
    identity: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    backend=None,
    engine: str = "duckdb",
    spark=None,
) -> Snapshot:
    """Build features for ``as_of`` and write them as a snapshot directory (see ``write_snapshot``).

    ``engine="spark"`` runs every step on Spark (``features.spark.build_snapshot_spark``; ``spark`` is the
    SparkSession, a local one by default) and returns the written snapshot loaded back with ``load_snapshot``.
    """
    if engine == "spark":
        from features.spark import build_snapshot_spark

        written = build_snapshot_spark(dataset, as_of, out_dir=Path(out_dir), spark=spark, config=config,
                                       identity=identity, console=console)
        return load_snapshot(written.path)
    if engine != "duckdb":
        raise ValueError(f"engine must be 'duckdb' or 'spark', got {engine!r}")
    as_of = as_date(as_of)
    config = config or FeatureConfig()
    con = backend if backend is not None else connect()
    try:
        key_map = resolve_key_map(dataset, identity, as_of=as_of, backend=con)
        features = build_features(dataset, as_of, identity=key_map, config=config, backend=con, console=console)
    finally:
        if backend is None:
            con.disconnect()
    buyers = int((features["orders"] > 0).sum())
    manifest = {
        "as_of": as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(dataset.source) if dataset.source is not None else None,
        "inputs": dataset.fingerprint_dict(),
        "rows": {
            "people": len(features),
            "buyers": buyers,
            "customer_keys": len(key_map),
            "orders_before_as_of": int((dataset.orders["order_ts"] < pd.Timestamp(as_of)).sum()),
        },
        "features": list(features.columns),
        "model_columns": model_columns(features),
        "config": config.model_dump(mode="json"),
        "engine": f"ibis {ibis.__version__} on {con.name}",
        "pii_key_fingerprint": pii_key_fingerprint(required=False),
    }
    warn_if_pii_key_changed(Path(out_dir).parent, manifest["pii_key_fingerprint"], console=console)
    path = write_snapshot(features, key_map, Path(out_dir), manifest)
    return Snapshot(features=features, identity=key_map, manifest=manifest, path=path)


def load_snapshot(path: Path) -> Snapshot:
    """Read a snapshot directory written by ``write_snapshot`` or by Spark (Parquet parts in a directory)."""
    path = Path(path)
    missing = [f for f in SNAPSHOT_FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a feature snapshot: missing {', '.join(missing)}")
    features = pd.read_parquet(path / "features.parquet")
    if "marketing_opt_out" in features and str(features["marketing_opt_out"].dtype) != "boolean":
        features["marketing_opt_out"] = features["marketing_opt_out"].astype("boolean")  # Spark parts: no pandas dtype
    return Snapshot(
        features=features,
        identity=pd.read_parquet(path / "identity.parquet"),
        manifest=json.loads((path / "manifest.json").read_text()),
        path=path,
    )


def latest_snapshot(data_dir: Path) -> Snapshot:
    """The newest snapshot under ``DATA/features/``; ``features.pii.PIIKeyError`` if made under another PII key."""
    snapshot = load_snapshot(newest_snapshot_dir(data_dir)[1])
    check_pii_fingerprint(snapshot.manifest)
    return snapshot


def newest_snapshot_dir(data_dir: Path) -> tuple[date, Path]:
    """``(as_of, directory)`` of the newest snapshot under ``DATA/features/``, read from the manifests only.

    Raises
    ------
    FileNotFoundError
        No snapshot; the message names the command that builds one.
    """
    root = Path(data_dir) / "features"
    found: list[tuple[date, Path]] = []
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(".") and (d / "manifest.json").exists():
                try:
                    manifest = json.loads((d / "manifest.json").read_text())
                    found.append((date.fromisoformat(manifest["as_of"]), d))
                except (ValueError, KeyError):
                    continue
    if not found:
        raise FileNotFoundError(
            f"no feature snapshot under {root}; run `scrm features build --data {data_dir} --as-of DATE` first"
        )
    return max(found)


# --- summary -------------------------------------------------------------------------------------------------------


def summarize(features: pd.DataFrame, console: Console | None = None) -> None:
    """Print people, buyers, RFM segment counts (Chinese + English), lifecycle counts and headline numbers."""
    console = console or Console()
    n = len(features)
    buyers = features["orders"] > 0
    nb = int(buyers.sum())
    head = Table(title="Feature snapshot", show_header=False)
    head.add_row("people", f"{n:,}")
    head.add_row("buyers (≥1 paid order)", f"{nb:,} ({nb / max(n, 1):.1%})")
    if nb:
        b = features.loc[buyers]
        head.add_row("repeat buyers", f"{int((b['orders'] > 1).sum()):,} ({(b['orders'] > 1).mean():.1%})")
        head.add_row("median orders per buyer", f"{b['orders'].median():.0f}")
        head.add_row("median spend per buyer", f"{b['total_spend'].median():,.2f}")
        head.add_row("median days since last order", f"{b['recency_days'].median():.0f}")
        if "spend_365d" in b:
            head.add_row("spend in last 365 days", f"{b['spend_365d'].sum():,.2f}")
    if "marketing_opt_out" in features:
        opt = features["marketing_opt_out"]
        head.add_row("marketing opt-outs", f"{int(opt.eq(True).sum()):,}")
        head.add_row("consent unknown (no recorded choice)", f"{int(opt.isna().sum()):,}")
    console.print(head)

    seg = Table(title="RFM segments (buyers)")
    for col in ("segment", "English", "people", "share", "avg spend", "median recency (days)"):
        seg.add_column(col, justify="right" if col not in ("segment", "English") else "left")
    for name in SEGMENT_ORDER:
        sel = features["rfm_segment"] == name
        k = int(sel.sum())
        if not k:
            continue
        seg.add_row(name, SEGMENT_EN[name], f"{k:,}", f"{k / max(nb, 1):.1%}",
                    f"{features.loc[sel, 'total_spend'].mean():,.2f}",
                    f"{features.loc[sel, 'recency_days'].median():.0f}")
    if n - nb:
        seg.add_row("(未购买)", "(no paid order)", f"{n - nb:,}", "", "", "")
    console.print(seg)

    life = Table(title="Lifecycle stages (buyers)")
    life.add_column("stage")
    life.add_column("people", justify="right")
    life.add_column("share", justify="right")
    for stage in LIFECYCLE_STAGES:
        k = int((features["lifecycle_stage"] == stage).sum())
        life.add_row(stage, f"{k:,}", f"{k / max(nb, 1):.1%}")
    console.print(life)
