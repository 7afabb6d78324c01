"""Input rows: compression round trip, NaN rows excluded, malformed inputs named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.btyd import BTYDModel, compress_rows


def test_compress_rows_roundtrip():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 1000).astype(float)
    b = rng.integers(0, 3, 1000).astype(float)
    (ua, ub), w, inv = compress_rows(a, b)
    assert w.sum() == 1000 and len(w) == len(set(zip(a, b, strict=True)))
    np.testing.assert_array_equal(ua[inv], a)
    np.testing.assert_array_equal(ub[inv], b)


def test_nan_rows_are_excluded_and_predicted_nan(synth, synth_model):
    extra = pd.DataFrame({"frequency": [np.nan, np.nan], "recency": [np.nan, np.nan], "T": [np.nan, np.nan],
                          "monetary_value": [np.nan, np.nan]}, index=pd.Index(["p_new1", "p_new2"], name="person_id"))
    data = pd.concat([synth, extra])
    model = BTYDModel().fit(data)
    assert model.n_excluded_ == 2 and model.n_customers_ == len(synth)
    assert model.params_ == pytest.approx(synth_model.params_, rel=1e-9)
    pred = model.predict_frame(data, 90, as_of="2025-01-01", with_intervals=False)
    assert pred.index.equals(data.index)
    assert pred.loc[["p_new1", "p_new2"], ["p_alive", "expected_orders", "expected_spend"]].isna().all().all()
    assert pred.loc[["p_new1", "p_new2"], "expected_next_order_date"].isna().all()
    assert pred.drop(index=["p_new1", "p_new2"])[["p_alive", "expected_orders", "p_purchase"]].notna().all().all()


def test_bad_inputs_name_column_and_rows(synth):
    bad = synth.copy()
    bad.iloc[3, bad.columns.get_loc("recency")] = bad["T"].iloc[3] + 5
    with pytest.raises(ValueError, match=r"'recency' must not exceed T: 1 row\(s\), e.g. index \['p_00003'\]"):
        BTYDModel().fit(bad)
    with pytest.raises(ValueError, match="monetary_value"):
        BTYDModel().fit(synth.drop(columns="monetary_value"))
    with pytest.raises(ValueError, match="frequency"):
        BTYDModel().fit(synth.assign(frequency=synth["frequency"] + 0.5))
