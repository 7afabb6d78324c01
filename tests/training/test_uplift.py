"""Uplift: the metrics on hand-computed examples, the meta-learners, the experiment checks and `scrm uplift backtest`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner
from uplift_data import experiment_table

from features.errors import InputError
from training.cli import app
from training.uplift import (
    ENGAGEMENT_FEATURE,
    UpliftModel,
    bootstrap_ate,
    bootstrap_metrics,
    qini_auc,
    qini_curve,
    uplift_at,
    uplift_auc,
    uplift_curve,
)
from training.uplift_backtest import backtest, prepare_experiment, read_table

runner = CliRunner()

# Four people ranked by score: a treated responder, a treated non-responder, a control responder, a control
# non-responder. Worked by hand below; scikit-uplift 0.5.1 gives the same numbers (checked once, not a dependency).
Y, T, S = [1, 0, 1, 0], [1, 1, 0, 0], [4, 3, 2, 1]


def test_qini_on_a_hand_computed_example():
    # Q(k) = Yt − Yc·Nt/Nc: k=1: 1; k=2: 1; k=3: 1 − 1·2/1 = −1; k=4: 1 − 1·2/2 = 0.
    x, q = qini_curve(Y, T, S)
    assert x.tolist() == [0, 1, 2, 3, 4] and q.tolist() == [0, 1, 1, -1, 0]
    # Area 1 (trapezoids .5 + 1 + 0 − .5); random line to (4, 0): 0; perfect score y·t − y·(1−t) = [1, 0, −1, 0]
    # ranks the two 0s together: curve (0,0) (1,1) (3,1) (4,0), area 3 → 1/3.
    assert qini_auc(Y, T, S) == pytest.approx(1 / 3)
    assert qini_auc(Y, T, [1, 0, -1, 0]) == pytest.approx(1.0)


def test_auuc_and_uplift_at_on_a_hand_computed_example():
    # U(k) = (Yt/Nt − Yc/Nc)·k: 1, 1, −1.5, 0 → area .5; perfect (2·[y = t] + t: scores 3, 1, 0, 2) → area 4.5.
    x, u = uplift_curve(Y, T, S)
    assert u.tolist() == [0, 1, 1, -1.5, 0]
    assert uplift_auc(Y, T, S) == pytest.approx(0.5 / 4.5)
    # Top 3 of 4: treated rate 1/2, control rate 1/1.
    assert uplift_at(Y, T, S, 0.75) == pytest.approx(-0.5)
    assert np.isnan(uplift_at(Y, T, S, 0.5))  # the top 2 holds no control person


def test_tied_scores_are_targeted_together():
    # All tied: the curve has only its end point, so the order of the input rows cannot matter.
    assert qini_curve(Y, T, [1, 1, 1, 1])[1].tolist() == [0, 0]
    assert qini_auc(Y, T, [1, 1, 1, 1]) == pytest.approx(qini_auc(Y[::-1], T[::-1], [1, 1, 1, 1]))


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, 3000)
    score = rng.normal(size=3000)
    y = (rng.random(3000) < 0.2 + 0.4 * t * (score > 0)).astype(int)
    one = bootstrap_metrics(y, t, score, n_boot=50, random_state=1)
    assert one == bootstrap_metrics(y, t, score, n_boot=50, random_state=1)
    assert one != bootstrap_metrics(y, t, score, n_boot=50, random_state=2)
    lo, hi = one["qini"]["ci"]
    assert lo < one["qini"]["estimate"] < hi and lo > 0  # the score is the true driver of the effect
    effect = bootstrap_ate(y, t, n_boot=100)
    assert effect["ci"][0] < effect["estimate"] < effect["ci"][1]
    assert effect["estimate"] == pytest.approx(y[t == 1].mean() - y[t == 0].mean())


@pytest.mark.parametrize("learner", ["t", "x", "tx", "l", "txl"])
def test_learners_rank_the_moved_members_first(learner):
    frame = experiment_table(4000, random_state=2)
    X = frame[["recency_days", "spend_12m", "channel", "tier"]]
    t = (frame["group"] != "control").to_numpy(int)
    model = UpliftModel(learner, random_state=0).fit(X, t, frame["converted"])
    uplift = model.predict(X)
    moved = ((frame["recency_days"] < 120) & (frame["channel"] == "app")).to_numpy()
    assert model.learner_ == learner and uplift.shape == (4000,)
    # a tenth of the people are moved; at least half of the top 400 are them
    assert moved[np.argsort(-uplift, kind="mergesort")[:400]].mean() > 0.5
    # the trees see the 20-point gap; the interaction logit shrinks its effect towards a constant by design
    gap = {"t": 0.1, "x": 0.1, "tx": 0.1, "txl": 0.05, "l": 0.0}[learner]
    assert uplift[moved].mean() > uplift[~moved].mean() + gap
    # Same seed, same predictions; an unseen category is missing, not an error.
    again = UpliftModel(learner, random_state=0).fit(X, t, frame["converted"]).predict(X)
    np.testing.assert_array_equal(uplift, again)
    assert np.isfinite(model.predict(X.assign(channel="kiosk"))).all()


def test_the_ensemble_averages_the_t_and_the_x_learner():
    frame = experiment_table(2000, random_state=6)
    X = frame[["recency_days", "channel"]]
    t = (frame["group"] != "control").to_numpy(int)
    tx = UpliftModel("tx", random_state=0).fit(X, t, frame["converted"])
    each = tx.predict_each(X)
    np.testing.assert_allclose(tx.predict(X), (each["t"] + each["x"]) / 2)
    # the same stages as the single learners fitted with the same seed
    np.testing.assert_allclose(each["t"], UpliftModel("t", random_state=0).fit(X, t, frame["converted"]).predict(X))
    np.testing.assert_allclose(each["x"], UpliftModel("x", random_state=0).fit(X, t, frame["converted"]).predict(X))
    assert set(UpliftModel("t", random_state=0).fit(X, t, frame["converted"]).predict_each(X)) == {"t"}
    with pytest.raises(InputError, match="learner must be one of auto, t, x, l, tx, txl"):
        UpliftModel("dr").fit(X, t, frame["converted"])


def test_the_campaign_ensemble_averages_tx_and_the_interaction_logit():
    frame = experiment_table(2000, random_state=6)
    X = frame[["recency_days", "channel", "tier"]]
    t = (frame["group"] != "control").to_numpy(int)
    txl = UpliftModel("txl", random_state=0).fit(X, t, frame["converted"])
    each = txl.predict_each(X)
    assert set(each) == {"t", "x", "tx", "l", "txl"}
    np.testing.assert_allclose(txl.predict(X), (each["tx"] + each["l"]) / 2)
    alone = UpliftModel("l", random_state=0).fit(X, t, frame["converted"])
    np.testing.assert_allclose(each["l"], alone.predict(X))
    assert set(alone.predict_each(X)) == {"l"}


def test_the_interaction_logit_shrinks_to_a_constant_effect_without_heterogeneity():
    from training.uplift_logistic import InteractionLogit

    rng = np.random.default_rng(8)
    n = 6000
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(size=n),
                      "c": pd.Categorical(rng.choice(["u", "v"], n))})
    X.loc[rng.random(n) < 0.1, "b"] = np.nan  # gaps get an indicator, not an error
    t = (rng.random(n) < 0.8).astype(float)
    base = 1 / (1 + np.exp(-(-1.0 + 0.8 * X["a"].to_numpy())))
    y = (rng.random(n) < base + 0.05 * t).astype(float)  # the same +5 points for everyone
    uplift = InteractionLogit().fit(X, t, y).predict(X)
    assert np.isfinite(uplift).all()
    assert uplift.mean() == pytest.approx(0.05, abs=0.03)
    # the only variation left is the logistic scale of the baseline: no invented subgroup effect
    assert np.corrcoef(uplift, base * (1 - base))[0, 1] > 0.8
    # a constant outcome leaves nothing to learn: no effect, not an error
    assert (InteractionLogit().fit(X, t, np.ones(n)).predict(X) == 0).all()


def engagement_experiment(n: int = 8000, seed: int = 4):
    """Only people who engage with the message (likelier the higher ``a``) can be moved: +30 points for them."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.random(n), "b": rng.normal(size=n)})
    t = (rng.random(n) < 0.7).astype(float)
    would_engage = rng.random(n) < 0.05 + 0.5 * X["a"].to_numpy()
    engaged = (would_engage & (t == 1)).astype(float)  # the control gets no message: nobody to engage
    y = (rng.random(n) < 0.2 + 0.3 * engaged).astype(float)
    return X, t, y, engaged


