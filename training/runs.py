"""Compare MLflow runs side by side: params, metrics with direction-aware verdicts, champion and data fingerprints.

Analysts ask "did the new model get better, and on the same data?". :func:`compare_runs` answers it from the
MLflow store alone, following the project's MLflow conventions (``docs/architecture.md``): metric keys are dotted
and their last segment names the measure (``val.auc``, ``churn.model.auc``, ``clv.model.total_error_pct``), so
:func:`training.metrics.metric_direction` knows whether up is good; the tag ``scrm.data_fingerprint`` identifies the
input data; the registered models ``churn`` and ``clv`` carry the aliases ``champion`` and ``challenger``.

The result renders as a rich table (:func:`render_table`), JSON (:func:`to_json`) or a tidy CSV
(:func:`to_csv`); ``scrm runs list`` and ``scrm runs compare`` are thin wrappers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from features.errors import InputError
from training import registry, tracking

#: Experiments whose runs produce registered models of that kind (one per brand and horizon, ``acme.churn_90d``).
REGISTERED_MODEL_FOR_EXPERIMENT = {name: name for name in registry.REGISTERED_MODELS}
ALIASES = (registry.CHAMPION, registry.CHALLENGER)

#: Metrics shown first (when present) in ``scrm runs list``; every metric is in the DataFrame.
HEADLINE_METRICS = (
    "val.auc",
    "val.brier",
    "val.gini",
    "val.spearman",
    "val.total_error_pct",
    "val.recall_at_5pct",
    "holdout.recall_at_1pct",
    "holdout.recall_at_5pct",
    "holdout.recall_at_10pct",
    "holdout.auc",
    "churn.model.auc",
    "churn.model.brier",
    "clv.model.gini",
    "clv.model.total_error_pct",
)

RUN_COLUMNS = (
    "run_id",
    "run_name",
    "start_time",
    "status",
    "kind",
    "as_of",
    "data_fingerprint",
    "role",
    "gate_decision",
    "brand",
    "horizon_days",
)

Verdict = Literal["baseline", "better", "worse", "same", "n/a"]


class RunsError(InputError, LookupError):
    """An experiment, run or alias asked for does not exist (the CLI exits with code 2).

    An :class:`~features.errors.InputError` (bad input) and, as before, a ``LookupError`` (nothing found).
    """


def _client():
    return tracking.client()


def _experiment(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise RunsError(
            f"unknown experiment {name!r}; experiments in this store: {', '.join(known) or '(none)'}"
        )
    return exp


def _registered_models(client, experiment: str) -> list[str]:
    """Registered models whose runs live in ``experiment``: every brand's and horizon's (``acme.churn_90d``)."""
    if experiment not in REGISTERED_MODEL_FOR_EXPERIMENT:
        return []
    names = []
    for rm in client.search_registered_models(max_results=1000):
        identity = registry.parse_model_name(rm.name)
        if (identity is not None and identity.kind == experiment) or rm.name == experiment:
            names.append(rm.name)
    return sorted(names)


def _alias_runs(client, experiment: str) -> dict[str, str]:
    """``{run_id: "champion" | "challenger" | "champion,challenger"}`` over the experiment's registered models."""
    from mlflow.exceptions import MlflowException

    roles: dict[str, list[str]] = {}
    for model in _registered_models(client, experiment):
        for alias in ALIASES:
            try:
                version = client.get_model_version_by_alias(model, alias)
            except MlflowException:
                continue
            if version.run_id:
                roles.setdefault(version.run_id, []).append(alias)
    return {run_id: ",".join(names) for run_id, names in roles.items()}


