"""The data contract: every row rule, every fatal kind, accounting, no partial output, PII never in outputs."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from features.contract import RULE_ORDER, DataContractError, load_dataset
from features.pii import hmac_hash, normalize_phone

PHONES = ["13812345678", "+86 139-0000-1111", "8615011112222", "0086 186 2222 3333", "177 4444 5555"]
UNIONIDS = ["oUnion_AAAA1111", "oUnion_BBBB2222", "oUnion_CCCC3333", "oUnion_DDDD4444", "oUnion_EEEE5555"]


def clean_tables(n_orders: int = 24, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Small valid tables of every kind; values as strings, the way a CSV export holds them."""
    rng = np.random.default_rng(seed)
    keys = [f"c{i:02d}" for i in range(6)]
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300 * 24, n_orders), unit="h")
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i:03d}" for i in range(n_orders)],
            "customer_key": rng.choice(keys, n_orders),
            "order_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "amount": np.round(rng.gamma(2.0, 50.0, n_orders), 2).astype(str),
            "channel": rng.choice(["tmall", "jd", "wechat", "store"], n_orders),
            "status": rng.choice(["paid", "paid", "paid", "refunded"], n_orders),
            "discount": np.round(rng.uniform(0, 10, n_orders), 1).astype(str),
            "item_count": rng.integers(1, 4, n_orders).astype(str),
            "category": rng.choice(["skincare", "makeup"], n_orders),
            "store_id": "s1",
        }
    )
    n_ev = 20
    events = pd.DataFrame(
        {
            "customer_key": rng.choice(keys, n_ev),
            "event_ts": (pd.Timestamp("2025-02-01") + pd.to_timedelta(rng.integers(0, 5000, n_ev), unit="h")).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "event_type": rng.choice(["view", "cart", "message_open", "store_visit"], n_ev),
            "channel": rng.choice(["tmall", "wechat"], n_ev),
            "campaign_id": "",
        }
    )
    identities = pd.DataFrame(
        {
            "customer_key": keys[:5],
            "channel": ["tmall", "jd", "wechat", "store", "douyin"],
            "phone": PHONES,
            "unionid": UNIONIDS,
            "member_card": ["M1", "M2", "M3", "M4", "M5"],
            "join_ts": ["2024-01-01", "2024-02-01", "", "2024-03-01", "2024-04-01"],
            "birth_year": ["1990", "1985", "", "2000", "1970"],
            "gender": ["f", "m", "", "f", "f"],
            "city": ["上海", "北京", "", "广州", "深圳"],
            "marketing_opt_out": ["false", "true", "", "0", "1"],
        }
    )
    n_t = 12
    touches = pd.DataFrame(
        {
            "campaign_id": rng.choice(["cmp1", "cmp2"], n_t),
            "customer_key": rng.choice(keys, n_t),
            "sent_ts": "2025-06-10 09:00:00",
            "group": rng.choice(["treatment", "control"], n_t),
            "channel": "wechat",
            "offer_cost": "5",
        }
    )
    return {"orders": orders, "events": events, "identities": identities, "campaign_touches": touches}


def write(tables: dict[str, pd.DataFrame], out: Path, fmt: str = "csv") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(out / f"{name}.csv", index=False)
        else:
            df.to_parquet(out / f"{name}.parquet", index=False)
    return out


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def printed(console: Console) -> str:
    return console.file.getvalue()