def test_engagement_is_learnt_on_the_treated_and_becomes_an_input():
    X, t, y, engaged = engagement_experiment()
    model = UpliftModel("tx", random_state=0).fit(X, t, y, engaged=engaged)
    assert model.engagement_ is not None and model.feature_names_ == ["a", "b"]  # no engagement column needed
    propensity = model.engagement_.predict_proba(X)[:, 1]
    assert np.corrcoef(propensity, X["a"])[0, 1] > 0.9
    uplift = model.predict(X)
    assert np.isfinite(uplift).all() and np.corrcoef(uplift, X["a"])[0, 1] > 0.5
    # the training rows see the propensity out of fold, not the final model's in-sample fit
    # (on a fresh model with the same seed: the column _fit_engagement gives the learners while fitting)
    encoded = UpliftModel("tx", random_state=0)._fit_engagement(
        model._encoded(X).drop(columns=ENGAGEMENT_FEATURE), t, engaged)
    assert not np.allclose(encoded[ENGAGEMENT_FEATURE], propensity)
    assert np.corrcoef(encoded[ENGAGEMENT_FEATURE], propensity)[0, 1] > 0.9


def test_nothing_to_learn_from_engagement_leaves_the_model_as_without_it():
    X, t, y, _ = engagement_experiment(n=3000)
    plain = UpliftModel("t", random_state=0).fit(X, t, y).predict(X)
    nobody = UpliftModel("t", random_state=0).fit(X, t, y, engaged=np.zeros(len(X)))
    assert nobody.engagement_ is None
    np.testing.assert_array_equal(nobody.predict(X), plain)
    with pytest.raises(InputError, match="engaged: 0 or 1"):
        UpliftModel("t").fit(X, t, y, engaged=np.full(len(X), 2.0))
    with pytest.raises(ValueError, match="engaged"):
        UpliftModel("t").fit(X, t, y, engaged=np.zeros(5))
    with pytest.raises(InputError, match=ENGAGEMENT_FEATURE):
        UpliftModel("t").fit(X.assign(**{ENGAGEMENT_FEATURE: 1.0}), t, y, engaged=t)


