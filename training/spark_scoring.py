"""Batch scoring on Apache Spark (``scrm score --engine spark``): the same :func:`training.scoring.score`, run by
the executors over a feature snapshot read by Spark, written as partitioned Parquet.

One scoring code path: every Arrow batch of the snapshot becomes the pandas frame ``pd.read_parquet`` would give
(same dtypes, restored from the snapshot's own Parquet schema) and goes through ``score`` unchanged. The models
are pickled once on the driver, shipped as a Spark broadcast (a task closure under Spark Connect) and unpickled
once per executor Python worker (:func:`_worker_models`, cached across tasks and batches).

``score`` has two population-level steps. The first is the high-value cut of the action segments (the ``value_quantile``
quantile of ``clv_mean`` over everyone scored, :func:`training.decisions.tiers.clv_value_cut`). A batch sees only
its own rows, so the Spark job runs in two passes and keeps the cut exact:

1. every batch is scored (model outputs, reasons) and written to a staging directory next to the output;
2. the population figures are computed over the whole staging set (:func:`population_figures`, two scans of it):
   the cut (numpy's ``linear`` quantile from the two exact order statistics around it, found with an
   approximate-quantile bracket and a small collect), the counts, and the tier forecast's pooled spend log-sd
   (:class:`training.decisions.tier_forecast.ZeroInflatedSpend`), the second population-level figure, summed over
   the staged batches (``spend_sigma_parts``) in the same job as the bracket;
3. every batch is re-tiered with :func:`~training.decisions.tiers.assign_tiers` at that cut, its move
   probabilities recomputed with that σ, and written out.

The driver receives the schema sample (:func:`snapshot_head`), one row of sums and the values inside the bracket.

Everything else ``score`` computes is row by row. One caveat: with a CLV model of the BTYD or blend family, the
``clv_p10`` / ``clv_p90`` interval is a posterior simulation seeded per call, so its Monte-Carlo draws depend
on which people share a batch; those two columns then agree with ``scrm score`` in distribution only (the
LightGBM family's quantile models, the family the simulator's champions choose, are exact).
"""

from __future__ import annotations

import math
import pickle
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from features.errors import InputError
from training.scoring import Models, label_scores, score

#: Relative rank error of the approximate-quantile bracket (the exact values are collected from inside it).
BRACKET_ERROR = 1e-4
#: Rows of the snapshot scored on the driver to learn the output schema.
SCHEMA_SAMPLE_ROWS = 200
#: Read buffer per column when the driver reads those rows (:func:`snapshot_head`).
READ_BUFFER_BYTES = 1 << 20

_MODELS: dict[str, Any] = {}  # per Python worker: unpickled models by token


def spark_session(master: str | None = None, *, app_name: str = "scrm-score"):
    """The SparkSession of a scoring run (:func:`features.spark.spark_session`: ``--spark-master``, else
    ``SPARK_REMOTE``, else what ``spark-submit`` set, else ``local[*]``; UTC session time zone). A local session's
    Python workers run this interpreter unless ``PYSPARK_PYTHON`` says otherwise
    (:func:`features.spark.use_local_python`); a cluster's executors need the project installed:
    docs/scoring-spark.md."""
    from features.spark import spark_session as session

    return session(master, app_name=app_name)


@dataclass(frozen=True)
class SparkScoreResult:
    out: Path
    people: int
    scored: int
    clv_cut: float
    # wall seconds: score pass, population figures (``clv_cut``: the exact cut, σ and the counts), re-tier pass
    seconds: dict[str, float] = field(default_factory=dict)


def features_path(snapshot_dir: Path) -> Path:
    """The features of a snapshot directory (``features.parquet``: one file, or a directory of part files)."""
    path = Path(snapshot_dir) / "features.parquet"
    if not path.exists():
        raise InputError(f"{snapshot_dir}: not a feature snapshot (no features.parquet); build it with "
                         f"`scrm features build --data DATA --as-of DATE`", file=snapshot_dir)
    return path


