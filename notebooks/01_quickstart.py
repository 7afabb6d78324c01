# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: simulate a brand, build features, train, score, look at the runs
#
# This walks through the daily job of scrm-models in Python. Everything here is what the `scrm` command does,
# so you can reproduce any step on the command line (`scrm --help`).
#
# Runs go to the MLflow store named by `MLFLOW_TRACKING_URI` (default: the project's `mlruns/mlflow.db`);
# open it with `make mlflow-ui` to click through them.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

N_CUSTOMERS = int(os.environ.get("SCRM_NB_CUSTOMERS", "5000"))
os.environ.setdefault("SCRM_DEV", "1")  # simulated data: the public development PII key is fine without SCRM_PII_KEY
workdir = Path(os.environ.get("SCRM_NB_WORKDIR") or tempfile.mkdtemp(prefix="scrm-quickstart-"))
data_dir = workdir / "data"

# %% [markdown]
# ## 1. A brand with known ground truth
# The simulator gives every person a latent purchase rate, dropout, spend level, channel mix and category
# preferences, with 618 / 双11 / 双12 spikes and a Chinese-New-Year dip. People hold 1–3 channel accounts
# (Tmall, JD, WeChat, Douyin, store) that One-ID has to link back together.

# %%
from features.simulate import simulate, write_dataset

tables = simulate(N_CUSTOMERS, seed=7)
write_dataset(tables, data_dir)
{name: len(frame) for name, frame in tables.items()}

# %%
orders = tables["orders"]
daily = orders.set_index("order_ts").resample("D")["amount"].sum()
ax = daily.plot(figsize=(10, 3), title="Daily paid amount: 618 and 双11 stand out")
ax.set_ylabel("CNY");

# %% [markdown]
# ## 2. Validate, link identities, build point-in-time features
# Validation quarantines bad rows with a reason; phones and unionids are hashed at ingest.
# Features use only rows strictly before `as_of`.

# %%
from features.contract import load_dataset
from features.identity import resolve_identities
from features.pipeline import build_features

AS_OF = "2026-01-01"
data = load_dataset(data_dir)
identity = resolve_identities(data, as_of=AS_OF)  # only the links known before AS_OF
identity.stats

# %%
features = build_features(data, AS_OF, identity=identity.key_to_person)
features[["person_id", "orders", "recency_days", "total_spend", "rfm_segment", "rfm_segment_en",
          "lifecycle_stage"]].head()

# %%
features["rfm_segment_en"].value_counts().plot.barh(title="RFM segments (buyers)");

# %% [markdown]
# ## 3. Train churn and CLV, with the promotion gate
# Each model is trained on several rolling cutoffs, validated on the latest complete window, logged to MLflow
# and registered; `champion` moves only when the new version is better.

# %%
from training.train import train_all

results = train_all(data, AS_OF, n_cutoffs=2)
for name, result in results.items():
    print(name, "v" + str(result.version), result.decision.decision, {k: round(v, 3) for k, v in result.metrics.items()})

# %% [markdown]
# ## 4. Score everyone with the champions
# The same `score` function serves batch scoring, the backtest and the HTTP service.

# %%
from training.scoring import load_champions, score
from training.train import dataset_brand

models = load_champions(brand=dataset_brand(data), as_of=AS_OF)  # this brand's champions (acme.churn_90d, ...)
scores = score(features, models, as_of=AS_OF)
scores[["person_id", "eligible", "churn_probability", "clv_mean", "clv_p10", "clv_p90", "tier",
        "action_segment"]].head()

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
scores["churn_probability"].plot.hist(bins=30, ax=axes[0], title="Churn probability (90 days)")
scores["clv_mean"].clip(upper=scores["clv_mean"].quantile(0.99)).plot.hist(bins=30, ax=axes[1],
                                                                          title="Expected spend (365 days)")
pd_tiers = scores.groupby(["tier_en", "action_segment"]).size().unstack(fill_value=0)
pd_tiers

# %% [markdown]
# ## 5. The runs
# `scrm runs list --experiment churn` prints the same table.

# %%
from training.runs import list_runs

list_runs("churn")
