"""Drift watch: does today's population (features, scores, eligibility) still look like the reference one?

The reference is the snapshot the champion was validated on (its training run's ``scrm.as_of``) or any date
given; the current one is today's. For every model input column (``features.pipeline.model_columns``) and for
the churn / CLV score distributions the comparison reports

* the population stability index, ``PSI = Σ (c_i − r_i) · ln(c_i / r_i)`` over bins ``i`` with reference shares
  ``r_i`` and current shares ``c_i``. Numeric columns are cut at the reference's quantiles (``bins`` bins, ties
  merged, so a count that is 0 for 60% of people gets one bin for 0); missing values are a bin of their own;
  text and boolean columns are compared by category share. Empty bins get a share of ``epsilon`` so the
  logarithm stays finite.
* the Jensen–Shannon distance (base 2, in ``[0, 1]``) over the same bins, a bounded companion figure.

plus the population size and the eligibility shares (scored / not scored by reason). Each row gets a status
(``ok`` / ``warn`` / ``alert``) from a :class:`DriftThresholds` config, and the report the worst of them.

Everything here is numpy over columns: 1M people × 60 features take a few seconds. :func:`log_drift` (MLflow) and
:func:`drift_between` (snapshots and champions) import their heavy dependencies when called.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STATUSES = ("ok", "warn", "alert")
SCORED = "scored"
#: Score columns compared when the champions scored both snapshots (numeric ones over the eligible people).
SCORE_COLUMNS = ("churn_probability", "clv_mean", "tier")
EXPERIMENT = "monitoring"
#: Numeric columns longer than this have their bin edges cut from an evenly strided sample of this size.
EDGE_SAMPLE = 100_000
TAG_STATUS = "scrm.drift_status"


# --- thresholds -------------------------------------------------------------------------------------------------


class Limits(BaseModel):
    """A warn and an alert level (a value at or above ``alert`` alerts, at or above ``warn`` warns)."""

    model_config = ConfigDict(extra="forbid")

    warn: float = Field(ge=0)
    alert: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.warn > self.alert:
            raise ValueError(f"warn ({self.warn}) must not exceed alert ({self.alert})")
        return self

    def status(self, value: float) -> str:
        """``ok`` / ``warn`` / ``alert`` for a value (NaN is ``ok``: nothing was measured)."""
        if value is None or not math.isfinite(value):
            return "ok"
        return "alert" if value >= self.alert else "warn" if value >= self.warn else "ok"


class DriftThresholds(BaseModel):
    """Drift thresholds (unknown keys are rejected); load a YAML file with :func:`load_thresholds`.

    Parameters
    ----------
    psi
        PSI levels for every feature (the usual rule of thumb: < 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 shifted).
    scores
        PSI levels for the churn / CLV score distributions.
    features
        Per-feature PSI overrides, e.g. ``{"recency_days": {"warn": 0.2, "alert": 0.4}}``.
    population_change_pct
        Levels for the absolute change of the number of people, in percent of the reference.
    eligibility_share_pts
        Levels for the absolute change of each eligibility share (scored, or not scored for a reason), in
        percentage points.
    bins
        Quantile bins cut from the reference for numeric columns.
    epsilon
        Share given to empty bins.
    """

    model_config = ConfigDict(extra="forbid")

    psi: Limits = Limits(warn=0.1, alert=0.25)
    scores: Limits = Limits(warn=0.1, alert=0.25)
    features: dict[str, Limits] = Field(default_factory=dict)
    population_change_pct: Limits = Limits(warn=10.0, alert=25.0)
    eligibility_share_pts: Limits = Limits(warn=5.0, alert=10.0)
    bins: int = Field(10, ge=2, le=100)
    epsilon: float = Field(1e-4, gt=0, lt=0.01)

    def for_feature(self, name: str) -> Limits:
        return self.features.get(name, self.psi)


def load_thresholds(path: Path | str) -> DriftThresholds:
    """Read a thresholds YAML file; ``ValueError`` names the file and the offending keys."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read drift thresholds ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: drift thresholds must be a mapping, got {type(raw).__name__}")
    try:
        return DriftThresholds.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: invalid drift thresholds: {problems}") from None