def snapshot_head(path: Path, rows: int) -> pa.Table:
    """The first ``rows`` rows of the snapshot's features: the rows ``pyarrow.dataset``'s ``head`` gives (the files
    in the dataset's order), read page by page through a small buffer.

    ``Dataset.head`` decodes whole row groups, with read-ahead, and its rows are slices that keep them alive: a
    snapshot written by pandas has row groups of 1M rows, so a 5M-people snapshot put GBs on the driver for a
    200-row schema sample (docs/benchmarks.md, "Scoring on Spark").
    """
    import pyarrow.parquet as pq

    dataset = pds.dataset(str(path), format="parquet")
    parts, left = [], rows
    for file in dataset.files:
        with pq.ParquetFile(file, buffer_size=READ_BUFFER_BYTES, pre_buffer=False) as reader:
            for batch in reader.iter_batches(batch_size=left, use_threads=False):
                part = pa.Table.from_batches([batch.slice(0, left)])
                parts.append(part.select(dataset.schema.names).cast(dataset.schema))
                left -= part.num_rows
                if left <= 0:
                    return pa.concat_tables(parts)
    return pa.concat_tables(parts) if parts else dataset.schema.empty_table()


def snapshot_schema(path: Path) -> pa.Schema:
    """The Arrow schema of the snapshot's features, with the pandas metadata its writer stored (if any)."""
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*.parquet")) if p.is_file())
    if not files:
        raise InputError(f"{path}: no Parquet files", file=path)
    import pyarrow.parquet as pq

    return pq.read_schema(files[0])


def to_pandas(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pd.DataFrame:
    """Arrow rows of the snapshot as the pandas frame ``pd.read_parquet`` gives for them."""
    table = (batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])).select(schema.names)
    bare = pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])
    return table.cast(bare).replace_schema_metadata(schema.metadata).to_pandas()


def output_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of a scores frame, in types Spark reads and writes (all-null columns are text)."""
    fields = []
    for f in pa.Schema.from_pandas(frame, preserve_index=False):
        t = f.type
        if pa.types.is_null(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_timestamp(t):
            t = pa.timestamp("us", tz=t.tz)
        fields.append(pa.field(f.name, t, True))
    return pa.schema(fields)


def to_batch(frame: pd.DataFrame, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def _worker_models(token: str, source) -> Models:
    """The models on this Python worker, unpickled once (``source``: a Broadcast of the pickle, or its bytes)."""
    models = _MODELS.get(token)
    if models is None:
        payload = source if isinstance(source, bytes) else source.value
        models = _MODELS[token] = pickle.loads(payload)
    return models


def _ship(spark, models: Models) -> tuple[str, Any]:
    payload = pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL)
    token = uuid.uuid4().hex
    try:
        return token, spark.sparkContext.broadcast(payload)
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext: the closure carries the bytes
        return token, payload


def score_snapshot(spark, snapshot_dir: Path, models: Models, out: Path, *, as_of: date, tier_rules,
                   with_reasons: bool = True, with_intervals: bool = True) -> SparkScoreResult:
    """Score a feature snapshot on Spark into ``out`` (a Parquet directory), exactly as ``scrm score`` does.

    The columns are those of ``scrm score``: :func:`training.scoring.score`'s, then ``feature_as_of`` and the
    model versions (:func:`training.scoring.label_scores`). ``out`` is replaced when it exists.
    """
    from training.decisions.tier_forecast import PREDICTED_TIER_COLUMNS, predict_tiers
    from training.decisions.tiers import TIER_OUTPUT_COLUMNS, assign_tiers

    path = features_path(snapshot_dir)
    in_schema = snapshot_schema(path)
    options = dict(as_of=as_of, tier_rules=tier_rules, with_reasons=with_reasons, with_intervals=with_intervals)
    sample = snapshot_head(path, SCHEMA_SAMPLE_ROWS)
    sample_scores = label_scores(score(to_pandas(sample, in_schema), models, **options), as_of, models)
    out_schema = output_schema(sample_scores)
    tier_cols = [c for c in TIER_OUTPUT_COLUMNS if c != "person_id"]
    token, source = _ship(spark, models)

    def score_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = _worker_models(token, source)
        for batch in batches:
            if batch.num_rows:
                scores = score(to_pandas(batch, in_schema), worker, **options)
                yield to_batch(label_scores(scores, as_of, worker), out_schema)

    def retier(cut: float, sigma: float):
        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                if batch.num_rows:
                    frame = batch.to_pandas()
                    tiers = assign_tiers(frame.drop(columns=tier_cols), tier_rules, clv_cut=cut)
                    frame[tier_cols] = tiers[tier_cols].to_numpy()
                    if "p_tier_up" in frame.columns:  # the tier forecast's pooled spend log-sd, over everyone
                        predicted = predict_tiers(frame, tier_rules, spend_sigma=sigma)
                        for col in PREDICTED_TIER_COLUMNS:
                            frame[col] = predicted[col].to_numpy()
                    yield to_batch(frame, out_schema)
        return run

    from pyspark.sql.pandas.types import from_arrow_schema

    spark_schema = from_arrow_schema(out_schema, prefer_timestamp_ntz=True)
    out = Path(out)
    staging = out.parent / f".{out.name}.staging-{token[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    try:
        features = spark.read.parquet(str(path))
        slots = _parallelism(spark)
        if slots and features.rdd.getNumPartitions() < slots:  # a one-file snapshot is one or two splits
            features = features.repartition(slots)
        features.mapInArrow(score_batches, spark_schema).write.mode("overwrite").parquet(str(staging))
        seconds["score_pass"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        staged = spark.read.parquet(str(staging))
        figures = population_figures(staged, tier_rules.action_segments.value_quantile)
        seconds["clv_cut"], t = round(time.perf_counter() - t, 1), time.perf_counter()
        cut, sigma = figures.clv_cut, figures.spend_sigma
        staged.mapInArrow(retier(cut, sigma), spark_schema).write.mode("overwrite").parquet(str(out))
        seconds["retier_pass"] = round(time.perf_counter() - t, 1)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SparkScoreResult(out=out, people=figures.people, scored=figures.scored, clv_cut=cut, seconds=seconds)


def _parallelism(spark) -> int | None:
    """Task slots of the session (``defaultParallelism``); None under Spark Connect (no SparkContext)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect
        return None


