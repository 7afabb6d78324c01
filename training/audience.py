"""Lookalike audiences as tracked runs: shared by ``scrm lookalike`` and the service's ``POST /lookalike``.

Seeds may be given as ``person_id`` or as channel ``customer_key`` (resolved through the snapshot's identity map).
The brand's consent policy (``features.brand``) decides who may be in an audience: marketing opt-outs never are,
people with unknown consent are left out under ``consent: opt_in``. Every run is logged to the MLflow experiment
``lookalike``. Seed problems, a short audience and a trivially separable seed come back as plain-words ``notes``
(never as Python warnings naming a source line).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.brand import consent_masks
from features.errors import InputError
from training.lookalike import LookalikeModel, SeedQualityWarning

#: Held-out AUC at or above which (or recall@1% of 1) the seed is called trivially separable: a rule on the
#: features, not a resemblance, picks it out.
SEPARABLE_AUC = 0.995


@dataclass
class AudienceResult:
    audience: pd.DataFrame
    metrics: dict[str, float]
    expansion_curve: pd.DataFrame | None
    seed_report: dict
    run_id: str | None
    #: people left out of the ranking before the audience was cut: ``seed``, ``opt_out``, ``consent_unknown``
    excluded: dict[str, int] = field(default_factory=dict)
    #: plain-words notes for the caller to show: unknown seeds, a short audience, a trivially separable seed
    notes: list[str] = field(default_factory=list)


def resolve_ids(ids: Iterable, identity: pd.DataFrame | None, person_ids: pd.Index) -> tuple[np.ndarray, list]:
    """Map given ids (person_id or customer_key) to person_ids; returns (resolved, not_found)."""
    ids = pd.Series(list(ids), dtype=object).astype(str)
    is_person = ids.isin(person_ids)
    resolved = ids.where(is_person)
    if identity is not None and (~is_person).any():
        mapping = identity.drop_duplicates("customer_key").set_index("customer_key")["person_id"]
        resolved = resolved.fillna(ids.map(mapping))
    found = resolved.notna() & resolved.isin(person_ids)
    return resolved[found].to_numpy(dtype=object), ids[~found].tolist()


def lookalike_audience(features: pd.DataFrame, seed_ids: Iterable, *, identity: pd.DataFrame | None = None,
                       size: int | None = None, fraction: float | None = None, exclude_seed: bool = True,
                       exclude_columns: list[str] | None = None, random_state: int = 0, log: bool = True,
                       as_of=None, fingerprint: dict | None = None, consent: str = "opt_out") -> AudienceResult:
    """Fit a lookalike model on the snapshot and return the audience under the consent policy, logged to MLflow.

    ``consent`` is the brand's policy (``features.brand.load_brand(data_dir).consent``): opted-out people are
    never in the audience, people with unknown consent only under ``opt_out``. ``fingerprint``
    (``Dataset.fingerprint_dict()`` or a snapshot manifest's ``inputs``) is logged so runs on different data are
    told apart. Raises ``InputError`` (with the counts) when fewer than 50 seeds are usable.
    """
    seed_ids = list(seed_ids)
    persons = pd.Index(features["person_id"].astype(str))
    seeds, not_found = resolve_ids(seed_ids, identity, persons)
    flag = features["marketing_opt_out"] if "marketing_opt_out" in features.columns else \
        pd.Series(pd.NA, index=features.index, dtype="boolean")
    opted_out, unknown = consent_masks(flag, consent)
    notes: list[str] = []
    if not_found:
        notes.append(f"{len(not_found):,} of {len(seed_ids):,} seed id(s) match no person_id or customer_key of the "
                     f"snapshot and were dropped, e.g. {[str(x) for x in not_found[:5]]}")
    model = LookalikeModel(exclude_columns=exclude_columns, random_state=random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SeedQualityWarning)
        try:
            model.fit(features, seeds)
        except InputError as exc:
            if not not_found or exc.field != ("seed_ids",):
                raise
            raise InputError(f"{exc}; besides, {notes[0]}", field="seed_ids") from None
    for w in caught:
        if issubclass(w.category, SeedQualityWarning):
            notes.append(str(w.message))
        else:  # not ours: pass it on unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    is_seed = persons.isin(pd.Index(model.seed_ids_).astype(str))
    excluded = {
        "seed": int(is_seed.sum()) if exclude_seed else 0,
        "opt_out": int((opted_out & ~(is_seed if exclude_seed else False)).sum()),
        "consent_unknown": int((unknown & ~(is_seed if exclude_seed else False)).sum()),
    }
    audience = model.audience(size=size, fraction=fraction, exclude_seed=exclude_seed,
                              exclude_ids=features.loc[opted_out | unknown, "person_id"])
    if size is not None and len(audience) < size:
        left_out = ", ".join(f"{n:,} {what}" for what, n in (
            ("seed people", excluded["seed"]), ("opted out", excluded["opt_out"]),
            (f"with unknown consent (consent: {consent})", excluded["consent_unknown"])) if n)
        notes.append(f"asked for {size:,} people but only {len(audience):,} can be in the audience "
                     f"(of {len(features):,} people{': left out ' + left_out if left_out else ''})")
    report = {**model.seed_report_, "n_unknown_ids": len(not_found), "unknown_id_examples": not_found[:5]}
    ev = model.evaluation_ or {}
    metrics = dict(ev.get("metrics", {}))
    curve = ev.get("expansion_curve")
    separable = (metrics.get("holdout.auc", 0.0) >= SEPARABLE_AUC
                 or metrics.get("holdout.recall_at_1pct", 0.0) >= 0.999)
    if separable:
        notes.append(_separable_note(model, metrics))
    report["notes"] = notes
    run_id = None
    if log:
        import mlflow

        from training import plots, tracking

        params = {**model.tracking_params(), "n_seeds_given": len(seed_ids), "audience_size": len(audience),
                  "audience_size_asked": size if size is not None else "", "consent": consent,
                  "n_customers": len(features)}
        if as_of is not None:
            params["as_of"] = str(as_of)
        with tracking.start_run("lookalike", run_name=f"lookalike {len(seeds)} seeds", params=params,
                                tags={"scrm.kind": "lookalike", **({"scrm.as_of": str(as_of)} if as_of else {}),
                                      **({"scrm.seed_separable": "true"} if separable else {})}) as run:
            mlflow.log_metrics({**metrics, **{f"excluded.{k}": float(v) for k, v in excluded.items()}})
            if fingerprint:
                tracking.log_dataset_fingerprint(fingerprint)
            tracking.log_feature_list(model.feature_names_)
            tracking.log_json(report, "seed_report.json")
            if curve is not None:
                tracking.log_figure(plots.expansion_curve_plot(curve["fraction"], curve["recall"]),
                                    "expansion_curve")
                tracking.log_json(curve.to_dict(orient="list"), "expansion_curve.json")
            run_id = run.info.run_id
        from training.report import attach_report

        attach_report(run_id)
    return AudienceResult(audience=audience, metrics=metrics, expansion_curve=curve, seed_report=report,
                          run_id=run_id, excluded=excluded, notes=notes)


def _separable_note(model: LookalikeModel, metrics: dict[str, float]) -> str:
    """Why a near-perfect holdout is a warning, naming the columns the model leaned on most."""
    gain = np.zeros(len(model.feature_names_))
    for booster in model.boosters_:
        gain += booster.feature_importance(importance_type="gain")
    top = [model.feature_names_[i] for i in np.argsort(-gain, kind="stable")[:3] if gain[i] > 0]
    recall = metrics.get("holdout.recall_at_1pct", float("nan"))
    return (f"the seed is trivially separable (holdout AUC {metrics['holdout.auc']:.3f}, recall@1% {recall:.3f}): "
            f"it looks defined by a rule on the features the model sees, mostly {top}; the audience then just "
            "re-finds that rule — exclude the defining columns (--exclude / exclude_columns, e.g. 'spend_*')")
