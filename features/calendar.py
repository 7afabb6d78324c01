"""The festival calendar as data, calendar features of a horizon window and a brand's seasonal index.

The calendar is a YAML file (the packaged default is ``features/calendars/cn.yaml``: Chinese New Year, 年货节,
3.8, 520, 618, National Day, 双11, 双12, Christmas; its header says how to write one). :func:`load_calendar` reads
it from an explicit path, else from the ``SCRM_CALENDAR`` environment variable, else the default, and refuses a
malformed file with a :class:`CalendarError` that names the file and the key.

Calendar features describe the window ``[start, start + H)`` a model predicts (one value per window, the same
for everybody scored that day; see ``features.spec.CALENDAR_SPEC``): the days of each named festival inside it
(``cal_days_<name>``), all festival days (``cal_festival_days``) and the brand's seasonal index of the window
(``cal_seasonal_index``). The seasonal index comes from the brand's own daily paid revenue before ``as_of``
(:func:`fit_seasonal_index`): each festival's lift is its revenue over a local baseline (a centred moving average
of the days outside every festival), pooled over every past occurrence; a window's index is the mean lift of
its days (1 on a day outside every festival, and for a festival never seen in the history).

The simulator's retail calendar (``features.simulate.festivals``) takes its Chinese-New-Year dates from the
same file, so the calendar the models read and the one the simulated shoppers follow cannot drift apart.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CALENDAR = Path(__file__).with_name("calendars") / "cn.yaml"
CALENDAR_ENV = "SCRM_CALENDAR"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_WARNED: set[tuple[str, str, int]] = set()


class CalendarError(InputError):
    """A festival calendar file that cannot be used (the message names the file and the key)."""


@dataclass(frozen=True)
class Festival:
    """One named festival: its period ``[anchor + first, anchor + last]`` every year.

    ``month_day`` is set for a fixed-date festival; ``dates`` (year → anchor day) for one that moves.
    """

    name: str
    label: str
    first: int
    last: int
    month_day: tuple[int, int] | None = None
    dates: dict[int, date] = field(default_factory=dict)

    def anchor(self, year: int) -> date | None:
        """The festival's day in ``year`` (``None`` when a moving festival has no date that year)."""
        if self.month_day is not None:
            month, day = self.month_day
            if (month, day) == (2, 29) and not _leap(year):
                day = 28
            return date(year, month, day)
        return self.dates.get(year)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass(frozen=True)
class Calendar:
    """The festivals of one calendar file, in priority order (a day in two periods counts for the first)."""

    festivals: tuple[Festival, ...]
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.festivals)

    def day_festivals(self, start, days: int) -> np.ndarray:
        """Index into ``festivals`` of the festival each day of ``[start, start + days)`` belongs to (-1: none)."""
        start = _as_date(start)
        out = np.full(max(int(days), 0), -1, dtype=np.int64)
        if not len(out):
            return out
        end = start + timedelta(days=len(out) - 1)
        for i, fest in enumerate(self.festivals):
            # a period can start in the year before its anchor (or end in the year after)
            for year in range(start.year - 1, end.year + 2):
                anchor = fest.anchor(year)
                if anchor is None:
                    if start.year <= year <= end.year:
                        _warn_missing(self, fest, year)
                    continue
                lo = (anchor + timedelta(days=fest.first) - start).days
                hi = (anchor + timedelta(days=fest.last) - start).days
                lo, hi = max(lo, 0), min(hi, len(out) - 1)
                if lo > hi:
                    continue
                seg = out[lo:hi + 1]
                seg[seg < 0] = i
        return out

    def window_days(self, start, days: int) -> dict[str, int]:
        """Days of each festival inside ``[start, start + days)`` (``{name: days}``, every festival listed)."""
        idx = self.day_festivals(start, days)
        counts = np.bincount(idx[idx >= 0], minlength=len(self.festivals))
        return {f.name: int(n) for f, n in zip(self.festivals, counts, strict=True)}


def _warn_missing(calendar: Calendar, fest: Festival, year: int) -> None:
    key = (calendar.source, fest.name, year)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("calendar %s: festival %r has no date in %d; that year it counts no days", calendar.source,
                    fest.name, year)


def _as_date(value) -> date:
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        return value.date()
    if hasattr(value, "date") and callable(value.date):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a date or YYYY-MM-DD string, got {value!r}")


# ---------------------------------------------------------------------------------------------------- loading


