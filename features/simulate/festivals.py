"""The retail calendar of a Chinese consumer brand: daily purchase intensity, discount depth and refund risk.

Every effect is a multiplier on a person's latent purchase rate for one calendar day, so the oracle can
integrate the intensity exactly over any window. The calendar is a pure function of the dates; the same
days always get the same multipliers.

Effects: 3.8 (女神节), 520, 618 (ramp through June, peak on June 18), 双11 (first wave Oct 31–Nov 3, peak on
Nov 11, a lull before and after), 双12 (Dec 12), a pre-New-Year gift season and the Chinese-New-Year
logistics dip (about two weeks around the holiday), plus a mild weekend lift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.calendar import DEFAULT_CALENDAR, load_calendar

#: Chinese New Year (Spring Festival) dates: the packaged festival calendar's (``features/calendars/cn.yaml``,
#: the one the models read), limited to the years the simulator supports; it refuses years outside this table.
CNY_DATES = {year: day.isoformat()
             for fest in load_calendar(DEFAULT_CALENDAR).festivals if fest.name == "cny"
             for year, day in fest.dates.items() if 2019 <= year <= 2031}

BASE_DISCOUNT = 0.08
BASE_REFUND = 0.025
CANCEL_RATE = 0.01

# Hour-of-day weights for orders and events (evening peak); festival peak days add a midnight rush.
_HOURS = np.array(
    [
        3.0,
        1.8,
        0.9,
        0.5,
        0.3,
        0.3,
        0.5,
        1.0,
        2.0,
        3.0,
        3.8,
        4.0,
        4.4,
        4.0,
        3.6,
        3.5,
        3.8,
        4.2,
        4.6,
        5.4,
        6.4,
        7.2,
        7.0,
        5.2,
    ]
)
_PEAK_HOURS = _HOURS * np.where(np.arange(24) == 0, 9.0, 1.0) * np.where(np.arange(24) == 20, 2.0, 1.0)
HOUR_CDF = np.cumsum(_HOURS) / _HOURS.sum()
PEAK_HOUR_CDF = np.cumsum(_PEAK_HOURS) / _PEAK_HOURS.sum()


def calendar(start: str | pd.Timestamp, end: str | pd.Timestamp) -> pd.DataFrame:
    """Daily calendar effects for every day in ``[start, end]`` (both inclusive).

    Parameters
    ----------
    start, end : str or Timestamp
        First and last day.

    Returns
    -------
    DataFrame
        One row per day: ``date``; ``intensity`` (multiplier on the purchase rate, about 1 on an ordinary
        weekday); ``discount_rate`` (mean discount as a fraction of the list price); ``refund_rate`` and
        ``cancel_rate`` (probability an order placed that day is refunded or cancelled); ``paid_rate``
        (1 − refund − cancel); ``peak`` (festival peak day: 618, 双11, 双12); ``festival`` (a short label, empty
        on ordinary days).

    Raises
    ------
    ValueError
        When the range is empty or reaches a year without a known Chinese-New-Year date.
    """
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if end < start:
        raise ValueError(f"calendar: end {end.date()} is before start {start.date()}")
    dates = pd.date_range(start, end, freq="D")
    years = np.unique(dates.year)
    missing = [int(y) for y in years if y not in CNY_DATES]
    if missing:
        raise ValueError(
            f"calendar: no Chinese-New-Year date for year(s) {missing}; known {min(CNY_DATES)}–{max(CNY_DATES)}"
        )
    n = len(dates)
    month = dates.month.to_numpy()
    day = dates.day.to_numpy()
    weekday = dates.day_of_week.to_numpy()

    intensity = np.where(weekday >= 5, 1.08, 0.97).astype(float)
    discount = np.full(n, BASE_DISCOUNT)
    refund = np.full(n, BASE_REFUND)
    label = np.full(n, "", dtype=object)
    peak = np.zeros(n, dtype=bool)

    def apply(mask, mult, disc=None, refund_rate=None, name=""):
        nonlocal intensity
        intensity = np.where(mask, intensity * mult, intensity)
        if disc is not None:
            discount[mask] = disc
        if refund_rate is not None:
            refund[mask] = refund_rate
        if name:
            label[mask] = name

    # 3.8 women's day and 520
    apply((month == 3) & (day >= 5) & (day <= 7), 1.4, 0.12, name="3.8")
    apply((month == 3) & (day == 8), 2.2, 0.18, 0.035, name="3.8")
    apply((month == 5) & (day == 20), 1.6, 0.10, name="520")
    # 618: a lull in late May, a ramp through June 1-17, the peak on June 18, a hangover after
    apply((month == 5) & (day >= 21), 0.85)
    ramp = (month == 6) & (day <= 17)
    intensity = np.where(ramp, intensity * (1.3 + 0.8 * (day - 1) / 16.0), intensity)
    discount[ramp] = 0.14
    refund[ramp] = 0.03
    label[ramp] = "618"
    apply((month == 6) & (day == 18), 5.5, 0.25, 0.06, name="618")
    peak |= (month == 6) & (day == 18)
    apply((month == 6) & (day >= 19) & (day <= 25), 0.75)
    # 双11: shoppers wait from Oct 20, first wave Oct 31-Nov 3, steady until the Nov 11 peak, lull after
    apply((month == 10) & (day >= 20) & (day <= 30), 0.8)
    apply(((month == 10) & (day == 31)) | ((month == 11) & (day <= 3)), 2.4, 0.20, 0.045, name="双11")
    apply((month == 11) & (day >= 4) & (day <= 10), 1.4, 0.15, 0.035, name="双11")
    apply((month == 11) & (day == 11), 9.0, 0.30, 0.07, name="双11")
    peak |= (month == 11) & (day == 11)
    apply((month == 11) & (day >= 12) & (day <= 20), 0.7)
    # 双12
    apply((month == 12) & (day >= 10) & (day <= 11), 1.3, 0.12, name="双12")
    apply((month == 12) & (day == 12), 3.2, 0.20, 0.045, name="双12")
    peak |= (month == 12) & (day == 12)
    apply((month == 12) & (day == 13), 1.2)
    # Chinese New Year: gift season before, logistics dip around the holiday (10 days before to 4 after)
    for y in sorted({int(y) for y in years} | {int(y) + 1 for y in years}):
        if y not in CNY_DATES:
            continue
        offset = (dates - pd.Timestamp(CNY_DATES[y])).days.to_numpy()
        apply((offset >= -30) & (offset <= -11), 1.25, 0.10, name="年货节")
        apply((offset >= -10) & (offset <= 4), 0.35, 0.05, 0.02, name="春节")

    paid = 1.0 - refund - CANCEL_RATE
    return pd.DataFrame(
        {
            "date": dates,
            "intensity": intensity,
            "discount_rate": discount,
            "refund_rate": refund,
            "cancel_rate": np.full(n, CANCEL_RATE),
            "paid_rate": paid,
            "peak": peak,
            "festival": label.astype(str),
        }
    )