def _champion_run_id(client, experiment: str, runs: list) -> str:
    """The run behind the champion of the registered model the compared runs belong to (one brand, horizon)."""
    from mlflow.exceptions import MlflowException

    if experiment not in REGISTERED_MODEL_FOR_EXPERIMENT:
        raise RunsError(
            f"experiment {experiment!r} has no registered model, so it has no champion; "
            f"--baseline champion works for {', '.join(REGISTERED_MODEL_FOR_EXPERIMENT)} (use --baseline first)"
        )
    models = {
        registry.model_name(t[registry.TAG_BRAND], experiment, t[registry.TAG_HORIZON])
        for t in (r.data.tags for r in runs) if t.get(registry.TAG_BRAND) and t.get(registry.TAG_HORIZON)
    }
    if not models:
        models = set(_registered_models(client, experiment))
    if not models:
        raise RunsError(f"no registered {experiment} model, so no 'champion' alias yet: train with `scrm train`, "
                        "or use --baseline first")
    if len(models) != 1:
        raise RunsError(
            f"--baseline champion needs runs of one brand and horizon; these belong to "
            f"{', '.join(sorted(models)) or 'no registered model'}: pick runs with --runs, or use --baseline first"
        )
    model = models.pop()
    try:
        version = client.get_model_version_by_alias(model, "champion")
    except MlflowException:
        raise RunsError(
            f"registered model {model!r} has no 'champion' alias yet (train with `scrm train` or set it with "
            f"`scrm promote {model} VERSION`), or use --baseline first"
        ) from None
    if not version.run_id:
        raise RunsError(f"the champion of {model!r} (version {version.version}) is not linked to a run")
    return version.run_id


def _run_row(run, roles: dict[str, str]) -> dict:
    tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or "",
        "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC") if run.info.start_time else pd.NaT,
        "status": run.info.status,
        "kind": tags.get("scrm.kind", ""),
        "as_of": tags.get("scrm.as_of") or run.data.params.get("as_of", ""),
        "data_fingerprint": tags.get("scrm.data_fingerprint", ""),
        "role": roles.get(run.info.run_id, ""),
        "gate_decision": tags.get("scrm.gate_decision", ""),
        "brand": tags.get(registry.TAG_BRAND, ""),
        "horizon_days": tags.get(registry.TAG_HORIZON) or run.data.params.get("horizon_days", ""),
    }


def list_runs(experiment: str, *, max_results: int = 10) -> pd.DataFrame:
    """The latest runs of an experiment, newest first, one row per run.

    Parameters
    ----------
    experiment : str
        Experiment name (``churn``, ``clv``, ``lookalike``, ``backtest``).
    max_results : int, default 10
        How many of the most recent runs to return.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id``, ``run_name``, ``start_time`` (UTC), ``status``, ``kind``, ``as_of``,
        ``data_fingerprint``, ``role`` (``champion`` / ``challenger`` / empty), ``gate_decision``, then one column
        per metric key (headline metrics first).

    Raises
    ------
    RunsError
        When the experiment does not exist.
    """
    if max_results < 1:
        raise ValueError(f"max_results must be at least 1, got {max_results}")
    client = _client()
    exp = _experiment(client, experiment)
    runs = client.search_runs(
        [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=max_results
    )
    roles = _alias_runs(client, experiment)
    rows = []
    metric_keys: set[str] = set()
    for run in runs:
        row = _run_row(run, roles)
        row.update(run.data.metrics)
        metric_keys.update(run.data.metrics)
        rows.append(row)
    rest = sorted(metric_keys - set(HEADLINE_METRICS), key=lambda m: (_direction(m) is None, _metric_order(m)))
    ordered = [m for m in HEADLINE_METRICS if m in metric_keys] + rest  # quality measures before counts
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS) + ordered)


