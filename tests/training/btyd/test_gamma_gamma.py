"""Gamma-Gamma: objective and fit against lifetimes, missing repeat spend."""

from __future__ import annotations

import numpy as np
import pytest
from btyd_data import lifetimes_fit
from lifetimes import GammaGammaFitter

from training.btyd import BTYDFitError, BTYDModel, compress_rows
from training.btyd.gamma_gamma import GGObjective


def test_gamma_gamma_objective_matches_lifetimes_likelihood(synth):
    rep = synth[synth["frequency"] > 0]
    (gx, gm), gw, _ = compress_rows(rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy())
    gg = GGObjective(gx, gm, gw)
    theta = np.log([3.0, 2.5, 40.0])
    f, grad = gg(theta)
    ref = GammaGammaFitter._negative_log_likelihood(theta, rep["frequency"].to_numpy(), rep["monetary_value"].to_numpy(),
                                                    np.ones(len(rep)), 0.0)
    assert f == pytest.approx(ref, rel=1e-10)
    num = [(gg(theta + 1e-6 * e)[0] - gg(theta - 1e-6 * e)[0]) / 2e-6 for e in np.eye(3)]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_gamma_gamma_equals_lifetimes_raw_fit(synth, synth_model):
    rep = synth[synth["frequency"] > 0]
    raw = lifetimes_fit(GammaGammaFitter, rep["frequency"], rep["monetary_value"]).params_
    for k in raw.index:
        assert synth_model.gg_params_[k] == pytest.approx(raw[k], rel=1e-4), k


def test_spend_model_without_repeat_spend_raises_btyd_fit_error(synth):
    with pytest.raises(BTYDFitError, match="Gamma-Gamma needs repeat buyers"):
        BTYDModel().fit(synth.assign(monetary_value=0.0))
    assert BTYDModel(fit_spend=False).fit(synth.assign(monetary_value=0.0)).gg_params_ is None
