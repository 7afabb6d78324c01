"""PII handling at ingest: phone normalisation and keyed hashing (HMAC-SHA256).

Raw phone numbers and WeChat unionids are personal data. They are hashed the moment a table is read
(:func:`features.contract.load_dataset`) and the raw columns are dropped, so no feature, model, log, rejects
file or MLflow artifact ever holds them. The hash is keyed (HMAC) so that a leaked feature table cannot be
reversed by hashing all 1.3 billion possible mobile numbers; the key comes from the environment variable
``SCRM_PII_KEY``. Hashes made under different keys do not match, so every run that must link the same people
has to use the same key.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PII_KEY_ENV = "SCRM_PII_KEY"
DEV_PII_KEY = "scrm-development-key-do-not-use-in-production"
PII_COLUMNS = {"phone": "phone_hash", "unionid": "unionid_hash"}

_warned_dev_key = False

# A mainland-China mobile number: 11 digits, first digit 1, second 3-9.
_CN_MOBILE = r"^1[3-9]\d{9}$"


def pii_key(*, console=None) -> bytes:
    """The HMAC key for PII hashing, from ``SCRM_PII_KEY``.

    When the variable is unset or empty a fixed development key is used and a warning is emitted once per
    process (on ``console`` when one is given, otherwise through :mod:`logging`). Hashes made with the development
    key are not secret: anyone with this source code can recompute them.

    Parameters
    ----------
    console : rich.console.Console, optional
        Where to print the development-key warning as well.

    Returns
    -------
    bytes
        The key, UTF-8 encoded.
    """
    global _warned_dev_key
    key = os.environ.get(PII_KEY_ENV, "")
    if key:
        return key.encode("utf-8")
    if not _warned_dev_key:
        msg = (
            f"{PII_KEY_ENV} is not set: hashing phones and unionids with the public development key. "
            f"Set {PII_KEY_ENV} to a secret before loading real customer data."
        )
        if console is not None:
            console.print(f"[yellow]warning:[/] {msg}")
        else:
            logger.warning(msg)
        _warned_dev_key = True
    return DEV_PII_KEY.encode("utf-8")


def normalize_phone(phone: pd.Series) -> pd.Series:
    """Normalise phone numbers to ``+86XXXXXXXXXXX`` (mainland mobile) or NA.

    Every non-digit is removed (spaces, dashes, brackets, a leading ``+``); a country code ``86``, ``+86``
    or ``0086`` in front of an 11-digit number is removed; what remains must be an 11-digit mainland mobile
    number (``1[3-9]`` followed by 9 digits), otherwise the result is NA. A number written with another
    international prefix (``+1 ...``, ``001 ...``) is NA even when its digits look like a mobile number. Numbers stored as floats
    (``13812345678.0``, common after a spreadsheet round trip) are read as their integer value.

    Parameters
    ----------
    phone : pandas.Series
        Raw phone numbers (strings or numbers, NA allowed).

    Returns
    -------
    pandas.Series
        Same index, string dtype, ``"+86"`` followed by 11 digits, or NA when invalid or missing.

    Examples
    --------
    >>> normalize_phone(pd.Series(["+86 138-1234-5678", "008613812345678", "12345", None])).tolist()
    ['+8613812345678', '+8613812345678', nan, nan]
    """
    if pd.api.types.is_float_dtype(phone.dtype):
        as_int = phone.where(np.isfinite(phone.astype("float64")) & (phone % 1 == 0))
        text = as_int.astype("Int64").astype("string")
    elif pd.api.types.is_integer_dtype(phone.dtype) and not pd.api.types.is_bool_dtype(phone.dtype):
        text = phone.astype("Int64").astype("string")
    else:
        text = phone.astype("string")
        text = text.str.replace(r"\.0+\s*$", "", regex=True)  # 13812345678.0 from a float round trip
    digits = text.str.replace(r"\D", "", regex=True)
    # an explicit international prefix (+ or 00) must be China's 86: "+1 415 555 0100" is not a CN mobile
    international = (text.str.strip().str.startswith("+") | digits.str.startswith("00")).fillna(False).astype(bool)
    digits = digits.mask(digits.str.startswith("00"), digits.str[2:])
    has_cc = (digits.str.len() == 13) & digits.str.startswith("86")
    digits = digits.mask(has_cc, digits.str[2:])
    valid = digits.str.match(_CN_MOBILE).fillna(False).astype(bool) & (has_cc.fillna(False) | ~international)
    out = ("+86" + digits).where(valid)
    return out.astype("str")


def hmac_hash(values: pd.Series, key: bytes | str) -> pd.Series:
    """HMAC-SHA256 hex digest of each value under ``key``; NA and empty strings stay NA.

    Each distinct value is hashed once, so a column of a million rows with repeated values takes well under
    a second per million distinct values.

    Parameters
    ----------
    values : pandas.Series
        Values to hash; converted to ``str`` (UTF-8) first.
    key : bytes or str
        The secret key (see :func:`pii_key`).

    Returns
    -------
    pandas.Series
        Same index, 64-character lowercase hex strings, NA where the input was NA or empty.
    """
    if isinstance(key, str):
        key = key.encode("utf-8")
    text = values.astype("string")
    text = text.where(text.str.len() > 0)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    hashed = np.array(_hmac_sha256_hex(key, [str(u).encode("utf-8") for u in uniques.to_numpy(dtype=object)]) + [None], dtype=object)
    # code -1 (NA) picks the trailing None
    return pd.Series(hashed[codes], index=values.index, dtype="str")


def _hmac_sha256_hex(key: bytes, messages: list[bytes]) -> list[str]:
    """RFC 2104 HMAC-SHA256 of many messages, reusing the keyed inner/outer states (about 2x ``hmac.digest``)."""
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner0 = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer0 = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for msg in messages:
        inner = inner0.copy()
        inner.update(msg)
        outer = outer0.copy()
        outer.update(inner.digest())
        out.append(outer.hexdigest())
    return out
