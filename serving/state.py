"""What the service answers from: the champion models, the latest feature snapshot and its batch scores.

:class:`ServingState` knows nothing of HTTP. It scores the whole snapshot once through
:func:`training.scoring.score` — the function ``scrm score`` and the backtest call — so a ``/score`` answer is a
lookup of exactly the batch row, the population's high-value CLV cut is the batch one, and ``/tier`` and
``/target`` work on the same frame. The churn reasons come from the same batch pass (``score(...,
with_reasons=True)``, TreeSHAP once per person) and are served by lookup (:class:`training.scoring.ReasonLookup`);
they are computed per request, by the same :func:`training.scoring.reason_table`, only when the lookup is not
that of the served churn model and snapshot.

Ids are resolved as ``person_id`` first, then as a channel ``customer_key`` through the snapshot's identity map.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features import spec
from features.brand import load_brand
from features.config import FeatureConfigMismatch
from features.pii import PIIKeyError, check_pii_fingerprint
from features.pipeline import Snapshot, load_snapshot, newest_snapshot_dir
from features.snapshot_check import SnapshotError, validate_snapshot
from training.decisions.tier_forecast import with_predicted_tiers
from training.decisions.tiers import TierRules, clv_value_cut, resolve_tier_rules
from training.scoring import REASON_COLUMNS, Models, ReasonLookup, reason_table, reasons_from_table, score

log = logging.getLogger("bentoml.scrm")  # under BentoML's logger, so `bentoml serve` prints it

#: Numeric and text columns of the scores frame the responses read.
NUMERIC_COLUMNS = ("churn_probability", "clv_mean", "clv_p10", "clv_p90", "expected_orders", "p_alive",
                   *spec.passthrough_columns("numeric"), "predicted_spend_365d", "p_tier_up", "p_tier_down",
                   "p_tier_stay")
TEXT_COLUMNS = ("person_id", "ineligible_reason", *spec.passthrough_columns("text"), "tier", "tier_en",
                "action_segment", "action_segment_zh", "value_band", "risk_band", "not_scored_reason",
                "predicted_tier", "predicted_tier_en", "tier_move")
#: Environment variable naming the brand served (``scrm serve --brand``); default: the data directory's brand.
BRAND_ENV = "SCRM_BRAND"
#: Tables ``/evaluate_campaign`` reads from the data directory.
EVALUATION_TABLES = ("orders", "campaign_touches", "identities")


class ServingSetupError(RuntimeError):
    """The service cannot start; the message says which command creates what is missing."""


@dataclass
class Resolved:
    """Requested ids matched to rows of :attr:`ServingState.scores`."""

    ids: list[str]  # distinct requested ids that were found, in request order
    positions: np.ndarray  # their row positions in the scores / features frames
    not_found: list[str]  # distinct requested ids that match nobody, in request order


@dataclass
class EvaluationData:
    """Orders and campaign touches of the data directory, with a key map covering every key in them."""

    orders: pd.DataFrame
    touches: pd.DataFrame | None
    key_to_person: pd.DataFrame
    data_end: pd.Timestamp | None
    known_keys: pd.Index | None = None  # customer keys of orders and identities: touches of others are left out


def newest_valid_snapshot_dir(data_dir: str | Path) -> tuple[date, Path]:
    """``(as_of, directory)`` of the newest snapshot, checked by :func:`validate_snapshot`.

    Raises
    ------
    ServingSetupError
        No data directory, no snapshot, or a snapshot the service cannot serve; the message names the fix.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ServingSetupError(
            f"data directory {data_dir} does not exist; create one with "
            f"`scrm simulate --customers 5000 --seed 7 --out {data_dir}` or point --data / SCRM_DATA_DIR at yours"
        )
    try:
        as_of, path = newest_snapshot_dir(data_dir)
    except FileNotFoundError as exc:
        raise ServingSetupError(f"{exc} (the service serves the newest snapshot)") from None
    try:
        validate_snapshot(path)
    except SnapshotError as exc:
        raise ServingSetupError(
            f"{exc}; rebuild it with `scrm features build --data {data_dir} --as-of {as_of.isoformat()}`"
        ) from None
    return as_of, path


