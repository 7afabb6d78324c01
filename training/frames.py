"""Training frames: features at several rolling cutoffs, each with a complete label window after it.

The time layout for a model trained "as of" ``A`` with horizon ``H`` (:func:`plan_cutoffs`, the layout planner)::

    ... train cutoffs ...            validation cutoff        as_of
    c_k = A - 2H - k*step            c_val = A - H            A
    |-- features < c --|-- labels [c, c+H) --|
                         ... refit cutoffs: c_val - k*step ... c_val

* validation is always the latest complete window: features before ``A - H``, labels in ``[A - H, A)``;
* the candidate models (family, tree count) are fitted on training cutoffs whose label windows end on or before
  ``A - H``; churn calibration is cross-fitted out of fold on those rows (no reserved window), so the trees need
  ``2H + 60`` days of history (60: the least history a cutoff's features need);
* with ``H + 60`` to ``2H + 60`` days the BTYD family is used alone (it learns nothing from labels);
* once chosen, the model is refit on the cutoffs ending at ``A - H`` (``refit``), so it has seen the newest
  complete window;
* training rows stack several cutoffs so small brands still have enough rows; large brands need fewer
  (:func:`scaled_cutoffs` keeps the stacked rows near a budget).

No label window used for selection reaches into the validation window, and nothing after ``A`` is read.
Rows of every cutoff carry the BTYD model outputs fitted at that cutoff (unsupervised, so no leakage) and the
derived columns of :func:`derive_features`, which both models recompute from a plain feature snapshot at scoring
time, so training and scoring see identical inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from rich.console import Console

from features.backend import as_date, machine_memory_bytes
from features.config import FeatureConfig
from features.dataset import Dataset
from features.identity import resolve_identities
from features.labels import build_labels
from features.pipeline import build_features
from training.btyd import BTYDFitError, BTYDModel

log = logging.getLogger(__name__)

BTYD_COLUMNS = ("btyd_p_alive", "btyd_expected_orders", "btyd_p_purchase", "btyd_expected_spend")
LABEL_COLUMNS = ("churned", "future_spend", "future_orders")

#: Event types that show a person browsing (their absence after dropout is the simulator's and real shops'
#: clearest sign of a lapsed customer).
BROWSE_TYPES = ("view", "cart", "favorite", "search", "livestream_view", "store_visit")

DERIVED_DOCS = {
    "days_since_activity": "days since the last paid order or behaviour event of any kind",
    "days_since_browse": "days since the last view, cart, favourite, search, livestream view or store visit",
    "order_rate": "paid orders per day since the first paid order",
    "recency_ratio": "days since the last paid order divided by the person's average gap between purchase days",
    "gap_ratio": "days since the last activity divided by the person's average gap between purchase days",
    **{f"browse_{w}d": f"browsing events (views, carts, favourites, searches, livestreams, store visits) in the "
                       f"last {w} days" for w in (7, 30, 90)},
    **{f"events_{w}d": f"behaviour events of any kind in the last {w} days" for w in (7, 30, 90)},
}
BTYD_DOCS = {
    "btyd_p_alive": "probability the customer is still active (BTYD model)",
    "btyd_expected_orders": "orders the BTYD model expects in the horizon",
    "btyd_p_purchase": "probability of at least one order in the horizon (BTYD model)",
    "btyd_expected_spend": "spend the BTYD and Gamma-Gamma models expect in the horizon",
}



# ---------------------------------------------------------------------------------------------------- derived


def derive_features(features: pd.DataFrame) -> pd.DataFrame:
    """Add the columns of ``DERIVED_DOCS`` computed from a feature snapshot's own columns (a new frame).

    Only columns of ``features.pipeline.build_features`` are read, so a model can recompute them from any
    snapshot the service or ``scrm score`` hands it. Columns the snapshot lacks (no events, ...) are skipped;
    existing derived columns are recomputed.
    """
    out = features.copy()
    cols = set(out.columns)
    since = [c for c in out.columns if c.startswith("days_since_") and c not in DERIVED_DOCS]
    if "recency_days" in cols:
        out["days_since_activity"] = out[["recency_days", *since]].min(axis=1, skipna=True)
    browse = [f"days_since_{t}" for t in BROWSE_TYPES if f"days_since_{t}" in cols]
    if browse:
        out["days_since_browse"] = out[browse].min(axis=1, skipna=True)
    for w in (7, 30, 90):
        ev = [c for c in out.columns if c.startswith("ev_") and c.endswith(f"_{w}d")]
        if ev:
            out[f"events_{w}d"] = out[ev].sum(axis=1).astype("float64")
            br = [f"ev_{t}_{w}d" for t in BROWSE_TYPES if f"ev_{t}_{w}d" in cols]
            if br:
                out[f"browse_{w}d"] = out[br].sum(axis=1).astype("float64")
    if {"orders", "tenure_days"} <= cols:
        tenure = out["tenure_days"].to_numpy(dtype=float)
        out["order_rate"] = np.where(tenure >= 0, out["orders"].to_numpy(dtype=float) / np.maximum(tenure, 1.0),
                                     np.nan)
    if "ipi_mean" in cols:
        gap = out["ipi_mean"].to_numpy(dtype=float)
        gap = np.where(gap > 0, gap, np.nan)
        if "recency_days" in cols:
            out["recency_ratio"] = out["recency_days"].to_numpy(dtype=float) / gap
        if "days_since_activity" in out.columns:
            out["gap_ratio"] = out["days_since_activity"].to_numpy(dtype=float) / gap
    return out


def feature_docs() -> dict[str, str]:
    """Plain-words descriptions of every model input: pipeline features, derived columns and BTYD outputs."""
    from features.pipeline import FEATURE_DOCS

    return {**FEATURE_DOCS, **DERIVED_DOCS, **BTYD_DOCS}


# ---------------------------------------------------------------------------------------------------- cutoffs

#: Days of history a cutoff needs before it (its features look back this far at least).
MIN_CUTOFF_HISTORY_DAYS = 60
LAYOUTS = ("auto", "trees", "btyd")


class HistoryTooShort(ValueError):
    """Not enough history before ``as_of`` for a horizon (``required_days`` / ``history_days`` say how much)."""

    def __init__(self, message: str, *, horizon_days: int, history_days: int, required_days: int):
        super().__init__(message)
        self.horizon_days = horizon_days
        self.history_days = history_days
        self.required_days = required_days


def required_history(horizon_days: int, layout: str = "trees", *,
                     min_history_days: int = MIN_CUTOFF_HISTORY_DAYS) -> int:
    """Days of history before ``as_of`` a layout needs: ``2H + 60`` for the trees, ``H + 60`` for BTYD alone."""
    if layout not in ("trees", "btyd"):
        raise ValueError(f"layout must be 'trees' or 'btyd', got {layout!r}")
    return (2 if layout == "trees" else 1) * int(horizon_days) + int(min_history_days)


@dataclass
class CutoffPlan:
    """Which cutoffs feed selection, validation and the final refit for one ``as_of`` (see the module docstring).

    ``train`` are the cutoffs the candidate models are fitted on (their label windows end on or before the
    validation cutoff); ``refit`` the cutoffs the chosen model is fitted on again, the newest being
    ``validation`` (= ``as_of - H``), so the served model has seen the newest complete window. Calibration is
    cross-fitted out of fold on the training rows (no reserved window). ``layout`` is ``"trees"`` or ``"btyd"``
    (too little history for a training window before the validation window: the BTYD family alone) and
    ``reason`` says why, once.
    """

    as_of: date
    horizon_days: int
    train: list[date]
    validation: date
    refit: list[date] = field(default_factory=list)
    layout: str = "trees"
    reason: str = ""
    history_days: int | None = None
    min_history_days: int = MIN_CUTOFF_HISTORY_DAYS

    @property
    def required_days(self) -> int:
        """History the layout needs before ``as_of``."""
        return required_history(self.horizon_days, self.layout, min_history_days=self.min_history_days)

    def parts(self) -> dict[str, int]:
        """Days each part of the history takes, oldest first (they add up to the history used).

        ``feature_history``: before the oldest cutoff read (features only); ``training_windows``: from the oldest
        training cutoff to the validation cutoff (label windows of the candidate models; 0 with the BTYD layout);
        ``validation_window``: ``[as_of - H, as_of)``.
        """
        oldest = min([*self.train, *self.refit, self.validation])
        start = (self.as_of - timedelta(days=self.history_days)) if self.history_days is not None else oldest
        return {"feature_history": max(0, (oldest - start).days),
                "training_windows": (self.validation - min(self.train)).days if self.layout == "trees" else 0,
                "validation_window": self.horizon_days}

    def to_params(self) -> dict[str, str]:
        """MLflow params: cutoffs, the validation and refit cutoffs, the layout, the days per part and why."""
        out = {
            "cutoffs": ",".join(c.isoformat() for c in self.train),
            "validation_cutoff": self.validation.isoformat(),
            "refit_cutoffs": ",".join(c.isoformat() for c in self.refit),
            "calibration_rows": "out of fold on the training cutoffs",
            "layout": self.layout,
            "layout.reason": self.reason[:500],
            "layout.required_days": str(self.required_days),
        }
        if self.history_days is not None:
            out["layout.history_days"] = str(self.history_days)
        out.update({f"layout.{k}_days": str(v) for k, v in self.parts().items()})
        return out

    def describe(self) -> dict:
        """The layout for a JSON report: cutoffs, days per part and the reason."""
        return {"layout": self.layout, "reason": self.reason, "history_days": self.history_days,
                "required_days": self.required_days, "days": self.parts(),
                "train_cutoffs": [c.isoformat() for c in self.train], "validation_cutoff": self.validation.isoformat(),
                "refit_cutoffs": [c.isoformat() for c in self.refit]}

    @property
    def all_cutoffs(self) -> list[date]:
        """Every cutoff the plan reads, oldest first."""
        return sorted({*self.train, *self.refit, self.validation})


def plan_cutoffs(
    as_of,
    horizon_days: int,
    *,
    n_cutoffs: int = 4,
    step_days: int = 30,
    data_start=None,
    min_history_days: int = MIN_CUTOFF_HISTORY_DAYS,
    layout: str = "auto",
) -> CutoffPlan:
    """Lay out the cutoffs before ``as_of`` (see the module docstring): the layout planner.

    With ``H = horizon_days`` and ``m = min_history_days``:

    * history ``>= 2H + m``: ``"trees"`` — validation window ``[as_of - H, as_of)``, training cutoffs from
      ``as_of - 2H`` back in ``step_days`` steps (each with ``m`` days of history), refit cutoffs from
      ``as_of - H`` back;
    * ``H + m <=`` history ``< 2H + m``: ``"btyd"`` — no room for a training window before the validation
      window: the BTYD family alone (it learns nothing from labels), validated and calibrated on the last window;
    * shorter: :class:`HistoryTooShort` naming the days needed.

    Parameters
    ----------
    as_of : date-like
        The training date: no data on or after it is read.
    horizon_days : int
        Label window length.
    n_cutoffs : int
        Training cutoffs to stack, ``step_days`` apart (the refit stacks as many, ending at ``as_of - H``).
    step_days : int
        Days between cutoffs.
    data_start : date-like, optional
        First day of data; cutoffs with less than ``min_history_days`` of history are dropped.
    min_history_days : int
        History a cutoff needs.
    layout : {"auto", "trees", "btyd"}
        Force a layout ("auto": the trees when the history allows).
    """
    if horizon_days < 1 or n_cutoffs < 1 or step_days < 1:
        raise ValueError(f"horizon_days, n_cutoffs and step_days must be positive, got {horizon_days}, {n_cutoffs}, "
                         f"{step_days}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    as_of = as_date(as_of)
    h, step = timedelta(days=horizon_days), timedelta(days=step_days)
    validation = as_of - h
    train = [validation - h - step * k for k in range(n_cutoffs)]
    refit = [validation - step * k for k in range(n_cutoffs)]
    need_trees = required_history(horizon_days, "trees", min_history_days=min_history_days)
    need_btyd = required_history(horizon_days, "btyd", min_history_days=min_history_days)
    if data_start is None:
        chosen = "btyd" if layout == "btyd" else "trees"
        plan = CutoffPlan(as_of, horizon_days, sorted(train), validation, sorted(refit), chosen,
                          "data start not given: history assumed long enough", None, min_history_days)
        if chosen == "btyd":
            plan.train, plan.refit = [validation], [validation]
        return plan
    start = as_date(data_start)
    history = (as_of - start).days
    earliest = start + timedelta(days=min_history_days)
    trees_text = f"2 × {horizon_days} + {min_history_days} = {need_trees}"
    if layout in ("auto", "trees") and history >= need_trees:
        train = sorted(c for c in train if c >= earliest)
        refit = sorted(c for c in refit if c >= earliest)
        reason = (f"{history} days of history before {as_of} (trees need {trees_text}): training windows before "
                  f"the {horizon_days}-day validation window, calibration out of fold, refit up to {validation}")
        return CutoffPlan(as_of, horizon_days, train, validation, refit, "trees", reason, history, min_history_days)
    if layout in ("auto", "btyd") and history >= need_btyd:
        why = ("asked for" if layout == "btyd" else
               f"{history} days of history before {as_of}: fewer than the trees need ({trees_text}), at least the "
               f"{horizon_days} + {min_history_days} = {need_btyd}")
        reason = (f"BTYD family alone ({why}); it learns nothing from labels, so the last window "
                  f"[{validation}, {as_of}) validates and calibrates it")
        return CutoffPlan(as_of, horizon_days, [validation], validation, [validation], "btyd", reason, history,
                          min_history_days)
    need = need_trees if layout == "trees" else need_btyd
    needs = (f"the trees: {trees_text}" if layout == "trees" else
             f"at least {horizon_days} + {min_history_days} with the BTYD family alone, {need_trees} for the trees")
    raise HistoryTooShort(
        f"not enough history for a {horizon_days}-day horizon as of {as_of}: {history} days of data since {start}, "
        f"{need} needed ({needs}); use a shorter horizon or a later --as-of",
        horizon_days=horizon_days, history_days=history, required_days=need)


def scaled_cutoffs(n_buyers: int, n_cutoffs: int, *, max_rows: int | None) -> int:
    """How many training cutoffs to stack so the rows stay near ``max_rows`` (at least 1, at most ``n_cutoffs``).

    Small brands stack every cutoff; a brand with a million buyers needs one or two to have plenty of rows.
    """
    if max_rows is None or n_buyers <= 0:
        return n_cutoffs
    return int(max(1, min(n_cutoffs, math.floor(max_rows / n_buyers))))


# ---------------------------------------------------------------------------------------------------- BTYD


def fit_btyd(features: pd.DataFrame, *, random_state: int = 0, label: str = "",
             params: dict | None = None) -> tuple[BTYDModel | None, str]:
    """Fit the BTYD chain on the buyers of a snapshot; ``(None, reason)`` when every option fails.

    A failure is logged as a warning and never raised: the BTYD inputs of that snapshot are then NaN, and a
    model trained as of that day runs without the BTYD family (see ``ChurnModel`` and ``CLVModel``).
    """
    buyers = features[features["orders"] >= 1] if "orders" in features.columns else features
    try:
        return BTYDModel(random_state=random_state, **(params or {})).fit(buyers), "ok"
    except BTYDFitError as exc:
        log.warning("BTYD fit failed on %d buyers%s (%s); BTYD inputs left empty there", len(buyers),
                    f" at {label}" if label else "", exc)
        return None, str(exc)


def add_btyd_features(features: pd.DataFrame, horizon_days: int, *, btyd: BTYDModel | None = None,
                      random_state: int = 0) -> tuple[pd.DataFrame, BTYDModel | None]:
    """Append the BTYD model outputs (``BTYD_COLUMNS``) as features; fit a BTYD model when none is given.

    A BTYD fit failure is not fatal: the columns are NaN and the returned model is ``None``.
    """
    out = features.copy()
    if btyd is None:
        btyd, _ = fit_btyd(features, random_state=random_state)
    if btyd is None:
        for col in BTYD_COLUMNS:
            out[col] = np.nan
        return out, None
    pred = btyd.predict_frame(features, horizon_days, random_state=random_state, with_intervals=False)
    out["btyd_p_alive"] = pred["p_alive"].to_numpy()
    out["btyd_expected_orders"] = pred["expected_orders"].to_numpy()
    out["btyd_p_purchase"] = pred["p_purchase"].to_numpy()
    out["btyd_expected_spend"] = (pred["expected_spend"].to_numpy() if "expected_spend" in pred.columns
                                  else np.full(len(out), np.nan))
    return out, btyd


# ---------------------------------------------------------------------------------------------------- sample

#: Snapshot columns a training sample is stratified by (those the snapshot has): lifecycle stage × RFM segment.
SAMPLE_STRATA = ("lifecycle_stage", "rfm_segment_en")
#: Peak training memory per buyer kept, all-in (measured: the 1M-customer simulated brand trained in 13.9 GB).
TRAIN_BYTES_PER_PERSON = 14_000
#: Share of the machine's memory the default sample is sized to use (features, BTYD and scoring need the rest).
SAMPLE_MEMORY_SHARE = 0.5
MIN_DEFAULT_SAMPLE = 50_000


def default_sample_size(memory_bytes: int | None = None) -> int:
    """People per cutoff training keeps by default: half the machine's memory at ``TRAIN_BYTES_PER_PERSON``
    each, rounded down to 10,000, at least ``MIN_DEFAULT_SAMPLE`` (24 GB: 850,000)."""
    memory = machine_memory_bytes() if memory_bytes is None else int(memory_bytes)
    size = int(memory * SAMPLE_MEMORY_SHARE // TRAIN_BYTES_PER_PERSON) // 10_000 * 10_000
    return max(MIN_DEFAULT_SAMPLE, size)


@dataclass(frozen=True)
class PersonSample:
    """The person set training reads at every cutoff: drawn once from the buyers of the ``reference`` snapshot.

    ``people`` is ``None`` when everyone is kept (no more buyers than ``size``).
    """

    reference: date
    size: int
    buyers: int
    people: frozenset | None
    strata: tuple[str, ...]
    random_state: int

    @property
    def kept(self) -> int:
        return self.buyers if self.people is None else len(self.people)

    def to_params(self) -> dict[str, str]:
        """MLflow params: the sample asked for, what was drawn, from how many buyers, by which strata."""
        return {"sample.size": str(self.size), "sample.people": str(self.kept), "sample.buyers": str(self.buyers),
                "sample.fraction": f"{self.kept / self.buyers:.6f}" if self.buyers else "1",
                "sample.reference": self.reference.isoformat(), "sample.strata": ",".join(self.strata) or "none",
                "sample.random_state": str(self.random_state)}


def draw_sample(features: pd.DataFrame, size: int, *, random_state: int, strata: Sequence[str] = SAMPLE_STRATA,
                reference=None) -> PersonSample:
    """A stratified sample of ``size`` buyers (``orders >= 1``) of a snapshot, by person.

    Strata are the combinations of the ``strata`` columns the snapshot has; each gets its proportional share of
    ``size`` (largest remainders round), filled with its people first in a random order seeded by
    ``random_state``. The draw depends on the people and their strata only, not on the row order.
    """
    if size < 1:
        raise ValueError(f"sample size must be at least 1, got {size}")
    buyers = features.loc[features["orders"] >= 1]
    cols = tuple(c for c in strata if c in buyers.columns)
    n = len(buyers)
    reference = as_date(reference) if reference is not None else date.min
    if n <= size:
        return PersonSample(reference, int(size), n, None, cols, random_state)
    ids = buyers["person_id"].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if cols:
        key = buyers[list(cols)].iloc[order].astype(str).agg("\x1f".join, axis=1).to_numpy()
        codes, _ = pd.factorize(key, sort=True)
    else:
        codes = np.zeros(n, dtype=np.int64)
    counts = np.bincount(codes)
    quota = counts * (size / n)
    take = np.floor(quota).astype(np.int64)
    extra = size - int(take.sum())
    if extra:
        take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    u = np.random.default_rng(random_state).random(n)
    by = np.lexsort((u, codes))  # by stratum, random order within
    first = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.empty(n, dtype=np.int64)
    rank[by] = np.arange(n) - first[codes[by]]
    keep = rank < take[codes]
    return PersonSample(reference, int(size), n, frozenset(ids[keep]), cols, random_state)


# ---------------------------------------------------------------------------------------------------- cache


class FeatureCache:
    """Feature snapshots, labels and BTYD fits of one dataset, each computed once per cutoff and shared.

    Parameters
    ----------
    data : Dataset
        Validated tables.
    identity : DataFrame, optional
        One fixed One-ID ``key_to_person`` frame for every cutoff; when ``None`` (the default) One-ID is resolved
        at each cutoff from the links known before it (``resolve_identities(data, as_of=cutoff)``).
    random_state : int
        Seed of the BTYD fits' simulations.
    btyd_params : dict, optional
        Settings of every BTYD fit (``BTYDModel`` parameters, e.g. ``chain``); the defaults otherwise.
    config : FeatureConfig, optional
        Feature windows, RFM bins and lifecycle thresholds of every snapshot (the defaults when omitted); logged
        with the models trained on them, and required of the snapshots they later score.
    sample_size : int, optional
        Buyers per cutoff the training rows keep (``None``: all). The person set is drawn once by
        :meth:`use_sample` (stratified, seeded by ``random_state``: :func:`draw_sample`) and the same people are
        read at every cutoff (:meth:`labelled`). BTYD fits use every buyer; once the sample is drawn, the
        snapshot of any other cutoff than the sample's reference is kept for the sampled people only, after its
        BTYD fit (:meth:`features`), so a large brand holds one whole snapshot besides the reference at a time.
    sample_strata : sequence of str
        Snapshot columns the sample is stratified by.
    """

    def __init__(self, data: Dataset, identity: pd.DataFrame | None = None, *, random_state: int = 0,
                 btyd_params: dict | None = None, config: FeatureConfig | None = None,
                 sample_size: int | None = None, sample_strata: Sequence[str] = SAMPLE_STRATA):
        if sample_size is not None and sample_size < 1:
            raise ValueError(f"sample_size must be at least 1 (None keeps everyone), got {sample_size}")
        self.sample_size = sample_size
        self.sample_strata = tuple(sample_strata)
        self.sample: PersonSample | None = None
        self.data = data
        self.config = config or FeatureConfig()
        self.identity = identity
        self.random_state = random_state
        self.btyd_params = dict(btyd_params or {})
        self._features: dict[date, pd.DataFrame] = {}
        self._labels: dict[tuple[date, int], pd.DataFrame] = {}
        self._btyd: dict[date, tuple[BTYDModel | None, str]] = {}
        self._identity: dict[date, pd.DataFrame] = {}
        #: snapshots kept for the sample's people only: cutoff -> (the sample, rows, buyers in the whole snapshot)
        self._slim: dict[date, tuple[PersonSample, pd.DataFrame, int]] = {}
        self._slim_ok = True  # False once snapshots are shared with another cache (with_sample): kept whole
        self._noted = False  # the note on absent optional tables is about the data: printed once, not per cutoff

    def with_sample(self, sample_size: int | None, *, random_state: int | None = None) -> FeatureCache:
        """A cache with another ``sample_size`` (drawn with ``random_state``, default this cache's) over the same
        data, sharing the snapshots, labels and BTYD fits computed so far and from now on (compare sample sizes
        without rebuilding features; the shared BTYD fits keep the seed they were made with)."""
        other = FeatureCache(self.data, self.identity,
                             random_state=self.random_state if random_state is None else random_state,
                             btyd_params=self.btyd_params, config=self.config, sample_size=sample_size,
                             sample_strata=self.sample_strata)
        other._features, other._labels, other._btyd, other._identity = (self._features, self._labels, self._btyd,
                                                                          self._identity)
        other._noted = self._noted
        self._slim_ok = other._slim_ok = False  # shared snapshots serve several samples: they stay whole
        for cutoff in list(self._slim):  # this cache's sample-only snapshots cannot be shared
            del self._slim[cutoff]
        return other

    def identity_at(self, cutoff) -> pd.DataFrame:
        """The ``key_to_person`` frame used at ``cutoff``: the fixed one, or One-ID as known before ``cutoff``."""
        if self.identity is not None:
            return self.identity
        cutoff = as_date(cutoff)
        if cutoff not in self._identity:
            self._identity[cutoff] = resolve_identities(self.data, as_of=cutoff).key_to_person
        return self._identity[cutoff]

    def features(self, cutoff) -> pd.DataFrame:
        """The snapshot of ``build_features`` at ``cutoff`` (computed once, kept compact: see :func:`compact`).

        With a person sample drawn (:meth:`use_sample`, a brand with more buyers than ``sample_size``), a cutoff
        other than the sample's reference gets its BTYD fit on the whole snapshot at once, and then only the
        sampled people's rows are kept and returned: the rows :meth:`labelled` reads there.
        """
        cutoff = as_date(cutoff)
        if cutoff in self._features:
            return self._features[cutoff]
        sample = self.sample if self._slim_ok and self.sample is not None and self.sample.people is not None else None
        slim = self._slim.get(cutoff)
        if slim is not None and slim[0] is sample:
            return slim[1]
        console = Console(quiet=True) if self._noted else None
        self._noted = True
        snap = compact(build_features(self.data, cutoff, identity=self.identity_at(cutoff), console=console,
                                      config=self.config))
        if sample is None or cutoff == sample.reference:
            self._features[cutoff] = snap
            return snap
        return self._slim_snapshot(cutoff, snap, sample)

    def _slim_snapshot(self, cutoff: date, snap: pd.DataFrame, sample: PersonSample) -> pd.DataFrame:
        """Fit the cutoff's BTYD model on every buyer of ``snap``, then keep the sampled people's rows only."""
        if cutoff not in self._btyd:
            self._btyd[cutoff] = fit_btyd(snap, random_state=self.random_state, label=cutoff.isoformat(),
                                          params=self.btyd_params)
        buyers = int((snap["orders"] >= 1).sum())
        keep = snap["person_id"].astype(str).isin(sample.people).to_numpy()
        rows = snap.loc[keep].reset_index(drop=True)
        del snap
        self._slim[cutoff] = (sample, rows, buyers)
        log.info("snapshot at %s: %d of %d people kept (the training sample)", cutoff, len(rows), len(keep))
        return rows

    def release(self, cutoffs: Sequence, *, keep: Sequence = ()) -> None:
        """Forget the snapshots and labels of ``cutoffs`` (except ``keep``) to free memory; BTYD fits stay."""
        keep = {as_date(c) for c in keep}
        for cutoff in {as_date(c) for c in cutoffs} - keep:
            self._features.pop(cutoff, None)
            self._slim.pop(cutoff, None)
            self._identity.pop(cutoff, None)
            for key in [k for k in self._labels if k[0] == cutoff]:
                del self._labels[key]

    def labels(self, cutoff, horizon_days: int) -> pd.DataFrame:
        """``build_labels`` at ``cutoff`` for ``horizon_days`` (computed once)."""
        key = (as_date(cutoff), int(horizon_days))
        if key not in self._labels:
            self._labels[key] = build_labels(self.data, key[0], key[1], identity=self.identity_at(key[0]))
        return self._labels[key]

    def btyd(self, cutoff) -> BTYDModel | None:
        """The BTYD model fitted on the buyers at ``cutoff`` (``None`` when every option failed).

        BTYD parameters do not depend on the horizon, so one fit per cutoff serves every model.
        """
        return self._btyd_entry(cutoff)[0]

    def btyd_status(self, cutoff) -> str:
        """``"ok"`` or the reason the BTYD fit at ``cutoff`` failed."""
        return self._btyd_entry(cutoff)[1]

    def _btyd_entry(self, cutoff) -> tuple[BTYDModel | None, str]:
        cutoff = as_date(cutoff)
        if cutoff not in self._btyd:
            self._btyd[cutoff] = fit_btyd(self.features(cutoff), random_state=self.random_state,
                                          label=cutoff.isoformat(), params=self.btyd_params)
        return self._btyd[cutoff]

    def n_buyers(self, cutoff) -> int:
        """People with at least one paid order before ``cutoff`` (all of them, also when the snapshot is kept for
        the sample only)."""
        feats = self.features(cutoff)
        slim = self._slim.get(as_date(cutoff))
        if slim is not None and slim[1] is feats:
            return slim[2]
        return int((feats["orders"] >= 1).sum())

    def use_sample(self, reference) -> PersonSample | None:
        """Draw the training person sample from the buyers at ``reference`` (the training ``as_of``) unless it
        is drawn already; ``None`` without ``sample_size``. Every buyer at an earlier cutoff is a buyer at
        ``reference``, and each has the same chance to be kept (proportional allocation), so no stratum and no
        cutoff is favoured; the snapshot's strata only make the sample's mix exactly the population's."""
        if self.sample_size is None:
            return None
        reference = as_date(reference)
        if self.sample is None or self.sample.reference != reference:
            self.sample = draw_sample(self.features(reference), self.sample_size, random_state=self.random_state,
                                      strata=self.sample_strata, reference=reference)
            if self._slim_ok and self.sample.people is not None:  # other cutoffs' snapshots: the sample's rows
                for cutoff in [c for c in self._features if c != reference]:
                    self._slim_snapshot(cutoff, self._features.pop(cutoff), self.sample)
            self._slim = {c: v for c, v in self._slim.items() if v[0] is self.sample}
            log.info("training sample: %d of %d buyers at %s (strata %s)", self.sample.kept, self.sample.buyers,
                     reference, ", ".join(self.sample.strata) or "none")
        return self.sample

    def _sampled(self, buyers: pd.DataFrame) -> pd.DataFrame:
        if self.sample is None or self.sample.people is None:
            return buyers
        return buyers[buyers["person_id"].astype(str).isin(self.sample.people)]

    def n_rows(self, cutoff) -> int:
        """Training rows one cutoff gives: its buyers, those of the sample when one is drawn."""
        feats = self.features(cutoff)
        return len(self._sampled(feats[feats["orders"] >= 1]))

    def labelled(self, cutoffs: Sequence, horizon_days: int, *, progress: Callable[[], None] | None = None,
                 float32: bool = True) -> pd.DataFrame:
        """Buyers at every cutoff (the sample's, when one is drawn: :meth:`use_sample`) with BTYD (fitted per
        cutoff on all its buyers) and derived features and labels, stacked.

        Column ``cutoff`` tells the slices apart. With ``float32`` the float model inputs are stored as
        float32 (what LightGBM bins anyway), halving memory at scale; BTYD inputs and labels keep float64.
        """
        parts = []
        for cutoff in cutoffs:
            cutoff = as_date(cutoff)
            feats = self.features(cutoff)
            feats = self._sampled(feats[feats["orders"] >= 1])
            feats, _ = add_btyd_features(feats, horizon_days, btyd=self.btyd(cutoff),
                                         random_state=self.random_state)
            feats = derive_features(feats)
            merged = feats.merge(self.labels(cutoff, horizon_days), on="person_id", how="inner",
                                 validate="one_to_one")
            merged.insert(1, "cutoff", pd.Timestamp(cutoff))
            if float32:
                merged = to_float32(merged)
            parts.append(merged)
            if progress is not None:
                progress()
        if not parts:
            raise ValueError("no cutoffs given")
        return pd.concat(parts, ignore_index=True)


KEEP_FLOAT64 = frozenset({"frequency", "recency", "T", "monetary_value", *LABEL_COLUMNS})


def to_float32(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast float64 model-input columns to float32 (BTYD inputs and labels stay float64)."""
    cast = {c: "float32" for c in frame.columns if frame[c].dtype == np.float64 and c not in KEEP_FLOAT64}
    return frame.astype(cast) if cast else frame


def latest_cutoff(X: pd.DataFrame) -> np.ndarray:
    """Mask of the stacked training rows from the latest ``cutoff`` (every row when ``X`` has no cutoff column)."""
    if "cutoff" not in X.columns:
        return np.ones(len(X), dtype=bool)
    cut = X["cutoff"].to_numpy()
    return cut == cut.max()


def compact(features: pd.DataFrame) -> pd.DataFrame:
    """A snapshot in about half the memory: float32 floats (BTYD inputs excepted) and int32 counts.

    Model inputs are cast to float32 anyway (:func:`to_float32`), so predictions do not change;
    :func:`widen` restores the pipeline's dtypes (e.g. for an MLflow input example).
    """
    ints = {c: "int32" for c in features.columns if features[c].dtype == np.int64}
    out = to_float32(features)
    return out.astype(ints) if ints else out


def widen(features: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`compact`: float32 → float64 and int32 → int64 (the dtypes ``build_features`` returns)."""
    cast = {c: ("float64" if features[c].dtype == np.float32 else "int64") for c in features.columns
            if features[c].dtype in (np.float32, np.int32)}
    return features.astype(cast) if cast else features
