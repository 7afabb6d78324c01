"""Request and response models of the HTTP service: they are the OpenAPI schema at ``/docs``.

Requests reject unknown keys (``extra="forbid"``), NaN and infinity, numbers sent as strings, and booleans or
counts sent as other numbers (``strict`` fields: the types hold as the OpenAPI document gives them), so a typo or a
wrong type comes back as a 400 whose ``detail[].loc`` names the field. Every response carries ``model_versions`` (the registered ``churn``
and ``clv`` versions that produced it) and ``feature_as_of`` (the snapshot date: features use only data strictly
before it).

The campaign spec of ``POST /target`` is :class:`training.decisions.targeting.CampaignSpec` itself, extended
with the lookalike seed, so the batch and the service validate a campaign with one definition.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from training.decisions.targeting import CampaignSpec, Objective, ValueAssumptions

#: Most ids one ``/score`` or ``/tier`` request may carry.
MAX_IDS = 10_000
#: Most seed ids one ``/lookalike`` or lookalike ``/target`` request may carry.
MAX_SEEDS = 200_000

def _strip_id(value: str) -> str:
    """Surrounding whitespace is not part of an id (pasted lists); an id of only whitespace is no id."""
    value = value.strip()
    if not value:
        raise ValueError("an id must not be blank")
    return value


#: The length limits apply to the id as sent (as the OpenAPI document says), then whitespace around it is dropped.
CustomerId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    AfterValidator(_strip_id),
    Field(description="A person_id (One-ID, e.g. p_1a2b3c4d5e6f) or a channel customer_key."),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)


class ModelVersions(_Response):
    """Registered model versions behind a response."""

    churn: str | None = Field(description="Version of the brand's churn model, e.g. `acme.churn_90d` (alias "
                                          "champion at start).")
    clv: str | None = Field(description="Version of the brand's CLV model, e.g. `acme.clv_365d` (alias champion "
                                        "at start).")


class HorizonDays(_Response):
    """What the scores are about: the models' horizons in days."""

    churn: int | None = Field(None, description="`churn_probability` = P(no paid order within this many days).")
    clv: int | None = Field(None, description="`clv` = expected spend over this many days.")


class Served(_Response):
    """What every response carries."""

    model_versions: ModelVersions
    feature_as_of: date = Field(description="Snapshot date: features use only data strictly before it.")
    brand: str | None = Field(None, description="Brand whose champion models answer (models are per brand).")
    horizon_days: HorizonDays = Field(default_factory=HorizonDays,
                                      description="Horizons of the churn and CLV models behind the answer.")


# --- /score ----------------------------------------------------------------------------------------------------


class ScoreRequest(_Request):
    """People to score, by person_id or customer_key (mixed is fine)."""

    customer_ids: list[CustomerId] = Field(
        min_length=1, max_length=MAX_IDS, description=f"1 to {MAX_IDS:,} ids; duplicates are answered once."
    )
    with_reasons: bool = Field(True, strict=True, description="Add the top 3 reasons behind each churn score.")


class ClvEstimate(_Response):
    """Expected spend over the CLV model's horizon (CNY) with its 80% interval."""

    mean: float
    p10: float
    p90: float


class Rfm(_Response):
    """RFM quintile scores (5 = best) and the segment they put the person in."""

    r: int | None = Field(description="Recency score 1-5.")
    f: int | None = Field(description="Frequency score 1-5.")
    m: int | None = Field(description="Monetary score 1-5.")
    segment: str | None = Field(description="Segment name in Chinese, e.g. 重要价值客户.")
    segment_en: str | None = Field(description="Segment name in English, e.g. champions.")


class Tier(_Response):
    """Member tier (trailing-12-month spend) and value × risk action segment (rules in training/tiers.yaml)."""

    tier: str = Field(description="Member tier, Chinese name (普通 / 银卡 / 金卡 / 铂金 / 钻石).")
    tier_en: str = Field(description="Member tier, English name (regular / silver / gold / platinum / diamond).")
    action_segment: str = Field(description="retain | maintain | low_cost_winback | nurture | not_scored.")
    action_segment_zh: str = Field(description="Action segment, Chinese name (挽留, 维护, ...).")
    value_band: Literal["high", "low"] | None = Field(description="CLV at/above the population cut; null if not scored.")
    risk_band: Literal["at_risk", "safe"] | None = Field(description="Churn probability vs the threshold; null if not scored.")


