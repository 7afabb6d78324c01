"""The one scoring path: batch scoring, the backtest and the HTTP service all call :func:`score`.

Given a feature snapshot and the churn and CLV models, it returns one row per person with the churn probability,
CLV with its interval, expected orders, P(alive), P(no paid order over the CLV horizon) (``p_no_purchase``), RFM
scores and segment, lifecycle stage, member tier and action segment, the predicted tier at the end of the CLV
horizon with the move and its probabilities (:mod:`training.decisions.tier_forecast`), and (optionally) the top reasons behind the churn score. People who
cannot be scored honestly (no paid order before ``as_of``, or a first order too recent) come back with
``eligible=False`` and a reason.

The churn reasons are exact TreeSHAP contributions of the served model (LightGBM ``pred_contrib``), about half a
millisecond of CPU per person with the default 300 trees: the batch pass computes them once per person
(:func:`reason_table`, in chunks on parallel threads) into the flat :data:`REASON_COLUMNS`, and the service serves
them by lookup (:class:`ReasonLookup`), computing them on the fly, with the same function, only for a model or
snapshot the lookup was not computed for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from features import spec
from features.config import FeatureConfig, check_config
from training.churn import REASON_TOP, ChurnModel, reason_columns, reasons_from_table
from training.clv import CLVModel
from training.decisions.tier_forecast import with_predicted_tiers
from training.decisions.tiers import assign_tiers, load_tier_rules

PASSTHROUGH = spec.passthrough_columns()
SCORE_COLUMNS = (
    "person_id", "eligible", "ineligible_reason", "churn_probability", "clv_mean", "clv_p10", "clv_p90",
    "expected_orders", "p_alive", "expected_next_order_date",
)
#: The reason columns of :func:`score` with ``with_reasons=True`` (and of ``scrm score``): for k = 1..3,
#: ``reason_<k>_feature`` (the k-th model input raising the churn risk; null when fewer than k do, and for people
#: not scored), ``reason_<k>_value`` (its value, NaN when missing) and ``reason_<k>_contribution`` (its TreeSHAP
#: contribution in log-odds of the uncalibrated model, rounded to 4 decimals).
REASON_COLUMNS = tuple(reason_columns(REASON_TOP))
#: Rows per ``pred_contrib`` call of the batch reason pass (bounds its memory: rows x model inputs floats).
REASON_CHUNK_ROWS = 50_000


@dataclass
class Models:
    """The models scoring needs, with the registry versions they came from (None when not registered)."""

    churn: ChurnModel
    clv: CLVModel
    churn_version: str | None = None
    clv_version: str | None = None
    brand: str | None = None
    churn_name: str | None = None  # registered model names, e.g. ``acme.churn_90d``
    clv_name: str | None = None
    feature_config: dict | None = None  # the FeatureConfig both were trained on (None: the defaults)

    def check_snapshot(self, manifest: dict) -> None:
        """Refuse (``FeatureConfigMismatch``) a snapshot built with another feature config than the models'."""
        check_config(manifest.get("config"), self.feature_config)

    def features_config(self) -> FeatureConfig:
        """The config to build features with for these models."""
        return FeatureConfig.from_dict(self.feature_config or {}, source="the models' feature config")

    @property
    def versions(self) -> dict[str, str | None]:
        return {"churn": self.churn_version, "clv": self.clv_version}

    @property
    def horizons(self) -> dict[str, int | None]:
        """The models' horizons in days: churn over ``churn``, CLV value over ``clv``."""
        return {kind: _horizon(getattr(self, kind)) for kind in ("churn", "clv")}


def _horizon(model) -> int | None:
    value = getattr(model, "horizon_days", None)
    return int(value) if value is not None else None


def eligibility(features: pd.DataFrame, *, min_tenure_days: int = 7) -> pd.Series:
    """Why each person cannot be scored (``None`` when they can)."""
    reason = pd.Series(None, index=features.index, dtype=object)
    orders = features["orders"].fillna(0)
    reason[orders < 1] = "no paid order before as_of"
    too_new = (orders >= 1) & (features["tenure_days"].fillna(0) < min_tenure_days)
    reason[too_new] = f"first order less than {min_tenure_days} days before as_of"
    return reason


