"""training.scoring: the one scoring path (batch, service, backtest) and loading the registered champions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, fitted_churn, fitted_clv, small

from training import pyfunc, registry, tracking
from training.scoring import SCORE_COLUMNS, Models, eligibility, load_champions, score


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


def test_reasons_only_for_scored_people(snapshot, models):
    rows = snapshot.head(40)
    out = score(rows, models, as_of=AS_OF, with_reasons=True)
    for ok, reasons in zip(out["eligible"], out["reasons"], strict=True):
        assert isinstance(reasons, list) and len(reasons) <= 3
        if not ok:
            assert reasons == []
    assert any(out["reasons"])


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
