"""Shared helpers of the tree models (churn and CLV): model inputs, subsampling and LightGBM settings.

:func:`prepare` adds the inputs the estimators compute themselves (BTYD outputs, derived activity columns) and
casts floats as the training frames do; :func:`feature_columns` lists the numeric model inputs;
:func:`trees_by_time` chooses the number of boosting rounds on the latest training cutoff (never at random).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pipeline import model_columns
from training.btyd import BTYDModel
from training.frames import (
    BTYD_COLUMNS,
    LABEL_COLUMNS,
    add_btyd_features,
    derive_features,
    latest_cutoff,
    to_float32,
)

#: Weight of the raw score added to isotonic probabilities so that people the model ranks apart stay apart.
TIE_BREAK = 1e-6


def feature_columns(frame: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Numeric model inputs of a features (+ labels) frame: the pipeline's model columns minus labels."""
    drop = {*LABEL_COLUMNS, "cutoff", *exclude}
    return [c for c in model_columns(frame) if c not in drop]


def prepare(features: pd.DataFrame, horizon_days: int, btyd: BTYDModel | None, *, random_state: int = 0,
            with_btyd: bool = True) -> pd.DataFrame:
    """A snapshot with the model inputs the estimators add: BTYD outputs (when missing) and derived columns.

    Float inputs are cast to float32 as in the training frames, so scoring sees the values training saw.

    BTYD columns already present (training frames carry the ones fitted at their own cutoff) are kept; missing
    ones are computed with ``btyd`` (NaN without a model: nothing is fitted on scoring data).
    """
    out = features
    if with_btyd and not all(c in out.columns for c in BTYD_COLUMNS):
        if btyd is None:
            out = out.assign(**{c: np.nan for c in BTYD_COLUMNS})
        else:
            out, _ = add_btyd_features(out, horizon_days, btyd=btyd, random_state=random_state)
    if not all(c in out.columns for c in ("days_since_activity", "order_rate")):
        out = derive_features(out)
    return to_float32(out)


def subsample(n: int, max_rows: int | None, random_state: int) -> np.ndarray | None:
    """Row positions of a seeded uniform subsample of ``max_rows`` out of ``n`` (None: keep every row)."""
    if max_rows is None or n <= max_rows:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def lgbm_settings(estimator) -> dict:
    """The LightGBM keyword arguments every tree model of ``estimator`` shares (its stored hyper-parameters)."""
    return {"learning_rate": estimator.learning_rate, "num_leaves": estimator.num_leaves,
            "min_child_samples": estimator.min_child_samples, "subsample": estimator.subsample, "subsample_freq": 1,
            "colsample_bytree": estimator.colsample_bytree, "random_state": estimator.random_state,
            "n_jobs": estimator.n_jobs, "verbose": -1}


def trees_by_time(make, X: pd.DataFrame, y: np.ndarray, columns: list[str], n_estimators: int, *,
                  patience: int = 30, max_rows: int | None = 300_000) -> int:
    """How many boosting rounds the training rows support, chosen on their latest cutoff (never at random).

    ``make(n)`` builds an unfitted LightGBM estimator with ``n`` rounds. With rows from two or more cutoffs
    (``X["cutoff"]``), the rows of the latest one are held out, the model is fitted on the earlier ones and
    stopped once the held-out loss has not improved for ``patience`` rounds; the best round count is scaled up
    to the whole training set and capped at ``n_estimators``. Small brands overfit 300 rounds (CDNOW's 2,357
    customers do); big ones rarely do, so above ``max_rows`` rows the check is skipped to save a fit.
    """
    if max_rows is not None and len(X) > max_rows:
        return n_estimators
    held = latest_cutoff(X)
    if held.all() or held.sum() < 200 or len(np.unique(y[held])) < 2 or len(np.unique(y[~held])) < 2:
        return n_estimators
    from lightgbm import early_stopping

    probe = make(n_estimators).fit(X.loc[~held, columns], y[~held],
                                   eval_X=(X.loc[held, columns],), eval_y=(y[held],),
                                   callbacks=[early_stopping(patience, first_metric_only=True, verbose=False)])
    best = int(probe.best_iteration_ or n_estimators)
    return int(min(n_estimators, max(10, round(best * len(X) / (~held).sum()))))