def test_auto_chooses_a_learner_on_held_out_rows():
    frame = experiment_table(3000, random_state=4)
    X = frame[["recency_days", "channel"]]
    model = UpliftModel(random_state=0).fit(X, frame["group"] != "control", frame["converted"])
    assert set(model.validation_qini_) == {"t", "x"}
    assert model.learner_ == max(model.validation_qini_, key=model.validation_qini_.get)


def test_auto_falls_back_to_the_t_learner_on_a_tiny_experiment():
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0]})
    model = UpliftModel(random_state=0, min_child_samples=1).fit(X, [1, 0, 1, 1, 1], [1, 0, 0, 1, 1])
    assert model.learner_ == "t" and model.validation_qini_ == {}
    assert model.predict(X).shape == (5,)


def _metrics(block: dict) -> list[dict]:
    return [block["qini"], block["auuc"], *block["uplift_at"].values()]


def test_heterogeneous_effect_is_found_with_categorical_features():
    experiment = prepare_experiment(experiment_table(6000), treatment_col="group", control_value="control",
                                    outcome_col="converted")
    assert experiment.dropped_columns == ["customer_id"]  # an identifier is not a feature
    assert experiment.treatment_values == ["mail_a", "mail_b"]  # both mailings pooled against the control
    result = backtest(experiment, random_state=0).result
    assert set(result) == {"n", "ate", "model", "baselines", "learner"}
    assert set(result["model"]) == {"qini", "auuc", "uplift_at"} == set(result["baselines"]["random"])
    assert set(result["model"]["uplift_at"]) == {"0.1", "0.2", "0.3"}
    assert result["n"] == 6000 and result["learner"] in ("T-learner", "X-learner")
    assert result["model"]["uplift_at"]["0.3"]["estimate"] > result["ate"]["estimate"] > 0
    assert result["model"]["qini"]["ci"][0] > 0  # better than random, with confidence
    assert result["model"]["qini"]["estimate"] > result["baselines"]["random"]["qini"]["estimate"]