class Reason(_Response):
    """One feature raising the churn score (LightGBM contribution, log-odds of the uncalibrated model)."""

    feature: str
    description: str = Field(description="The feature in plain words.")
    value: float | None = Field(description="The person's value of the feature.")
    contribution: float = Field(description="How much it raises the churn score (log-odds, > 0).")


class CustomerScore(_Response):
    """Scores of one person, exactly as ``scrm score`` computes them in batch."""

    id: str = Field(description="The id as given in the request.")
    person_id: str
    eligible: bool = Field(description="False when the history is too short to score honestly.")
    ineligible_reason: str | None = Field(description="Why the person is not scored (null when eligible).")
    churn_probability: float | None = Field(description="P(no paid order within the churn horizon).")
    churn_horizon_days: int = Field(description="The churn horizon: days after feature_as_of the probability covers.")
    clv: ClvEstimate | None
    clv_horizon_days: int = Field(description="The CLV horizon: days after feature_as_of the CLV and orders cover.")
    expected_orders: float | None = Field(description="Expected paid orders over the CLV horizon.")
    p_alive: float | None = Field(description="P(still an active customer) from the BTYD model.")
    expected_next_order_date: date | None
    rfm: Rfm
    lifecycle_stage: str | None = Field(description="new | active | at_risk | lapsed | reactivated.")
    tier: Tier
    reasons: list[Reason] = Field(
        description="Top 3 features raising the churn score; empty when not asked for or not scored."
    )
    marketing_opt_out: bool | None = Field(
        description="true: opted out of marketing (never targeted); false: a recorded choice not to opt out; "
                    "null: consent unknown (targeted under the brand's consent: opt_out, not under opt_in)."
    )
    orders: int = Field(description="Paid orders before feature_as_of.")
    total_spend: float = Field(description="Paid spend before feature_as_of (CNY).")
    spend_365d: float = Field(description="Paid spend in the 365 days before feature_as_of (CNY).")
    recency_days: float | None = Field(description="Days since the last paid order.")
    tenure_days: float | None = Field(description="Days since the first paid order.")


class ScoreResponse(Served):
    results: list[CustomerScore] = Field(description="One entry per distinct known id, in request order.")
    not_found: list[str] = Field(description="Ids that match no person_id or customer_key of the snapshot.")


# --- /tier -----------------------------------------------------------------------------------------------------


class TierRequest(_Request):
    customer_ids: list[CustomerId] = Field(
        min_length=1, max_length=MAX_IDS, description=f"1 to {MAX_IDS:,} ids (person_id or customer_key)."
    )


class TierMoveProbability(_Response):
    """P(the tier at predicted_at is above / below / the same as today's), from the CLV predictive distribution."""

    up: float = Field(ge=0, le=1)
    down: float = Field(ge=0, le=1)
    stay: float = Field(ge=0, le=1)


class CustomerTier(Tier):
    id: str = Field(description="The id as given in the request.")
    person_id: str
    spend_365d: float = Field(description="Trailing-12-month paid spend (CNY) that sets the member tier.")
    clv_mean: float | None
    churn_probability: float | None
    not_scored_reason: str | None = Field(description="Why there is no value × risk segment (null when scored).")
    predicted_spend_365d: float | None = Field(
        description="Expected trailing-12-month paid spend (CNY) at predicted_at: the spend of the last 12 months "
                    "still inside that window plus the CLV over the horizon (docs/decisions.md); null if not scored.")
    predicted_tier: str | None = Field(description="Member tier of predicted_spend_365d, Chinese name; null if not "
                                                   "scored.")
    predicted_tier_en: str | None = Field(description="The same, English name.")
    tier_move: Literal["up", "down", "stay"] | None = Field(
        description="predicted_tier against today's tier; null if not scored.")
    tier_move_probability: TierMoveProbability | None = Field(
        description="Probabilities of each move by predicted_at; null if not scored (or scored without the CLV "
                    "interval).")
    tier_horizon_days: int | None = Field(description="Days after feature_as_of the prediction is for (the CLV "
                                                      "horizon).")
    predicted_at: date | None = Field(description="feature_as_of + tier_horizon_days: when the predicted tier "
                                                  "applies.")


class MemberTierRule(_Response):
    name: str
    name_en: str
    min_spend: float = Field(description="Lowest trailing-12-month spend (CNY) of the tier.")


class TierRulesInfo(_Response):
    """The rules in force: member tier thresholds and the action-segment cuts."""

    member_tiers: list[MemberTierRule]
    value_quantile: float = Field(description="High value = clv_mean at or above this population quantile.")
    clv_cut: float | None = Field(description="That quantile over the snapshot (CNY); null when nobody is scored.")
    churn_threshold: float = Field(description="At risk = churn_probability at or above this.")


