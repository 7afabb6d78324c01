"""`scrm runs list|compare` and `scrm report`: reading what MLflow recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.errors import InputError
from training.cli.base import (
    _Typer,
    app,
    console,
    exit_2_on,
)

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
