"""`scrm train uplift`: the brand's campaign uplift model, fitted on its past campaigns, logged and registered.

:func:`fit_uplift` learns from every campaign of ``campaign_touches`` with a treatment and a control group whose
outcome window (:data:`training.uplift_campaigns.WINDOW_DAYS` days after the send) ended by ``as_of``: the rows of
:func:`training.uplift_campaigns.campaign_rows` (features of the snapshot before each send, treated, paid order in
the window), the average of a T- and an X-learner with coarse trees and an interaction logit, with the propensity
to engage with a campaign as an input when the events name their campaign
(:func:`~training.uplift_campaigns.fit_campaign_model`), each learner's Qini on the latest campaign reported.
The touch channel is *not* a model input here: the channel of a future send is unknown when its audience is chosen.

The fitted :class:`CampaignUplift` also holds ``n_boot`` refits of the model on stratified bootstrap
resamples of the rows (treated and control resampled separately), whose spread gives the interval of the expected
incremental revenue of a targeted audience, and ``revenue_per_conversion``: the mean window spend of the treated
converters (the model predicts the change in the purchase probability, not in spend).

:func:`train_uplift` logs it to the MLflow experiment ``uplift`` (params, ``val.qini`` on the validation campaign,
the model) and registers it as ``<brand>.uplift_<window>d`` (``training.registry.model_name``); the ``champion``
alias moves through :func:`training.registry.promotion_gate` on ``val.qini``, as for churn and CLV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import InputError
from training import registry, tracking
from training.decisions.targeting import UpliftScores
from training.frames import FeatureCache, derive_features
from training.uplift import UpliftModel, _resamples
from training.uplift_campaigns import (
    CHANNEL_FEATURE,
    WINDOW_DAYS,
    campaign_learner,
    campaign_rows,
    campaign_sends,
    engaged_outcome,
    feature_columns,
    fit_campaign_model,
    window_end,
)

log = logging.getLogger(__name__)

KIND = "uplift"
GATE_METRIC = "val.qini"
#: Bootstrap refits kept with the model for the interval of the expected incremental revenue.
DEFAULT_N_BOOT = 20


class CampaignUplift:
    """A brand's uplift model (see the module doc): ``predict(features)`` → uplift per row of a feature snapshot."""

    def __init__(self, model: UpliftModel, boots: list[UpliftModel], revenue_per_conversion: float,
                 window_days: int = WINDOW_DAYS) -> None:
        self.model = model
        self.boots = boots
        self.revenue_per_conversion = float(revenue_per_conversion)
        self.window_days = int(window_days)
        self.feature_names_ = list(model.feature_names_)

    def _inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        return derive_features(features)[self.feature_names_]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted change in P(paid order within the window) if contacted, per row of ``features``."""
        return self.model.predict(self._inputs(features))

    def predict_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"uplift": self.predict(features)}, index=features.index)

    def scores(self, features: pd.DataFrame, *, level: float = 0.95) -> UpliftScores:
        """The predictions of the model and its bootstrap refits for ``select_audience(uplift_scores=...)``."""
        X = self._inputs(features)
        ids = features["person_id"].astype(str).to_numpy()
        draws = np.vstack([b.predict(X) for b in self.boots]) if self.boots else np.empty((0, len(X)))
        return UpliftScores(uplift=pd.Series(self.model.predict(X), index=pd.Index(ids, name="person_id")),
                            draws=draws, revenue_per_conversion=self.revenue_per_conversion,
                            window_days=self.window_days, level=level)


@dataclass
class UpliftFit:
    model: CampaignUplift
    info: dict  # learner, validation_campaign, validation_qini, campaigns, rows


def fit_uplift(cache: FeatureCache, as_of, *, random_state: int = 0, n_boot: int = DEFAULT_N_BOOT,
               window_days: int = WINDOW_DAYS) -> UpliftFit:
    """Fit :class:`CampaignUplift` on the campaigns whose outcome window ended by ``as_of``.

    Raises
    ------
    InputError
        No campaign with a treatment and a control group, or none whose window ended by ``as_of``.
    """
    sends = campaign_sends(cache.data.campaign_touches)
    if sends.empty:
        raise InputError("campaign_touches: no campaign with both a treatment and a control group (at least 20 "
                         "people each): an uplift model learns only from randomised campaigns",
                         field="campaign_touches")
    as_of_ts = pd.Timestamp(as_of)
    used = sends[sends["send_date"].map(lambda d: window_end(d, window_days)) <= as_of_ts]
    if used.empty:
        raise InputError(f"campaign_touches: {len(sends)} campaign(s) with a control group, but none whose "
                         f"{window_days}-day outcome window ended by {as_of_ts.date()}", field="campaign_touches")
    ids = used["campaign_id"].tolist()
    rows = pd.concat([campaign_rows(cache, c, window_days=window_days) for c in ids], ignore_index=True)
    rows = rows.drop(columns=[CHANNEL_FEATURE], errors="ignore")
    model, info = fit_campaign_model(rows, random_state=random_state)
    cols = feature_columns(rows)
    t = rows["treated"].to_numpy(float)
    boots = []
    for b, idx in enumerate(_resamples(t, n_boot, random_state)):
        sample = rows.iloc[idx]
        boots.append(campaign_learner(info["learner"], len(sample), random_state=random_state + b + 1).fit(
            sample[cols], sample["treated"], sample["converted"], engaged=engaged_outcome(sample)))
    converters = rows[(rows["treated"] == 1) & (rows["converted"] == 1)]
    rpc = float(converters["spend"].mean()) if len(converters) else 0.0
    info = {**info, "campaigns": ids, "n_rows": int(len(rows)), "n_treated": int(t.sum()),
            "n_control": int((t == 0).sum()), "revenue_per_conversion": rpc, "n_boot": int(n_boot),
            "window_days": int(window_days)}
    return UpliftFit(CampaignUplift(model, boots, rpc, window_days), info)


@dataclass
class UpliftTrainResult:
    name: str
    run_id: str
    version: str | None
    decision: object | None
    info: dict
    model: CampaignUplift


def train_uplift(data, as_of, *, random_state: int = 0, n_boot: int = DEFAULT_N_BOOT, register: bool = True,
                 brand: str | None = None, cache: FeatureCache | None = None) -> UpliftTrainResult:
    """Fit (:func:`fit_uplift`), log to MLflow experiment ``uplift``, register and gate on ``val.qini``."""
    import mlflow

    from training import pyfunc
    from training.train import dataset_brand

    brand = dataset_brand(data, brand)
    cache = cache or FeatureCache(data, random_state=random_state)
    fitted = fit_uplift(cache, as_of, random_state=random_state, n_boot=n_boot)
    info = fitted.info
    as_of_iso = pd.Timestamp(as_of).date().isoformat()
    name = registry.model_name(brand, KIND, info["window_days"])
    qini = info["validation_qini"].get(info["learner"], float("nan"))
    validation = info["validation_campaign"] or "none"
    tags = {"scrm.kind": KIND, "scrm.as_of": as_of_iso, registry.TAG_BRAND: brand,
            registry.TAG_HORIZON: str(info["window_days"]), registry.TAG_VALIDATION: validation}
    params = {"as_of": as_of_iso, "random_state": random_state, "learner": info["learner"],
              "window_days": info["window_days"], "n_campaigns": len(info["campaigns"]),
              "campaigns": ",".join(info["campaigns"])[:500], "validation_campaign": validation,
              "n_rows": info["n_rows"], "n_treated": info["n_treated"], "n_control": info["n_control"],
              "n_boot": info["n_boot"], "revenue_per_conversion": round(info["revenue_per_conversion"], 4),
              "engaged_share": (None if info["engaged_share"] is None else round(info["engaged_share"], 4))}
    with tracking.start_run(KIND, run_name=f"{KIND} {as_of_iso}", params=params, tags=tags) as run:
        tracking.log_dataset_fingerprint(data.fingerprint_dict())
        tracking.log_feature_list(fitted.model.feature_names_)
        metrics = {f"validation_qini.{k}": v for k, v in info["validation_qini"].items() if np.isfinite(v)}
        if np.isfinite(qini):
            metrics[GATE_METRIC] = float(qini)
        mlflow.log_metrics(metrics)
        tracking.log_json(info, "uplift.json")
        example = cache.features(pd.Timestamp(as_of).date()).head(5)
        logged = pyfunc.log_model(fitted.model, input_example=example,
                                  registered_model_name=name if register else None)
        version = str(logged.registered_model_version) if register else None
        run_id = run.info.run_id
    decision = None
    if version is not None:
        decision = registry.promotion_gate(name, version, metric=GATE_METRIC, value=qini, higher_is_better=True)
    return UpliftTrainResult(name, run_id, version, decision, info, fitted.model)


def load_uplift(brand: str, *, as_of=None, alias: str = registry.CHAMPION, data_hint: str = "D"
                ) -> registry.LoadedModel:
    """The brand's registered uplift model (``alias``, default champion), checked for use as of ``as_of``.

    Raises
    ------
    LookupError
        None registered (the message names `scrm train uplift`), or one of another brand or trained after ``as_of``.
    """
    return registry.load_for_scoring(brand, KIND, as_of=as_of, alias=alias, data_hint=data_hint)
