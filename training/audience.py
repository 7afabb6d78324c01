"""Lookalike audiences as tracked runs: shared by ``scrm lookalike`` and the service's ``POST /lookalike``.

Seeds may be given as ``person_id`` or as channel ``customer_key`` (resolved through the snapshot's identity map).
Marketing opt-outs are never part of an audience. Every run is logged to the MLflow experiment ``lookalike``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.lookalike import LookalikeModel


@dataclass
class AudienceResult:
    audience: pd.DataFrame
    metrics: dict[str, float]
    expansion_curve: pd.DataFrame | None
    seed_report: dict
    run_id: str | None


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
                       as_of=None, fingerprint: dict | None = None) -> AudienceResult:
    """Fit a lookalike model on the snapshot and return the audience (opt-outs excluded), logged to MLflow.

    ``fingerprint`` (``Dataset.fingerprint_dict()`` or a snapshot manifest's input fingerprints) is logged so runs
    on different data are told apart. Raises ``ValueError`` (with the counts) when fewer than 50 seeds are usable.
    """
    seed_ids = list(seed_ids)
    persons = pd.Index(features["person_id"].astype(str))
    seeds, not_found = resolve_ids(seed_ids, identity, persons)
    model = LookalikeModel(exclude_columns=exclude_columns, random_state=random_state)
    model.fit(features, seeds)
    opted_out = (features.loc[features["marketing_opt_out"].fillna(False).astype(bool), "person_id"]
                 if "marketing_opt_out" in features.columns else [])
    audience = model.audience(size=size, fraction=fraction, exclude_seed=exclude_seed, exclude_ids=opted_out)
    report = {**model.seed_report_, "n_unknown_ids": len(not_found), "unknown_id_examples": not_found[:5]}
    ev = model.evaluation_ or {}
    metrics = dict(ev.get("metrics", {}))
    curve = ev.get("expansion_curve")
    run_id = None
    if log:
        import mlflow

        from training import plots, tracking

        params = {**model.tracking_params(), "n_seeds_given": len(seed_ids), "audience_size": len(audience),
                  "n_customers": len(features)}
        if as_of is not None:
            params["as_of"] = str(as_of)
        with tracking.start_run("lookalike", run_name=f"lookalike {len(seeds)} seeds", params=params,
                                tags={"scrm.kind": "lookalike", **({"scrm.as_of": str(as_of)} if as_of else {})}) as run:
            mlflow.log_metrics(metrics)
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
                          run_id=run_id)
