"""Lookalike (PU-bagged LightGBM): planted-signal recall, random-seed lift ≈ 1, seed quality, determinism."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from metric_inventory import unlisted

from training.lookalike import LookalikeModel, SeedQualityWarning, columns_with_prefixes

N_PEOPLE = 20_000
N_CLUSTER = 1_500
N_FEATURES = 8

# Small, fast settings; one thread so the suite behaves the same on a busy CI box.
FAST = {"n_bags": 3, "n_estimators": 40, "n_jobs": 1}


def make_population(seed: int = 13) -> pd.DataFrame:
    """People with 8 standard-normal features; the first 1,500 form a distinct cluster (f0..f2 shifted)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_PEOPLE, N_FEATURES))
    x[:N_CLUSTER, :3] += 2.5
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame.insert(0, "person_id", [f"p_{i:05d}" for i in range(N_PEOPLE)])
    frame["orders"] = rng.poisson(2.0, size=N_PEOPLE)  # an integer column, as in real snapshots
    frame["segment"] = np.where(x[:, 0] > 0, "a", "b")  # a string column the model must ignore
    return frame


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return make_population()


@pytest.fixture(scope="module")
def cluster_seed(population) -> pd.Series:
    """600 of the 1,500 cluster members; the other 900 are the lookalikes to find."""
    return population["person_id"].iloc[:600]


@pytest.fixture(scope="module")
def planted(population, cluster_seed) -> LookalikeModel:
    return LookalikeModel(random_state=3, **FAST).fit(population, cluster_seed)


def test_planted_cluster_is_found(planted):
    m = planted.evaluation_["metrics"]
    assert unlisted(m) == []  # what a lookalike run logs: every metric has a direction (metric_inventory)
    assert m["holdout.n_seeds"] == 120 and m["holdout.n_train_seeds"] == 480
    assert m["holdout.n_candidates"] == N_PEOPLE - 480
    # 1,020 cluster members among 19,520 candidates: the top 5% (976 people) can hold nearly all of them.
    assert m["holdout.recall_at_5pct"] > 0.7
    assert m["holdout.lift_at_5pct"] > 10
    assert m["holdout.recall_at_10pct"] > 0.95
    assert m["holdout.auc"] > 0.95
    for label, k in (("1pct", 0.01), ("5pct", 0.05), ("10pct", 0.10)):
        assert m[f"holdout.lift_at_{label}"] == pytest.approx(m[f"holdout.recall_at_{label}"] / k)


def test_expansion_curve(planted):
    curve = planted.evaluation_["expansion_curve"]
    assert len(curve) == 50
    assert {"fraction", "size", "recall", "lift", "random_recall"} <= set(curve.columns)
    assert curve["fraction"].is_monotonic_increasing
    assert curve["recall"].is_monotonic_increasing  # recall never falls as the audience grows
    assert curve["recall"].iloc[-1] == pytest.approx(1.0)
    assert curve["fraction"].iloc[-1] == pytest.approx(1.0)


def test_final_ranking_puts_the_cluster_first(planted, population):
    ranked = planted.rank()
    top = ranked.head(900)
    in_cluster = top["person_id"].str[2:].astype(int) < N_CLUSTER
    assert in_cluster.mean() > 0.85


def test_random_seed_has_no_lift(population):
    seed = population["person_id"].sample(1_000, random_state=5)
    model = LookalikeModel(random_state=3, **FAST).fit(population, seed)
    m = model.evaluation_["metrics"]
    assert 0.5 < m["holdout.lift_at_10pct"] < 1.6
    assert 0.4 < m["holdout.auc"] < 0.6


