"""training.scoring: the one scoring path (batch, service, backtest) and loading the registered champions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, fitted_churn, fitted_clv, small

from training import pyfunc, registry, tracking
from training.churn import ChurnModel
from training.scoring import (
    REASON_COLUMNS,
    SCORE_COLUMNS,
    Models,
    ReasonLookup,
    eligibility,
    load_champions,
    reason_table,
    reasons_from_table,
    score,
)


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(fitted_churn().model, fitted_clv().model)


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    return small().cache.features(AS_OF)


@pytest.fixture(scope="module")
def scores(snapshot, models) -> pd.DataFrame:
    return score(snapshot, models, as_of=AS_OF)


def test_everyone_gets_a_row_and_buyers_get_scores(snapshot, scores):
    assert list(scores["person_id"]) == list(snapshot["person_id"])
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    assert {"tier", "action_segment", "rfm_segment", "lifecycle_stage", "spend_365d"} <= set(scores.columns)
    ok = scores[scores["eligible"]]
    assert len(ok) > 0.8 * (snapshot["orders"] >= 1).sum()
    assert ok["churn_probability"].between(0, 1).all()
    assert (ok["clv_p10"] <= ok["clv_mean"]).all() and (ok["clv_mean"] <= ok["clv_p90"]).all()
    assert ok["p_alive"].between(0, 1).all() and (ok["expected_orders"] >= 0).all()
    assert (ok["expected_next_order_date"].dropna() >= pd.Timestamp(AS_OF)).all()
    assert ok["ineligible_reason"].isna().all()
    # the BTYD chance of no order over the CLV horizon: at least that of no order while alive, at most 1
    assert ok["p_no_purchase"].between(1 - ok["p_alive"] - 1e-9, 1).all()
    assert scores.loc[~scores["eligible"], "p_no_purchase"].isna().all()


def test_people_who_cannot_be_scored_carry_a_reason(snapshot, scores):
    no = scores[~scores["eligible"]]
    assert set(no["ineligible_reason"]) <= {"no paid order before as_of", "first order less than 7 days before as_of"}
    assert no[["churn_probability", "clv_mean", "clv_p10", "clv_p90"]].isna().all().all()
    never = snapshot["orders"].fillna(0).to_numpy() < 1
    assert (scores.loc[never, "ineligible_reason"] == "no paid order before as_of").all()
    assert (no["action_segment"] == "not_scored").all()
    reasons = eligibility(snapshot, min_tenure_days=10_000)
    assert reasons.notna().all()  # nobody has 10,000 days of tenure


def test_a_few_people_score_like_the_whole_population(snapshot, scores, models):
    """The service scores a handful of people with the population's CLV cut: same numbers as the batch."""
    from training.decisions.tiers import clv_value_cut

    cut = clv_value_cut(scores)
    rows = snapshot.sample(25, random_state=4)
    few = score(rows, models, as_of=AS_OF, clv_cut=cut).set_index("person_id")
    whole = scores.set_index("person_id").loc[few.index]
    cols = ["churn_probability", "clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive", "tier",
            "action_segment"]
    pd.testing.assert_frame_equal(few[cols], whole[cols], check_exact=False, rtol=1e-9)


def test_reason_columns_only_for_scored_people_and_those_of_the_model(snapshot, models):
    rows = snapshot.head(60)
    out = score(rows, models, as_of=AS_OF, with_reasons=True)
    assert list(out.columns[-len(REASON_COLUMNS):]) == list(REASON_COLUMNS) == [
        f"reason_{k}_{f}" for k in (1, 2, 3) for f in ("feature", "value", "contribution")]
    lists = reasons_from_table(out)
    ok = out["eligible"].to_numpy()
    assert not any(r for r, e in zip(lists, ok, strict=True) if not e)
    assert out.loc[~ok, list(REASON_COLUMNS)].isna().all().all()
    direct = models.churn.reasons(rows.loc[ok])
    assert [r for r, e in zip(lists, ok, strict=True) if e] == direct
    assert any(direct) and all(len(r) <= 3 for r in direct)
    for r in direct:  # positive contributions, largest first, each described
        assert [x["contribution"] for x in r] == sorted((x["contribution"] for x in r), reverse=True)
        assert all(x["contribution"] > 0 and x["description"] for x in r)


def test_reason_table_does_not_depend_on_chunks_or_threads(snapshot, models):
    ok = eligibility(snapshot).isna().to_numpy()
    one = reason_table(snapshot, models.churn, eligible=ok)
    chunked = reason_table(snapshot, models.churn, eligible=ok, n_jobs=2, chunk_rows=97)
    pd.testing.assert_frame_equal(one, chunked)
    assert one["reason_1_feature"].notna().sum() > 0.5 * ok.sum()


@pytest.fixture(scope="module")
def published(snapshot, models, tmp_path_factory) -> pd.DataFrame:
    """Scores with reasons as `scrm score` writes them (version and as_of columns), through Parquet."""
    out = score(snapshot, models, as_of=AS_OF, with_reasons=True)
    out.insert(1, "feature_as_of", pd.Timestamp(AS_OF))
    out["churn_model_version"] = "3"
    path = tmp_path_factory.mktemp("published") / "scores.parquet"
    out.to_parquet(path, index=False)
    return pd.read_parquet(path)


