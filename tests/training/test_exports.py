"""CSV exports for people: formula cells neutralised (OWASP CSV injection), everything else unchanged."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from training.exports import FORMULA_TRIGGERS, neutralise_formulas, write_csv


def test_text_cells_starting_with_a_trigger_get_a_quote():
    cells = [f"{t}cmd|' /C calc'!A0" for t in FORMULA_TRIGGERS] + ["plain", "a=b", "", None]
    frame = pd.DataFrame({"text": pd.Series(cells, dtype=object), "n": np.arange(len(cells), dtype=float) - 3})
    out = neutralise_formulas(frame)
    assert out["text"].tolist()[: len(FORMULA_TRIGGERS)] == ["'" + c for c in cells[: len(FORMULA_TRIGGERS)]]
    assert out["text"].tolist()[len(FORMULA_TRIGGERS):] == ["plain", "a=b", "", None]
    assert out["n"].tolist() == frame["n"].tolist()  # negative numbers are numbers, not formulas
    assert frame["text"].tolist() == cells  # the input is not changed


@pytest.mark.parametrize("dtype", [object, "str", "string"])
def test_plain_numbers_in_text_columns_are_kept_and_dtypes_too(dtype):
    frame = pd.DataFrame({"v": pd.Series(["-0.5", "+86", "-1e-3", "-2+3", "@x", "ok"], dtype=dtype)})
    out = neutralise_formulas(frame)
    assert out["v"].tolist() == ["-0.5", "+86", "-1e-3", "'-2+3", "'@x", "ok"]
    assert out["v"].dtype == frame["v"].dtype


def test_columns_without_strings_are_left_alone():
    frame = pd.DataFrame({"none": pd.Series([None, None], dtype=object), "dicts": [{"a": 1}, {"b": 2}],
                          "flag": [True, False], "ts": pd.to_datetime(["2026-01-01", "2026-01-02"])})
    assert neutralise_formulas(frame).equals(frame)


def test_write_csv_round_trips_with_the_quote_and_writes_the_file(tmp_path):
    frame = pd.DataFrame({"person_id": ["p_1", "=1+1"], "segment": ["重要价值客户", "\tx"], "value": [-1.5, 2.0]})
    path = tmp_path / "out.csv"
    text = write_csv(frame, path)
    assert path.read_text(encoding="utf-8") == text
    back = pd.read_csv(io.StringIO(text))
    assert back["person_id"].tolist() == ["p_1", "'=1+1"]
    assert back["segment"].tolist() == ["重要价值客户", "'\tx"]
    assert back["value"].tolist() == [-1.5, 2.0]
