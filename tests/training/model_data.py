"""Small simulated data and fitted models shared by the churn / CLV / training / scoring / backtest tests.

Everything is built once per test session (``functools.cache``) from fixed seeds: a 1,500-customer simulated
brand written as a data directory and loaded through the data contract, its feature cache, and churn and CLV
models fitted with tiny LightGBM settings on two rolling cutoffs.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

AS_OF = date(2025, 7, 1)
HORIZON = 90
N_CUTOFFS = 1
#: LightGBM settings small enough for unit tests (one thread: the suite behaves the same on a busy box).
FAST = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 20, "n_jobs": 1}
FAST_CLV = {**FAST, "interval_estimators": 20, "interval_draws": 100}

_ROOT = Path(tempfile.mkdtemp(prefix="scrm-model-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


@dataclass
class Small:
    data_dir: Path
    dataset: object
    cache: object


#: BTYD options without Pareto/NBD, whose fit takes ~30 s on degenerate data (the default chain is slow-tested).
QUICK_CHAIN = {"chain": [("bg_nbd", 0.0), ("bg_nbd", 0.01), ("mbg_nbd", 0.0)]}


@functools.cache
def small(n_customers: int = 1500, seed: int = 3, *, config: str = "default", quick_btyd: bool = False) -> Small:
    """A simulated brand (``config="frozen"``: nobody ever drops out, so BG/NBD degenerates to a, b → 0).

    ``quick_btyd`` fits BTYD with ``QUICK_CHAIN``.
    """
    from features.contract import load_dataset
    from features.simulate import simulate, write_dataset
    from features.simulate.config import SimConfig
    from training.frames import FeatureCache

    cfg = SimConfig(mu_mean=1e-7) if config == "frozen" else None
    data_dir = _ROOT / f"sim-{n_customers}-{seed}-{config}"
    if not data_dir.exists():
        write_dataset(simulate(n_customers, seed=seed, config=cfg), data_dir)
    dataset = load_dataset(data_dir)
    cache = FeatureCache(dataset, btyd_params=QUICK_CHAIN if quick_btyd else None)
    return Small(data_dir, dataset, cache)


@functools.cache
def fitted_churn(*, fast: bool = True):
    """The churn model on ``small()``: tiny LightGBM settings, or (``fast=False``) the defaults (a few seconds)."""
    from training.fitting import fit_churn

    return fit_churn(small().cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **(FAST if fast else {}))


@functools.cache
def fitted_clv(*, fast: bool = True):
    """The CLV model on ``small()``: tiny LightGBM settings, or (``fast=False``) the defaults (a few seconds)."""
    from training.fitting import fit_clv

    return fit_clv(small().cache, AS_OF, horizon_days=HORIZON, n_cutoffs=N_CUTOFFS, **(FAST_CLV if fast else {}))


@functools.cache
def cdnow_dir() -> Path:
    """CDNOW (the 2,357-customer sample shipped in lifetimes) as an orders-only data directory."""
    from features.sources.cdnow import write_cdnow

    out = _ROOT / "cdnow"
    write_cdnow(out)
    return out
