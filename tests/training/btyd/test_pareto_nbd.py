"""Pareto/NBD: objective and fit against lifetimes, predictions are probabilities."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from btyd_data import lifetimes_fit
from lifetimes import ParetoNBDFitter

from training.btyd import BTYDModel, compress_rows
from training.btyd.pareto_nbd import ParetoObjective


def test_pareto_objective_matches_lifetimes_likelihood(synth):
    x, rec, T = (synth[c].to_numpy() / (1 if c == "frequency" else synth["T"].max()) for c in ("frequency", "recency", "T"))
    (ux, ur, uT), w, _ = compress_rows(x, rec, T)
    par = ParetoObjective(ux, ur, uT, w)
    params = np.array([0.6, 0.05, 0.7, 0.08])
    ours = par.loglik_rows(params)
    theirs = ParetoNBDFitter._conditional_log_likelihood(params, ux, ur, uT)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)


def test_pareto_reaches_at_least_lifetimes_likelihood(cdnow):
    ours = BTYDModel(chain=[("pareto_nbd", 0.0)], fit_spend=False).fit(cdnow)
    theirs = lifetimes_fit(ParetoNBDFitter, cdnow["frequency"], cdnow["recency"], cdnow["T"],
                        initial_params=np.ones(4)).params_
    x, rec, T = cdnow["frequency"].to_numpy(), cdnow["recency"].to_numpy(), cdnow["T"].to_numpy()
    ll = lambda prm: ParetoNBDFitter._conditional_log_likelihood(prm, x, rec, T).sum()  # noqa: E731
    ours_ll = ll([ours.params_[k] for k in ("r", "alpha", "s", "beta")])
    assert ours_ll >= ll(theirs.to_numpy()) - 1e-6
    for k in theirs.index:  # lifetimes stops Nelder-Mead at tol 1e-4, so compare loosely
        assert ours.params_[k] == pytest.approx(theirs[k], rel=2e-2), k


def test_pareto_predictions_are_probabilities(cdnow):
    model = BTYDModel(chain=[("pareto_nbd", 0.0)]).fit(cdnow)
    ref = ParetoNBDFitter()
    ref.params_ = pd.Series(model.params_)
    x, rec, T = (cdnow[c].to_numpy() for c in ("frequency", "recency", "T"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [ref.conditional_probability_alive(x, rec, T),
                    ref.conditional_expected_number_of_purchases_up_to_time(39, x, rec, T),
                    ref.conditional_probability_of_n_purchases_up_to_time(0, 39, x, rec, T)]
    ours = [model.p_alive(cdnow), model.expected_orders(cdnow, 39), model.p_no_purchase(cdnow, 39)]
    for mine, theirs in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-8, atol=1e-12)
    pred = model.predict_frame(cdnow, 39, random_state=1, n_draws=200)
    assert pred["p_alive"].between(0, 1).all() and pred["p_purchase"].between(0, 1).all()
    assert (pred["expected_orders"] >= 0).all()
    assert (pred["p_purchase"] <= 1 - (1 - pred["p_alive"]) + 1e-9).all()
