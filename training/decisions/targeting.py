"""Budgeted campaign targeting with a deterministic control group.

:func:`select_audience` turns a scores frame (from :func:`training.scoring.score`), its tiers (from
:func:`training.decisions.tiers.assign_tiers`) and a :class:`CampaignSpec` into a ranked audience:

1. exclusions, each person counted once under the first that applies: marketing opt-out (always), consent
   unknown (a missing ``marketing_opt_out``; excluded only under the brand's ``consent: opt_in`` policy, allowed
   under the default ``opt_out``, see :func:`features.brand.consent_masks`), not eligible for scoring, outside
   the filters or the objective's scope, expected value not positive, beyond ``max_contacts`` or the budget;
2. ranking by expected net value per contact (objective formulas below, assumptions in
   :class:`ValueAssumptions`), ties broken by ``person_id`` so row order never matters;
3. the largest top-ranked audience whose *treated* members fit the budget and ``max_contacts``;
4. a control group of ``round(control_fraction × audience)`` people: those with the lowest
   ``sha256(campaign_id + "\\x1f" + person_id)`` value, so every call returns the same split.

Expected incremental value per treated contact (gross, before costs)::

    retain     churn_probability × clv_mean × save_rate
    winback    p_reactivation × clv_mean × winback_rate      (lifecycle_stage lapsed | at_risk only;
               p_reactivation = p_alive, or 1 − churn_probability where p_alive is missing)
    upsell     clv_mean × uplift_rate × (1 − churn_probability)
    lookalike  lookalike_score × mean eligible clv_mean × conversion_rate
    incremental_margin
               uplift × revenue_per_conversion × margin_rate   (people the uplift model scores only)

``uplift`` is the registered uplift model's predicted change in P(paid order within its outcome window) if
contacted rather than not (:class:`UpliftScores`); ``revenue_per_conversion`` the mean window spend of the treated
converters of its training campaigns (the model predicts no spend uplift: the revenue of an extra conversion is
taken as that mean). The summary's ``uplift`` block reports the expected incremental conversions and revenue of
the treated: mean and percentile interval over the model's bootstrap refits (:func:`_uplift_summary`).

Net value = gross − (cost_per_contact + offer_cost). The offer cost is charged per treated contact (a
conservative assumption: every contact may redeem it); control members cost nothing.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from features import vocab
from features.brand import ConsentPolicy, check_consent_policy, consent_masks
from features.errors import InputError
from training.decisions.tiers import TierRules, assign_tiers, eligible_mask, load_tier_rules

Objective = Literal["retain", "winback", "upsell", "lookalike", "incremental_margin"]
LifecycleStage = Literal["new", "active", "at_risk", "lapsed", "reactivated"]

#: Lifecycle stages a winback campaign may reach.
WINBACK_STAGES = vocab.WINBACK_STAGES

#: Columns of the scores frame :func:`select_audience` reads.
TARGETING_INPUT_COLUMNS = (
    "person_id",
    "eligible",
    "churn_probability",
    "clv_mean",
    "p_alive",
    "lifecycle_stage",
    "rfm_segment",
    "rfm_segment_en",
    "marketing_opt_out",
)

#: Exclusion reasons in the order they are applied.
EXCLUSION_REASONS = ("opt_out", "consent_unknown", "ineligible", "filtered", "not_positive_value", "max_contacts",
                     "budget")

#: Columns of :attr:`TargetingResult.audience` (and of the CSV export).
AUDIENCE_COLUMNS = (
    "rank",
    "campaign_id",
    "person_id",
    "group",
    "expected_value",
    "expected_net_value",
    "cost",
    "churn_probability",
    "clv_mean",
    "p_alive",
    "lifecycle_stage",
    "rfm_segment",
    "rfm_segment_en",
    "tier",
    "tier_en",
    "action_segment",
)

class _Strict(BaseModel):
    # numbers must be JSON numbers and counts integers (no "100" for 100, no 1.0 for 1): what the schema says
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ValueAssumptions(_Strict):
    """Assumed campaign effects behind the expected-value formulas (see ``docs/decisions.md``).

    The defaults are deliberately modest industry-style rules of thumb; replace them with the lifts measured by
    :func:`training.decisions.campaigns.evaluate_campaign` on your own past campaigns.
    """

    save_rate: float = Field(
        0.15, ge=0, le=1, strict=True, description="Share of would-be churners a retention contact keeps (retain)."
    )
    winback_rate: float = Field(
        0.10, ge=0, le=1, strict=True, description="Share of reachable lapsed people a winback contact reactivates (winback)."
    )
    uplift_rate: float = Field(
        0.05, ge=0, le=1, strict=True, description="Relative CLV increase an upsell contact causes among retained people."
    )
    conversion_rate: float = Field(
        0.02, ge=0, le=1, strict=True, description="Share of perfect lookalikes (score 1) that convert (lookalike)."
    )
    margin_rate: float = Field(
        0.3, ge=0, le=1, strict=True,
        description="Share of incremental revenue kept as margin after the cost of goods (incremental_margin).",
    )


DEFAULT_ASSUMPTIONS = ValueAssumptions()


class CampaignFilters(_Strict):
    """Who may be in the audience; every given filter must hold (empty lists mean no filter)."""

    segments: list[str] | None = Field(
        None,
        description=(
            "RFM segments (rfm_segment / rfm_segment_en, e.g. 重要价值客户) or action segments "
            "(action_segment / action_segment_zh, e.g. retain / 挽留); a person matching any is kept."
        ),
    )
    tiers: list[str] | None = Field(None, description="Member tiers, Chinese or English names (金卡 or gold).")
    lifecycle_stages: list[LifecycleStage] | None = Field(None, description="Lifecycle stages to keep.")
    min_clv: float | None = Field(None, ge=0, strict=True, description="Keep people with clv_mean at or above this (CNY).")
    churn_range: tuple[Annotated[float, Field(ge=0, le=1, strict=True)], Annotated[float, Field(ge=0, le=1, strict=True)]] | None = Field(
        None, description="Keep people with lo ≤ churn_probability ≤ hi."
    )

    @field_validator("churn_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"churn_range lower bound {value[0]} is above upper bound {value[1]}")
        return value


class CampaignSpec(_Strict):
    """A campaign to target: objective, money, control share and filters."""

    campaign_id: str = Field(min_length=1, max_length=200, description="Campaign id; also seeds the control split.")
    objective: Objective = Field(description="retain | winback | upsell | lookalike | incremental_margin.")
    budget: float = Field(ge=0, strict=True, description="Total spend allowed on treated contacts (CNY).")
    cost_per_contact: float = Field(gt=0, strict=True, description="Cost of one message / call (CNY).")
    offer_cost: float = Field(0.0, ge=0, strict=True, description="Cost of the offer per treated contact (CNY).")
    max_contacts: int | None = Field(None, ge=0, strict=True, description="At most this many people treated (contacted).")
    control_fraction: float = Field(0.1, ge=0, le=0.5, strict=True, description="Share of the audience held out as control.")
    filters: CampaignFilters = Field(default_factory=CampaignFilters)

    @field_validator("campaign_id")
    @classmethod
    def _no_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("campaign_id must not be blank")
        return value

    @field_validator("offer_cost")
    @classmethod
    def _finite_unit_cost(cls, value: float, info: ValidationInfo) -> float:
        cost = info.data.get("cost_per_contact")
        if cost is not None and not math.isfinite(cost + value):
            raise ValueError("cost_per_contact + offer_cost is beyond the range of a number (about 1.8e308)")
        return value

    @property
    def unit_cost(self) -> float:
        """Cost of one treated contact: contact plus offer."""
        return float(self.unit_cost_exact)

    @property
    def unit_cost_exact(self) -> Decimal:
        """:attr:`unit_cost` in exact decimal arithmetic (budget checks never suffer float rounding)."""
        return Decimal(repr(self.cost_per_contact)) + Decimal(repr(self.offer_cost))

    def spend(self, n_treated: int) -> float:
        """Spend of ``n_treated`` treated contacts; never above :attr:`budget` when the count fits it."""
        return float(self.unit_cost_exact * n_treated)


@dataclass(frozen=True)
class UpliftScores:
    """Per-person predictions of a registered uplift model, for objective ``incremental_margin``.

    Attributes
    ----------
    uplift : Series
        ``person_id`` → predicted change in P(paid order within ``window_days``) if contacted rather than not.
    draws : ndarray
        ``(n_boot, len(uplift))``: the same prediction by each bootstrap refit of the model (rows of ``uplift``'s
        order); the interval of the expected incremental revenue is their percentile interval.
    revenue_per_conversion : float
        Mean window spend of the treated converters in the model's training campaigns (CNY).
    window_days : int
        The outcome window the model predicts over.
    """

    uplift: pd.Series
    draws: np.ndarray
    revenue_per_conversion: float
    window_days: int
    level: float = 0.95

    def __post_init__(self) -> None:
        if not isinstance(self.uplift, pd.Series) or self.uplift.index.has_duplicates:
            raise InputError("uplift scores: a Series indexed by unique person_id", field="uplift")
        if self.draws.ndim != 2 or self.draws.shape[1] != len(self.uplift):
            raise ValueError(f"uplift draws must be (n_boot, {len(self.uplift)}), got {self.draws.shape}")


@dataclass
class TargetingResult:
    """The outcome of :func:`select_audience`.

    Attributes
    ----------
    audience : DataFrame
        Ranked audience (best first), columns :data:`AUDIENCE_COLUMNS`; ``group`` is treatment or control.
    summary : dict
        JSON-ready figures: ``campaign_id``, ``objective``, ``population``, ``audience``, ``contacts`` (=
        treated people, the ones messaged), ``treatment``, ``control``, ``spend``, ``budget``,
        ``unit_cost``, ``expected_incremental_value`` (gross value of the treated), ``expected_net_value``,
        ``expected_roi`` (net value / spend, ``None`` when nothing is spent), ``consent`` (the policy applied),
        ``excluded`` (counts per reason in :data:`EXCLUSION_REASONS`), ``assumptions``.
    spec : CampaignSpec
    """

    audience: pd.DataFrame
    summary: dict
    spec: CampaignSpec


#: From this many ids on, :func:`control_uniform` hashes in DuckDB (same values, ~3x less CPU than hashlib).
DUCKDB_HASH_MIN = 20_000


def control_uniform(campaign_id: str, person_ids: pd.Series | np.ndarray | list) -> np.ndarray:
    """Deterministic uniform [0, 1) draw per person for a campaign.

    The first 8 bytes of ``sha256(campaign_id + "\\x1f" + person_id)`` (UTF-8) read as a big-endian unsigned
    integer and divided by 2**64, so other systems can reproduce the split, e.g. in DuckDB
    ``('0x' || substr(sha256(campaign_id || chr(31) || person_id), 1, 16))::UBIGINT / 2^64``.
    """
    if len(person_ids) >= DUCKDB_HASH_MIN:
        return _uniform_duckdb(campaign_id, person_ids)
    return _uniform_hashlib(campaign_id, person_ids)


def _uniform_hashlib(campaign_id: str, person_ids) -> np.ndarray:
    prefix = campaign_id.encode("utf-8") + b"\x1f"
    sha = hashlib.sha256
    digests = b"".join([sha(prefix + str(pid).encode("utf-8")).digest()[:8] for pid in person_ids])
    ints = np.frombuffer(digests, dtype=">u8")
    return ints.astype(np.float64) / 2.0**64


def _uniform_duckdb(campaign_id: str, person_ids) -> np.ndarray:
    import duckdb

    ids = pd.DataFrame({"person_id": pd.Series(person_ids, dtype="str").reset_index(drop=True)})
    with duckdb.connect() as con:
        con.register("ids", ids)
        # a plain projection keeps the input order (DuckDB's preserve_insertion_order, on by default)
        hashed = con.execute(
            "SELECT ('0x' || substr(sha256($prefix || person_id), 1, 16))::UBIGINT AS h FROM ids",
            {"prefix": campaign_id + "\x1f"},
        ).fetchnumpy()["h"]
    return np.asarray(hashed, dtype=np.uint64).astype(np.float64) / 2.0**64


def _rank(idx: np.ndarray, key: np.ndarray, person_ids: pd.Series) -> np.ndarray:
    """``idx`` sorted by ``key`` ascending, equal keys ordered by ``person_id`` (so row order never matters)."""
    order = idx[np.argsort(key[idx], kind="stable")]
    if len(order) < 2:
        return order
    k = key[order]
    same = k[1:] == k[:-1]
    if not same.any():
        return order
    tie = np.zeros(len(order), dtype=bool)
    tie[1:] |= same
    tie[:-1] |= same
    pos = np.flatnonzero(tie)
    sub = order[pos]
    pid = person_ids.take(sub).to_numpy().astype(str)
    order[pos] = sub[np.lexsort((pid, key[sub]))]
    return order


def _float_col(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


_TIER_COLUMNS = ("person_id", "tier", "tier_en", "action_segment", "action_segment_zh")


def _align_tiers(scores: pd.DataFrame, tiers: pd.DataFrame) -> pd.DataFrame:
    for col in _TIER_COLUMNS:
        if col not in tiers.columns:
            raise ValueError(f"tiers: missing column {col!r} (expected the output of assign_tiers)")
    sp, tp = scores["person_id"], tiers["person_id"]
    if len(sp) == len(tp) and sp.reset_index(drop=True).equals(tp.reset_index(drop=True)):
        return tiers.reset_index(drop=True)
    if tiers["person_id"].duplicated().any():
        raise ValueError("tiers: person_id must be unique")
    pos = pd.Index(tiers["person_id"]).get_indexer(scores["person_id"])
    if (pos < 0).any():
        missing = scores["person_id"].to_numpy()[pos < 0][:3].tolist()
        raise ValueError(f"tiers: no tier for {int((pos < 0).sum())} person(s) in scores, e.g. {missing}")
    return tiers.iloc[pos].reset_index(drop=True)


def _gross_value(
    objective: str,
    frame: pd.DataFrame,
    eligible: np.ndarray,
    lookalike: np.ndarray | None,
    assumptions: ValueAssumptions,
    uplift: np.ndarray | None = None,
    revenue_per_conversion: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gross expected value per treated contact and a mask of people inside the objective's scope."""
    if objective == "incremental_margin":
        value = uplift * revenue_per_conversion * assumptions.margin_rate
        return value, np.isfinite(uplift)
    churn = _float_col(frame, "churn_probability")
    clv = _float_col(frame, "clv_mean")
    in_scope = np.ones(len(frame), dtype=bool)
    if objective == "retain":
        value = churn * clv * assumptions.save_rate
    elif objective == "winback":
        p_alive = _float_col(frame, "p_alive")
        p_react = np.where(np.isfinite(p_alive), p_alive, 1.0 - churn)
        value = p_react * clv * assumptions.winback_rate
        in_scope = frame["lifecycle_stage"].isin(WINBACK_STAGES).to_numpy()
    elif objective == "upsell":
        value = clv * assumptions.uplift_rate * (1.0 - churn)
    else:  # lookalike
        clv_eligible = clv[eligible & np.isfinite(clv)]
        # exactly rounded sum, so the value does not depend on row order
        mean_clv = math.fsum(clv_eligible) / clv_eligible.size if clv_eligible.size else 0.0
        value = lookalike * mean_clv * assumptions.conversion_rate
        in_scope = np.isfinite(lookalike)
    return value, in_scope