def find_snapshot(data_dir: str | Path) -> Snapshot:
    """The newest snapshot under ``data_dir/features``, validated and read, or :class:`ServingSetupError`."""
    import pyarrow as pa

    as_of, path = newest_valid_snapshot_dir(data_dir)
    try:
        snapshot = load_snapshot(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ServingSetupError(
            f"snapshot {path} cannot be read ({type(exc).__name__}: {exc}); rebuild it with "
            f"`scrm features build --data {data_dir} --as-of {as_of.isoformat()}`"
        ) from None
    try:
        check_pii_fingerprint(snapshot.manifest)
    except PIIKeyError as exc:
        raise ServingSetupError(str(exc)) from None
    return snapshot


def serving_brand(data_dir: str | Path) -> str:
    """The brand served: ``SCRM_BRAND`` (set by ``scrm serve --brand``), else the data directory's brand."""
    from features.brand import BrandConfigError, check_brand_id, load_brand

    raw = os.environ.get(BRAND_ENV, "").strip()
    try:
        return check_brand_id(raw, BRAND_ENV) if raw else load_brand(data_dir).brand
    except BrandConfigError as exc:
        raise ServingSetupError(str(exc)) from None


def check_champions(data_dir: str | Path, as_of: date | None = None, *, brand: str | None = None,
                    ) -> dict[str, int]:
    """Versions holding alias ``champion`` of the brand's churn and CLV models; :class:`ServingSetupError` naming
    the fix."""
    from training import registry, tracking

    brand = brand or serving_brand(data_dir)
    names = {kind: registry.model_name(brand, kind) for kind in ("churn", "clv")}
    versions = {kind: registry.champion_version(name) for kind, name in names.items()}
    missing = [names[kind] for kind, v in versions.items() if v is None]
    if missing:
        when = as_of.isoformat() if as_of is not None else "DATE"
        raise ServingSetupError(
            f"no champion version of brand {brand}'s registered model(s) {', '.join(missing)} in "
            f"{tracking.tracking_uri()}; create them with `scrm train all --data {data_dir} --as-of {when}` (or "
            "set MLFLOW_TRACKING_URI to the store that holds them)"
        )
    return versions


def _aligned(scores: pd.DataFrame, people: np.ndarray, where) -> pd.DataFrame:
    """Published batch scores with row i = snapshot row i (``people``: its person_ids); :class:`ServingSetupError`
    when they do not match."""
    scores = scores.reset_index(drop=True)
    if len(scores) != len(people) or not np.array_equal(_strings(scores["person_id"]), people):
        raise ServingSetupError(f"the published scores next to {where} are not those of its snapshot "
                                "(different people or order); publish again with `scrm refresh --force`")
    return scores


def _strings(values: pd.Series) -> np.ndarray:
    """Ids as an object array of Python ``str`` (Arrow-backed or object columns alike)."""
    return values.astype(str).to_numpy(dtype=object)


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A text column as (int32 codes, vocabulary): ``vocabulary[codes]`` gives the values, None where missing
    (code -1 picks the vocabulary's last entry, None)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    vocabulary = np.array([*(str(u) for u in uniques), None], dtype=object)
    return codes.astype(np.int32), vocabulary


def _float_or_none(values: np.ndarray) -> list[float | None]:
    return [None if v != v else float(v) for v in values.tolist()]  # v != v: NaN


class ServingState:
    """Champion models, the snapshot and the snapshot's batch scores, indexed by person_id and customer_key.

    Parameters
    ----------
    models : Models
        Fitted churn and CLV models with their registry versions.
    snapshot : Snapshot
        A feature snapshot (``features.pipeline.load_snapshot``).
    rules : TierRules, optional
        Tier rules; when omitted, those in force for ``data_dir`` (``SCRM_TIERS``, else ``tiers:`` in its
        ``brand.yaml``, else the packaged ``training/tiers.yaml``).
    data_dir : Path, optional
        The data directory the snapshot came from (read by :meth:`evaluation_data`; its ``brand.yaml`` gives
        the consent policy :attr:`consent` that ``/target`` and ``/lookalike`` apply, default ``opt_out``).
    scores : DataFrame, optional
        Batch scores of this snapshot already made (a publication's ``scores.parquet``); scored at start if not.
    publication : str, optional
        The publication (``DATA/published/<name>``) the state is read from.
    reasons : bool
        Compute everyone's churn reasons in the start-up batch pass and serve them by lookup (default); without,
        every ``/score`` with reasons computes them for its people.
    reason_jobs : int, optional
        Threads of that pass (default: the CPU count, at most 4).
    """

    def __init__(self, models: Models, snapshot: Snapshot, *, rules: TierRules | None = None,
                 data_dir: str | Path | None = None, scores: pd.DataFrame | None = None,
                 publication: str | None = None, reasons: bool = True, reason_jobs: int | None = None) -> None:
        started = time.perf_counter()
        self.models = models
        self.snapshot = snapshot
        try:
            models.check_snapshot(snapshot.manifest)
        except FeatureConfigMismatch as exc:
            raise ServingSetupError(f"snapshot {snapshot.path}: {exc}") from None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.rules = rules or resolve_tier_rules(data_dir=self.data_dir)
        self.consent: str = load_brand(self.data_dir).consent if self.data_dir is not None else "opt_out"
        #: the uplift champion's predictions on this snapshot, set on the first /target incremental_margin
        self.uplift_cache: tuple | None = None
        self.as_of: date = snapshot.as_of
        self.features = snapshot.features.reset_index(drop=True)
        people = _strings(self.features["person_id"])
        row_of_person = dict(zip(people.tolist(), range(len(people)), strict=True))
        if len(row_of_person) != len(people):
            raise ServingSetupError(f"snapshot {snapshot.path}: person_id is not unique; rebuild it")
        #: people of the snapshot (the lookups below answer without touching the frames: O(ids) per request)
        self.n_people = len(people)
        self.identity = snapshot.identity
        #: the publication (``DATA/published/<name>``) the state was read from, None when scored at start
        self.publication = publication
        #: batch scores of everyone, row i = features row i (the output of training.scoring.score)
        jobs = reason_jobs if reason_jobs is not None else max(1, min(4, os.cpu_count() or 1))
        if scores is None:
            self.scores = score(self.features, models, as_of=self.as_of, tier_rules=self.rules,
                                with_reasons=reasons, n_jobs=jobs)
        else:
            self.scores = _aligned(scores, people, snapshot.path)
            if "predicted_tier" not in self.scores.columns and models.horizons["clv"] is not None:
                # published before the tier forecast: the same columns batch scoring adds now
                self.scores = with_predicted_tiers(self.scores, self.features, self.rules,
                                                   horizon_days=models.horizons["clv"])
        #: everyone's churn reasons from the batch pass (None: computed per request)
        self.reason_lookup: ReasonLookup | None = self._lookup_from_scores(people)
        self._stale_lookup_logged = False
        scored = time.perf_counter()
        eligible = self.scores["eligible"].to_numpy(dtype=bool)
        self.clv_cut: float | None = clv_value_cut(self.scores, self.rules) if eligible.any() else None
        # id → row: every customer_key of a served person, then every person_id (a key never shadows a person_id)
        key_rows = pd.Index(people, dtype=object).get_indexer(_strings(self.identity["person_id"]))
        known = key_rows >= 0
        self._row_of: dict[str, int] = dict(zip(_strings(self.identity["customer_key"])[known].tolist(),
                                                key_rows[known].tolist(), strict=True))
        self._row_of.update(row_of_person)
        self._columns(people)
        self._evaluation: EvaluationData | None = None
        self._evaluation_lock = threading.Lock()
        log.info("%s %d people (%d eligible) as of %s with churn v%s, clv v%s in %.1f s, indexed in %.1f s",
                 "scored" if scores is None else f"read the published scores ({publication}) of",
                 len(self.scores), int(eligible.sum()), self.as_of, models.churn_version, models.clv_version,
                 scored - started, time.perf_counter() - scored)

    # --- lookups -------------------------------------------------------------------------------------------------

    @property
    def model_versions(self) -> dict[str, str | None]:
        return self.models.versions

    def resolve(self, ids: list[str]) -> Resolved:
        """Match ids (person_id, else customer_key) to rows; duplicates answered once, request order kept."""
        distinct = list(dict.fromkeys(str(i) for i in ids))
        row_of = self._row_of
        rows = [row_of.get(d, -1) for d in distinct]
        return Resolved(
            ids=[d for d, r in zip(distinct, rows, strict=True) if r >= 0],
            positions=np.array([r for r in rows if r >= 0], dtype=np.intp),
            not_found=[d for d, r in zip(distinct, rows, strict=True) if r < 0],
        )

    def reasons(self, positions: np.ndarray) -> list[list[dict]]:
        """Top 3 churn reasons for the given rows (empty for people who are not scored).

        Looked up in :attr:`reason_lookup` when it holds the served churn model's reasons on the served snapshot;
        otherwise computed for these rows by the batch pass's own :func:`~training.scoring.reason_table`.
        """
        positions = np.asarray(positions, dtype=np.intp)
        lookup = self.reason_lookup
        if self.reasons_by_lookup():
            return lookup.reasons(positions)
        if lookup is not None and not self._stale_lookup_logged:
            self._stale_lookup_logged = True
            log.warning("the reason lookup (churn v%s, as of %s) is not that of the served churn v%s as of %s: "
                        "computing reasons per request", lookup.churn_version, lookup.as_of,
                        self.models.churn_version, self.as_of)
        table = reason_table(self.features.iloc[positions], self.models.churn, eligible=self._eligible[positions])
        return reasons_from_table(table)

    def reasons_by_lookup(self) -> bool:
        """Whether :meth:`reasons` is a lookup: :attr:`reason_lookup` holds the served churn model's reasons on
        the served snapshot, row for row."""
        lookup = self.reason_lookup
        return lookup is not None and len(lookup) == self.n_people and lookup.serves(
            self.models.churn_version, self.as_of, self.models.churn)

    def _lookup_from_scores(self, people: np.ndarray | None = None) -> ReasonLookup | None:
        """The reasons of :attr:`scores` as a lookup (None when they have no reason columns).

        Scores computed here are the served model's on the served snapshot; scores written by ``scrm score``
        say in their ``churn_model_version`` and ``feature_as_of`` columns what they were computed with.
        """
        s = self.scores
        if not set(REASON_COLUMNS) <= set(s.columns):
            return None
        if {"churn_model_version", "feature_as_of"} <= set(s.columns):
            try:
                return ReasonLookup.from_scores(s, people if people is not None else _strings(self.features["person_id"]))
            except ValueError as exc:
                log.warning("the batch scores' reasons cannot be served (%s): computing them per request", exc)
                return None
        return ReasonLookup(s, churn_version=self.models.churn_version, as_of=self.as_of, model=self.models.churn)

    def _columns(self, people: np.ndarray) -> None:
        """Column arrays of the scores so that a lookup is a numpy take of the requested rows: floats, and text
        as codes into a vocabulary (NaN/NA as None); ``person_id`` as the object array ``people``."""
        s = self.scores
        self._num = {c: pd.to_numeric(s[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                     for c in NUMERIC_COLUMNS if c in s.columns}
        none = (np.full(len(s), -1, dtype=np.int32), np.array([None], dtype=object))
        self._text = {c: _codes(s[c]) if c in s.columns else none for c in TEXT_COLUMNS if c != "person_id"}
        self._people = people
        self._eligible = s["eligible"].fillna(False).to_numpy(dtype=bool)
        opt = s["marketing_opt_out"].astype(object).to_numpy(dtype=object, copy=True)
        opt[pd.isna(opt)] = None  # unknown consent stays unknown (null), never shown as opted out or in
        self._opt_out = opt
        self._next_date = pd.to_datetime(s["expected_next_order_date"]).to_numpy(dtype="datetime64[D]")

    def _num_at(self, col: str, positions: np.ndarray) -> list[float | None]:
        if col not in self._num:  # a column these scores do not carry (e.g. no CLV model): null, like text
            return [None] * len(positions)
        return _float_or_none(self._num[col][positions])

    def _text_at(self, col: str, positions: np.ndarray) -> list:
        if col == "person_id":
            return self._people[positions].tolist()
        codes, vocabulary = self._text[col]
        return vocabulary[codes[positions]].tolist()

    def score_records(self, positions: np.ndarray, *, reasons: list[list[dict]] | None = None) -> list[dict]:
        """Response records (see :class:`serving.schemas.CustomerScore`, without ``id``) for the given rows.

        ``reasons`` are those of :meth:`reasons` for the same rows (empty lists when ``None``).
        """
        positions = np.asarray(positions, dtype=np.intp)
        num = {c: self._num_at(c, positions) for c in self._num}
        text = {c: self._text_at(c, positions) for c in TEXT_COLUMNS}
        eligible = self._eligible[positions].tolist()
        opt_out = self._opt_out[positions].tolist()
        dates = self._next_date[positions]
        next_date = [None if np.isnat(d) else d.item() for d in dates]
        if reasons is None:
            reasons = [[] for _ in range(len(positions))]

        def score_int(v: float | None) -> int | None:
            return None if v is None else int(v)

        horizons = self.models.horizons  # the same numbers as the scores' *_horizon_days columns
        records = []
        for i in range(len(positions)):
            clv = None
            if num["clv_mean"][i] is not None:
                clv = {"mean": num["clv_mean"][i], "p10": num["clv_p10"][i], "p90": num["clv_p90"][i]}
            records.append({
                "person_id": text["person_id"][i],
                "eligible": eligible[i],
                "ineligible_reason": text["ineligible_reason"][i],
                "churn_probability": num["churn_probability"][i],
                "churn_horizon_days": horizons["churn"],
                "clv": clv,
                "clv_horizon_days": horizons["clv"],
                "expected_orders": num["expected_orders"][i],
                "p_alive": num["p_alive"][i],
                "expected_next_order_date": next_date[i],
                "rfm": {
                    "r": score_int(num["r_score"][i]),
                    "f": score_int(num["f_score"][i]),
                    "m": score_int(num["m_score"][i]),
                    "segment": text["rfm_segment"][i],
                    "segment_en": text["rfm_segment_en"][i],
                },
                "lifecycle_stage": text["lifecycle_stage"][i],
                "tier": {k: text[k][i] for k in ("tier", "tier_en", "action_segment", "action_segment_zh",
                                                 "value_band", "risk_band")},
                "reasons": reasons[i],
                "marketing_opt_out": opt_out[i],
                "orders": int(num["orders"][i] or 0),
                "total_spend": num["total_spend"][i] or 0.0,
                "spend_365d": num["spend_365d"][i] or 0.0,
                "recency_days": num["recency_days"][i],
                "tenure_days": num["tenure_days"][i],
            })
        return records

    def tier_records(self, positions: np.ndarray) -> list[dict]:
        """Tier records (see :class:`serving.schemas.CustomerTier`, without ``id``) for the given rows."""
        positions = np.asarray(positions, dtype=np.intp)
        num = {c: self._num_at(c, positions) for c in ("spend_365d", "clv_mean", "churn_probability",
                                                         "predicted_spend_365d", "p_tier_up", "p_tier_down",
                                                         "p_tier_stay")}
        text = {c: self._text_at(c, positions) for c in ("person_id", "tier", "tier_en", "action_segment",
                                                           "action_segment_zh", "value_band", "risk_band",
                                                           "not_scored_reason", "predicted_tier",
                                                           "predicted_tier_en", "tier_move")}
        horizon = self.models.horizons["clv"]
        at = self.as_of + timedelta(days=horizon) if horizon is not None else None

        def probability(i: int) -> dict | None:
            p = {k: num[f"p_tier_{k}"][i] for k in ("up", "down", "stay")}
            return None if any(v is None for v in p.values()) else p

        return [
            {**{c: text[c][i] for c in text}, "spend_365d": num["spend_365d"][i] or 0.0,
             "clv_mean": num["clv_mean"][i], "churn_probability": num["churn_probability"][i],
             "predicted_spend_365d": num["predicted_spend_365d"][i], "tier_move_probability": probability(i),
             "tier_horizon_days": horizon, "predicted_at": at}
            for i in range(len(positions))
        ]

    def tier_rules_info(self) -> dict:
        seg = self.rules.action_segments
        return {
            "member_tiers": [t.model_dump() for t in self.rules.member_tiers],
            "value_quantile": seg.value_quantile,
            "clv_cut": self.clv_cut,
            "churn_threshold": seg.churn_threshold,
        }

    # --- campaign evaluation data (read on first use) ------------------------------------------------------------

    def evaluation_data(self) -> EvaluationData:
        """Orders and campaign touches of the data directory, validated by the data contract, read once.

        Only the tables campaign evaluation needs are read (identities only for the keys the brand knows) (the contract validates them exactly as in
        ``scrm validate``; quarantined rows go to a temporary directory, never into the data directory).
        """
        with self._evaluation_lock:
            if self._evaluation is None:
                self._evaluation = self._read_evaluation_data()
            return self._evaluation

    def _read_evaluation_data(self) -> EvaluationData:
        from features.contract import load_dataset
        from features.contract_rules import known_customer_keys
        from features.pipeline import complete_key_map

        if self.data_dir is None:
            raise ServingSetupError("no data directory to read campaign_touches and orders from")
        with tempfile.TemporaryDirectory(prefix="scrm-eval-") as tmp:
            view = Path(tmp) / "data"
            view.mkdir()
            for name in EVALUATION_TABLES:
                for suffix in (".parquet", ".csv"):
                    source = self.data_dir / f"{name}{suffix}"
                    if source.exists():
                        (view / source.name).symlink_to(source.resolve())
            dataset = load_dataset(view, rejects_dir=Path(tmp) / "rejects")
            key_map = complete_key_map(dataset, self.identity)
        return EvaluationData(orders=dataset.orders, touches=dataset.campaign_touches, key_to_person=key_map,
                              data_end=dataset.data_end,
                              known_keys=known_customer_keys(dataset.orders, dataset.identities))
