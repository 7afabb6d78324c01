"""`scrm target`: a budgeted campaign audience from the command line, the same selection as ``POST /target``;
`scrm tiers suggest`: member-tier thresholds that give target shares at the end of the CLV horizon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from features.errors import InputError
from training.cli.base import (
    DataDir,
    OptAsOf,
    Seed,
    TiersOpt,
    _resolve_as_of,
    _Typer,
    app,
    console,
    exit_2_on,
    load_or_exit,
)


def read_campaign(path: Path):
    """A campaign file (YAML or JSON: the body of ``POST /target`` without ``seed_customer_ids``) →
    ``(CampaignSpec, ValueAssumptions | None)``; ``InputError`` naming the file and key otherwise."""
    import yaml
    from pydantic import ValidationError

    from features.config import describe_validation_error
    from training.decisions.targeting import CampaignSpec, ValueAssumptions

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the campaign file ({exc})", file=path, field="--campaign") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML or JSON ({exc})", file=path, field="--campaign") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with campaign_id, objective, budget, cost_per_contact, ...",
                         file=path, field="--campaign")
    raw = dict(raw)
    assumptions = raw.pop("assumptions", None)
    try:
        spec = CampaignSpec.model_validate(raw)
        values = ValueAssumptions.model_validate(assumptions) if assumptions is not None else None
    except ValidationError as exc:
        raise InputError(f"{path}: {describe_validation_error(exc)}", file=path, field="--campaign") from None
    return spec, values


def read_scores(path: Path):
    """A scores file written by ``scrm score`` (.parquet or .csv)."""
    import pandas as pd

    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path, dtype={"person_id": str})
            if "marketing_opt_out" in frame.columns:  # "True"/"False"/blank → nullable boolean
                flag = frame["marketing_opt_out"].map({True: True, False: False, "True": True, "False": False})
                frame["marketing_opt_out"] = pd.array(flag.to_numpy(dtype=object), dtype="boolean")
            return frame
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the scores ({exc})", file=path, field="--scores") from None


@app.command("target")
@exit_2_on(LookupError)
def target(
    data: DataDir,
    campaign: Annotated[Path, typer.Option(
        "--campaign", exists=True, dir_okay=False,
        help="Campaign YAML/JSON: campaign_id, objective (retain|winback|upsell|lookalike|incremental_margin), budget, "
             "cost_per_contact, optional offer_cost, max_contacts, control_fraction, filters, assumptions "
             "(the body of POST /target; docs/decisions.md).")],
    out: Annotated[Path, typer.Option("--out", help="Audience CSV to write (best first, treatment and control).")],
    scores: Annotated[Path | None, typer.Option(
        "--scores", exists=True, dir_okay=False,
        help="Scores written by `scrm score` (.parquet/.csv); default: score DATA now with the champions.")] = None,
    seeds: Annotated[Path | None, typer.Option(
        "--seeds", exists=True, dir_okay=False,
        help="Objective lookalike: seed ids (as `scrm lookalike --seeds`).")] = None,
    as_of: OptAsOf = None,
    tiers: TiersOpt = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary JSON here.")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to score with (without --scores).")] = "champion",
    random_state: Seed = 0,
    objective: Annotated[str | None, typer.Option(
        "--objective", help="Override the campaign file's objective (retain|winback|upsell|lookalike|"
                            "incremental_margin). incremental_margin ranks by the registered uplift model "
                            "(`scrm train uplift`): uplift × revenue per conversion × margin_rate − cost.")] = None,
) -> None:
    """Pick a campaign audience within budget, ranked by expected value, with a deterministic control group.

    The brand's consent policy (`consent:` in DATA/brand.yaml, default opt_out) applies exactly as in
    `POST /target`: opted-out people are never selected; people with unknown consent are selected under opt_out
    and left out under opt_in. The summary counts the people left out for each reason and says why when nobody
    is selected.
    """
    import json

    from rich.table import Table

    from features.brand import load_brand
    from training.decisions.targeting import explain_summary, select_audience, to_csv
    from training.decisions.tiers import TIER_INPUT_COLUMNS, assign_tiers, resolve_tier_rules

    brand = load_brand(data)
    rules = resolve_tier_rules(tiers, data_dir=data)
    spec, assumptions = read_campaign(campaign)
    if objective is not None:
        from pydantic import ValidationError

        from features.config import describe_validation_error
        from training.decisions.targeting import CampaignSpec

        try:
            spec = CampaignSpec.model_validate({**spec.model_dump(), "objective": objective})
        except ValidationError as exc:
            raise InputError(f"--objective: {describe_validation_error(exc)}", field="--objective") from None
    if (spec.objective == "lookalike") != (seeds is not None):
        raise InputError("--seeds is required with objective lookalike and only used there", field="--seeds")
    dataset = feats = identity = None
    if scores is not None:
        frame = read_scores(scores)
    else:
        frame, dataset, feats, identity, cutoff = _score_now(data, as_of, alias, rules, brand.brand)
    tier_frame = assign_tiers(frame, rules) if set(TIER_INPUT_COLUMNS) <= set(frame.columns) else None
    lookalike_scores = None
    if seeds is not None:
        from training.audience import lookalike_audience
        from training.cli.models import read_ids

        if feats is None:
            dataset = load_or_exit(data)
            feats, identity, cutoff = _features(dataset, as_of)
        with console.status("fitting the lookalike model on the seed"):
            fitted = lookalike_audience(feats, read_ids(seeds), identity=identity, fraction=1.0,
                                        random_state=random_state, as_of=cutoff, consent=brand.consent,
                                        fingerprint=dataset.fingerprint_dict())
        for note in fitted.notes:
            console.print(f"[yellow]note:[/] {escape(note)}")
        lookalike_scores = fitted.audience.set_index("person_id")["score"]
    uplift_scores = None
    if spec.objective == "incremental_margin":
        from training.uplift_model import load_uplift

        if feats is None:
            dataset = load_or_exit(data)
            feats, identity, cutoff = _features(dataset, as_of)
        uplift = load_uplift(brand.brand, as_of=cutoff, data_hint=str(data))
        console.print(f"uplift model {uplift.name} v{uplift.version}")
        uplift_scores = uplift.estimator.scores(feats)
    result = select_audience(frame, tier_frame, spec, lookalike_scores=lookalike_scores, assumptions=assumptions,
                             rules=rules, consent=brand.consent, uplift_scores=uplift_scores)
    if uplift_scores is not None:
        result.summary["uplift"]["model_version"] = f"{uplift.name}/{uplift.version}"
    out.parent.mkdir(parents=True, exist_ok=True)
    to_csv(result, out)
    if json_path is not None:
        json_path.write_text(json.dumps(result.summary, indent=2, ensure_ascii=False), encoding="utf-8")
    _print_summary(result.summary, brand.brand, Table)
    for line in explain_summary(result.summary):
        console.print(f"[yellow]{escape(line)}[/]" if line.startswith("nobody") else f"  {escape(line)}")
    console.print(f"wrote {out}" + (f" and {json_path}" if json_path else ""))


def _score_now(data: Path, as_of: str | None, alias: str, rules, brand: str):
    """Score DATA as of ``as_of`` with the ``alias`` models: ``(scores, dataset, features, identity, as_of)``."""
    from training.scoring import load_champions, score

    dataset = load_or_exit(data)
    cutoff = _resolve_as_of(as_of, dataset)
    with exit_2_on(LookupError):
        models = load_champions(alias, brand=brand, as_of=cutoff, data_hint=str(data))
    feats, identity, cutoff = _features(dataset, cutoff.isoformat(), models.features_config())
    with console.status(f"scoring {len(feats):,} people"):
        frame = score(feats, models, as_of=cutoff, tier_rules=rules)
    return frame, dataset, feats, identity, cutoff


def _features(dataset, as_of: str | None, config=None):
    """Features as of ``as_of`` (default: the day after the newest order) with ``config`` (the models')."""
    from features.identity import resolve_identities
    from features.pipeline import build_features

    cutoff = _resolve_as_of(as_of, dataset)
    identity = resolve_identities(dataset, as_of=cutoff).key_to_person
    with console.status(f"building features as of {cutoff}"):
        feats = build_features(dataset, cutoff, identity=identity, console=console, config=config)
    return feats, identity, cutoff


def _print_summary(summary: dict, brand: str, table_cls) -> None:
    from rich.console import Console

    table = table_cls(title=f"campaign {summary['campaign_id']} ({summary['objective']}, brand {brand})",
                      show_header=False)
    roi = summary["expected_roi"]
    for label, value in (
        ("consent policy", summary["consent"]),
        ("population", f"{summary['population']:,}"),
        ("audience (treatment + control)", f"{summary['audience']:,}"),
        ("contacts (treatment)", f"{summary['treatment']:,}"),
        ("control", f"{summary['control']:,}"),
        ("spend / budget", f"{summary['spend']:,.2f} / {summary['budget']:,.2f}"),
        ("expected incremental value", f"{summary['expected_incremental_value']:,.2f}"),
        ("expected net value", f"{summary['expected_net_value']:,.2f}"),
        ("expected ROI", "—" if roi is None else f"{roi:.2f}"),
        *((f"excluded: {reason}", f"{n:,}") for reason, n in summary["excluded"].items()),
        *_uplift_rows(summary.get("uplift")),
    ):
        table.add_row(label, str(value))
    Console().print(table)


def _uplift_rows(block: dict | None) -> list[tuple[str, str]]:
    if block is None:
        return []
    lo, hi = block["revenue_ci"]
    ci = "" if lo is None else f" [{lo:,.2f}, {hi:,.2f}]"
    return [("expected incremental conversions", f"{block['expected_incremental_conversions']:,.1f}"),
            (f"expected incremental revenue ({block['level']:.0%} CI)",
             f"{block['expected_incremental_revenue']:,.2f}{ci}")]


tiers_app = _Typer(help="Member tiers from predicted value (docs/decisions.md).", no_args_is_help=True)
app.add_typer(tiers_app, name="tiers")


@tiers_app.command("suggest")
@exit_2_on(LookupError)
def tiers_suggest(
    data: DataDir,
    scores: Annotated[Path | None, typer.Option(
        "--scores", exists=True, dir_okay=False,
        help="Scores written by `scrm score` (.parquet/.csv); default: score DATA now with the champions.")] = None,
    shares: Annotated[str | None, typer.Option(
        "--shares", help="Target share per tier at the end of the CLV horizon: `钻石=1%,铂金=4%,金卡=15%,银卡=30%` "
                         "(names Chinese or English; fractions or percentages; the base tier gets the rest) or a "
                         "YAML/JSON file mapping names to shares. Default: those four.")] = None,
    basis: Annotated[str, typer.Option(
        "--basis", help="Count the shares on each member's expected trailing spend (point) or as expected shares "
                        "over the members' CLV predictive distributions (distribution, the default); docs/decisions.md.")] = "distribution",
    round_to: Annotated[float, typer.Option(
        "--round-to", help="Suggested thresholds are multiples of this amount (CNY).")] = 1.0,
    as_of: OptAsOf = None,
    tiers: TiersOpt = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary JSON here.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", dir_okay=False,
        help="Write the suggested rules here as a tier rules YAML (for --tiers / SCRM_TIERS / brand.yaml).")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to score with (without --scores).")] = "champion",
) -> None:
    """Suggest member-tier thresholds that give target tier shares at the end of the CLV horizon.

    Each scored member's trailing-12-month spend at as_of + H is the spend of the last 12 months still inside
    that window plus the predicted CLV over H; a threshold is set where the share of members at or above it is the
    target: the expected share from each member's CLV predictive distribution (--basis distribution, the default),
    or the members whose expected spend reaches it (--basis point). The tables show, under the current and the suggested
    thresholds, the members per tier now and at as_of + H, and how many move up, down or stay.
    """
    import json

    from rich.table import Table

    from features.brand import load_brand
    from training.decisions.tier_forecast import read_shares, rules_yaml, suggest_tiers
    from training.decisions.tiers import resolve_tier_rules

    brand = load_brand(data)
    rules = resolve_tier_rules(tiers, data_dir=data)
    wanted = read_shares(shares) if shares is not None else None
    frame = read_scores(scores) if scores is not None else _score_now(data, as_of, alias, rules, brand.brand)[0]
    result = suggest_tiers(frame, rules, wanted, basis=basis, round_to=round_to)
    summary = {"brand": brand.brand, **result.summary}
    _print_tiers(summary, Table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rules_yaml(result.rules), encoding="utf-8")
    written = [str(p) for p in (json_path, out) if p is not None]
    if written:
        console.print("wrote " + " and ".join(written))


