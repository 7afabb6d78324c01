"""Churn reasons: served by lookup from the batch pass, equal to computing them, never stale (see conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from training.scoring import REASON_COLUMNS, ReasonLookup, reason_table, reasons_from_table

run = asyncio.run


def direct_reasons(state, positions: np.ndarray) -> list[list[dict]]:
    """The reasons computed now, for these rows only, by the batch pass's function (no lookup)."""
    return reasons_from_table(reason_table(state.features.iloc[positions], state.models.churn,
                                           eligible=state.scores["eligible"].to_numpy(dtype=bool)[positions]))


def served_reasons(service, ids: list[str]) -> list[list[dict]]:
    return [[x.model_dump() for x in r.reasons] for r in run(service.score(customer_ids=ids)).results]


def test_start_up_computes_everyones_reasons_and_serves_them_by_lookup(service, sample_ids):
    state = service.state
    lookup = state.reason_lookup
    assert lookup is not None and len(lookup) == len(state.features)
    assert lookup.serves(state.models.churn_version, state.as_of, state.models.churn)
    assert set(REASON_COLUMNS) <= set(state.scores.columns)
    ids = sample_ids(60, seed=11)
    positions = state.resolve(ids).positions
    expected = direct_reasons(state, positions)
    assert any(expected)
    assert served_reasons(service, ids) == expected


def test_reasons_of_scrm_score_equal_the_served_ones(service, serving_env, tmp_path):
    """The published format: `scrm score` writes the reason columns, and a lookup read from them serves the
    same reasons as the service's own batch pass."""
    from typer.testing import CliRunner

    from training.cli import app

    out = tmp_path / "scores.parquet"
    cli = CliRunner().invoke(app, ["score", "--data", str(serving_env.data_dir), "--as-of", "2026-01-01",
                                   "--out", str(out), "--jobs", "2"])
    assert cli.exit_code == 0, cli.output
    batch = pd.read_parquet(out)
    assert set(REASON_COLUMNS) <= set(batch.columns)
    state = service.state
    lookup = ReasonLookup.from_scores(batch, state.features["person_id"])
    assert lookup.serves(state.models.churn_version, state.as_of)
    everyone = np.arange(len(state.features))
    assert lookup.reasons(everyone) == state.reason_lookup.reasons(everyone)


@pytest.fixture
def swap_lookup(service):
    """Put another lookup in the running state for one test; the original is restored after it."""
    state = service.state
    original = state.reason_lookup

    def put(lookup):
        state.reason_lookup = lookup
        state._stale_lookup_logged = False

    yield put
    state.reason_lookup = original


def test_a_lookup_of_another_model_or_snapshot_is_not_served(service, sample_ids, swap_lookup):
    state = service.state
    ids = sample_ids(40, seed=12, eligible=True)
    positions = state.resolve(ids).positions
    expected = direct_reasons(state, positions)
    # everyone's reasons moved one row down: wrong for every person, so serving it would show
    shifted = state.scores[list(REASON_COLUMNS)].iloc[np.roll(np.arange(len(state.scores)), 1)]
    shifted = shifted.reset_index(drop=True)
    version, as_of, model = state.models.churn_version, state.as_of, state.models.churn

    swap_lookup(ReasonLookup(shifted, churn_version=version, as_of=as_of, model=model))
    assert state.reasons_by_lookup()
    assert served_reasons(service, ids) != expected  # the lookup is what answers when it fits

    other_version = str(int(version) + 1)
    for stale in (ReasonLookup(shifted, churn_version=other_version, as_of=as_of, model=model),
                  ReasonLookup(shifted, churn_version=version, as_of=as_of - timedelta(days=1), model=model),
                  ReasonLookup(shifted.iloc[:-1], churn_version=version, as_of=as_of, model=model)):
        swap_lookup(stale)
        assert not state.reasons_by_lookup()
        assert served_reasons(service, ids) == expected  # computed on the fly instead
    swap_lookup(None)
    assert served_reasons(service, ids) == expected


def test_published_scores_give_a_lookup_only_for_what_they_were_computed_with(service):
    """Scores read from a `scrm score` file carry their churn version and as_of; the lookup follows them."""
    from types import SimpleNamespace

    from serving.state import ServingState

    state = service.state
    version = state.models.churn_version
    published = state.scores.assign(feature_as_of=pd.Timestamp(state.as_of), churn_model_version=version)

    def lookup_of(scores):
        fake = SimpleNamespace(scores=scores, features=state.features, models=state.models, as_of=state.as_of)
        return ServingState._lookup_from_scores(fake)

    same = lookup_of(published)
    assert same.serves(version, state.as_of, state.models.churn)
    everyone = np.arange(len(state.features))
    assert same.reasons(everyone) == state.reason_lookup.reasons(everyone)
    other = lookup_of(published.assign(churn_model_version=str(int(version) + 1)))
    assert not other.serves(version, state.as_of, state.models.churn)
    assert lookup_of(published.drop(columns=list(REASON_COLUMNS))) is None  # scored with --no-reasons
    assert lookup_of(published.iloc[1:]) is None  # not the snapshot's people