# --- the population-level figures of the staged scores ---------------------------------------------------------------

#: Half-width, in probability, of the approximate-quantile bracket that :func:`population_figures` asks for before
#: the number of scored people is known: it holds the two ranks numpy reads whenever that number is at least
#: ``2 / (BRACKET_MARGIN - BRACKET_ERROR)`` (5,000); about ``2 * (BRACKET_MARGIN + BRACKET_ERROR) * n`` values are
#: collected.
BRACKET_MARGIN = 5e-4
_FIGURES_SCHEMA = pa.schema([("v", pa.float64()), ("people", pa.int64()), ("scored", pa.int64()),
                             ("total", pa.float64()), ("count", pa.int64())])


@dataclass(frozen=True)
class PopulationFigures:
    """What ``score`` computes over everyone, from the staged scores: the rows, the scored (eligible) rows, the
    high-value CLV cut (``numpy.quantile`` of their ``clv_mean``) and the tier forecast's pooled spend log-sd."""

    people: int
    scored: int
    clv_cut: float
    spend_sigma: float


def _figure_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Per staged batch: its scored people's ``clv_mean`` (rows of ``v``), then one row with its row count, scored
    count and the sum and count of the per-person spend log-sds (``spend_sigma_parts``)."""
    from training.decisions.tier_forecast import TIER_FORECAST_READS, spend_sigma_parts

    for batch in batches:
        if batch.num_rows:
            values = pc.filter(batch.column("clv_mean"), batch.column("eligible")).cast(pa.float64())  # null: out
            n = len(values)
            reads = [c for c in TIER_FORECAST_READS if c in batch.schema.names]  # not the reasons' text
            total, count = spend_sigma_parts(batch.select(reads).to_pandas())
            yield pa.RecordBatch.from_arrays(
                [values, pa.nulls(n, pa.int64()), pa.nulls(n, pa.int64()), pa.nulls(n, pa.float64()),
                 pa.nulls(n, pa.int64())], schema=_FIGURES_SCHEMA)
            yield pa.RecordBatch.from_pydict({"v": [None], "people": [batch.num_rows], "scored": [n],
                                              "total": [total], "count": [count]}, schema=_FIGURES_SCHEMA)


def population_figures(staged, quantile: float) -> PopulationFigures:
    """The :class:`PopulationFigures` of the staged scores, in two scans of them.

    One job reads every staged batch once (:func:`_figure_rows`) and aggregates the counts, the log-sd sums and an
    approximate-quantile bracket of the scored ``clv_mean`` (``percentile_approx`` at ``quantile ±
    BRACKET_MARGIN``); a second, reading ``eligible`` and ``clv_mean`` only, finds the exact order statistics
    inside the bracket (:func:`exact_quantile` given that bracket and count). σ is
    :func:`~training.decisions.tier_forecast.pooled_sigma` of the summed per-batch parts.
    """
    from pyspark.sql import functions as F

    from training.decisions.tier_forecast import pooled_sigma

    probs = [max(0.0, quantile - BRACKET_MARGIN), min(1.0, quantile + BRACKET_MARGIN)]
    row = staged.mapInArrow(_figure_rows, "v double, people long, scored long, total double, count long").agg(
        F.sum("people").alias("people"), F.sum("scored").alias("scored"), F.sum("total").alias("total"),
        F.sum("count").alias("count"),
        F.percentile_approx("v", probs, round(1 / BRACKET_ERROR)).alias("bracket")).first()
    people, n = int(row["people"] or 0), int(row["scored"] or 0)
    sigma = pooled_sigma(float(row["total"] or 0.0), int(row["count"] or 0))
    eligible = staged.filter(F.col("eligible")).select(F.col("clv_mean").cast("double").alias("v"))
    bracket = tuple(row["bracket"]) if row["bracket"] is not None else (None, None)
    return PopulationFigures(people, n, exact_quantile(eligible, "v", quantile, n=n, bracket=bracket), sigma)


# --- exact quantiles over a Spark column ---------------------------------------------------------------------------


def numpy_linear_quantile(n: int, q: float, value_at) -> float:
    """``numpy.quantile(values, q)`` (method ``linear``) of ``n`` values, from ``value_at(rank)`` (the value of
    0-based ascending rank ``rank``), with numpy's own arithmetic (virtual index, gamma, two-sided lerp), so
    the result is the same float. ``inf`` when ``n == 0`` (as :func:`clv_value_cut`)."""
    if n == 0:
        return float("inf")
    virtual = (n - 1) * q  # numpy's virtual index of the linear method
    if virtual >= n - 1:
        return float(value_at(n - 1))
    if virtual < 0:
        return float(value_at(0))
    below = math.floor(virtual)
    gamma = virtual - below
    a, b = float(value_at(below)), float(value_at(below + 1))
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def quantile_ranks(n: int, q: float) -> list[int]:
    """The 0-based ranks :func:`numpy_linear_quantile` reads."""
    seen: list[int] = []
    numpy_linear_quantile(n, q, lambda r: seen.append(r) or 0.0)
    return seen


def order_statistics(df, column: str, ranks: list[int], n: int, *, rel_error: float = BRACKET_ERROR,
                     bracket: tuple[float | None, float | None] | None = None) -> dict[int, float]:
    """Exact values of the given 0-based ascending ranks of a non-null numeric column of ``n`` rows.

    An approximate-quantile pass brackets the ranks (Greenwald–Khanna: rank error at most ``rel_error * n``,
    with a margin), then one job counts the rows below the bracket and collects the values inside it (about
    ``4 * rel_error * n`` of them), sorted on the driver. ``bracket``: bounds already found (``None``: that side
    open), no approximate pass. A bracket that misses (never, by the guarantee) is widened to the column's end,
    so the answer is exact either way.
    """
    from pyspark.sql import functions as F

    if not ranks:
        return {}
    lo_rank, hi_rank = min(ranks), max(ranks)
    if bracket is None:
        margin = 2 * rel_error + 2 / n
        probs = [max(0.0, lo_rank / n - margin), min(1.0, (hi_rank + 1) / n + margin)]
        lo, hi = df.approxQuantile(column, probs, rel_error)
    else:
        lo, hi = bracket
    col = F.col(column)
    for _ in range(3):
        inside = (col >= lo if lo is not None else F.lit(True)) & (col <= hi if hi is not None else F.lit(True))
        found = df.agg((F.count(F.when(col < lo, 1)) if lo is not None else F.lit(0)).alias("below"),
                       F.collect_list(F.when(inside, col)).alias("inside")).first()
        below, values = int(found["below"]), sorted(float(v) for v in found["inside"])
        if below <= lo_rank and below + len(values) > hi_rank:
            return {r: values[r - below] for r in ranks}
        if below > lo_rank:
            lo = None
        if below + len(values) <= hi_rank:
            hi = None
    raise RuntimeError(f"order statistics of {column}: ranks {ranks} not found among {n} rows")


def exact_quantile(df, column: str, q: float, *, n: int | None = None,
                   bracket: tuple[float | None, float | None] | None = None) -> float:
    """``numpy.quantile`` (``linear``) of a non-null numeric Spark column, exactly (see :func:`order_statistics`).

    ``n``: the column's row count when already known (else counted); ``bracket``: bounds around the quantile
    already found (:func:`order_statistics`; else an approximate-quantile pass finds them).
    """
    n = df.count() if n is None else n
    if n == 0:
        return float("inf")
    values = order_statistics(df, column, quantile_ranks(n, q), n, bracket=bracket)
    return numpy_linear_quantile(n, q, values.__getitem__)