def _print_tiers(summary: dict, table_cls) -> None:
    from rich.console import Console

    h, out = summary["horizon_days"], Console()
    out.print(f"member tiers of brand {summary['brand']}: {summary['members']:,} scored members "
              f"({summary['not_scored']:,} not scored), now and at as_of + {h} days; shares on the "
              f"{summary['basis']} basis")
    for side in ("current", "suggested"):
        table = table_cls(title=f"{side} thresholds")
        for col in ("tier", "target", "min spend", "now", f"+{h}d", f"+{h}d expected"):
            table.add_column(col, justify="left" if col == "tier" else "right")
        for t in reversed(summary["tiers"]):
            s = t[side]
            table.add_row(f"{t['name']} {t['name_en']}", f"{t['target_share']:.1%}", f"{s['min_spend']:,.0f}",
                          f"{s['now']:,}", f"{s['predicted']:,}", f"{s['expected']:,.0f} ({s['expected_share']:.1%})")
        out.print(table)
    moves = table_cls(title=f"moves from now to +{h}d (counted on expected spend; expected: sum of probabilities)")
    for col in ("thresholds", "up", "down", "stay", "exp. up", "exp. down", "exp. stay"):
        moves.add_column(col, justify="left" if col == "thresholds" else "right")
    for name, m in summary["moves"].items():
        moves.add_row(name, f"{m['up']:,}", f"{m['down']:,}", f"{m['stay']:,}", f"{m['expected_up']:,.0f}",
                      f"{m['expected_down']:,.0f}", f"{m['expected_stay']:,.0f}")
    out.print(moves)
    r = summary["retiered_now"]
    out.print(f"switching to the suggested thresholds today: {r['up']:,} members up, {r['down']:,} down, "
              f"{r['stay']:,} stay")
    for note in summary["notes"]:
        out.print(f"[yellow]note:[/] {escape(note)}")
