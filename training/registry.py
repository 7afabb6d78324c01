"""The MLflow model registry: registered versions, the ``champion`` / ``challenger`` aliases and loading models.

A registered model is one brand's model of one kind and horizon: :func:`model_name` gives
``<brand>.churn_90d``, ``<brand>.clv_365d``, ``<brand>.lookalike_<n>d``; the brand, kind and horizon are also
tags of the registered model and of each version, so nothing compares or serves models across brands or
horizons.

- :func:`register_version` adds a version from a logged model, tagged with its run's brand, horizon, as_of,
  validation window, data and PII-key fingerprints, the SHA-256 of its artifacts and ``gate_decision=not_gated``;
- :func:`promotion_gate` moves alias ``champion`` only to a strictly better version validated on a comparable
  window (otherwise the new version becomes ``challenger``), under the registry lock
  (:func:`training.integrity.registry_lock`); :func:`promote` and :func:`rollback` move it by hand, and every
  move is recorded in the registered-model tag ``champion_history``;
- :func:`load_model` loads a version (by alias or number) back as the original estimator, after checking its
  artifacts' SHA-256; :func:`load_for_scoring` also refuses a version of another brand or horizon, or trained
  after the scoring date.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from features.brand import check_brand_id
from training.integrity import ArtifactIntegrityError, artifact_sha256, registry_lock
from training.tracking import client, tracking_uri

REGISTERED_MODELS = ("churn", "clv")  # the kinds `scrm train` registers (each per brand and horizon)
KINDS = ("churn", "clv", "lookalike", "uplift")
DEFAULT_HORIZON_DAYS = {"churn": 90, "clv": 365, "uplift": 14}  # uplift: its outcome window
CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_GATE = "scrm.gate_decision"
TAG_BRAND = "scrm.brand"
TAG_KIND = "scrm.kind"
TAG_HORIZON = "scrm.horizon_days"
TAG_AS_OF = "scrm.as_of"
TAG_VALIDATION = "scrm.validation_cutoff"
TAG_DATA = "scrm.data_fingerprint"
TAG_PII = "scrm.pii_key_fingerprint"
TAG_SHA256 = "scrm.artifact_sha256"
#: Run tags copied onto a registered version (what the gate and the loaders check).
VERSION_TAGS = (TAG_BRAND, TAG_KIND, TAG_HORIZON, TAG_AS_OF, TAG_VALIDATION, TAG_DATA, TAG_PII)

GATE_PROMOTED = "promoted"
GATE_CHALLENGER = "challenger"
GATE_FIRST_CHAMPION = "first_champion"
GATE_NOT_GATED = "not_gated"  # registered, gate not run (yet): a command that failed before its gate

HISTORY_TAG = "champion_history"
_HISTORY_MAX = 100  # entries kept in the registered-model tag (tag values are length-limited)
_NAME = re.compile(r"^(?P<brand>[A-Za-z0-9][A-Za-z0-9_-]{0,63})\.(?P<kind>[a-z]+)_(?P<horizon>[0-9]+)d$")


class ModelIdentityError(LookupError):
    """A version that belongs to another brand, kind or horizon than asked, or is unusable for the date."""


@dataclass(frozen=True)
class ModelIdentity:
    """What a registered model is: one brand's model of one kind over one horizon."""

    brand: str
    kind: str
    horizon_days: int

    @property
    def name(self) -> str:
        return model_name(self.brand, self.kind, self.horizon_days)


def model_name(brand: str, kind: str, horizon_days: int | None = None) -> str:
    """The registered model name of a brand's model: ``<brand>.<kind>_<horizon>d`` (e.g. ``acme.churn_90d``).

    ``horizon_days`` defaults to the kind's default (churn 90, CLV 365); the one function every caller uses to
    name or look up a model.
    """
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    if horizon_days is None:
        if kind not in DEFAULT_HORIZON_DAYS:
            raise ValueError(f"give the horizon of a {kind} model")
        horizon_days = DEFAULT_HORIZON_DAYS[kind]
    horizon_days = int(horizon_days)
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    return f"{check_brand_id(brand)}.{kind}_{horizon_days}d"


