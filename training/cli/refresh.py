"""`scrm refresh`: the nightly job (validate → snapshot → train if needed → score → drift → publish)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli.base import (
    BrandOpt,
    Cutoffs,
    DataDir,
    OptAsOf,
    SampleSize,
    Seed,
    Step,
    app,
    brand_of,
    console,
    parse_date,
)


@app.command("refresh")
def refresh_cmd(
    data: DataDir,
    as_of: OptAsOf = None,
    retrain: Annotated[str, typer.Option(
        help="auto: train when there is no champion or the drift since the champion's validation snapshot "
             "alerts; never: keep the champions; always: train (the promotion gate still decides).")] = "auto",
    reasons: Annotated[bool, typer.Option(help="Ask the batch scoring pass for the churn reasons column.")] = True,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", exists=True, dir_okay=False, help="Drift thresholds YAML (docs/monitoring.md).")] = None,
    log_mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="Log the drift report to the MLflow experiment `monitoring`.")] = True,
    force: Annotated[bool, typer.Option(help="Redo the run even if today's publication already answers it.")] = False,
    cutoffs: Cutoffs = 8,
    step_days: Step = 30,
    random_state: Seed = 0,
    brand: BrandOpt = None,
    sample_size: SampleSize = None,
) -> None:
    """The nightly job: validate, build today's snapshot, (re)train when needed, score everyone, check drift, publish.

    Publishes DATA/published/<as_of>-<run>/ (snapshot copy, scores.parquet, drift.json/.html, manifest.json) and
    switches DATA/published/current to it only when every step succeeded; a failed step leaves the previous
    publication serving. A running `scrm serve` picks the new one up without a restart. Running it again for
    the same day with the same data and champions does nothing. Exit codes: 0 published (or already
    published), 1 failed (nothing published), 3 published with a drift alert, 2 bad options.
    """
    from training import drift
    from training.frames import default_sample_size
    from training.refresh import RETRAIN_MODES, refresh

    if retrain not in RETRAIN_MODES:
        console.print(f"[red]error:[/] --retrain must be one of {', '.join(RETRAIN_MODES)}, got {retrain!r}")
        raise typer.Exit(2)
    cutoff = parse_date(as_of) if as_of is not None else None
    try:
        limits = drift.load_thresholds(thresholds) if thresholds is not None else drift.DriftThresholds()
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with console.status("refresh") as status:
        result = refresh(data, as_of=cutoff, retrain=retrain, with_reasons=reasons, thresholds=limits,
                         log_mlflow=log_mlflow, force=force,
                         train_options={"n_cutoffs": cutoffs, "step_days": step_days, "random_state": random_state,
                                        "sample_size": (default_sample_size() if sample_size is None
                                                        else sample_size) or None},
                         progress=lambda msg: status.update(f"refresh: {msg}"), brand=brand_of(data, brand))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.status == "failed":
        console.print(f"[red]refresh failed[/] at step {result.failed_step}: {result.error}\n"
                      f"nothing published; {data / 'published' / 'current'} is unchanged")
        raise typer.Exit(result.exit_code)
    pub = result.publication
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    word = "already published" if result.status == "unchanged" else "published"
    console.print(f"{word} {pub.path} (as of {pub.as_of}, churn v{pub.model_versions.get('churn')}, "
                  f"clv v{pub.model_versions.get('clv')}; {result.retrain_reason or 'no retraining'}); "
                  f"drift {result.drift_status}" + (f"; {timings}" if timings else ""))
    if result.exit_code:
        console.print(f"[red]drift alert[/]: see {pub.path / 'drift.html'}")
        raise typer.Exit(result.exit_code)