def eligibility_table(reasons: pd.Series) -> pd.DataFrame:
    """Who is scored and who is not, and why: one row per outcome (``status``, ``reason``, ``people``, ``share``).

    ``reasons`` is :func:`eligibility`'s (or ``score``'s ``ineligible_reason``): ``None`` for people scored.
    The scored row comes first, then the reasons, most people first.
    """
    n = len(reasons)
    scored = int(reasons.isna().sum())
    counts = reasons.dropna().value_counts()
    rows = [("scored", "", scored)] + [("not scored", str(r), int(c)) for r, c in counts.items()]
    table = pd.DataFrame(rows, columns=["status", "reason", "people"])
    table["share"] = table["people"] / n if n else 0.0
    return table


def score(features: pd.DataFrame, models: Models, *, as_of=None, tier_rules=None, clv_cut: float | None = None,
          with_reasons: bool = False, with_intervals: bool = True, min_tenure_days: int = 7,
          n_jobs: int = 1) -> pd.DataFrame:
    """Score every person of a feature snapshot (see the module docstring).

    Parameters
    ----------
    features : DataFrame
        A snapshot from ``features.pipeline.build_features`` (any subset of its rows).
    models : Models
        Fitted churn and CLV models.
    as_of : date, optional
        The snapshot date, used for ``expected_next_order_date``.
    tier_rules : TierRules, optional
        Tier and action-segment rules (default: ``training/tiers.yaml``).
    clv_cut : float, optional
        The population's high-value CLV cut; pass it when ``features`` holds only a few people (the service
        does), otherwise it is computed over the rows scored here.
    with_reasons : bool
        Add :data:`REASON_COLUMNS`: the top three features raising each person's churn score
        (:func:`reasons_from_table` turns rows of them into the service's reason lists).
    with_intervals : bool
        Compute ``clv_p10`` / ``clv_p90`` (NaN otherwise; the BTYD family's interval is a posterior simulation,
        the slowest part of scoring when that family is chosen).
    min_tenure_days : int
        People whose first order is more recent than this are not scored.
    n_jobs : int
        Threads of the reason pass (see :func:`reason_table`).
    """
    features = features.reset_index(drop=True)
    reason = eligibility(features, min_tenure_days=min_tenure_days)
    ok = reason.isna().to_numpy()
    out = pd.DataFrame({"person_id": features["person_id"].to_numpy(), "eligible": ok,
                        "ineligible_reason": reason.to_numpy()})
    for col in SCORE_COLUMNS[3:]:
        out[col] = pd.NaT if col == "expected_next_order_date" else np.nan
    out["p_no_purchase"] = np.nan  # P(no paid order over the CLV horizon), BTYD: see no_purchase
    for kind, days in models.horizons.items():  # what churn_probability and clv_* are about
        out[f"{kind}_horizon_days"] = pd.array([days] * len(out), dtype="Int64")
    if ok.any():
        buyers = features.loc[ok]
        churn = models.churn.predict_frame(buyers)
        clv = models.clv.predict_frame(buyers, as_of=as_of, with_intervals=with_intervals)
        out.loc[ok, "churn_probability"] = churn["churn_probability"].to_numpy()
        for col in ("clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive", "expected_next_order_date"):
            out.loc[ok, col] = clv[col].to_numpy()
        out.loc[ok, "p_no_purchase"] = no_purchase(buyers, models)
    for col in PASSTHROUGH:
        if col in features.columns:
            out[col] = features[col].to_numpy()
    # nullable: <NA> = no recorded consent (features.brand's consent policy decides what that allows)
    out["marketing_opt_out"] = (pd.array(features["marketing_opt_out"].to_numpy(dtype=object), dtype="boolean")
                                if "marketing_opt_out" in features.columns
                                else pd.array([pd.NA] * len(out), dtype="boolean"))
    rules = tier_rules if tier_rules is not None else load_tier_rules()
    tiers = assign_tiers(out, rules, clv_cut=clv_cut)
    out = out.merge(tiers, on="person_id", how="left", validate="one_to_one")
    clv_days = models.horizons["clv"]
    if clv_days is not None:  # tier at the end of the CLV horizon, the move and its probabilities
        out = with_predicted_tiers(out, features, rules, horizon_days=clv_days)
    if with_reasons:
        table = reason_table(features, models.churn, eligible=ok, n_jobs=n_jobs)
        for col in REASON_COLUMNS:
            out[col] = table[col].to_numpy()
    return out


def no_purchase(buyers: pd.DataFrame, models: Models) -> np.ndarray:
    """``p_no_purchase`` of ``buyers`` (rows of a snapshot): the CLV model's BTYD probability of no paid order over
    the CLV horizon (:meth:`training.btyd.BTYDModel.p_no_purchase`); NaN without a BTYD fit. The tier forecast's
    chance of no spend when the churn model's horizon is not the CLV horizon (:mod:`training.decisions.tier_forecast`).
    """
    btyd, days = getattr(models.clv, "btyd_", None), models.horizons["clv"]
    if btyd is None or days is None:
        return np.full(len(buyers), np.nan)
    return np.asarray(btyd.p_no_purchase(buyers, days), dtype=float)


