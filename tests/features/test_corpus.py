"""A hostile-input corpus: files a careless exporter writes, each with its expected exit code, message and accounting.

Every case is a small data directory generated here and run through ``scrm validate`` (and, where the case is
about a value, ``load_dataset``). Each asserts the exit code, the message naming the file / column / reason, and
for readable data the closed accounting ``rows read = rows used + rows rejected``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_contract import write as write_tables
from typer.testing import CliRunner

from features.contract import DataContractError, load_dataset
from features.contract_rules import ContractSettings, known_customer_keys, load_settings, parse_numbers
from training.decisions.campaigns import evaluate_campaign

ACCOUNTING = re.compile(r"(\w+) \([\w.]+\): rows read ([\d,]+) = rows used ([\d,]+) \+ rows rejected ([\d,]+)")


def orders(n: int = 400, seed: int = 3, *, start: str = "2024-01-01", days: int = 700) -> pd.DataFrame:
    """Valid orders as an export holds them: text, two-decimal amounts, 40 customers."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, days * 24, n)), unit="h")
    return pd.DataFrame({
        "order_id": [f"o{i:05d}" for i in range(n)],
        "customer_key": [f"c{k:03d}" for k in rng.integers(0, 40, n)],
        "order_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
        "amount": [f"{a:.2f}" for a in rng.gamma(2.0, 60.0, n) + 1],
        "status": "paid",
    })


def write(out: Path, config: str | None = None, fmt: str = "csv", **tables: pd.DataFrame) -> Path:
    write_tables(tables, out, fmt)
    if config is not None:
        (out / "contract.yaml").write_text(config, encoding="utf-8")
    return out


def validate(data: Path) -> tuple[int, str, dict[str, tuple[int, int, int]]]:
    """Run ``scrm validate``: exit code, all output on one line, and the accounting per table."""
    from training.cli import app

    result = CliRunner().invoke(app, ["validate", "--data", str(data)])
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    flat = " ".join(out.split())
    accounting = {m[0]: tuple(int(x.replace(",", "")) for x in m[1:]) for m in ACCOUNTING.findall(flat)}
    for read, used, rejected in accounting.values():
        assert read == used + rejected, flat
    return result.exit_code, flat, accounting


def assert_fatal(data: Path, *fragments: str) -> None:
    code, out, _ = validate(data)
    assert code == 2, out
    assert "error:" in out and "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in out, (fragment, out)
    assert not (data / "rejects").exists()  # a fatal problem leaves nothing behind


# --- fatal: the file as a whole cannot be used ------------------------------------------------------------------


