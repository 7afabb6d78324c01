"""Training frames: features at several rolling cutoffs, each with a complete label window after it.

The time layout for a model trained "as of" ``A`` with horizon ``H``::

    ... train cutoffs ...   calibration cutoff      validation cutoff        as_of
    c_k = c_cal - k*step    c_cal = c_val - H       c_val = A - H            A
    |-- features < c --|-- labels [c, c+H) --|

* validation is always the latest complete window: features before ``A - H``, labels in ``[A - H, A)``;
* the calibration slice (churn only) is the window before it, held out from tree fitting;
* training rows stack several earlier cutoffs so small brands still have enough rows.

No label window used for fitting reaches into the validation window, and nothing after ``A`` is read.
Rows of every cutoff carry the BTYD model outputs fitted at that cutoff (unsupervised, so no leakage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from features.dataset import Dataset
from features.labels import build_labels
from features.pipeline import build_features
from training.btyd import BTYDFitError, BTYDModel

log = logging.getLogger(__name__)

BTYD_COLUMNS = ("btyd_p_alive", "btyd_expected_orders", "btyd_p_purchase", "btyd_expected_spend")


def as_date(value) -> date:
    """Accept a date, a datetime/Timestamp or an ISO string."""
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        return value.date()
    if hasattr(value, "date") and callable(value.date):
        return value.date()
    return value


@dataclass
class CutoffPlan:
    """Which cutoffs feed training, calibration and validation for one ``as_of``."""

    as_of: date
    horizon_days: int
    train: list[date]
    validation: date
    calibration: date | None = None

    def to_params(self) -> dict[str, str]:
        out = {
            "cutoffs": ",".join(c.isoformat() for c in self.train),
            "validation_cutoff": self.validation.isoformat(),
        }
        if self.calibration is not None:
            out["calibration_cutoff"] = self.calibration.isoformat()
        return out


def plan_cutoffs(
    as_of,
    horizon_days: int,
    *,
    n_cutoffs: int = 4,
    step_days: int = 30,
    calibration: bool = True,
    data_start=None,
    min_history_days: int = 90,
) -> CutoffPlan:
    """Lay out rolling cutoffs before ``as_of`` (see the module docstring).

    Cutoffs with less than ``min_history_days`` of history after ``data_start`` are dropped; a plan without any
    training cutoff raises ``ValueError`` naming the dates, since the data is then too short for the horizon.
    """
    as_of = as_date(as_of)
    h = timedelta(days=horizon_days)
    validation = as_of - h
    if calibration:
        calib = validation - h
        newest_train = calib - timedelta(days=step_days)
    else:
        calib = None
        newest_train = validation - h
    train = [newest_train - timedelta(days=step_days * k) for k in range(n_cutoffs)]
    if data_start is not None:
        earliest = as_date(data_start) + timedelta(days=min_history_days)
        train = [c for c in train if c >= earliest]
        if calib is not None and calib < earliest:
            raise ValueError(
                f"not enough history for a {horizon_days}-day horizon as of {as_of}: the calibration cutoff {calib} "
                f"is earlier than {earliest} (data starts {as_date(data_start)}, {min_history_days} days of history "
                "needed); use a shorter --horizon or a later --as-of"
            )
    if not train:
        raise ValueError(
            f"not enough history for a {horizon_days}-day horizon as of {as_of}: no training cutoff at or after "
            f"{as_date(data_start) + timedelta(days=min_history_days) if data_start is not None else '?'}; "
            "use a shorter --horizon, fewer/shorter steps, or a later --as-of"
        )
    return CutoffPlan(as_of=as_of, horizon_days=horizon_days, train=sorted(train), validation=validation,
                      calibration=calib)


def add_btyd_features(features: pd.DataFrame, horizon_days: int, *, btyd: BTYDModel | None = None,
                      random_state: int = 0) -> tuple[pd.DataFrame, BTYDModel | None]:
    """Append the BTYD model outputs as features; fit a BTYD model on ``features`` when none is given.

    A BTYD fit failure is not fatal: the columns are filled with NaN (LightGBM handles missing values) and the
    failure is logged; the returned model is then ``None``.
    """
    out = features.copy()
    if btyd is None:
        try:
            btyd = BTYDModel(random_state=random_state).fit(features)
        except BTYDFitError as exc:
            log.warning("BTYD fit failed on %d rows (%s); BTYD features left empty", len(features), exc)
            btyd = None
    if btyd is None:
        for col in BTYD_COLUMNS:
            out[col] = float("nan")
        return out, None
    pred = btyd.predict_frame(features, horizon_days, random_state=random_state, with_intervals=False)
    out["btyd_p_alive"] = pred["p_alive"].to_numpy()
    out["btyd_expected_orders"] = pred["expected_orders"].to_numpy()
    out["btyd_p_purchase"] = pred["p_purchase"].to_numpy()
    out["btyd_expected_spend"] = pred["expected_spend"].to_numpy()
    return out, btyd


class FeatureCache:
    """Feature snapshots and labels of one dataset, computed once per cutoff and shared by every model."""

    def __init__(self, data: Dataset, identity: pd.DataFrame, *, random_state: int = 0):
        self.data = data
        self.identity = identity
        self._features: dict[date, pd.DataFrame] = {}
        self._labels: dict[tuple[date, int], pd.DataFrame] = {}
        self._btyd: dict[date, BTYDModel | None] = {}
        self.random_state = random_state

    def features(self, cutoff) -> pd.DataFrame:
        cutoff = as_date(cutoff)
        if cutoff not in self._features:
            self._features[cutoff] = build_features(self.data, cutoff, identity=self.identity)
        return self._features[cutoff]

    def labels(self, cutoff, horizon_days: int) -> pd.DataFrame:
        key = (as_date(cutoff), horizon_days)
        if key not in self._labels:
            self._labels[key] = build_labels(self.data, key[0], horizon_days, identity=self.identity)
        return self._labels[key]

    def btyd(self, cutoff) -> BTYDModel | None:
        """The BTYD model fitted on the buyers at ``cutoff`` (``None`` when every fit option failed).

        BTYD parameters do not depend on the horizon, so one fit per cutoff serves every model.
        """
        cutoff = as_date(cutoff)
        if cutoff not in self._btyd:
            feats = self.features(cutoff)
            _, self._btyd[cutoff] = add_btyd_features(feats[feats["orders"] >= 1], 1,
                                                      random_state=self.random_state)
        return self._btyd[cutoff]

    def labelled(self, cutoffs: list[date], horizon_days: int, *, random_state: int = 0,
                 progress=None) -> pd.DataFrame:
        """Buyers at every cutoff with their BTYD features (fitted per cutoff) and labels, stacked.

        Column ``cutoff`` tells the slices apart.
        """
        parts = []
        for cutoff in cutoffs:
            feats = self.features(cutoff)
            feats = feats[feats["orders"] >= 1]
            feats, _ = add_btyd_features(feats, horizon_days, btyd=self.btyd(cutoff), random_state=random_state)
            merged = feats.merge(self.labels(cutoff, horizon_days), on="person_id", how="inner",
                                 validate="one_to_one")
            merged.insert(1, "cutoff", pd.Timestamp(cutoff))
            parts.append(merged)
            if progress is not None:
                progress()
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
