"""`scrm train`, `promote`, `rollback`, `score`, `backtest` and `lookalike`: models from snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from features.errors import InputError
from training.cli.base import (
    AsOf,
    BrandOpt,
    Cutoffs,
    DataDir,
    FeatureConfigOpt,
    OptAsOf,
    SampleSize,
    Seed,
    Step,
    TiersOpt,
    _resolve_as_of,
    _Typer,
    app,
    brand_of,
    console,
    exit_2_on,
    load_or_exit,
    parse_date,
)

train_app = _Typer(
    help=(
        "Train churn and CLV models on rolling cutoffs, validate on the latest complete window, log everything "
        "to MLflow and register a new version. The `champion` alias moves only when the new version beats it on "
        "the validation metric (churn: AUC, CLV: normalised Gini); otherwise it becomes `challenger`."
    ),
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


def _steps(total: int, label: str):
    """A rich progress bar over `total` feature snapshots; returns (progress, advance-callback)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task(label, total=total)
    return progress, lambda: progress.advance(task)


def _print_train(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.registered_name or result.name} (run {result.run_id[:8]})")
    table.add_column("validation metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)
    d = result.decision
    if d is not None:
        champion = f"{d.champion_value:.4f}" if d.champion_value is not None else "—"
        console.print(f"{result.registered_name or result.name} v{result.version}: [bold]{d.decision}[/] "
                      f"({d.metric} {d.value:.4f} vs champion {champion}; {d.reason})")


def print_eligibility(table) -> None:
    """The one-table breakdown of who is scored and who is not, and why."""
    from rich.table import Table

    out = Table(title="who is scored")
    for col, justify in (("status", "left"), ("reason", "left"), ("people", "right"), ("share", "right")):
        out.add_column(col, justify=justify)
    for row in table.itertuples(index=False):
        out.add_row(row.status, row.reason or "—", f"{row.people:,}", f"{row.share:.1%}")
    Console().print(out)


ChurnHorizon = Annotated[int, typer.Option(min=7, help="Churn = no paid order within this many days.")]
ClvHorizon = Annotated[int, typer.Option(min=7, help="CLV value window in days.")]


def _train(kind: str, data: Path, as_of: str | None, horizon: int | None, cutoffs: int, step_days: int,
           random_state: int, register: bool, feature_config: Path | None = None,
           brand: str | None = None, *, clv_horizon: int = 365, sample_size: int | None = None) -> None:
    from features.config import FeatureConfig
    from training import train as T
    from training.frames import FeatureCache, default_sample_size

    with exit_2_on(ValueError):
        config = FeatureConfig.from_file(feature_config) if feature_config is not None else None
    brand = brand_of(data, brand)
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    sample = default_sample_size() if sample_size is None else sample_size
    n_frames = {"churn": 2 * cutoffs + 1, "clv": 2 * cutoffs + 1, "all": 4 * cutoffs + 2}[kind]
    progress, advance = _steps(n_frames, f"training {kind} as of {cutoff}")
    with exit_2_on(ValueError), progress:
        common = dict(n_cutoffs=cutoffs, step_days=step_days, random_state=random_state, register=register,
                      progress=advance, brand=brand,
                      cache=FeatureCache(dataset, random_state=random_state, config=config,
                                         sample_size=sample or None))
        if kind == "all":
            results = T.train_all(dataset, cutoff, churn_horizon=horizon or 90, clv_horizon=clv_horizon, **common)
        elif kind == "churn":
            results = {"churn": T.train_churn(dataset, cutoff, horizon_days=horizon or 90, **common)}
        else:
            results = {"clv": T.train_clv(dataset, cutoff, horizon_days=horizon or 365, **common)}
    for result in results.values():
        for note in result.notes:
            console.print(note)
    for result in results.values():
        _print_train(result)
    first = next(iter(results.values()))
    if first.eligibility is not None:
        print_eligibility(first.eligibility)


@train_app.command("all")
def train_all_cmd(data: DataDir, as_of: OptAsOf = None, churn_horizon: ChurnHorizon = 90,
                  clv_horizon: ClvHorizon = 365, cutoffs: Cutoffs = 8, step_days: Step = 30,
                  random_state: Seed = 0,
                  register: Annotated[bool, typer.Option(help="Register versions and run the promotion gate.")] = True,
                  brand: BrandOpt = None, feature_config: FeatureConfigOpt = None,
                  sample_size: SampleSize = None) -> None:
    """Train churn (90-day horizon) and CLV (365-day horizon) on shared feature snapshots, then gate each.

    Registered as <brand>.churn_<H>d and <brand>.clv_<H>d (90 and 365 by default); each gate compares only with
    that model's champion. With less history than a horizon needs (trees: 2 × horizon + 60 days; BTYD alone:
    horizon + 60), CLV is fitted on a shorter window and extrapolated with the BTYD model (registered under the
    requested horizon), or the longest supported horizon is used; the command says which.
    """
    _train("all", data, as_of, churn_horizon, cutoffs, step_days, random_state, register, feature_config, brand,
           clv_horizon=clv_horizon, sample_size=sample_size)


@train_app.command("churn")
def train_churn_cmd(data: DataDir, as_of: OptAsOf = None,
                    horizon: Annotated[int, typer.Option(min=7, help="Churn = no paid order within this many days.")] = 90,
                    cutoffs: Cutoffs = 8, step_days: Step = 30, random_state: Seed = 0,
                    register: Annotated[bool, typer.Option(help="Register and gate.")] = True,
                    brand: BrandOpt = None, feature_config: FeatureConfigOpt = None,
                    sample_size: SampleSize = None) -> None:
    """Train the churn model only (registered as <brand>.churn_<horizon>d)."""
    _train("churn", data, as_of, horizon, cutoffs, step_days, random_state, register, feature_config, brand,
           sample_size=sample_size)


@train_app.command("clv")
def train_clv_cmd(data: DataDir, as_of: OptAsOf = None,
                  horizon: Annotated[int, typer.Option(min=7, help="Value window in days.")] = 365,
                  cutoffs: Cutoffs = 8, step_days: Step = 30, random_state: Seed = 0,
                  register: Annotated[bool, typer.Option(help="Register and gate.")] = True,
                  brand: BrandOpt = None, feature_config: FeatureConfigOpt = None,
                  sample_size: SampleSize = None) -> None:
    """Train the CLV model only (registered as <brand>.clv_<horizon>d)."""
    _train("clv", data, as_of, horizon, cutoffs, step_days, random_state, register, feature_config, brand,
           sample_size=sample_size)


@train_app.command("uplift")
def train_uplift_cmd(data: DataDir, as_of: OptAsOf = None, random_state: Seed = 0,
                     n_boot: Annotated[int, typer.Option(
                         "--n-boot", min=0, help="Bootstrap refits kept for the interval of the expected "
                                                 "incremental revenue (/target incremental_margin).")] = 20,
                     register: Annotated[bool, typer.Option(help="Register and gate.")] = True,
                     brand: BrandOpt = None) -> None:
    """Train the campaign uplift model (registered as <brand>.uplift_14d; docs/decisions.md).

    Learns from every campaign of campaign_touches with a treatment and a control group whose 14-day outcome
    window ended by --as-of (features from the snapshot before each send); the model averages a T- and an
    X-learner, and reports each one's Qini on the latest campaign when fitted on the earlier ones. The champion
    alias moves when the validation Qini beats the champion's. Data without
    campaigns with control groups exits with 2.
    """
    from rich.table import Table

    from training.uplift import LEARNER_NAMES
    from training.uplift_model import train_uplift

    brand = brand_of(data, brand)
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    with console.status(f"fitting the uplift model as of {cutoff}"):
        result = train_uplift(dataset, cutoff, random_state=random_state, n_boot=n_boot, register=register,
                              brand=brand)
    info = result.info
    table = Table(title=f"{result.name} (run {result.run_id[:8]})", show_header=False)
    for label, value in (("learner", info["learner"]), ("campaigns", ", ".join(info["campaigns"])),
                         ("rows (treated / control)", f"{info['n_rows']:,} ({info['n_treated']:,} / "
                                                      f"{info['n_control']:,})"),
                         ("engaged (share of the treated)",
                          "— (no events name a campaign)" if info["engaged_share"] is None else f"{info['engaged_share']:.1%}"),
                         ("validation campaign", info["validation_campaign"] or "—"),
                         *((f"validation Qini {LEARNER_NAMES.get(k, k)}", f"{v:+.4f}")
                           for k, v in info["validation_qini"].items()),
                         ("revenue per conversion", f"{info['revenue_per_conversion']:,.2f}")):
        table.add_row(label, str(value))
    Console().print(table)
    d = result.decision
    if d is not None:
        console.print(f"{result.name} v{result.version}: [bold]{d.decision}[/] ({d.reason})")


ModelName = Annotated[str, typer.Argument(
    help="Registered model: its full name (acme.churn_90d) or churn / clv with --brand or --data.")]
OptData = Annotated[Path | None, typer.Option("--data", exists=True, file_okay=False,
                                              help="Data directory whose brand the model must belong to.")]
OptHorizon = Annotated[int | None, typer.Option(
    "--horizon", min=1, help="Horizon in days the model must have (default with churn/clv: 90 / 365).")]


def _model_name(model: str, data: Path | None, brand: str | None, horizon: int | None) -> tuple[str, str | None]:
    from training import registry

    brand = brand_of(data, brand)
    return registry.resolve_name(model, brand=brand, horizon_days=horizon), brand


@app.command()
@exit_2_on(LookupError)
def promote(model: ModelName, version: Annotated[int, typer.Argument(help="Version to make champion.")],
            data: OptData = None, brand: BrandOpt = None, horizon: OptHorizon = None) -> None:
    """Make a registered version the `champion` by hand (the previous champion is remembered for rollback).

    A model or version of another brand (--brand / --data) or horizon (--horizon) than asked is refused (exit 2).
    """
    from training import registry

    name, brand = _model_name(model, data, brand, horizon)
    change = registry.promote(name, version, brand=brand, horizon_days=horizon)
    console.print(f"{name}: champion v{change.previous_version} → v{change.version} ({change.action} by {change.by})")


@app.command()
@exit_2_on(LookupError)
def rollback(model: ModelName, data: OptData = None, brand: BrandOpt = None, horizon: OptHorizon = None) -> None:
    """Move `champion` back to the version that held it before."""
    from training import registry

    name, _ = _model_name(model, data, brand, horizon)
    change = registry.rollback(name)
    console.print(f"{name}: champion v{change.previous_version} → v{change.version} ({change.action} by {change.by})")


@app.command("score")
def score_cmd(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="scores.parquet (or .csv).")],
    as_of: OptAsOf = None,
    reasons: Annotated[bool, typer.Option(
        help="Add the top 3 churn reasons per person (reason_<k>_feature/_value/_contribution, k = 1..3): "
             "TreeSHAP, about 0.5 ms of CPU per person.")] = True,
    jobs: Annotated[int, typer.Option(min=1, help="Threads of the reason pass.")] = 2,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
    tiers: TiersOpt = None,
    brand: BrandOpt = None,
    churn_horizon: Annotated[int, typer.Option(min=1, help="Horizon (days) of the churn model to use.")] = 90,
    clv_horizon: Annotated[int, typer.Option(min=1, help="Horizon (days) of the CLV model to use.")] = 365,
    engine: Annotated[str, typer.Option(
        help="duckdb: build the features and score in this process. spark: read a feature snapshot with Spark "
             "and score it on the executors (same scoring function), writing --out as a Parquet directory.")
    ] = "duckdb",
    snapshot: Annotated[Path | None, typer.Option(
        help="--engine spark: the snapshot to score (default: DATA/features/as_of=DATE/, the newest one "
             "without --as-of).")] = None,
    spark_master: Annotated[str | None, typer.Option(
        "--spark-master", help="--engine spark: Spark master URL (default: local[*]; SPARK_REMOTE for Spark "
                               "Connect; none under spark-submit).")] = None,
) -> None:
    """Score everyone with the brand's champion models — the same function the HTTP service calls.

    One row per person: churn probability, CLV (mean, p10, p90), expected orders, P(alive), RFM scores and
    segment, lifecycle stage, member tier and action segment, and the horizons they are about; people who
    cannot be scored carry a reason; the top 3 churn reasons (the ones the service serves by lookup), unless
    --no-reasons. Models of another brand or trained after --as-of are refused (exit 2). With --engine spark
    the snapshot is scored by Spark into a Parquet directory with the same columns and values.
    """
    from functools import partial

    from features.identity import resolve_identities
    from features.pipeline import build_features
    from training.decisions.tiers import resolve_tier_rules
    from training.exports import write_csv
    from training.scoring import eligibility_table, label_scores, load_champions, score

    if engine not in ("duckdb", "spark"):
        raise InputError(f"--engine must be duckdb or spark, got {engine!r}", field="--engine")
    rules = resolve_tier_rules(tiers, data_dir=data)
    brand = brand_of(data, brand)
    load = partial(load_champions, alias, brand=brand, churn_horizon=churn_horizon, clv_horizon=clv_horizon,
                   data_hint=str(data))
    if engine == "spark":
        _score_spark(data, out, as_of, snapshot, load, rules, reasons=reasons, master=spark_master)
        return
    if snapshot is not None or spark_master is not None:
        raise InputError("--snapshot and --spark-master go with --engine spark", field="--engine")
    models = None
    if as_of is not None:  # refuse before reading the data
        with exit_2_on(LookupError):
            models = load(as_of=parse_date(as_of))
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    if models is None:
        with exit_2_on(LookupError):
            models = load(as_of=cutoff)
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=resolve_identities(dataset, as_of=cutoff).key_to_person,
                               config=models.features_config())
    with console.status(f"scoring {len(feats):,} people"):
        scores = score(feats, models, as_of=cutoff, with_reasons=reasons, n_jobs=jobs, tier_rules=rules)
    scores = label_scores(scores, cutoff, models)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        write_csv(scores, out)
    else:
        scores.to_parquet(out, index=False)
    eligible = scores[scores["eligible"]]
    console.print(
        f"scored {len(eligible):,} of {len(scores):,} people with {models.churn_name} v{models.churn_version} "
        f"({models.churn.horizon_days}-day horizon), {models.clv_name} v{models.clv_version} "
        f"({models.clv.horizon_days}-day horizon): mean churn probability {eligible['churn_probability'].mean():.3f}, "
        f"total expected value {eligible['clv_mean'].sum():,.0f}"
    )
    print_eligibility(eligibility_table(scores["ineligible_reason"].where(~scores["eligible"])))
    Console().print(scores["tier"].value_counts().rename("people").to_frame().to_string())
    console.print(f"wrote {out}")