# --- clean data -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_data_loads_typed_with_nothing_rejected(tmp_path, fmt):
    tables = clean_tables()
    data = write(tables, tmp_path / "d", fmt)
    ds = load_dataset(data, console=quiet())

    assert len(ds.orders) == len(tables["orders"])
    assert ds.orders["order_ts"].dtype == "datetime64[us]"
    assert ds.orders["amount"].dtype == "float64"
    assert ds.orders["discount"].dtype == "float64" and ds.orders["item_count"].dtype == "float64"
    assert ds.events["event_ts"].dtype == "datetime64[us]"
    assert ds.campaign_touches["sent_ts"].dtype == "datetime64[us]"
    assert ds.identities["join_ts"].dtype == "datetime64[us]"
    # a blank flag is unknown consent (<NA>), never silently False
    assert ds.identities["marketing_opt_out"].astype(object).tolist() == [False, True, pd.NA, False, True]
    assert ds.identities["marketing_opt_out"].dtype == "boolean"
    assert ds.orders["amount"].tolist() == pytest.approx(tables["orders"]["amount"].astype(float).tolist())
    assert ds.validation.rows_rejected == 0
    assert not (data / "rejects").exists()
    for name, fp in ds.fingerprint.items():
        path = Path(fp.file)
        assert path.name == f"{name}.{fmt}"
        assert fp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert fp.rows_read == fp.rows_used == len(tables[name]) and fp.rows_rejected == 0


def test_only_orders_degrades_and_says_so_once(tmp_path):
    data = write({"orders": clean_tables()["orders"]}, tmp_path / "d")
    console = quiet()
    ds = load_dataset(data, console=console)
    assert ds.events is None and ds.identities is None and ds.campaign_touches is None
    out = printed(console)
    assert out.count("optional tables absent") == 1
    assert "events, identities, campaign_touches" in out
    assert ds.validation.absent == ["events", "identities", "campaign_touches"]


def test_enums_case_insensitive_trimmed_and_defaults(tmp_path):
    orders = clean_tables()["orders"]
    orders.loc[0, "channel"] = "  TMall "
    orders.loc[1, "status"] = "REFUNDED"
    orders.loc[2, "channel"] = ""  # blank → default
    data = write({"orders": orders}, tmp_path / "d")
    ds = load_dataset(data)
    assert ds.orders.loc[0, "channel"] == "tmall"
    assert ds.orders.loc[1, "status"] == "refunded"
    assert ds.orders.loc[2, "channel"] == "other"

    bare = orders.drop(columns=["channel", "status", "discount", "item_count", "category", "store_id"])
    ds = load_dataset(write({"orders": bare}, tmp_path / "bare"))
    assert set(ds.orders["channel"]) == {"other"} and set(ds.orders["status"]) == {"paid"}


def test_timestamps_in_every_accepted_form(tmp_path):
    orders = clean_tables(n_orders=7)["orders"]
    orders["order_ts"] = [
        "2025-03-01",
        "2025-03-01 10:00:00",
        "2025-03-01T10:00:00.250",
        "2025-03-01T10:00:00Z",  # UTC → 18:00 Shanghai
        "2025-03-01T10:00:00+08:00",
        "2025-03-01T10:00:00-05:00",  # → 23:00 Shanghai
        "2025/03/01 10:00",
    ]
    ds = load_dataset(write({"orders": orders}, tmp_path / "d"))
    assert ds.orders["order_ts"].tolist() == [
        pd.Timestamp("2025-03-01 00:00"),
        pd.Timestamp("2025-03-01 10:00"),
        pd.Timestamp("2025-03-01 10:00:00.250"),
        pd.Timestamp("2025-03-01 18:00"),
        pd.Timestamp("2025-03-01 10:00"),
        pd.Timestamp("2025-03-01 23:00"),
        pd.Timestamp("2025-03-01 10:00"),
    ]
    assert ds.validation.rows_rejected == 0


