"""Fixtures shared by the targeting tests (``test_targeting.py``, ``test_incremental_margin.py``)."""

from __future__ import annotations

import pandas as pd
import pytest
from scores_data import make_scores

from training.decisions.tiers import assign_tiers


@pytest.fixture(scope="module")
def scores(request) -> pd.DataFrame:
    """3,000 synthetic scored people (:func:`scores_data.make_scores`), seeded by the test module's ``SCORES_SEED``."""
    seed = getattr(request.module, "SCORES_SEED", None)
    if seed is None:
        raise RuntimeError(f"{request.module.__name__}: set SCORES_SEED to use the shared `scores` fixture")
    return make_scores(3000, seed=seed)


@pytest.fixture(scope="module")
def tiers(scores) -> pd.DataFrame:
    """The tiers of ``scores`` under the packaged rules."""
    return assign_tiers(scores)