def test_gbk_encoded_csv_is_refused_naming_the_encoding(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    frame = orders(20).assign(category="护肤")
    (data / "orders.csv").write_bytes(frame.to_csv(index=False).encode("gbk"))
    assert_fatal(data, "orders.csv", "not valid UTF-8")


def test_empty_file_is_refused(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "orders.csv").write_bytes(b"")
    assert_fatal(data, "orders.csv", "no rows")


def test_header_only_file_is_refused(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "orders.csv").write_text("order_id,customer_key,order_ts,amount\n", encoding="utf-8")
    assert_fatal(data, "orders.csv", "no rows")


def test_truncated_parquet_is_refused(tmp_path):
    data = write(tmp_path / "d", fmt="parquet", orders=orders(50))
    blob = (data / "orders.parquet").read_bytes()
    (data / "orders.parquet").write_bytes(blob[: len(blob) // 2])
    assert_fatal(data, "orders.parquet", "unreadable")


def test_all_orders_after_the_run_time_is_fatal_with_the_fix(tmp_path):
    config = "now: 2023-06-01\n"  # the run is "before" the data: every order is in its future
    data = write(tmp_path / "d", config, orders=orders(30))
    assert_fatal(data, "orders.csv", "column 'order_ts'", "no usable rows: all 30 rows rejected (mostly future_timestamp)",
                 "now_tolerance_days")


def test_all_amounts_ambiguous_is_fatal_with_the_fix(tmp_path):
    frame = orders(12)
    frame["amount"] = ["1,234", "2,500", "3,999"] * 4  # no value says whether ',' groups or is the decimal
    data = write(tmp_path / "d", orders=frame)
    code, out, _ = validate(data)
    assert code == 2, out
    assert "column 'amount'" in out and "mostly ambiguous_number" in out and "number_locale" in out


def test_bad_contract_settings_are_refused_naming_the_key(tmp_path):
    data = write(tmp_path / "d", "max_amount_factr: 50\n", orders=orders(10))
    assert_fatal(data, "contract.yaml", "max_amount_factr")
    (data / "contract.yaml").write_text("number_locale: {amount: french}\n", encoding="utf-8")
    assert_fatal(data, "contract.yaml", "number_locale.amount", "french")


# --- handled: read correctly, nothing lost ----------------------------------------------------------------------


def test_bom_csv_reads_its_first_column(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "orders.csv").write_bytes(orders(25).to_csv(index=False).encode("utf-8-sig"))
    code, out, accounting = validate(data)
    assert code == 0, out
    assert accounting["orders"] == (25, 25, 0)
    assert load_dataset(data).orders.columns[0] == "order_id"  # not '\ufefforder_id'
    assert load_dataset(data).orders["order_id"].iloc[0] == "o00000"


def test_leading_zero_keys_stay_strings(tmp_path):
    frame = orders(20)
    frame["customer_key"] = ["007", "0042", "7", "42"] * 5
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (20, 20, 0), out
    keys = set(load_dataset(data).orders["customer_key"])
    assert keys == {"007", "0042", "7", "42"}  # not 7 and 42 twice


def test_time_zones_are_converted_to_shanghai(tmp_path):
    frame = orders(4)
    frame["order_ts"] = ["2025-06-17T16:00:00Z", "2025-06-18 00:00:00", "2025-06-18T00:00:00+08:00",
                         "2025-06-17T12:00:00-04:00"]
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (4, 4, 0), out
    assert load_dataset(data).orders["order_ts"].nunique() == 1  # the same instant four ways


def test_duplicate_ids_keep_the_first(tmp_path):
    frame = orders(30)
    frame.loc[[10, 20], "order_id"] = "o00001"
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert re.search(r"duplicate_order_id 2 o00001, o00001", out)
    assert accounting["orders"] == (30, 28, 2)


def test_bad_statuses_are_quarantined(tmp_path):
    frame = orders(30)
    frame.loc[[3, 4, 5], "status"] = ["shipped", "待付款", "PAID "]  # the last one is fine (case, spaces)
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert re.search(r"unknown_status 2 o00003, o00004", out)
    assert accounting["orders"] == (30, 28, 2)


# --- the defects of issue 16 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [None, "now: 2031-06-01\n"], ids=["run-time", "gap-after-the-bulk"])
def test_orders_dated_2030_are_quarantined_and_the_default_as_of_ignores_them(tmp_path, capsys, config):
    """50 of 20,934 orders dated 2030 moved the default --as-of to 2030-01-02; now they are quarantined.

    Without a config the run's time (the clock) catches them; with ``now`` set past 2030 the gap rule does: they
    lie 4 years after the bulk of the data and are 0.25 % of it.
    """
    frame = orders(2000, start="2024-01-01", days=730)
    late = frame.sample(5, random_state=1).index
    frame.loc[late, "order_ts"] = "2030-01-01 10:00:00"
    data = write(tmp_path / "d", config, orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert re.search(r"future_timestamp 5 ", out) and "order_ts: 5 value(s) from 2030-01-01 on are after" in out
    assert accounting["orders"] == (2000, 1995, 5)
    last = pd.Timestamp(frame.drop(late)["order_ts"].max())
    assert f"accepted orders and events end {last:%Y-%m-%d %H:%M:%S}: default --as-of " \
           f"{(last + pd.Timedelta(days=1)).date().isoformat()}" in out

    from training.cli.base import _resolve_as_of

    dataset = load_dataset(data)
    capsys.readouterr()
    as_of = _resolve_as_of(None, dataset)
    expected = (last + pd.Timedelta(days=1)).date()
    assert as_of == expected and as_of.year < 2030
    printed = " ".join(capsys.readouterr().err.split())
    assert f"--as-of {expected.isoformat()} (default: the day after the last accepted order or event" in printed
    assert "5 row(s) dated after the plausible end were quarantined" in printed


def test_a_recent_tail_of_legitimate_orders_is_kept(tmp_path):
    """A quiet spell followed by a busy month is data, not a clock error: the tail is more than 1 % of rows."""
    frame = pd.concat([orders(300, start="2024-01-01", days=100), orders(60, seed=4, start="2024-09-01", days=30)
                       .assign(order_id=lambda d: "n" + d["order_id"])], ignore_index=True)
    data = write(tmp_path / "d", "now: 2024-10-05\n", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (360, 360, 0), out


def test_touches_and_identities_after_the_data_are_quarantined(tmp_path):
    frame = orders(200, start="2024-01-01", days=365)
    touches = pd.DataFrame({"campaign_id": "c1", "customer_key": ["c001", "c002", "c003", "c004"],
                            "sent_ts": ["2024-06-01", "2024-06-01", "2029-06-01", "2024-06-02"],
                            "group": ["treatment", "control", "treatment", "control"]})
    data = write(tmp_path / "d", "now: 2031-01-01\n", orders=frame, campaign_touches=touches)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert accounting["campaign_touches"] == (4, 3, 1) and "future_timestamp 1" in out


def test_decimal_comma_is_not_read_as_hundreds(tmp_path):
    """``"12,50"`` was read as 1250 (every comma deleted): revenue ×100 and 钻石 tiers for everyone."""
    frame = orders(6)
    frame["amount"] = ["12,50", "1.234,50", "99,90", "7", "0,5", "1.234"]
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (6, 6, 0), out
    assert "amount: read with a decimal comma (e.g. '12,50')" in out
    assert load_dataset(data).orders["amount"].tolist() == [12.5, 1234.5, 99.9, 7.0, 0.5, 1234.0]


def test_thousands_grouping_with_a_decimal_point_still_reads(tmp_path):
    frame = orders(5)
    frame["amount"] = ["¥1,234.50", "12.50", "1,234", "2,000,000.00", "￥ 8"]
    data = write(tmp_path / "d", "max_amount_factor: null\n", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (5, 5, 0), out
    assert load_dataset(data).orders["amount"].tolist() == [1234.5, 12.5, 1234.0, 2_000_000.0, 8.0]


def test_a_column_mixing_both_marks_quarantines_only_the_ambiguous_values(tmp_path):
    frame = orders(5)
    frame["amount"] = ["12,50", "1,234.50", "1,234", "30", "1,2,3"]
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert accounting["orders"] == (5, 3, 2)
    assert re.search(r"ambiguous_number 1 o00002", out) and re.search(r"missing_amount 1 o00004", out)
    assert load_dataset(data).orders["amount"].tolist() == [12.5, 1234.5, 30.0]


def test_an_explicit_locale_settles_ambiguous_values(tmp_path):
    frame = orders(4)
    frame["amount"] = ["1.234", "2.500", "12", "12,5"]
    data = write(tmp_path / "d", "number_locale: {amount: comma}\n", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0 and accounting["orders"] == (4, 4, 0), out
    assert load_dataset(data).orders["amount"].tolist() == [1234.0, 2500.0, 12.0, 12.5]
    (data / "contract.yaml").write_text("number_locale: dot\n", encoding="utf-8")
    assert load_dataset(data).orders["amount"].tolist() == [1.234, 2.5, 12.0]  # '12,5' is not a dot number


def test_parse_numbers_rule_table():
    text = pd.Series(["12,50", "1,234.50", "1.234,50", "1,234", "12", "-3.5", "1e3", "1,2,3", None], dtype="str")
    got = parse_numbers(text, "auto")
    assert got.locale == "mixed"
    assert got.values.tolist()[:3] == [12.5, 1234.5, 1234.5]
    assert got.ambiguous.tolist() == [False, False, False, True, False, False, False, False, False]
    assert got.values[4:8].tolist()[:3] == [12.0, -3.5, 1000.0] and np.isnan(got.values[7])
    assert parse_numbers(pd.Series(["1,234", "5.5"], dtype="str")).values.tolist() == [1234.0, 5.5]
    assert parse_numbers(pd.Series(["1,234", "5,5"], dtype="str")).values.tolist() == [1.234, 5.5]


def test_implausible_amounts_are_quarantined(tmp_path):
    frame = orders(300)
    frame.loc[[7, 8], "amount"] = ["1e15", "250000000"]  # the median order is ~100
    data = write(tmp_path / "d", orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert re.search(r"implausible_amount 2 o00007, o00008", out) and "plausibility bound" in out
    assert accounting["orders"] == (300, 298, 2)
    assert load_dataset(data).orders["amount"].max() < 1e4
    # a brand whose orders really are that large raises the bound in its contract.yaml
    (data / "contract.yaml").write_text("max_amount_factor: null\nmax_amount: 1.0e+16\n", encoding="utf-8")
    assert load_dataset(data).validation.rows_rejected == 0


def test_unknown_keys_in_events_and_touches_are_counted(tmp_path):
    frame = orders(100)
    events = pd.DataFrame({"customer_key": ["c001", "ghost1", "ghost2", "ghost2"], "event_ts": "2024-05-01",
                           "event_type": "view"})
    touches = pd.DataFrame({"campaign_id": "c1", "customer_key": ["c001", "c002", "ghost9"],
                            "sent_ts": "2024-05-01", "group": ["treatment", "control", "control"]})
    identities = pd.DataFrame({"customer_key": ["c001", "ghost9"]})  # a member who never bought is known
    data = write(tmp_path / "d", events=events, campaign_touches=touches, orders=frame)
    code, out, accounting = validate(data)
    assert code == 0, out
    assert "3 row(s) of 2 customer_key(s) not in orders (no identities table)" in out
    assert "1 row(s) of 1 customer_key(s) not in orders (no identities table); campaign evaluation leaves them out" \
        in out
    assert accounting["events"] == (4, 4, 0) and accounting["campaign_touches"] == (3, 3, 0)  # kept, reported
    write(data, identities=identities)
    ds = load_dataset(data)
    assert ds.validation.tables["campaign_touches"].unknown_keys == 0
    assert ds.validation.tables["events"].unknown_keys == 3


def _campaign(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A randomised campaign in which treatment converts 30 % and control 20 % of the time."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"k{i:05d}" for i in range(n)])
    group = np.where(rng.uniform(size=n) < 0.5, "treatment", "control")
    sent = pd.Timestamp("2025-03-01")
    touches = pd.DataFrame({"campaign_id": "cmp", "customer_key": keys, "sent_ts": sent, "group": group})
    buys = rng.uniform(size=n) < np.where(group == "treatment", 0.3, 0.2)
    history = pd.DataFrame({"customer_key": keys, "order_ts": sent - pd.Timedelta(days=40), "amount": 50.0})
    converted = pd.DataFrame({"customer_key": keys[buys], "order_ts": sent + pd.Timedelta(days=3), "amount": 80.0})
    orders_ = pd.concat([history, converted], ignore_index=True).assign(status="paid")
    return touches, orders_, pd.DataFrame({"customer_key": keys, "person_id": np.char.add("p_", keys)})


def test_campaign_evaluation_leaves_out_touches_of_unknown_keys():
    """300 touches of unknown keys became phantom non-converters and moved the measured lift."""
    touches, orders_, key_map = _campaign(2000, seed=11)
    clean = evaluate_campaign(touches, orders_, key_map, "cmp", data_end="2025-06-01")
    phantoms = pd.DataFrame({"campaign_id": "cmp", "customer_key": [f"ghost{i}" for i in range(300)],
                             "sent_ts": pd.Timestamp("2025-03-01"), "group": "control"})
    dirty = pd.concat([touches, phantoms], ignore_index=True)
    full_map = pd.concat([key_map, pd.DataFrame({"customer_key": phantoms["customer_key"],
                                                 "person_id": "p_" + phantoms["customer_key"]})])
    naive = evaluate_campaign(dirty, orders_, full_map, "cmp", data_end="2025-06-01")
    assert naive["conversion"]["absolute_lift"] > clean["conversion"]["absolute_lift"] + 0.02  # the defect

    known = known_customer_keys(orders_)
    got = evaluate_campaign(dirty, orders_, full_map, "cmp", data_end="2025-06-01", known_keys=known)
    assert got["unknown_key_touches"] == 300
    assert got["conversion"] == clean["conversion"] and got["control"] == clean["control"]
    assert any("300 touch(es) of customer_keys found in neither orders nor identities are left out (control 300)"
               in w for w in got["warnings"])
    assert clean["unknown_key_touches"] == 0


def test_contract_settings_defaults_and_file(tmp_path):
    assert load_settings(tmp_path) == ContractSettings()
    (tmp_path / "contract.yaml").write_text(
        "now: 2026-01-05\nend_gap_days: 30\nmax_amount: 5000\nnumber_locale: {Amount: comma}\n", encoding="utf-8")
    settings = load_settings(tmp_path)
    assert settings.run_time() == pd.Timestamp("2026-01-05") and settings.end_gap_days == 30.0
    assert settings.locale("amount") == "comma" and settings.locale("discount") == "auto"
    with pytest.raises(DataContractError):
        load_dataset(tmp_path)  # the settings file alone is no data directory: orders is missing
