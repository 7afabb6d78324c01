"""The nightly job: validate → snapshot → (re)train and gate → batch-score → drift → publish (``scrm refresh``).

Each step runs in order; the first that fails stops the run, removes its staging directory and leaves
``DATA/published/current`` where it was, so the service keeps answering from yesterday's publication. A
champion alias the run's own training moved is moved back (``registry.promote`` of the previous version), so
the registry too is as it was. Only the last step, :func:`step_publish`, switches the pointer
(:mod:`training.publish`).

- **validate**: the data contract (``features.contract.load_dataset``); the date is ``--as-of`` or the day after
  the last order or event (``training.train.default_as_of``).
- **snapshot**: ``DATA/features/as_of=DATE/``, reused when its manifest has the same date and input
  fingerprints, else built next to it and renamed into place.
- **train**: ``never`` keeps the champions; ``always`` trains and gates (``training.train.train_all``);
  ``auto`` trains when there is no champion yet or when the drift between the champion's validation snapshot
  and today's is ``alert`` (:mod:`training.drift`), otherwise keeps them.
- **score**: :func:`training.scoring.score` over the snapshot with the champions (what ``scrm score`` writes,
  plus ``feature_as_of`` and the model versions; the ``reasons`` column when the scoring pass gives it).
- **drift**: today's features and scores against the champion's validation snapshot; ``drift.json`` +
  ``drift.html`` in the publication, logged to the MLflow experiment ``monitoring``.
- **publish**: copy the snapshot into the publication, write its manifest, rename it into place, switch
  ``current``, prune old publications.

Idempotent: before any work, a run compares the request with the current publication — same date, same input
files (name, size, modification time), same champion versions — and does nothing when they match (``force``
redoes it). Exit codes (:attr:`RefreshResult.exit_code`): 0 published (or already published), 1 failed, 3
published with a drift alert.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.dataset import TABLES
from training import publish

log = logging.getLogger(__name__)

STEPS = ("validate", "snapshot", "train", "score", "drift", "publish")
RETRAIN_MODES = ("auto", "never", "always")
MODELS = ("churn", "clv")
EXIT_OK, EXIT_FAILED, EXIT_ALERT = 0, 1, 3


class RefreshStepError(RuntimeError):
    """A step failed; ``step`` names it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step


@dataclass
class RefreshResult:
    """What a refresh did."""

    status: str  # "published", "unchanged" or "failed"
    publication: publish.Publication | None = None
    failed_step: str | None = None
    error: str | None = None
    drift_status: str | None = None
    retrained: bool = False
    retrain_reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.status == "failed":
            return EXIT_FAILED
        return EXIT_ALERT if self.drift_status == "alert" else EXIT_OK


@dataclass
class _Run:
    """The state one refresh carries from step to step."""

    data_dir: Path
    run_id: str
    as_of_requested: date | None
    retrain: str
    with_reasons: bool
    thresholds: Any
    log_mlflow: bool
    train_options: dict
    say: Callable[[str], None]
    inputs_stat: dict
    brand: str
    staging: Path | None = None
    dataset: Any = None
    as_of: date | None = None
    snapshot: Any = None
    models: Any = None
    scores: pd.DataFrame | None = None
    report: Any = None
    precheck: Any = None  # the auto-retrain drift report, reused by the drift step when nothing was retrained
    drift_run_id: str | None = None
    retrained: bool = False
    retrain_reason: str | None = None
    moved: dict[str, int | None] = field(default_factory=dict)  # champions this run moved: name → previous
    notes: list[str] = field(default_factory=list)


# --- helpers --------------------------------------------------------------------------------------------------


def input_stat(data_dir: Path) -> dict[str, list[int]]:
    """``{file name: [size, mtime_ns]}`` of the contract tables in ``data_dir`` (the idempotence key)."""
    out = {}
    for name in TABLES:
        for suffix in (".parquet", ".csv"):
            path = Path(data_dir) / f"{name}{suffix}"
            if path.exists():
                st = path.stat()
                out[path.name] = [st.st_size, st.st_mtime_ns]
    return out


def champion_versions(brand: str) -> dict[str, str | None]:
    """``{kind: champion version}`` of the brand's churn and CLV models at their default horizons."""
    from training import registry

    return {kind: (None if (v := registry.champion_version(registry.model_name(brand, kind))) is None else str(v))
            for kind in MODELS}