# --- the statistics ---------------------------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, *, epsilon: float = 1e-4) -> float:
    """PSI between two share vectors over the same bins (empty bins count as ``epsilon``)."""
    r = np.maximum(np.asarray(reference, dtype=float), epsilon)
    c = np.maximum(np.asarray(current, dtype=float), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two share vectors over the same bins."""
    p, q = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_p + kl_q), 0.0)))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def numeric_bins(reference: np.ndarray, current: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Bin a numeric column at the reference's quantiles; returns labels and reference / current shares.

    Bins are ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)`` with ``e`` the distinct reference quantiles
    ``1/bins, ..., (bins-1)/bins``, plus a last bin for missing values. A constant reference gives two bins
    (``≤ value`` and ``> value``); an all-missing reference only the missing bin and one bin for any value.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref_ok, cur_ok = ~np.isnan(ref), ~np.isnan(cur)
    ref_vals, cur_vals = ref[ref_ok], cur[cur_ok]
    if len(ref_vals):
        # The edges only define the bins (both sides are counted in full on them), so on big columns they are
        # cut from an evenly strided sample: exact enough, and no longer growing with the population.
        sample = ref_vals[:: max(1, len(ref_vals) // EDGE_SAMPLE)]
        edges = np.unique(np.quantile(sample, np.arange(1, bins) / bins))
    else:
        edges = np.array([], dtype=float)
    ref_counts, cur_counts = _bin_counts(ref_vals, edges), _bin_counts(cur_vals, edges)
    ref_counts = np.append(ref_counts, (~ref_ok).sum())
    cur_counts = np.append(cur_counts, (~cur_ok).sum())
    labels = [f"≤ {_fmt(e)}" for e in edges] + ([f"> {_fmt(edges[-1])}"] if len(edges) else ["any value"])
    return {"labels": [*labels, "missing"], "reference": _shares(ref_counts), "current": _shares(cur_counts),
            "reference_mean": float(ref_vals.mean()) if len(ref_vals) else None,
            "current_mean": float(cur_vals.mean()) if len(cur_vals) else None,
            "reference_missing": float((~ref_ok).mean()) if len(ref) else 0.0,
            "current_missing": float((~cur_ok).mean()) if len(cur) else 0.0}


def categorical_bins(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    """Category shares of a text / boolean column (missing values are category ``missing``)."""
    ref = reference.astype(object).where(reference.notna(), "missing").astype(str)
    cur = current.astype(object).where(current.notna(), "missing").astype(str)
    rc, cc = ref.value_counts(), cur.value_counts()
    labels = list(rc.index) + sorted(set(cc.index) - set(rc.index))
    r = rc.reindex(labels, fill_value=0).to_numpy(dtype=float)
    c = cc.reindex(labels, fill_value=0).to_numpy(dtype=float)
    return {"labels": labels, "reference": _shares(r), "current": _shares(c), "reference_mean": None,
            "current_mean": None, "reference_missing": float(reference.isna().mean()) if len(reference) else 0.0,
            "current_missing": float(current.isna().mean()) if len(current) else 0.0}


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in ``(-inf, e_1], ..., (e_k, inf)``: one vectorised comparison per edge (faster than a
    ``searchsorted`` of every value for the few edges used here)."""
    at_most = np.fromiter((np.count_nonzero(values <= e) for e in edges), dtype=np.int64, count=len(edges))
    return np.diff(np.concatenate([[0], at_most, [len(values)]]))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def is_categorical(series: pd.Series) -> bool:
    """Text, category and boolean columns are compared by category share; numbers by quantile bins."""
    return pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(series.dtype)


def compare_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], *,
                    limits, bins: int = 10, epsilon: float = 1e-4) -> list[dict]:
    """One drift row per column (PSI, JS distance, means, missing shares, bins, status), worst PSI first.

    ``limits`` maps a column name to its :class:`Limits` (a callable). A column absent from one side gets
    status ``alert`` and the reason in ``note``.
    """
    rows = []
    for col in columns:
        lim = limits(col)
        if col not in reference.columns or col not in current.columns:
            side = "reference" if col not in reference.columns else "current"
            rows.append({"name": col, "kind": None, "psi": None, "js": None, "status": "alert",
                         "warn": lim.warn, "alert": lim.alert, "note": f"column missing from the {side} snapshot"})
            continue
        if is_categorical(reference[col]) or is_categorical(current[col]):
            b, kind = categorical_bins(reference[col], current[col]), "categorical"
        else:
            b = numeric_bins(reference[col].to_numpy(dtype=float, na_value=np.nan),
                             current[col].to_numpy(dtype=float, na_value=np.nan), bins=bins)
            kind = "numeric"
        value = psi(b["reference"], b["current"], epsilon=epsilon)
        rows.append({
            "name": col, "kind": kind, "psi": value, "js": js_distance(b["reference"], b["current"]),
            "status": lim.status(value), "warn": lim.warn, "alert": lim.alert,
            "reference_mean": b["reference_mean"], "current_mean": b["current_mean"],
            "reference_missing": b["reference_missing"], "current_missing": b["current_missing"],
            "bins": {"labels": b["labels"], "reference": b["reference"].round(6).tolist(),
                     "current": b["current"].round(6).tolist()},
        })
    return sorted(rows, key=lambda r: (-STATUSES.index(r["status"]), -(r["psi"] if r["psi"] is not None else 0)))


