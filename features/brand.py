"""A brand's identity and policies, read from ``<data>/brand.yaml``.

One data directory holds one brand. Its id keys the brand's registered models (``<brand>.churn_90d``) and its
policies travel with its data, so every command reading the directory applies the same ones::

    brand: acme-beauty        # stable id: letters, digits, '-', '_' (default: the directory's name)
    consent: opt_out          # opt_out (default): unknown consent means allowed; opt_in: recorded consent only
    tiers: tiers.yaml         # member-tier rules, relative to the data directory (default: the packaged rules)
    calendar: festivals.yaml  # festival calendar (features/calendar.py), relative to the data directory
                              # (default: $SCRM_CALENDAR, else the packaged Chinese calendar)

A missing file means every default. Unknown keys are refused, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from features.errors import InputError

BRAND_FILE = "brand.yaml"
CONSENT_POLICIES = ("opt_out", "opt_in")
_BRAND_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_KEYS = {"brand", "consent", "tiers", "calendar"}


class BrandConfigError(InputError):
    """``brand.yaml`` (or a ``--brand`` value) that cannot be used."""


@dataclass(frozen=True)
class BrandConfig:
    """The brand a data directory belongs to, and the policies its commands apply."""

    brand: str
    consent: Literal["opt_out", "opt_in"] = "opt_out"
    tiers: Path | None = None
    calendar: Path | None = None


def check_brand_id(brand: str, source: str = "--brand") -> str:
    """Return ``brand`` when it is a usable id (it becomes part of registered model names), else refuse."""
    if not isinstance(brand, str) or not _BRAND_ID.match(brand):
        raise BrandConfigError(
            f"{source}: brand id {brand!r} is not usable; use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit (it becomes part of registered model names)"
        )
    return brand


def load_brand(data_dir: str | Path, brand: str | None = None) -> BrandConfig:
    """Read ``<data_dir>/brand.yaml``; ``brand`` (``--brand``) overrides the file's id.

    Without a file or an id in it, the brand id is the directory's name (made safe: other characters become '_').
    """
    data_dir = Path(data_dir)
    path = data_dir / BRAND_FILE
    raw: dict = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise BrandConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise BrandConfigError(f"{path}: expected a mapping with keys {sorted(_KEYS)}, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _KEYS)
        if unknown:
            raise BrandConfigError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    if brand is not None:
        brand_id = check_brand_id(brand)
    elif raw.get("brand") is not None:
        brand_id = check_brand_id(str(raw["brand"]), f"{path}: brand")
    else:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", data_dir.resolve().name).lstrip("_-")[:64]
        brand_id = check_brand_id(name or "default", f"{data_dir}: directory name")
    consent = raw.get("consent", "opt_out")
    if consent not in CONSENT_POLICIES:
        raise BrandConfigError(f"{path}: consent must be one of {list(CONSENT_POLICIES)}, got {consent!r}")
    tiers = raw.get("tiers")
    if tiers is not None:
        tiers = Path(tiers) if Path(tiers).is_absolute() else data_dir / tiers
        if not tiers.exists():
            raise BrandConfigError(f"{path}: tiers file {tiers} does not exist")
    calendar = raw.get("calendar")
    if calendar is not None:
        calendar = Path(calendar) if Path(calendar).is_absolute() else data_dir / calendar
        if not calendar.exists():
            raise BrandConfigError(f"{path}: calendar file {calendar} does not exist")
    return BrandConfig(brand=brand_id, consent=consent, tiers=tiers, calendar=calendar)


ConsentPolicy = Literal["opt_out", "opt_in"]


def check_consent_policy(policy: str) -> ConsentPolicy:
    """``policy`` when it is one of :data:`CONSENT_POLICIES`, else :class:`BrandConfigError`."""
    if policy not in CONSENT_POLICIES:
        raise BrandConfigError(f"consent must be one of {list(CONSENT_POLICIES)}, got {policy!r}")
    return policy  # type: ignore[return-value]


def consent_masks(marketing_opt_out: pd.Series, policy: str = "opt_out") -> tuple[np.ndarray, np.ndarray]:
    """Who a consent policy excludes from marketing, as ``(opted_out, consent_unknown)`` boolean arrays.

    ``marketing_opt_out`` is the snapshot's nullable flag: ``True`` = opted out on some account, ``False`` = a
    recorded choice not to opt out, missing = no recorded choice. ``opted_out`` is always excluded;
    ``consent_unknown`` (missing flag) is excluded only under ``opt_in`` (all ``False`` under ``opt_out``, where
    unknown consent means allowed: PIPL Art. 24 requires an easy opt-out). The two masks never overlap.
    """
    policy = check_consent_policy(policy)
    values = pd.array(np.asarray(marketing_opt_out, dtype=object), dtype="boolean")
    unknown = np.asarray(values.isna(), dtype=bool)
    opted_out = np.asarray(values.fillna(False), dtype=bool)
    return opted_out, (unknown if policy == "opt_in" else np.zeros(len(values), dtype=bool))
