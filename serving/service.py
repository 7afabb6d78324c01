"""The BentoML service marketing systems call: scores, tiers, lookalike audiences, campaign targeting, evaluation.

Start it with ``scrm serve --data D`` (a thin wrapper over ``bentoml serve serving.service:ScrmService`` that sets
``SCRM_DATA_DIR``). At start the service checks that the data directory has a feature snapshot and that the
registry has ``champion`` versions of ``churn`` and ``clv`` — if not, it refuses to start and says which command
creates them — then loads both in a background thread: ``/readyz`` answers 503 until the whole snapshot is
scored, ``/healthz`` answers 200 throughout (503 if loading failed). Every answer is computed by shared code:

- ``POST /score``: rows of :func:`training.scoring.score` over the snapshot (scored once at start) + reasons;
- ``POST /tier``: :func:`training.decisions.tiers.assign_tiers` and
  :func:`training.decisions.tier_forecast.predict_tiers` (both applied by ``score``) and the rules in force;
- ``POST /lookalike``: :func:`training.audience.lookalike_audience` (fits, logs to the MLflow ``lookalike``);
- ``POST /target``: :func:`training.decisions.targeting.select_audience` (``/target.csv``: ``to_csv``);
- ``POST /evaluate_campaign``: :func:`training.decisions.campaigns.evaluate_campaign`.

The service follows ``scrm refresh``: a new publication (``DATA/published/current``) or a moved ``champion`` is
picked up within ``SCRM_RELOAD_SECONDS`` or at once on ``POST /admin/reload`` (``SCRM_ADMIN_TOKEN``), without a
restart and without dropping a request (:mod:`serving.reload`); with a publication, start-up reads its scores.

Every response carries ``model_versions`` and ``feature_as_of``. Bad requests get a 400 whose ``detail[].loc``
names the field (pydantic's format, also used for problems only the shared code can see, such as an unknown
campaign: the ``field`` of its ``InputError``); :mod:`serving.auth` adds the bearer token, JSON-only bodies and
the body size limit.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import ServiceUnavailable
from bentoml.validators import ContentType
from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from features.errors import InputError
from serving.auth import RequestGuard, install_one_line_4xx_logs, positive_env
from serving.metrics import ServedGauges, install_route_labels
from serving.openapi import install_openapi_fixes
from serving.reload import Reloader, Source, current_source, release_memory
from serving.schemas import (
    EvaluateRequest,
    EvaluateResponse,
    LookalikeRequest,
    LookalikeResponse,
    ScoreRequest,
    ScoreResponse,
    TargetRequest,
    TargetResponse,
    TierRequest,
    TierResponse,
)
from serving.state import ServingSetupError, ServingState, check_champions, find_snapshot, serving_brand

log = logging.getLogger("bentoml.scrm")  # under BentoML's logger, so `bentoml serve` prints it

DATA_DIR_ENV = "SCRM_DATA_DIR"
#: /score and /tier answer up to this many people directly on the event loop (about a millisecond per 50).
INLINE_MAX_IDS = 500
#: Seconds a request may take before BentoML answers 504 (lookalike fits over 1M people take ~half a minute);
#: ``SCRM_REQUEST_TIMEOUT`` overrides it. Admission control (503 + Retry-After) is in :mod:`serving.auth`.
REQUEST_TIMEOUT = positive_env("SCRM_REQUEST_TIMEOUT", 600)
#: Lookups answered in a few milliseconds at tens of requests per second: not traced. BentoML records an
#: OpenTelemetry span for every request and every message it sends (even with no tracing exporter configured);
#: each is a few hundred objects for the garbage collector, and under a burst the objects of every queued request
#: made full collections so long and frequent that the service stayed saturated after the burst ended.
UNTRACED_ROUTES = ("/score", "/tier")
#: Garbage-collector thresholds once a state is served (CPython's default is 700, 10, 10). The state itself is
#: frozen (``gc.freeze``); what the collector still sees is requests in flight, and a young collection every 700
#: allocations promoted their objects to the old generation while they were alive, so a backlog made full
#: collections of all of them frequent. A larger first threshold lets most request objects die by reference
#: counting before a collection sees them; cyclic garbage is still collected.
GC_THRESHOLDS = (20_000, 20, 20)


# --- errors ------------------------------------------------------------------------------------------------------


def request_error(model: type[BaseModel], loc: tuple[str | int, ...], message: str, value: Any = None
                  ) -> ValidationError:
    """A pydantic ``ValidationError`` for ``model`` at ``loc``: BentoML answers it with 400 and the field."""
    return ValidationError.from_exception_data(
        model.__name__,
        [InitErrorDetails(type=PydanticCustomError("invalid_request", "{reason}", {"reason": message}),
                          loc=loc, input=value)],
    )


#: Shared-code parameters that a request field becomes (``lookalike_audience(seed_ids=...)`` ← ``seed_customer_ids``).
_REQUEST_FIELD = {"seed_ids": "seed_customer_ids", "lookalike_scores": "seed_customer_ids"}


def _loc_of(exc: ValueError, model: type[BaseModel], default: tuple[str, ...]) -> tuple[str | int, ...]:
    """The request field an error is about: its typed ``field`` when ``model`` has that field, else ``default``."""
    field = exc.field if isinstance(exc, InputError) else ()
    if not field:
        return default
    head = _REQUEST_FIELD.get(str(field[0]), field[0])
    return (head, *field[1:]) if head in model.model_fields else default


@contextlib.contextmanager
def bad_request(model: type[BaseModel], default_loc: tuple[str, ...]) -> Iterator[None]:
    """Turn a ``ValueError`` from shared code (its input rules) into a 400 naming the field."""
    try:
        yield
    except ValidationError:
        raise
    except ValueError as exc:
        raise request_error(model, _loc_of(exc, model, default_loc), str(exc)) from None


def respond(model: type[BaseModel], **data: Any) -> BaseModel:
    """The response model built from ``data``; a mismatch is our bug, so a 500, never a 400 blamed on the caller."""
    try:
        return model(**data)
    except ValidationError as exc:
        raise RuntimeError(f"{model.__name__} does not match its schema: {exc}") from None


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as dicts of plain Python values (NaN / NA → None), column-wise for speed."""
    lists = {}
    for col in columns:
        values = frame[col]
        if pd.api.types.is_float_dtype(values.dtype):
            arr = values.to_numpy(dtype=float, na_value=np.nan)
            lists[col] = [None if v != v else v for v in arr.tolist()]
        elif pd.api.types.is_integer_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
            lists[col] = values.tolist()
        else:
            lists[col] = [None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v
                          for v in values.tolist()]
    return [dict(zip(columns, row, strict=True)) for row in zip(*(lists[c] for c in columns), strict=True)]