def eligibility_shares(reasons: pd.Series) -> pd.Series:
    """Shares of ``scored`` (no reason) and of each not-scored reason, from an ``ineligible_reason`` column."""
    labels = reasons.astype(object).where(reasons.notna(), SCORED)
    return labels.value_counts(normalize=True) if len(labels) else pd.Series(dtype=float)


def compare_eligibility(reference: pd.Series, current: pd.Series, limits: Limits) -> list[dict]:
    """One row per group (scored, each reason): shares in both and the change in percentage points."""
    r, c = eligibility_shares(reference), eligibility_shares(current)
    groups = [SCORED] + sorted((set(r.index) | set(c.index)) - {SCORED})
    rows = []
    for g in groups:
        rs, cs = float(r.get(g, 0.0)), float(c.get(g, 0.0))
        delta = 100.0 * (cs - rs)
        rows.append({"group": g, "reference_share": rs, "current_share": cs, "delta_pts": delta,
                     "reference_people": int(round(rs * len(reference))),
                     "current_people": int(round(cs * len(current))), "status": limits.status(abs(delta))})
    return rows


def worst(statuses) -> str:
    """The worst of some statuses (``ok`` when there are none)."""
    return max(statuses, key=STATUSES.index, default="ok")


# --- the report -------------------------------------------------------------------------------------------------