def test_parquet_datetimes_tz_aware_and_dates(tmp_path):
    orders = clean_tables(n_orders=3)["orders"]
    orders["amount"] = orders["amount"].astype(float)
    aware = orders.copy()
    aware["order_ts"] = pd.to_datetime(["2025-01-01 00:00", "2025-06-30 16:00", "2025-03-01 12:30"]).tz_localize("UTC")
    ds = load_dataset(write({"orders": aware}, tmp_path / "aware", "parquet"))
    assert ds.orders["order_ts"].dt.tz is None
    assert ds.orders["order_ts"].tolist() == [
        pd.Timestamp("2025-01-01 08:00"),
        pd.Timestamp("2025-07-01 00:00"),
        pd.Timestamp("2025-03-01 20:30"),
    ]
    dates = orders.copy()
    dates["order_ts"] = [pd.Timestamp("2025-01-02").date()] * 3
    ds = load_dataset(write({"orders": dates}, tmp_path / "dates", "parquet"))
    assert ds.orders["order_ts"].dtype == "datetime64[us]"
    assert (ds.orders["order_ts"] == pd.Timestamp("2025-01-02")).all()
    naive = orders.copy()
    naive["order_ts"] = pd.to_datetime(["2025-01-01 00:00", "2025-06-30 16:00", "2025-03-01 12:30"]).astype(
        "datetime64[ns]"
    )
    ds = load_dataset(write({"orders": naive}, tmp_path / "naive", "parquet"))
    assert ds.orders["order_ts"].dtype == "datetime64[us]"
    assert ds.orders["order_ts"].tolist() == naive["order_ts"].tolist()


def test_amount_with_currency_sign_and_thousands_separator(tmp_path):
    orders = clean_tables(n_orders=3)["orders"]
    orders["amount"] = ["¥1,234.50", " 12 ", "￥0"]
    ds = load_dataset(write({"orders": orders}, tmp_path / "d"))
    assert ds.orders["amount"].tolist() == [1234.5, 12.0, 0.0]


# --- row rules --------------------------------------------------------------------------------------------------

ROW_CASES = [
    ("orders", "order_id", "", "empty_key"),
    ("orders", "customer_key", "   ", "empty_key"),
    ("orders", "order_ts", "2025-02-30 10:00:00", "unparseable_timestamp"),
    ("orders", "order_ts", "", "unparseable_timestamp"),
    ("orders", "amount", "", "missing_amount"),
    ("orders", "amount", "NaN", "missing_amount"),
    ("orders", "amount", "twelve", "missing_amount"),
    ("orders", "amount", "inf", "missing_amount"),
    ("orders", "amount", "-3.5", "negative_amount"),
    ("orders", "channel", "pinduoduo", "unknown_channel"),
    ("orders", "status", "shipped", "unknown_status"),
    ("orders", "discount", "ten", "bad_discount"),
    ("orders", "discount", "-1", "bad_discount"),
    ("orders", "item_count", "many", "bad_item_count"),
    ("orders", "order_id", "o001", "duplicate_order_id"),
    ("orders", "order_ts", "2099-01-01 10:00:00", "future_timestamp"),
    ("orders", "amount", "1e15", "implausible_amount"),
    ("orders", "item_count", "1,500", "ambiguous_number"),
    ("campaign_touches", "sent_ts", "2099-06-10 09:00:00", "future_timestamp"),
    ("identities", "join_ts", "2099-01-01", "future_timestamp"),
    ("events", "customer_key", "", "empty_key"),
    ("events", "event_ts", "yesterday", "unparseable_timestamp"),
    ("events", "event_type", "add_to_wishlist", "unknown_event_type"),
    ("events", "event_type", "", "unknown_event_type"),
    ("events", "channel", "xiaohongshu", "unknown_channel"),
    ("identities", "customer_key", "", "empty_key"),
    ("identities", "join_ts", "not a date", "unparseable_timestamp"),
    ("identities", "channel", "kuaishou", "unknown_channel"),
    ("identities", "birth_year", "nineteen ninety", "bad_birth_year"),
    ("identities", "marketing_opt_out", "maybe", "bad_marketing_opt_out"),
    ("campaign_touches", "campaign_id", "", "empty_key"),
    ("campaign_touches", "customer_key", "", "empty_key"),
    ("campaign_touches", "sent_ts", "31/02/2025 10:00", "unparseable_timestamp"),
    ("campaign_touches", "group", "holdout", "unknown_group"),
    ("campaign_touches", "offer_cost", "-2", "bad_offer_cost"),
    ("campaign_touches", "channel", "sms", "unknown_channel"),
]


