"""InputError: bad input that says where it is (field, file, rows) as well as what is wrong."""

from __future__ import annotations

import pytest

from features.contract import DataContractError, load_dataset
from features.errors import InputError


def test_input_error_keeps_the_message_and_normalises_the_field():
    err = InputError("budget: must be >= 0, got -1", field="budget", reason="must be >= 0, got -1",
                     file=None, rows=None)
    assert isinstance(err, ValueError)
    assert str(err) == "budget: must be >= 0, got -1"
    assert err.field == ("budget",) and err.reason == "must be >= 0, got -1"
    nested = InputError("filters.tiers: unknown tier(s) ['gld']", field=("filters", "tiers"), rows=3)
    assert nested.field == ("filters", "tiers") and nested.reason == str(nested) and nested.rows == 3
    assert InputError("no location").field == ()


def test_data_contract_errors_carry_file_column_and_reason(tmp_path):
    err = DataContractError(tmp_path / "orders.csv", "order_ts", "wrong type: 3 of 3 values are not timestamps")
    assert isinstance(err, InputError)
    assert str(err) == f"{tmp_path / 'orders.csv'}: column 'order_ts': wrong type: 3 of 3 values are not timestamps"
    assert err.field == ("order_ts",) and err.column == "order_ts"
    assert err.file == str(tmp_path / "orders.csv") and err.reason.startswith("wrong type")
    with pytest.raises(InputError) as info:
        load_dataset(tmp_path / "missing")
    assert info.value.field == () and info.value.file == str(tmp_path / "missing")
    assert info.value.reason == "data directory does not exist"
