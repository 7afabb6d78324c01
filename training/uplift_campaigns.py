"""Campaign uplift from the brand's own tables: learn from past campaigns with a control group, judge on the latest.

**Rows** (:func:`campaign_rows`). For each campaign of ``campaign_touches`` with a treatment and a control group,
one row per touched ``person_id`` (One-ID as known before the send; people sent to both groups are left out):
the feature snapshot (``features.pipeline.build_features`` plus ``training.frames.derive_features``) as of the
campaign's *send date* — the day of its first send, so every feature uses data strictly before the send — the
channel of the messaged account (``touch_channel``, known at the send), ``treated`` (1 treatment, 0 control),
``converted`` (a paid order on any of the person's accounts from the person's send to the end of the
``window_days``-th day after the send date), ``spend`` (the paid amount in that window) and, when ``events`` has
``campaign_id``, ``engaged`` (an event attributed to the campaign on any of the person's accounts in the same
window: a message open or click, a coupon claim).

**Time layout** (:func:`plan_campaigns`): the *evaluation* campaign is the latest whose outcome window ends by
``until`` (the backtest's ``as_of + H``, within the data); the *training* campaigns are those whose outcome
windows end on or before the evaluation campaign's send date and the backtest's ``as_of``, so the model learns
only from outcomes before ``as_of`` (like the churn and CLV models) and before the send it is judged on. The model
is the average of the T- and the X-learner with coarse trees and the interaction logit
(:class:`training.uplift.UpliftModel` ``learner="txl"``: :func:`campaign_learner`) fitted on all of them, with
the engagement propensity learnt from ``engaged`` as one more input (``UpliftModel.fit(engaged=...)``); each
learner's Qini on the latest training campaign (fitted on the earlier ones) is reported. Choosing T or X by that
Qini (what ``learner="auto"`` does) flipped between them from one as-of date to the next, and the average ranked
better than the chosen learner on every simulated evaluation campaign tried; adding the interaction logit to the
average ranked better again on every one (docs/decisions.md).

**Policies** (:func:`evaluate_policies`), each a ranking of the evaluation campaign's people: the model's
predicted uplift, ``by_churn_risk`` (churn probability of the backtest's churn model on the snapshot at the send,
highest first), ``by_clv`` (its CLV model's mean), ``random`` (seeded) and, on simulated data with
``truth_campaign_effects.parquet``, ``oracle`` (the true effect on the purchase probability). Each is judged on
the campaign's randomised outcome: ``qini`` and ``auuc`` (normalised areas, :mod:`training.uplift`),
``uplift_at_30pct`` (treated − control conversion rate in the top 30%) and ``incremental_at_30pct`` (that times
the number of people in the top 30%: the extra conversions treating them would bring). With the truth,
``true_incremental_at_30pct`` and ``true_incremental_spend_at_30pct`` add the true expected extra conversions and
spend in the top 30%, and ``true_qini`` the Qini of the ranking on the true effects (:func:`true_qini`; 1 for the
oracle): noise-free, so policies can be told apart on small control groups.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.backend import as_date
from features.pipeline import model_columns
from training.frames import LABEL_COLUMNS, FeatureCache, derive_features
from training.uplift import (
    CAMPAIGN_ENSEMBLE,
    LEARNERS,
    UpliftModel,
    bootstrap_ate,
    bootstrap_metrics,
    qini_auc,
    uplift_metrics,
)

log = logging.getLogger(__name__)

#: Days after the send date that count as the campaign's response window (the simulator's ``uplift_window_days``).
WINDOW_DAYS = 14
#: Share of the evaluation campaign targeted by every policy in the headline figures.
TOP_SHARE = 0.3
#: Fewest persons per group for a campaign to be used.
MIN_GROUP = 20
CHANNEL_FEATURE = "touch_channel"
#: Column of :func:`campaign_rows` (when ``events`` has ``campaign_id``): an event attributed to the campaign in the
#: window (a message open or click, a coupon claim). An outcome, never a feature: it trains the engagement model.
ENGAGED = "engaged"
#: Tree settings of the campaign model: at most 7 leaves, each with at least 1% of the training rows (and 100).
#: Coarser than ``UpliftModel``'s defaults (15 leaves, 100 rows): a campaign's uplift is a few points on rates of
#: 20-30%, and a few dozen thousand rows hold too little of it for finer trees (docs/decisions.md).
CAMPAIGN_LEAVES = 7
MIN_LEAF_SHARE = 0.01


def campaign_sends(touches: pd.DataFrame | None, *, min_group: int = MIN_GROUP) -> pd.DataFrame:
    """Campaigns with both groups: ``campaign_id``, ``send_date`` (day of the first send), touch counts per group.

    Sorted by send date; empty when there are no touches or no campaign has both groups of ``min_group`` rows.
    """
    columns = ["campaign_id", "send_date", "n_treatment", "n_control"]
    if touches is None or touches.empty:
        return pd.DataFrame(columns=columns)
    t = pd.DataFrame({"campaign_id": touches["campaign_id"].astype(str),
                      "sent_ts": pd.to_datetime(touches["sent_ts"]),
                      "group": touches["group"].astype(str).str.lower()})
    out = t.groupby("campaign_id").agg(send_date=("sent_ts", "min"),
                                       n_treatment=("group", lambda g: int((g == "treatment").sum())),
                                       n_control=("group", lambda g: int((g == "control").sum()))).reset_index()
    out["send_date"] = out["send_date"].dt.normalize()
    out = out[(out["n_treatment"] >= min_group) & (out["n_control"] >= min_group)]
    return out.sort_values(["send_date", "campaign_id"]).reset_index(drop=True)[columns]


def window_end(send_date, window_days: int = WINDOW_DAYS) -> pd.Timestamp:
    """First instant after a campaign's outcome window: the end of the ``window_days``-th day after the send date."""
    return pd.Timestamp(send_date).normalize() + pd.Timedelta(days=int(window_days) + 1)