def _holdout(metrics: dict[str, float]) -> dict:
    def get(key: str) -> float | None:
        v = metrics.get(f"holdout.{key}")
        return None if v is None or v != v else float(v)

    out = {k: get(k) for k in ("recall_at_1pct", "recall_at_5pct", "recall_at_10pct", "lift_at_1pct",
                               "lift_at_5pct", "lift_at_10pct", "auc")}
    for key in ("n_seeds", "n_candidates"):
        v = get(key)
        out[key] = None if v is None else int(v)
    return out


# --- the service ---------------------------------------------------------------------------------------------------


@bentoml.service(name="scrm", traffic={"timeout": REQUEST_TIMEOUT}, workers=1, threads=4,
                 tracing={"excluded_urls": [rf"{route}(\?|$)" for route in UNTRACED_ROUTES]})
class ScrmService:
    """Churn, CLV, tiers, lookalike audiences and budgeted campaign targeting for marketing systems."""

    def __init__(self) -> None:
        try:
            self._start()
        except ServingSetupError as exc:
            _stop_server(exc)
            raise

    def _start(self) -> None:
        from training import tracking

        tracking.configure()
        raw = os.environ.get(DATA_DIR_ENV, "").strip()
        if not raw:
            raise ServingSetupError(
                f"{DATA_DIR_ENV} is not set: start the service with `scrm serve --data D` (D holds the data and "
                "its feature snapshots under D/features)"
            )
        self.data_dir = Path(raw)
        self.brand = serving_brand(self.data_dir)
        source = current_source(self.data_dir, self.brand)
        if source.publication is None:  # with a publication, its own snapshot copy is checked while loading
            snapshot = find_snapshot(self.data_dir)
            check_champions(self.data_dir, snapshot.as_of, brand=self.brand)
        else:
            check_champions(self.data_dir, brand=self.brand)
        self.state: ServingState | None = None
        self.load_error: str | None = None
        self._loaded = threading.Event()
        self._heavy = threading.Lock()  # one lookalike fit at a time; /score and /tier never wait for it
        self.reloader = Reloader(self.data_dir, self._install, brand=self.brand,
                                 on_reload=lambda ok: ServedGauges.get().reloaded(ok) if _in_worker() else None)
        threading.Thread(target=self._load, args=(source,), name="scrm-load", daemon=True).start()

    def _load(self, source: Source) -> None:
        started = time.perf_counter()
        try:
            state = self.reloader.load(source)
            log.info("scrm service ready in %.1f s: %d people as of %s, churn v%s, clv v%s (%s)",
                     time.perf_counter() - started, len(state.scores), state.as_of, state.models.churn_version,
                     state.models.clv_version, state.publication or "scored at start")
            if _in_worker():  # in-process instances (tests) reload only when told to
                self.reloader.start()
        except Exception as exc:  # noqa: BLE001 - reported by /healthz and every call
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("scrm service failed to load: %s", self.load_error)
        finally:
            self._loaded.set()

    def _install(self, state: ServingState, source: Source) -> None:
        """Serve ``state`` from now on: one reference swap (a request keeps the state it started with)."""
        previous, self.state = self.state, state
        del previous  # the old state goes when its last in-flight request answers
        # the old state's objects were frozen with it: refcounting frees them (a state holds no reference cycles,
        # so nothing is left for a full collection, which would stall requests); return its pages to the OS
        release_memory()
        gc.freeze()  # the new snapshot's objects live until the next reload: keep them out of GC passes
        if _in_worker():  # in-process instances (tests) leave the interpreter's settings alone
            tune_gc()
            ServedGauges.get().loaded(state.as_of, state.models.versions)

    # --- probes ----------------------------------------------------------------------------------------------

    def __is_ready__(self) -> bool:
        return self.state is not None

    def __is_alive__(self) -> bool:
        return self.load_error is None

    def wait_until_ready(self, timeout: float | None = None) -> ServingState:
        """Block until the background load finished; the state, or ``ServingSetupError`` with the reason."""
        if not self._loaded.wait(timeout):
            raise TimeoutError(f"the service did not finish loading within {timeout} s")
        return self._ready()

    def _ready(self) -> ServingState:
        if self.state is not None:
            return self.state
        if self.load_error is not None:
            raise ServingSetupError(f"the service failed to load: {self.load_error}")
        raise ServiceUnavailable("the service is still loading its models and snapshot; retry when /readyz is 200")

    @staticmethod
    def _served(state: ServingState) -> dict:
        return {"model_versions": state.model_versions, "feature_as_of": state.as_of,
                "brand": state.models.brand, "horizon_days": state.models.horizons}

    # --- endpoints -------------------------------------------------------------------------------------------

    @bentoml.api(route="/score", input_spec=ScoreRequest)
    async def score(self, customer_ids: list[str], with_reasons: bool = True) -> ScoreResponse:
        """Churn probability, CLV with interval, RFM, lifecycle, tier and the top 3 churn reasons per person.

        Ids are person_id or customer_key (up to 10,000); unknown ids come back in ``not_found``. The numbers
        are the rows ``scrm score`` writes for the same snapshot and champions.
        """
        req = ScoreRequest(customer_ids=customer_ids, with_reasons=with_reasons)
        state = self._ready()
        found = state.resolve(req.customer_ids)

        def answer() -> ScoreResponse:
            reasons = state.reasons(found.positions) if req.with_reasons else None
            records = state.score_records(found.positions, reasons=reasons)
            for record, given in zip(records, found.ids, strict=True):
                record["id"] = given
            return respond(ScoreResponse, **self._served(state), results=records, not_found=found.not_found)

        # small lookups (reasons too, when the batch pass computed them) answer on the event loop; big batches and
        # reasons computed per request (TreeSHAP, ~0.5 ms per person) in a thread
        if len(found.positions) > INLINE_MAX_IDS or (req.with_reasons and not state.reasons_by_lookup()):
            return await anyio.to_thread.run_sync(answer)
        return answer()

    @bentoml.api(route="/tier", input_spec=TierRequest)
    async def tier(self, customer_ids: list[str]) -> TierResponse:
        """Member tier (trailing-12-month spend), value × risk action segment and the tier predicted at the end of the
        CLV horizon (``predicted_at``) with the move and its probabilities, with the rules in force."""
        req = TierRequest(customer_ids=customer_ids)
        state = self._ready()
        found = state.resolve(req.customer_ids)

        def answer() -> TierResponse:
            records = state.tier_records(found.positions)
            for record, given in zip(records, found.ids, strict=True):
                record["id"] = given
            return respond(TierResponse, **self._served(state), tiers=records, not_found=found.not_found,
                           rules=state.tier_rules_info())

        if len(found.positions) > INLINE_MAX_IDS:
            return await anyio.to_thread.run_sync(answer)
        return answer()

    @bentoml.api(route="/admin/reload")
    async def admin_reload(self, force: bool = False) -> dict:
        """Check for a new publication or champion now and swap to it (``force``: rebuild even if unchanged).

        Needs ``Authorization: Bearer <SCRM_ADMIN_TOKEN>``. Answers when the new state is served, with what is
        served; a state that cannot be built leaves the old one serving and answers 503 with the reason (the
        service is fine, the new publication or champion is not: fix it and call again).
        """
        self._ready()
        try:
            outcome = await anyio.to_thread.run_sync(lambda: self.reloader.check(force=force))
        except Exception as exc:  # noqa: BLE001 - the old state is still served; say why the new one is not
            raise ServiceUnavailable(f"reload failed, still serving the previous state: "
                                      f"{type(exc).__name__}: {exc}") from None
        state = self._ready()
        return {**outcome, "publication": state.publication, "reloads": self.reloader.reloads,
                "model_versions": state.model_versions, "feature_as_of": state.as_of.isoformat()}

    @bentoml.api(route="/lookalike", input_spec=LookalikeRequest)
    def lookalike(self, seed_customer_ids: list[str], size: int | None = None, fraction: float | None = None,
                  exclude_seed: bool = True, exclude_columns: list[str] | None = None,
                  random_state: int = 0) -> LookalikeResponse:
        """Rank everyone by similarity to a seed list (PU-learning, logged to MLflow experiment ``lookalike``).

        Returns the audience (opt-outs never included; unknown consent only under ``consent: opt_out``) and how well the model finds a held-out 20% of the seed
        (recall and lift at 1/5/10% of the population).
        """
        req = LookalikeRequest(seed_customer_ids=seed_customer_ids, size=size, fraction=fraction,
                               exclude_seed=exclude_seed, exclude_columns=exclude_columns,
                               random_state=random_state)
        state = self._ready()
        result = self._fit_lookalike(state, req.seed_customer_ids, model=LookalikeRequest, size=req.size,
                                     fraction=req.fraction, exclude_seed=req.exclude_seed,
                                     exclude_columns=req.exclude_columns, random_state=req.random_state)
        report = result.seed_report
        seed_report = {
            "n_given": len(req.seed_customer_ids),
            "n_valid": int(report.get("n_valid", 0)),
            "n_duplicates": int(report.get("n_duplicates", 0)),
            "n_unknown": int(report.get("n_unknown_ids", 0)),
            "unknown_examples": [str(x) for x in report.get("unknown_id_examples", [])],
        }
        return respond(LookalikeResponse, **self._served(state),
                       audience=_records(result.audience, ["person_id", "score", "rank"]),
                       holdout=_holdout(result.metrics), seed_report=seed_report, mlflow_run_id=result.run_id,
                       excluded=result.excluded, notes=result.notes)

    def _fit_lookalike(self, state: ServingState, seeds: list[str], *, model: type[BaseModel], **kwargs):
        from training.audience import lookalike_audience

        unknown = [c for c in (kwargs.get("exclude_columns") or []) if c not in state.features.columns]
        if unknown:
            raise request_error(model, ("exclude_columns",),
                                f"exclude_columns: unknown feature column(s) {unknown[:10]}", unknown[:10])
        with self._heavy, bad_request(model, ("seed_customer_ids",)):
            return lookalike_audience(state.features, seeds, identity=state.identity, as_of=state.as_of,
                                      consent=state.consent, fingerprint=state.snapshot.manifest.get("inputs"),
                                      **kwargs)

    def _select(self, campaign: dict):
        from training.decisions.targeting import select_audience

        req = TargetRequest.model_validate(campaign)
        state = self._ready()
        lookalike_scores, quality = None, None
        if req.objective == "lookalike":
            fitted = self._fit_lookalike(state, req.seed_customer_ids, model=TargetRequest, fraction=1.0,
                                         exclude_seed=True, random_state=req.random_state)
            lookalike_scores = fitted.audience.set_index("person_id")["score"]
            quality = _holdout(fitted.metrics)
        uplift_scores, uplift_version = None, None
        if req.objective == "incremental_margin":
            uplift_scores, uplift_version = self._uplift_scores(state)
        with bad_request(TargetRequest, ()):
            result = select_audience(state.scores, None, req.spec(), lookalike_scores=lookalike_scores,
                                     assumptions=req.assumptions, rules=state.rules, consent=state.consent,
                                     uplift_scores=uplift_scores)
        if uplift_version is not None:
            result.summary["uplift"]["model_version"] = uplift_version
        return state, result, quality

    def _uplift_scores(self, state: ServingState):
        """The registered uplift champion's predictions on the served snapshot (computed once per snapshot), or a
        400 naming ``objective`` when the brand has none usable (as /evaluate_campaign without campaign_touches):
        `scrm train uplift` registers one."""
        from training.uplift_model import load_uplift

        with self._heavy:
            cached = state.uplift_cache
            if cached is None:
                try:
                    loaded = load_uplift(state.models.brand, as_of=state.as_of, data_hint=str(self.data_dir))
                except LookupError as exc:
                    raise request_error(TargetRequest, ("objective",), f"incremental_margin: {exc}",
                                        "incremental_margin") from None
                cached = (loaded.estimator.scores(state.features), f"{loaded.name}/{loaded.version}")
                state.uplift_cache = cached
        return cached

    @bentoml.api(route="/target", input_spec=TargetRequest)
    def target(self, **campaign: Any) -> TargetResponse:
        """Budgeted campaign audience ranked by expected value per contact, with a deterministic control group.

        The treated part never costs more than ``budget``; marketing opt-outs are never selected, people with
        unknown consent only under the brand's ``consent: opt_out`` (brand.yaml; the default); the control
        group is the lowest sha256(campaign_id, person_id) share of the audience, so every call splits the same
        way. Value formulas per objective: docs/decisions.md.
        """
        state, result, quality = self._select(campaign)
        from training.decisions.targeting import AUDIENCE_COLUMNS

        return respond(TargetResponse, **self._served(state), summary=result.summary,
                       audience=_records(result.audience, list(AUDIENCE_COLUMNS)), lookalike=quality)

    @bentoml.api(route="/target.csv", input_spec=TargetRequest)
    def target_csv(self, **campaign: Any) -> Annotated[str, ContentType("text/csv")]:
        """The audience of ``/target`` as UTF-8 CSV (same body, same audience, best first)."""
        from training.decisions.targeting import to_csv

        _, result, _ = self._select(campaign)
        return to_csv(result)

    @bentoml.api(route="/evaluate_campaign", input_spec=EvaluateRequest)
    def evaluate_campaign(self, campaign_id: str, window_days: int = 30, level: float = 0.95) -> EvaluateResponse:
        """Treatment vs control conversion and revenue per head of a past campaign, with lift and its interval.

        Reads ``campaign_touches`` and ``orders`` of the data directory (once, on first use).
        """
        from training.decisions import campaigns

        req = EvaluateRequest(campaign_id=campaign_id, window_days=window_days, level=level)
        state = self._ready()
        data = state.evaluation_data()
        if data.touches is None or data.touches.empty:
            raise request_error(EvaluateRequest, ("campaign_id",),
                                f"campaign_id {req.campaign_id!r}: the data directory has no campaign_touches, "
                                "so there is no campaign to evaluate", req.campaign_id)
        with bad_request(EvaluateRequest, ("campaign_id",)):
            result = campaigns.evaluate_campaign(data.touches, data.orders, data.key_to_person, req.campaign_id,
                                                 window_days=req.window_days, level=req.level,
                                                 data_end=data.data_end, known_keys=data.known_keys)
        for lift in (result["conversion"], result["revenue_per_head"]):
            for key in ("absolute_ci", "relative_ci"):
                if lift[key] is not None:
                    lift[key] = {"low": lift[key][0], "high": lift[key][1]}
        return respond(EvaluateResponse, **self._served(state), **result)


def tune_gc() -> None:
    """The collector's thresholds for serving (:data:`GC_THRESHOLDS`); the served state is already frozen."""
    gc.set_threshold(*GC_THRESHOLDS)


def _in_worker() -> bool:
    """True inside a BentoML server worker (not when the class is instantiated directly, as in tests)."""
    from bentoml._internal.context import server_context

    return server_context.worker_index is not None


def _stop_server(exc: ServingSetupError) -> None:
    """A worker that cannot start stops the whole server instead of being restarted for ever.

    BentoML's process manager restarts a worker that dies in ``__init__``; the snapshot or the registry will not
    fix itself, so the worker logs the reason once and asks its parent (the ``bentoml serve`` process) to stop.
    """
    if not _in_worker():
        return
    log.error("scrm service cannot start: %s; stopping the server", exc)
    os.kill(os.getppid(), signal.SIGTERM)


ScrmService.add_asgi_middleware(RequestGuard)
install_route_labels(api.route for api in ScrmService.apis.values())
install_one_line_4xx_logs()
install_openapi_fixes()