def _score_spark(data: Path, out: Path, as_of: str | None, snapshot: Path | None, load, rules, *, reasons: bool,
                 master: str | None) -> None:
    """``scrm score --engine spark``: the snapshot's as_of (from its manifest; --as-of must agree), the champions
    checked against it, then :func:`training.spark_scoring.score_snapshot`."""
    import json

    from features.pii import check_pii_fingerprint
    from features.pipeline import newest_snapshot_dir
    from training import spark_scoring

    if out.suffix == ".csv":
        raise InputError(f"{out}: --engine spark writes a Parquet directory, not CSV", field="--out")
    wanted = parse_date(as_of) if as_of is not None else None
    if snapshot is None:
        if wanted is not None:
            snapshot = data / "features" / f"as_of={wanted.isoformat()}"
        else:
            with exit_2_on(FileNotFoundError):
                snapshot = newest_snapshot_dir(data)[1]
    manifest_file = Path(snapshot) / "manifest.json"
    if not manifest_file.is_file():
        raise InputError(f"{snapshot}: no feature snapshot (no manifest.json); build it with "
                         f"`scrm features build --data {data} --as-of DATE`", file=snapshot, field="--snapshot")
    manifest = json.loads(manifest_file.read_text())
    cutoff = parse_date(manifest["as_of"])
    if wanted is not None and wanted != cutoff:
        raise InputError(f"{snapshot}: snapshot as of {cutoff}, not --as-of {wanted}", file=snapshot,
                         field="--as-of")
    check_pii_fingerprint(manifest)
    with exit_2_on(LookupError):
        models = load(as_of=cutoff)
    models.check_snapshot(manifest)
    spark = spark_scoring.spark_session(master)
    with console.status(f"scoring {snapshot} on Spark ({spark.version})"):
        result = spark_scoring.score_snapshot(spark, Path(snapshot), models, out, as_of=cutoff, tier_rules=rules,
                                              with_reasons=reasons)
    console.print(f"scored {result.scored:,} of {result.people:,} people as of {cutoff} with {models.churn_name} "
                  f"v{models.churn_version}, {models.clv_name} v{models.clv_version} on Spark "
                  f"(high-value CLV cut {result.clv_cut:,.2f})")
    console.print(f"wrote {out}")


