"""Compact in-memory forms of the contract's text columns (issue 13's memory diet).

Low-cardinality text columns are held as pandas categoricals with sorted categories (1–2 bytes a row instead of a
string each: ``events.event_type`` at 176M rows is 0.2 GB instead of 2.4 GB), read dictionary-encoded from
Parquet so the strings are never materialised one per row, and the contract's per-value text rules run on the
categories only. Clean Arrow-backed strings are recognised without a stripped copy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def dictionary_columns(path: Path, categorical: tuple[str, ...]) -> list[str]:
    """The file's string columns whose contract name (lower-cased, stripped) is in ``categorical``."""
    if not categorical:
        return []
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return [f.name for f in schema if str(f.name).strip().lower() in categorical
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


def is_categorical(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.CategoricalDtype)


def map_categories(s: pd.Series, func) -> pd.Series:
    """Apply a per-value text function (``str`` Series → ``str`` Series, NA allowed) to a categorical column
    through its categories only, keeping it categorical; values the function makes equal share a category, an
    NA result is a missing value, and the categories come out sorted."""
    mapped = func(pd.Series(s.cat.categories.astype("str"), dtype="str"))
    new_codes, uniques = pd.factorize(mapped, sort=True)  # NA -> -1
    small = np.int16 if len(uniques) < np.iinfo(np.int16).max else np.int32
    lookup = np.append(new_codes, -1).astype(small)  # code -1 (missing) picks the appended -1
    codes = lookup[s.cat.codes.to_numpy()]
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str")), index=s.index)


def as_category(s: pd.Series) -> pd.Series:
    """A text column as a categorical with sorted categories, only those used (the output form of the
    ``categorical`` columns, whatever the file's type)."""
    if not is_categorical(s):
        return s.astype(pd.CategoricalDtype(pd.Index(s.dropna().unique(), dtype="str").sort_values()))
    cats, codes = s.cat.categories, s.cat.codes.to_numpy()
    used = np.bincount(codes + 1, minlength=len(cats) + 1)[1:] > 0  # one pass, no sort of the rows
    if used.all() and cats.is_monotonic_increasing:
        return s
    kept = cats[used]
    order = np.argsort(kept.to_numpy(dtype=object), kind="stable")
    rank = np.empty(len(kept), dtype=np.int64)
    rank[order] = np.arange(len(kept))
    lookup = np.full(len(cats) + 1, -1, dtype=np.int32 if len(kept) >= np.iinfo(np.int16).max else np.int16)
    lookup[np.flatnonzero(used)] = rank
    return pd.Series(pd.Categorical.from_codes(lookup[codes], categories=kept[order]), index=s.index)


def is_clean_text(s: pd.Series) -> bool:
    """No value of an Arrow-backed string column is blank or has surrounding whitespace (checked in Arrow,
    without building a stripped copy of the column)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = getattr(s.array, "_pa_array", None)  # pandas' Arrow-backed "str" columns (the default under pandas 3)
    if arr is None:
        return False
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return False
    dirty = pc.match_substring_regex(arr, r"^\s|\s$|^$")
    return not pc.any(dirty).as_py()
