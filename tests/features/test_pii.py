"""Phone normalisation, keyed hashing and the PII key."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging

import numpy as np
import pandas as pd
import pytest

from features import pii
from features.pii import (
    PIIKeyError,
    check_pii_fingerprint,
    hmac_hash,
    normalize_phone,
    pii_key,
    pii_key_fingerprint,
    warn_if_pii_key_changed,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138-1234-5678", "+8613812345678"),
        ("+8613812345678", "+8613812345678"),
        ("8613812345678", "+8613812345678"),
        ("008613812345678", "+8613812345678"),
        ("0086 138 1234 5678", "+8613812345678"),
        ("(138) 1234-5678", "+8613812345678"),
        ("138 1234 5678 ", "+8613812345678"),
        ("13812345678.0", "+8613812345678"),  # spreadsheet float round trip
        ("19912345678", "+8619912345678"),
        ("12812345678", None),  # second digit must be 3-9
        ("1381234567", None),  # 10 digits
        ("138123456789", None),  # 12 digits
        ("02112345678", None),  # landline
        ("+1 415 555 0100", None),  # not mainland China, although 14155550100 looks like a CN mobile
        ("001 415 555 0100", None),
        ("0013812345678", None),
        ("8612812345678", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_phone_cases(raw, expected):
    out = normalize_phone(pd.Series([raw], dtype="object"))
    if expected is None:
        assert pd.isna(out.iloc[0])
    else:
        assert out.iloc[0] == expected


def test_normalize_phone_numeric_columns_and_index():
    floats = pd.Series([13812345678.0, np.nan, 1.5], index=[10, 11, 12])
    out = normalize_phone(floats)
    assert list(out.index) == [10, 11, 12]
    assert out.iloc[0] == "+8613812345678"
    assert out.iloc[1:].isna().all()
    ints = pd.Series([8613812345678, 13812345678], dtype="int64")
    assert normalize_phone(ints).tolist() == ["+8613812345678", "+8613812345678"]


def test_hmac_hash_matches_stdlib_and_keeps_na():
    values = pd.Series(["+8613812345678", None, "", "oAbC_123", "+8613812345678"], index=list("abcde"))
    for key in (b"k", "short-text-key", b"x" * 100):  # keys longer than the SHA-256 block are pre-hashed
        out = hmac_hash(values, key)
        k = key.encode() if isinstance(key, str) else key
        assert out["a"] == hmac.new(k, b"+8613812345678", hashlib.sha256).hexdigest()
        assert out["d"] == hmac.new(k, b"oAbC_123", hashlib.sha256).hexdigest()
        assert out["a"] == out["e"]
        assert pd.isna(out["b"]) and pd.isna(out["c"])
        assert list(out.index) == list("abcde")


def test_hash_depends_on_key():
    v = pd.Series(["+8613812345678"])
    assert hmac_hash(v, b"one").iloc[0] != hmac_hash(v, b"two").iloc[0]


def test_pii_key_from_environment(monkeypatch):
    monkeypatch.setenv("SCRM_PII_KEY", "s3cret")
    assert pii_key() == b"s3cret"


def test_pii_key_development_default_warns_once(monkeypatch, caplog):
    monkeypatch.delenv("SCRM_PII_KEY", raising=False)
    monkeypatch.setenv("SCRM_DEV", "1")
    monkeypatch.setattr(pii, "_warned_dev_key", False)
    with caplog.at_level(logging.WARNING, logger="features.pii"):
        assert pii_key() == pii.DEV_PII_KEY.encode()
        assert pii_key() == pii.DEV_PII_KEY.encode()
    warnings = [r for r in caplog.records if "SCRM_PII_KEY" in r.getMessage()]
    assert len(warnings) == 1


def test_unset_key_is_an_error_outside_dev_mode(monkeypatch):
    monkeypatch.delenv("SCRM_PII_KEY", raising=False)
    monkeypatch.delenv("SCRM_DEV", raising=False)
    with pytest.raises(PIIKeyError, match="SCRM_PII_KEY is not set.*SCRM_DEV=1"):
        pii_key()
    assert pii_key_fingerprint(required=False) is None  # a snapshot of data without PII records no key
    monkeypatch.setenv("SCRM_DEV", "0")
    with pytest.raises(PIIKeyError):
        pii_key()


@pytest.mark.parametrize("blank", ["", " ", "\t \n"])
def test_blank_key_is_refused_even_in_dev_mode(monkeypatch, blank):
    monkeypatch.setenv("SCRM_PII_KEY", blank)
    monkeypatch.setenv("SCRM_DEV", "1")
    with pytest.raises(PIIKeyError, match="set but blank"):
        pii_key()
    with pytest.raises(PIIKeyError, match="set but blank"):
        pii_key_fingerprint(required=False)


def test_fingerprint_is_an_hmac_of_a_fixed_string_never_the_key(monkeypatch):
    monkeypatch.setenv("SCRM_PII_KEY", "s3cret")
    fp = pii_key_fingerprint()
    assert fp == hmac.new(b"s3cret", b"scrm-models PII key fingerprint v1", hashlib.sha256).hexdigest()[:16]
    assert len(fp) == 16 and "s3cret" not in fp
    monkeypatch.setenv("SCRM_PII_KEY", "other")
    assert pii_key_fingerprint() != fp


def test_check_pii_fingerprint_refuses_another_key(monkeypatch):
    monkeypatch.setenv("SCRM_PII_KEY", "old-key")
    manifest = {"as_of": "2025-07-01", "source": "data/brand", "pii_key_fingerprint": pii_key_fingerprint()}
    check_pii_fingerprint(manifest)  # same key: fine
    check_pii_fingerprint({"as_of": "2025-07-01"})  # a snapshot from before fingerprints: accepted
    monkeypatch.setenv("SCRM_PII_KEY", "new-key")
    with pytest.raises(PIIKeyError, match=f"fingerprint {manifest['pii_key_fingerprint']}.*rebuild") as exc:
        check_pii_fingerprint(manifest)
    assert "old-key" not in str(exc.value) and "new-key" not in str(exc.value)


def test_snapshots_carry_the_fingerprint_and_a_key_change_warns_and_refuses(tmp_path, monkeypatch, caplog):
    from rich.console import Console

    from features.dataset import Dataset
    from features.pipeline import build_snapshot, latest_snapshot

    orders = pd.DataFrame({"order_id": ["o1", "o2"], "customer_key": ["a", "b"], "amount": [10.0, 20.0],
                           "order_ts": pd.to_datetime(["2025-01-02 00:00", "2025-02-03 00:00"])})
    ids = pd.DataFrame({"customer_key": ["a", "b"], "phone_hash": ["h", "h"]})  # pre-hashed: cannot be checked
    ds = Dataset(orders=orders, identities=ids)
    quiet = Console(quiet=True)
    monkeypatch.setenv("SCRM_PII_KEY", "old-key")
    old = build_snapshot(ds, "2025-03-01", out_dir=tmp_path / "features" / "as_of=2025-03-01", console=quiet)
    assert old.manifest["pii_key_fingerprint"] == pii_key_fingerprint()
    assert "old-key" not in (old.path / "manifest.json").read_text()
    assert latest_snapshot(tmp_path).manifest["as_of"] == "2025-03-01"

    monkeypatch.setenv("SCRM_PII_KEY", "new-key")
    with pytest.raises(PIIKeyError, match="built under the PII key with fingerprint"):
        latest_snapshot(tmp_path)
    console = Console(record=True, width=200, file=io.StringIO())
    with caplog.at_level(logging.WARNING, logger="features.pii"):
        build_snapshot(ds, "2025-04-01", out_dir=tmp_path / "features" / "as_of=2025-04-01", console=console)
    printed = console.export_text()
    assert "WARNING:" in printed and "SCRM_PII_KEY changed" in printed and "2025-03-01" in printed
    assert any("2025-03-01" in r.getMessage() for r in caplog.records)
    assert latest_snapshot(tmp_path).manifest["as_of"] == "2025-04-01"  # the newest is under the current key
    assert warn_if_pii_key_changed(tmp_path / "features", pii_key_fingerprint()) == ["2025-03-01"]
