"""The festival calendar as data: window features, the seasonal index, YAML errors, last year's window spend."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import spec
from features.calendar import (
    CALENDAR_ENV,
    DEFAULT_CALENDAR,
    CalendarError,
    daily_paid_revenue,
    fit_seasonal_index,
    load_calendar,
    window_features,
)
from features.dataset import Dataset
from features.errors import InputError
from features.pipeline import build_features
from features.simulate.festivals import CNY_DATES

ROOT = Path(__file__).resolve().parents[2]


def test_a_festival_inside_the_window_changes_the_features_one_outside_does_not():
    cal = load_calendar()
    june = window_features(cal, "2025-06-01", 30)  # 618 pre-sales and peak: June 1-18
    july = window_features(cal, "2025-07-01", 30)
    assert june["cal_days_d618"] == 18 and july["cal_days_d618"] == 0
    assert july["cal_festival_days"] == 0 and june["cal_festival_days"] == 18
    # a 90-day window from mid-October holds National Day's last days, the whole 双11 period and nothing else
    autumn = window_features(cal, "2025-10-05", 40)
    assert autumn["cal_days_national_day"] == 3 and autumn["cal_days_d1111"] == 12
    assert autumn["cal_festival_days"] == 15
    # Chinese New Year moves: late January in 2025, mid-February in 2026
    jan25, jan26 = window_features(cal, "2025-01-01", 31), window_features(cal, "2026-01-01", 31)
    assert jan25["cal_days_cny"] == 13 and jan26["cal_days_cny"] == 0 and jan26["cal_days_nianhuo"] == 14


def test_overlapping_periods_count_once_for_the_festival_listed_first(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text('festivals:\n'
                    '  - {name: big, date: "11-11", days: [-5, 0]}\n'
                    '  - {name: wide, date: "11-01", days: [0, 20]}\n')
    f = window_features(load_calendar(path), "2025-11-01", 30)
    assert f["cal_days_big"] == 6 and f["cal_days_wide"] == 21 - 6 and f["cal_festival_days"] == 21


def test_the_default_calendar_covers_2020_to_2030_and_the_simulator_shares_its_new_year_dates():
    cal = load_calendar()
    assert cal.source == str(DEFAULT_CALENDAR.resolve())
    cny = cal.festivals[cal.names.index("cny")]
    assert set(range(2020, 2031)) <= set(cny.dates)
    assert {y: d.isoformat() for y, d in cny.dates.items() if y in CNY_DATES} == CNY_DATES
    assert {"d618", "d1111", "christmas", "cny"} <= set(cal.names)


def test_a_user_calendar_overrides_the_default_by_path_or_environment(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text('festivals:\n  - name: anniversary\n    label: brand day\n    date: "09-09"\n    days: [-2, 0]\n')
    assert load_calendar(path).names == ("anniversary",)
    monkeypatch.setenv(CALENDAR_ENV, str(path))
    assert load_calendar().names == ("anniversary",)
    assert window_features(load_calendar(), "2025-09-01", 30)["cal_days_anniversary"] == 3


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("festivals: [", "", "not valid YAML"),
    ("other: 1\n", "", "single key 'festivals'"),
    ("festivals:\n  - {name: Big Day, date: '11-11'}\n", "festivals[0].name", "column-safe"),
    ("festivals:\n  - {name: a, date: '11-11'}\n  - {name: a, date: '12-12'}\n", "festivals[1].name",
     "listed twice"),
    ("festivals:\n  - {name: a, date: '13-40'}\n", "festivals[0] (a).date", "not a day of the year"),
    ("festivals:\n  - {name: a, date: '11-11', colour: red}\n", "festivals[0].colour", "unknown key"),
    ("festivals:\n  - {name: a, date: '11-11', days: [3, 1]}\n", "festivals[0] (a).days", "first <= last"),
    ("festivals:\n  - {name: a}\n", "festivals[0] (a)", "exactly one of 'date'"),
    ("festivals:\n  - name: cny\n    dates: {2025: 2024-01-29}\n", "festivals[0] (cny).dates.2025",
     "not in the year"),
    ("festivals:\n  - name: cny\n    dates: {2025: soon}\n", "festivals[0] (cny).dates.2025", "not a YYYY-MM-DD"),
])
def test_yaml_errors_name_the_file_and_the_key(tmp_path, text, key, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalendarError) as err:
        load_calendar(path)
    assert isinstance(err.value, InputError)
    assert str(path) in str(err.value) and reason in str(err.value)
    assert err.value.file == str(path.resolve()) and err.value.field == ((key,) if key else ())
    if key:
        assert f": {key}: " in str(err.value)


def test_a_missing_calendar_file_is_named(tmp_path):
    with pytest.raises(CalendarError, match=r"nope\.yaml: no such calendar file"):
        load_calendar(tmp_path / "nope.yaml")


def test_a_year_without_a_date_counts_no_days_and_says_so(tmp_path, caplog):
    path = tmp_path / "cal.yaml"
    path.write_text("festivals:\n  - name: cny\n    dates: {2025: 2025-01-29}\n    days: [0, 0]\n")
    with caplog.at_level("WARNING", logger="features.calendar"):
        assert window_features(load_calendar(path), "2040-01-01", 60)["cal_days_cny"] == 0
    assert "no date in 2040" in caplog.text


def _revenue(start: str, days: int, lifts: dict[tuple[int, int], float], level: float = 100.0) -> pd.Series:
    idx = pd.date_range(start, periods=days, freq="D")
    values = np.full(days, level)
    for (month, day), lift in lifts.items():
        values[(idx.month == month) & (idx.day == day)] *= lift
    return pd.Series(values, index=idx)


def test_the_seasonal_index_learns_a_festival_lift_and_scores_its_window_higher(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text('festivals:\n  - {name: peak, date: "06-18", days: [0, 0]}\n'
                    '  - {name: unseen, date: "02-02", days: [0, 0]}\n')
    cal = load_calendar(path)
    revenue = _revenue("2023-03-01", 300, {(6, 18): 4.0})
    si = fit_seasonal_index(revenue, cal)
    assert si.lifts["peak"] == pytest.approx(4.0) and si.occurrences == {"peak": 1, "unseen": 0}
    assert "unseen" not in si.lifts  # never seen in the history: counts as 1
    assert si.window_index("2025-06-01", 30) == pytest.approx((29 + 4.0) / 30)
    assert si.window_index("2025-07-01", 30) == 1.0 and si.window_index("2025-02-01", 30) == 1.0
    f = window_features(cal, "2025-06-01", 30, si)
    assert f["cal_seasonal_index"] == pytest.approx(33 / 30)


def test_daily_revenue_reads_paid_orders_before_as_of_only():
    orders = pd.DataFrame({
        "customer_key": ["a", "a", "b", "b"],
        "order_ts": pd.to_datetime(["2025-01-01 10:00", "2025-01-03 23:59", "2025-01-03 01:00", "2025-01-04 00:00"]),
        "amount": [10.0, 20.0, 5.0, 1000.0],
        "status": ["paid", "paid", "refunded", "paid"],
    })
    rev = daily_paid_revenue(orders, date(2025, 1, 4))
    assert list(rev.index.strftime("%m-%d")) == ["01-01", "01-02", "01-03"]
    assert rev.tolist() == [10.0, 0.0, 20.0]


def test_docs_calendar_table_equals_the_spec():
    lines = (ROOT / "docs" / "features.md").read_text().splitlines()
    start = lines.index(spec.CALENDAR_MARKDOWN_HEADER)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    assert "\n".join(lines[start:end]) + "\n" == spec.calendar_markdown_table(), \
        "regenerate with `python -m features.spec --calendar`"
    assert [c for _, c, _ in spec.expand(spec.CALENDAR_SPEC)][:len(load_calendar().names)] == \
        [f"cal_days_{n}" for n in load_calendar().names]
    assert set(window_features(load_calendar(), "2025-01-01", 30)) == {c for _, c, _ in spec.expand(spec.CALENDAR_SPEC)}


def test_last_years_spend_in_the_same_calendar_window():
    as_of = date(2025, 7, 1)

    def at(days_before: int) -> pd.Timestamp:
        return pd.Timestamp(as_of - timedelta(days=days_before)) + pd.Timedelta(hours=12)

    orders = pd.DataFrame({
        "customer_key": ["a"] * 6,
        "order_ts": [at(366), at(365), at(340), at(300), at(30), at(-10)],
        "amount": [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0],
    })
    f = build_features(Dataset(orders=orders), as_of).set_index("person_id").iloc[0]
    # [as_of - 365, as_of - 335) holds the orders 365 and 340 days back; the 90-day window also the one 300 back
    assert f["spend_ly_30d"] == 110.0 and f["spend_ly_90d"] == 1110.0 and f["spend_ly_180d"] == 1110.0
    assert "spend_ly_365d" not in f.index  # a full year back is spend_365d
    assert f["spend_365d"] == 11110.0