def _filter_mask(frame: pd.DataFrame, tiers: pd.DataFrame, filters: CampaignFilters) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    if filters.segments:
        wanted = set(filters.segments)
        seg = np.zeros(len(frame), dtype=bool)
        for col_frame, col in (
            (frame, "rfm_segment"),
            (frame, "rfm_segment_en"),
            (tiers, "action_segment"),
            (tiers, "action_segment_zh"),
        ):
            seg |= col_frame[col].isin(wanted).to_numpy()
        keep &= seg
    if filters.tiers:
        wanted = set(filters.tiers)
        keep &= (tiers["tier"].isin(wanted) | tiers["tier_en"].isin(wanted)).to_numpy()
    if filters.lifecycle_stages:
        keep &= frame["lifecycle_stage"].isin(set(filters.lifecycle_stages)).to_numpy()
    if filters.min_clv is not None:
        with np.errstate(invalid="ignore"):
            keep &= _float_col(frame, "clv_mean") >= filters.min_clv
    if filters.churn_range is not None:
        lo, hi = filters.churn_range
        churn = _float_col(frame, "churn_probability")
        with np.errstate(invalid="ignore"):
            keep &= (churn >= lo) & (churn <= hi)
    return keep


def _check_segment_names(wanted: list[str], scores: pd.DataFrame, rules: TierRules) -> None:
    """Reject segment names that are neither RFM segments nor action segments (a typo would select nobody)."""
    from features.rfm import SEGMENT_EN  # lazy: only needed when filtering by segment

    known = set(SEGMENT_EN) | set(SEGMENT_EN.values())
    known |= {name for lab in rules.action_segments.labels.all() for name in (lab.name, lab.name_zh)}
    unknown = set(wanted) - known
    if unknown:  # custom segment names present in the scores are fine too
        unknown -= set(scores["rfm_segment"].dropna().unique()) | set(scores["rfm_segment_en"].dropna().unique())
    if unknown:
        raise InputError(f"filters.segments: unknown segment(s) {sorted(unknown)}; known: {sorted(known)}",
                         field=("filters", "segments"))