@app.command()
def backtest(
    data: DataDir,
    as_of: AsOf,
    horizon: Annotated[int, typer.Option(min=7, help="Evaluation window [as_of, as_of + horizon) in days.")] = 90,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
    churn_horizon: Annotated[int | None, typer.Option(min=7, help="Churn horizon (default: --horizon).")] = None,
    clv_horizon: Annotated[int | None, typer.Option(min=7, help="CLV horizon (default: --horizon).")] = None,
    cutoffs: Cutoffs = 8,
    step_days: Step = 30,
    random_state: Seed = 0,
    brand: BrandOpt = None,
) -> None:
    """Train churn and CLV with data before --as-of only, then judge them on what happened after it.

    Prints and logs (experiment `backtest`) AUC, PR-AUC, Brier, lift and calibration error for churn, and Gini,
    Spearman, total error, decile MAPE and interval coverage for CLV — each next to simple baselines (BTYD,
    recency, last period's spend) and, on simulated data, to the oracle that knows the truth. A `tiers` block judges
    the predicted tier-move probabilities against the tiers realised at the end of the CLV horizon (Brier, ECE,
    reliability, predicted and realised movers). When the data has
    campaign touches with control groups, an `uplift` block judges an uplift model trained on earlier campaigns
    on the latest campaign (Qini, AUUC, extra buyers in the top 30%) next to targeting by churn risk, by CLV and
    at random.
    """
    import json

    from training.backtest import run_backtest

    dataset = load_or_exit(data)
    cutoff = parse_date(as_of)
    progress, advance = _steps(4 * cutoffs + 2, f"backtest as of {cutoff}")
    with exit_2_on(ValueError), progress:
        result = run_backtest(dataset, cutoff, horizon, churn_horizon=churn_horizon, clv_horizon=clv_horizon,
                              json_path=json_path, random_state=random_state, n_cutoffs=cutoffs,
                              step_days=step_days, progress=advance, brand=brand_of(data, brand))
    for kind in ("churn", "clv"):
        hz, lay = result["horizons"][kind], result["layout"][kind]
        console.print(f"{kind}: {hz['horizon_days']}-day horizon, {hz['mode']}"
                      + (f" — {hz['reason']}" if hz["mode"] != "direct" else "")
                      + f"; layout {lay['layout']}: {lay['reason']}")
    Console().print_json(json.dumps({k: result[k] for k in ("churn", "clv", "oracle") if k in result}, default=str))
    if "tiers" in result:  # reliability tables: in the --json file and the MLflow artifact
        tiers = result["tiers"]
        Console().print_json(json.dumps({"tiers": {**tiers, "moves": {
            m: {k: v for k, v in figures.items() if k != "reliability"} for m, figures in tiers["moves"].items()}}}))
    if "uplift" in result:
        Console().print_json(json.dumps({"uplift": {k: v for k, v in result["uplift"].items()
                                                    if k not in ("training_campaigns",)}}, default=str))
    console.print(f"mlflow run {result['mlflow_run_id']}" + (f"; wrote {json_path}" if json_path else ""))


