"""Input rows of the BTYD models: validation of the summary columns and collapsing identical rows into weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["RFM_COLUMNS", "check_horizon", "compress_rfm", "compress_rows", "factorize", "require_columns",
           "rfm_arrays"]

RFM_COLUMNS = ("frequency", "recency", "T")


def compress_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Collapse identical rows of several equally long columns into unique rows with counts.

    Parameters
    ----------
    *columns : numpy.ndarray
        1-D arrays of equal length without NaN.

    Returns
    -------
    uniques : list of numpy.ndarray
        The unique rows, one array per input column (first-seen order).
    weights : numpy.ndarray
        ``int64`` count of input rows per unique row (sums to the input length).
    inverse : numpy.ndarray
        Index of the unique row of every input row, so ``uniques[k][inverse] == columns[k]``.
    """
    n = len(columns[0])
    code = _integer_code(columns)
    if code is None:
        code = np.zeros(n, dtype=np.int64)
        span = 1
        for col in columns:
            codes, uniq = pd.factorize(col, sort=False)
            k = max(len(uniq), 1)
            if span * k >= 2**62:  # re-factorize the partial key to keep it small
                code, _ = pd.factorize(code, sort=False)
                span = int(code.max()) + 1 if n else 1
            code = code * k + codes
            span *= k
    inverse, uniq_codes = pd.factorize(code, sort=False)
    n_unique = len(uniq_codes)
    rep = np.empty(n_unique, dtype=np.int64)
    rep[inverse] = np.arange(n, dtype=np.int64)  # any representative: all rows of a group are identical
    weights = np.bincount(inverse, minlength=n_unique).astype(np.int64)
    return [np.asarray(c)[rep] for c in columns], weights, inverse


def compress_rfm(x: np.ndarray, rec: np.ndarray, T: np.ndarray):
    """:func:`compress_rows` for ``(frequency, recency, T)``; one-time buyers (``x = 0``, so ``recency = 0``)
    are grouped by ``T`` alone, which is cheaper and usually covers most customers."""
    once = x == 0
    if not once.any() or once.all():
        return compress_rows(x, rec, T)
    (u0,), w0, inv0 = compress_rows(T[once])
    (u1x, u1r, u1T), w1, inv1 = compress_rows(x[~once], rec[~once], T[~once])
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[once] = inv0
    inverse[~once] = inv1 + len(w0)
    uniques = [np.concatenate([np.zeros(len(w0)), u1x]), np.concatenate([np.zeros(len(w0)), u1r]),
               np.concatenate([u0, u1T])]
    return uniques, np.concatenate([w0, w1]), inverse


def _integer_code(columns) -> np.ndarray | None:
    """One int64 key per row when every column holds whole numbers of modest range (daily data), else None."""
    code = None
    span = 1
    for col in columns:
        col = np.asarray(col)
        if col.dtype.kind not in "fiu" or len(col) == 0:
            return None
        lo, hi = col.min(), col.max()
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= 2**31:
            return None
        k = int(hi - lo) + 1
        span *= k
        if span >= 2**62:
            return None
        shifted = col - lo
        as_int = shifted.astype(np.int64)
        if col.dtype.kind == "f" and not np.array_equal(as_int, shifted):
            return None
        code = as_int if code is None else code * k + as_int
    return code



def factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values (first-seen order) of a 1-D array, by hashing."""
    codes, uniques = pd.factorize(np.asarray(values), sort=False)
    return codes.astype(np.intp, copy=False), np.asarray(uniques, dtype=float)


def check_horizon(t) -> float:
    t = float(t)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"horizon must be a positive number of days; got {t}")
    return t


def require_columns(data: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame; got {type(data).__name__}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}; BTYD models need {list(RFM_COLUMNS)} (+ monetary_value)")


def rfm_arrays(data: pd.DataFrame, *, require_monetary: bool):
    """Validated ``frequency, recency, T`` float arrays and the mask of usable (non-NaN) rows."""
    require_columns(data, RFM_COLUMNS + (("monetary_value",) if require_monetary else ()))
    cols = {}
    for c in RFM_COLUMNS:
        try:
            cols[c] = data[c].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"column {c!r} must be numeric: {exc}") from exc
    x, rec, T = cols["frequency"], cols["recency"], cols["T"]
    keep = np.isfinite(x) & np.isfinite(rec) & np.isfinite(T)
    checks = [
        ("frequency", (x < 0) | (x != np.round(x)), "must be a non-negative integer"),
        ("recency", rec < 0, "must be >= 0"),
        ("T", T < 0, "must be >= 0"),
        ("recency", rec > T + 1e-9, "must not exceed T"),
        ("recency", (x == 0) & (rec != 0), "must be 0 when frequency is 0"),
    ]
    for column, bad, reason in checks:
        bad = bad & keep
        if bad.any():
            labels = list(data.index[bad][:5])
            raise ValueError(f"column {column!r} {reason}: {int(bad.sum())} row(s), e.g. index {labels}")
    x, rec, T = x[keep], rec[keep], T[keep]
    full = [np.full(len(data), np.nan) for _ in range(3)]
    for arr, vals in zip(full, (x, rec, T), strict=True):
        arr[keep] = vals
    return full[0], full[1], full[2], keep
