"""Member tiers and value × risk action segments.

The packaged rules live in ``training/tiers.yaml`` (see ``docs/decisions.md``); a brand uses its own without
editing the installed file: ``--tiers FILE``, else the ``SCRM_TIERS`` environment variable, else ``tiers:`` in the
data directory's ``brand.yaml`` (:func:`resolve_tier_rules`). Rules are loaded into pydantic models that reject
unknown keys. :func:`assign_tiers` is the one tiering function used by batch scoring and the HTTP service.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from features.config import describe_validation_error
from features.errors import InputError

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "tiers.yaml"
#: Environment variable naming a tier rules YAML file (below ``--tiers``, above ``brand.yaml``'s ``tiers:``).
TIERS_ENV = "SCRM_TIERS"

#: Columns of the scores frame that :func:`assign_tiers` reads.
TIER_INPUT_COLUMNS = ("person_id", "eligible", "ineligible_reason", "spend_365d", "clv_mean", "churn_probability")
#: Columns of the frame :func:`assign_tiers` returns.
TIER_OUTPUT_COLUMNS = (
    "person_id",
    "tier",
    "tier_en",
    "action_segment",
    "action_segment_zh",
    "value_band",
    "risk_band",
    "not_scored_reason",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MemberTier(_Strict):
    """One member tier: everyone whose trailing-12-month spend reaches ``min_spend`` (CNY) and no higher tier."""

    name: str = Field(min_length=1, description="Chinese tier name, e.g. 金卡.")
    name_en: str = Field(min_length=1, description="English tier name, e.g. gold.")
    min_spend: float = Field(ge=0, description="Lowest trailing-12-month paid spend (CNY) in this tier.")


class SegmentLabel(_Strict):
    """Names of one action segment."""

    name: str = Field(min_length=1, description="English (machine) name, e.g. retain.")
    name_zh: str = Field(min_length=1, description="Chinese name, e.g. 挽留.")


class SegmentLabels(_Strict):
    """The five action segments: four value × risk quadrants plus the one for people who are not scored."""

    high_value_at_risk: SegmentLabel = SegmentLabel(name="retain", name_zh="挽留")
    high_value_safe: SegmentLabel = SegmentLabel(name="maintain", name_zh="维护")
    low_value_at_risk: SegmentLabel = SegmentLabel(name="low_cost_winback", name_zh="低成本唤回")
    low_value_safe: SegmentLabel = SegmentLabel(name="nurture", name_zh="培育")
    not_scored: SegmentLabel = SegmentLabel(name="not_scored", name_zh="未评分")

    @model_validator(mode="after")
    def _unique(self) -> SegmentLabels:
        names = [label.name for label in self.all()]
        if len(set(names)) != len(names):
            raise ValueError(f"action segment names must be unique, got {names}")
        return self

    def all(self) -> list[SegmentLabel]:
        """All five labels, quadrants first."""
        return [
            self.high_value_at_risk,
            self.high_value_safe,
            self.low_value_at_risk,
            self.low_value_safe,
            self.not_scored,
        ]


class ActionSegmentRules(_Strict):
    """How scored people are split into value × risk quadrants."""

    value_quantile: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="High value = clv_mean at or above this quantile of the eligible population (and > 0).",
    )
    churn_threshold: float = Field(0.5, ge=0, le=1, description="At risk = churn_probability at or above this.")
    labels: SegmentLabels = SegmentLabels()


class TierRules(_Strict):
    """All tiering rules: member tiers by spend and value × risk action segments."""

    member_tiers: list[MemberTier] = Field(min_length=1)
    action_segments: ActionSegmentRules = ActionSegmentRules()

    @model_validator(mode="after")
    def _ordered(self) -> TierRules:
        spends = [t.min_spend for t in self.member_tiers]
        if spends[0] != 0:
            raise ValueError(f"member_tiers: the first tier must start at min_spend 0, got {spends[0]}")
        if any(b <= a for a, b in zip(spends, spends[1:], strict=False)):
            raise ValueError(f"member_tiers: min_spend must be strictly increasing, got {spends}")
        for attr in ("name", "name_en"):
            names = [getattr(t, attr) for t in self.member_tiers]
            if len(set(names)) != len(names):
                raise ValueError(f"member_tiers: {attr} must be unique, got {names}")
        return self

    def tier_names(self) -> set[str]:
        """Every tier name, Chinese and English."""
        return {t.name for t in self.member_tiers} | {t.name_en for t in self.member_tiers}


class TierRulesError(InputError):
    """The tier rules file is unreadable or invalid; the message names the file and the offending key."""


def _describe(error: ValidationError) -> str:
    return describe_validation_error(error)


def load_tier_rules(path: str | Path | None = None) -> TierRules:
    """Load and validate tier rules from YAML.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; the packaged ``training/tiers.yaml`` when omitted.

    Returns
    -------
    TierRules

    Raises
    ------
    TierRulesError
        When the file is missing, is not YAML, or breaks a rule (unknown key, unordered thresholds, ...); the
        message names the file and the key.
    """
    if path is None:
        return _default_rules()
    return _load(Path(path))


def tier_rules_path(path: str | Path | None = None, *, data_dir: str | Path | None = None) -> tuple[Path, str]:
    """Which tier rules file applies, and why: ``(path, source)``.

    In order: ``path`` (``--tiers FILE``), the ``SCRM_TIERS`` environment variable, ``tiers:`` in
    ``<data_dir>/brand.yaml``, the packaged ``training/tiers.yaml``. ``source`` says which in words.
    """
    if path is not None:
        return Path(path), "--tiers"
    env = os.environ.get(TIERS_ENV, "").strip()
    if env:
        return Path(env), f"${TIERS_ENV}"
    if data_dir is not None:
        from features.brand import BRAND_FILE, load_brand

        brand_tiers = load_brand(data_dir).tiers
        if brand_tiers is not None:
            return Path(brand_tiers), f"{Path(data_dir) / BRAND_FILE} tiers:"
    return DEFAULT_RULES_PATH, "packaged default"


def resolve_tier_rules(path: str | Path | None = None, *, data_dir: str | Path | None = None) -> TierRules:
    """The tier rules in force (see :func:`tier_rules_path` for the order); :class:`TierRulesError` naming the
    file (and where it was named) when it is missing or invalid."""
    rules_path, source = tier_rules_path(path, data_dir=data_dir)
    if rules_path == DEFAULT_RULES_PATH:
        return _default_rules()
    try:
        return _load(rules_path)
    except TierRulesError as exc:
        raise TierRulesError(f"{exc} (tier rules named by {source})", file=rules_path, field=exc.field) from None


@lru_cache(maxsize=1)
def _default_rules() -> TierRules:
    return _load(DEFAULT_RULES_PATH)


def _load(path: Path) -> TierRules:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TierRulesError(f"{path}: cannot read tier rules ({exc.strerror or exc})", file=path) from exc
    except yaml.YAMLError as exc:
        raise TierRulesError(f"{path}: not valid YAML ({exc})", file=path) from exc
    if not isinstance(raw, dict):
        raise TierRulesError(f"{path}: expected a mapping with member_tiers and action_segments", file=path)
    try:
        return TierRules.model_validate(raw)
    except ValidationError as exc:
        raise TierRulesError(f"{path}: {_describe(exc)}", file=path,
                             field=tuple(exc.errors()[0]["loc"]) if exc.errors() else ()) from exc


def _check_scores(scores: pd.DataFrame, required: tuple[str, ...]) -> None:
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in required if c not in scores.columns]
    if missing:
        raise InputError(f"scores: missing column(s) {missing}", field="scores")
    dup = scores["person_id"].duplicated()
    if dup.any():
        raise InputError(
            f"scores: person_id must be unique; {int(dup.sum())} duplicate row(s), "
            f"e.g. {scores.loc[dup, 'person_id'].head(3).tolist()}", field=("scores", "person_id"), rows=int(dup.sum())
        )


def eligible_mask(scores: pd.DataFrame) -> np.ndarray:
    """Boolean array: rows whose ``eligible`` flag is true (missing counts as not eligible)."""
    return scores["eligible"].fillna(False).to_numpy(dtype=bool)


def _check_scored_values(scores: pd.DataFrame, eligible: np.ndarray) -> None:
    for col in ("clv_mean", "churn_probability"):
        values = pd.to_numeric(scores[col], errors="coerce").to_numpy(dtype=float)
        bad = eligible & ~np.isfinite(values)
        if col == "churn_probability":
            bad |= eligible & np.isfinite(values) & ((values < 0) | (values > 1))
        elif col == "clv_mean":
            bad |= eligible & np.isfinite(values) & (values < 0)
        if bad.any():
            rows = scores.loc[bad, "person_id"].head(3).tolist()
            expected = "in [0, 1]" if col == "churn_probability" else "finite and >= 0"
            raise InputError(
                f"scores: column {col!r} must be {expected} for eligible people; "
                f"{int(bad.sum())} bad row(s), e.g. person_id {rows}", field=("scores", col), rows=int(bad.sum())
            )


def clv_value_cut(scores: pd.DataFrame, rules: TierRules | None = None) -> float:
    """The clv_mean at or above which a scored person is high value.

    The ``action_segments.value_quantile`` quantile of ``clv_mean`` over the eligible rows of ``scores``. The
    service computes it once over the whole snapshot and passes it to :func:`assign_tiers` when tiering a few ids.

    Parameters
    ----------
    scores : DataFrame
        Scores frame with ``eligible`` and ``clv_mean``.
    rules : TierRules, optional
        Defaults to the packaged rules.

    Returns
    -------
    float
        The cut; ``inf`` when nobody is eligible.
    """
    rules = rules or load_tier_rules()
    _check_scores(scores, ("person_id", "eligible", "clv_mean", "churn_probability"))
    eligible = eligible_mask(scores)
    _check_scored_values(scores, eligible)
    return _quantile_cut(scores, eligible, rules)


def _quantile_cut(scores: pd.DataFrame, eligible: np.ndarray, rules: TierRules) -> float:
    values = scores["clv_mean"].to_numpy(dtype=float, na_value=np.nan)[eligible]
    if values.size == 0:
        return float("inf")
    return float(np.quantile(values, rules.action_segments.value_quantile))


def member_tier_index(spend: np.ndarray | pd.Series, rules: TierRules) -> np.ndarray:
    """Position of each spend's member tier in ``rules.member_tiers`` (missing or negative spend → lowest)."""
    spend = np.nan_to_num(np.asarray(spend, dtype=float), nan=0.0)
    thresholds = np.array([t.min_spend for t in rules.member_tiers], dtype=float)
    return np.clip(np.searchsorted(thresholds, spend, side="right") - 1, 0, len(thresholds) - 1)