class TierResponse(Served):
    tiers: list[CustomerTier]
    not_found: list[str]
    rules: TierRulesInfo


# --- /lookalike ------------------------------------------------------------------------------------------------


class LookalikeRequest(_Request):
    """Find the people who behave most like a seed list; give exactly one of ``size`` and ``fraction``."""

    seed_customer_ids: list[CustomerId] = Field(
        min_length=1, max_length=MAX_SEEDS, description="Seed people (person_id or customer_key); at least 50 known."
    )
    size: int | None = Field(None, ge=1, strict=True, description="Audience size (people).")
    fraction: float | None = Field(None, gt=0, le=1, strict=True, validate_default=True,
                                   description="Or: share of the eligible population.")
    exclude_seed: bool = Field(True, strict=True, description="Leave the seed people out of the audience.")
    exclude_columns: list[str] | None = Field(
        None, max_length=500,
        description="Feature columns that defined the seed (e.g. spend_365d) and must not be learned from.",
    )
    random_state: int = Field(0, ge=0, strict=True, description="Seed of the model's sampling (same seed, same audience).")

    @field_validator("fraction")
    @classmethod
    def _one_size(cls, fraction: float | None, info: ValidationInfo) -> float | None:
        if "size" not in info.data:  # size itself is invalid: already reported
            return fraction
        if (info.data["size"] is None) == (fraction is None):
            raise ValueError("give exactly one of size and fraction")
        return fraction


class AudienceMember(_Response):
    person_id: str
    score: float = Field(description="Similarity to the seed in [0, 1].")
    rank: int = Field(description="1 = most similar.")


class HoldoutQuality(_Response):
    """How well the model finds a hidden 20% of the seed among everyone else (random targeting: lift 1)."""

    recall_at_1pct: float | None
    recall_at_5pct: float | None
    recall_at_10pct: float | None
    lift_at_1pct: float | None
    lift_at_5pct: float | None
    lift_at_10pct: float | None
    auc: float | None
    n_seeds: int | None = Field(description="Held-out seeds.")
    n_candidates: int | None = Field(description="People they were ranked among.")


class SeedReport(_Response):
    n_given: int
    n_valid: int = Field(description="Distinct seeds found in the snapshot and used.")
    n_duplicates: int
    n_unknown: int = Field(description="Seed ids matching no person_id or customer_key.")
    unknown_examples: list[str]


class LookalikeResponse(Served):
    audience: list[AudienceMember] = Field(
        description="Best first; marketing opt-outs are never included, unknown consent only under consent: opt_out.")
    holdout: HoldoutQuality
    seed_report: SeedReport
    excluded: dict[str, int] = Field(
        default_factory=dict, description="People left out before the audience was cut: seed, opt_out, consent_unknown.")
    notes: list[str] = Field(
        default_factory=list,
        description="Plain-words notes: unknown seeds, an audience shorter than size, a trivially separable seed.")
    mlflow_run_id: str | None = Field(description="The run in the MLflow experiment `lookalike`.")


# --- /target ---------------------------------------------------------------------------------------------------