# --- analysts: compare runs, HTML quality report ------------------------------------------------------------------


@app.command()
def lookalike(
    data: DataDir,
    seeds: Annotated[Path, typer.Option("--seeds", exists=True, dir_okay=False,
                                        help="CSV, Parquet or text file of seed ids: a person_id or customer_key "
                                             "column (or one id per line).")],
    out: Annotated[Path, typer.Option("--out", help="Audience file (.csv or .parquet): person_id, score, rank.")],
    as_of: OptAsOf = None,
    size: Annotated[int | None, typer.Option(min=1, help="Audience size (people).")] = None,
    fraction: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Or: share of the population.")] = None,
    exclude: Annotated[str, typer.Option(help="Comma-separated feature columns (or prefixes ending in '*') that "
                                               "define the seed and must not be learned from, e.g. 'spend_*'.")] = "",
    random_state: Seed = 0,
) -> None:
    """Find the people who behave most like a seed list (e.g. your best members), under the brand's consent policy.

    Positive-unlabeled learning (bagged LightGBM) on the feature snapshot; 20% of the seed is held out to report
    recall@1/5/10% and lift over random. Opted-out people are never in the audience; people with unknown consent
    only under `consent: opt_out` (DATA/brand.yaml, the default). Unknown seed ids, an audience shorter than
    --size and a trivially separable seed are named. The run is logged to the MLflow experiment `lookalike`.
    """
    from features.brand import load_brand
    from features.identity import resolve_identities
    from features.pipeline import build_features
    from training.audience import lookalike_audience
    from training.exports import write_csv
    from training.lookalike import columns_with_prefixes

    if (size is None) == (fraction is None):
        raise InputError("give exactly one of --size and --fraction", field="--size")
    seed_ids = read_ids(seeds)
    consent = load_brand(data).consent
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    identity = resolve_identities(dataset, as_of=cutoff).key_to_person
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=identity, console=console)
    names = [c.strip() for c in exclude.split(",") if c.strip()]
    excluded = [c for c in names if not c.endswith("*")] + columns_with_prefixes(
        feats, [c[:-1] for c in names if c.endswith("*")]) if names else None
    status = console.status(f"fitting lookalike on {len(seed_ids):,} seeds over {len(feats):,} people")
    with exit_2_on(ValueError), status:
        result = lookalike_audience(feats, seed_ids, identity=identity, size=size, fraction=fraction,
                                    exclude_columns=excluded, random_state=random_state, as_of=cutoff,
                                    fingerprint=dataset.fingerprint_dict(), consent=consent)
    out.parent.mkdir(parents=True, exist_ok=True)
    (write_csv(result.audience, out) if out.suffix == ".csv" else result.audience.to_parquet(out, index=False))
    m = result.metrics
    console.print(
        f"audience {len(result.audience):,} people; holdout recall@1% {m.get('holdout.recall_at_1pct', float('nan')):.3f}, "
        f"@5% {m.get('holdout.recall_at_5pct', float('nan')):.3f}, @10% {m.get('holdout.recall_at_10pct', float('nan')):.3f}; "
        f"lift@5% {m.get('holdout.lift_at_5pct', float('nan')):.1f}; mlflow run {result.run_id}"
    )
    ex = result.excluded
    console.print(f"left out before ranking (consent: {consent}): {ex.get('seed', 0):,} seed people, "
                  f"{ex.get('opt_out', 0):,} opted out, {ex.get('consent_unknown', 0):,} with unknown consent")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"wrote {out}")


def read_ids(path: Path) -> list[str]:
    """Ids from a CSV/Parquet (column person_id, customer_key or the first one) or a one-per-line text file."""
    import pandas as pd

    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
    else:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for col in ("person_id", "customer_key", "customer_id", "id"):
        if col in frame.columns:
            return frame[col].dropna().astype(str).tolist()
    return frame.iloc[:, 0].dropna().astype(str).tolist()


# --- monitoring: drift watch -----------------------------------------------------------------------------------