def _new_run_id() -> str:
    import secrets

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def already_published(data_dir: Path, as_of: date | None, stat: dict, champions: dict) -> publish.Publication | None:
    """The current publication when it already answers this request (same date, input files and champions)."""
    try:
        current = publish.current_publication(data_dir)
    except (OSError, ValueError):
        return None
    if current is None:
        return None
    m = current.manifest
    wanted = as_of.isoformat() if as_of is not None else m.get("data_default_as_of")
    same = (m.get("as_of") == wanted and m.get("inputs_stat") == stat
            and {k: (None if v is None else str(v)) for k, v in current.model_versions.items()} == champions)
    return current if same else None


# --- the steps (module attributes, so a test can make any of them fail) ----------------------------------------


def step_validate(run: _Run) -> None:
    from features.contract import load_dataset
    from features.errors import InputError
    from training.train import default_as_of

    run.dataset = load_dataset(run.data_dir)
    run.as_of = run.as_of_requested or default_as_of(run.dataset)
    last_possible = (run.dataset.data_end + pd.Timedelta(days=1)).date()
    if run.as_of > last_possible:
        raise InputError(f"--as-of {run.as_of}: the data ends {run.dataset.data_end.date()}, so the newest "
                         f"snapshot possible is as of {last_possible}", field="--as-of")