def plan_campaigns(sends: pd.DataFrame, until, *, train_until=None,
                   window_days: int = WINDOW_DAYS) -> tuple[str, list[str]] | None:
    """``(evaluation campaign, training campaigns)`` or None when no campaign has an earlier one to learn from.

    The evaluation campaign is the latest whose window ends by ``until`` and that has at least one training
    campaign: a campaign whose window ended by the evaluation campaign's send date and by ``train_until`` (the
    backtest's ``as_of``: the model learns only from outcomes before it, like the churn and CLV models).
    """
    until = pd.Timestamp(until)
    ends = sends["send_date"].map(lambda d: window_end(d, window_days))
    for i in reversed(range(len(sends))):
        if ends.iloc[i] > until:
            continue
        send = sends["send_date"].iloc[i]
        bound = send if train_until is None else min(send, pd.Timestamp(train_until))
        train = sends.loc[ends <= bound, "campaign_id"].tolist()
        if train:
            return str(sends["campaign_id"].iloc[i]), train
    return None


def evaluation_rows(cache: FeatureCache, sends: pd.DataFrame, until, *, train_until=None,
                    window_days: int = WINDOW_DAYS) -> tuple[str, list[str], pd.DataFrame, pd.DataFrame] | None:
    """``(evaluation campaign, training campaigns, their rows, the evaluation campaign's rows)`` as
    :func:`plan_campaigns` lays them out (None when it finds no evaluation campaign)."""
    plan = plan_campaigns(sends, until, train_until=train_until, window_days=window_days)
    if plan is None:
        return None
    eval_id, train_ids = plan
    train = pd.concat([campaign_rows(cache, c, window_days=window_days) for c in train_ids], ignore_index=True)
    return eval_id, train_ids, train, campaign_rows(cache, eval_id, window_days=window_days)


