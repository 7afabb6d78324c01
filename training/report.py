"""A one-page HTML quality report of an MLflow run that a marketer can read, with every chart embedded.

:func:`build_report` reads one run (params, metrics, tags and artifacts, following the MLflow conventions in
``docs/architecture.md``) and writes a single self-contained HTML file: what is predicted and over which horizon,
the data period and customer counts (and who was not eligible and why), the quality figures with the baselines
beside them in plain words, the charts the run logged (ROC, calibration, gains, CLV deciles, expansion curve) as
base64 ``data:`` URIs, and the top features. No external CSS, JS, fonts or images: the file opens offline and can
be mailed around. Sections whose data the run does not have say "not available for this run".

:func:`log_report` builds the report and logs it as the run's ``report.html`` artifact; training and backtest code
call it at the end of every run. ``scrm report --run-id ID --out FILE.html`` wraps :func:`build_report`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

NOT_AVAILABLE = "not available for this run"
KINDS = ("churn", "clv", "lookalike", "backtest")

# --- plain-language vocabulary -------------------------------------------------------------------------------------

_KIND_TITLE = {
    "churn": "Churn risk model",
    "clv": "Customer lifetime value (CLV) model",
    "lookalike": "Lookalike audience",
    "backtest": "Backtest: churn and CLV models checked on past data",
}

_BASELINE_NAMES = {
    "recency": "the simple recency rule",
    "btyd": "the BG/NBD buy-till-you-die formula",
    "btyd_gg": "the BG/NBD + Gamma-Gamma formula",
    "last_period": "the “same as last period” rule",
    "rfm": "the RFM score rule",
    "random": "random guessing",
    "prior": "the average rate for everyone",
    "family_btyd": "the BG/NBD + Gamma-Gamma formula alone",
    "family_lgbm": "LightGBM alone",
    "family_blend": "the blend of formula and LightGBM",
}

# measure → (label, what it means, phrase used in "the model <phrase> better than ...")
_MEASURES = {
    "auc": (
        "AUC",
        "chance that a customer who left is ranked riskier than one who stayed: 0.5 is a coin toss, 1.0 is perfect",
        "ranks customers",
    ),
    "pr_auc": (
        "PR-AUC",
        "how precisely the customers who leave are found, averaged over all list lengths; higher is better",
        "finds the customers who leave",
    ),
    "brier": (
        "Brier score",
        "average squared gap between the predicted probability and what happened; lower is better",
        "predicts probabilities",
    ),
    "ece": (
        "calibration error",
        "average gap between predicted and observed rates across probability bands; lower is better",
        "is calibrated",
    ),
    "logloss": ("log loss", "penalty for confident wrong probabilities; lower is better", "predicts probabilities"),
    "lift_at_10pct": (
        "lift in the top 10%",
        "how many times more leavers are among the 10% flagged riskiest than in a random 10%",
        "concentrates leavers at the top of its list",
    ),
    "gini": (
        "Gini",
        "how well the order by predicted value matches the order by actual spend, relative to a perfect order (1.0)",
        "ranks customers by value",
    ),
    "spearman": (
        "Spearman correlation",
        "rank agreement between predicted and actual spend: 1.0 means the same order",
        "orders customers by future spend",
    ),
    "total_error_pct": (
        "total spend error",
        "predicted total spend of all customers against the actual total, in percent; closer to 0 is better",
        "predicts total spend",
    ),
    "decile_mape": (
        "decile error",
        "average percentage gap between predicted and actual spend within each tenth of customers; lower is better",
        "predicts spend per customer group",
    ),
    "interval_coverage": (
        "range coverage",
        "share of customers whose actual spend fell inside the predicted low–high range; best near its nominal level",
        "sets its low–high ranges",
    ),
    "churn_auc": ("churn AUC", "AUC of the churn prediction", "ranks customers"),
    "clv_spearman": ("CLV Spearman", "Spearman correlation of the CLV prediction", "orders customers by value"),
}

_COUNT_LABELS = {
    "n_customers": "customers (people after merging their channel accounts)",
    "n_people": "customers (people after merging their channel accounts)",
    "n_eligible": "customers eligible for the model",
    "n_ineligible": "customers not eligible",
    "n_scored": "customers scored",
    "n_train": "training rows (customers × cut-off dates)",
    "n_train_rows": "training rows (customers × cut-off dates)",
    "n_val": "validation customers",
    "n_valid_rows": "validation customers (latest complete window)",
    "n_calibration": "customers used to calibrate probabilities",
    "n_not_eligible": "customers not eligible",
    "n_validation": "validation customers",
    "n_test": "test customers",
    "n_seeds": "seed customers",
    "n_seed": "seed customers",
    "n_seeds_used": "seed customers used",
    "n_holdout": "seed customers held out to measure recall",
    "n_population": "population ranked",
    "n_candidates": "candidate customers ranked",
    "n_orders": "orders",
    "n_features": "features used",
    "n_seeds_given": "seed ids supplied",
    "seed_n_given": "seed people after matching ids to customers",
    "n_train_seeds": "seed customers the model learned from",
    "seed_n_valid": "seed customers usable",
    "audience_size": "audience size delivered",
}

_CHARTS = {
    "roc": (
        "ROC curve",
        "The further the curve bows towards the top-left corner, the better the model separates customers who "
        "leave from those who stay; the diagonal is guessing.",
    ),
    "calibration": (
        "Calibration",
        "Predicted churn probability against the share who actually left. Points on the diagonal mean a "
        "predicted 30% really is about 30%.",
    ),
    "gains": (
        "Cumulative gains",
        "Share of all leavers caught when contacting the riskiest x% of customers first; the diagonal is random "
        "contact.",
    ),
    "clv_deciles": (
        "CLV by decile: predicted vs actual",
        "Customers split into ten groups by predicted value; bars of similar height mean the value predictions "
        "hold up group by group.",
    ),
    "expansion_curve": (
        "Audience expansion curve",
        "Share of held-out seed customers found as the audience grows; the steeper the early rise, the better "
        "the lookalike ranking.",
    ),
}

_CHARTS_BY_KIND = {
    "churn": ("roc", "calibration", "gains"),
    "clv": ("clv_deciles",),
    "backtest": ("roc", "calibration", "gains", "clv_deciles"),
    "lookalike": ("expansion_curve",),
}


# --- gathering the run -------------------------------------------------------------------------------------------


@dataclass
class RunData:
    """Everything the report needs from one run, artifacts already read."""

    run_id: str
    run_name: str
    experiment: str
    kind: str
    start_time: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    plots: dict[str, bytes] = field(default_factory=dict)
    json_artifacts: dict[str, object] = field(default_factory=dict)


_JSON_ARTIFACTS = (
    "eligibility.json",
    "seed_report.json",
    "feature_importance.json",
    "data_fingerprint.json",
    "backtest.json",
    "features.json",
)


def _client():
    from training import tracking

    return tracking.client()


def load_run(run_id: str, *, client=None) -> RunData:
    """Read a run's params, metrics, tags, ``plots/*.png`` and the JSON artifacts the report uses.

    Raises
    ------
    LookupError
        When no run has this id.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    client = client or _client()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = _run_by_prefix(client, run_id)
    experiment = client.get_experiment(run.info.experiment_id).name
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    kind = run.data.tags.get("scrm.kind") or (experiment if experiment in KINDS else "unknown")
    data = RunData(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment=experiment,
        kind=kind,
        start_time=(
            pd.Timestamp(run.info.start_time, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
            if run.info.start_time
            else ""
        ),
        status=run.info.status,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=tags,
    )
    with _no_progress_bars():
        _read_artifacts(client, run.info.run_id, data)
    return data


def _run_by_prefix(client, prefix: str):
    """The one run whose id starts with ``prefix`` (the 8 characters ``scrm runs list`` shows)."""
    matches = []
    if re.fullmatch(r"[0-9a-f]{4,31}", prefix or ""):
        ids = [e.experiment_id for e in client.search_experiments()]
        if ids:
            matches = [r for r in client.search_runs(ids, max_results=5000) if r.info.run_id.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise LookupError(f"run id prefix {prefix!r} matches {len(matches)} runs; give more characters")
    raise LookupError(f"unknown run id {prefix!r} in tracking store {client.tracking_uri}")


@contextlib.contextmanager
def _no_progress_bars():
    """Silence MLflow's artifact download progress bars (one per file) while the report reads artifacts."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _read_artifacts(client, run_id: str, data: RunData) -> None:
    root = {f.path for f in client.list_artifacts(run_id)}
    plot_files = [f.path for f in client.list_artifacts(run_id, "plots")] if "plots" in root else []
    with tempfile.TemporaryDirectory() as tmp:
        for path in plot_files:
            if path.lower().endswith(".png"):
                local = client.download_artifacts(run_id, path, tmp)
                data.plots[Path(path).stem] = Path(local).read_bytes()
        for name in _JSON_ARTIFACTS:
            if name in root:
                local = client.download_artifacts(run_id, name, tmp)
                try:
                    data.json_artifacts[name] = json.loads(Path(local).read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue


# --- formatting helpers ------------------------------------------------------------------------------------------


def _measure(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _direction(measure: str) -> str | None:
    from training.metrics import metric_direction

    return metric_direction(measure)


def _measure_info(measure: str, kind: str = "") -> tuple[str, str, str]:
    if measure in _MEASURES and not (kind == "lookalike" and measure.startswith("lift_")):
        return _MEASURES[measure]
    m = re.fullmatch(r"recall_at_(\d+(?:\.\d+)?)pct", measure)
    if m:
        k = m.group(1)
        return (
            f"recall in the top {k}%",
            f"share of held-out seed customers found in the top {k}% of the ranked population",
            "finds held-out seed customers",
        )
    m = re.fullmatch(r"lift_(?:at_)?(\d+(?:\.\d+)?)pct", measure)
    if m:
        k = m.group(1)
        return (
            f"lift in the top {k}%",
            f"how many times better than random selection the top {k}% of the ranking is",
            "concentrates the right customers at the top",
        )
    return (measure.replace("_", " "), "", "scores")


def _fmt_value(measure: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if measure == "total_error_pct":
        return f"{value:+.1f}%"
    if measure == "interval_coverage" or measure.startswith("recall_at_"):
        return f"{value:.0%}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def _fmt_count(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def _judge(value: float, other: float, direction: str | None, nominal: float) -> str:
    """'better' / 'worse' / 'same' / '' from the model's point of view."""
    from training.runs import judge

    verdict = judge(value, other, direction, nominal=nominal)
    return "" if verdict == "n/a" else verdict


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --- sections ----------------------------------------------------------------------------------------------------


def _horizon(run: RunData) -> int | None:
    for key in ("horizon_days", "horizon"):
        raw = run.params.get(key) or (run.json_artifacts.get("backtest.json") or {}).get(key)
        if raw not in (None, ""):
            try:
                return int(float(raw))
            except (TypeError, ValueError):
                return None
    return None


def _as_of(run: RunData) -> str | None:
    backtest = run.json_artifacts.get("backtest.json") or {}
    return run.tags.get("scrm.as_of") or run.params.get("as_of") or backtest.get("as_of") or None


def _prediction_section(run: RunData) -> dict:
    horizon = _horizon(run)
    as_of = _as_of(run)
    window = f"the {horizon} days after {as_of}" if horizon and as_of else (
        f"the next {horizon} days" if horizon else "the prediction window (horizon not recorded)"
    )
    text = {
        "churn": (
            f"For every customer with at least one paid order before {as_of or 'the cut-off date'}, the probability "
            f"of placing no paid order in {window} (the churn risk). High-risk, high-value customers are the ones "
            "worth a retention offer."
        ),
        "clv": (
            f"For every customer, the amount they are expected to spend in {window} (customer lifetime value), "
            "with a low–high range (10th to 90th percentile), the expected number of orders and the chance they "
            "are still an active customer."
        ),
        "lookalike": (
            "Which customers behave like a seed audience you supplied (for example last campaign's best buyers), "
            "ranked from most to least similar, so an audience can be grown beyond the seed. Quality is measured "
            "by hiding part of the seed and checking how high those customers rank."
        ),
        "backtest": (
            f"An honest check of the churn and CLV models: they were trained only on data before "
            f"{as_of or 'the cut-off date'} and their predictions compared with what customers actually did in "
            f"{window}, next to simple rules a team could use instead."
        ),
    }.get(run.kind, f"This run (kind {run.kind!r}) does not say what it predicts.")
    facts = []
    if as_of:
        facts.append(("Cut-off date (history used up to, not including)", as_of))
    if horizon:
        facts.append(("Prediction horizon", f"{horizon} days"))
    if run.kind == "lookalike":
        for key in ("seed_file", "seeds", "exclude_seed_columns", "size"):
            if key in run.params:
                facts.append((key.replace("_", " "), run.params[key]))
    return {"text": text, "facts": facts}


def _period_rows(run: RunData) -> list[tuple[str, str]]:
    rows = []
    start = run.params.get("data_start") or run.tags.get("scrm.data_start")
    end = run.params.get("data_end") or run.tags.get("scrm.data_end")
    if start or end:
        rows.append(("Data covers", f"{start or '?'} to {end or '?'}"))
    as_of = _as_of(run)
    horizon = _horizon(run)
    if as_of:
        rows.append(("Model sees history before", as_of))
    cutoffs = run.params.get("cutoffs")
    if cutoffs:
        rows.append(("Training cut-off dates", cutoffs.replace(",", ", ")))
    for key, label in (
        ("calibration_cutoff", "Probabilities calibrated on the window from"),
        ("validation_cutoff", "Validated on the latest complete window, from"),
    ):
        if run.params.get(key):
            rows.append((label, run.params[key]))
    if as_of and horizon and run.kind in ("backtest", "churn", "clv"):
        try:
            end_day = date.fromisoformat(str(as_of)[:10]) + timedelta(days=horizon)
            label = "Outcomes checked over" if run.kind == "backtest" else "Predictions cover"
            rows.append((label, f"{as_of} to {(end_day - timedelta(days=1)).isoformat()} ({horizon} days)"))
        except ValueError:
            pass
    return rows


_COUNT_SCOPES = ("", "val", "holdout", "test", "churn", "clv")
_COUNT_PREFIX = {"val": "validation", "holdout": "held-out check", "test": "test", "churn": "churn", "clv": "CLV"}


def _count_rows(run: RunData) -> list[tuple[str, str]]:
    seen: dict[str, tuple[str, str]] = {}
    sources = [run.params, run.metrics]
    backtest = run.json_artifacts.get("backtest.json")
    if isinstance(backtest, dict):
        sources.append({k: v for k, v in backtest.items() if isinstance(v, int | float)})
    eligibility = run.json_artifacts.get("eligibility.json")
    if isinstance(eligibility, dict) and isinstance(eligibility.get("eligible"), int | float):
        sources.append({"n_eligible": eligibility["eligible"]})
    seeds = run.json_artifacts.get("seed_report.json")
    if isinstance(seeds, dict):
        sources.append({f"seed_{k}": v for k, v in seeds.items() if k in ("n_given", "n_valid")})
    for source in sources:
        for key, value in source.items():
            head, _, last = key.rpartition(".")
            # counts are n_* keys at the top level or under an evaluation scope, never hyper-parameters
            # such as lgbm.n_estimators
            if not (last.startswith(("n_", "seed_n_")) or last in _COUNT_LABELS) or key in seen:
                continue
            if head not in _COUNT_SCOPES:
                continue
            label = _COUNT_LABELS.get(last, last[2:].replace("_", " "))
            prefix = f"{_COUNT_PREFIX.get(head, head)}: " if head else ""
            if head == "holdout" and last == "n_seeds":
                label = "seed customers held out to measure recall"
            seen[key] = (prefix + label, _fmt_count(value))
    return list(seen.values())


def _eligibility(run: RunData) -> list[tuple[str, int]]:
    """``[(reason, count)]`` from eligibility.json, backtest.json['eligibility'] or ``ineligible.<reason>`` keys."""
    seeds = run.json_artifacts.get("seed_report.json")
    if run.kind == "lookalike" and isinstance(seeds, dict):
        reasons = {
            "n_missing": "empty id",
            "n_duplicates": "duplicate id",
            "n_unknown": "not found among the customers",
            "n_unknown_ids": "not found in the identity map",
        }
        return [
            (label, int(seeds[key]))
            for key, label in reasons.items()
            if isinstance(seeds.get(key), int | float) and seeds[key] > 0
        ]
    found = run.json_artifacts.get("eligibility.json")
    if isinstance(found, dict) and isinstance(found.get("not_eligible"), dict):
        found = found["not_eligible"]  # {"eligible": n, "not_eligible": {reason: count}}
    if not isinstance(found, dict):
        backtest = run.json_artifacts.get("backtest.json")
        found = backtest.get("not_eligible_reasons") if isinstance(backtest, dict) else None
    if not isinstance(found, dict):
        found = {}
        for source in (run.params, run.metrics):
            for key, value in source.items():
                head, _, reason = key.partition(".")
                if head in ("ineligible", "not_eligible") and reason:
                    found[reason] = value
    rows = []
    for reason, count in found.items():
        try:
            rows.append((str(reason).replace("_", " "), int(float(count))))
        except (TypeError, ValueError):
            continue
    return sorted(rows, key=lambda r: -r[1])


def _fingerprint_rows(run: RunData) -> list[dict]:
    fp = run.json_artifacts.get("data_fingerprint.json")
    if not isinstance(fp, dict):
        return []
    tables = fp.get("tables", fp)
    rows = []
    if isinstance(tables, dict):
        for name, info in tables.items():
            if isinstance(info, dict) and ("rows_read" in info or "rows_used" in info):
                rows.append(
                    {
                        "table": name,
                        "file": Path(str(info.get("file", ""))).name,
                        "rows_read": _fmt_count(info.get("rows_read", "")),
                        "rows_used": _fmt_count(info.get("rows_used", "")),
                        "rows_rejected": _fmt_count(info.get("rows_rejected", "")),
                    }
                )
    return rows


_SCOPE_LABELS = {
    "val": "Validation (latest complete time window)",
    "test": "Test",
    "churn": "Churn risk",
    "clv": "Customer lifetime value",
    "holdout": "Held-out seed customers (hidden from the model, then looked for)",
    "churn.validation": "Churn risk: validation window during training",
    "clv.validation": "Customer lifetime value: validation window during training",
    "": "Model",
}
_SCOPE_SUBJECT = {
    "": "The model",
    "val": "The model",
    "churn": "The churn model",
    "clv": "The CLV model",
    "holdout": "The lookalike ranking",
}


def _scope_label(scope: str) -> str:
    if scope in _SCOPE_LABELS:
        return _SCOPE_LABELS[scope]
    if scope.startswith("selection."):
        return f"Candidate model family “{scope.split('.', 1)[1]}” (used to choose the model family)"
    return scope.replace(".", " · ").replace("_", " ")


def _quality(run: RunData) -> dict:
    """Model figures grouped by scope, each with its baselines and (backtests on simulated data) the oracle."""
    nominal = 0.8
    try:
        nominal = float(run.params.get("interval_level", 0.8))
    except ValueError:
        pass
    model: dict[str, dict[str, float]] = {}
    baselines: dict[tuple[str, str], dict[str, float]] = {}
    oracle: dict[tuple[str, str], float] = {}
    for key, value in run.metrics.items():
        parts = key.split(".")
        measure = parts[-1]
        if parts[0] == "oracle" and len(parts) == 2:
            scope, _, inner = measure.partition("_")
            if inner:
                oracle[(scope, inner)] = value
            continue
        if parts[0] == "selection" and len(parts) == 3:
            # CLV (and churn, when it compared families) training logs each candidate family's validation
            # figures; the ones not chosen are the natural baselines of the chosen model on the same window
            if parts[1] != run.params.get("clv.family", run.params.get("churn.family")):
                churn_btyd = "clv.family" not in run.params and parts[1] == "btyd"  # BG/NBD alone, no Gamma-Gamma
                baselines.setdefault(("val", measure), {})["btyd" if churn_btyd else f"family_{parts[1]}"] = value
            continue
        if "baselines" in parts[:-1] or "baseline" in parts[:-1]:
            idx = parts.index("baselines") if "baselines" in parts else parts.index("baseline")
            if idx + 3 != len(parts):
                continue
            scope = ".".join(p for p in parts[:idx] if p != "model")
            baselines.setdefault((scope, measure), {})[parts[idx + 1]] = value
            continue
        if _direction(measure) is None:
            continue
        scope = ".".join(p for p in parts[:-1] if p != "model")
        model.setdefault(scope, {})[measure] = value
    groups = []
    sentences = []
    first = ("", "val", "churn", "clv")
    for scope in sorted(model, key=lambda s: (first.index(s) if s in first else len(first), s)):
        rows = []
        for measure, value in model[scope].items():
            label, meaning, phrase = _measure_info(measure, run.kind)
            if run.kind == "lookalike" and measure == "auc":
                meaning = "chance that a held-out seed customer ranks above a random other customer: 0.5 is a coin toss"
            direction = _direction(measure)
            comparisons = []
            found = dict(baselines.get((scope, measure), {}))
            if not found and not baselines:  # chance level only when the run logged no baselines at all
                chance = _chance_level(measure)
                if chance is not None:
                    found["random"] = chance
            for name, other in sorted(found.items()):
                verdict = _judge(value, other, direction, nominal)
                plain = _BASELINE_NAMES.get(name, f"the {name.replace('_', ' ')} baseline")
                comparisons.append(
                    {"name": name, "plain": plain, "value": _fmt_value(measure, other), "verdict": verdict}
                )
                if verdict and _headline(measure):
                    word = {"better": "better than", "worse": "worse than", "same": "as well as"}[verdict]
                    sentences.append(
                        {
                            "text": f"{_SCOPE_SUBJECT.get(scope, 'The model')} {phrase} {word} {plain}: "
                            f"{label} {_fmt_value(measure, value)} vs "
                            f"{_fmt_value(measure, other)}.",
                            "verdict": verdict,
                        }
                    )
            best = oracle.get((scope, measure))
            rows.append(
                {
                    "measure": measure,
                    "label": label,
                    "meaning": meaning + (f" (nominal {nominal:.0%})" if measure == "interval_coverage" else ""),
                    "value": _fmt_value(measure, value),
                    "baselines": comparisons,
                    "oracle": _fmt_value(measure, best) if best is not None else "",
                }
            )
            if best is not None and _headline(measure):
                sentences.append(
                    {
                        "text": f"With perfect knowledge of the simulated customers the best possible {label} would "
                        f"be {_fmt_value(measure, best)}; the model reaches {_fmt_value(measure, value)}.",
                        "verdict": "",
                    }
                )
        groups.append({"title": _scope_label(scope), "rows": rows})
    return {"groups": groups, "sentences": sentences}


_HEADLINE_MEASURES = ("auc", "lift_at_10pct", "gini", "spearman", "total_error_pct", "interval_coverage")


def _headline(measure: str) -> bool:
    """Measures worth a plain-words sentence; the rest (Brier, ECE, ...) are in the tables only."""
    return measure in _HEADLINE_MEASURES or measure.startswith("recall_at_")


def _chance_level(measure: str) -> float | None:
    """What random guessing scores on a measure, the baseline every model must beat (None when it depends on
    the data, e.g. the Brier score of always predicting the average rate)."""
    if measure in ("auc", "churn_auc"):
        return 0.5
    if measure in ("gini", "spearman", "clv_spearman"):
        return 0.0
    k = re.fullmatch(r"recall_at_(\d+(?:\.\d+)?)pct", measure)
    if k:
        return float(k.group(1)) / 100  # random targeting reaches K% of the seed with K% of the population
    if re.fullmatch(r"lift_(?:at_)?\d+(?:\.\d+)?pct", measure):
        return 1.0
    return None


# inputs the models add to the feature snapshot (BTYD model outputs at the cut-off date)
_MODEL_FEATURE_DOCS = {
    "btyd_p_alive": "chance the customer is still active, from the buy-till-you-die (BG/NBD) model",
    "btyd_p_purchase": "chance of at least one purchase in the horizon, from the BG/NBD model",
    "btyd_expected_orders": "orders expected in the horizon, from the BG/NBD model",
    "btyd_expected_spend": "spend expected in the horizon, from the BG/NBD + Gamma-Gamma formula",
}


def _feature_importance(run: RunData) -> list[dict]:
    """``[{"title", "rows": [{"feature", "importance", "share", "doc"}]}]`` from feature_importance.json."""
    raw = run.json_artifacts.get("feature_importance.json")
    if raw is None:
        return []

    def as_pairs(obj) -> list[tuple[str, float]] | None:
        if isinstance(obj, dict) and "features" in obj and "importance" in obj:
            return list(zip(obj["features"], obj["importance"], strict=False))
        if isinstance(obj, dict) and obj and all(isinstance(v, int | float) for v in obj.values()):
            return list(obj.items())
        if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
            out = []
            for r in obj:
                name = r.get("feature", r.get("name"))
                value = r.get("importance", r.get("gain", r.get("value")))
                if name is not None and isinstance(value, int | float):
                    out.append((name, value))
            return out or None
        return None

    tables: list[tuple[str, list[tuple[str, float]]]] = []
    pairs = as_pairs(raw)
    if pairs:
        tables.append(("", pairs))
    elif isinstance(raw, dict):
        for name, inner in raw.items():
            inner_pairs = as_pairs(inner)
            if inner_pairs:
                tables.append((str(name), inner_pairs))
    docs = dict(_MODEL_FEATURE_DOCS)
    try:
        from features.pipeline import FEATURE_DOCS

        docs.update(FEATURE_DOCS)
    except ImportError:
        pass
    out = []
    for title, pairs in tables:
        pairs = sorted(((str(f), float(v)) for f, v in pairs), key=lambda p: -abs(p[1]))
        total = sum(abs(v) for _, v in pairs) or 1.0
        pairs = pairs[:15]
        top = max((abs(v) for _, v in pairs), default=0.0) or 1.0
        rows = [
            {
                "feature": f,
                "importance": f"{100 * abs(v) / total:.1f}%",
                "share": round(120 * abs(v) / top),
                "doc": docs.get(f, ""),
            }
            for f, v in pairs
        ]
        out.append({"title": title, "rows": rows})
    return out


def _charts(run: RunData) -> tuple[list[dict], list[dict]]:
    wanted = list(_CHARTS_BY_KIND.get(run.kind, ()))
    wanted += [name for name in _CHARTS if name not in wanted and name in run.plots]
    used = {"feature_importance"}
    charts = []
    for name in wanted:
        title, how_to_read = _CHARTS[name]
        images = []
        if name in run.plots:
            images.append({"alt": title, "src": _data_uri(run.plots[name])})
            used.add(name)
        else:
            for stem in sorted(run.plots):
                if stem.endswith("_" + name) or stem.startswith(name + "_"):
                    images.append({"alt": f"{title} ({stem})", "src": _data_uri(run.plots[stem])})
                    used.add(stem)
        charts.append({"name": name, "title": title, "how_to_read": how_to_read, "images": images})
    others = [
        {"name": stem, "title": stem.replace("_", " "), "src": _data_uri(png)}
        for stem, png in sorted(run.plots.items())
        if stem not in used
    ]
    return charts, others


def report_context(run: RunData) -> dict:
    """The values the HTML template renders (handy for tests and other renderers)."""
    charts, other_charts = _charts(run)
    fi_plot = run.plots.get("feature_importance")
    return {
        "run": run,
        "title": _KIND_TITLE.get(run.kind, f"Run report ({run.kind})"),
        "prediction": _prediction_section(run),
        "period": _period_rows(run),
        "counts": _count_rows(run),
        "eligibility": _eligibility(run),
        "eligibility_title": (
            "Seed ids not used, and why" if run.kind == "lookalike" else "Customers not eligible, and why"
        ),
        "fingerprint_tables": _fingerprint_rows(run),
        "quality": _quality(run),
        "charts": charts,
        "other_charts": other_charts,
        "feature_tables": _feature_importance(run),
        "feature_plot": _data_uri(fi_plot) if fi_plot else None,
        "features_list": run.json_artifacts.get("features.json"),
        "not_available": NOT_AVAILABLE,
        "verdict_words": {"better": "model better", "worse": "model worse", "same": "tie"},
        "generated": date.today().isoformat(),
    }


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — {{ run.run_name or run.run_id }}</title>
<style>
  body { font-family: -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", Helvetica, Arial, sans-serif;
         color: #1f2933; max-width: 980px; margin: 2em auto; padding: 0 1em; line-height: 1.5; }
  h1 { font-size: 1.7em; margin-bottom: 0.1em; }
  h2 { border-bottom: 2px solid #e4e7eb; padding-bottom: 0.2em; margin-top: 2em; }
  .sub { color: #616e7c; margin-top: 0; }
  table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
  th, td { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #e4e7eb; vertical-align: top; }
  th { background: #f5f7fa; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .na { color: #9aa5b1; font-style: italic; }
  .better { color: #1f7a3a; font-weight: 600; }
  .worse { color: #b3261e; font-weight: 600; }
  .same { color: #616e7c; }
  .sentences li { margin: 0.3em 0; }
  .meaning { color: #616e7c; font-size: 0.9em; }
  figure { margin: 1em 0 2em; }
  figure img { max-width: 100%; border: 1px solid #e4e7eb; }
  figcaption { color: #616e7c; font-size: 0.9em; }
  .bar { background: #4c7bd9; height: 0.7em; display: inline-block; vertical-align: middle; }
  details { margin-top: 1em; }
  code { background: #f5f7fa; padding: 0 0.2em; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="sub">Run <code>{{ run.run_id }}</code>{% if run.run_name %} ({{ run.run_name }}){% endif %} in experiment
<code>{{ run.experiment }}</code>{% if run.start_time %}, started {{ run.start_time }}{% endif %}{% if run.tags.get("scrm.gate_decision") %};
promotion decision: <strong>{{ run.tags["scrm.gate_decision"] }}</strong>{% endif %}. Report generated {{ generated }}.</p>

<section id="prediction">
<h2>What is predicted</h2>
<p>{{ prediction.text }}</p>
{% if prediction.facts %}<table>{% for label, value in prediction.facts %}
<tr><th>{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>{% endif %}
</section>

<section id="data">
<h2>Data and customers</h2>
<h3>Period</h3>
{% if period %}<table>{% for label, value in period %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
{% else %}<p class="na">Data period {{ not_available }}.</p>{% endif %}
<h3>Customer counts</h3>
{% if counts %}<table>{% for label, value in counts %}<tr><th>{{ label }}</th><td class="num">{{ value }}</td></tr>{% endfor %}</table>
{% else %}<p class="na">Customer counts {{ not_available }}.</p>{% endif %}
<h3 id="eligibility">{{ eligibility_title }}</h3>
{% if eligibility %}<table><tr><th>Reason</th><th>Customers</th></tr>
{% for reason, count in eligibility %}<tr><td>{{ reason }}</td><td class="num">{{ "{:,}".format(count) }}</td></tr>{% endfor %}
<tr><th>Total</th><th class="num">{{ "{:,}".format(eligibility | sum(attribute=1)) }}</th></tr></table>
{% else %}<p class="na">Eligibility breakdown {{ not_available }}.</p>{% endif %}
{% if fingerprint_tables %}<h3>Input tables</h3>
<table><tr><th>Table</th><th>File</th><th>Rows read</th><th>Rows used</th><th>Rows rejected</th></tr>
{% for t in fingerprint_tables %}<tr><td>{{ t.table }}</td><td>{{ t.file }}</td><td class="num">{{ t.rows_read }}</td>
<td class="num">{{ t.rows_used }}</td><td class="num">{{ t.rows_rejected }}</td></tr>{% endfor %}</table>{% endif %}
{% if run.tags.get("scrm.data_fingerprint") %}<p>Data fingerprint <code>{{ run.tags["scrm.data_fingerprint"] }}</code>:
runs with the same fingerprint used exactly the same input files.</p>{% endif %}
</section>

<section id="quality">
<h2>How good is it</h2>
{% if quality.sentences %}<ul class="sentences">{% for s in quality.sentences %}
<li class="{{ s.verdict }}">{{ s.text }}</li>{% endfor %}</ul>{% endif %}
{% if quality.groups %}{% for group in quality.groups %}
<h3>{{ group.title }}</h3>
<table><tr><th>Measure</th><th>Model</th><th>Compared with</th>{% if group.rows | selectattr("oracle") | list %}<th>Best possible</th>{% endif %}</tr>
{% for row in group.rows %}<tr><td><strong>{{ row.label }}</strong>{% if row.meaning %}<br><span class="meaning">{{ row.meaning }}</span>{% endif %}</td>
<td class="num">{{ row.value }}</td>
<td>{% for b in row.baselines %}{{ b.plain }}: {{ b.value }}{% if b.verdict %} <span class="{{ b.verdict }}">({{ verdict_words[b.verdict] }})</span>{% endif %}<br>{% else %}<span class="na">no baseline logged</span>{% endfor %}</td>
{% if group.rows | selectattr("oracle") | list %}<td class="num">{{ row.oracle }}</td>{% endif %}</tr>{% endfor %}
</table>{% endfor %}
{% else %}<p class="na">Quality figures {{ not_available }}.</p>{% endif %}
</section>

<section id="charts">
<h2>Charts</h2>
{% for chart in charts %}<figure id="chart-{{ chart.name }}">
<h3>{{ chart.title }}</h3>
{% if chart.images %}{% for image in chart.images %}<img alt="{{ image.alt }}" src="{{ image.src }}">{% endfor %}
<figcaption>{{ chart.how_to_read }}</figcaption>
{% else %}<p class="na">{{ chart.title }}: {{ not_available }}.</p>{% endif %}
</figure>{% else %}<p class="na">Charts {{ not_available }}.</p>{% endfor %}
{% if other_charts %}<h3>Other charts</h3>{% for chart in other_charts %}<figure id="chart-{{ chart.name }}">
<img alt="{{ chart.title }}" src="{{ chart.src }}"><figcaption>{{ chart.title }}</figcaption></figure>{% endfor %}{% endif %}
</section>

<section id="features">
<h2>What drives the predictions: top features</h2>
{% if feature_plot %}<figure id="chart-feature_importance"><img alt="Feature importance" src="{{ feature_plot }}">
<figcaption>The customer facts the model leaned on most; longer bars mattered more.</figcaption></figure>{% endif %}
{% for table in feature_tables %}{% if table.title %}<h3>{{ table.title }}</h3>{% endif %}
<table><tr><th>Feature</th><th>Share of importance</th><th></th><th>Meaning</th></tr>
{% for row in table.rows %}<tr><td><code>{{ row.feature }}</code></td><td class="num">{{ row.importance }}</td>
<td><span class="bar" style="width: {{ row.share }}px"></span></td><td>{{ row.doc }}</td></tr>{% endfor %}</table>
{% endfor %}
{% if not feature_plot and not feature_tables %}<p class="na">Feature importance {{ not_available }}.{% if features_list %}
The model used {{ features_list | length }} features.{% endif %}</p>{% endif %}
</section>

<section id="details">
<h2>Technical details</h2>
<details><summary>Parameters ({{ run.params | length }})</summary>
<table>{% for k, v in run.params | dictsort %}<tr><td><code>{{ k }}</code></td><td>{{ v }}</td></tr>{% endfor %}</table>
</details>
<details><summary>All metrics ({{ run.metrics | length }})</summary>
<table>{% for k, v in run.metrics | dictsort %}<tr><td><code>{{ k }}</code></td><td class="num">{{ "%.6g" | format(v) }}</td></tr>{% endfor %}</table>
</details>
<details><summary>Tags</summary>
<table>{% for k, v in run.tags | dictsort %}<tr><td><code>{{ k }}</code></td><td>{{ v }}</td></tr>{% endfor %}</table>
</details>
</section>
</body>
</html>
"""


def render_report(run: RunData) -> str:
    """The report of an already loaded run as an HTML string."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    return env.from_string(_TEMPLATE).render(**report_context(run))


def build_report(run_id: str, out_path: str | Path) -> Path:
    """Write the self-contained HTML quality report of a run.

    Parameters
    ----------
    run_id : str
        An MLflow run id (or a unique prefix of one) of kind churn, clv, backtest or lookalike (tag
        ``scrm.kind``; the experiment name is used when the tag is missing).
    out_path : str or pathlib.Path
        The HTML file to write; parent directories are created.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    LookupError
        When no run has this id.
    """
    run = load_run(run_id)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(run), encoding="utf-8")
    return out


def log_report(run_id: str) -> str:
    """Build the report of a run and log it as the run's ``report.html`` artifact.

    Works on active and finished runs. Returns the artifact URI of ``report.html``.
    """
    client = _client()
    run = load_run(run_id, client=client)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(render_report(run), encoding="utf-8")
        client.log_artifact(run_id, str(path))
    return client.get_run(run_id).info.artifact_uri.rstrip("/") + "/report.html"
