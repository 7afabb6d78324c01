"""The MLflow model registry: registered versions, the ``champion`` / ``challenger`` aliases and loading models.

- :func:`register_version` adds a version of a registered model (``churn``, ``clv``) from a logged model;
- :func:`promotion_gate` moves alias ``champion`` only to a strictly better version (otherwise the new version
  becomes ``challenger``), :func:`promote` and :func:`rollback` move it by hand, and every move is recorded in
  the registered-model tag ``champion_history``;
- :func:`load_model` loads a version (by alias or number) back as the original estimator.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from training.tracking import client, tracking_uri

REGISTERED_MODELS = ("churn", "clv")
CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_GATE = "scrm.gate_decision"

GATE_PROMOTED = "promoted"
GATE_CHALLENGER = "challenger"
GATE_FIRST_CHAMPION = "first_champion"

HISTORY_TAG = "champion_history"
_HISTORY_MAX = 100  # entries kept in the registered-model tag (tag values are length-limited)


def register_version(name: str, info, run_id: str):
    """Create a new version of registered model ``name`` from a logged model (quietly, no alias moved)."""
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name, description=_MODEL_DESCRIPTIONS.get(name))
        except MlflowException:
            c.get_registered_model(name)  # created concurrently; re-raise if it really is missing
    return c.create_model_version(
        name, source=f"models:/{info.model_id}", run_id=run_id, model_id=info.model_id
    )


_MODEL_DESCRIPTIONS = {
    "churn": "P(no paid order in the next horizon_days) per person; alias champion serves production.",
    "clv": "Expected spend in the next horizon_days per person with p10/p90; alias champion serves production.",
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


def load_model(name: str, alias: str | None = CHAMPION, *, version: int | str | None = None) -> LoadedModel:
    """Load a registered model by alias (default ``champion``) or by explicit ``version``.

    Parameters
    ----------
    name : str
        Registered model name (``churn``, ``clv``).
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
    """
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        if version is not None:
            mv = c.get_model_version(name, str(version))
            alias = None
        else:
            if not alias:
                raise ValueError("give an alias or a version")
            mv = c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise LookupError(
            f"registered model {name!r} has no {what} in {tracking_uri()}: train one with `scrm train` "
            f"(MLflow said: {exc.message})"
        ) from exc
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    wrapper = pyfunc.unwrap_python_model()
    estimator = getattr(wrapper, "estimator", wrapper)
    return LoadedModel(
        name=name, version=int(mv.version), run_id=mv.run_id, estimator=estimator, pyfunc=pyfunc, alias=alias
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


def promotion_gate(
    name: str,
    version: int | str,
    *,
    metric: str,
    value: float,
    higher_is_better: bool = True,
) -> GateDecision:
    """Compare a new registered version with the current ``champion`` and move the aliases.

    The champion's figure is read from its run's metric ``metric``. The new version becomes ``champion``
    only when it is strictly better (or when there is no champion yet: ``first_champion``); otherwise it
    becomes ``challenger`` and ``champion`` is untouched. A NaN ``value`` never wins; a champion run without
    the metric is kept (the new version cannot be shown to be better).

    The decision and both figures are logged on the new version's run: tag ``scrm.gate_decision``, tags
    ``scrm.gate_metric`` / ``scrm.gate_champion_version``, metrics ``gate.new_value`` and
    ``gate.champion_value``; and on the model version (tag ``gate_decision``).

    Parameters
    ----------
    name : str
        Registered model name.
    version : int or str
        The new version (e.g. ``model_info.registered_model_version``).
    metric : str
        Validation metric key on the runs, e.g. ``"val.auc"``.
    value : float
        The new version's value of ``metric``.
    higher_is_better : bool, default True
        Direction of ``metric`` (e.g. ``False`` for ``val.brier``).

    Returns
    -------
    GateDecision

    Raises
    ------
    LookupError
        Unknown model or version.
    ValueError
        When the new version's run ended ``FAILED``/``KILLED``: a failed run is never gated.
    """
    c = client()
    new = _get_version(c, name, version)
    version = int(new.version)
    run = c.get_run(new.run_id) if new.run_id else None
    if run is not None and run.info.status in ("FAILED", "KILLED"):
        raise ValueError(
            f"{name} version {version} comes from run {new.run_id} which ended {run.info.status}; "
            "it is not eligible for promotion"
        )
    value = float(value)
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
        champ_run = c.get_run(current.run_id) if current.run_id else None
        raw = champ_run.data.metrics.get(metric) if champ_run is not None else None
        champ_value = float(raw) if raw is not None else None
        if math.isnan(value):
            decision, reason = GATE_CHALLENGER, f"new {metric} is NaN"
        elif champ_value is None or math.isnan(champ_value):
            decision, reason = GATE_CHALLENGER, f"champion v{champ_version} has no {metric} to compare with"
        else:
            better = value > champ_value if higher_is_better else value < champ_value
            word = "higher" if higher_is_better else "lower"
            if better:
                decision = GATE_PROMOTED
                reason = f"{metric} {value:.6g} vs champion {champ_value:.6g} ({word} is better)"
            else:
                decision = GATE_CHALLENGER
                reason = f"{metric} {value:.6g} not better than champion {champ_value:.6g} ({word} is better)"

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


def promote(name: str, version: int | str) -> AliasChange:
    """Make ``version`` the ``champion`` by hand (``scrm promote``), recording who and when.

    Raises
    ------
    LookupError
        Unknown model or version.
    """
    c = client()
    mv = _get_version(c, name, version)
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