def campaign_rows(cache: FeatureCache, campaign_id: str, *, window_days: int = WINDOW_DAYS) -> pd.DataFrame:
    """One row per person touched by ``campaign_id`` (see the module docstring); the send date in ``send_date``."""
    data = cache.data
    touches = data.campaign_touches
    camp = touches.loc[touches["campaign_id"].astype(str) == str(campaign_id)]
    sent = pd.to_datetime(camp["sent_ts"])
    send_date = sent.min().normalize()
    identity = cache.identity_at(as_date(send_date))
    mapping = identity.drop_duplicates("customer_key").set_index("customer_key")["person_id"]
    frame = pd.DataFrame({"person_id": camp["customer_key"].map(mapping).to_numpy(), "sent_ts": sent.to_numpy(),
                          "treated": (camp["group"].astype(str).str.lower() == "treatment").to_numpy(np.int8),
                          "customer_key": camp["customer_key"].astype(str).to_numpy()})
    if "channel" in camp.columns:
        frame[CHANNEL_FEATURE] = camp["channel"].astype("string").to_numpy()
    frame = frame.dropna(subset=["person_id"]).sort_values("sent_ts", kind="mergesort")
    per = frame.groupby("person_id", sort=True).agg(sent_ts=("sent_ts", "min"), lo=("treated", "min"),
                                                    hi=("treated", "max"), customer_key=("customer_key", "first"),
                                                    **({CHANNEL_FEATURE: (CHANNEL_FEATURE, "first")}
                                                       if CHANNEL_FEATURE in frame else {}))
    per = per[per["lo"] == per["hi"]].rename(columns={"hi": "treated"}).drop(columns="lo")
    # outcome: paid orders of the person's accounts from the send to the end of the window
    orders = data.orders
    paid = orders
    if "status" in orders.columns:
        paid = orders.loc[orders["status"].fillna("paid").astype(str).str.lower() == "paid"]
    end = window_end(send_date, window_days)
    ts = pd.to_datetime(paid["order_ts"])
    near = (ts >= send_date) & (ts < end)
    o = pd.DataFrame({"person_id": paid.loc[near, "customer_key"].map(mapping).to_numpy(),
                      "order_ts": ts[near].to_numpy(),
                      "amount": pd.to_numeric(paid.loc[near, "amount"], errors="coerce").fillna(0.0).to_numpy()})
    o = o.merge(per["sent_ts"], left_on="person_id", right_index=True, how="inner")
    o = o[o["order_ts"] >= o["sent_ts"]]
    spend = o.groupby("person_id")["amount"].sum()
    per["converted"] = per.index.isin(spend.index).astype(np.int8)
    per["spend"] = spend.reindex(per.index, fill_value=0.0).to_numpy()
    events = data.events
    if events is not None and "campaign_id" in events.columns:
        # engagement: an event attributed to this campaign on any of the person's accounts, from the send to the end
        camp_events = events.loc[events["campaign_id"] == str(campaign_id)]
        e = pd.DataFrame({"person_id": camp_events["customer_key"].astype(str).map(mapping).to_numpy(),
                          "event_ts": pd.to_datetime(camp_events["event_ts"]).to_numpy()})
        e = e.merge(per["sent_ts"], left_on="person_id", right_index=True, how="inner")
        e = e[(e["event_ts"] >= e["sent_ts"]) & (e["event_ts"] < end)]
        per[ENGAGED] = per.index.isin(e["person_id"]).astype(np.int8)
    per = per.reset_index()
    feats = derive_features(cache.features(as_date(send_date)))
    cols = [c for c in model_columns(feats) if c not in LABEL_COLUMNS]
    rows = per.merge(feats[["person_id", *cols]], on="person_id", how="left")
    rows.insert(1, "campaign_id", str(campaign_id))
    rows.insert(2, "send_date", send_date)
    return rows


def feature_columns(rows: pd.DataFrame) -> list[str]:
    """The model inputs of :func:`campaign_rows` output: snapshot columns and the touch channel."""
    skip = {"person_id", "campaign_id", "send_date", "sent_ts", "customer_key", "treated", "converted", "spend", ENGAGED}
    return [c for c in rows.columns if c not in skip]


def engaged_outcome(rows: pd.DataFrame) -> pd.Series | None:
    """The ``engaged`` column of campaign rows for ``UpliftModel.fit(engaged=...)``; None without one."""
    return rows[ENGAGED] if ENGAGED in rows.columns else None


def campaign_learner(learner: str, n_rows: int, *, random_state: int = 0) -> UpliftModel:
    """An unfitted :class:`UpliftModel` with the campaign model's tree settings for ``n_rows`` training rows."""
    return UpliftModel(learner, num_leaves=CAMPAIGN_LEAVES,
                       min_child_samples=max(100, round(MIN_LEAF_SHARE * n_rows)), random_state=random_state)


