"""Memory diet on one machine (issue 13): with a person sample, one whole snapshot at a time, same training rows."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
from model_data import AS_OF, HORIZON, small

from training.frames import FeatureCache

CUTOFFS = ["2025-01-02", "2025-04-02"]


def test_sampled_cache_keeps_other_cutoffs_for_the_sample_only_with_identical_rows():
    data = small().dataset
    slim = FeatureCache(data, sample_size=400, random_state=4)
    whole = FeatureCache(data).with_sample(400, random_state=4)  # shared snapshots stay whole
    sample = slim.use_sample(AS_OF)
    assert whole.use_sample(AS_OF).people == sample.people and sample.people is not None

    rows_slim, rows_whole = slim.labelled(CUTOFFS, HORIZON), whole.labelled(CUTOFFS, HORIZON)
    pd.testing.assert_frame_equal(rows_slim, rows_whole)  # exactly the same training rows
    assert len(slim.features(AS_OF)) == len(whole.features(AS_OF))  # the sample's reference stays whole
    for cutoff in CUTOFFS:
        kept, everyone = slim.features(cutoff), whole.features(cutoff)
        assert set(kept["person_id"].astype(str)) <= sample.people and len(kept) < len(everyone)
        assert slim.n_buyers(cutoff) == whole.n_buyers(cutoff) == int((everyone["orders"] >= 1).sum())
        assert slim.n_rows(cutoff) == whole.n_rows(cutoff)
        assert slim.btyd(cutoff).params_ == whole.btyd(cutoff).params_  # fitted on every buyer


def test_a_released_snapshot_is_freed_and_a_new_sample_rebuilds_slim_ones():
    data = small().dataset
    cache = FeatureCache(data, sample_size=400, random_state=4)
    cache.use_sample(AS_OF)
    ref = weakref.ref(cache.features(CUTOFFS[0]))
    assert ref() is not None
    cache.release([CUTOFFS[0]], keep=[AS_OF])
    gc.collect()
    assert ref() is None  # nothing else holds the snapshot
    # a whole snapshot built before the sample is drawn is cut to the sample when it is
    late = FeatureCache(data, sample_size=400, random_state=4)
    n_all = len(late.features(CUTOFFS[1]))
    sample = late.use_sample(AS_OF)
    assert set(late.features(CUTOFFS[1])["person_id"].astype(str)) <= sample.people
    assert len(late.features(CUTOFFS[1])) < n_all
