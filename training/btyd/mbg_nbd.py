"""MBG/NBD (Batislam, Denizel and Filiztekin 2007): BG/NBD where the customer may also drop out at time 0."""

from __future__ import annotations

from typing import ClassVar

from training.btyd.bg_nbd import BGNBD

__all__ = ["MBGNBD"]


class MBGNBD(BGNBD):
    """MBG/NBD: BG/NBD's parameters and objective with the dropout terms shifted by one order
    (``d(x) = x``, applied to one-time buyers too)."""

    name: ClassVar[str] = "mbg_nbd"
    modified: ClassVar[bool] = True

    def lifetimes_fitter(self, params: dict):
        """A lifetimes fitter carrying ``params`` (no data), used for its closed-form P(alive)."""
        from lifetimes import ModifiedBetaGeoFitter

        return self._with_params(ModifiedBetaGeoFitter(), params)