def parse_model_name(name: str) -> ModelIdentity | None:
    """The identity in a name made by :func:`model_name`, or None for other names (e.g. the old ``churn``)."""
    m = _NAME.match(str(name))
    if m is None or m["kind"] not in KINDS:
        return None
    return ModelIdentity(m["brand"], m["kind"], int(m["horizon"]))


def resolve_name(model: str, *, brand: str | None = None, horizon_days: int | None = None) -> str:
    """A registered model name from what a user typed: a full name, or a kind with ``brand`` (and horizon).

    Raises
    ------
    ModelIdentityError
        A full name whose brand or horizon differs from the ``brand`` / ``horizon_days`` given.
    """
    identity = parse_model_name(model)
    if identity is None:
        if model in KINDS and brand is not None:
            return model_name(brand, model, horizon_days)
        if model in KINDS:
            raise ModelIdentityError(f"give the brand of the {model} model (--brand B or --data D), or its full "
                                     f"registered name such as {model_name('BRAND', model, horizon_days)}")
        return model
    if brand is not None and identity.brand != brand:
        raise ModelIdentityError(f"{model} is brand {identity.brand}'s model, not brand {brand}'s: "
                                 f"use {model_name(brand, identity.kind, identity.horizon_days)}")
    if horizon_days is not None and identity.horizon_days != int(horizon_days):
        raise ModelIdentityError(f"{model} predicts over {identity.horizon_days} days, not {horizon_days}: "
                                 f"use {model_name(identity.brand, identity.kind, horizon_days)}")
    return model


def _identity_tags(identity: ModelIdentity) -> dict[str, str]:
    return {TAG_BRAND: identity.brand, TAG_KIND: identity.kind, TAG_HORIZON: str(identity.horizon_days)}


def _check_tags_match(name: str, tags: dict, what: str) -> None:
    """Refuse ``tags`` (of a run or version) whose brand/kind/horizon differ from those in ``name``."""
    identity = parse_model_name(name)
    if identity is None:
        return
    for key, expected in _identity_tags(identity).items():
        actual = tags.get(key)
        if actual is not None and str(actual) != expected:
            raise ModelIdentityError(
                f"{what} has {key}={actual}, but {name} is for {key}={expected}: a model of another brand or "
                f"horizon is never registered, gated or promoted as {name}"
            )


def _locked():
    return registry_lock(tracking_uri())


def _download(model_uri: str, dst: str) -> str:
    """Download a model's files to ``dst`` (no progress bar unless MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR says so)."""
    from mlflow.artifacts import download_artifacts

    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ.setdefault(key, "false")
    try:
        return download_artifacts(artifact_uri=model_uri, dst_path=dst)
    finally:
        if saved is None:
            os.environ.pop(key, None)


def _logged_model_sha256(model_uri: str) -> str:
    with tempfile.TemporaryDirectory(prefix="scrm-sha-") as tmp:
        return artifact_sha256(_download(model_uri, tmp))


def register_version(name: str, info, run_id: str):
    """Create a new version of registered model ``name`` from a logged model (quietly, no alias moved).

    The version carries the run's identity tags (brand, kind, horizon, as_of, validation cutoff, data and
    PII-key fingerprints), ``scrm.artifact_sha256`` of the logged model's files and ``gate_decision=not_gated``
    until :func:`promotion_gate` decides.

    Raises
    ------
    ModelIdentityError
        The run's brand, kind or horizon differ from those in ``name``.
    """
    from mlflow.exceptions import MlflowException

    c = client()
    run_tags = c.get_run(run_id).data.tags if run_id else {}
    _check_tags_match(name, run_tags, f"run {run_id}")
    identity = parse_model_name(name)
    try:
        c.get_registered_model(name)
    except MlflowException:
        kind = identity.kind if identity is not None else name
        try:
            c.create_registered_model(name, description=_MODEL_DESCRIPTIONS.get(kind),
                                      tags=_identity_tags(identity) if identity is not None else None)
        except MlflowException:
            c.get_registered_model(name)  # created concurrently; re-raise if it really is missing
    tags = {k: run_tags[k] for k in VERSION_TAGS if run_tags.get(k)}
    if identity is not None:
        tags.update(_identity_tags(identity))
    tags[TAG_SHA256] = _logged_model_sha256(f"models:/{info.model_id}")
    tags["gate_decision"] = GATE_NOT_GATED
    mv = c.create_model_version(
        name, source=f"models:/{info.model_id}", run_id=run_id, model_id=info.model_id, tags=tags
    )
    if run_id:
        c.set_tag(run_id, TAG_GATE, GATE_NOT_GATED)
    return mv