def test_excluding_the_defining_column_removes_the_signal(population):
    """A seed defined by f5 > 1.5 is trivial to re-find with f5 and invisible without it (f5 is independent)."""
    seed = population.loc[population["f5"] > 1.5, "person_id"]
    with_col = LookalikeModel(random_state=3, **FAST).fit(population, seed)
    without = LookalikeModel(random_state=3, exclude_columns=["f5"], **FAST).fit(population, seed)
    assert "f5" in with_col.feature_names_ and "f5" not in without.feature_names_
    assert with_col.evaluation_["metrics"]["holdout.lift_at_10pct"] > 5
    assert 0.4 < without.evaluation_["metrics"]["holdout.auc"] < 0.6


def test_model_columns_skip_ids_and_strings(planted):
    assert planted.feature_names_ == [f"f{i}" for i in range(N_FEATURES)] + ["orders"]


def test_columns_with_prefixes(population):
    assert columns_with_prefixes(population, ["f1", "ord"]) == ["f1", "orders"]
    assert columns_with_prefixes(["spend_30d", "spend_90d", "orders"], "spend_") == ["spend_30d", "spend_90d"]
    assert columns_with_prefixes(population, "zzz") == []


def test_unknown_exclude_column_is_an_error(population, cluster_seed):
    with pytest.raises(ValueError, match=r"exclude_columns: \['f99'\] are not model columns"):
        LookalikeModel(exclude_columns=["f99"], **FAST).fit(population, cluster_seed)


# --- seed quality ----------------------------------------------------------------------------------------------


def test_too_few_seeds_is_a_clear_error(population):
    seed = list(population["person_id"].iloc[:49]) + ["nobody-1", "nobody-2"]
    with pytest.raises(ValueError, match=r"only 49 valid seed id\(s\).*2 unknown.*at least 50"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeedQualityWarning)
            LookalikeModel(**FAST).fit(population, seed)


def test_unknown_and_duplicate_ids_warn_and_are_reported(population, cluster_seed):
    seed = list(cluster_seed) + ["ghost-1", "ghost-2", "ghost-3"] + list(cluster_seed.iloc[:2]) + [None]
    with pytest.warns(SeedQualityWarning) as record:
        model = LookalikeModel(random_state=3, **FAST).fit(population, seed)
    messages = " | ".join(str(w.message) for w in record)
    assert "2 duplicate id(s)" in messages and "p_00000" in messages
    assert "3 id(s) not in the features" in messages and "ghost-1" in messages
    assert "1 missing" in messages
    report = model.seed_report_
    assert report["n_given"] == 606
    assert (report["n_duplicates"], report["n_unknown"], report["n_missing"], report["n_valid"]) == (2, 3, 1, 600)
    assert report["unknown_examples"] == ["ghost-1", "ghost-2", "ghost-3"]
    assert len(model.seed_ids_) == 600


def test_clean_seed_does_not_warn(population, cluster_seed):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeedQualityWarning)
        model = LookalikeModel(holdout_fraction=0.0, **FAST).fit(population, cluster_seed)
    assert model.seed_report_["n_valid"] == 600
    assert model.evaluation_ is None


def test_bad_features_are_rejected(population, cluster_seed):
    with pytest.raises(ValueError, match="missing column 'person_id'"):
        LookalikeModel(**FAST).fit(population.drop(columns="person_id"), cluster_seed)
    doubled = pd.concat([population, population.head(3)])
    with pytest.raises(ValueError, match="3 duplicate id"):
        LookalikeModel(**FAST).fit(doubled, cluster_seed)
    with pytest.raises(ValueError, match="holdout_fraction"):
        LookalikeModel(holdout_fraction=0.9).fit(population, cluster_seed)


# --- determinism, exclusion, scoring ---------------------------------------------------------------------------


def test_same_random_state_same_result(population, cluster_seed, planted):
    again = LookalikeModel(random_state=3, **FAST).fit(population, cluster_seed)
    pd.testing.assert_frame_equal(again.scores_, planted.scores_)
    assert again.evaluation_["metrics"] == planted.evaluation_["metrics"]
    other = LookalikeModel(random_state=4, **FAST).fit(population, cluster_seed)
    assert not np.allclose(other.scores_["score"], planted.scores_["score"])


