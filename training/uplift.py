"""Uplift: who does a campaign change? Meta-learners on LightGBM and the metrics that judge them.

:class:`UpliftModel` is sklearn-style — ``fit(X, treatment, y)`` on a randomised experiment (``treatment`` 1 for
the treated, 0 for the control; ``y`` a 0/1 outcome such as "bought within 30 days"), ``predict(X)`` the
per-person uplift ``P(y=1 | treated, x) − P(y=1 | control, x)``. Two meta-learners share their first stage:

* **T-learner**: one LightGBM classifier per group, ``μ1(x) − μ0(x)``.
* **X-learner** (Künzel et al. 2019): imputed effects ``y − μ0(x)`` on the treated and ``μ1(x) − y`` on the
  control, one LightGBM regressor per group on them, blended by the propensity ``e`` (the treated share: the
  experiment is randomised, so it is a constant): ``τ(x) = e·τ0(x) + (1 − e)·τ1(x)``.

An experiment may also record who *engaged* with the treatment (opened the message, clicked, claimed the coupon):
an outcome of the treated alone, far more frequent than a caused purchase. With ``fit(..., engaged=...)`` a
LightGBM classifier learns ``P(engaged | x)`` on the treated, and every learner gets it as one more input
(:data:`ENGAGEMENT_FEATURE`; out of fold on the training rows): a message works through being read, and that
propensity is learnt from many more events than the effect itself.

A third learner is not a tree model:

* **interaction logit** (``learner="l"``, Lo 2002; :mod:`training.uplift_logistic`): one penalised logistic
  regression on both groups, ``logit P = a(x) + t·b(x)`` with additive ``a`` and ``b``, the effect ``b`` shrunk
  hard towards a constant.

``learner="auto"`` fits the T- and the X-learner on a seeded split of the training rows and keeps the one with the
higher Qini on the held-out part, then refits it on all training rows. ``learner="tx"`` averages the two (one first
stage, both second stages): a variance reduction that needs no choice, which on the brand's campaigns ranked better
than either learner chosen on one validation campaign. ``learner="txl"`` averages that with the interaction logit:
the brand's campaign model, which ranked better than ``tx`` on every simulated evaluation campaign
(docs/decisions.md "Campaign uplift in `scrm backtest`").

Metrics (definitions as scikit-uplift 0.5.1, which is not a dependency: docs/decisions.md "Uplift"):
:func:`qini_auc` and :func:`uplift_auc` are the areas between the model's Qini / uplift curve and the random
line, divided by the same area of the perfect ranking (0 = random, 1 = perfect); :func:`uplift_at` is the
treatment − control outcome rate among the top ``k`` ranked by predicted uplift. :func:`bootstrap_metrics` adds
seeded percentile CIs by resampling the treated and the control rows separately.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lightgbm import LGBMClassifier, LGBMRegressor
from numpy.typing import ArrayLike

from features.errors import InputError
from training.uplift_logistic import InteractionLogit

#: The learners ``learner="auto"`` chooses between.
LEARNERS = ("t", "x")
#: The average of the T- and the X-learner's predictions (fitted on the same first stage).
ENSEMBLE = "tx"
#: The interaction logit (:mod:`training.uplift_logistic`).
LOGIT = "l"
#: The average of ``tx`` and the interaction logit: the brand's campaign model.
CAMPAIGN_ENSEMBLE = "txl"
LEARNER_NAMES = {"t": "T-learner", "x": "X-learner", ENSEMBLE: "T+X average", LOGIT: "interaction logit",
                 CAMPAIGN_ENSEMBLE: "T+X and interaction-logit average"}
#: The averages among the learners: each of two others' predictions.
_AVERAGES = {ENSEMBLE: ("t", "x"), CAMPAIGN_ENSEMBLE: (ENSEMBLE, LOGIT)}
#: Every value of ``UpliftModel(learner=...)``.
ALL_LEARNERS = ("auto", *LEARNERS, LOGIT, ENSEMBLE, CAMPAIGN_ENSEMBLE)
#: The fractions ``uplift_at`` reports (the JSON keys of ``scrm uplift backtest``).
TOP_FRACTIONS = (0.1, 0.2, 0.3)
#: The input column :meth:`UpliftModel.fit` adds when given ``engaged``: the predicted ``P(engaged | x)``.
ENGAGEMENT_FEATURE = "engagement_propensity"
#: Folds of the cross-fitted engagement propensity on the training rows.
ENGAGEMENT_FOLDS = 5
#: Trees of the engagement model: a classifier of a frequent outcome (a quarter of the treated open a message), so
#: the default trees, not the coarse ones a few points of uplift call for.
ENGAGEMENT_TREES = {"num_leaves": 15, "min_child_samples": 100}


# --- metrics ---------------------------------------------------------------------------------------------------

def _arrays(y: ArrayLike, treatment: ArrayLike, score: ArrayLike | None = None) -> tuple[np.ndarray, ...]:
    y_arr, t_arr = np.asarray(y, dtype=float), np.asarray(treatment, dtype=float)
    if y_arr.shape != t_arr.shape or y_arr.ndim != 1:
        raise ValueError(f"y and treatment must be 1-d of one length, got {y_arr.shape} and {t_arr.shape}")
    for name, arr in (("y", y_arr), ("treatment", t_arr)):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0/1")
    if score is None:
        return y_arr, t_arr
    s_arr = np.asarray(score, dtype=float)
    if s_arr.shape != y_arr.shape:
        raise ValueError(f"score must have the length of y ({len(y_arr)}), got {s_arr.shape}")
    return y_arr, t_arr, s_arr


def _ranked(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """``y, t, s`` sorted by ``s`` descending; ties keep their order (a stable sort)."""
    order = np.argsort(-s, kind="mergesort")
    return y[order], t[order], s[order]


def _cumulative(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """People targeted, treated, treated responders and control responders at each distinct-score threshold.

    The arrays must be ranked (``s`` non-increasing). A threshold sits after the last person of each run of equal
    scores: tied people are targeted together, so their order does not matter. The curves start at (0, 0).
    """
    last_of_ties = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    n_all = last_of_ties + 1.0
    n_t = np.cumsum(t)[last_of_ties]
    y_t = np.cumsum(y * t)[last_of_ties]
    y_c = np.cumsum(y * (1 - t))[last_of_ties]
    return (np.r_[0.0, n_all], np.r_[0.0, n_t], np.r_[0.0, y_t], np.r_[0.0, y_c])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def qini_curve(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: ``(k, Q(k))`` with ``Q(k) = Yt(k) − Yc(k)·Nt(k)/Nc(k)`` over the top ``k`` by ``score``.

    ``Yt``/``Yc`` count responders among the treated/control of the top ``k``, ``Nt``/``Nc`` their sizes:
    ``Q(k)`` is the incremental responders the top ``k`` would give if everyone in it were treated at the treated
    rate minus what the control rate predicts (Radcliffe 2007).
    """
    y_arr, t_arr, s_arr = _ranked(*_arrays(y, treatment, score))
    n_all, n_t, y_t, y_c = _cumulative(y_arr, t_arr, s_arr)
    return n_all, y_t - y_c * _ratio(n_t, n_all - n_t)