def step_snapshot(run: _Run) -> None:
    import shutil

    from features.identity import resolve_identities
    from features.pii import check_pii_fingerprint
    from features.pipeline import build_snapshot, load_snapshot
    from features.snapshot_check import validate_snapshot

    path = run.data_dir / "features" / f"as_of={run.as_of.isoformat()}"
    fingerprint = run.dataset.fingerprint_dict()
    if (path / "manifest.json").exists():
        try:
            validate_snapshot(path)
            snap = load_snapshot(path)
        except Exception as exc:  # noqa: BLE001 - a broken snapshot is rebuilt below
            run.notes.append(f"snapshot {path} unreadable ({exc}); rebuilt")
        else:
            if snap.manifest.get("as_of") == run.as_of.isoformat() and snap.manifest.get("inputs") == fingerprint:
                check_pii_fingerprint(snap.manifest)
                run.snapshot = snap
                run.say(f"reusing snapshot {path}")
                return
    tmp = path.parent / f".{path.name}.{run.run_id}"
    shutil.rmtree(tmp, ignore_errors=True)
    run.say(f"building snapshot as of {run.as_of}")
    identity = resolve_identities(run.dataset, as_of=run.as_of).key_to_person
    try:
        build_snapshot(run.dataset, run.as_of, out_dir=tmp, identity=identity)
        validate_snapshot(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{run.run_id}"
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.snapshot = load_snapshot(path)


def _drift_report(run: _Run, models) -> Any:
    """Today's snapshot (and scores, when ``run.scores`` is set) against the champion's validation snapshot."""
    from training import drift, registry
    from training.scoring import score

    reference = drift.champion_as_of(registry.model_name(run.brand, "churn")) or run.as_of
    ref_snap, _ = drift.snapshot_for(run.data_dir, reference, lambda: run.dataset)
    cur_scores = run.scores
    if cur_scores is None:
        cur_scores = score(run.snapshot.features, models, as_of=run.as_of, with_intervals=False)
    ref_scores = score(ref_snap.features, models, as_of=reference, with_intervals=False)
    infos = {
        "reference": {"as_of": reference.isoformat(), "snapshot": str(ref_snap.path), "people": len(ref_snap.features),
                      "source": "champion churn validated as of"},
        "current": {"as_of": run.as_of.isoformat(), "snapshot": str(run.snapshot.path),
                    "people": len(run.snapshot.features)},
    }
    return drift.compute_drift(ref_snap.features, run.snapshot.features, thresholds=run.thresholds,
                               reference_scores=ref_scores, current_scores=cur_scores,
                               reference_info=infos["reference"], current_info=infos["current"],
                               models=models.versions)


def _champions(run: _Run):
    """The brand's champions, checked for scoring as of the run's date."""
    from training.scoring import load_champions

    return load_champions("champion", brand=run.brand, as_of=run.as_of, data_hint=str(run.data_dir))


def step_train(run: _Run) -> None:
    from training import registry, train

    before = champion_versions(run.brand)
    missing = [name for name, v in before.items() if v is None]
    if run.retrain == "never":
        if missing:
            raise LookupError(f"no champion {' or '.join(missing)} model and --retrain never: run with "
                              "--retrain auto (or `scrm train all`) first")
        run.retrain_reason = "--retrain never"
        return
    if run.retrain == "always":
        reason = "--retrain always"
    elif missing:
        reason = f"no champion {' or '.join(missing)} model yet"
    else:
        run.say("drift check against the champions' validation snapshot")
        run.precheck = _drift_report(run, _champions(run))
        if run.precheck.status != "alert":
            run.retrain_reason = f"drift {run.precheck.status}: champions kept"
            return
        reason = "drift alert"
    run.say(f"training ({reason})")
    run.precheck = None
    options = dict(run.train_options)
    results = train.train_all(run.dataset, run.as_of, brand=run.brand, **options)
    after = champion_versions(run.brand)
    run.moved = {registry.model_name(run.brand, kind): (None if before[kind] is None else int(before[kind]))
                 for kind in MODELS if after[kind] != before[kind]}
    run.retrained, run.retrain_reason = True, reason
    for name, result in results.items():
        d = result.decision
        if d is not None:
            run.notes.append(f"{name} v{result.version}: {d.decision}")


def step_score(run: _Run) -> None:
    from training.scoring import score

    run.models = _champions(run)
    run.say(f"scoring {len(run.snapshot.features):,} people")
    scores = score(run.snapshot.features, run.models, as_of=run.as_of, with_reasons=run.with_reasons)
    scores.insert(1, "feature_as_of", pd.Timestamp(run.as_of))
    scores["churn_model_version"] = run.models.churn_version
    scores["clv_model_version"] = run.models.clv_version
    scores.to_parquet(run.staging / publish.SCORES, index=False)
    run.scores = scores


def step_drift(run: _Run) -> None:
    from training import drift

    report = run.precheck if run.precheck is not None else _drift_report(run, run.models)
    _, html = drift.write_report(report, run.staging)
    if run.log_mlflow:
        run.drift_run_id = drift.log_drift(report, html_path=html, fingerprint=run.dataset.fingerprint_dict())
    run.report = report


def step_publish(run: _Run) -> publish.Publication:
    from training import tracking

    publish.copy_snapshot(run.snapshot.path, run.staging)
    eligible = run.scores["eligible"].astype(bool)
    manifest = {
        "as_of": run.as_of.isoformat(),
        "run": run.run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_versions": run.models.versions,
        "data_fingerprint": tracking.data_fingerprint(run.dataset.fingerprint_dict()),
        "data_default_as_of": (run.dataset.data_end + pd.Timedelta(days=1)).date().isoformat(),
        "inputs_stat": run.inputs_stat,
        "people": len(run.scores),
        "eligible": int(eligible.sum()),
        "with_reasons": "reason_1_feature" in run.scores.columns,
        "drift_status": run.report.status,
        "drift_mlflow_run": run.drift_run_id,
        "retrained": run.retrained,
        "retrain_reason": run.retrain_reason,
        "snapshot_source": str(run.snapshot.path),
        "notes": run.notes,
    }
    name = f"{run.as_of.isoformat()}-{run.run_id}"
    pub = publish.finalize(run.staging, name, manifest)
    run.staging = None  # renamed: nothing left to discard
    publish.switch_current(run.data_dir, name)
    publish.prune(run.data_dir)
    return pub


def _restore_champions(run: _Run) -> None:
    """Move back the champion aliases this run's training moved (the run failed after the gate)."""
    from training import registry

    for name, previous in run.moved.items():
        if previous is None:
            run.notes.append(f"{name}: the run's version became the first champion; there is none to restore")
            continue
        try:
            registry.promote(name, previous, brand=run.brand)
            run.notes.append(f"{name}: champion restored to v{previous}")
        except Exception as exc:  # noqa: BLE001 - reported, the failure itself is what the caller sees
            run.notes.append(f"{name}: could not restore champion v{previous}: {exc}")


# --- the job --------------------------------------------------------------------------------------------------


def refresh(data_dir: str | Path, *, as_of: date | None = None, retrain: str = "auto", with_reasons: bool = True,
            thresholds=None, log_mlflow: bool = True, force: bool = False, train_options: dict | None = None,
            progress: Callable[[str], None] | None = None, brand: str | None = None) -> RefreshResult:
    """Run the nightly refresh of ``data_dir`` (see the module docstring).

    Parameters
    ----------
    data_dir : path
        The data directory (contract tables; ``features/`` and ``published/`` are written under it).
    as_of : date, optional
        Snapshot date (default: the day after the last order or event).
    retrain : {"auto", "never", "always"}
        When to train new versions (they still go through the promotion gate).
    with_reasons : bool
        Ask the batch scoring pass for the churn reasons column.
    thresholds : training.drift.DriftThresholds, optional
        Drift levels (default: ``DriftThresholds()``).
    log_mlflow : bool
        Log the drift report to the MLflow experiment ``monitoring``.
    force : bool
        Redo the run even when the current publication already answers it.
    train_options : dict, optional
        Keyword arguments of ``training.train.train_all`` (``n_cutoffs``, ``step_days``, ``random_state``, ...).
    progress : callable, optional
        Called with a short message before each piece of work.
    brand : str, optional
        The brand id (``--brand``); default: ``DATA/brand.yaml`` or the directory's name (``features.brand``).

    Returns
    -------
    RefreshResult
        Never raises for a failed step (the result says which and why); ``RefreshBusyError`` is returned as a
        failure too.
    """
    from training import drift

    if retrain not in RETRAIN_MODES:
        raise ValueError(f"retrain must be one of {RETRAIN_MODES}, got {retrain!r}")
    from features.brand import load_brand

    data_dir = Path(data_dir)
    brand = load_brand(data_dir, brand).brand
    say = progress or (lambda _msg: None)
    try:
        with publish.refresh_lock(data_dir):
            return _locked(data_dir, as_of=as_of, retrain=retrain, with_reasons=with_reasons,
                           thresholds=thresholds or drift.DriftThresholds(), log_mlflow=log_mlflow, force=force,
                           train_options=train_options or {}, say=say, brand=brand)
    except publish.RefreshBusyError as exc:
        return RefreshResult("failed", failed_step="lock", error=str(exc))


def _locked(data_dir: Path, *, as_of, retrain, with_reasons, thresholds, log_mlflow, force, train_options,
            say, brand) -> RefreshResult:
    stat = input_stat(data_dir)
    if not force:
        current = already_published(data_dir, as_of, stat, champion_versions(brand))
        if current is not None:
            say(f"already published: {current.name}")
            return RefreshResult("unchanged", publication=current, drift_status=current.drift_status,
                                 retrain_reason=current.manifest.get("retrain_reason"),
                                 notes=[f"{current.name} already serves this date, these inputs and champions"])
    run = _Run(data_dir, _new_run_id(), as_of, retrain, with_reasons, thresholds, log_mlflow, train_options,
               say, stat, brand)
    run.staging = publish.stage(data_dir, run.run_id)
    seconds: dict[str, float] = {}
    module = sys.modules[__name__]
    step = STEPS[0]
    try:
        for step in STEPS:
            started = time.perf_counter()
            say(step)
            out = getattr(module, f"step_{step}")(run)
            seconds[step] = round(time.perf_counter() - started, 3)
    except Exception as exc:  # noqa: BLE001 - any failure: nothing published, reported with its step
        log.exception("refresh of %s failed at step %s", data_dir, step)
        if run.staging is not None:
            publish.discard(run.staging)
        _restore_champions(run)
        return RefreshResult("failed", failed_step=step, error=f"{type(exc).__name__}: {exc}",
                             retrained=run.retrained, retrain_reason=run.retrain_reason, seconds=seconds,
                             notes=run.notes)
    return RefreshResult("published", publication=out, drift_status=run.report.status, retrained=run.retrained,
                         retrain_reason=run.retrain_reason, seconds=seconds, notes=run.notes)


__all__ = ["EXIT_ALERT", "EXIT_FAILED", "EXIT_OK", "RETRAIN_MODES", "STEPS", "RefreshResult", "refresh"]
