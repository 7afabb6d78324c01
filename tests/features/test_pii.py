"""Phone normalisation, keyed hashing and the PII key."""

from __future__ import annotations

import hashlib
import hmac
import logging

import numpy as np
import pandas as pd
import pytest

from features import pii
from features.pii import hmac_hash, normalize_phone, pii_key


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
    monkeypatch.setattr(pii, "_warned_dev_key", False)
    with caplog.at_level(logging.WARNING, logger="features.pii"):
        assert pii_key() == pii.DEV_PII_KEY.encode()
        assert pii_key() == pii.DEV_PII_KEY.encode()
    warnings = [r for r in caplog.records if "SCRM_PII_KEY" in r.getMessage()]
    assert len(warnings) == 1
