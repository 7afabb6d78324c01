"""ChurnModel and the training frames: time layout, derived inputs, calibration, reasons, scoring == training."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from model_data import AS_OF, FAST, HORIZON, fitted_churn, small
from sklearn.base import clone
from sklearn.isotonic import IsotonicRegression

from training.churn import ChurnModel, churn_monotone
from training.frames import BTYD_COLUMNS, DERIVED_DOCS, derive_features, plan_cutoffs, scaled_cutoffs
from training.lgbm import feature_columns
from training.metrics import auc


@pytest.fixture(scope="module")
def churn():
    return fitted_churn()


@pytest.fixture(scope="module")
def snapshot():
    return small().cache.features(AS_OF)


# ---------------------------------------------------------------------------------------------- time layout
def test_plan_validation_is_the_latest_complete_window():
    plan = plan_cutoffs("2025-07-01", 90, n_cutoffs=3, step_days=30)
    assert plan.validation == date(2025, 4, 2)  # labels [2025-04-02, 2025-07-01): the last full window
    assert plan.train == [plan.validation - timedelta(days=d) for d in (150, 120, 90)]
    # no training label window reaches the validation window; the refit ends at as_of - H
    assert all(c + timedelta(days=90) <= plan.validation for c in plan.train)
    assert plan.refit[-1] == plan.validation and len(plan.refit) == 3
    assert plan.to_params()["cutoffs"] == "2024-11-03,2024-12-03,2025-01-02"


def test_plan_rejects_short_history_with_the_dates():
    with pytest.raises(ValueError, match="not enough history.*120 days of data since 2025-03-03, 150 needed"):
        plan_cutoffs("2025-07-01", 90, data_start="2025-03-03")
    # cutoffs with less than 60 days of history are dropped, the rest kept
    plan = plan_cutoffs("2025-07-01", 90, n_cutoffs=6, data_start="2024-06-01")
    assert plan.train and min(plan.train) >= date(2024, 7, 31)


def test_scaled_cutoffs_keep_rows_near_the_budget():
    assert scaled_cutoffs(2_000, 8, max_rows=600_000) == 8
    assert scaled_cutoffs(250_000, 8, max_rows=600_000) == 2
    assert scaled_cutoffs(900_000, 8, max_rows=600_000) == 1
    assert scaled_cutoffs(900_000, 8, max_rows=None) == 8


# ---------------------------------------------------------------------------------------------- derived inputs
def test_derived_features_from_a_snapshot(snapshot):
    d = derive_features(snapshot)
    since = [c for c in snapshot.columns if c.startswith("days_since_")]
    expected = snapshot[["recency_days", *since]].min(axis=1)
    pd.testing.assert_series_equal(d["days_since_activity"], expected, check_names=False)
    buyers = d[d["orders"] >= 1]
    np.testing.assert_allclose(buyers["order_rate"], buyers["orders"] / np.maximum(buyers["tenure_days"], 1))
    assert set(DERIVED_DOCS) <= set(d.columns)


def test_derived_features_without_events():
    frame = pd.DataFrame({"person_id": ["a", "b"], "orders": [2, 0], "recency_days": [10.0, np.nan],
                          "tenure_days": [40.0, np.nan], "ipi_mean": [30.0, np.nan]})
    d = derive_features(frame)
    assert d["days_since_activity"].tolist()[0] == 10.0 and np.isnan(d["days_since_activity"].iloc[1])
    assert d["recency_ratio"].iloc[0] == pytest.approx(10 / 30)
    assert "browse_30d" not in d and "days_since_browse" not in d


# ---------------------------------------------------------------------------------------------- model
def test_probabilities_and_sklearn_contract(churn, snapshot):
    model = churn.model
    buyers = snapshot[snapshot["orders"] >= 1]
    proba = model.predict_proba(buyers)
    assert proba.shape == (len(buyers), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(clone(model), "booster_")
    assert set(BTYD_COLUMNS) <= set(model.feature_names_) and model.uses_btyd_
    assert "churned" not in model.feature_names_ and "cutoff" not in model.feature_names_
    assert 0.75 < churn.metrics["auc"] < 1.0


def test_scoring_a_snapshot_sees_exactly_the_training_inputs(churn, snapshot):
    """A plain snapshot (BTYD and derived columns computed by the model) scores like a training frame."""
    cache = small().cache
    as_frame = cache.labelled([AS_OF], HORIZON)
    from_snapshot = churn.model.predict_frame(snapshot.set_index("person_id").loc[as_frame["person_id"]])
    np.testing.assert_array_equal(churn.model.predict_proba(as_frame)[:, 1],
                                  from_snapshot["churn_probability"].to_numpy())


def test_isotonic_calibration_is_cross_fitted_out_of_fold(churn):
    model = churn.model
    assert isinstance(model.calibrator_, IsotonicRegression)
    train = small().cache.labelled(model.train_cutoffs_, HORIZON)
    y = train["churned"].to_numpy(dtype=int)
    X = model._prepare(train)
    oof = model._out_of_fold(X, y, lambda n: clone(model.booster_).set_params(n_estimators=n))
    # out-of-fold scores rank the training rows worse than the in-sample ones: they are honest
    assert auc(y, oof) < auc(y, model._tree_proba(X))
    # isotonic regression preserves the mean of what it was fitted on: the training rows' churn rate
    assert model.calibrator_.predict(oof).mean() == pytest.approx(y.mean(), abs=1e-6)
    # without folds and without a slice nothing is calibrated
    bare = ChurnModel(HORIZON, calibration_folds=0, **FAST).fit(train, y, btyd=small().cache.btyd(AS_OF))
    assert bare.calibrator_ is None


def test_sigmoid_calibration(churn):
    cache = small().cache
    train = cache.labelled(churn.plan.train, HORIZON)
    m = ChurnModel(HORIZON, calibration="sigmoid", **FAST).fit(train, train["churned"], btyd=cache.btyd(AS_OF))
    p = m.predict_proba(churn.valid)[:, 1]
    assert p.min() > 0 and p.max() < 1
    assert abs(p.mean() - churn.valid["churned"].mean()) < 0.1


def test_reasons_are_the_largest_positive_contributions(churn, snapshot):
    buyers = snapshot[snapshot["orders"] >= 1].head(50)
    reasons = churn.model.reasons(buyers)
    assert len(reasons) == len(buyers)
    X = churn.model.model_frame(buyers)
    contrib = churn.model.booster_.predict(X, pred_contrib=True)[:, :-1]
    for i, row in enumerate(reasons):
        assert len(row) <= 3
        values = [r["contribution"] for r in row]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        positive = np.sort(contrib[i][contrib[i] > 0])[::-1][:3]
        np.testing.assert_allclose(values, np.round(positive, 4), atol=1e-4)
        for r in row:
            assert r["feature"] in churn.model.feature_names_ and r["description"]
    assert any(reasons)


def test_without_btyd_the_model_uses_no_btyd_inputs(churn, snapshot):
    cache = small().cache
    train = cache.labelled(churn.plan.train, HORIZON)
    m = ChurnModel(HORIZON, **FAST).fit(train, train["churned"])
    assert not m.uses_btyd_ and not set(BTYD_COLUMNS) & set(m.feature_names_) and m.calibrator_ is not None
    p = m.predict_frame(snapshot[snapshot["orders"] >= 1])["churn_probability"]
    assert p.between(0, 1).all()


def test_monotone_constraints_cover_recency_and_btyd():
    cols = ["recency_days", "days_since_view", "days_since_activity", "btyd_p_alive", "btyd_p_purchase",
            "orders", "recency", "r_score"]
    assert churn_monotone(cols) == [1, 1, 1, -1, -1, 0, -1, -1]


def test_bad_inputs_are_rejected(churn):
    train = churn.valid
    with pytest.raises(ValueError, match="calibration"):
        ChurnModel(calibration="platt").fit(train, train["churned"])
    with pytest.raises(ValueError, match="single class"):
        ChurnModel(**FAST).fit(train, np.ones(len(train)))
    with pytest.raises(ValueError, match="rows"):
        ChurnModel(**FAST).fit(train, train["churned"].iloc[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        ChurnModel(**FAST).fit(train.iloc[:0], [])


def test_feature_columns_drop_labels_and_ids(churn):
    cols = feature_columns(churn.valid)
    assert not {"person_id", "churned", "future_spend", "future_orders", "cutoff", "rfm_segment"} & set(cols)


# ---------------------------------------------------------------------------------------------- tree count
def _noisy_cutoffs(n_per_cutoff: int, n_cutoffs: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """One weak signal among 20 noise columns: 400 rounds of deep trees overfit it quickly."""
    rng = np.random.default_rng(seed)
    n = n_per_cutoff * n_cutoffs
    X = pd.DataFrame(rng.normal(size=(n, 20)), columns=[f"x{i}" for i in range(20)])
    X.insert(0, "cutoff", np.repeat(pd.date_range("2025-01-01", periods=n_cutoffs, freq="30D"), n_per_cutoff))
    y = (rng.random(n) < 1 / (1 + np.exp(-0.5 * X["x0"].to_numpy()))).astype(int)
    return X, y


def test_trees_are_chosen_on_the_latest_cutoff_when_rows_overfit():
    from lightgbm import LGBMClassifier

    from training.lgbm import trees_by_time

    X, y = _noisy_cutoffs(500, 3)
    cols = [c for c in X.columns if c != "cutoff"]

    def make(n):
        return LGBMClassifier(n_estimators=n, learning_rate=0.1, num_leaves=31, min_child_samples=5, n_jobs=1,
                              verbose=-1)

    chosen = trees_by_time(make, X, y, cols, 400)
    assert 10 <= chosen < 200
    assert trees_by_time(make, X, y, cols, 400) == chosen  # deterministic
    # one cutoff: nothing later to stop on; too many rows: the check is skipped
    one = X[X["cutoff"] == X["cutoff"].max()]
    assert trees_by_time(make, one, y[X["cutoff"] == X["cutoff"].max()], cols, 400) == 400
    assert trees_by_time(make, X, y, cols, 400, max_rows=1000) == 400


def test_churn_model_records_its_tree_count():
    X, y = _noisy_cutoffs(500, 3)
    Xc, yc = _noisy_cutoffs(300, 1, seed=1)
    kw = dict(n_estimators=400, num_leaves=31, min_child_samples=5, learning_rate=0.1)
    stopped = ChurnModel(**kw).fit(X, y, X_calib=Xc, y_calib=yc)
    full = ChurnModel(**kw, early_stopping=False).fit(X, y, X_calib=Xc, y_calib=yc)
    assert stopped.n_trees_ < 200 and full.n_trees_ == 400
    assert stopped.booster_.n_estimators == stopped.n_trees_


# ---------------------------------------------------------------------------------------------- families
def test_btyd_family_ranks_exactly_like_the_btyd_score(snapshot):
    from training.fitting import fit_churn
    from training.metrics import spearman

    fitted = fit_churn(small().cache, AS_OF, horizon_days=HORIZON, n_cutoffs=1, family="btyd", **FAST)
    model = fitted.model
    assert model.family_ == "btyd" and model.selection_ == {}
    buyers = snapshot[snapshot["orders"] > 0].head(400)
    p = model.predict_frame(buyers)["churn_probability"].to_numpy()
    X = model._prepare(buyers)
    btyd = 1 - X["btyd_p_purchase"].to_numpy(dtype=float)
    assert spearman(btyd, p) > 0.9999  # calibrated, and the isotonic steps do not tie people BTYD ranks apart
    reasons = model.reasons(buyers)
    assert all(r == [] or [x["feature"] for x in r] == ["btyd_p_purchase"] for r in reasons)
    assert any(reasons)


def test_auto_family_keeps_whichever_ranks_the_validation_window_better():
    fitted = fitted_churn()
    model = fitted.model
    assert set(model.selection_) == {"lgbm", "btyd"}
    best = max(model.selection_, key=lambda k: model.selection_[k]["auc"])
    assert model.family_ == best
    with pytest.raises(ValueError, match="family must be one of"):
        ChurnModel(family="forest").fit(fitted.valid, fitted.valid["churned"])


def test_isotonic_probabilities_keep_the_raw_ranking(churn, snapshot):
    buyers = snapshot[snapshot["orders"] > 0]
    raw = churn.model._raw_proba(churn.model._prepare(buyers))
    p = churn.model.predict_frame(buyers)["churn_probability"].to_numpy()
    iso = churn.model.calibrator_.predict(raw)
    assert np.abs(p - iso).max() < 1e-6  # still the calibrated level
    distinct = np.diff(np.sort(raw)) > 0
    assert np.all(np.diff(p[np.argsort(raw, kind="stable")])[distinct] > 0)  # no ties where raw differs