@dataclass
class DriftReport:
    """The drift between a reference and a current population (see the module docstring); ``to_dict`` is
    what ``drift.json`` holds."""

    reference: dict
    current: dict
    population: dict
    eligibility: list[dict]
    features: list[dict]
    scores: list[dict] = field(default_factory=list)
    models: dict | None = None
    thresholds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def status(self) -> str:
        rows = [self.population, *self.eligibility, *self.features, *self.scores]
        return worst(r["status"] for r in rows)

    def counts(self) -> dict[str, int]:
        """How many feature and score rows have each status."""
        rows = [*self.features, *self.scores]
        return {s: sum(r["status"] == s for r in rows) for s in STATUSES}

    def to_dict(self) -> dict:
        return {"status": self.status, "counts": self.counts(), "created_at": self.created_at,
                "reference": self.reference, "current": self.current, "models": self.models,
                "population": self.population, "eligibility": self.eligibility, "scores": self.scores,
                "features": self.features, "thresholds": self.thresholds, "notes": self.notes}


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, *, columns: list[str] | None = None,
                  thresholds: DriftThresholds | None = None, reference_scores: pd.DataFrame | None = None,
                  current_scores: pd.DataFrame | None = None, reference_info: dict | None = None,
                  current_info: dict | None = None, models: dict | None = None) -> DriftReport:
    """Compare two feature snapshots (and, when given, their scores).

    Parameters
    ----------
    reference, current : DataFrame
        Feature snapshots (``features.pipeline.build_features``), one row per person.
    columns : list of str, optional
        Feature columns to compare (default: ``features.pipeline.model_columns`` of both, reference order).
    thresholds : DriftThresholds, optional
        Levels for the statuses (default: :class:`DriftThresholds` defaults).
    reference_scores, current_scores : DataFrame, optional
        Output of ``training.scoring.score`` on each snapshot: adds the score rows, and the eligibility shares
        come from their ``ineligible_reason`` (otherwise from ``training.scoring.eligibility``).
    reference_info, current_info, models : dict, optional
        Descriptions carried into the report (dates, where the snapshot came from, model versions).

    Raises
    ------
    ValueError
        When either snapshot has no rows.
    """
    from features.pipeline import model_columns
    from training.scoring import eligibility

    thresholds = thresholds or DriftThresholds()
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise ValueError(f"the {name} snapshot has no rows: nothing to compare")
    if columns is None:
        cur_cols = model_columns(current)
        columns = model_columns(reference) + [c for c in cur_cols if c not in set(model_columns(reference))]
    notes = [f"per-feature threshold for {name!r}: no such column compared"
             for name in thresholds.features if name not in columns]
    features = compare_columns(reference, current, columns, limits=thresholds.for_feature, bins=thresholds.bins,
                               epsilon=thresholds.epsilon)
    n_ref, n_cur = len(reference), len(current)
    change = 100.0 * (n_cur - n_ref) / n_ref
    population = {"reference": n_ref, "current": n_cur, "change_pct": change,
                  "status": thresholds.population_change_pct.status(abs(change))}
    scores: list[dict] = []
    if reference_scores is not None and current_scores is not None:
        ref_reason, cur_reason = reference_scores["ineligible_reason"], current_scores["ineligible_reason"]
        ref_ok = reference_scores[reference_scores["eligible"].astype(bool)]
        cur_ok = current_scores[current_scores["eligible"].astype(bool)]
        score_cols = [c for c in SCORE_COLUMNS if c in ref_ok.columns and c in cur_ok.columns]
        scores = compare_columns(ref_ok, cur_ok, score_cols, limits=lambda _: thresholds.scores,
                                 bins=thresholds.bins, epsilon=thresholds.epsilon)
    else:
        ref_reason, cur_reason = eligibility(reference), eligibility(current)
    return DriftReport(
        reference=reference_info or {}, current=current_info or {}, population=population,
        eligibility=compare_eligibility(ref_reason, cur_reason, thresholds.eligibility_share_pts),
        features=features, scores=scores, models=models, thresholds=thresholds.model_dump(mode="json"),
        notes=notes,
    )


# --- outputs ----------------------------------------------------------------------------------------------------