def uplift_curve(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: ``(k, U(k))`` with ``U(k) = (Yt(k)/Nt(k) − Yc(k)/Nc(k))·k`` (0 where a group is empty)."""
    y_arr, t_arr, s_arr = _ranked(*_arrays(y, treatment, score))
    n_all, n_t, y_t, y_c = _cumulative(y_arr, t_arr, s_arr)
    return n_all, (_ratio(y_t, n_t) - _ratio(y_c, n_all - n_t)) * n_all


def _normalised_area(curve, y: np.ndarray, t: np.ndarray, s: np.ndarray, perfect: np.ndarray) -> float:
    """(area under the curve − area under the random line) / (the same for the perfect score ``perfect``)."""
    x, q = curve(y, t, s)
    x_best, q_best = curve(y, t, perfect)
    random = x_best[-1] * q_best[-1] / 2.0  # the straight line from (0, 0) to the end point
    best = np.trapezoid(q_best, x_best) - random
    if best == 0:
        return float("nan")
    return float((np.trapezoid(q, x) - random) / best)


def qini_auc(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> float:
    """Normalised area under the Qini curve: 0 for a random ranking, 1 for the perfect one (can be negative).

    The perfect ranking puts treated responders first and control responders last (``y·t − y·(1−t)``), so it
    allows for people the campaign puts off. NaN when no ranking beats random (e.g. no responder at all).
    """
    y_arr, t_arr, s_arr = _arrays(y, treatment, score)
    return _normalised_area(qini_curve, y_arr, t_arr, s_arr, y_arr * t_arr - y_arr * (1 - t_arr))


def uplift_auc(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> float:
    """AUUC: the normalised area under the uplift curve (0 random, 1 perfect), as :func:`qini_auc`.

    The perfect ranking: treated responders and control non-responders first, then whichever of the control
    responders / treated non-responders is the larger group (scikit-uplift's ``perfect_uplift_curve``).
    """
    y_arr, t_arr, s_arr = _arrays(y, treatment, score)
    control_responders = np.sum((y_arr == 1) & (t_arr == 0))
    treated_non_responders = np.sum((y_arr == 0) & (t_arr == 1))
    summand = y_arr if control_responders > treated_non_responders else t_arr
    return _normalised_area(uplift_curve, y_arr, t_arr, s_arr, 2.0 * (y_arr == t_arr) + summand)


def uplift_at(y: ArrayLike, treatment: ArrayLike, score: ArrayLike, k: float = 0.3) -> float:
    """Treated − control outcome rate among the top ``int(k·n)`` people by ``score`` (ties in input order).

    NaN when the top ``k`` holds no treated or no control person.
    """
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    y_arr, t_arr, s_arr = _ranked(*_arrays(y, treatment, score))
    top = int(len(y_arr) * k)
    y_top, t_top = y_arr[:top], t_arr[:top]
    n_t = t_top.sum()
    n_c = top - n_t
    if n_t == 0 or n_c == 0:
        return float("nan")
    return float((y_top * t_top).sum() / n_t - (y_top * (1 - t_top)).sum() / n_c)


def uplift_metrics(y: ArrayLike, treatment: ArrayLike, score: ArrayLike) -> dict:
    """``{"qini", "auuc", "uplift_at": {"0.1", "0.2", "0.3"}}`` of one ranking."""
    return {"qini": qini_auc(y, treatment, score), "auuc": uplift_auc(y, treatment, score),
            "uplift_at": {str(k): uplift_at(y, treatment, score, k) for k in TOP_FRACTIONS}}


def ate(y: ArrayLike, treatment: ArrayLike) -> float:
    """Average treatment effect of a randomised experiment: treated − control outcome rate."""
    y_arr, t_arr = _arrays(y, treatment)
    return float(y_arr[t_arr == 1].mean() - y_arr[t_arr == 0].mean())


def _resamples(t: np.ndarray, n_boot: int, random_state: int):
    """Row positions of ``n_boot`` stratified bootstrap samples (treated and control resampled separately)."""
    rng = np.random.default_rng(random_state)
    treated, control = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    for _ in range(n_boot):
        yield np.sort(np.r_[rng.choice(treated, len(treated)), rng.choice(control, len(control))])


def _interval(values: list[float], estimate: float, level: float) -> dict:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if not np.isfinite(estimate) or len(arr) == 0:
        return {"estimate": None, "ci": [None, None]}
    lo, hi = np.quantile(arr, [(1 - level) / 2, (1 + level) / 2])
    return {"estimate": float(estimate), "ci": [float(lo), float(hi)]}


def bootstrap_ate(y: ArrayLike, treatment: ArrayLike, *, n_boot: int = 500, level: float = 0.95,
                  random_state: int = 0) -> dict:
    """``{"estimate", "ci": [lo, hi]}``: :func:`ate` with a seeded stratified percentile-bootstrap interval."""
    y_arr, t_arr = _arrays(y, treatment)
    boots = [ate(y_arr[i], t_arr[i]) for i in _resamples(t_arr, n_boot, random_state)]
    return _interval(boots, ate(y_arr, t_arr), level)


def bootstrap_metrics(y: ArrayLike, treatment: ArrayLike, score: ArrayLike, *, n_boot: int = 200,
                      level: float = 0.95, random_state: int = 0) -> dict:
    """:func:`uplift_metrics` with each value as ``{"estimate", "ci": [lo, hi]}`` (seeded percentile bootstrap).

    The scores are fixed (a model fitted elsewhere); the treated and the control rows are resampled separately,
    so every sample keeps the experiment's group sizes. A None estimate/CI: the metric is undefined (NaN).
    """
    y_arr, t_arr, s_arr = _arrays(y, treatment, score)
    estimate = uplift_metrics(y_arr, t_arr, s_arr)
    boots = [uplift_metrics(y_arr[i], t_arr[i], s_arr[i]) for i in _resamples(t_arr, n_boot, random_state)]
    return {
        "qini": _interval([b["qini"] for b in boots], estimate["qini"], level),
        "auuc": _interval([b["auuc"] for b in boots], estimate["auuc"], level),
        "uplift_at": {key: _interval([b["uplift_at"][key] for b in boots], value, level)
                      for key, value in estimate["uplift_at"].items()},
    }


# --- the model -------------------------------------------------------------------------------------------------

def encode_features(X: pd.DataFrame, categories: dict[str, list] | None = None) -> tuple[pd.DataFrame, dict]:
    """LightGBM inputs: numbers and booleans as floats, text/categorical columns as pandas categoricals.

    ``categories`` (from fitting) fixes each categorical column's levels, so a level unseen in training is
    missing rather than shifting the codes. Returns the frame and the categories used.
    """
    out: dict[str, pd.Series] = {}
    found: dict[str, list] = {} if categories is None else dict(categories)
    for col in X.columns:
        values = X[col]
        if categories is not None and col in categories or categories is None and not (
                pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            if pd.api.types.is_datetime64_any_dtype(values):
                raise InputError(f"feature column {col!r} holds dates; give a number (e.g. days since) instead",
                                 field=col)
            levels = found.get(col)
            if levels is None:
                levels = sorted(values.dropna().astype(str).unique())
                found[col] = levels
            text = values.astype("string")
            text = text.where(text.isin(levels))  # an unseen level is missing
            out[col] = pd.Series(pd.Categorical(text, categories=levels), index=X.index)
        else:
            out[col] = pd.to_numeric(values, errors="raise").astype(float)
    return pd.DataFrame(out, index=X.index), found


class UpliftModel:
    """Per-person uplift from a randomised experiment: a T- or X-learner on LightGBM, the interaction logit, or an
    average of them (see the module doc).

    Parameters
    ----------
    learner : {"auto", "t", "x", "l", "tx", "txl"}
        ``auto`` chooses between T and X on a held-out validation split of the training rows by Qini (the
        T-learner when the experiment is too small for both parts to hold treated and control rows); ``tx``
        averages the T- and the X-learner, ``txl`` that and the interaction logit ``l``.
    validation_fraction : float
        Share of the training rows held out to choose the learner (``auto`` only).
    n_estimators, learning_rate, num_leaves, min_child_samples : LightGBM settings of every tree model (uplift
        is a small difference of noisy rates: few leaves and big leaves keep it from fitting the noise).
    random_state : int
        Seeds the validation split and LightGBM.
    n_jobs : int
        LightGBM threads.

    Attributes (after ``fit``): ``learner_`` the chosen learner, ``validation_qini_`` the held-out Qini of each
    candidate (``auto`` only), ``propensity_`` the treated share, ``categories_`` the categorical levels,
    ``engagement_`` the engagement classifier (None without ``engaged``).
    """

    def __init__(self, learner: str = "auto", *, validation_fraction: float = 0.3, n_estimators: int = 150,
                 learning_rate: float = 0.05, num_leaves: int = 15, min_child_samples: int = 100,
                 random_state: int = 0, n_jobs: int = 1) -> None:
        self.learner = learner
        self.validation_fraction = validation_fraction
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _settings(self) -> dict:
        return {"n_estimators": self.n_estimators, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
                "random_state": self.random_state, "n_jobs": self.n_jobs, "verbose": -1}

    def _fit_stages(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, learners: tuple[str, ...]) -> dict:
        """The fitted models the ``learners`` need (the X-learner reuses the T-learner's classifiers)."""
        treated, control = t == 1, t == 0
        models = {"propensity": float(treated.mean())}
        if LOGIT in learners or CAMPAIGN_ENSEMBLE in learners:
            models["logit"] = InteractionLogit().fit(X, t, y)
            if learners == (LOGIT,):
                return models
        for group, rows in (("mu1", treated), ("mu0", control)):
            if len(np.unique(y[rows])) < 2:  # every person of the group did (or did not) respond
                models[group] = float(y[rows].mean())
            else:
                models[group] = LGBMClassifier(**self._settings()).fit(X[rows], y[rows])
        if any(name in learners for name in ("x", ENSEMBLE, CAMPAIGN_ENSEMBLE)):
            imputed_treated = y[treated] - self._proba(models["mu0"], X[treated])
            imputed_control = self._proba(models["mu1"], X[control]) - y[control]
            models["tau1"] = LGBMRegressor(**self._settings()).fit(X[treated], imputed_treated)
            models["tau0"] = LGBMRegressor(**self._settings()).fit(X[control], imputed_control)
        return models

    @staticmethod
    def _proba(model, X: pd.DataFrame) -> np.ndarray:
        if isinstance(model, float):
            return np.full(len(X), model)
        return model.predict_proba(X)[:, 1]

    def _predictions(self, models: dict, learners, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """The predictions of ``learners`` on ``X``, each model's computed once however many averages use it."""
        done: dict[str, np.ndarray] = {}

        def get(learner: str) -> np.ndarray:
            if learner not in done:
                if learner in _AVERAGES:
                    first, second = _AVERAGES[learner]
                    done[learner] = (get(first) + get(second)) / 2.0
                elif learner == "t":
                    done[learner] = self._proba(models["mu1"], X) - self._proba(models["mu0"], X)
                elif learner == LOGIT:
                    done[learner] = models["logit"].predict(X)
                else:
                    e = models["propensity"]
                    done[learner] = e * models["tau0"].predict(X) + (1 - e) * models["tau1"].predict(X)
            return done[learner]

        return {learner: get(learner) for learner in learners}

    def _predict_with(self, models: dict, learner: str, X: pd.DataFrame) -> np.ndarray:
        return self._predictions(models, (learner,), X)[learner]

    def fit(self, X: pd.DataFrame, treatment: ArrayLike, y: ArrayLike, *,
            engaged: ArrayLike | None = None) -> UpliftModel:
        """Fit on an experiment: features ``X``, ``treatment`` 0/1 per row, outcome ``y`` 0/1 per row.

        ``engaged`` (optional, 0/1 per row, read on the treated rows only): who engaged with the treatment; see the
        module doc. Ignored when no treated row, or every one, engaged.
        """
        if self.learner not in ALL_LEARNERS:
            raise InputError(f"learner must be one of {', '.join(ALL_LEARNERS)}, got {self.learner!r}",
                             field="learner")
        y_arr, t_arr = _arrays(y, treatment)
        if len(y_arr) != len(X):
            raise ValueError(f"X has {len(X)} rows, y {len(y_arr)}")
        if t_arr.min() == t_arr.max():
            raise InputError("the experiment needs treated and control rows", field="treatment")
        Xe, self.categories_ = encode_features(X)
        self.feature_names_ = list(X.columns)
        Xe = self._fit_engagement(Xe, t_arr, engaged)
        self.validation_qini_: dict[str, float] = {}
        chosen = self.learner
        if chosen == "auto":
            rng = np.random.default_rng(self.random_state)
            held_out = rng.random(len(Xe)) < self.validation_fraction
            fit_rows = ~held_out
            if any(len(np.unique(t_arr[rows])) < 2 for rows in (held_out, fit_rows)):
                chosen = "t"  # too few rows to hold a validation part out: the simpler learner
        if chosen == "auto":
            models = self._fit_stages(Xe[fit_rows], t_arr[fit_rows], y_arr[fit_rows], LEARNERS)
            for name in LEARNERS:
                score = self._predict_with(models, name, Xe[held_out])
                self.validation_qini_[name] = qini_auc(y_arr[held_out], t_arr[held_out], score)
            finite = {k: v for k, v in self.validation_qini_.items() if np.isfinite(v)}
            chosen = max(finite, key=finite.get) if finite else "t"
        self.learner_ = chosen
        self.models_ = self._fit_stages(Xe, t_arr, y_arr, (chosen,))
        self.propensity_ = self.models_["propensity"]
        return self

    def _fit_engagement(self, Xe: pd.DataFrame, t: np.ndarray, engaged: ArrayLike | None) -> pd.DataFrame:
        """``Xe`` with :data:`ENGAGEMENT_FEATURE` when ``engaged`` has something to learn from (sets
        ``engagement_``, the classifier on the treated rows, else None). On the training rows the column is out of
        fold (:data:`ENGAGEMENT_FOLDS` seeded folds), so the learners see there what they will see on new rows."""
        self.engagement_ = None
        if engaged is None:
            return Xe
        e = np.asarray(engaged, dtype=float)
        if len(e) != len(Xe):
            raise ValueError(f"X has {len(Xe)} rows, engaged {len(e)}")
        if not np.isin(e, (0.0, 1.0)).all():
            raise InputError("engaged: 0 or 1 per row (did the person engage with the treatment)", field="engaged")
        if ENGAGEMENT_FEATURE in Xe.columns:
            raise InputError(f"feature column {ENGAGEMENT_FEATURE!r} is the name of the engagement input",
                             field=ENGAGEMENT_FEATURE)
        treated = t == 1
        if len(np.unique(e[treated])) < 2:
            return Xe
        settings = {**self._settings(), **ENGAGEMENT_TREES}
        self.engagement_ = LGBMClassifier(**settings).fit(Xe[treated], e[treated])
        fold = np.random.default_rng(self.random_state).integers(0, ENGAGEMENT_FOLDS, len(Xe))
        column = np.empty(len(Xe))
        for f in range(ENGAGEMENT_FOLDS):
            rows, learn = fold == f, treated & (fold != f)
            if len(np.unique(e[learn])) == 2:
                column[rows] = LGBMClassifier(**settings).fit(Xe[learn], e[learn]).predict_proba(Xe[rows])[:, 1]
            else:  # the other folds' treated rows all alike (a tiny experiment): the treated rate
                column[rows] = e[treated].mean()
        return Xe.assign(**{ENGAGEMENT_FEATURE: column})

    def _encoded(self, X: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "models_"):
            raise RuntimeError("UpliftModel is not fitted; call fit first")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InputError(f"missing feature column(s): {', '.join(missing)}", field=missing[0])
        Xe = encode_features(X[self.feature_names_], self.categories_)[0]
        engagement = getattr(self, "engagement_", None)  # None also for models pickled before it existed
        if engagement is not None:
            Xe = Xe.assign(**{ENGAGEMENT_FEATURE: engagement.predict_proba(Xe)[:, 1]})
        return Xe

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Per-person uplift: the change in the outcome probability if treated rather than not."""
        return self._predict_with(self.models_, self.learner_, self._encoded(X))

    def predict_each(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """The predictions of every learner the fitted models allow: ``t`` with the T-learner's classifiers,
        ``x`` and ``tx`` with the X-learner's stages too (fitted as ``x``, ``tx`` or ``txl``), ``l`` with the
        interaction logit, ``txl`` with all of them."""
        Xe = self._encoded(X)
        names = [*(("t",) if "mu1" in self.models_ else ()), *(("x", ENSEMBLE) if "tau1" in self.models_ else ()),
                 *((LOGIT,) if "logit" in self.models_ else ())]
        if "tau1" in self.models_ and "logit" in self.models_:
            names.append(CAMPAIGN_ENSEMBLE)
        return self._predictions(self.models_, names, Xe)