class TargetRequest(CampaignSpec):
    """A campaign spec (see docs/decisions.md for the value formulas); lookalike campaigns add a seed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed_customer_ids: list[CustomerId] | None = Field(
        None, max_length=MAX_SEEDS, validate_default=True,
        description="Seed people for objective lookalike (required there, only there).",
    )
    assumptions: ValueAssumptions | None = Field(
        None, description="Campaign-effect assumptions behind the value formulas (defaults when omitted)."
    )
    random_state: int = Field(0, ge=0, strict=True, description="Seed of the lookalike model (objective lookalike).")

    @field_validator("seed_customer_ids")
    @classmethod
    def _seed_for_lookalike(cls, seeds: list[str] | None, info: ValidationInfo) -> list[str] | None:
        objective = info.data.get("objective")
        if objective is None:  # objective itself is invalid: already reported
            return seeds
        if objective == "lookalike" and not seeds:
            raise ValueError("required when objective is 'lookalike'")
        if objective != "lookalike" and seeds:
            raise ValueError(f"only used by objective 'lookalike', not {objective!r}")
        return seeds

    def spec(self) -> CampaignSpec:
        """The plain campaign spec (without the seed and assumptions)."""
        return CampaignSpec.model_validate(self.model_dump(include=set(CampaignSpec.model_fields)))


class TargetedPerson(_Response):
    rank: int
    campaign_id: str
    person_id: str
    group: Literal["treatment", "control"]
    expected_value: float = Field(description="Expected incremental value of contacting the person (CNY, gross).")
    expected_net_value: float = Field(description="expected_value minus contact and offer cost.")
    cost: float = Field(description="Cost charged for the person (0 for control).")
    churn_probability: float | None
    clv_mean: float | None
    p_alive: float | None
    lifecycle_stage: str | None
    rfm_segment: str | None
    rfm_segment_en: str | None
    tier: str
    tier_en: str
    action_segment: str


class Exclusions(_Response):
    """People left out, each counted once under the first reason that applies."""

    opt_out: int
    consent_unknown: int = Field(description="No recorded consent, under the brand's consent: opt_in.")
    ineligible: int
    filtered: int
    not_positive_value: int
    max_contacts: int
    budget: int


class UpliftSummary(_Response):
    """Objective incremental_margin: what the registered uplift model expects the treated part to add."""

    expected_incremental_conversions: float = Field(
        description="Extra paid orders within window_days from the treated: their summed predicted uplift, "
                    "mean over the model's bootstrap refits.")
    conversions_ci: list[float | None] = Field(description="[low, high] over the model's bootstrap refits.")
    ranking_model_conversions: float = Field(
        description="The same sum by the model that ranked them (optimistic: it chose them for high predictions).")
    expected_incremental_revenue: float = Field(
        description="expected_incremental_conversions × revenue_per_conversion (CNY).")
    revenue_ci: list[float | None] = Field(description="[low, high] over the model's bootstrap refits (CNY).")
    level: float
    revenue_per_conversion: float = Field(
        description="Mean window spend of the treated converters of the model's training campaigns (CNY).")
    window_days: int
    n_boot: int
    model_version: str = Field(description="The registered uplift model and version used (name/version).")


class TargetSummary(_Response):
    campaign_id: str
    objective: Objective
    population: int
    audience: int = Field(description="Treatment plus control.")
    contacts: int = Field(description="People contacted (= treatment).")
    treatment: int
    control: int
    control_fraction: float
    budget: float
    unit_cost: float = Field(description="cost_per_contact + offer_cost.")
    spend: float = Field(description="contacts × unit_cost; never above budget.")
    expected_incremental_value: float
    expected_net_value: float
    expected_roi: float | None = Field(description="expected_net_value / spend; null when nothing is spent.")
    consent: Literal["opt_out", "opt_in"] = Field(
        description="The brand's consent policy applied (brand.yaml): opt_out = unknown consent allowed.")
    excluded: Exclusions
    assumptions: ValueAssumptions
    uplift: UpliftSummary | None = Field(None, description="Objective incremental_margin only.")


class TargetResponse(Served):
    summary: TargetSummary
    audience: list[TargetedPerson] = Field(description="Best first; the same split on every call.")
    lookalike: HoldoutQuality | None = Field(None, description="Seed-model quality (objective lookalike).")


# --- /evaluate_campaign ----------------------------------------------------------------------------------------


class EvaluateRequest(_Request):
    campaign_id: str = Field(min_length=1, max_length=200, description="A campaign_id of campaign_touches.")
    window_days: int = Field(30, ge=1, le=365, strict=True, description="Conversion window after each person's first send.")
    level: float = Field(0.95, gt=0.5, lt=1, strict=True, description="Confidence level of the intervals.")


class Arm(_Response):
    persons: int
    converters: int
    conversion_rate: float
    revenue: float
    revenue_per_head: float


class Interval(_Response):
    low: float
    high: float


class Lift(_Response):
    """Treatment minus control (absolute) and treatment / control − 1 (relative), null when not computable."""

    absolute_lift: float | None
    absolute_ci: Interval | None = Field(description="Confidence interval at the requested level.")
    relative_lift: float | None
    relative_ci: Interval | None
    p_value: float | None
    method: str


class EvaluateResponse(Served):
    campaign_id: str
    window_days: int
    level: float
    first_sent: str
    last_sent: str
    treatment: Arm
    control: Arm
    conversion: Lift
    revenue_per_head: Lift
    incremental_conversions: float | None
    incremental_revenue: float | None
    mixed_group_persons: int = Field(description="People sent to both groups, left out.")
    censored_persons: int = Field(description="People whose window runs past the end of the data.")
    unknown_key_touches: int = Field(0, description="Touches of customer_keys in neither orders nor identities, "
                                                    "left out.")
    warnings: list[str]