@pytest.mark.slow
def test_heterogeneous_effect_on_a_bigger_export():
    experiment = prepare_experiment(experiment_table(40_000, random_state=9), treatment_col="group",
                                    control_value="control", outcome_col="converted")
    result = backtest(experiment, random_state=3).result
    top30 = result["model"]["uplift_at"]["0.3"]
    assert top30["ci"][0] > result["ate"]["ci"][1]  # the intervals do not even overlap
    assert result["model"]["qini"]["ci"][0] > result["baselines"]["random"]["qini"]["ci"][1]


@pytest.mark.parametrize("learner", ["t", "x"])
def test_no_effect_is_not_claimed(learner):
    experiment = prepare_experiment(experiment_table(6000, effect=False, random_state=5), treatment_col="group",
                                    control_value="control", outcome_col="converted")
    result = backtest(experiment, random_state=0, learner=learner).result
    assert result["learner"] == f"{learner.upper()}-learner"
    for metric in [result["ate"], *_metrics(result["model"]), *_metrics(result["baselines"]["random"])]:
        lo, hi = metric["ci"]
        assert lo <= 0 <= hi, metric


def test_treatment_value_compares_one_group():
    frame = experiment_table(1500)
    experiment = prepare_experiment(frame, treatment_col="group", control_value="control", outcome_col="converted",
                                    treatment_value="mail_b", feature_cols=["recency_days", "tier"])
    assert experiment.treatment_values == ["mail_b"] and list(experiment.X.columns) == ["recency_days", "tier"]
    assert experiment.excluded_rows == int((frame["group"] == "mail_a").sum())
    assert len(experiment.y) == int(frame["group"].isin(["control", "mail_b"]).sum())


def test_numeric_groups_and_text_outcomes_are_understood():
    frame = experiment_table(300).assign(group=lambda f: (f["group"] != "control").astype(int),
                                         converted=lambda f: f["converted"].map({1: "Yes", 0: "no"}))
    experiment = prepare_experiment(frame, treatment_col="group", control_value="0", outcome_col="converted")
    np.testing.assert_array_equal(experiment.treatment, frame["group"].to_numpy(float))
    np.testing.assert_array_equal(experiment.y, (frame["converted"] == "Yes").to_numpy(float))


@pytest.mark.parametrize(("change", "kwargs", "message"), [
    ({}, {"treatment_col": "arm"}, "no column 'arm' (--treatment-col)"),
    ({}, {"outcome_col": "bought"}, "no column 'bought' (--outcome-col)"),
    ({}, {"control_value": "holdout"}, "no control rows"),
    ({}, {"treatment_value": "mail_c"}, "no treated rows"),
    ({"group": "control"}, {}, "no treated rows"),
    ({"converted": 12.5}, {}, "outcome column 'converted' is not binary"),
    ({"converted": "maybe"}, {}, "not 0/1, true/false or yes/no in 6,000 row(s)"),
    ({"converted": np.nan}, {}, "outcome column 'converted' is empty in 6,000 row(s)"),
    ({"group": None}, {}, "treatment column 'group' is empty"),
    ({}, {"treatment_value": "control"}, "--treatment-value 'control' names the control group"),
    ({}, {"feature_cols": ["tier", "zip"]}, "no feature column(s) 'zip'"),
    ({}, {"feature_cols": ["tier", "converted"]}, "'converted' is the group or the outcome"),
])
def test_bad_experiments_name_file_column_and_reason(change, kwargs, message):
    frame = experiment_table(6000).assign(**change)
    args = {"treatment_col": "group", "control_value": "control", "outcome_col": "converted", **kwargs}
    with pytest.raises(InputError, match="^exp.csv: ") as info:
        prepare_experiment(frame, file="exp.csv", **args)
    assert message in str(info.value)
    assert info.value.file == "exp.csv"


