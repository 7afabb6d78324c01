"""The /score and /tier request path costs O(ids): it reads precomputed arrays, never the population's frames.

Functional proofs of the design (no timing): a state whose snapshot and score frames are replaced by objects that
fail on any use answers exactly as the real one; the same people answer the same in a population three times as
large; the lookup routes are not traced and the served worker's collector settings are the documented ones.
"""

from __future__ import annotations

import asyncio
import copy
import gc

import numpy as np
import pandas as pd
import pytest

run = asyncio.run


class Tripwire:
    """Stands for a population-wide frame: any use of it fails the test."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr):
        raise AssertionError(f"the request path used state.{self._name}.{attr}")

    def __len__(self):
        raise AssertionError(f"the request path took len(state.{self._name})")

    def __getitem__(self, key):
        raise AssertionError(f"the request path indexed state.{self._name}")

    def __iter__(self):
        raise AssertionError(f"the request path iterated over state.{self._name}")


def serving(service, state):
    """A service instance answering from ``state`` (no loading, no reload thread)."""
    cls = type(service)
    svc = cls.__new__(cls)
    svc.state, svc.load_error = state, None
    return svc


def answers(svc, ids: list[str]) -> tuple[str, str, str]:
    return (run(svc.score(customer_ids=ids)).model_dump_json(),
            run(svc.score(customer_ids=ids, with_reasons=False)).model_dump_json(),
            run(svc.tier(customer_ids=ids)).model_dump_json())


def request_ids(people: pd.DataFrame, sample_ids) -> list[str]:
    ids = sample_ids(80, seed=21)
    keys = people["customer_key"].dropna().astype(str).to_numpy()[:10].tolist()
    return [*ids, *keys, ids[0], "p_000000000000", "tmall:nobody"]  # keys, a duplicate, unknown ids


def test_lookups_never_touch_the_population_frames(service, people, sample_ids):
    state = service.state
    assert state.reasons_by_lookup()
    tripped = copy.copy(state)
    for name in ("features", "scores", "identity", "snapshot"):
        setattr(tripped, name, Tripwire(name))
    ids = request_ids(people, sample_ids)
    expected = answers(service, ids)
    assert '"reasons":[{' in expected[0] and '"not_found":["p_000000000000","tmall:nobody"]' in expected[0]
    assert answers(serving(service, tripped), ids) == expected


def test_the_same_people_answer_the_same_in_a_larger_population(service, people, sample_ids):
    """Three copies of everyone under new ids: the original people's answers are unchanged (nothing in them
    depends on the population's size, and the id index and arrays scale without a per-request full pass)."""
    from features.pipeline import Snapshot
    from serving.state import ServingState

    state = service.state
    k = 3
    n = len(state.features)
    suffix = np.repeat(["", "~1", "~2"], n)
    features = pd.concat([state.features] * k, ignore_index=True)
    features["person_id"] = features["person_id"].astype(str).to_numpy(dtype=object) + suffix
    scores = pd.concat([state.scores] * k, ignore_index=True)
    scores["person_id"] = features["person_id"].to_numpy()
    identity = pd.concat([state.identity] * k, ignore_index=True)
    isuffix = np.repeat(["", "~1", "~2"], len(state.identity))
    for col in ("customer_key", "person_id"):
        identity[col] = identity[col].astype(str).to_numpy(dtype=object) + isuffix
    big = ServingState(state.models, Snapshot(features, identity, state.snapshot.manifest, state.snapshot.path),
                       rules=state.rules, data_dir=state.data_dir, scores=scores)
    assert big.n_people == k * n and big.reasons_by_lookup()
    ids = request_ids(people, sample_ids)
    small_svc, big_svc = serving(service, state), serving(service, big)
    for with_reasons in (True, False):
        assert (run(big_svc.score(customer_ids=ids, with_reasons=with_reasons)).model_dump_json()
                == run(small_svc.score(customer_ids=ids, with_reasons=with_reasons)).model_dump_json())
    copies = [f"{i}~2" for i in ids[:20]]  # a copy answers like its original, under its own id
    copy_results = run(big_svc.score(customer_ids=copies)).results
    original_results = run(small_svc.score(customer_ids=ids[:20])).results
    for c, o in zip(copy_results, original_results, strict=True):
        assert c.person_id == o.person_id + "~2"
        assert c.model_dump(exclude={"id", "person_id"}) == o.model_dump(exclude={"id", "person_id"})


@pytest.mark.parametrize(("path", "traced"), [("/score", False), ("/score?x=1", False), ("/tier", False),
                                              ("/target", True), ("/lookalike", True), ("/scores", True)])
def test_the_lookup_routes_are_not_traced(path, traced):
    from opentelemetry.util.http import ExcludeList

    from serving.service import ScrmService

    excluded = ExcludeList(ScrmService.config["tracing"]["excluded_urls"])
    assert excluded.url_disabled(f"http://127.0.0.1:3000{path}") is not traced


def test_a_served_worker_collects_garbage_with_the_serving_thresholds():
    from serving.service import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700  # larger than CPython's default first threshold
    finally:
        gc.set_threshold(*before)