def label_scores(scores: pd.DataFrame, as_of, models: Models) -> pd.DataFrame:
    """What ``scrm score`` writes (either engine): :func:`score`'s frame with ``feature_as_of`` as its second
    column and the ``churn_model_version`` / ``clv_model_version`` that produced it (``scores`` is changed)."""
    scores.insert(1, "feature_as_of", pd.Timestamp(as_of))
    scores["churn_model_version"] = models.churn_version
    scores["clv_model_version"] = models.clv_version
    return scores


def reason_table(features: pd.DataFrame, churn: ChurnModel, *, eligible: np.ndarray | None = None,
                 n_jobs: int = 1, chunk_rows: int = REASON_CHUNK_ROWS) -> pd.DataFrame:
    """:data:`REASON_COLUMNS` for every row of ``features`` (positional), empty for rows not ``eligible``.

    The eligible rows go through :meth:`ChurnModel.reason_table` in chunks of ``chunk_rows``, ``n_jobs`` chunks
    at a time on threads (each a one-thread LightGBM call: ``pred_contrib`` releases the GIL, and one-thread
    calls never leave OpenMP threads spinning on a shared machine). The result does not depend on ``n_jobs``
    or ``chunk_rows``.
    """
    features = features.reset_index(drop=True)
    ok = np.ones(len(features), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    rows = np.flatnonzero(ok)
    cols = {c: np.full(len(features), None, dtype=object) if c.endswith("_feature") else
            np.full(len(features), np.nan) for c in REASON_COLUMNS}
    chunks = [rows[i:i + chunk_rows] for i in range(0, len(rows), chunk_rows)]

    def one(chunk: np.ndarray) -> pd.DataFrame:
        return churn.reason_table(features.iloc[chunk], num_threads=1)

    if n_jobs > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(min(n_jobs, len(chunks)), thread_name_prefix="scrm-reasons") as pool:
            parts = list(pool.map(one, chunks))
    else:
        parts = [one(c) for c in chunks]
    for chunk, part in zip(chunks, parts, strict=True):
        for col in REASON_COLUMNS:
            cols[col][chunk] = part[col].to_numpy()
    return pd.DataFrame(cols)


class ReasonLookup:
    """The batch pass's reasons for the rows of a served snapshot, valid for one churn model and one snapshot.

    Parameters
    ----------
    table : DataFrame
        :data:`REASON_COLUMNS`, row i = row i of the served snapshot (``score(..., with_reasons=True)`` output,
        or the ``scrm score`` file aligned with :meth:`from_scores`).
    churn_version : str or None
        Registry version of the churn model the reasons were computed with.
    as_of : date
        ``as_of`` of the snapshot they were computed on.
    model : ChurnModel, optional
        The model object itself; required to serve for an unregistered model (version None).
    """

    def __init__(self, table: pd.DataFrame, *, churn_version: str | None, as_of: date,
                 model: ChurnModel | None = None) -> None:
        missing = [c for c in REASON_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"reason table lacks {', '.join(missing)}; score with reasons (scrm score --reasons)")
        self.churn_version = None if churn_version is None else str(churn_version)
        self.as_of = pd.Timestamp(as_of).date()
        self._model = model
        self._n = len(table)
        feats = pd.concat([table[f"reason_{k}_feature"] for k in range(1, REASON_TOP + 1)], ignore_index=True)
        cat = pd.Categorical(feats)
        #: feature names by code, then None: code -1 (no reason) picks the last entry
        self._names = np.append(np.asarray(cat.categories, dtype=object), None)
        self._codes = cat.codes.reshape(REASON_TOP, self._n).T.astype(np.int16)
        self._values = np.column_stack([table[f"reason_{k}_value"].to_numpy(dtype=float)
                                        for k in range(1, REASON_TOP + 1)])
        self._contribs = np.column_stack([table[f"reason_{k}_contribution"].to_numpy(dtype=float)
                                          for k in range(1, REASON_TOP + 1)])

    @classmethod
    def from_scores(cls, scores: pd.DataFrame, person_ids, *, model: ChurnModel | None = None) -> ReasonLookup:
        """A lookup from a ``scrm score`` output (its ``feature_as_of`` and ``churn_model_version`` columns), its
        rows put in the order of ``person_ids`` (the served snapshot's). ``ValueError`` names what does not fit:
        missing columns, several versions or dates in one file, or people of the snapshot it does not hold."""
        need = ["person_id", "feature_as_of", "churn_model_version", *REASON_COLUMNS]
        missing = [c for c in need if c not in scores.columns]
        if missing:
            raise ValueError(f"scores lack {', '.join(missing)}; write them with `scrm score --reasons`")
        # one file holds one version and one date: compare the distinct values only (fast at millions of rows)
        versions = pd.Series(scores["churn_model_version"].unique()).astype(object)
        versions = versions.where(versions.notna(), None)
        dates = pd.to_datetime(pd.Series(scores["feature_as_of"].unique())).dt.date
        if versions.nunique(dropna=False) > 1 or dates.nunique(dropna=False) > 1:
            raise ValueError("scores mix several churn_model_version or feature_as_of values")
        have = scores["person_id"].astype(str).to_numpy(dtype=object)
        want = pd.Series(person_ids).astype(str).to_numpy(dtype=object)
        if np.array_equal(have, want):  # already in the snapshot's order (a publication's scores are)
            table = scores[list(REASON_COLUMNS)].reset_index(drop=True)
        else:
            pos = pd.Index(have, dtype=object).get_indexer(pd.Index(want, dtype=object))
            if (pos < 0).any():
                raise ValueError(f"scores lack {int((pos < 0).sum()):,} people of the snapshot")
            table = scores.iloc[pos][list(REASON_COLUMNS)].reset_index(drop=True)
        version = versions.iloc[0] if len(versions) else None
        return cls(table, churn_version=version, as_of=dates.iloc[0], model=model)

    def __len__(self) -> int:
        return self._n

    def serves(self, churn_version: str | None, as_of: date, model: ChurnModel | None = None) -> bool:
        """Whether these reasons are those of churn model ``churn_version`` (or, unregistered, of ``model``)
        on the snapshot of ``as_of``."""
        if pd.Timestamp(as_of).date() != self.as_of:
            return False
        if churn_version is None or self.churn_version is None:
            return churn_version is None and self.churn_version is None and model is not None \
                and model is self._model
        return str(churn_version) == self.churn_version

    def _columns(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        positions = np.asarray(positions, dtype=np.intp)
        codes = self._codes[positions]
        cols = {}
        for j in range(REASON_TOP):
            cols[f"reason_{j + 1}_feature"] = self._names[codes[:, j]]
            cols[f"reason_{j + 1}_value"] = self._values[positions, j]
            cols[f"reason_{j + 1}_contribution"] = self._contribs[positions, j]
        return cols

    def table(self, positions: np.ndarray) -> pd.DataFrame:
        """:data:`REASON_COLUMNS` of the given rows."""
        return pd.DataFrame(self._columns(positions))

    def reasons(self, positions: np.ndarray) -> list[list[dict]]:
        """Reason lists (:meth:`ChurnModel.reasons`) of the given rows."""
        return reasons_from_table(self._columns(positions))


def load_champions(alias: str = "champion", *, brand: str, as_of=None, churn_horizon: int = 90,
                   clv_horizon: int = 365, data_hint: str = "D") -> Models:
    """Brand ``brand``'s churn and CLV models behind ``alias``, checked for scoring as of ``as_of``.

    Raises
    ------
    LookupError
        No such model, a version of another brand or horizon, one trained after ``as_of``, or artifacts changed
        since registration (:func:`training.registry.load_for_scoring`); the message names the fix.
    """
    from training import registry

    as_of = pd.Timestamp(as_of).date() if as_of is not None else None
    churn = registry.load_for_scoring(brand, "churn", churn_horizon, as_of=as_of, alias=alias, data_hint=data_hint)
    clv = registry.load_for_scoring(brand, "clv", clv_horizon, as_of=as_of, alias=alias, data_hint=data_hint)
    configs = [_feature_config(m.run_id) for m in (churn, clv)]
    check_config(*configs, labels=(f"{churn.name} v{churn.version}", f"{clv.name} v{clv.version}"),
                 fix="retrain both on one config (`scrm train all --feature-config FILE`)")
    return Models(churn.estimator, clv.estimator, str(churn.version), str(clv.version), brand=brand,
                  churn_name=churn.name, clv_name=clv.name, feature_config=configs[0])


def _feature_config(run_id: str) -> dict | None:
    """The ``scrm.feature_config`` tag of a model's run (None for models trained before it was logged)."""
    import json

    from training import tracking

    value = tracking.client().get_run(run_id).data.tags.get(tracking.TAG_FEATURE_CONFIG)
    return json.loads(value) if value else None