def _lookalike_array(scores: pd.DataFrame, lookalike_scores: pd.Series) -> np.ndarray:
    if not isinstance(lookalike_scores, pd.Series):
        raise TypeError("lookalike_scores must be a pandas Series indexed by person_id")
    if lookalike_scores.index.has_duplicates:
        raise InputError("lookalike_scores: person_id index must be unique", field="lookalike_scores")
    values = pd.to_numeric(lookalike_scores, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = np.isfinite(values) & ((values < 0) | (values > 1))
    if bad.any():
        raise InputError(
            f"lookalike_scores: scores must be in [0, 1]; {int(bad.sum())} outside, "
            f"e.g. {lookalike_scores.index[bad][:3].tolist()}", field="lookalike_scores", rows=int(bad.sum())
        )
    pos = lookalike_scores.index.get_indexer(scores["person_id"])
    out = np.full(len(scores), np.nan)
    found = pos >= 0
    out[found] = values[pos[found]]
    return out


def _audience_size(n_candidates: int, spec: CampaignSpec) -> tuple[int, str | None]:
    """Largest audience n ≤ n_candidates whose treated part fits budget and max_contacts; and what bound it."""

    def treated(n: int) -> int:
        return n - int(np.floor(spec.control_fraction * n + 0.5))

    # exact decimal arithmetic on the given amounts: 100 / 0.1 is 1000 contacts, not 999; a budget that pays for
    # every candidate is capped to them first (budget / unit cost may have more digits than Decimal can divide)
    budget, unit = Decimal(repr(spec.budget)), spec.unit_cost_exact
    max_by_budget = n_candidates if budget >= unit * n_candidates else int(budget // unit)
    max_treated, bound = max_by_budget, "budget"
    if spec.max_contacts is not None and spec.max_contacts < max_treated:
        max_treated, bound = spec.max_contacts, "max_contacts"
    max_treated = min(max_treated, n_candidates)
    if max_treated <= 0:
        return 0, (bound if n_candidates > 0 else None)
    # treated(n) is non-decreasing in n and grows by at most 1 per step (control_fraction ≤ 0.5)
    n = min(n_candidates, int(np.ceil(max_treated / (1.0 - spec.control_fraction))) + 2)
    while n > 0 and treated(n) > max_treated:
        n -= 1
    return n, (bound if n < n_candidates else None)


def select_audience(
    scores: pd.DataFrame,
    tiers: pd.DataFrame | None,
    spec: CampaignSpec | dict,
    *,
    lookalike_scores: pd.Series | None = None,
    assumptions: ValueAssumptions | None = None,
    rules: TierRules | None = None,
    consent: ConsentPolicy = "opt_out",
    uplift_scores: UpliftScores | None = None,
) -> TargetingResult:
    """Rank, budget and split a campaign audience.

    Parameters
    ----------
    scores : DataFrame
        One row per ``person_id`` from :func:`training.scoring.score` (columns
        :data:`TARGETING_INPUT_COLUMNS` are read).
    tiers : DataFrame or None
        Output of :func:`~training.decisions.tiers.assign_tiers` for the same people (any row order). When
        ``None``, the tier columns of ``scores`` are used if present (batch scores carry them), else they are
        computed from ``scores`` with ``rules``.
    spec : CampaignSpec or dict
        The campaign; a dict is validated into a :class:`CampaignSpec` (errors name the field).
    lookalike_scores : Series, optional
        ``person_id`` → lookalike score in [0, 1]; required for, and only used by, the ``lookalike`` objective.
        People without a score are outside the campaign's scope.
    assumptions : ValueAssumptions, optional
        Campaign-effect assumptions behind the value formulas; :data:`DEFAULT_ASSUMPTIONS` when omitted.
    rules : TierRules, optional
        Tier rules used to compute ``tiers`` when it is ``None`` and to check ``filters.tiers`` names;
        the packaged rules when omitted.
    consent : {"opt_out", "opt_in"}
        The brand's consent policy (``features.brand.load_brand(data_dir).consent``): opted-out people are never
        selected; people with unknown consent (missing ``marketing_opt_out``) are selected under ``opt_out``
        (the default) and excluded as ``consent_unknown`` under ``opt_in``.
    uplift_scores : UpliftScores, optional
        The uplift model's predictions; required for, and only used by, the ``incremental_margin`` objective.
        People without a prediction are outside the campaign's scope.

    Returns
    -------
    TargetingResult

    Raises
    ------
    ValueError
        Missing columns, duplicate ``person_id``, a filter naming an unknown tier or segment, or ``lookalike_scores``
        missing for / given to the wrong objective; the message names the field.
    pydantic.ValidationError
        When ``spec`` is a dict that breaks the :class:`CampaignSpec` rules.
    """
    if not isinstance(spec, CampaignSpec):
        spec = CampaignSpec.model_validate(spec)
    assumptions = assumptions or DEFAULT_ASSUMPTIONS
    check_consent_policy(consent)
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in TARGETING_INPUT_COLUMNS if c not in scores.columns]
    if missing:
        raise InputError(f"scores: missing column(s) {missing}", field="scores")
    if scores["person_id"].duplicated().any():
        raise InputError("scores: person_id must be unique", field=("scores", "person_id"))
    if spec.objective == "lookalike" and lookalike_scores is None:
        raise InputError("lookalike_scores: required when objective is 'lookalike' (scores of the seed model)",
                         field="lookalike_scores")
    if spec.objective != "lookalike" and lookalike_scores is not None:
        raise InputError(f"lookalike_scores: only used by objective 'lookalike', not {spec.objective!r}",
                         field="lookalike_scores")
    if (spec.objective == "incremental_margin") != (uplift_scores is not None):
        raise InputError("uplift_scores: required with objective 'incremental_margin' (the registered uplift "
                         f"model's predictions) and only used there, not with {spec.objective!r}",
                         field="uplift_scores")

    rules = rules or load_tier_rules()
    if spec.filters.tiers:
        unknown = sorted(set(spec.filters.tiers) - rules.tier_names())
        if unknown:
            raise InputError(
                f"filters.tiers: unknown tier(s) {unknown}; known: {sorted(rules.tier_names())}",
                field=("filters", "tiers"),
            )

    if spec.filters.segments:
        _check_segment_names(spec.filters.segments, scores, rules)

    frame = scores.reset_index(drop=True)
    if tiers is None:
        # batch scores already carry their tiers (training.scoring.score merges them in)
        tiers = frame if set(_TIER_COLUMNS) <= set(frame.columns) else assign_tiers(frame, rules)
    else:
        tiers = _align_tiers(frame, tiers)
    n = len(frame)
    eligible = eligible_mask(frame)
    opt_out, consent_unknown = consent_masks(frame["marketing_opt_out"], consent)
    lookalike = _lookalike_array(frame, lookalike_scores) if lookalike_scores is not None else None

    uplift_pos = None
    if uplift_scores is not None:
        uplift_pos = uplift_scores.uplift.index.get_indexer(frame["person_id"])
        uplift = np.full(n, np.nan)
        uplift[uplift_pos >= 0] = uplift_scores.uplift.to_numpy(float)[uplift_pos[uplift_pos >= 0]]
        gross, in_scope = _gross_value(spec.objective, frame, eligible, None, assumptions, uplift,
                                       uplift_scores.revenue_per_conversion)
    else:
        gross, in_scope = _gross_value(spec.objective, frame, eligible, lookalike, assumptions)
    net = gross - spec.unit_cost
    passes_filters = in_scope & _filter_mask(frame, tiers, spec.filters)
    positive = np.isfinite(net) & (net > 0)

    reason = np.full(n, -1, dtype=np.int8)  # index into EXCLUSION_REASONS; -1 = candidate
    for code, mask in enumerate((opt_out, consent_unknown, ~eligible, ~passes_filters, ~positive)):
        reason[(reason < 0) & mask] = code
    cand = np.flatnonzero(reason < 0)

    # rank candidates: highest net value first, ties by person_id (row order never matters)
    person_ids = frame["person_id"]
    order = _rank(cand, -net, person_ids)
    size, bound = _audience_size(len(order), spec)
    if bound is not None:
        reason[order[size:]] = EXCLUSION_REASONS.index(bound)
    chosen = order[:size]

    # deterministic control: the lowest-hash share of the chosen audience
    n_control = int(np.floor(spec.control_fraction * size + 0.5))
    chosen_ids = person_ids.take(chosen).reset_index(drop=True)
    u = control_uniform(spec.campaign_id, chosen_ids)
    control_pos = _rank(np.arange(size), u, chosen_ids)[:n_control]
    is_control = np.zeros(size, dtype=bool)
    is_control[control_pos] = True

    passthrough = frame[["churn_probability", "clv_mean", "p_alive", "lifecycle_stage", "rfm_segment",
                         "rfm_segment_en"]].take(chosen).reset_index(drop=True)
    tier_cols = tiers[["tier", "tier_en", "action_segment"]].take(chosen).reset_index(drop=True)
    audience = pd.concat(
        [
            pd.DataFrame(
                {
                    "rank": np.arange(1, size + 1),
                    "campaign_id": pd.array([spec.campaign_id], dtype="str").take(np.zeros(size, dtype=np.intp)),
                    "person_id": chosen_ids,
                    "group": pd.array(["treatment", "control"], dtype="str").take(is_control.astype(np.intp)),
                    "expected_value": gross[chosen],
                    "expected_net_value": net[chosen],
                    "cost": np.where(is_control, 0.0, spec.unit_cost),
                }
            ),
            passthrough,
            tier_cols,
        ],
        axis=1,
    )[list(AUDIENCE_COLUMNS)]

    treated = ~is_control
    n_treat = int(treated.sum())
    spend = spec.spend(n_treat)
    incremental = float(gross[chosen][treated].sum())
    counts = np.bincount(reason[reason >= 0], minlength=len(EXCLUSION_REASONS))
    summary = {
        "campaign_id": spec.campaign_id,
        "objective": spec.objective,
        "population": n,
        "audience": size,
        "contacts": n_treat,
        "treatment": n_treat,
        "control": n_control,
        "control_fraction": spec.control_fraction,
        "budget": spec.budget,
        "unit_cost": spec.unit_cost,
        "spend": spend,
        "expected_incremental_value": incremental,
        "expected_net_value": incremental - spend,
        "expected_roi": _ratio(incremental - spend, spend),
        "consent": consent,
        "excluded": {name: int(c) for name, c in zip(EXCLUSION_REASONS, counts, strict=True)},
        "assumptions": assumptions.model_dump(),
    }
    if uplift_scores is not None:
        summary["uplift"] = _uplift_summary(uplift_scores, uplift_pos[chosen[treated]])
    return TargetingResult(audience=audience, summary=summary, spec=spec)


def _uplift_summary(scores: UpliftScores, rows: np.ndarray) -> dict:
    """Expected incremental conversions and revenue of the treated (``rows``: their positions in ``scores``).

    The estimate is the mean over the bootstrap refits of the treated's summed predicted uplift, the interval its
    percentiles: the model that ranked the people overrates the ones it put on top (they were chosen for its
    highest predictions, noise included), so its own sum (``ranking_model_conversions``) is optimistic. Without
    refits, that sum and no interval.
    """
    rpc = scores.revenue_per_conversion
    point = math.fsum(scores.uplift.to_numpy(float)[rows])
    sums = np.array([math.fsum(d) for d in scores.draws[:, rows]]) if len(scores.draws) else np.array([])
    q = [(1 - scores.level) / 2, (1 + scores.level) / 2]
    lo, hi = (np.quantile(sums, q).tolist() if len(sums) else [None, None])
    estimate = float(sums.mean()) if len(sums) else point
    return {
        "expected_incremental_conversions": estimate,
        "conversions_ci": [lo, hi],
        "ranking_model_conversions": point,
        "expected_incremental_revenue": estimate * rpc,
        "revenue_ci": [None if lo is None else lo * rpc, None if hi is None else hi * rpc],
        "level": scores.level,
        "revenue_per_conversion": rpc,
        "window_days": scores.window_days,
        "n_boot": int(len(scores.draws)),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when nothing is spent or the ratio is beyond float range."""
    if not denominator > 0:
        return None
    ratio = numerator / denominator
    return ratio if math.isfinite(ratio) else None


def to_csv(result: TargetingResult, path: str | Path | None = None) -> str:
    """Export the audience as UTF-8 CSV (columns :data:`AUDIENCE_COLUMNS`, best first; text fields quoted).

    Text cells that a spreadsheet would run as a formula (a ``campaign_id`` starting with ``=``, say) get a
    leading ``'`` (:func:`training.exports.neutralise_formulas`).

    Parameters
    ----------
    result : TargetingResult
    path : str or Path, optional
        Also write the CSV there.

    Returns
    -------
    str
        The CSV text.
    """
    buf = io.BytesIO()
    from training.exports import neutralise_formulas

    table = pa.Table.from_pandas(neutralise_formulas(result.audience), preserve_index=False)
    pa_csv.write_csv(table, buf, pa_csv.WriteOptions(quoting_style="needed"))
    text = buf.getvalue().decode("utf-8")
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


#: Plain words for each exclusion reason (``scrm target`` prints them).
EXCLUSION_WORDS = {
    "opt_out": "opted out of marketing",
    "consent_unknown": "consent unknown (no recorded marketing consent; the brand's policy is consent: opt_in)",
    "ineligible": "not eligible for scoring (history too short or no paid order)",
    "filtered": "outside the campaign's filters or the objective's scope",
    "not_positive_value": "expected value not above the contact cost",
    "max_contacts": "beyond max_contacts",
    "budget": "beyond the budget",
}


def explain_summary(summary: dict) -> list[str]:
    """Plain-words lines on who was left out and why (one per non-zero reason, largest first), led, when nobody
    was selected, by the main reason — e.g. orders-only data under ``consent: opt_in`` has no recorded consent.
    """
    excluded = {k: int(v) for k, v in summary.get("excluded", {}).items() if v}
    ordered = sorted(excluded.items(), key=lambda kv: -kv[1])
    lines = [f"excluded {n:,}: {EXCLUSION_WORDS.get(k, k)}" for k, n in ordered]
    if summary.get("audience", 0) == 0 and summary.get("population", 0) > 0:
        if ordered:
            main, n = ordered[0]
            why = f"{n:,} of {summary['population']:,} people {EXCLUSION_WORDS.get(main, main)}"
            if main == "consent_unknown":
                why += ("; record consent in identities.marketing_opt_out (false = not opted out) or set "
                        "consent: opt_out in brand.yaml")
        else:
            why = "nobody passed the exclusions"
        lines.insert(0, f"nobody selected: {why}")
    return lines