_MODEL_DESCRIPTIONS = {
    "churn": "P(no paid order in the next horizon_days) per person; alias champion serves production.",
    "clv": "Expected spend in the next horizon_days per person with p10/p90; alias champion serves production.",
    "uplift": "Change in P(paid order within horizon_days) if contacted, learnt from campaigns with a control "
              "group; alias champion serves /target objective incremental_margin.",
}


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version loaded back: our original estimator plus the MLflow pyfunc around it."""

    name: str
    version: int
    run_id: str
    estimator: Any
    pyfunc: Any
    alias: str | None = None
    tags: dict = field(default_factory=dict)  # the version's tags (brand, horizon_days, as_of, ...)

    @property
    def horizon_days(self) -> int | None:
        raw = self.tags.get(TAG_HORIZON)
        return int(raw) if raw else None


def _resolve_version(c, name: str, alias: str | None, version: int | str | None):
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            return c.get_model_version(name, str(version))
        if not alias:
            raise ValueError("give an alias or a version")
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise LookupError(
            f"registered model {name!r} has no {what} in {tracking_uri()}: train one with `scrm train` "
            f"(MLflow said: {exc.message})"
        ) from exc


def load_model(name: str, alias: str | None = CHAMPION, *, version: int | str | None = None) -> LoadedModel:
    """Load a registered model by alias (default ``champion``) or by explicit ``version``.

    The version's files are downloaded and their SHA-256 compared with the ``scrm.artifact_sha256`` tag
    recorded at registration *before* the pickle is read: a replaced or edited artifact is never unpickled.

    Parameters
    ----------
    name : str
        Registered model name (``acme.churn_90d``; see :func:`model_name`).
    alias : str or None, default "champion"
        Alias to resolve; ignored when ``version`` is given.
    version : int or str, optional
        Explicit version number.

    Returns
    -------
    LoadedModel
        ``estimator`` is the original Python object that was logged (via ``unwrap_python_model()``).

    Raises
    ------
    LookupError
        When the registered model, alias or version does not exist.
    ArtifactIntegrityError
        (a ``LookupError``) The artifacts' SHA-256 differs from the recorded one, or none was recorded.
    """
    c = client()
    mv = _resolve_version(c, name, alias, version)
    if version is not None:
        alias = None
    return _load_version(mv, alias)


def _load_version(mv, alias: str | None) -> LoadedModel:
    import mlflow.pyfunc

    name, number = mv.name, int(mv.version)
    expected = (mv.tags or {}).get(TAG_SHA256)
    if not expected:
        raise ArtifactIntegrityError(
            f"{name} v{number} has no {TAG_SHA256} tag (registered before artifact checksums, or the tag was "
            "removed): it is not loaded; train a new version with `scrm train`"
        )
    with tempfile.TemporaryDirectory(prefix="scrm-model-") as tmp:
        local = _download(f"models:/{name}/{number}", tmp)
        actual = artifact_sha256(local)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"{name} v{number}: the artifacts' SHA-256 is {actual[:16]}…, but {expected[:16]}… was recorded "
                f"at registration — the files under {mv.source} were changed after training. The model is not "
                "loaded (a tampered pickle could run code); restore the files or train a new version"
            )
        pyfunc = mlflow.pyfunc.load_model(local)
    wrapper = pyfunc.unwrap_python_model()
    estimator = getattr(wrapper, "estimator", wrapper)
    return LoadedModel(name=name, version=number, run_id=mv.run_id, estimator=estimator, pyfunc=pyfunc,
                       alias=alias, tags=dict(mv.tags or {}))


def load_for_scoring(brand: str, kind: str, horizon_days: int | None = None, *, as_of: date | None = None,
                     alias: str = CHAMPION, data_hint: str = "D") -> LoadedModel:
    """The ``alias`` version of ``brand``'s ``kind`` model over ``horizon_days``, checked for scoring ``as_of``.

    Raises
    ------
    LookupError
        No such model or alias (the message names the `scrm train` command that creates it).
    ModelIdentityError
        The version's tags name another brand, kind or horizon, or it was trained as of a date after ``as_of``
        (its features and labels would come from after the scoring date).
    ArtifactIntegrityError
        Its artifacts changed since registration.
    """
    name = model_name(brand, kind, horizon_days)
    identity = parse_model_name(name)
    when = as_of.isoformat() if as_of is not None else "DATE"
    command = "train uplift" if kind == "uplift" else "train all"
    c = client()
    try:
        mv = _resolve_version(c, name, alias, None)
    except LookupError:
        raise LookupError(
            f"brand {brand} has no {alias} {kind} model over {identity.horizon_days} days ({name}) in "
            f"{tracking_uri()}: create it with `scrm {command} --data {data_hint} --as-of {when}` (brand {brand}), "
            "or set MLFLOW_TRACKING_URI to the store that holds it"
        ) from None
    tags = mv.tags or {}
    for key, expected in _identity_tags(identity).items():
        if tags.get(key) != expected:
            raise ModelIdentityError(
                f"{name} v{mv.version} has {key}={tags.get(key)!r}, not {expected!r}: it was not trained for "
                f"brand {brand}'s {kind} over {identity.horizon_days} days; train one with "
                f"`scrm train all --data {data_hint} --as-of {when}`"
            )
    trained = tags.get(TAG_AS_OF)
    if as_of is not None and trained and date.fromisoformat(trained[:10]) > as_of:
        raise ModelIdentityError(
            f"{name} v{mv.version} was trained as of {trained[:10]}, after the scoring date {as_of}: it learned "
            f"from what happened after {as_of}. Score as of {trained[:10]} or later, or train a model as of "
            f"{as_of} in a separate store (`MLFLOW_TRACKING_URI=... scrm train all --data {data_hint} --as-of "
            f"{as_of}`) and score with it"
        )
    _check_pii_key(mv, name)
    return _load_version(mv, alias)


def _check_pii_key(mv, name: str) -> None:
    """Refuse a model trained under another PII key: its persons were merged by other phone/unionid hashes."""
    from features.pii import PII_KEY_ENV, pii_key_fingerprint

    expected = (mv.tags or {}).get(TAG_PII)
    current = pii_key_fingerprint(required=False) if expected else None
    if expected and current and current != expected:
        raise ModelIdentityError(
            f"{name} v{mv.version} was trained under the PII key with fingerprint {expected}, but {PII_KEY_ENV} "
            f"now has fingerprint {current}: identities would be linked differently from training. Set "
            f"{PII_KEY_ENV} to the key the model was trained with, or retrain under the new key (`scrm train`)"
        )


@dataclass(frozen=True)
class GateDecision:
    """Outcome of :func:`promotion_gate`."""

    name: str
    version: int
    decision: str  # promoted | challenger | first_champion
    metric: str
    value: float
    higher_is_better: bool
    champion_version: int | None  # the champion compared against (None for first_champion)
    champion_value: float | None
    reason: str

    @property
    def promoted(self) -> bool:
        """True when the new version is now the champion."""
        return self.decision in (GATE_PROMOTED, GATE_FIRST_CHAMPION)


@dataclass(frozen=True)
class AliasChange:
    """A hand move of ``champion`` (:func:`promote`, :func:`rollback`)."""

    name: str
    version: int
    previous_version: int | None
    action: str  # promote | rollback
    by: str
    at: str


def _who() -> str:
    user = os.environ.get("SCRM_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alias_version(c, name: str, alias: str):
    """The model version behind ``alias``, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_version(name: str) -> int | None:
    """The version number holding alias ``champion``, or None when there is none (or no such model)."""
    mv = _alias_version(client(), name, CHAMPION)
    return int(mv.version) if mv is not None else None