@pytest.mark.parametrize(("table", "column", "value", "reason"), ROW_CASES)
def test_each_row_rule_quarantines_with_its_reason(tmp_path, table, column, value, reason):
    tables = clean_tables()
    row = 3
    tables[table].loc[row, column] = value
    data = write(tables, tmp_path / "d")
    ds = load_dataset(data, console=quiet())

    report = ds.validation.tables[table]
    assert report.reasons == {reason: 1}
    assert report.rows_read == report.rows_used + report.rows_rejected == len(tables[table])
    assert ds.fingerprint[table].rows_rejected == 1
    rejects = pd.read_parquet(data / "rejects" / f"{table}.rejects.parquet")
    assert rejects["reject_reason"].tolist() == [reason]
    assert rejects["row_number"].tolist() == [row + 1]
    assert len(getattr(ds, table)) == len(tables[table]) - 1
    for other in set(tables) - {table}:
        assert ds.validation.tables[other].rows_rejected == 0
        assert not (data / "rejects" / f"{other}.rejects.parquet").exists()


def test_rule_order_covers_every_reason_exercised():
    assert {case[3] for case in ROW_CASES} == set(RULE_ORDER)


def test_first_failing_rule_wins(tmp_path):
    orders = clean_tables()["orders"]
    orders.loc[2, ["customer_key", "amount", "channel"]] = ["", "-1", "nowhere"]  # empty_key first
    orders.loc[4, ["amount", "channel", "status"]] = ["-1", "nowhere", "lost"]  # negative_amount first
    orders.loc[6, ["order_ts", "amount"]] = ["garbage", ""]  # unparseable_timestamp before missing_amount
    data = write({"orders": orders}, tmp_path / "d")
    load_dataset(data)
    rejects = pd.read_parquet(data / "rejects" / "orders.rejects.parquet")
    assert dict(zip(rejects["row_number"], rejects["reject_reason"], strict=True)) == {
        3: "empty_key",
        5: "negative_amount",
        7: "unparseable_timestamp",
    }


def test_duplicate_order_id_keeps_first_valid_occurrence(tmp_path):
    orders = clean_tables()["orders"]
    orders.loc[5, "order_id"] = "o002"  # o002 appears at rows 2 and 5: the later one is the duplicate
    orders.loc[7, "order_id"] = "o006"
    orders.loc[6, "order_ts"] = "garbage"  # the first o006 is invalid, so the second is the one kept
    data = write({"orders": orders}, tmp_path / "d")
    ds = load_dataset(data)
    assert ds.validation.count("orders", "duplicate_order_id") == 1
    assert ds.validation.count("orders", "unparseable_timestamp") == 1
    kept = ds.orders.set_index("order_id")
    assert kept.loc["o002", "amount"] == float(orders.loc[2, "amount"])
    assert kept.loc["o006", "amount"] == float(orders.loc[7, "amount"])
    assert ds.orders["order_id"].is_unique


def test_report_prints_counts_examples_and_accounting(tmp_path):
    orders = clean_tables()["orders"]
    orders.loc[[1, 2, 3, 4], "amount"] = "-1"
    orders.loc[9, "order_id"] = "o008"
    data = write({"orders": orders}, tmp_path / "d")
    console = quiet()
    ds = load_dataset(data, console=console)
    out = printed(console)
    assert re.search(r"negative_amount\s+4\s+o001, o002, o003\s", out)  # at most 3 examples
    assert re.search(r"duplicate_order_id\s+1\s+o008", out)
    assert "rows read 24 = rows used 19 + rows rejected 5" in out
    assert ds.validation.to_dict()["orders"]["reasons"] == {"negative_amount": 4, "duplicate_order_id": 1}


