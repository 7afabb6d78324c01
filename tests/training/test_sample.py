"""Training on a person-level sample (issue 13): one stratified, seeded person set read at every cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metric_inventory import unlisted
from model_data import AS_OF, FAST, HORIZON, small

from training import tracking
from training.fitting import fit_churn
from training.frames import (
    MIN_DEFAULT_SAMPLE,
    SAMPLE_STRATA,
    FeatureCache,
    default_sample_size,
    draw_sample,
)
from training.train import train_churn


def _population(n: int = 10_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person_id": [f"p{i:05d}" for i in range(n)],
        "orders": rng.choice([0, 1, 3], size=n, p=[0.2, 0.5, 0.3]),
        "lifecycle_stage": rng.choice(["active", "at_risk", "lapsed", "new"], size=n, p=[0.5, 0.3, 0.15, 0.05]),
        "rfm_segment_en": rng.choice(["champions", "loyal", "hibernating"], size=n),
    })


def test_draw_sample_is_stratified_proportionally_and_exact_in_size():
    frame = _population()
    buyers = frame[frame["orders"] >= 1]
    sample = draw_sample(frame, 1_000, random_state=5)
    assert sample.kept == 1_000 and sample.buyers == len(buyers) and sample.strata == SAMPLE_STRATA
    kept = buyers[buyers["person_id"].isin(sample.people)]
    assert len(kept) == 1_000 and (kept["orders"] >= 1).all()
    want = buyers.groupby(list(SAMPLE_STRATA)).size() * 1_000 / len(buyers)
    got = kept.groupby(list(SAMPLE_STRATA)).size().reindex(want.index, fill_value=0)
    assert (np.abs(got - want) < 1).all()  # every stratum within rounding of its proportional share
    assert sample.to_params()["sample.people"] == "1000"
    assert float(sample.to_params()["sample.fraction"]) == pytest.approx(1_000 / len(buyers), abs=1e-6)


def test_draw_sample_depends_on_the_seed_not_on_row_order():
    frame = _population()
    a = draw_sample(frame, 500, random_state=1)
    shuffled = frame.sample(frac=1.0, random_state=9)
    assert draw_sample(shuffled, 500, random_state=1).people == a.people
    assert draw_sample(frame, 500, random_state=2).people != a.people
    everyone = draw_sample(frame, 50_000, random_state=1)
    assert everyone.people is None and everyone.kept == everyone.buyers
    with pytest.raises(ValueError, match="at least 1"):
        draw_sample(frame, 0, random_state=1)


def test_default_sample_size_is_half_the_memory_at_14_kb_per_person():
    assert default_sample_size(24 * 10**9) == 850_000
    assert default_sample_size(64 * 10**9) == 2_280_000
    assert default_sample_size(10**9) == MIN_DEFAULT_SAMPLE
    assert default_sample_size() >= MIN_DEFAULT_SAMPLE


@pytest.fixture(scope="module")
def sampled_cache():
    """The small brand's cache with a 400-person training sample (its snapshots built once for this module)."""
    return FeatureCache(small().dataset, sample_size=400, random_state=4)


def test_the_same_people_at_every_cutoff(sampled_cache):
    cache = sampled_cache
    sample = cache.use_sample(AS_OF)
    assert sample.kept == 400 and cache.use_sample(AS_OF) is sample  # drawn once
    cutoffs = ["2025-01-02", "2025-04-02"]
    rows = cache.labelled(cutoffs, HORIZON)
    assert set(rows["person_id"].astype(str)) <= sample.people
    for cutoff in cutoffs:
        part = rows[rows["cutoff"] == pd.Timestamp(cutoff)]
        feats = cache.features(cutoff)
        buyers = set(feats.loc[feats["orders"] >= 1, "person_id"].astype(str))
        assert set(part["person_id"].astype(str)) == buyers & sample.people  # every sampled buyer, nobody else
        assert cache.n_rows(cutoff) == len(part) < cache.n_buyers(cutoff)


def test_fit_reads_only_the_sample_and_reports_it(sampled_cache):
    fitted = fit_churn(sampled_cache, AS_OF, horizon_days=HORIZON, n_cutoffs=1, **FAST)
    people = fitted.extra["sample"].people
    assert len(people) == 400
    assert set(fitted.valid["person_id"].astype(str)) <= people
    assert 0 < fitted.extra["valid_se"]["auc_se"] < 0.2


def test_train_logs_the_sample_and_the_noise_of_the_validation_figure(sampled_cache):
    result = train_churn(small().dataset, AS_OF, cache=sampled_cache, horizon_days=HORIZON, n_cutoffs=1,
                         model_params=FAST, register=False)
    run = tracking.client().get_run(result.run_id)
    p, m = run.data.params, run.data.metrics
    assert p["sample.size"] == "400" and p["sample.people"] == "400" and p["sample.reference"] == AS_OF.isoformat()
    assert p["sample.strata"] == ",".join(SAMPLE_STRATA) and int(p["sample.buyers"]) > 400
    assert m["sample.people"] == 400 and 0 < m["sample.fraction"] < 1 and m["sample.val_auc_se"] > 0
    assert unlisted(m) == []


@pytest.mark.parametrize(("option", "expected"), [([], "default"), (["--sample-size", "1234"], 1234),
                                                  (["--sample-size", "0"], None)])
def test_the_nightly_job_trains_on_the_sample_size_asked_for(tmp_path, monkeypatch, option, expected):
    """`scrm refresh --sample-size` reaches `train_all` (0: everyone; default: sized to the machine)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import training.refresh
    from training.cli import app
    from training.train import _cache

    seen = {}

    def fake_refresh(data, **kwargs):
        seen.update(kwargs["train_options"])
        return SimpleNamespace(notes=[], status="failed", failed_step="validate", error="stop here", exit_code=1)

    monkeypatch.setattr(training.refresh, "refresh", fake_refresh)
    result = CliRunner().invoke(app, ["refresh", "--data", str(tmp_path), *option])
    assert result.exit_code == 1, result.output
    assert seen["sample_size"] == (default_sample_size() if expected == "default" else expected)
    assert _cache(small().dataset, None, 0, seen["sample_size"]).sample_size == seen["sample_size"]