def challenger_version(name: str) -> int | None:
    """The version number holding alias ``challenger``, or None."""
    mv = _alias_version(client(), name, CHALLENGER)
    return int(mv.version) if mv is not None else None


def champion_history(name: str) -> list[dict]:
    """Every recorded move of ``champion``: dicts with ``version``, ``action``, ``by``, ``at`` (oldest first)."""
    c = client()
    try:
        rm = c.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - MlflowException: not found
        raise LookupError(f"no registered model {name!r}") from exc
    raw = rm.tags.get(HISTORY_TAG)
    return json.loads(raw) if raw else []


def _get_version(c, name: str, version: int | str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version(name, str(int(version)))
    except (MlflowException, ValueError) as exc:
        raise LookupError(f"registered model {name!r} has no version {version!r}") from exc


def _set_champion(c, name: str, version: int, *, action: str) -> tuple[str, str]:
    """Move ``champion`` to ``version`` and record who/when on the version and in the history tag."""
    by, at = _who(), _now()
    c.set_registered_model_alias(name, CHAMPION, str(version))
    challenger = _alias_version(c, name, CHALLENGER)
    if challenger is not None and int(challenger.version) == version:
        c.delete_registered_model_alias(name, CHALLENGER)
    c.set_model_version_tag(name, str(version), "champion_set_by", by)
    c.set_model_version_tag(name, str(version), "champion_set_at", at)
    c.set_model_version_tag(name, str(version), "champion_set_action", action)
    history = champion_history(name)
    history.append({"version": int(version), "action": action, "by": by, "at": at})
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-_HISTORY_MAX:]))
    c.set_registered_model_tag(name, "champion_set_by", by)
    c.set_registered_model_tag(name, "champion_set_at", at)
    return by, at