def fit_campaign_model(train: pd.DataFrame, *, learner: str = CAMPAIGN_ENSEMBLE,
                       random_state: int = 0) -> tuple[UpliftModel, dict]:
    """The uplift model on the training campaigns' rows: by default the average of the T+X learner and the
    interaction logit (``txl``).

    Each learner's Qini on the latest training campaign (fitted on the earlier ones) is reported in
    ``validation_qini`` (``t``, ``x``, ``tx``, ``l``, ``txl``); with ``learner="auto"`` the T- or X-learner with the higher one
    is refitted on all rows. The default does not choose: on one campaign the choice is noise (see the module
    docstring). Returns the model refitted on all rows and ``{"learner", "validation_campaign",
    "validation_qini"}``.
    """
    cols = feature_columns(train)
    order = train.groupby("campaign_id")["send_date"].min().sort_values()
    info: dict = {"validation_campaign": None, "validation_qini": {}}
    if len(order) >= 2:
        val_id = order.index[-1]
        val, fit = train[train["campaign_id"] == val_id], train[train["campaign_id"] != val_id]
        if fit["treated"].nunique() == 2 and val["treated"].nunique() == 2:
            m = campaign_learner(CAMPAIGN_ENSEMBLE, len(fit), random_state=random_state).fit(
                fit[cols], fit["treated"], fit["converted"], engaged=engaged_outcome(fit))
            for name, pred in m.predict_each(val[cols]).items():
                info["validation_qini"][name] = qini_auc(val["converted"], val["treated"], pred)
            info["validation_campaign"] = str(val_id)
    if learner == "auto":
        finite = {k: v for k in LEARNERS if np.isfinite(v := info["validation_qini"].get(k, float("nan")))}
        learner = max(finite, key=finite.get) if finite else "t"
    model = campaign_learner(learner, len(train), random_state=random_state).fit(
        train[cols], train["treated"], train["converted"], engaged=engaged_outcome(train))
    info["learner"] = model.learner_
    treated = train["treated"] == 1
    info["engaged_share"] = (float(train.loc[treated, ENGAGED].mean())
                             if model.engagement_ is not None else None)
    return model, info


def policy_figures(y: np.ndarray, t: np.ndarray, score: np.ndarray, truth: pd.DataFrame | None) -> dict:
    """Qini, AUUC, uplift and incremental conversions in the top 30% of one ranking (true figures with truth)."""
    m = uplift_metrics(y, t, score)
    top = int(len(y) * TOP_SHARE)
    at = m["uplift_at"][str(TOP_SHARE)]
    out = {"qini": m["qini"], "auuc": m["auuc"], "uplift_at_30pct": at,
           "incremental_at_30pct": at * top if np.isfinite(at) else float("nan")}
    if truth is not None:
        effect = truth["effect_purchase"].to_numpy(float)
        first = np.argsort(-score, kind="mergesort")[:top]
        out["true_incremental_at_30pct"] = float(effect[first].sum())
        out["true_incremental_spend_at_30pct"] = float(truth["effect_spend"].to_numpy()[first].sum())
        out["true_qini"] = true_qini(effect, score)
    return out


def true_qini(effect: np.ndarray, score: np.ndarray) -> float:
    """Qini of a ranking on the true effects: the area between the cumulative true effect of the top ``k`` and
    the random line, over the same area of the ranking by the true effect (1 = the oracle, 0 = random).

    Free of the control group's sampling noise, so it tells rankings apart where the outcome Qini cannot.
    """
    def area(order: np.ndarray) -> float:
        return float(np.trapezoid(np.r_[0.0, np.cumsum(effect[order])]) - len(effect) * effect.sum() / 2.0)

    best = area(np.argsort(-effect, kind="mergesort"))
    return area(np.argsort(-score, kind="mergesort")) / best if best > 0 else float("nan")


