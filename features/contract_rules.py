"""Data-contract rules that need more than one value: number locale, plausible time range, amount bound, unknown keys.

:mod:`features.contract` checks each value on its own; the rules here look at a whole column or across tables:

* **Number locale** (:func:`parse_numbers`): text numbers are read with a column-level locale, ``dot``
  (``1,234.50``: ``,`` groups thousands, ``.`` is the decimal mark), ``comma`` (``1.234,50`` / ``12,50``) or
  ``auto`` (the default). In ``auto`` a value readable one way only is read that way (``12,50`` → 12.5,
  ``1,234.50`` → 1234.5, ``12.5`` → 12.5); a value whose two readings differ (``1,234``: 1234 or 1.234) takes
  the reading of the column's other values when they all point one way, and is otherwise quarantined as
  ``ambiguous_number``. Grouping must be in threes (``1,2,3`` is not a number); a comma is never just deleted.
* **Plausible end of the data** (:func:`time_limit`): a timestamp after ``now + now_tolerance_days`` (the run's
  time) or after the plausible end of the activity (orders and events) plus ``end_gap_days`` is quarantined as
  ``future_timestamp``. The plausible end is the last timestamp before the first empty gap of more than
  ``end_gap_days`` whose tail holds at most ``end_tail_share`` of the activity rows (50 orders dated 2030 after
  data ending 2025: the gap is 4 years, the tail 0.24 %).
* **Amount bound** (:func:`amount_bound`): an order ``amount`` above ``max_amount_factor`` × the median of the
  table's valid amounts, or above ``max_amount``, is quarantined as ``implausible_amount``.
* **Unknown keys** (:func:`known_customer_keys`, :func:`count_unknown_keys`): events and campaign touches whose
  ``customer_key`` appears in neither ``orders`` nor ``identities`` are counted and reported (they stay in the
  data; campaign evaluation leaves such touches out and says how many).

The settings come from ``DATA/contract.yaml`` (optional; every key optional, unknown keys refused)::

    now: 2026-01-05           # the run's "today" (Asia/Shanghai); default: the clock at the time of the run
    now_tolerance_days: 1     # timestamps up to this long after `now` are still accepted
    end_gap_days: 90          # an empty gap this long separates implausible late rows from the data
    end_tail_share: 0.01      # ... when at most this share of the orders + events lies beyond it
    max_amount_factor: 1000   # amount > factor × median amount is implausible (null: no relative bound)
    max_amount: 500000        # and amount > this (default: no absolute bound)
    number_locale: auto       # auto | dot | comma, or per column: {amount: comma, discount: dot}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.errors import InputError

CONTRACT_FILE = "contract.yaml"
LOCALES = ("auto", "dot", "comma")
LOCAL_TZ = "Asia/Shanghai"

_DOT_GROUPED = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?"  # 1,234 / 1,234.50 / 12,345,678
_COMMA_GROUPED = r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d*)?"  # 1.234 / 1.234,50
_COMMA_DECIMAL = r"[+-]?\d*,\d+|[+-]?\d+,"  # 12,50 / ,5 / 12,


class ContractConfigError(InputError):
    """``contract.yaml`` that cannot be used."""


@dataclass(frozen=True)
class ContractSettings:
    """Tolerances of the contract's cross-value rules (see the module docstring for each)."""

    now: pd.Timestamp | None = None
    now_tolerance_days: float = 1.0
    end_gap_days: float = 90.0
    end_tail_share: float = 0.01
    max_amount_factor: float | None = 1000.0
    max_amount: float | None = None
    number_locale: dict[str, str] = field(default_factory=dict)
    default_locale: str = "auto"

    def locale(self, column: str) -> str:
        """The number locale of ``column``: its own setting, else the default (``auto``)."""
        return self.number_locale.get(column, self.default_locale)

    def run_time(self) -> pd.Timestamp:
        """The run's "now" as naive Asia/Shanghai local time (the contract's time zone)."""
        if self.now is not None:
            return self.now
        return pd.Timestamp.now(tz=LOCAL_TZ).tz_localize(None)


_KEYS = {"now", "now_tolerance_days", "end_gap_days", "end_tail_share", "max_amount_factor", "max_amount",
         "number_locale"}