def _comparable(champion, new) -> str | None:
    """Why the champion's logged validation figure cannot be compared with the new one (None when it can).

    Comparable means validated on the same window (``scrm.validation_cutoff``) of the same data
    (``scrm.data_fingerprint``); versions without these tags (registered directly, not by `scrm train`) are
    taken as comparable.
    """
    ct, nt = champion.tags or {}, new.tags or {}
    for key, what in ((TAG_VALIDATION, "validation cutoff"), (TAG_DATA, "data fingerprint")):
        if ct.get(key) != nt.get(key):
            return (f"champion v{champion.version} was validated with {what} {ct.get(key) or 'unknown'}, the new "
                    f"version with {nt.get(key) or 'unknown'}")
    return None


def _newer_than(champion, new) -> bool:
    """True when the champion was trained as of a later date than the new version (it saw the new window)."""
    c_as_of, n_as_of = (champion.tags or {}).get(TAG_AS_OF), (new.tags or {}).get(TAG_AS_OF)
    return bool(c_as_of and n_as_of and c_as_of[:10] > n_as_of[:10])


def promotion_gate(
    name: str,
    version: int | str,
    *,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    rescore: Callable[[int], float] | None = None,
) -> GateDecision:
    """Compare a new registered version with the current ``champion`` and move the aliases, atomically.

    The whole read-compare-move runs under the registry lock (:func:`training.integrity.registry_lock`), so two
    gates finishing together are serialised: the second one compares with the first one's outcome, the better
    version ends up champion and the champion history keeps both entries.

    The champion is the one of the same registered model: same brand, kind and horizon (a version whose tags
    say otherwise is refused). Its figure is its run's metric ``metric`` when both were validated on the same
    window of the same data; otherwise ``rescore(champion_version)`` computes it on the new version's
    validation window (when the champion was not trained after the new version's as_of), and without
    ``rescore`` the new version becomes ``challenger`` (the figures are not comparable). The new version becomes
    ``champion`` only when strictly better (or when there is no champion yet: ``first_champion``); a NaN
    ``value`` never wins; a champion without the metric is kept.

    The decision and both figures are logged on the new version's run: tag ``scrm.gate_decision``, tags
    ``scrm.gate_metric`` / ``scrm.gate_champion_version`` / ``scrm.gate_basis``, metrics ``gate.new_value`` and
    ``gate.champion_value``; and on the model version (tag ``gate_decision``, replacing ``not_gated``).

    Parameters
    ----------
    name : str
        Registered model name (:func:`model_name`).
    version : int or str
        The new version (e.g. ``model_info.registered_model_version``).
    metric : str
        Validation metric key on the runs, e.g. ``"val.auc"``.
    value : float
        The new version's value of ``metric``.
    higher_is_better : bool, default True
        Direction of ``metric`` (e.g. ``False`` for ``val.brier``).
    rescore : callable, optional
        ``rescore(champion_version) -> float``: the champion's ``metric`` on the new version's validation rows.

    Returns
    -------
    GateDecision

    Raises
    ------
    LookupError
        Unknown model or version; ``ModelIdentityError`` when the version's brand/kind/horizon differ from the
        model's.
    ValueError
        When the new version's run ended ``FAILED``/``KILLED``: a failed run is never gated.
    """
    c = client()
    new = _get_version(c, name, version)
    version = int(new.version)
    _check_tags_match(name, new.tags or {}, f"{name} v{version}")
    run = c.get_run(new.run_id) if new.run_id else None
    if run is not None and run.info.status in ("FAILED", "KILLED"):
        raise ValueError(
            f"{name} version {version} comes from run {new.run_id} which ended {run.info.status}; "
            "it is not eligible for promotion"
        )
    value = float(value)
    basis = "logged"
    with _locked():
        current = _alias_version(c, name, CHAMPION)
        champ_version: int | None = None
        champ_value: float | None = None
        if current is None or int(current.version) == version:
            decision, reason = GATE_FIRST_CHAMPION, "no champion yet"
            if current is not None:
                reason = "already the champion"
                decision = GATE_PROMOTED
        else:
            champ_version = int(current.version)
            apart = _comparable(current, new)
            if apart is None:
                champ_run = c.get_run(current.run_id) if current.run_id else None
                raw = champ_run.data.metrics.get(metric) if champ_run is not None else None
                champ_value = float(raw) if raw is not None else None
            elif rescore is not None and not _newer_than(current, new):
                basis = "rescored"
                try:
                    champ_value = float(rescore(champ_version))
                except Exception as exc:  # noqa: BLE001 - an old champion that cannot score keeps its place
                    apart = f"{apart}, and it could not be re-scored on the new window ({type(exc).__name__}: {exc})"
                    basis = "not_comparable"
            else:
                basis = "not_comparable"
            if math.isnan(value):
                decision, reason = GATE_CHALLENGER, f"new {metric} is NaN"
            elif basis == "not_comparable":
                decision = GATE_CHALLENGER
                reason = f"not comparable: {apart}" + (
                    f" and it was trained as of a later date ({current.tags.get(TAG_AS_OF)})"
                    if _newer_than(current, new) else "")
            elif champ_value is None or math.isnan(champ_value):
                decision, reason = GATE_CHALLENGER, f"champion v{champ_version} has no {metric} to compare with"
            else:
                better = value > champ_value if higher_is_better else value < champ_value
                word = "higher" if higher_is_better else "lower"
                where = " (champion re-scored on the new validation window)" if basis == "rescored" else ""
                if better:
                    decision = GATE_PROMOTED
                    reason = f"{metric} {value:.6g} vs champion {champ_value:.6g}{where} ({word} is better)"
                else:
                    decision = GATE_CHALLENGER
                    reason = (f"{metric} {value:.6g} not better than champion {champ_value:.6g}{where} "
                              f"({word} is better)")

        if decision in (GATE_PROMOTED, GATE_FIRST_CHAMPION):
            if current is None or int(current.version) != version:
                _set_champion(c, name, version, action="gate")
        else:
            c.set_registered_model_alias(name, CHALLENGER, str(version))
        c.set_model_version_tag(name, str(version), "gate_decision", decision)
        c.set_model_version_tag(name, str(version), "gate_reason", reason[:500])

    if new.run_id:
        c.set_tag(new.run_id, TAG_GATE, decision)
        c.set_tag(new.run_id, "scrm.gate_metric", metric)
        c.set_tag(new.run_id, "scrm.gate_higher_is_better", str(higher_is_better).lower())
        c.set_tag(new.run_id, "scrm.gate_reason", reason[:500])
        c.set_tag(new.run_id, "scrm.gate_basis", basis)
        if champ_version is not None:
            c.set_tag(new.run_id, "scrm.gate_champion_version", str(champ_version))
        if not math.isnan(value):
            c.log_metric(new.run_id, "gate.new_value", value)
        if champ_value is not None and not math.isnan(champ_value):
            c.log_metric(new.run_id, "gate.champion_value", champ_value)
    return GateDecision(
        name=name,
        version=version,
        decision=decision,
        metric=metric,
        value=value,
        higher_is_better=higher_is_better,
        champion_version=champ_version,
        champion_value=champ_value,
        reason=reason,
    )


