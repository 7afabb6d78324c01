"""Weighted BTYD ("buy till you die") models: BG/NBD, Pareto/NBD, MBG/NBD and Gamma-Gamma.

The CLV family (a) of the project. :class:`BTYDModel` fits a transaction model and a Gamma-Gamma spend model
on the lifetimes summary columns ``frequency``, ``recency``, ``T`` and ``monetary_value`` (daily units, as
produced by ``features.rfm``), and predicts per customer for a horizon of ``t`` days: P(alive), expected
orders, P(no purchase), expected spend, spend quantiles and the next order date.

Fitting on unique rows
    The log-likelihood of every model here is a sum over customers of a function of ``(frequency, recency,
    T)`` (Gamma-Gamma: ``(frequency, monetary_value)``), so customers with identical rows can be collapsed
    into one row carrying a weight (their count) — lifetimes' ``fit(..., weights=...)`` trick. On daily data
    this shrinks a million customers to a few hundred thousand rows. The objectives are the ones lifetimes
    minimises (same log-parametrisation, same time scaling ``1 / max(T)``, same L2 penalizer on the scaled
    parameters, same mean-per-customer normalisation), but evaluated in vectorised numpy with analytic
    gradients, and with every term that depends on one column only (``gammaln(r + x)``, ``log(alpha + T)``,
    ``log(alpha + recency)``, ...) computed once per distinct value. The parameters equal lifetimes' raw fit
    (``tests/training/btyd/test_bg_nbd.py`` checks rtol 1e-4; ``benchmarks/bench_btyd_fit.py`` measures the speed).

Degenerate fits
    On real shop data the BG/NBD likelihood is often maximised at the boundary (``a, b -> 0``), Pareto/NBD can
    return NaN with a penalizer, and the Gamma-Gamma ``q`` can approach 1 (infinite mean spend). Each attempt
    is checked (:func:`check_fit`: finite parameters, shape parameters above ``min_param``, optimiser
    convergence, finite and sane predictions on the training rows) and, when it fails, the next option of
    ``chain`` is tried. Every attempt, with its reason and the warnings it raised, is recorded in
    ``fit_log_``; when every option fails :class:`BTYDFitError` is raised so callers can use the other
    (LightGBM) family.

Layout
    :mod:`~training.btyd.base` (what a transaction-model family provides, :class:`BTYDFitError`),
    :mod:`~training.btyd.bg_nbd`, :mod:`~training.btyd.mbg_nbd`, :mod:`~training.btyd.pareto_nbd` (the families),
    :mod:`~training.btyd.families` (the registry: model name -> family), :mod:`~training.btyd.gamma_gamma`
    (spend model), :mod:`~training.btyd.optim` (optimiser), :mod:`~training.btyd.rows` (input checks, row
    compression), :mod:`~training.btyd.simulate` (posterior simulation) and :mod:`~training.btyd.model`
    (:class:`BTYDModel`, the fallback chain).

References
----------
.. [1] Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD
   model", Marketing Science 24(2).
.. [2] Schmittlein, Morrison and Colombo (1987), "Counting your customers: who are they and what will they do
   next?", Management Science 33(1); Fader and Hardie (2005), note 009, "A note on deriving the Pareto/NBD model
   and related expressions".
.. [3] Batislam, Denizel and Filiztekin (2007), "Empirical validation and comparison of models for customer base
   analysis" (MBG/NBD).
.. [4] Fader and Hardie (2013), note 025, "The Gamma-Gamma model of monetary value".
"""

from training.btyd.base import BTYDFitError, PurchaseFamily
from training.btyd.families import FAMILIES, MODEL_PARAMS, SHAPE_PARAMS, check_fit, get_family
from training.btyd.gamma_gamma import GG_PARAMS
from training.btyd.model import DEFAULT_CHAIN, DEFAULT_GG_PENALIZERS, BTYDModel
from training.btyd.rows import RFM_COLUMNS, compress_rows

__all__ = [
    "BTYDFitError",
    "BTYDModel",
    "DEFAULT_CHAIN",
    "DEFAULT_GG_PENALIZERS",
    "FAMILIES",
    "GG_PARAMS",
    "MODEL_PARAMS",
    "PurchaseFamily",
    "RFM_COLUMNS",
    "SHAPE_PARAMS",
    "check_fit",
    "compress_rows",
    "get_family",
]
