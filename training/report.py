"""A one-page HTML quality report of an MLflow run that a marketer can read, with every chart embedded.

:func:`build_report` reads one run (params, metrics, tags and artifacts, following the MLflow conventions in
``docs/architecture.md``) and writes a single self-contained HTML file: what is predicted and over which horizon,
the data period and customer counts (and who was not eligible and why), the quality figures with the baselines
beside them in plain words, the charts the run logged (ROC, calibration, gains, CLV deciles, expansion curve) as
base64 ``data:`` URIs, and the top features. No external CSS, JS, fonts or images: the file opens offline and can
be mailed around. Sections whose data the run does not have say "not available for this run".

:func:`log_report` builds the report and logs it as the run's ``report.html`` artifact; training, backtest and
lookalike runs call it through :func:`attach_report` at the end of every run. The page is the Jinja2 template
``training/templates/report.html.j2``; its plain words live in :mod:`training.report_words`. ``scrm report --run-id ID --out FILE.html`` wraps :func:`build_report`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path

from training.report_words import BASELINE_NAMES, CHARTS, CHARTS_BY_KIND, COUNT_LABELS, KIND_TITLE, MEASURES

log = logging.getLogger(__name__)

#: The Jinja2 template of the page, a package data file (``training/templates/report.html.j2``).
TEMPLATE = ("training", "templates/report.html.j2")
NOT_AVAILABLE = "not available for this run"
KINDS = ("churn", "clv", "lookalike", "backtest")

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
    if measure in MEASURES and not (kind == "lookalike" and measure.startswith("lift_")):
        return MEASURES[measure]
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
    if run.tags.get("scrm.brand"):
        facts.append(("Brand", run.tags["scrm.brand"]))
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
        ("calibration_rows", "Probabilities calibrated"),
        ("validation_cutoff", "Validated on the latest complete window, from"),
        ("refit_cutoffs", "Refit after the choice on the cut-off dates"),
        ("layout.reason", "Time layout"),
        ("horizon.reason", "Horizon"),
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
            if not (last.startswith(("n_", "seed_n_")) or last in COUNT_LABELS) or key in seen:
                continue
            if head not in _COUNT_SCOPES:
                continue
            label = COUNT_LABELS.get(last, last[2:].replace("_", " "))
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
    "uplift": "Campaign uplift: who the latest campaign with a control group changed",
    "": "Model",
}
_SCOPE_SUBJECT = {
    "": "The model",
    "val": "The model",
    "churn": "The churn model",
    "clv": "The CLV model",
    "holdout": "The lookalike ranking",
    "uplift": "The uplift model",
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
        if _direction(".".join(parts)) is None:
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
            direction = _direction(f"{scope}.{measure}" if scope else measure)  # oracle_gap.*: lower is better
            comparisons = []
            found = dict(baselines.get((scope, measure), {}))
            if not found and not baselines:  # chance level only when the run logged no baselines at all
                chance = _chance_level(measure)
                if chance is not None:
                    found["random"] = chance
            for name, other in sorted(found.items()):
                verdict = _judge(value, other, direction, nominal)
                plain = BASELINE_NAMES.get(name, f"the {name.replace('_', ' ')} baseline")
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


_HEADLINE_MEASURES = ("auc", "lift_at_10pct", "gini", "spearman", "total_error_pct", "interval_coverage", "qini",
                      "incremental_at_30pct")


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


def _feature_meanings() -> dict[str, str]:
    """Plain words for every model input: snapshot columns and the training-time columns of ``features.spec``
    (``TRAINING_SPEC``), the derived behaviour columns and BTYD outputs (``training.frames.feature_docs``)."""
    from features.spec import TRAINING_SPEC, expand
    from training.frames import feature_docs

    return {**_MODEL_FEATURE_DOCS, **{col: doc for _, col, doc in expand(TRAINING_SPEC)}, **feature_docs()}


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
    docs = _feature_meanings()
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
    wanted = list(CHARTS_BY_KIND.get(run.kind, ()))
    wanted += [name for name in CHARTS if name not in wanted and name in run.plots]
    used = {"feature_importance"}
    charts = []
    for name in wanted:
        title, how_to_read = CHARTS[name]
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
        "title": KIND_TITLE.get(run.kind, f"Run report ({run.kind})"),
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




def render_report(run: RunData) -> str:
    """The report of an already loaded run as an HTML string."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    return env.from_string(_template()).render(**report_context(run))


def _template() -> str:
    package, name = TEMPLATE
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


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


def attach_report(run_id: str) -> None:
    """Attach the HTML quality report to the run; a report failure never fails training."""
    try:
        log_report(run_id)
    except Exception as exc:  # noqa: BLE001 - the report is a courtesy artifact
        log.warning("could not build the HTML report for run %s: %s", run_id, exc)
