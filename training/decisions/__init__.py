"""Business decisions shared by batch scoring and the HTTP service.

- :mod:`training.decisions.tiers` — member tiers by trailing-12-month spend and value × risk action segments,
  rules from ``--tiers`` / ``SCRM_TIERS`` / ``brand.yaml`` ``tiers:``, else ``training/tiers.yaml``;
- :mod:`training.decisions.tier_forecast` — the tier at the end of the CLV horizon, the move and its probabilities,
  and thresholds that give target tier shares (``scrm tiers suggest``);
- :mod:`training.decisions.targeting` — budgeted campaign audiences ranked by expected value, with a
  deterministic hash-based control group;
- :mod:`training.decisions.campaigns` — treatment vs control evaluation of past campaigns with lift intervals.

See ``docs/decisions.md`` for the rules, formulas and assumptions.
"""

from training.decisions.campaigns import evaluate_campaign
from training.decisions.targeting import (
    CampaignFilters,
    CampaignSpec,
    TargetingResult,
    ValueAssumptions,
    control_uniform,
    explain_summary,
    select_audience,
    to_csv,
)
from training.decisions.tiers import (
    TierRules,
    TierRulesError,
    assign_tiers,
    clv_value_cut,
    load_tier_rules,
    resolve_tier_rules,
)

__all__ = [
    "CampaignFilters",
    "CampaignSpec",
    "TargetingResult",
    "TierRules",
    "TierRulesError",
    "ValueAssumptions",
    "assign_tiers",
    "clv_value_cut",
    "control_uniform",
    "evaluate_campaign",
    "explain_summary",
    "load_tier_rules",
    "resolve_tier_rules",
    "select_audience",
    "to_csv",
]