def calendar_path(path: str | Path | None = None) -> Path:
    """The calendar file to read: ``path``, else ``$SCRM_CALENDAR``, else the packaged ``calendars/cn.yaml``."""
    chosen = path if path is not None else os.environ.get(CALENDAR_ENV) or DEFAULT_CALENDAR
    return Path(chosen)


def load_calendar(path: str | Path | None = None) -> Calendar:
    """Read and check a festival calendar (see :func:`calendar_path` for which file).

    Raises
    ------
    CalendarError
        A missing or unreadable file, or a key with a bad value; the message names the file and the key
        (``festivals[3].date``).
    """
    return _load(str(calendar_path(path).resolve()))


@functools.lru_cache(maxsize=8)
def _load(path: str) -> Calendar:
    file = Path(path)

    def fail(key: str, reason: str) -> CalendarError:
        where = f"{file}: {key}: " if key else f"{file}: "
        return CalendarError(where + reason, field=key or (), reason=reason, file=file)

    if not file.is_file():
        raise fail("", f"no such calendar file (set {CALENDAR_ENV} or pass a path to an existing YAML file)")
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise fail("", f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or set(doc) != {"festivals"}:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise fail("", f"expected a mapping with the single key 'festivals', found {found}")
    items = doc["festivals"]
    if not isinstance(items, list) or not items:
        raise fail("festivals", "expected a non-empty list of festivals")
    festivals, seen = [], set()
    for i, item in enumerate(items):
        key = f"festivals[{i}]"
        if not isinstance(item, dict):
            raise fail(key, "expected a mapping with name, label, days and date or dates")
        unknown = sorted(set(item) - {"name", "label", "days", "date", "dates"})
        if unknown:
            raise fail(f"{key}.{unknown[0]}", "unknown key (allowed: name, label, days, date, dates)")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(f"{key}.name", f"{name!r} is not a column-safe name (lower-case letters, digits, '_', "
                                      "starting with a letter, at most 32 characters)")
        if name in seen:
            raise fail(f"{key}.name", f"festival {name!r} is listed twice")
        seen.add(name)
        key = f"festivals[{i}] ({name})"
        days = item.get("days", [0, 0])
        if (not isinstance(days, list) or len(days) != 2 or not all(isinstance(d, int) and not isinstance(d, bool)
                                                                   for d in days) or days[0] > days[1]
                or max(abs(days[0]), abs(days[1])) > 120):
            raise fail(f"{key}.days", f"expected [first, last] whole-day offsets with first <= last, within "
                                      f"±120 days, got {days!r}")
        if ("date" in item) == ("dates" in item):
            raise fail(key, "give exactly one of 'date' (MM-DD, every year) and 'dates' (year: YYYY-MM-DD)")
        month_day, dates = None, {}
        if "date" in item:
            m = _MONTH_DAY.match(str(item["date"]))
            if m is None:
                raise fail(f"{key}.date", f"expected a quoted \"MM-DD\", got {item['date']!r}")
            month_day = (int(m.group(1)), int(m.group(2)))
            try:
                date(2024, *month_day)
            except ValueError:
                raise fail(f"{key}.date", f"{item['date']!r} is not a day of the year") from None
        else:
            raw = item["dates"]
            if not isinstance(raw, dict) or not raw:
                raise fail(f"{key}.dates", "expected a mapping year: YYYY-MM-DD")
            for year, value in raw.items():
                try:
                    day = value if isinstance(value, date) else date.fromisoformat(str(value))
                except ValueError:
                    raise fail(f"{key}.dates.{year}", f"{value!r} is not a YYYY-MM-DD date") from None
                if not isinstance(year, int) or day.year != year:
                    raise fail(f"{key}.dates.{year}", f"the date {day} is not in the year {year!r}")
                dates[year] = day
        label = item.get("label", name)
        festivals.append(Festival(name=name, label=str(label), first=days[0], last=days[1], month_day=month_day,
                                  dates=dates))
    return Calendar(festivals=tuple(festivals), source=str(file))


def default_festival_names() -> tuple[str, ...]:
    """Festival names of the packaged calendar (the ``{festival}`` columns documented in the spec)."""
    return load_calendar(DEFAULT_CALENDAR).names


# ---------------------------------------------------------------------------------------------------- seasonality


def daily_paid_revenue(orders: pd.DataFrame, before) -> pd.Series:
    """Paid revenue per calendar day of every order before ``before`` (a missing ``status`` means paid).

    Indexed by day from the first order's day to the day before ``before``; days without orders are 0.
    """
    end = pd.Timestamp(_as_date(before))
    ts = pd.to_datetime(orders["order_ts"])
    keep = (ts < end).to_numpy().copy()
    if "status" in orders.columns:
        keep &= (orders["status"] == "paid").to_numpy()
    if not keep.any():
        return pd.Series(dtype="float64")
    days = ts[keep].dt.normalize()
    rev = pd.Series(orders["amount"].to_numpy(dtype=float)[keep], index=days.to_numpy()).groupby(level=0).sum()
    full = pd.date_range(days.min(), end - pd.Timedelta(days=1), freq="D")
    return rev.reindex(full, fill_value=0.0)


@dataclass
class SeasonalIndex:
    """Festival lifts learned from a brand's daily revenue (see the module docstring).

    Attributes
    ----------
    calendar : Calendar
    lifts : dict
        ``{festival: revenue / baseline}`` for the festivals seen at least once; others count as 1.
    occurrences : dict
        ``{festival: past occurrences used}``.
    """

    calendar: Calendar
    lifts: dict[str, float]
    occurrences: dict[str, int]

    def window_index(self, start, days: int) -> float:
        """Mean lift over the days of ``[start, start + days)``: 1 for a window without a known festival."""
        idx = self.calendar.day_festivals(start, days)
        lift = np.array([self.lifts.get(name, 1.0) for name in self.calendar.names] + [1.0])
        return float(lift[idx].mean()) if len(idx) else 1.0

    def to_dict(self) -> dict:
        return {"calendar": self.calendar.source, "lifts": {k: round(v, 4) for k, v in self.lifts.items()},
                "occurrences": dict(self.occurrences)}


def fit_seasonal_index(revenue: pd.Series, calendar: Calendar, *, baseline_days: int = 91,
                       min_baseline_days: int = 30, lift_range: tuple[float, float] = (0.2, 10.0)) -> SeasonalIndex:
    """Learn each festival's lift from daily revenue (``daily_paid_revenue``: everything before ``as_of``).

    A festival occurrence counts when all its days lie inside the series and each has a baseline (the mean
    revenue of at least ``min_baseline_days`` festival-free days in the ``baseline_days`` centred on it; the
    series ends the day before ``as_of``, so a baseline never reads later days). A festival's lift is the
    occurrences' revenue over their baseline, clipped to ``lift_range``.
    """
    calendar_names = calendar.names
    if revenue.empty:
        return SeasonalIndex(calendar, {}, {n: 0 for n in calendar_names})
    start = revenue.index[0].date()
    idx = calendar.day_festivals(start, len(revenue))
    values = revenue.to_numpy(dtype=float)
    quiet = pd.Series(np.where(idx < 0, values, np.nan))
    base = quiet.rolling(baseline_days, center=True, min_periods=min_baseline_days).mean().to_numpy()
    lifts, counts = {}, {}
    days = np.arange(len(values))
    for i, fest in enumerate(calendar.festivals):
        mine = idx == i
        # one occurrence = a run of consecutive days of this festival
        runs = np.split(days[mine], np.where(np.diff(days[mine]) > 1)[0] + 1) if mine.any() else []
        num = den = 0.0
        used = 0
        for run in runs:
            if not len(run) or run[0] == 0 or run[-1] == len(values) - 1:  # may be cut by the series' ends
                continue
            b = base[run]
            if not np.isfinite(b).all() or b.sum() <= 0:
                continue
            num += values[run].sum()
            den += b.sum()
            used += 1
        counts[fest.name] = used
        if used:
            lifts[fest.name] = float(np.clip(num / den, *lift_range))
    return SeasonalIndex(calendar, lifts, counts)


def window_features(calendar: Calendar, start, days: int, seasonal: SeasonalIndex | None = None) -> dict[str, float]:
    """The calendar features of the window ``[start, start + days)`` (``features.spec.CALENDAR_SPEC``)."""
    counts = calendar.window_days(start, days)
    out: dict[str, float] = {f"cal_days_{name}": float(n) for name, n in counts.items()}
    out["cal_festival_days"] = float(sum(counts.values()))
    out["cal_seasonal_index"] = seasonal.window_index(start, days) if seasonal is not None else 1.0
    return out
