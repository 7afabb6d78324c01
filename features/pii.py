"""PII handling at ingest: phone normalisation and keyed hashing (HMAC-SHA256).

Raw phone numbers and WeChat unionids are personal data. They are hashed the moment a table is read
(:func:`features.contract.load_dataset`) and the raw columns are dropped, so no feature, model, log, rejects
file or MLflow artifact ever holds them. The hash is keyed (HMAC) so that a leaked feature table cannot be
reversed by hashing all 1.3 billion possible mobile numbers; the key comes from the environment variable
``SCRM_PII_KEY``. Hashes made under different keys do not match, so every run that must link the same people
has to use the same key.

An unset key is an error, except in the explicit development / demo mode (``SCRM_DEV=1``), where a public
development key is used with a warning; a blank key is always refused. The key is never stored: snapshots (and
the runs built on them) record its fingerprint, an HMAC of a fixed string under the key
(:func:`pii_key_fingerprint`), and :func:`check_pii_fingerprint` refuses to use a snapshot under another key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError

logger = logging.getLogger(__name__)

PII_KEY_ENV = "SCRM_PII_KEY"
DEV_ENV = "SCRM_DEV"
DEV_PII_KEY = "scrm-development-key-do-not-use-in-production"
PII_COLUMNS = {"phone": "phone_hash", "unionid": "unionid_hash"}

_warned_dev_key = False
#: The message whose HMAC under the key is the key's fingerprint (changing it changes every fingerprint).
_FINGERPRINT_MESSAGE = b"scrm-models PII key fingerprint v1"


class PIIKeyError(InputError):
    """The PII key is missing or blank, or is not the key a snapshot was built with."""

# A mainland-China mobile number: 11 digits, first digit 1, second 3-9.
_CN_MOBILE = r"^1[3-9]\d{9}$"


def dev_mode() -> bool:
    """Whether the explicit development / demo mode is on (``SCRM_DEV=1``, ``true`` or ``yes``)."""
    return os.environ.get(DEV_ENV, "").strip().lower() in {"1", "true", "yes"}


def pii_key(*, console=None) -> bytes:
    """The HMAC key for PII hashing, from ``SCRM_PII_KEY``.

    When the variable is unset, the development mode (``SCRM_DEV=1``) uses a fixed development key and warns
    once per process (on ``console`` when one is given, otherwise through :mod:`logging`); hashes made with it
    are not secret, as anyone with this source code can recompute them. Outside that mode an unset key is an error.

    Parameters
    ----------
    console : rich.console.Console, optional
        Where to print the development-key warning as well.

    Returns
    -------
    bytes
        The key, UTF-8 encoded.

    Raises
    ------
    PIIKeyError
        The key is blank (empty or only whitespace), or unset outside the development mode.
    """
    global _warned_dev_key
    key = os.environ.get(PII_KEY_ENV)
    if key is not None and not key.strip():
        raise PIIKeyError(
            f"{PII_KEY_ENV} is set but blank ({key!r}): a blank key would hash every phone and unionid "
            f"guessably; set it to a secret (or unset it and use SCRM_DEV=1 for a demo)"
        )
    if key:
        return key.encode("utf-8")
    if not dev_mode():
        raise PIIKeyError(
            f"{PII_KEY_ENV} is not set: phones and unionids are hashed under this secret key, and the same key "
            f"must be used by every run that links the same people. Set {PII_KEY_ENV}, or set {DEV_ENV}=1 to use "
            f"the public development key on demo data"
        )
    if not _warned_dev_key:
        msg = (
            f"{PII_KEY_ENV} is not set ({DEV_ENV}=1): hashing phones and unionids with the public development key. "
            f"Set {PII_KEY_ENV} to a secret before loading real customer data."
        )
        if console is not None:
            console.print(f"[yellow]warning:[/] {msg}")
        else:
            logger.warning(msg)
        _warned_dev_key = True
    return DEV_PII_KEY.encode("utf-8")


def pii_key_fingerprint(*, required: bool = True) -> str | None:
    """The PII key's fingerprint: the first 16 hex characters of HMAC-SHA256 of a fixed string under the key.

    It identifies the key (two runs under the same key agree) without revealing it, and is what snapshot
    manifests and model runs record.

    Parameters
    ----------
    required : bool, default True
        When ``False``, an unset key (outside the development mode) gives ``None`` instead of an error; a blank
        key is refused either way.

    Raises
    ------
    PIIKeyError
        As :func:`pii_key`.
    """
    if not required and PII_KEY_ENV not in os.environ and not dev_mode():
        return None
    return hmac.new(pii_key(), _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


def check_pii_fingerprint(manifest: dict) -> None:
    """Refuse a snapshot whose identifiers were hashed under another PII key than the current one.

    Parameters
    ----------
    manifest : dict
        A snapshot manifest; one without ``pii_key_fingerprint`` (written before fingerprints, or built with no
        key) is accepted.

    Raises
    ------
    PIIKeyError
        The current key's fingerprint differs from the manifest's (or the key is unset or blank).
    """
    expected = manifest.get("pii_key_fingerprint")
    if not expected:
        return
    current = pii_key_fingerprint()
    if current != expected:
        where = manifest.get("source") or "its data"
        raise PIIKeyError(
            f"the feature snapshot as of {manifest.get('as_of')} ({where}) was built under the PII key with "
            f"fingerprint {expected}, but {PII_KEY_ENV} now has fingerprint {current}: phone and unionid hashes "
            f"would not match and people would be split. Set {PII_KEY_ENV} to the key the snapshot was built "
            f"with, or rebuild it under the new key (`scrm features build`)"
        )


def warn_if_pii_key_changed(snapshot_root: Path, fingerprint: str | None, *, console=None) -> list[str]:
    """Warn loudly when other snapshots under ``snapshot_root`` were built under another PII key.

    Identities that arrive pre-hashed (``phone_hash``/``unionid_hash``) cannot be checked against the key, so a
    key change shows only as a different fingerprint from the earlier snapshots of the same data directory.

    Returns
    -------
    list of str
        The ``as_of`` dates of the snapshots built under another key (empty when none).
    """
    root = Path(snapshot_root)
    if fingerprint is None or not root.is_dir():
        return []
    other = []
    for manifest_path in sorted(root.glob("*/manifest.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            continue
        previous = manifest.get("pii_key_fingerprint")
        if previous and previous != fingerprint:
            other.append(str(manifest.get("as_of", manifest_path.parent.name)))
    if other:
        msg = (
            f"{PII_KEY_ENV} changed: the snapshot(s) as of {', '.join(other)} under {root} were built under another "
            f"PII key (fingerprint now {fingerprint}). Identifiers hashed under the old key (pre-hashed phone_hash / "
            f"unionid_hash inputs) no longer match new hashes, so links between them are silently cut. Use the "
            f"old key, or re-hash every input under the new one."
        )
        if console is not None:
            console.print(f"[bold red]WARNING:[/] {msg}")
        logger.warning(msg)
    return other


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