def load_settings(data_dir: str | Path) -> ContractSettings:
    """Read ``DATA/contract.yaml``; every default when the file is absent.

    Raises
    ------
    ContractConfigError
        Not YAML, not a mapping, an unknown key, or a value out of range (the message names the key).
    """
    path = Path(data_dir) / CONTRACT_FILE
    if not path.exists():
        return ContractSettings()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ContractConfigError(f"{path}: not valid YAML ({exc})", file=path) from None
    if not isinstance(raw, dict):
        raise ContractConfigError(f"{path}: expected a mapping with keys {sorted(_KEYS)}", file=path)
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise ContractConfigError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}", file=path,
                                  field=unknown[0])

    def number(key: str, *, low: float, high: float = math.inf, nullable: bool = False) -> float | None:
        value = raw.get(key, getattr(ContractSettings, key))
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ContractConfigError(f"{path}: {key} must be a number in [{low}, {high}], got {value!r}",
                                      file=path, field=key)
        return float(value)

    now = raw.get("now")
    if now is not None:
        try:
            now = pd.Timestamp(now)
        except (ValueError, TypeError):
            raise ContractConfigError(f"{path}: now must be a date like 2026-01-05, got {now!r}", file=path,
                                      field="now") from None
        if now.tzinfo is not None:
            now = now.tz_convert(LOCAL_TZ).tz_localize(None)
    locale = raw.get("number_locale", "auto")
    per_column = dict(locale) if isinstance(locale, dict) else {}
    default = "auto" if isinstance(locale, dict) else locale
    for key, value in [("number_locale", default), *((f"number_locale.{c}", v) for c, v in per_column.items())]:
        if value not in LOCALES:
            raise ContractConfigError(f"{path}: {key} must be one of {list(LOCALES)}, got {value!r}", file=path,
                                      field="number_locale")
    return ContractSettings(
        now=now,
        now_tolerance_days=number("now_tolerance_days", low=0.0, high=36_500.0),
        end_gap_days=number("end_gap_days", low=1.0, high=36_500.0),
        end_tail_share=number("end_tail_share", low=0.0, high=0.5),
        max_amount_factor=number("max_amount_factor", low=1.0, nullable=True),
        max_amount=number("max_amount", low=0.0, nullable=True),
        number_locale={str(c).strip().lower(): v for c, v in per_column.items()},
        default_locale=default,
    )


# --- numbers ----------------------------------------------------------------------------------------------------


@dataclass
class ParsedNumbers:
    """A text column read as numbers: ``values`` (NaN where unreadable or ambiguous) and what was decided."""

    values: pd.Series
    ambiguous: pd.Series  # bool: the two readings differ and the column does not settle which one
    locale: str  # the locale used: dot, comma or mixed (auto with values of both kinds)
    example: str | None = None  # a value that decided the locale (comma and mixed only), for the report


def parse_numbers(text: pd.Series, locale: str = "auto") -> ParsedNumbers:
    """Read stripped text (blanks NA) as float64 by the locale rule; ``¥``, ``￥`` and spaces are ignored.

    ``locale`` ``dot`` reads ``1,234.50``; ``comma`` reads ``1.234,50``; ``auto`` decides per value and column
    (module docstring). Unreadable values are NaN (the caller's row rule rejects them).
    """
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    u = pd.Series(uniques, dtype="str").str.replace(r"[¥￥\s]", "", regex=True)
    has_comma = u.str.contains(",", regex=False)
    has_dot = u.str.contains(".", regex=False)
    dot_text = u.where(~has_comma | u.str.fullmatch(_DOT_GROUPED)).str.replace(",", "", regex=False)
    dot = pd.to_numeric(dot_text, errors="coerce").astype("float64")
    comma_ok = (has_dot & u.str.fullmatch(_COMMA_GROUPED)) | (~has_dot & (~has_comma | u.str.fullmatch(_COMMA_DECIMAL)))
    comma_text = u.where(comma_ok).str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    comma = pd.to_numeric(comma_text, errors="coerce").astype("float64")

    only_dot, only_comma = dot.notna() & comma.isna(), comma.notna() & dot.isna()
    differ = dot.notna() & comma.notna() & (dot != comma)
    example = None
    if locale == "dot":
        value, ambiguous, used = dot, pd.Series(False, index=u.index), "dot"
    elif locale == "comma":
        value, ambiguous, used = comma, pd.Series(False, index=u.index), "comma"
    else:
        value = dot.where(dot.notna(), comma)
        if only_comma.any() and not only_dot.any():
            used, example = "comma", uniques[int(np.flatnonzero(only_comma)[0])]
            value = value.where(~differ, comma)
            ambiguous = pd.Series(False, index=u.index)
        elif only_dot.any() and not only_comma.any():
            used, ambiguous = "dot", pd.Series(False, index=u.index)
        else:  # no evidence either way, or both kinds: a value read differently by the two locales is ambiguous
            used = "mixed" if only_comma.any() else "dot"
            if used == "mixed":
                example = uniques[int(np.flatnonzero(only_comma)[0])]
            ambiguous = differ
            value = value.where(~differ)
    values = np.append(value.to_numpy(dtype="float64"), np.nan)[codes]
    flags = np.append(ambiguous.to_numpy(dtype=bool), False)[codes]
    return ParsedNumbers(pd.Series(values, index=text.index, dtype="float64"),
                         pd.Series(flags, index=text.index, dtype=bool), used, example)


