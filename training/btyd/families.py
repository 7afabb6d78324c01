"""The registry of transaction-model families: the one place that maps a model name to its implementation."""

from __future__ import annotations

from training.btyd.base import PurchaseFamily
from training.btyd.bg_nbd import BGNBD
from training.btyd.mbg_nbd import MBGNBD
from training.btyd.pareto_nbd import ParetoNBD

__all__ = ["FAMILIES", "MODEL_PARAMS", "SHAPE_PARAMS", "check_fit", "get_family"]

#: Model name (``BTYDModel.chain`` entries, ``model_name_``) -> family class.
FAMILIES: dict[str, type[PurchaseFamily]] = {cls.name: cls for cls in (BGNBD, MBGNBD, ParetoNBD)}
#: Natural parameter names per model.
MODEL_PARAMS: dict[str, tuple[str, ...]] = {name: cls.params for name, cls in FAMILIES.items()}
#: Shape parameters checked against ``min_param`` (scale parameters ``alpha``/``beta`` only need to be finite).
SHAPE_PARAMS: dict[str, tuple[str, ...]] = {name: cls.shape_params for name, cls in FAMILIES.items()}


def get_family(model: str) -> PurchaseFamily:
    """The family registered as ``model``.

    Raises
    ------
    ValueError
        When ``model`` is not registered.
    """
    try:
        return FAMILIES[model]()
    except KeyError:
        raise ValueError(f"unknown BTYD model {model!r}; known: {sorted(FAMILIES)}") from None


def check_fit(model: str, params: dict, x, rec, T, w, *, min_param: float = 1e-3,
              horizon_days: float = 365.0, max_rate_ratio: float = 10.0) -> list[str]:
    """Reasons why a fitted transaction model is degenerate (empty list when it looks sane).

    Parameters
    ----------
    model : {"bg_nbd", "mbg_nbd", "pareto_nbd"}
    params : dict
        Natural parameters in the data's time unit.
    x, rec, T, w : numpy.ndarray
        Training rows (unique rows and their weights).
    min_param : float
        Shape parameters (``r, a, b`` or ``r, s``) below this are "at the bound": the likelihood ran off to
        the boundary (e.g. BG/NBD's ``a, b -> 0``) and the predictions are unreliable.
    horizon_days : float
        Horizon of the prediction checks.
    max_rate_ratio : float
        Predictions are "absurd" when the mean expected orders per customer over ``horizon_days`` exceed
        ``max_rate_ratio`` times the observed repeat-purchase rate (``sum(x) / sum(T)``) over the same horizon,
        or one customer's expected orders exceed ``max_rate_ratio`` times the fastest observed rate
        (``max((x + 1) / (T + 1))``) over the horizon.

    Returns
    -------
    list of str
    """
    return get_family(model).check_fit(params, x, rec, T, w, min_param=min_param, horizon_days=horizon_days,
                                       max_rate_ratio=max_rate_ratio)
