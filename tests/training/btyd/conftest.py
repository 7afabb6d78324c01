"""Fixtures of the BTYD tests: the CDNOW summary, a simulated sample, and the default model fitted on each."""

from __future__ import annotations

import pandas as pd
import pytest
from btyd_data import simulate
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

from training.btyd import BTYDModel


@pytest.fixture(scope="session")
def cdnow() -> pd.DataFrame:
    return load_cdnow_summary_data_with_monetary_value()


@pytest.fixture(scope="session")
def cdnow_model(cdnow) -> BTYDModel:
    return BTYDModel().fit(cdnow)


@pytest.fixture(scope="session")
def synth() -> pd.DataFrame:
    return simulate(4000, seed=7)


@pytest.fixture(scope="session")
def synth_model(synth) -> BTYDModel:
    return BTYDModel().fit(synth)