def test_rank_excludes_the_seed_by_default(planted, cluster_seed):
    ranked = planted.rank()
    assert list(ranked.columns) == ["person_id", "score", "rank"]
    assert len(ranked) == N_PEOPLE - len(cluster_seed)
    assert not ranked["person_id"].isin(cluster_seed).any()
    assert ranked["score"].is_monotonic_decreasing
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    assert ranked["score"].between(0, 1).all()
    everyone = planted.rank(exclude_seed=False)
    assert len(everyone) == N_PEOPLE
    assert everyone["person_id"].isin(cluster_seed).sum() == len(cluster_seed)
    assert not hasattr(planted, "score")  # sklearn's score is one number; the ranking is rank()


def test_audience(planted, cluster_seed):
    top = planted.audience(size=100)
    assert len(top) == 100 and top["rank"].tolist() == list(range(1, 101))
    assert not top["person_id"].isin(cluster_seed).any()
    skip = top["person_id"].iloc[:10]
    shifted = planted.audience(size=100, exclude_ids=skip)
    assert not shifted["person_id"].isin(skip).any()
    assert shifted["person_id"].iloc[0] == top["person_id"].iloc[10]
    assert len(planted.audience(fraction=0.05)) == int(np.ceil(0.05 * (N_PEOPLE - len(cluster_seed))))
    with pytest.raises(ValueError, match="exactly one of size and fraction"):
        planted.audience(size=10, fraction=0.1)


def test_scoring_a_new_snapshot(planted, population, cluster_seed):
    fresh = population.sample(frac=1.0, random_state=1)  # same people, another row order
    ranked = planted.rank(fresh, exclude_seed=False)
    assert len(ranked) == N_PEOPLE
    is_seed = ranked["person_id"].isin(cluster_seed)
    assert ranked.loc[is_seed, "score"].mean() > ranked.loc[~is_seed, "score"].mean() + 0.5
    with pytest.raises(ValueError, match=r"missing feature column\(s\).*'f3'"):
        planted.rank(population.drop(columns="f3"))


def test_params_and_pickle_round_trip(planted):
    params = planted.get_params()
    assert params["random_state"] == 3 and params["n_bags"] == 3
    tracked = planted.tracking_params()
    assert tracked["lgbm.n_estimators"] == 40 and tracked["lookalike.n_bags"] == 3
    assert all(isinstance(v, (int, float, str)) for v in tracked.values())
    assert all(isinstance(v, float) for v in planted.evaluation_["metrics"].values())
    clone = pickle.loads(pickle.dumps(planted))
    pd.testing.assert_frame_equal(clone.rank(), planted.rank())


def test_expansion_curve_plot(planted):
    fig = planted.plot_expansion_curve()
    assert fig.axes[0].get_xlabel().startswith("audience size")


# --- real data -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_data_coupon_redeemers_have_lookalikes(tmp_path):
    """The Complete Journey: households that redeemed a coupon, with the coupon columns excluded."""
    from features.contract import load_dataset
    from features.pipeline import build_features
    from features.sources.completejourney import write_completejourney

    write_completejourney(tmp_path)
    features = build_features(load_dataset(tmp_path), "2017-10-01")
    seed = features.loc[features["days_since_coupon_redeem"].notna(), "person_id"]
    assert len(seed) > 250
    defining = columns_with_prefixes(features, ["ev_coupon_redeem", "days_since_coupon_redeem", "campaign_response"])
    model = LookalikeModel(exclude_columns=defining, random_state=0).fit(features, seed)
    m = model.evaluation_["metrics"]
    assert m["holdout.lift_at_5pct"] > 3
    assert m["holdout.auc"] > 0.75
    leaky = LookalikeModel(random_state=0).fit(features, seed)  # re-learns the definition
    assert leaky.evaluation_["metrics"]["holdout.auc"] > 0.99