def test_lookup_reasons_equal_reasons_computed_directly(snapshot, models, published):
    order = snapshot["person_id"].sample(frac=1.0, random_state=5).to_numpy()  # served rows in another order
    lookup = ReasonLookup.from_scores(published, order, model=models.churn)
    served = snapshot.set_index("person_id").loc[order].reset_index()
    positions = np.random.default_rng(6).choice(len(order), 80, replace=False)
    rows = served.iloc[positions]
    ok = eligibility(rows).isna().to_numpy()
    direct = iter(models.churn.reasons(rows.loc[ok]))
    expected = [next(direct) if e else [] for e in ok]
    assert ok.any() and any(expected)
    assert lookup.reasons(positions) == expected
    pd.testing.assert_frame_equal(lookup.table(positions).reset_index(drop=True),
                                  reason_table(rows, models.churn, eligible=ok).reset_index(drop=True))


def test_lookup_serves_only_its_model_version_and_snapshot(published, models):
    lookup = ReasonLookup.from_scores(published, published["person_id"], model=models.churn)
    assert lookup.serves("3", AS_OF)
    assert not lookup.serves("4", AS_OF)  # a new champion
    assert not lookup.serves("3", pd.Timestamp(AS_OF) + pd.Timedelta(days=1))  # a new snapshot
    assert not lookup.serves(None, AS_OF, models.churn)  # an unregistered model: not what was published
    unregistered = ReasonLookup(published, churn_version=None, as_of=AS_OF, model=models.churn)
    assert unregistered.serves(None, AS_OF, models.churn)
    assert not unregistered.serves(None, AS_OF, ChurnModel())  # another model object
    assert not unregistered.serves("3", AS_OF, models.churn)


def test_lookup_from_scores_that_do_not_fit_names_the_problem(published):
    with pytest.raises(ValueError, match="reason_1_feature"):
        ReasonLookup.from_scores(published.drop(columns=["reason_1_feature"]), published["person_id"])
    with pytest.raises(ValueError, match="2 people of the snapshot"):
        ReasonLookup.from_scores(published.iloc[2:], published["person_id"])
    mixed = published.assign(churn_model_version=["3"] * (len(published) - 1) + ["4"])
    with pytest.raises(ValueError, match="several churn_model_version"):
        ReasonLookup.from_scores(mixed, published["person_id"])


def test_without_intervals(snapshot, models, scores):
    out = score(snapshot, models, as_of=AS_OF, with_intervals=False)
    assert out["clv_p10"].isna().all() and out["clv_p90"].isna().all()
    np.testing.assert_allclose(out["clv_mean"].fillna(-1), scores["clv_mean"].fillna(-1))


def test_load_champions_scores_like_the_fitted_models(snapshot, models, scores):
    with pytest.raises(LookupError, match="scrm train"):
        load_champions(brand="acme", churn_horizon=90, clv_horizon=90)
    for name, fitted in (("churn", fitted_churn()), ("clv", fitted_clv())):
        with tracking.start_run(name, run_name=f"{name} scoring test"):
            import mlflow

            mlflow.log_metric(f"val.{'auc' if name == 'churn' else 'gini'}", 0.5)
            info = pyfunc.log_model(fitted.model, input_example=snapshot[snapshot["orders"] >= 1].head(5),
                                      registered_model_name=registry.model_name("acme", name, 90))
        registry.promotion_gate(registry.model_name("acme", name, 90), info.registered_model_version, metric="val.auc" if name == "churn"
                                else "val.gini", value=0.5)
    loaded = load_champions(brand="acme", churn_horizon=90, clv_horizon=90)
    assert loaded.versions == {"churn": "1", "clv": "1"}
    assert (loaded.churn_name, loaded.clv_name, loaded.horizons) == ("acme.churn_90d", "acme.clv_90d",
                                                                     {"churn": 90, "clv": 90})
    again = score(snapshot, loaded, as_of=AS_OF)
    pd.testing.assert_frame_equal(again, scores)


def test_tier_move_probabilities_use_the_zero_inflated_spend(scores):
    from training.decisions.tier_forecast import ZeroInflatedSpend, predict_tiers, tier_forecast

    forecast = tier_forecast(scores)
    assert isinstance(forecast.distribution, ZeroInflatedSpend) and 0 < forecast.distribution.sigma < 5
    ok = scores["eligible"].to_numpy()
    horizons_equal = (scores["churn_horizon_days"] == scores["clv_horizon_days"]).all()
    source = "churn_probability" if horizons_equal else "p_no_purchase"
    assert forecast.no_spend == pytest.approx(scores.loc[ok, source].to_numpy())
    pd.testing.assert_frame_equal(predict_tiers(scores)[["p_tier_up", "p_tier_down", "p_tier_stay"]],
                                  scores[["p_tier_up", "p_tier_down", "p_tier_stay"]])