def promote(name: str, version: int | str, *, brand: str | None = None,
            horizon_days: int | None = None) -> AliasChange:
    """Make ``version`` the ``champion`` by hand (``scrm promote``), recording who and when.

    ``brand`` / ``horizon_days``, when given, are what the caller expects the model to be (the brand of the
    data directory, the horizon asked for): a model or version of another brand or horizon is refused.

    Raises
    ------
    LookupError
        Unknown model or version; ``ModelIdentityError`` for a model or version of another brand or horizon.
    """
    identity = parse_model_name(name)
    if identity is not None and (brand is not None or horizon_days is not None):
        resolve_name(name, brand=brand, horizon_days=horizon_days)  # refuses another brand or horizon
    c = client()
    mv = _get_version(c, name, version)
    _check_tags_match(name, mv.tags or {}, f"{name} v{mv.version}")
    if brand is not None and (mv.tags or {}).get(TAG_BRAND) not in (None, brand):
        raise ModelIdentityError(f"{name} v{mv.version} was trained for brand {mv.tags[TAG_BRAND]}, not {brand}")
    with _locked():
        previous = champion_version(name)
        by, at = _set_champion(c, name, int(mv.version), action="promote")
    return AliasChange(name, int(mv.version), previous, "promote", by, at)


def _champion_stack(history: list[dict]) -> list[int]:
    """Replay the history: gate/promote push a champion, rollback pops back to the previous one."""
    stack: list[int] = []
    for entry in history:
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != int(entry["version"]):
                stack.append(int(entry["version"]))
        else:
            stack.append(int(entry["version"]))
    return stack


def rollback(name: str) -> AliasChange:
    """Move ``champion`` back to the version that was champion before the current one (``scrm rollback``).

    Repeated rollbacks keep going back in time (v1 → v2 → v3, rollback → v2, rollback → v1).

    Raises
    ------
    LookupError
        Unknown model, or no earlier champion to go back to.
    """
    with _locked():
        return _rollback(name)


def _rollback(name: str) -> AliasChange:
    c = client()
    current = champion_version(name)
    if current is None:
        raise LookupError(f"registered model {name!r} has no champion to roll back")
    stack = _champion_stack(champion_history(name))
    if stack and stack[-1] != current:  # alias moved outside this module: treat the current one as on top
        stack.append(current)
    earlier = [v for v in stack[:-1] if v != current]
    if not earlier:
        raise LookupError(f"registered model {name!r}: no earlier champion than version {current} to roll back to")
    target = earlier[-1]
    _get_version(c, name, target)
    by, at = _set_champion(c, name, target, action="rollback")
    return AliasChange(name, target, current, "rollback", by, at)
