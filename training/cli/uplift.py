"""`scrm uplift backtest`: how well an uplift model would have targeted a past experiment (any export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from training.cli.base import _Typer, app, console

uplift_app = _Typer(
    help=(
        "Uplift: who does a campaign *change*? An uplift model ranks people by how much treating them moves the "
        "outcome (buy, come back), not by how likely they are to buy anyway. It learns from a past randomised "
        "experiment: a treated group and a control group that got nothing.\n\n"
        "Example: `scrm uplift backtest --table mail_test.csv --treatment-col group --control-value control "
        "--outcome-col converted --json uplift.json`."
    ),
    no_args_is_help=True,
)
app.add_typer(uplift_app, name="uplift")


def _fmt(metric: dict, pct: bool = False) -> str:
    """``estimate [lo, hi]`` of a ``{"estimate", "ci"}`` value; ``–`` when undefined."""
    if metric["estimate"] is None:
        return "–"
    lo, hi = metric["ci"]
    if pct:
        return f"{metric['estimate']:+.1%}  [{lo:+.1%}, {hi:+.1%}]"
    return f"{metric['estimate']:+.3f}  [{lo:+.3f}, {hi:+.3f}]"


@uplift_app.command("backtest")
def uplift_backtest(
    table: Annotated[Path, typer.Option("--table", dir_okay=False, help=(
        "Experiment export, one row per person: features, the group and the outcome (.csv or .parquet)."))],
    treatment_col: Annotated[str, typer.Option("--treatment-col", help="Column naming each person's group.")],
    control_value: Annotated[str, typer.Option("--control-value", help=(
        "The group value of the control (people who got nothing), e.g. `control` or `0`."))],
    outcome_col: Annotated[str, typer.Option("--outcome-col", help=(
        "The 0/1 outcome (also true/false, yes/no), e.g. `converted`. Spend: make it spend > 0 first."))],
    json_out: Annotated[Path, typer.Option("--json", dir_okay=False, help="Where to write the JSON result.")],
    feature_cols: Annotated[str | None, typer.Option("--feature-cols", help=(
        "Comma-separated feature columns (numbers or categories). Default: every other column except text "
        "columns unique per row (identifiers), which are listed as dropped."))] = None,
    treatment_value: Annotated[str | None, typer.Option("--treatment-value", help=(
        "Compare only this group with the control (other groups' rows are left out). Default: every "
        "non-control group pooled as treated."))] = None,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help=(
        "Share of the rows held out (seeded random split, per group) to score the model on."))] = 0.3,
    random_state: Annotated[int, typer.Option("--random-state", help=(
        "Seed of the split, the learner choice, LightGBM and the bootstrap."))] = 0,
) -> None:
    """Fit an uplift model on a random part of a past experiment and score it on the rest.

    **What it fits.** A T-learner (one LightGBM model per group; uplift = difference of their predictions) and an
    X-learner (LightGBM on the imputed individual effects); the one with the higher Qini on a held-out
    validation part of the training rows wins and is refitted on all training rows.

    **What it reports** (each figure with a 95% bootstrap interval, `[lo, hi]`):

    * `ate`: treated − control outcome rate of all rows, the campaign's average effect.
    * `uplift_at` 0.1 / 0.2 / 0.3: the same difference among the top 10/20/30% of the held-out test rows ranked
      by predicted uplift. Above `ate`: the model finds the people the campaign moves.
    * `qini` / `auuc`: the area between the model's Qini / uplift curve and a random ranking, over the same area
      for the perfect ranking (0 = random, 1 = perfect).
    * `baselines.random`: a random ranking scored the same way. An interval that covers 0 means "no better than
      chance".

    Example: `scrm uplift backtest --table mail_test.csv --treatment-col group --control-value control
    --outcome-col converted --treatment-value mail_a --json uplift.json`.

    Bad input (a missing column, no control or treated rows, an outcome that is not 0/1) exits with code 2.
    """
    from rich.table import Table

    from training.runs import print_wide
    from training.uplift_backtest import backtest, prepare_experiment, read_table

    frame = read_table(table)
    features = [c.strip() for c in feature_cols.split(",") if c.strip()] if feature_cols else None
    experiment = prepare_experiment(frame, treatment_col=treatment_col, control_value=control_value,
                                    outcome_col=outcome_col, feature_cols=features, treatment_value=treatment_value,
                                    file=table)
    if experiment.dropped_columns:
        console.print(f"not used as features (an identifier: text unique per row): "
                      f"{', '.join(experiment.dropped_columns)}")
    if experiment.excluded_rows:
        console.print(f"left out {experiment.excluded_rows:,} row(s) of other groups (--treatment-value)")
    run = backtest(experiment, test_fraction=test_fraction, random_state=random_state, file=table)
    result = run.result
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")

    treated = int(experiment.treatment.sum())
    chosen = ", ".join(f"{k.upper()}-learner {v:+.3f}" for k, v in run.validation_qini.items())
    out = Table(title=f"uplift backtest: {table.name} — {result['learner']}",
                caption=f"learner chosen by validation Qini: {chosen}" if chosen else None)
    out.add_column("metric")
    out.add_column(f"model (test, {run.n_test:,} rows)", justify="right")
    out.add_column("random ranking", justify="right")
    model, rand = result["model"], result["baselines"]["random"]
    out.add_row("Qini (normalised)", _fmt(model["qini"]), _fmt(rand["qini"]))
    out.add_row("AUUC (normalised)", _fmt(model["auuc"]), _fmt(rand["auuc"]))
    for key in model["uplift_at"]:
        out.add_row(f"uplift in top {float(key):.0%}", _fmt(model["uplift_at"][key], pct=True),
                    _fmt(rand["uplift_at"][key], pct=True))
    out.add_row(f"overall effect (ate, all {result['n']:,} rows)", _fmt(result["ate"], pct=True), "")
    print_wide(out)
    console.print(f"{result['n']:,} people: {treated:,} treated ({', '.join(experiment.treatment_values)}), "
                  f"{result['n'] - treated:,} control; trained on {run.n_train:,}. Wrote {json_out}")