def truth_effects(source: Path | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    """The simulator's true effects per row (``effect_purchase``, ``effect_spend``), None without the truth."""
    if source is None:
        return None
    path = Path(source) / "truth_campaign_effects.parquet"
    if not path.exists():
        return None
    eff = pd.read_parquet(path, columns=["campaign_id", "customer_key", "effect_purchase", "effect_spend"])
    eff["campaign_id"] = eff["campaign_id"].astype(str)
    got = rows[["campaign_id", "customer_key"]].merge(eff, on=["campaign_id", "customer_key"], how="left")
    if got["effect_purchase"].isna().any():
        return None
    return got[["effect_purchase", "effect_spend"]].reset_index(drop=True)


def baseline_scores(cache: FeatureCache, rows: pd.DataFrame, models) -> dict[str, np.ndarray]:
    """``by_churn_risk`` and ``by_clv`` scores of a campaign's people: ``models`` on the snapshot at the send.

    People the models do not score (too new, no paid order) are ranked last, tied: no evidence to target them.
    """
    from training.scoring import score

    send = as_date(rows["send_date"].iloc[0])
    snap = cache.features(send)
    scored = score(snap[snap["person_id"].isin(rows["person_id"])], models, as_of=send, with_intervals=False)
    got = rows[["person_id"]].merge(scored[["person_id", "churn_probability", "clv_mean"]], on="person_id",
                                    how="left")
    def last_when_missing(s: pd.Series) -> np.ndarray:
        values = s.to_numpy(float)
        floor = np.nanmin(values) - 1.0 if np.isfinite(values).any() else 0.0
        return np.where(np.isfinite(values), values, floor)

    return {"by_churn_risk": last_when_missing(got["churn_probability"]),
            "by_clv": last_when_missing(got["clv_mean"])}


def evaluate_policies(rows: pd.DataFrame, model: UpliftModel, *, baselines: dict[str, np.ndarray] | None = None,
                      truth: pd.DataFrame | None = None, random_state: int = 0, n_boot: int = 200) -> dict:
    """Figures of the model, the given baseline rankings, a seeded random one and (with truth) the oracle."""
    y, t = rows["converted"].to_numpy(float), rows["treated"].to_numpy(float)
    pred = model.predict(rows[feature_columns(rows)])
    block = {"model": policy_figures(y, t, pred, truth), "baselines": {}}
    boot = bootstrap_metrics(y, t, pred, n_boot=n_boot, random_state=random_state)
    block["model_ci"] = {"qini": boot["qini"]["ci"], "uplift_at_30pct": boot["uplift_at"][str(TOP_SHARE)]["ci"]}
    for name, s in (baselines or {}).items():
        block["baselines"][name] = policy_figures(y, t, s, truth)
    rng = np.random.default_rng(random_state)
    block["baselines"]["random"] = policy_figures(y, t, rng.random(len(y)), truth)
    if truth is not None:
        block["oracle"] = policy_figures(y, t, truth["effect_purchase"].to_numpy(float), truth)
    return block


def uplift_backtest(cache: FeatureCache, until, *, train_until=None, models=None, window_days: int = WINDOW_DAYS,
                    random_state: int = 0, n_boot: int = 200) -> dict | None:
    """The ``uplift`` block of ``scrm backtest``: None when the data has no campaign with a control group.

    ``until`` bounds the evaluation campaign's outcome window (the backtest's ``as_of + H``), ``train_until``
    the training campaigns' (its ``as_of``); ``models`` (``training.scoring.Models``) give the by-churn-risk and
    by-CLV policies.
    """
    data = cache.data
    sends = campaign_sends(data.campaign_touches)
    if sends.empty:
        return None
    limit = min(pd.Timestamp(until), data.data_end + pd.Timedelta(days=1))
    planned = evaluation_rows(cache, sends, limit, train_until=train_until, window_days=window_days)
    if planned is None:
        return {"skipped": f"{len(sends)} campaign(s) with a control group, but none whose {window_days}-day window "
                           f"ends by {limit.date()} after another campaign's window ended"}
    eval_id, train_ids, train, rows = planned
    model, info = fit_campaign_model(train, random_state=random_state)
    truth = truth_effects(data.source, rows)
    block = {
        "evaluation_campaign": eval_id,
        "send_date": rows["send_date"].iloc[0].date().isoformat(),
        "window_days": int(window_days),
        "training_campaigns": train_ids,
        "n_train": int(len(train)),
        "n_eval": int(len(rows)),
        "n_eval_treatment": int(rows["treated"].sum()),
        "n_eval_control": int((rows["treated"] == 0).sum()),
        "ate": bootstrap_ate(rows["converted"], rows["treated"], n_boot=n_boot, random_state=random_state),
        **info,
        **evaluate_policies(rows, model, baselines=None if models is None else baseline_scores(cache, rows, models),
                            truth=truth, random_state=random_state, n_boot=n_boot),
    }
    if truth is not None:
        block["true_ate"] = float(truth["effect_purchase"].mean())
    return block