def _clean(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become ``None``."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, date):
        return obj.isoformat()
    return obj


def render_html(report: DriftReport) -> str:
    """The self-contained HTML page (template ``training/templates/drift.html.j2``)."""
    import jinja2

    source = resources.files("training").joinpath("templates", "drift.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda x, fmt="{:.3f}": "—" if x is None else fmt.format(x)
    return env.from_string(source).render(report=_clean(report.to_dict()), statuses=STATUSES)


def write_report(report: DriftReport, out_dir: Path | str, *, json_copy: Path | None = None) -> tuple[Path, Path]:
    """Write ``drift.json`` and ``drift.html`` into ``out_dir`` (created), and the JSON also to ``json_copy``
    when given; returns the paths of both files in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "drift.json", out_dir / "drift.html"
    text = json.dumps(_clean(report.to_dict()), indent=2, ensure_ascii=False)
    json_path.write_text(text, encoding="utf-8")
    if json_copy is not None:
        Path(json_copy).parent.mkdir(parents=True, exist_ok=True)
        Path(json_copy).write_text(text, encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path


def metrics(report: DriftReport) -> dict[str, float]:
    """The MLflow metrics of a report: ``drift.<feature>.psi`` / ``.js``, ``drift.score.<name>.psi``,
    ``drift.population.change_pct``, ``drift.eligibility.<group>.delta_pts`` and status counts."""
    out: dict[str, float] = {}
    for prefix, rows in (("drift.", report.features), ("drift.score.", report.scores)):
        for r in rows:
            for measure in ("psi", "js"):
                if r.get(measure) is not None:
                    out[f"{prefix}{r['name']}.{measure}"] = float(r[measure])
    out["drift.population.change_pct"] = float(report.population["change_pct"])
    out["drift.population.current"] = float(report.population["current"])
    for r in report.eligibility:
        key = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in r["group"]).strip("_")
        out[f"drift.eligibility.{key}.delta_pts"] = float(r["delta_pts"])
    out.update({f"drift.n_{s}": float(n) for s, n in report.counts().items()})
    return out


def render_table(report: DriftReport):
    """A rich table of a report: population, eligibility, then score and feature rows, worst first."""
    from rich.table import Table

    colour = {"ok": "green", "warn": "yellow", "alert": "red"}

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:,.3g}"

    def badge(status: str) -> str:
        return f"[{colour[status]}]{status}[/]"

    ref, cur = report.reference.get("as_of", "?"), report.current.get("as_of", "?")
    table = Table(title=f"drift {ref} → {cur}: {badge(report.status)}")
    for col, justify in (("row", "left"), ("PSI", "right"), ("JS", "right"), ("reference", "right"),
                         ("current", "right"), ("status", "left")):
        table.add_column(col, justify=justify)
    p = report.population
    table.add_row("population (people)", "", "", f"{p['reference']:,}",
                  f"{p['current']:,} ({p['change_pct']:+.1f}%)", badge(p["status"]))
    for r in report.eligibility:
        table.add_row(f"eligibility: {r['group']}", "", "", f"{r['reference_share']:.1%}",
                      f"{r['current_share']:.1%} ({r['delta_pts']:+.1f} pts)", badge(r["status"]))
    rows = [(f"score: {r['name']}", r) for r in report.scores] + [(r["name"], r) for r in report.features]
    rows.sort(key=lambda nr: (-STATUSES.index(nr[1]["status"]), -(nr[1]["psi"] or 0.0)))
    for name, r in rows:
        current = num(r.get("current_mean")) if r["kind"] else r.get("note", "")
        table.add_row(name, num(r["psi"]), num(r["js"]), num(r.get("reference_mean")), current, badge(r["status"]))
    return table


def log_drift(report: DriftReport, *, html_path: Path | None = None, fingerprint: dict | None = None) -> str:
    """Log a report to the MLflow experiment ``monitoring``; returns the run id.

    Params ``reference_as_of`` / ``current_as_of``, the metrics of :func:`metrics`, tags ``scrm.kind=monitoring``,
    ``scrm.as_of`` (the current date) and ``scrm.drift_status``, artifacts ``drift.json`` and (when given)
    ``drift.html``.
    """
    import mlflow

    from training import tracking

    ref, cur = report.reference.get("as_of"), report.current.get("as_of")
    params = {"reference_as_of": ref, "current_as_of": cur, "bins": report.thresholds.get("bins"),
              "scored": bool(report.scores)}
    if report.models:
        params.update({f"{k}_version": v for k, v in report.models.items()})
    tags = {"scrm.kind": EXPERIMENT, TAG_STATUS: report.status, **({"scrm.as_of": cur} if cur else {})}
    with tracking.start_run(EXPERIMENT, run_name=f"drift {ref} → {cur}", params=params, tags=tags) as run:
        if fingerprint:
            tracking.log_dataset_fingerprint(fingerprint)
        mlflow.log_metrics(metrics(report))
        tracking.log_json(_clean(report.to_dict()), "drift.json")
        if html_path is not None:
            mlflow.log_artifact(str(html_path))
        return run.info.run_id


# --- snapshots and champions ------------------------------------------------------------------------------------


def champion_reference(brand: str, horizon_days: int = 90) -> tuple[date | None, str]:
    """The default reference date, the brand's champion churn model's ``scrm.as_of``, and how to describe it."""
    from training import registry

    name = registry.model_name(brand, "churn", horizon_days)
    as_of = champion_as_of(name)
    return as_of, f"champion {name} v{registry.champion_version(name)} validated as of"


def champion_as_of(name: str) -> date | None:
    """The date the ``champion`` of registered model ``name`` was trained and validated as of (``scrm.as_of``)."""
    from mlflow.exceptions import MlflowException

    from training import registry, tracking

    c = tracking.client()
    try:
        mv = c.get_model_version_by_alias(name, registry.CHAMPION)
        value = (mv.tags or {}).get(tracking.TAG_AS_OF) or c.get_run(mv.run_id).data.tags.get(tracking.TAG_AS_OF)
    except MlflowException:  # no such model, alias or run
        return None
    return date.fromisoformat(value[:10]) if value else None


def snapshot_for(data_dir: Path | str, as_of: date, load_dataset_fn) -> tuple[Any, bool]:
    """The feature snapshot as of ``as_of``: reused from ``DATA/features/as_of=DATE/`` when its manifest says
    that date, else built there (as ``scrm features build`` does). Returns ``(snapshot, built)``.

    ``load_dataset_fn()`` returns the validated dataset; it is only called when a snapshot must be built.
    """
    from features.identity import resolve_identities
    from features.pipeline import build_snapshot, load_snapshot

    path = Path(data_dir) / "features" / f"as_of={as_of.isoformat()}"
    if (path / "manifest.json").exists():
        snap = load_snapshot(path)
        if snap.manifest.get("as_of") == as_of.isoformat():
            return snap, False
    dataset = load_dataset_fn()
    if pd.Timestamp(as_of) > dataset.data_end + pd.Timedelta(days=1):
        raise ValueError(f"the data ends {dataset.data_end.date()}: no snapshot can be built as of {as_of}")
    identity = resolve_identities(dataset).key_to_person
    return build_snapshot(dataset, as_of, out_dir=path, identity=identity), True


def drift_between(data_dir: Path | str, reference_as_of: date, current_as_of: date, *, load_dataset_fn,
                  thresholds: DriftThresholds | None = None, models=None, reference_source: str = "--from",
                  progress=None) -> DriftReport:
    """Build or reuse the two snapshots, score both with ``models`` (``training.scoring.Models``; ``None``:
    features only) and compare them. ``progress(message)`` is called before each step."""
    from training.scoring import score

    say = progress or (lambda _msg: None)
    frames, scores, infos = {}, {}, {}
    for role, as_of in (("reference", reference_as_of), ("current", current_as_of)):
        say(f"{role} snapshot as of {as_of}")
        snap, built = snapshot_for(data_dir, as_of, load_dataset_fn)
        frames[role] = snap.features
        infos[role] = {"as_of": as_of.isoformat(), "snapshot": str(snap.path), "built": built,
                       "people": len(snap.features)}
        if models is not None:
            say(f"scoring {len(snap.features):,} people as of {as_of}")
            scores[role] = score(snap.features, models, as_of=as_of, with_intervals=False)
    infos["reference"]["source"] = reference_source
    report = compute_drift(frames["reference"], frames["current"], thresholds=thresholds,
                           reference_scores=scores.get("reference"), current_scores=scores.get("current"),
                           reference_info=infos["reference"], current_info=infos["current"],
                           models=models.versions if models is not None else None)
    if models is None:
        report.notes.insert(0, "no champion models in the registry: features and eligibility only, no score drift")
    return report