def test_stale_rejects_file_removed_when_data_is_clean(tmp_path):
    tables = clean_tables()
    tables["orders"].loc[1, "amount"] = "-1"
    data = write(tables, tmp_path / "d")
    load_dataset(data)
    assert (data / "rejects" / "orders.rejects.parquet").exists()
    tables["orders"].loc[1, "amount"] = "1"
    write(tables, data)
    load_dataset(data)
    assert not (data / "rejects" / "orders.rejects.parquet").exists()


def test_custom_rejects_dir(tmp_path):
    tables = clean_tables()
    tables["events"].loc[0, "event_type"] = "nope"
    data = write(tables, tmp_path / "d")
    ds = load_dataset(data, rejects_dir=tmp_path / "q")
    assert (tmp_path / "q" / "events.rejects.parquet").exists()
    assert not (data / "rejects").exists()
    assert ds.validation.tables["events"].rejects_file == str(tmp_path / "q" / "events.rejects.parquet")


# --- fatal problems ---------------------------------------------------------------------------------------------


def _dirty_orders_plus(tmp_path: Path, table: str, mutate) -> Path:
    """Orders with row problems (so rejects *would* be written) and a fatal problem in ``table``."""
    tables = clean_tables()
    tables["orders"].loc[1, "amount"] = "-1"
    data = write(tables, tmp_path / "d")
    mutate(data / f"{table}.csv", tables[table])
    return data


def _drop_column(column):
    def mutate(path, df):
        df.drop(columns=column).to_csv(path, index=False)

    return mutate


def _set_column(column, value):
    def mutate(path, df):
        df.assign(**{column: value}).to_csv(path, index=False)

    return mutate


def _write_bytes(data: bytes):
    def mutate(path, df):
        path.write_bytes(data)

    return mutate


FATAL_CASES = [
    ("orders", _drop_column("order_id"), "order_id", "required column missing"),
    ("orders", _drop_column("customer_key"), "customer_key", "required column missing"),
    ("orders", _drop_column("order_ts"), "order_ts", "required column missing"),
    ("orders", _drop_column("amount"), "amount", "required column missing"),
    ("events", _drop_column("event_type"), "event_type", "required column missing"),
    ("identities", _drop_column("customer_key"), "customer_key", "required column missing"),
    ("campaign_touches", _drop_column("group"), "group", "required column missing"),
    ("orders", _set_column("amount", "n/a"), "amount", "no value parses as a number"),
    ("orders", _set_column("order_ts", "soon"), "order_ts", "no value parses as a timestamp"),
    ("events", _set_column("event_ts", ""), "event_ts", "no value parses as a timestamp"),
    ("orders", _set_column("discount", "lots"), "discount", "no value parses as a number"),
    ("orders", _set_column("channel", "taobao"), "channel", "no usable rows"),
    ("campaign_touches", _set_column("group", "holdout"), "group", "no usable rows"),
    ("orders", _write_bytes(b"order_id,customer_key,order_ts,amount\n"), None, "no rows"),
    ("events", _write_bytes(b""), None, "no rows"),
    ("identities", _write_bytes("customer_key,city\nc1,上海\n".encode("gbk")), None, "UTF-8"),
]


@pytest.mark.parametrize(("table", "mutate", "column", "reason"), FATAL_CASES)
def test_fatal_problems_name_file_and_column_and_leave_no_output(tmp_path, table, mutate, column, reason):
    data = _dirty_orders_plus(tmp_path, table, mutate)
    with pytest.raises(DataContractError) as err:
        load_dataset(data, console=quiet())
    exc = err.value
    assert f"{table}.csv" in str(exc) and exc.file.endswith(f"{table}.csv")
    assert reason in str(exc)
    if column is not None:
        assert exc.column == column and f"'{column}'" in str(exc)
    assert not (data / "rejects").exists()  # orders had rejects, but nothing is written after a fatal error