def test_too_few_rows_for_a_split_is_an_input_error():
    frame = experiment_table(40)
    frame["group"] = ["control"] + ["mail_a"] * 39  # one control person cannot be in both splits
    experiment = prepare_experiment(frame, treatment_col="group", control_value="control", outcome_col="converted",
                                    feature_cols=["tier"])
    with pytest.raises(InputError, match="split has no control rows"):
        backtest(experiment, file="tiny.csv")


def test_read_table_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("a")
    with pytest.raises(InputError, match="unsupported file type '.xlsx'"):
        read_table(tmp_path / "x.xlsx")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="bad.parquet: cannot be read as parquet"):
        read_table(tmp_path / "bad.parquet")


def test_cli_writes_the_json_and_prints_a_table(tmp_path):
    table, out = tmp_path / "mail_test.parquet", tmp_path / "uplift.json"
    experiment_table(3000).to_parquet(table)
    result = runner.invoke(app, ["uplift", "backtest", "--table", str(table), "--treatment-col", "group",
                                 "--control-value", "control", "--outcome-col", "converted", "--feature-cols",
                                 "recency_days,channel,tier", "--treatment-value", "mail_a", "--json", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert list(written) == ["n", "ate", "model", "baselines", "learner"]
    assert set(written["ate"]) == {"estimate", "ci"} and len(written["ate"]["ci"]) == 2
    for block in (written["model"], written["baselines"]["random"]):
        assert list(block) == ["qini", "auuc", "uplift_at"] and list(block["uplift_at"]) == ["0.1", "0.2", "0.3"]
        assert all(isinstance(v, float) for v in [block["qini"], block["auuc"], *block["uplift_at"].values()])
    assert written["n"] == int(pd.read_parquet(table)["group"].isin(["control", "mail_a"]).sum())
    assert "uplift in top 30%" in result.output and "random ranking" in result.output


def test_cli_bad_input_exits_2(tmp_path):
    table = tmp_path / "mail_test.csv"
    experiment_table(200).to_csv(table, index=False)
    result = runner.invoke(app, ["uplift", "backtest", "--table", str(table), "--treatment-col", "arm",
                                 "--control-value", "control", "--outcome-col", "converted", "--json",
                                 str(tmp_path / "o.json")])
    assert result.exit_code == 2
    assert "no column 'arm'" in result.output and not (tmp_path / "o.json").exists()
    help_text = runner.invoke(app, ["uplift", "backtest", "--help"]).output
    assert "--control-value" in help_text and "random ranking" in help_text


def test_ridge_logit_reaches_sklearns_optimum_on_correlated_columns():
    from sklearn.linear_model import LogisticRegression

    from training.uplift_logistic import ridge_logit

    rng = np.random.default_rng(4)
    common = rng.normal(size=(3000, 1))
    X = common + 0.05 * rng.normal(size=(3000, 8))  # nearly collinear: the case the preconditioner is for
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X[:, 0] - 0.5)))).astype(float)
    ref = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(X, y)
    w = ridge_logit(np.hstack([X, np.ones((3000, 1))]), y, np.r_[np.full(8, 1 / 0.1), 0.0])
    np.testing.assert_allclose(w[:8], ref.coef_[0], atol=1e-4)
    assert w[8] == pytest.approx(ref.intercept_[0], abs=1e-4)
