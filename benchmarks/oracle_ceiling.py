"""How close can any model get to the simulator's oracle? References built with the truth, at one ``as_of``.

The backtest's ``oracle`` scores every person with their *true* latent state: whether they are still alive on
``as_of`` and their exact purchase rate. A model only sees behaviour. This script measures how much of the gap
is information rather than modelling, on the snapshot at ``as_of`` (churn = no paid order in ``[as_of,
as_of + H)``):

* ``oracle``: the backtest's oracle (``features.simulate.oracle`` per person, campaigns included);
* ``true alive x posterior rate``: the true alive state, but the purchase rate estimated from the person's own
  orders (the BG/NBD posterior ``((α+T)/(α+T+t))^(r+x)``): what knowing *only* the alive state buys;
* ``P(alive | features) x posterior rate``: a LightGBM trained (2-fold cross-fitted) on the true alive labels —
  the best "is this person still alive" classifier the features allow, which no real model has;
* ``same-day LightGBM``: a LightGBM churn classifier cross-fitted on the outcomes of the evaluated window
  itself (2 folds) — an optimistic reference for any model on these features;
* for CLV the same-day Tweedie LightGBM and a LightGBM on the spend ranks (Spearman's own target), and the
  same-day Tweedie LightGBM given one true latent quantity as an extra feature (expected orders, spend per order,
  alive state): what each would add if behaviour revealed it.

    .venv/bin/python benchmarks/oracle_ceiling.py --data /tmp/sim50k --as-of 2025-07-01 --horizon 90
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a simulated data directory (with truth.parquet)")
    ap.add_argument("--as-of", default="2025-07-01")
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("SCRM_PII_KEY", "benchmark-key")

    import lightgbm as lgb

    from features.contract import load_dataset
    from training import metrics as M
    from training.backtest import oracle_frame
    from training.frames import FeatureCache
    from training.lgbm import feature_columns

    t = time.perf_counter()
    data = load_dataset(args.data)
    cache = FeatureCache(data)
    frame = cache.labelled([args.as_of], args.horizon)
    frame = frame[frame["tenure_days"] >= 7].reset_index(drop=True)  # the backtest's eligible people
    orc = frame[["person_id"]].merge(oracle_frame(args.data, cache.identity_at(args.as_of), args.as_of, args.horizon),
                                     on="person_id", how="left")
    if orc["p_purchase"].isna().all():
        raise SystemExit(f"{args.data} has no simulator truth")
    y = frame["churned"].to_numpy(dtype=int)
    spend = frame["future_spend"].to_numpy(dtype=float)
    alive = orc["p_alive"].to_numpy() > 0.5
    btyd = cache.btyd(args.as_of)
    r, alpha = btyd.params_["r"], btyd.params_["alpha"]
    x, T = frame["frequency"].to_numpy(dtype=float), frame["T"].to_numpy(dtype=float)
    # P(at least one order in H | alive): gamma posterior of the rate given x repeat purchases in T days
    p_buy_if_alive = 1.0 - ((alpha + T) / (alpha + T + args.horizon)) ** (r + x)

    cols = feature_columns(frame)
    X = frame[cols].to_numpy(dtype=np.float32)
    fold = np.random.default_rng(args.seed).random(len(frame)) < 0.5
    kw = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 100, "n_jobs": 1,
          "verbose": -1, "random_state": args.seed}

    def cross_fit(make, target):
        out = np.zeros(len(frame))
        for train in (fold, ~fold):
            model = make().fit(X[train], target[train])
            pred = model.predict_proba(X[~train])[:, 1] if hasattr(model, "predict_proba") else model.predict(X[~train])
            out[~train] = pred
        return out

    p_alive_hat = cross_fit(lambda: lgb.LGBMClassifier(**kw), alive.astype(int))
    same_day = cross_fit(lambda: lgb.LGBMClassifier(**kw), y)
    tweedie = cross_fit(lambda: lgb.LGBMRegressor(objective="tweedie", **kw), spend)
    true_orders = orc["expected_orders"].to_numpy()
    truths = {"true expected orders": true_orders,
              "true spend per order": orc["expected_spend"].to_numpy() / np.maximum(true_orders, 1e-12),
              "true alive state": alive.astype(float)}
    X_base = X
    with_truth = {}
    for name, column in truths.items():  # how much each latent quantity would add to the same-day model
        X = np.column_stack([X_base, column]).astype(np.float32)
        with_truth[name] = cross_fit(lambda: lgb.LGBMRegressor(objective="tweedie", **kw), spend)
    X = X_base
    ranks = cross_fit(lambda: lgb.LGBMRegressor(**kw), (np.argsort(np.argsort(spend)) / len(spend)))

    print(f"{args.data} as of {args.as_of}, horizon {args.horizon} days: {len(frame):,} eligible buyers, "
          f"churn rate {y.mean():.3f} ({time.perf_counter() - t:.0f} s)")
    print("\nchurn AUC")
    rows = [
        ("oracle (true alive state + true rates)", M.auc(y, 1 - orc["p_purchase"].to_numpy())),
        ("true alive x posterior rate", M.auc(y, -(alive * p_buy_if_alive))),
        ("P(alive | features, trained on the truth) x posterior rate", M.auc(y, -(p_alive_hat * p_buy_if_alive))),
        ("same-day LightGBM on the features (cross-fitted)", M.auc(y, same_day)),
        ("BTYD P(no order)", M.auc(y, btyd.p_no_purchase(frame, args.horizon))),
    ]
    for name, value in rows:
        print(f"  {name:62s} {value:.4f}")
    print(f"  (AUC of the alive classifier itself: {M.auc(alive.astype(int), p_alive_hat):.4f})")
    print("\nCLV Spearman / normalised Gini")
    for name, pred in (("oracle expected spend", orc["expected_spend"].to_numpy()),
                       ("same-day Tweedie LightGBM (cross-fitted)", tweedie),
                       ("same-day LightGBM on spend ranks (cross-fitted)", ranks),
                       *((f"same-day Tweedie LightGBM + {name} as a feature", pred)
                         for name, pred in with_truth.items()),
                       ("BTYD x Gamma-Gamma", btyd.expected_spend(frame, args.horizon))):
        print(f"  {name:62s} {M.spearman(spend, pred):.4f} / {M.gini_normalized(spend, pred):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
