"""Small fixed-seed data for the BTYD tests: daily summaries simulated from the BG/NBD process."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def simulate(n: int, *, r: float = 0.25, alpha: float = 30.0, a: float = 0.8, b: float = 2.4,
             p_drop: np.ndarray | None = None, max_T: int = 700, seed: int = 0) -> pd.DataFrame:
    """Daily lifetimes summaries from the BG/NBD process (``p_drop`` overrides the Beta(a, b) dropout draws)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, max_T + 1, n).astype(float)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n) if p_drop is None else p_drop
    k = rng.geometric(p)
    events = rng.poisson(lam * T)
    x = np.minimum(events, k)
    pos = x > 0
    tx = np.zeros(n)
    tx[pos] = T[pos] * rng.beta(x[pos], (events - x + 1)[pos])
    recency = np.where(pos, np.clip(np.ceil(tx), 1.0, T), 0.0)
    monetary = np.where(pos, np.round(rng.gamma(4.0, 30.0, n), 2), 0.0)
    return pd.DataFrame({"frequency": x.astype(float), "recency": recency, "T": T, "monetary_value": monetary},
                        index=pd.Index([f"p_{i:05d}" for i in range(n)], name="person_id"))


def lifetimes_fit(fitter_cls, *args, **kwargs):
    """A lifetimes fitter fitted on raw rows, warnings silenced (the reference of the parity tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitter_cls().fit(*args, **kwargs)