# --- comparison ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Runs of one experiment side by side, each against a baseline run.

    Attributes
    ----------
    experiment : str
        The experiment name.
    baseline : str
        ``"first"`` or ``"champion"``: how the baseline run was chosen.
    baseline_run_id : str
        The run every other run is compared with; it is the first row of ``runs``.
    runs : pandas.DataFrame
        One row per run in display order (``run_id``, ``run_name``, ``start_time``, ``status``, ``kind``,
        ``as_of``, ``data_fingerprint``, ``role``, ``gate_decision``, ``is_baseline``, ``same_data``).
    params : pandas.DataFrame
        Long table: ``param``, ``run_id``, ``value`` (str or None), ``changed`` (differs from the baseline).
    metrics : pandas.DataFrame
        Long table: ``metric``, ``direction`` (``higher`` / ``lower`` / ``abs_lower`` / ``closer_to_nominal`` or
        None when unknown), ``run_id``, ``value``, ``baseline_value``, ``delta`` (value − baseline value),
        ``verdict`` (``baseline`` / ``better`` / ``worse`` / ``same`` / ``n/a``).
    warnings : tuple of str
        Things the reader must know, e.g. runs trained on different data.
    """

    experiment: str
    baseline: str
    baseline_run_id: str
    runs: pd.DataFrame
    params: pd.DataFrame
    metrics: pd.DataFrame
    warnings: tuple[str, ...] = field(default=())

    @property
    def fingerprint_mismatch(self) -> bool:
        """True when the runs were not all trained on the same data (or a run has no fingerprint)."""
        return not bool(self.runs["same_data"].all())

    def verdict(self, metric: str, run_id: str) -> str:
        """The verdict of one run on one metric (``better`` / ``worse`` / ``same`` / ``baseline`` / ``n/a``)."""
        rows = self.metrics[(self.metrics["metric"] == metric) & (self.metrics["run_id"] == run_id)]
        if rows.empty:
            raise KeyError(f"no metric {metric!r} for run {run_id!r} in this comparison")
        return str(rows["verdict"].iloc[0])


def _direction(metric: str) -> str | None:
    from training.metrics import metric_direction

    return metric_direction(metric)


def _nominal(params: dict[str, str]) -> float:
    try:
        return float(params.get("interval_level", 0.8))
    except ValueError:
        return 0.8


def judge(
    value: float | None,
    baseline_value: float | None,
    direction: str | None,
    *,
    nominal: float = 0.8,
    tolerance: float = 1e-9,
) -> Verdict:
    """Whether ``value`` is better, worse or the same as ``baseline_value`` for a metric of this direction.

    Parameters
    ----------
    value, baseline_value : float or None
        The two measurements; a missing one gives ``"n/a"``.
    direction : {"higher", "lower", "abs_lower", "closer_to_nominal"} or None
        From :func:`training.metrics.metric_direction`; None (unknown) gives ``"n/a"``.
    nominal : float, default 0.8
        The target of ``closer_to_nominal`` metrics (an interval's nominal coverage).
    tolerance : float, default 1e-9
        Differences of the compared quantity up to this size count as ``"same"``.

    Examples
    --------
    >>> judge(0.81, 0.74, "higher")
    'better'
    >>> judge(-3.0, 10.0, "abs_lower")
    'better'
    """
    if value is None or baseline_value is None or direction is None:
        return "n/a"
    if any(math.isnan(v) for v in (value, baseline_value)):
        return "n/a"
    if direction == "higher":
        gain = value - baseline_value
    elif direction == "lower":
        gain = baseline_value - value
    elif direction == "abs_lower":
        gain = abs(baseline_value) - abs(value)
    elif direction == "closer_to_nominal":
        gain = abs(baseline_value - nominal) - abs(value - nominal)
    else:
        return "n/a"
    if abs(gain) <= tolerance:
        return "same"
    return "better" if gain > 0 else "worse"


def _resolve_run_ids(client, exp, run_ids: list[str]) -> list[str]:
    """Full run ids for the ids or unique id prefixes given; every run must belong to the experiment."""
    from mlflow.exceptions import MlflowException

    resolved: list[str] = []
    candidates: list | None = None
    for given in run_ids:
        given = given.strip()
        if not given:
            continue
        run = None
        try:
            run = client.get_run(given)
        except MlflowException:
            if candidates is None:
                candidates = client.search_runs([exp.experiment_id], max_results=5000)
            matches = [r for r in candidates if r.info.run_id.startswith(given)]
            if len(matches) > 1:
                raise RunsError(
                    f"run id prefix {given!r} matches {len(matches)} runs in experiment {exp.name!r}; "
                    "give more characters"
                ) from None
            if not matches:
                raise RunsError(f"unknown run id {given!r} in experiment {exp.name!r}") from None
            run = matches[0]
        if run.info.experiment_id != exp.experiment_id:
            raise RunsError(f"run {given!r} belongs to another experiment, not {exp.name!r}")
        if run.info.run_id not in resolved:
            resolved.append(run.info.run_id)
    if not resolved:
        raise RunsError("no run ids given")
    return resolved


def compare_runs(
    experiment: str,
    *,
    run_ids: list[str] | None = None,
    baseline: Literal["first", "champion"] = "first",
    max_results: int = 10,
    tolerance: float = 1e-9,
) -> Comparison:
    """Put runs of an experiment side by side, each metric judged against a baseline run knowing its direction.

    Parameters
    ----------
    experiment : str
        Experiment name (``churn``, ``clv``, ``lookalike``, ``backtest``).
    run_ids : list of str, optional
        Runs to compare, in this order (full ids or unique prefixes). Default: the last ``max_results`` runs,
        oldest first, so deltas read as "what changed since the oldest of them".
    baseline : {"first", "champion"}, default "first"
        ``first`` compares against the first run; ``champion`` against the run behind the registered model's
        ``champion`` alias (experiments ``churn`` and ``clv``), which is added to the runs when missing.
    max_results : int, default 10
        How many recent runs to compare when ``run_ids`` is not given.
    tolerance : float, default 1e-9
        Metric differences up to this size count as ``same``.

    Returns
    -------
    Comparison

    Raises
    ------
    RunsError
        Unknown experiment or run id, a run of another experiment, or no champion when ``baseline="champion"``.
    """
    if baseline not in ("first", "champion"):
        raise ValueError(f"baseline must be 'first' or 'champion', got {baseline!r}")
    if max_results < 1:
        raise ValueError(f"max_results must be at least 1, got {max_results}")
    client = _client()
    exp = _experiment(client, experiment)
    if run_ids:
        ids = _resolve_run_ids(client, exp, list(run_ids))
        runs = [client.get_run(i) for i in ids]
    else:
        runs = client.search_runs(
            [exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=max_results
        )[::-1]
        if not runs:
            raise RunsError(f"experiment {experiment!r} has no runs yet")
    if baseline == "champion":
        champion_id = _champion_run_id(client, experiment, runs)
        by_id = {r.info.run_id: r for r in runs}
        champion = by_id.pop(champion_id, None) or client.get_run(champion_id)
        runs = [champion] + [r for r in runs if r.info.run_id != champion_id]
    base = runs[0]
    base_id = base.info.run_id
    roles = _alias_runs(client, experiment)

    # runs and data fingerprints
    run_rows = [_run_row(r, roles) for r in runs]
    base_fp = run_rows[0]["data_fingerprint"]
    for row in run_rows:
        row["is_baseline"] = row["run_id"] == base_id
        row["same_data"] = bool(base_fp) and row["data_fingerprint"] == base_fp
    runs_df = pd.DataFrame(run_rows)
    warnings: list[str] = []
    fps = [row["data_fingerprint"] for row in run_rows]
    distinct = sorted({fp for fp in fps if fp})
    if len(distinct) > 1:
        groups = ", ".join(
            f"{fp} ({sum(1 for f in fps if f == fp)} run(s))" for fp in distinct
        )
        warnings.append(
            f"DIFFERENT DATA: these runs were trained on {len(distinct)} different data sets "
            f"(fingerprints {groups}); metric differences mix model changes with data changes."
        )
    missing = [row["run_id"][:8] for row in run_rows if not row["data_fingerprint"]]
    if missing:
        warnings.append(
            f"no data fingerprint (tag scrm.data_fingerprint) on run(s) {', '.join(missing)}: "
            "cannot tell whether they used the same data."
        )

    # params
    param_names = sorted({k for r in runs for k in r.data.params})
    param_rows = []
    for name in param_names:
        base_value = base.data.params.get(name)
        for r in runs:
            value = r.data.params.get(name)
            param_rows.append(
                {"param": name, "run_id": r.info.run_id, "value": value, "changed": value != base_value}
            )
    params_df = pd.DataFrame(param_rows, columns=["param", "run_id", "value", "changed"])

    # metrics
    metric_names = sorted({k for r in runs for k in r.data.metrics})
    metric_rows = []
    for name in metric_names:
        direction = _direction(name)
        base_value = base.data.metrics.get(name)
        for r in runs:
            value = r.data.metrics.get(name)
            is_base = r.info.run_id == base_id
            # rounded to 12 significant digits so 0.81 − 0.74 prints as 0.07, not 0.07000000000000006
            delta = float(f"{value - base_value:.12g}") if value is not None and base_value is not None else None
            verdict = (
                "baseline"
                if is_base
                else judge(value, base_value, direction, nominal=_nominal(r.data.params), tolerance=tolerance)
            )
            metric_rows.append(
                {
                    "metric": name,
                    "direction": direction,
                    "run_id": r.info.run_id,
                    "value": value,
                    "baseline_value": base_value,
                    "delta": delta,
                    "verdict": verdict,
                }
            )
    metrics_df = pd.DataFrame(
        metric_rows,
        columns=["metric", "direction", "run_id", "value", "baseline_value", "delta", "verdict"],
    )
    return Comparison(
        experiment=experiment,
        baseline=baseline,
        baseline_run_id=base_id,
        runs=runs_df,
        params=params_df,
        metrics=metrics_df,
        warnings=tuple(warnings),
    )


# --- renderers ----------------------------------------------------------------------------------------------------


def _none_if_nan(value):
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_dict(comparison: Comparison) -> dict:
    """The comparison as plain JSON-ready data (what :func:`to_json` writes)."""
    runs = []
    for row in comparison.runs.to_dict("records"):
        row = dict(row)
        start = row.get("start_time")
        row["start_time"] = None if start is None or pd.isna(start) else pd.Timestamp(start).isoformat()
        runs.append(row)
    params: dict[str, dict] = {}
    for row in comparison.params.to_dict("records"):
        entry = params.setdefault(row["param"], {"changed": False, "values": {}})
        entry["values"][row["run_id"]] = _none_if_nan(row["value"])
        entry["changed"] = entry["changed"] or bool(row["changed"])
    metrics: dict[str, dict] = {}
    for row in comparison.metrics.to_dict("records"):
        entry = metrics.setdefault(row["metric"], {"direction": _none_if_nan(row["direction"]), "runs": {}})
        entry["runs"][row["run_id"]] = {
            "value": _none_if_nan(row["value"]),
            "delta": _none_if_nan(row["delta"]),
            "verdict": row["verdict"],
        }
    return {
        "experiment": comparison.experiment,
        "baseline": comparison.baseline,
        "baseline_run_id": comparison.baseline_run_id,
        "fingerprint_mismatch": comparison.fingerprint_mismatch,
        "warnings": list(comparison.warnings),
        "runs": runs,
        "params": params,
        "metrics": metrics,
    }


def to_json(comparison: Comparison, *, indent: int | None = 2) -> str:
    """The comparison as a JSON document.

    Keys: ``experiment``, ``baseline``, ``baseline_run_id``, ``fingerprint_mismatch``, ``warnings``, ``runs``
    (list in display order), ``params`` (``{name: {"changed": bool, "values": {run_id: value}}}``) and
    ``metrics`` (``{name: {"direction": ..., "runs": {run_id: {"value", "delta", "verdict"}}}}``).
    """
    return json.dumps(to_dict(comparison), indent=indent, ensure_ascii=False)


CSV_COLUMNS = [
    "section",
    "name",
    "run_id",
    "run_name",
    "role",
    "data_fingerprint",
    "is_baseline",
    "value",
    "baseline_value",
    "delta",
    "direction",
    "verdict",
]


def to_frame(comparison: Comparison) -> pd.DataFrame:
    """One tidy table: a row per (param or metric, run), the shape spreadsheets and pivot tables like."""
    info = comparison.runs.set_index("run_id")[["run_name", "role", "data_fingerprint", "is_baseline"]]
    params = comparison.params.rename(columns={"param": "name"}).assign(section="param")
    base_values = params[params["run_id"] == comparison.baseline_run_id].set_index("name")["value"]
    params["baseline_value"] = params["name"].map(base_values)
    params["verdict"] = params["changed"].map({True: "changed", False: "same"})
    params.loc[params["run_id"] == comparison.baseline_run_id, "verdict"] = "baseline"
    params = params.drop(columns="changed")
    metrics = comparison.metrics.rename(columns={"metric": "name"}).assign(section="metric")
    frame = pd.concat([params, metrics], ignore_index=True)
    frame = frame.join(info, on="run_id")
    return frame.reindex(columns=CSV_COLUMNS)


def to_csv(comparison: Comparison) -> str:
    """The comparison as CSV text with the columns of :data:`CSV_COLUMNS` (see :func:`to_frame`)."""
    return to_frame(comparison).to_csv(index=False)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if value == int(value) and (abs(value) >= 100 or value == 0):
            return f"{value:,.0f}"  # counts
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _fmt_delta(delta) -> str:
    if delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return ""
    text = _fmt(abs(delta))
    return f"{'+' if delta >= 0 else '−'}{text}"


_VERDICT_STYLE = {"better": ("green", "▲ better"), "worse": ("red", "▼ worse")}


def render_table(comparison: Comparison, *, only_changed: bool = False):
    """A rich renderable: warnings, then params and metrics with one column per run.

    Each metric cell shows the value, the delta against the baseline and a coloured verdict (green better, red
    worse). Column headers show the short run id, run name, role (★ champion, ☆ challenger), whether it is the
    baseline, and the data fingerprint (red when it differs from the baseline's).

    Parameters
    ----------
    comparison : Comparison
    only_changed : bool, default False
        Show only the params, and the metrics without a direction (row counts, ...), whose value differs
        between the runs; quality metrics are always shown.

    Returns
    -------
    rich.console.Group
        Print it with ``rich.console.Console().print(...)``.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    runs = comparison.runs.to_dict("records")
    title = (
        f"experiment {comparison.experiment!r}: {len(runs)} run(s), deltas against "
        f"{'the champion' if comparison.baseline == 'champion' else 'the first run'} "
        f"{comparison.baseline_run_id[:8]}"
    )
    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("", style="bold", no_wrap=True)
    for run in runs:
        header = Text(run["run_id"][:8])
        if run["run_name"]:
            header.append(f"\n{run['run_name']}")
        role = run["role"]
        if role:
            marks = []
            if "champion" in role:
                marks.append("★ champion")
            if "challenger" in role:
                marks.append("☆ challenger")
            header.append("\n" + " ".join(marks), style="bold yellow")
        if run["is_baseline"]:
            header.append("\n(baseline)", style="cyan")
        fp = run["data_fingerprint"] or "no fingerprint"
        header.append(f"\ndata {fp}", style="" if run["same_data"] else "bold red")
        table.add_column(header, justify="right")

    params = comparison.params
    if only_changed:
        changed = set(params.loc[params["changed"], "param"])
        params = params[params["param"].isin(changed)]
    if not params.empty:
        table.add_row(Text("params", style="underline"), *[""] * len(runs))
        for name, group in params.groupby("param", sort=True):
            values = group.set_index("run_id")
            cells = []
            for run in runs:
                value = values["value"].get(run["run_id"])
                changed = bool(values["changed"].get(run["run_id"], False))
                cells.append(Text("—" if value is None else str(value), style="yellow" if changed else ""))
            table.add_row(str(name), *cells)
    metrics = comparison.metrics
    judged = metrics["direction"].notna()
    sections = [("metrics", metrics[judged]), ("other metrics (no better/worse direction)", metrics[~judged])]
    for title, part in sections:
        if only_changed and title.startswith("other"):
            differs = part.groupby("metric")["value"].transform(lambda v: v.nunique(dropna=False) > 1)
            part = part[differs.astype(bool)] if len(part) else part
        if part.empty:
            continue
        table.add_row(Text(title, style="underline"), *[""] * len(runs))
        groups = dict(tuple(part.groupby("metric", sort=False)))
        for name in sorted(groups, key=_metric_order):
            table.add_row(*_metric_row(comparison, name, groups[name], runs))
    parts = [Text(f"⚠ {w}", style="bold red" if w.startswith("DIFFERENT DATA") else "yellow") for w in comparison.warnings]
    return Group(*parts, table)


_SCOPE_ORDER = ("val", "holdout", "churn", "clv", "oracle")


def _metric_order(name: str) -> tuple:
    """Evaluation scopes first (val, holdout, churn, clv, oracle), then the rest (selection.*, ...)."""
    head = name.split(".", 1)[0]
    return (_SCOPE_ORDER.index(head) if head in _SCOPE_ORDER else len(_SCOPE_ORDER), name)


_ARROWS = {"higher": " ↑", "lower": " ↓", "abs_lower": " |↓|", "closer_to_nominal": " →nominal"}


def _metric_row(comparison: Comparison, name: str, group: pd.DataFrame, runs: list[dict]) -> list:
    from rich.text import Text

    values = group.set_index("run_id")
    arrow = _ARROWS.get(group["direction"].iloc[0], "")
    cells = [Text(str(name)) + Text(arrow, style="dim")]
    for run in runs:
        rid = run["run_id"]
        if rid not in values.index:
            cells.append(Text("—"))
            continue
        cell = Text(_fmt(_none_if_nan(values.at[rid, "value"])))
        verdict = values.at[rid, "verdict"]
        delta = _none_if_nan(values.at[rid, "delta"])
        if verdict == "same":
            cell.append(" (= same)", style="dim")
        elif verdict in _VERDICT_STYLE:
            style, label = _VERDICT_STYLE[verdict]
            cell.append(f" ({_fmt_delta(delta)} {label})", style=style)
        elif rid != comparison.baseline_run_id and delta:
            cell.append(f" ({_fmt_delta(delta)})", style="dim")
        cells.append(cell)
    return cells


def print_wide(renderable) -> None:
    """Print a table at its natural width (at least the terminal's), so no column is squeezed into "…"."""
    from rich.console import Console

    console = Console()
    width = console.measure(renderable, options=console.options.update_width(10_000)).maximum
    Console(width=max(console.width, width)).print(renderable)


def render_list(runs: pd.DataFrame, *, experiment: str, max_metrics: int = 4):
    """A rich table of :func:`list_runs` output: identity, data, role and the headline metrics."""
    from rich.table import Table
    from rich.text import Text

    metric_cols = [c for c in runs.columns if c not in RUN_COLUMNS and _direction(c) is not None][:max_metrics]
    table = Table(title=f"experiment {experiment!r}: latest {len(runs)} run(s), newest first", header_style="bold")
    for col in ["run id", "name", "started (UTC)", "status", "as_of", "data", "role", *metric_cols]:
        table.add_column(col, justify="right" if col in metric_cols else "left", no_wrap=col != "name",
                         min_width=12 if col == "name" else None)
    for row in runs.to_dict("records"):
        start = row["start_time"]
        role = row["role"]
        role_text = Text(
            " ".join(("★ " if r == "champion" else "☆ ") + r for r in role.split(",")) if role else "",
            style="bold yellow",
        )
        table.add_row(
            row["run_id"][:8],
            row["run_name"],
            "" if pd.isna(start) else pd.Timestamp(start).strftime("%Y-%m-%d %H:%M"),
            row["status"],
            str(row["as_of"]),
            row["data_fingerprint"] or "—",
            role_text,
            *[_fmt(_none_if_nan(row[c])) for c in metric_cols],
        )
    return table