def test_fatal_numbers_in_a_timestamp_column(tmp_path):
    orders = clean_tables()["orders"]
    orders["amount"] = orders["amount"].astype(float)
    orders["order_ts"] = np.arange(len(orders)) + 1_700_000_000
    data = write({"orders": orders}, tmp_path / "d", "parquet")
    with pytest.raises(DataContractError, match=r"orders\.parquet: column 'order_ts': wrong type"):
        load_dataset(data)


def test_fatal_unreadable_parquet(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "orders.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataContractError, match=r"orders\.parquet: unreadable"):
        load_dataset(data)


def test_fatal_both_csv_and_parquet(tmp_path):
    tables = clean_tables()
    data = write(tables, tmp_path / "d")
    tables["events"].to_parquet(data / "events.parquet")
    with pytest.raises(DataContractError, match="both events.parquet and events.csv"):
        load_dataset(data)


def test_fatal_orders_absent(tmp_path):
    tables = clean_tables()
    del tables["orders"]
    data = write(tables, tmp_path / "d")
    with pytest.raises(DataContractError, match="required table 'orders' is missing"):
        load_dataset(data)


# --- PII ----------------------------------------------------------------------------------------------------------


def _all_text(frames) -> str:
    return "\n".join(df.astype(str).to_csv(index=False) for df in frames if df is not None)


def _raw_pii_present(text: str) -> list[str]:
    digits = [re.sub(r"\D", "", p)[-11:] for p in PHONES]
    return [v for v in digits + UNIONIDS if v in text or v in re.sub(r"\D", "", text)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_raw_pii_never_reaches_dataset_or_rejects(tmp_path, fmt):
    tables = clean_tables()
    tables["identities"].loc[1, "marketing_opt_out"] = "maybe"  # a rejected row that holds a phone and unionid
    tables["identities"].loc[3, "customer_key"] = ""
    tables["orders"]["phone"] = PHONES * (len(tables["orders"]) // len(PHONES)) + PHONES[: len(tables["orders"]) % 5]
    tables["orders"].loc[2, "amount"] = "-1"
    data = write(tables, tmp_path / "d", fmt)
    ds = load_dataset(data, console=quiet())

    assert "phone" not in ds.identities.columns and "unionid" not in ds.identities.columns
    assert "phone" not in ds.orders.columns
    assert {"phone_hash", "unionid_hash"} <= set(ds.identities.columns)
    assert _raw_pii_present(_all_text(ds.tables().values())) == []
    rejects = sorted((data / "rejects").glob("*.parquet"))
    assert {p.name for p in rejects} == {"identities.rejects.parquet", "orders.rejects.parquet"}
    for path in rejects:
        frame = pd.read_parquet(path)
        assert "phone" not in frame.columns and "unionid" not in frame.columns
        assert _raw_pii_present(_all_text([frame])) == []
        assert _raw_pii_present(path.read_bytes().decode("latin-1")) == []


def test_phone_hash_is_stable_across_renderings_and_given_hashes_are_kept(tmp_path):
    ident = clean_tables()["identities"]
    ident["phone"] = ["13812345678", "+86 138-1234-5678", "008613812345678", "not a phone", ""]
    ident["phone_hash"] = [None, None, None, None, "ABCDEF0123"]
    data = write({"orders": clean_tables()["orders"], "identities": ident}, tmp_path / "d")
    ds = load_dataset(data, console=quiet())
    hashes = ds.identities["phone_hash"]
    assert hashes[0] == hashes[1] == hashes[2]
    assert hashes[0] == hmac_hash(normalize_phone(pd.Series(["13812345678"])), "test-pii-key").iloc[0]
    assert pd.isna(hashes[3])
    assert hashes[4] == "abcdef0123"  # a given hash is kept (normalised to lowercase)
    assert any("not mainland mobile numbers" in n for n in ds.validation.tables["identities"].notes)


# --- against the simulator --------------------------------------------------------------------------------------

SIM_KIND_TO_REASON = {
    "duplicate_order_id": "duplicate_order_id",
    "bad_timestamp": "unparseable_timestamp",
    "negative_amount": "negative_amount",
    "nan_amount": "missing_amount",
    "empty_customer_key": "empty_key",
}


@pytest.fixture(scope="module")
def dirty_sim_dir(tmp_path_factory):
    simulate = pytest.importorskip("features.simulate")
    tables = simulate.simulate(400, seed=21, dirty=0.03)
    out = tmp_path_factory.mktemp("dirty")
    simulate.write_dataset(tables, out)
    return out, tables


def test_rejects_match_simulated_defects_row_by_row(dirty_sim_dir):
    data, tables = dirty_sim_dir
    ds = load_dataset(data, console=quiet())
    truth = tables["truth_dirty_rows"]
    for name in ("orders", "events", "identities", "campaign_touches"):
        expected = truth[truth["table"] == name]
        want = dict(zip(expected["row"] + 1, expected["kind"].map(lambda k: SIM_KIND_TO_REASON.get(k, k)), strict=True))
        rejects = pd.read_parquet(data / "rejects" / f"{name}.rejects.parquet")
        got = dict(zip(rejects["row_number"], rejects["reject_reason"], strict=True))
        assert got == want, name
        fp = ds.fingerprint[name]
        assert fp.rows_read == len(tables[name]) == fp.rows_used + fp.rows_rejected


# --- the CLI ----------------------------------------------------------------------------------------------------


def _cli(args):
    from training.cli import app

    result = CliRunner().invoke(app, args)
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_cli_validate_clean_dirty_and_missing_column(tmp_path):
    tables = clean_tables()
    clean = write(tables, tmp_path / "clean")
    result, out = _cli(["validate", "--data", str(clean)])
    assert result.exit_code == 0, out
    assert "0 row(s) quarantined" in out

    tables["orders"].loc[[1, 2], "amount"] = "-5"
    tables["events"].loc[0, "event_type"] = "wink"
    dirty = write(tables, tmp_path / "dirty")
    result, out = _cli(["validate", "--data", str(dirty)])
    assert result.exit_code == 0, out
    assert re.search(r"negative_amount\s+2", out) and re.search(r"unknown_event_type\s+1", out)
    assert "rows read 24 = rows used 22 + rows rejected 2" in out
    assert (dirty / "rejects" / "orders.rejects.parquet").exists()

    tables["orders"].drop(columns="order_ts").to_csv(dirty / "orders.csv", index=False)
    result, out = _cli(["validate", "--data", str(dirty)])
    assert result.exit_code == 2
    assert "order_ts" in out and "orders.csv" in out


def test_cli_validate_on_simulated_dirty_data(dirty_sim_dir):
    data, tables = dirty_sim_dir
    result, out = _cli(["validate", "--data", str(data)])
    assert result.exit_code == 0, out
    n_dup = int(((tables["truth_dirty_rows"]["table"] == "orders") & (tables["truth_dirty_rows"]["kind"] == "duplicate_order_id")).sum())
    assert re.search(rf"duplicate_order_id\s+{n_dup}\b", out)
    total = len(tables["truth_dirty_rows"])
    assert f"{total:,} row(s) quarantined" in out


def test_csv_and_parquet_of_the_same_data_validate_identically(dirty_sim_dir, tmp_path):
    data, tables = dirty_sim_dir
    import features.simulate as simulate

    csv_dir = tmp_path / "csv"
    simulate.write_dataset(tables, csv_dir, fmt="csv")
    from_parquet, from_csv = load_dataset(data), load_dataset(csv_dir)
    strip = lambda d: {k: {**v, "file": Path(v["file"]).stem} for k, v in d.items()}  # noqa: E731
    assert strip(from_csv.validation.to_dict()) == strip(from_parquet.validation.to_dict())
    for name, frame in from_parquet.tables().items():
        pd.testing.assert_frame_equal(getattr(from_csv, name)[frame.columns], frame, check_dtype=False)
