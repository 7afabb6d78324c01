"""Backtest an uplift model on any past experiment: one row per person with features, group and outcome.

:func:`read_table` reads the export (CSV or Parquet), :func:`prepare_experiment` checks it and turns it into
features, a 0/1 treatment and a 0/1 outcome (every problem is an :class:`~features.errors.InputError` naming the
file, the column and the reason), :func:`backtest` fits :class:`~training.uplift.UpliftModel` on a seeded random
split and scores the held-out rows next to a random ranking. ``scrm uplift backtest`` is a thin wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import InputError
from training.uplift import LEARNER_NAMES, UpliftModel, bootstrap_ate, bootstrap_metrics

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet experiment export (by suffix: .csv, .parquet/.pq); ``InputError`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file", field="--table", file=path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # pandas' parser errors are ValueErrors; pyarrow's are too (ArrowInvalid)
        raise InputError(f"{path}: cannot be read as {suffix[1:]}: {exc}", field="--table", file=path) from None
    raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; give a .csv or .parquet file",
                     field="--table", file=path)


def _matches(values: pd.Series, wanted: str) -> pd.Series:
    """Rows whose value is ``wanted`` (given as text on the command line): numbers compare as numbers."""
    if pd.api.types.is_bool_dtype(values):
        low = wanted.strip().lower()
        if low in _TRUE or low in _FALSE:
            return values == (low in _TRUE)
    elif pd.api.types.is_numeric_dtype(values):
        try:
            return values == float(wanted)
        except ValueError:
            return pd.Series(False, index=values.index)
    return values.astype("string").str.strip() == wanted.strip()


def _binary_outcome(values: pd.Series, column: str, file: str) -> np.ndarray:
    """0/1 from a 0/1, boolean or yes/no/true/false column; ``InputError`` for anything else."""
    missing = int(values.isna().sum())
    if missing:
        raise InputError(f"{file}: outcome column {column!r} is empty in {missing:,} row(s); give every person "
                         "an outcome (0 when they did not convert)", field=column, file=file, rows=missing)
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=float)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=float)
        if np.isin(numbers, (0.0, 1.0)).all():
            return numbers
        distinct = np.unique(numbers)
        raise InputError(f"{file}: outcome column {column!r} is not binary ({len(distinct):,} distinct values, "
                         f"e.g. {', '.join(f'{v:g}' for v in distinct[:5])}); uplift needs a 0/1 outcome such as "
                         "'converted' (turn spend into spend > 0 first)", field=column, file=file)
    text = values.astype("string").str.strip().str.lower()
    known = text.isin(_TRUE | _FALSE)
    if not known.all():
        examples = ", ".join(repr(v) for v in text[~known].unique()[:5])
        raise InputError(f"{file}: outcome column {column!r} has values that are not 0/1, true/false or yes/no "
                         f"in {int((~known).sum()):,} row(s), e.g. {examples}", field=column, file=file,
                         rows=int((~known).sum()))
    return text.isin(_TRUE).to_numpy(dtype=float)


@dataclass
class Experiment:
    """A checked experiment: features, treatment (1 treated, 0 control) and outcome (0/1), one row per person."""

    X: pd.DataFrame
    treatment: np.ndarray
    y: np.ndarray
    treatment_values: list[str]
    dropped_columns: list[str] = field(default_factory=list)
    excluded_rows: int = 0


def prepare_experiment(frame: pd.DataFrame, *, treatment_col: str, control_value: str, outcome_col: str,
                       feature_cols: list[str] | None = None, treatment_value: str | None = None,
                       file: str | Path = "table") -> Experiment:
    """Check an experiment export and split it into features, treatment and outcome.

    Every group other than ``control_value`` is pooled as treated unless ``treatment_value`` names one (then the
    other groups' rows are left out). Default features: every other column except text columns that are
    (almost) unique per row — identifiers carry no signal and would only be memorised.
    """
    file = str(file)
    for option, col in (("--treatment-col", treatment_col), ("--outcome-col", outcome_col)):
        if col not in frame.columns:
            raise InputError(f"{file}: no column {col!r} ({option}); columns: {', '.join(map(str, frame.columns))}",
                             field=col, file=file)
    if treatment_col == outcome_col:
        raise InputError(f"{file}: --treatment-col and --outcome-col are both {treatment_col!r}",
                         field=treatment_col, file=file)
    groups = frame[treatment_col]
    no_group = int(groups.isna().sum())
    if no_group:
        raise InputError(f"{file}: treatment column {treatment_col!r} is empty in {no_group:,} row(s); every "
                         "person must be in a group", field=treatment_col, file=file, rows=no_group)
    control = _matches(groups, control_value).to_numpy()
    seen = ", ".join(map(str, groups.astype("string").unique()[:10]))
    if not control.any():
        raise InputError(f"{file}: no control rows: no {treatment_col!r} value equals {control_value!r} "
                         f"(--control-value); values: {seen}", field=treatment_col, file=file)
    treated = _matches(groups, treatment_value).to_numpy() if treatment_value is not None else ~control
    if (treated & control).any():
        raise InputError(f"{file}: --treatment-value {treatment_value!r} names the control group "
                         f"(--control-value {control_value!r})", field=treatment_col, file=file)
    if not treated.any():
        what = f"equals {treatment_value!r} (--treatment-value)" if treatment_value is not None else \
            f"differs from the control value {control_value!r}"
        raise InputError(f"{file}: no treated rows: no {treatment_col!r} value {what}; values: {seen}",
                         field=treatment_col, file=file)
    keep = control | treated
    rows = frame.loc[keep]
    y = _binary_outcome(rows[outcome_col], outcome_col, file)

    dropped: list[str] = []
    if feature_cols is None:
        candidates = [c for c in frame.columns if c not in (treatment_col, outcome_col)]
        feature_cols = []
        for col in candidates:
            values = rows[col]
            textual = not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))
            if textual and len(values) > 20 and values.nunique() > 0.5 * len(values):
                dropped.append(col)
            else:
                feature_cols.append(col)
    else:
        unknown = [c for c in feature_cols if c not in frame.columns]
        if unknown:
            raise InputError(f"{file}: no feature column(s) {', '.join(map(repr, unknown))} (--feature-cols); "
                             f"columns: {', '.join(map(str, frame.columns))}", field=unknown[0], file=file)
        clash = [c for c in feature_cols if c in (treatment_col, outcome_col)]
        if clash:
            raise InputError(f"{file}: {clash[0]!r} is the group or the outcome and cannot be a feature "
                             "(--feature-cols)", field=clash[0], file=file)
    if not feature_cols:
        raise InputError(f"{file}: no feature columns left; name them with --feature-cols", field="--feature-cols",
                         file=file)
    values = sorted(map(str, groups[treated].astype("string").unique()))
    return Experiment(X=rows[feature_cols].reset_index(drop=True), treatment=treated[keep].astype(float), y=y,
                      treatment_values=values, dropped_columns=dropped, excluded_rows=int((~keep).sum()))


@dataclass
class UpliftBacktest:
    """``result`` holds every figure with its interval; :meth:`to_json` is what ``scrm uplift backtest`` writes."""

    result: dict
    validation_qini: dict[str, float]
    n_train: int
    n_test: int
    experiment: Experiment

    def to_json(self) -> dict:
        """The documented JSON: ``n``, ``ate`` ``{"estimate", "ci"}``, then ``model`` and ``baselines.random`` as
        plain numbers (``qini``, ``auuc``, ``uplift_at`` {"0.1", "0.2", "0.3"}), and ``learner``.

        The model's and the baseline's intervals are printed in the table (and kept in :attr:`result`).
        """
        def estimates(block: dict) -> dict:
            return {"qini": block["qini"]["estimate"], "auuc": block["auuc"]["estimate"],
                    "uplift_at": {k: v["estimate"] for k, v in block["uplift_at"].items()}}

        r = self.result
        return {"n": r["n"], "ate": r["ate"], "model": estimates(r["model"]),
                "baselines": {"random": estimates(r["baselines"]["random"])}, "learner": r["learner"]}


def _split(t: np.ndarray, test_fraction: float, random_state: int) -> np.ndarray:
    """A seeded random test mask with ``test_fraction`` of the treated and of the control rows."""
    rng = np.random.default_rng(random_state)
    test = np.zeros(len(t), dtype=bool)
    for group in (0.0, 1.0):
        rows = np.flatnonzero(t == group)
        test[rng.choice(rows, size=int(round(len(rows) * test_fraction)), replace=False)] = True
    return test


def backtest(experiment: Experiment, *, test_fraction: float = 0.3, random_state: int = 0, n_boot: int = 200,
             learner: str = "auto", file: str | Path = "table") -> UpliftBacktest:
    """Fit on a random ``1 − test_fraction`` of the rows, score the rest; the overall effect uses every row.

    ``ate``: treated − control outcome rate of all rows with its bootstrap CI. ``model``: Qini, AUUC and uplift
    at 10/20/30% of the held-out rows ranked by predicted uplift; ``baselines.random``: the same for a seeded
    random ranking. Every metric is ``{"estimate", "ci": [lo, hi]}`` (95% seeded percentile bootstrap).
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction must be between 0 and 1, got {test_fraction}", field="--test-fraction")
    t, y = experiment.treatment, experiment.y
    test = _split(t, test_fraction, random_state)
    for name, rows in (("training", ~test), ("test", test)):
        for group, label in ((1.0, "treated"), (0.0, "control")):
            if not (t[rows] == group).any():
                raise InputError(f"{file}: the {name} split has no {label} rows ({int((t == 0).sum()):,} control "
                                 f"and {int((t == 1).sum()):,} treated in all); the experiment is too small to "
                                 "backtest", field="--test-fraction", file=str(file))
    model = UpliftModel(learner, random_state=random_state).fit(experiment.X[~test], t[~test], y[~test])
    score = model.predict(experiment.X[test])
    random_score = np.random.default_rng(random_state + 1).random(int(test.sum()))
    result = {
        "n": len(t),
        "ate": bootstrap_ate(y, t, random_state=random_state),
        "model": bootstrap_metrics(y[test], t[test], score, n_boot=n_boot, random_state=random_state),
        "baselines": {"random": bootstrap_metrics(y[test], t[test], random_score, n_boot=n_boot,
                                                  random_state=random_state)},
        "learner": LEARNER_NAMES[model.learner_],
    }
    return UpliftBacktest(result=result, validation_qini=model.validation_qini_, n_train=int((~test).sum()),
                          n_test=int(test.sum()), experiment=experiment)