def _names(names: list[str], codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a pandas string array, built by a vectorised take (no per-row conversion)."""
    return pd.array(names, dtype="str").take(np.asarray(codes, dtype=np.intp))


def assign_tiers(
    scores: pd.DataFrame,
    rules: TierRules | None = None,
    *,
    clv_cut: float | None = None,
) -> pd.DataFrame:
    """Member tier and value × risk action segment for every person.

    Parameters
    ----------
    scores : DataFrame
        One row per ``person_id`` from :func:`training.scoring.score`; reads ``person_id``, ``eligible``,
        ``ineligible_reason``, ``spend_365d``, ``clv_mean`` and ``churn_probability``.
    rules : TierRules, optional
        Defaults to the packaged ``training/tiers.yaml``.
    clv_cut : float, optional
        High-value cut on ``clv_mean``. By default :func:`clv_value_cut` over ``scores`` itself; pass the
        population's cut when ``scores`` holds only a few people.

    Returns
    -------
    DataFrame
        Same row order as ``scores``, columns ``person_id``, ``tier``, ``tier_en`` (from ``spend_365d``; missing
        spend counts as 0), ``action_segment``, ``action_segment_zh``, ``value_band`` (high | low),
        ``risk_band`` (at_risk | safe) and ``not_scored_reason``. Ineligible people get their spend tier, the
        ``not_scored`` segment, ``value_band``/``risk_band`` of ``None`` and their ``ineligible_reason`` (or
        "not eligible") in ``not_scored_reason``, which is ``None`` for scored people.

    Examples
    --------
    >>> tiers = assign_tiers(scores)  # doctest: +SKIP
    >>> tiers.groupby(["tier_en", "action_segment"]).size()  # doctest: +SKIP
    """
    rules = rules or load_tier_rules()
    _check_scores(scores, TIER_INPUT_COLUMNS)
    eligible = eligible_mask(scores)
    _check_scored_values(scores, eligible)
    if clv_cut is None:
        clv_cut = _quantile_cut(scores, eligible, rules)
    seg_rules = rules.action_segments

    spend = pd.to_numeric(scores["spend_365d"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    idx = member_tier_index(spend, rules)
    tier_zh = _names([t.name for t in rules.member_tiers], idx)
    tier_en = _names([t.name_en for t in rules.member_tiers], idx)

    clv = scores["clv_mean"].to_numpy(dtype=float, na_value=np.nan)
    churn = scores["churn_probability"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        high = (clv >= clv_cut) & (clv > 0)
        at_risk = churn >= seg_rules.churn_threshold
    labels = seg_rules.labels
    # quadrant code: 0 high+risk, 1 high+safe, 2 low+risk, 3 low+safe, 4 not scored
    code = np.where(high, 0, 2) + np.where(at_risk, 0, 1)
    code = np.where(eligible, code, 4)
    value_band = np.where(eligible, np.where(high, "high", "low"), None).astype(object)
    risk_band = np.where(eligible, np.where(at_risk, "at_risk", "safe"), None).astype(object)
    given = scores["ineligible_reason"].to_numpy(dtype=object)
    reason = np.full(len(scores), None, dtype=object)
    reason[~eligible] = np.where(pd.isna(given[~eligible]), "not eligible", given[~eligible])

    return pd.DataFrame(
        {
            "person_id": scores["person_id"].to_numpy(),
            "tier": tier_zh,
            "tier_en": tier_en,
            "action_segment": _names([lab.name for lab in labels.all()], code),
            "action_segment_zh": _names([lab.name_zh for lab in labels.all()], code),
            "value_band": pd.Series(value_band, dtype=object, index=scores.index),
            "risk_band": pd.Series(risk_band, dtype=object, index=scores.index),
            "not_scored_reason": pd.Series(reason, dtype=object, index=scores.index),
        },
        index=scores.index,
    )