# --- amounts ----------------------------------------------------------------------------------------------------


def amount_bound(valid_amounts: pd.Series, settings: ContractSettings) -> float | None:
    """The largest plausible order amount: ``max_amount_factor`` × median of the valid amounts, capped by
    ``max_amount``; ``None`` when neither bound applies (no factor and no cap, or a median of 0)."""
    bounds = []
    if settings.max_amount_factor is not None and len(valid_amounts):
        median = float(np.median(valid_amounts))
        if median > 0:
            bounds.append(settings.max_amount_factor * median)
    if settings.max_amount is not None:
        bounds.append(settings.max_amount)
    return min(bounds) if bounds else None


# --- time -------------------------------------------------------------------------------------------------------


@dataclass
class TimeLimit:
    """The latest plausible timestamp and why: ``limit`` is ``min(now + tolerance, activity end + gap)``."""

    limit: pd.Timestamp
    now_limit: pd.Timestamp
    activity_end: pd.Timestamp | None  # the plausible end of orders + events (None: no activity timestamps)
    cut: bool  # a gap separated late rows from the bulk

    def reason(self, ts: pd.Timestamp) -> str:
        if ts > self.now_limit:
            return f"after the time of the run ({self.now_limit:%Y-%m-%d %H:%M} incl. tolerance)"
        return f"after the plausible end of the data ({self.limit:%Y-%m-%d %H:%M})"


def activity_end(timestamps: list[pd.Series], settings: ContractSettings) -> tuple[pd.Timestamp | None, bool]:
    """The plausible end of the activity timestamps and whether a late tail was cut off (module docstring)."""
    values = np.sort(np.concatenate([s.dropna().to_numpy(dtype="datetime64[us]") for s in timestamps] or
                                    [np.array([], dtype="datetime64[us]")]))
    n = len(values)
    if n == 0:
        return None, False
    tail_max = int(math.floor(settings.end_tail_share * n))
    if tail_max >= 1:
        gap = np.timedelta64(int(settings.end_gap_days * 86_400_000_000), "us")
        start = n - tail_max - 1  # positions i whose tail (n - 1 - i rows) is at most tail_max
        gaps = np.flatnonzero(np.diff(values[start:]) > gap)
        if len(gaps):
            return pd.Timestamp(values[start + gaps[0]]), True
    return pd.Timestamp(values[-1]), False


def time_limit(activity: list[pd.Series], settings: ContractSettings) -> TimeLimit:
    """The latest plausible timestamp for every table, from the activity (orders and events) timestamps.

    ``activity`` holds every parsed timestamp of orders and events (NaT ignored); those after the run's time are
    left out before the activity end is found, so they cannot stretch it.
    """
    now_limit = settings.run_time() + pd.Timedelta(days=settings.now_tolerance_days)
    kept = [s[s <= now_limit] for s in activity]
    end, cut = activity_end(kept, settings)
    limit = now_limit if end is None else min(now_limit, end + pd.Timedelta(days=settings.end_gap_days))
    return TimeLimit(limit=limit, now_limit=now_limit, activity_end=end, cut=cut)


# --- keys -------------------------------------------------------------------------------------------------------


def known_customer_keys(orders: pd.DataFrame, identities: pd.DataFrame | None = None) -> pd.Index:
    """Every ``customer_key`` of ``orders`` and ``identities``: the customers the brand knows."""
    keys = [orders["customer_key"].dropna()]
    if identities is not None and "customer_key" in identities.columns:
        keys.append(identities["customer_key"].dropna())
    return pd.Index(pd.concat(keys, ignore_index=True).astype("str").unique())


def count_unknown_keys(frame: pd.DataFrame, known: pd.Index) -> tuple[int, int]:
    """``(rows, distinct keys)`` of ``frame`` whose ``customer_key`` is not in ``known``."""
    codes, uniques = pd.factorize(frame["customer_key"], use_na_sentinel=True)  # distinct keys first: fast
    unknown = np.append(~pd.Index(uniques, dtype="str").isin(known), False)
    return int(unknown[codes].sum()), int(unknown.sum())
