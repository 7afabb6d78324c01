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
# # Comparing model runs (for analysts)
#
# Every training and backtest run lands in MLflow with its parameters, metrics, plots and a data fingerprint.
# This notebook queries runs with `MlflowClient`, plots metrics across runs, and uses `scrm`'s direction-aware
# comparison (AUC up is better, Brier down is better, |total error| down is better).
#
# If the store has fewer than two backtest runs, two are created here on a small simulated brand
# (two seeds of the models, same data).

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from mlflow import MlflowClient

from training import tracking

tracking.configure()
client = MlflowClient()
N_CUSTOMERS = int(os.environ.get("SCRM_NB_CUSTOMERS", "5000"))
os.environ.setdefault("SCRM_DEV", "1")  # simulated data: the public development PII key is fine without SCRM_PII_KEY

# %%
experiment = client.get_experiment_by_name("backtest")
existing = client.search_runs([experiment.experiment_id]) if experiment else []
if len(existing) < 2:
    from features.contract import load_dataset
    from features.simulate import simulate, write_dataset
    from training.backtest import run_backtest

    data_dir = Path(tempfile.mkdtemp(prefix="scrm-runs-")) / "data"
    write_dataset(simulate(N_CUSTOMERS, seed=11), data_dir)
    data = load_dataset(data_dir)
    for seed in (0, 1):
        run_backtest(data, "2025-07-01", 90, random_state=seed, n_cutoffs=2)
    experiment = client.get_experiment_by_name("backtest")

# %% [markdown]
# ## Runs as a table

# %%
runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=20)
table = pd.DataFrame([
    {"run_id": r.info.run_id[:8], "start": pd.Timestamp(r.info.start_time, unit="ms"),
     "as_of": r.data.params.get("as_of"), "seed": r.data.params.get("random_state"),
     "data": r.data.tags.get("scrm.data_fingerprint"),
     "churn AUC": r.data.metrics.get("churn.model.auc"),
     "churn AUC (recency rule)": r.data.metrics.get("churn.baselines.recency.auc"),
     "CLV Gini": r.data.metrics.get("clv.model.gini"),
     "CLV Gini (last period)": r.data.metrics.get("clv.baselines.last_period.gini")}
    for r in runs
])
table

# %% [markdown]
# ## Model against baselines, run by run

# %%
ax = table.set_index("run_id")[["churn AUC", "churn AUC (recency rule)", "CLV Gini", "CLV Gini (last period)"]].plot.bar(
    figsize=(9, 3), title="Model vs baselines per run")
ax.set_ylim(0, 1)
plt.xticks(rotation=0);

# %% [markdown]
# ## Direction-aware comparison
# `scrm runs compare --experiment backtest` prints the same; `--format json|csv` for other tools.

# %%
from training.runs import compare_runs, to_frame

comparison = compare_runs("backtest", max_results=2)
to_frame(comparison).head(20)

# %% [markdown]
# ## The HTML report of the latest run
# `scrm report --run-id ID --out report.html` writes the page a marketer can read; every run also carries it as
# the artifact `report.html`.

# %%
from training.report import build_report

out = build_report(runs[0].info.run_id, Path(tempfile.mkdtemp()) / "report.html")
print(out, out.stat().st_size, "bytes")
