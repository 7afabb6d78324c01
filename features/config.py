"""Settings of the feature pipeline: ``FeatureConfig``, read from code, a YAML/JSON file or a snapshot manifest.

A snapshot's manifest stores the config it was built with; ``check_config`` compares it with the config a model
was trained on and raises ``FeatureConfigMismatch`` naming every differing key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.errors import InputError


class FeatureConfigError(ValueError):
    """A feature config file cannot be read or holds unknown keys or invalid values (the message names both)."""


class FeatureConfigMismatch(InputError):
    """A snapshot was built with another feature config than the model expects (or two models disagree).

    Attributes
    ----------
    differences
        ``{key: (first value, second value)}`` for every differing key.
    """

    def __init__(self, differences: dict[str, tuple[Any, Any]], *, labels: tuple[str, str] = ("snapshot", "model"),
                 fix: str | None = None) -> None:
        self.differences = differences
        first, second = labels
        parts = [f"{k}: {first} {a!r} vs {second} {b!r}" for k, a, b in ((k, *v) for k, v in differences.items())]
        fix = fix or (
            "rebuild the snapshot with the model's config (`scrm features build --config FILE`, the model's run "
            "holds it as tag scrm.feature_config) or retrain the model on this config (`scrm train --feature-config FILE`)"
        )
        super().__init__(f"the {first} and the {second} use different feature configs (" + "; ".join(parts)
                         + f"); {fix}", field="config")


class FeatureConfig(BaseModel):
    """Settings of the feature pipeline (unknown keys are rejected).

    Parameters
    ----------
    windows
        Trailing windows (days) for ``orders_<w>d`` and ``spend_<w>d``.
    event_windows
        Trailing windows (days) for ``ev_<type>_<w>d``.
    rfm_bins
        Number of RFM score levels (quantile bins); 5 gives quintiles.
    recency_edges, frequency_edges, monetary_edges
        Optional fixed ascending thresholds replacing quantiles for one dimension (``len = rfm_bins - 1``);
        for recency a value at or below ``edges[0]`` days gets the best score.
    monetary_basis
        Value ranked for M: ``total_spend`` (classic) or ``avg_spend``.
    high_rule, high_threshold
        A dimension is *high* when its score is above the mean score of buyers (``"mean"``), above their median
        score (``"median"``) or at least ``high_threshold`` (``"fixed"``).
    new_days, active_multiple, lapsed_multiple, min_gap_days, max_gap_days, personal_min_intervals
        Lifecycle thresholds (see ``features.rfm.lifecycle_stage``).
    response_window_days
        A treatment touch counts as answered when a paid order follows within this many days.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: tuple[int, ...] = (30, 90, 180, 365)
    event_windows: tuple[int, ...] = (7, 30, 90)
    rfm_bins: int = Field(5, ge=2, le=10)
    recency_edges: list[float] | None = None
    frequency_edges: list[float] | None = None
    monetary_edges: list[float] | None = None
    monetary_basis: Literal["total_spend", "avg_spend"] = "total_spend"
    high_rule: Literal["mean", "median", "fixed"] = "mean"
    high_threshold: int = Field(4, ge=1)
    new_days: int = Field(90, ge=0)
    active_multiple: float = Field(1.5, gt=0)
    lapsed_multiple: float = Field(3.0, gt=0)
    min_gap_days: float = Field(7.0, gt=0)
    max_gap_days: float = Field(180.0, gt=0)
    personal_min_intervals: int = Field(2, ge=1)
    response_window_days: int = Field(14, ge=1)

    @model_validator(mode="after")
    def _check(self) -> FeatureConfig:
        for name in ("windows", "event_windows"):
            vals = getattr(self, name)
            if not vals or any(w <= 0 for w in vals) or len(set(vals)) != len(vals):
                raise ValueError(f"{name} must be distinct positive day counts, got {vals}")
        for name in ("recency_edges", "frequency_edges", "monetary_edges"):
            edges = getattr(self, name)
            if edges is not None:
                if len(edges) != self.rfm_bins - 1 or list(edges) != sorted(set(edges)):
                    raise ValueError(
                        f"{name} must be {self.rfm_bins - 1} strictly ascending thresholds (rfm_bins={self.rfm_bins}), "
                        f"got {edges}"
                    )
        if self.high_rule == "fixed" and self.high_threshold > self.rfm_bins:
            raise ValueError(f"high_threshold={self.high_threshold} exceeds rfm_bins={self.rfm_bins}")
        if self.lapsed_multiple < self.active_multiple:
            raise ValueError("lapsed_multiple must be at least active_multiple")
        if self.max_gap_days < self.min_gap_days:
            raise ValueError("max_gap_days must be at least min_gap_days")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureConfig:
        """Read a config from a YAML (``.yaml``/``.yml``) or JSON file holding a mapping of settings.

        Raises
        ------
        FeatureConfigError
            The file is missing, not a mapping, or has an unknown key or invalid value (the message names the file
            and the key).
        """
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise FeatureConfigError(f"cannot read feature config {path}: {exc.strerror or exc}") from exc
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - yaml and json raise their own error types
            raise FeatureConfigError(f"{path} is not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: "
                                     f"{exc}") from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise FeatureConfigError(f"{path} must hold a mapping of feature settings, got {type(raw).__name__}")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "feature config") -> FeatureConfig:
        """Validate a mapping of settings (e.g. a manifest's ``config``); errors name ``source`` and the key."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise FeatureConfigError(f"{source}: {describe_validation_error(exc, known=list(cls.model_fields))}") from exc


def describe_validation_error(error: ValidationError, *, known: list[str] | None = None) -> str:
    """A pydantic error in plain words: ``unknown key 'x'`` or ``key: message`` per problem, ``;``-separated.

    Parameters
    ----------
    error
        The validation error of a settings model.
    known
        The model's keys, listed after an unknown key when given.
    """
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}" + (f" (known: {', '.join(known)})" if known else ""))
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def check_config(snapshot_config: FeatureConfig | dict | None, model_config: FeatureConfig | dict | None,
                 **message) -> None:
    """Raise ``FeatureConfigMismatch`` when a snapshot's feature config differs from a model's.

    Parameters
    ----------
    snapshot_config, model_config
        A ``FeatureConfig`` or its ``model_dump(mode="json")`` mapping (as stored in a snapshot manifest);
        ``None`` means the defaults. Keys missing from a mapping take their default values.
    **message
        ``labels`` (what the two configs belong to) and ``fix`` for the error message.
    """
    a = _as_json(snapshot_config, "snapshot config")
    b = _as_json(model_config, "model config")
    differences = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    if differences:
        raise FeatureConfigMismatch(differences, **message)


def _as_json(config: FeatureConfig | dict | None, source: str) -> dict:
    if config is None:
        config = FeatureConfig()
    elif not isinstance(config, FeatureConfig):
        config = FeatureConfig.from_dict(dict(config), source=source)
    return config.model_dump(mode="json")
