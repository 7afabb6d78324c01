"""The family registry: names, parameters, dispatch, and pickles that name the old module path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from training.btyd import (
    FAMILIES,
    MODEL_PARAMS,
    SHAPE_PARAMS,
    BTYDModel,
    PurchaseFamily,
    check_fit,
    get_family,
)
from training.btyd.bg_nbd import BGNBD
from training.btyd.mbg_nbd import MBGNBD
from training.btyd.pareto_nbd import ParetoNBD


def test_registry_names_every_family_once_with_its_parameters():
    assert FAMILIES == {"bg_nbd": BGNBD, "mbg_nbd": MBGNBD, "pareto_nbd": ParetoNBD}
    assert MODEL_PARAMS == {"bg_nbd": ("r", "alpha", "a", "b"), "mbg_nbd": ("r", "alpha", "a", "b"),
                            "pareto_nbd": ("r", "alpha", "s", "beta")}
    assert SHAPE_PARAMS == {"bg_nbd": ("r", "a", "b"), "mbg_nbd": ("r", "a", "b"), "pareto_nbd": ("r", "s")}
    for name in FAMILIES:
        family = get_family(name)
        assert isinstance(family, PurchaseFamily) and family.name == name
        assert set(family.scale_params) <= set(family.params) and set(family.shape_params) <= set(family.params)


def test_unknown_model_names_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown BTYD model 'nbd'; known: \['bg_nbd', 'mbg_nbd', 'pareto_nbd'\]"):
        get_family("nbd")
    with pytest.raises(ValueError, match=r"chain must list \(model, penalizer\) with model in .*got \['nbd'\]"):
        BTYDModel(chain=[("nbd", 0.0)]).fit(None)


def test_natural_params_undo_the_time_scale_of_scale_parameters_only():
    theta = np.log([0.5, 0.02, 0.7, 0.04])
    bg = get_family("bg_nbd").natural_params(theta, 1 / 200)
    pareto = get_family("pareto_nbd").natural_params(theta, 1 / 200)
    assert bg == pytest.approx({"r": 0.5, "alpha": 4.0, "a": 0.7, "b": 0.04})
    assert pareto == pytest.approx({"r": 0.5, "alpha": 4.0, "s": 0.7, "beta": 8.0})


def test_check_fit_dispatches_to_the_family(cdnow_model, cdnow):
    x, rec, T = (cdnow[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    w = np.ones(len(x))
    assert check_fit("bg_nbd", cdnow_model.params_, x, rec, T, w) == []
    at_bound = dict(cdnow_model.params_, a=1e-6)
    assert check_fit("bg_nbd", at_bound, x, rec, T, w)[0].startswith("parameters at the bound: a=1e-06")
    assert check_fit("bg_nbd", dict(cdnow_model.params_, b=np.nan), x, rec, T, w)[0].startswith("non-finite")


def test_pickles_naming_the_former_module_path_still_load(synth, synth_model):
    """Models pickled before the split name ``training.btyd.BTYDModel``; the package re-exports it."""
    assert BTYDModel.__module__ == "training.btyd.model"
    blob = pickle.dumps(synth_model, protocol=2)  # no framing: the class path can be rewritten in place
    old_path = blob.replace(b"ctraining.btyd.model\nBTYDModel\n", b"ctraining.btyd\nBTYDModel\n")
    assert old_path != blob
    restored = pickle.loads(old_path)
    np.testing.assert_array_equal(restored.expected_spend(synth, 90), synth_model.expected_spend(synth, 90))
