"""The ``scrm`` command line (shared pieces; the commands live in the sibling modules): simulate data, validate it, build features, train, score, serve, compare runs.

Each command is a thin wrapper over a library function, so notebooks and the HTTP service call the same code.
Heavy imports happen inside the commands, which keeps ``scrm --help`` fast. Commands just raise: bad input
(:class:`~features.errors.InputError`, and the few other errors a command expects, see :func:`exit_2_on`) ends
every command with ``error: <message>`` and exit code 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

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
        console.print(f"[red]error:[/] {escape(str(exc))}")  # escaped: `.[realdata]` is text, not rich markup
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



OptAsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Training/scoring date YYYY-MM-DD (default: the day after the last accepted order or event, printed)."),
]
TiersOpt = Annotated[
    Path | None,
    typer.Option("--tiers", dir_okay=False, help="Member-tier rules YAML (default: $SCRM_TIERS, else `tiers:` in "
                 "DATA/brand.yaml, else the packaged rules; docs/decisions.md)."),
]
FeatureConfigOpt = Annotated[
    Path | None,
    typer.Option("--feature-config", dir_okay=False, help="FeatureConfig YAML/JSON (windows, RFM bins, lifecycle "
                 "thresholds; as `scrm features build --config`). Logged with the models: scoring builds features "
                 "with it and serving refuses a snapshot built with another."),
]
Seed = Annotated[int, typer.Option("--random-state", help="Seed for LightGBM and simulations; logged with the run.")]
Cutoffs = Annotated[int, typer.Option(
    "--cutoffs", min=1, help="How many rolling training cutoffs to stack (at most: big brands stack fewer, ~600k rows)."
)]
Step = Annotated[int, typer.Option("--step-days", min=1, help="Days between rolling training cutoffs.")]
SampleSize = Annotated[int | None, typer.Option(
    "--sample-size", min=0,
    help="Buyers per cutoff training reads: one person sample, stratified by lifecycle stage and RFM segment, "
         "the same people at every cutoff (0: everyone). Default: sized to this machine, half its memory at "
         "14 kB per person (850,000 on 24 GB).")]
BrandOpt = Annotated[str | None, typer.Option(
    "--brand", help="Brand id the models are registered under (default: brand.yaml in --data, else the "
                    "directory's name). Models are kept apart per brand and horizon: <brand>.churn_90d, ...")]


def brand_of(data: Path | None, brand: str | None) -> str | None:
    """The brand id of a command: ``--brand``, else ``--data``'s brand.yaml or directory name (None: neither)."""
    from features.brand import check_brand_id, load_brand

    if brand is not None:
        return check_brand_id(brand)
    return load_brand(data).brand if data is not None else None


def _resolve_as_of(as_of: str | None, dataset) -> date:
    """``--as-of`` if given, else the day after the last accepted order or event, printed with where it came from."""
    if as_of is not None:
        return parse_date(as_of)
    from training.train import default_as_of

    resolved = default_as_of(dataset)
    late = sum(dataset.validation.count(t, "future_timestamp") for t in ("orders", "events")) \
        if dataset.validation is not None else 0
    console.print(f"--as-of {resolved.isoformat()} (default: the day after the last accepted order or event, "
                  f"{dataset.data_end:%Y-%m-%d %H:%M:%S}"
                  + (f"; {late:,} row(s) dated after the plausible end were quarantined" if late else "") + ")")
    return resolved
