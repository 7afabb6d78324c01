"""Point-in-time correctness: rows on or after ``as_of`` never change a feature."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.dataset import Dataset
from features.pipeline import build_features
from features.simulate import simulate

AS_OF = date(2025, 7, 1)
CUT = pd.Timestamp(AS_OF)


@pytest.fixture(scope="module")
def sim():
    tables = simulate(1500, seed=11)
    identity = tables["truth_keys"].assign(person_id=lambda d: "p_" + d["true_person"].astype(str))
    return tables, identity[["customer_key", "person_id"]]


def _dataset(tables: dict, *, before_only: bool) -> Dataset:
    t = {name: tables[name].copy() for name in ("orders", "events", "identities", "campaign_touches")}
    if before_only:
        t["orders"] = t["orders"][t["orders"]["order_ts"] < CUT]
        t["events"] = t["events"][t["events"]["event_ts"] < CUT]
        t["campaign_touches"] = t["campaign_touches"][t["campaign_touches"]["sent_ts"] < CUT]
    return Dataset(**t)


def _future_rows(tables: dict, identity: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Extra rows on and after as_of that a leaky pipeline would pick up."""
    rng = np.random.default_rng(5)
    keys = identity["customer_key"].to_numpy()
    some = rng.choice(keys, 300)
    offsets = rng.integers(0, 3 * 86400, 300)
    offsets[0] = 0  # as_of 00:00 exactly
    at = CUT + pd.to_timedelta(offsets, unit="s")
    orders = pd.DataFrame({
        "order_id": [f"future{i}" for i in range(300)], "customer_key": some, "order_ts": at,
        "amount": rng.gamma(2.0, 100.0, 300), "channel": "tmall", "status": "paid", "discount": 5.0,
        "item_count": 1, "category": "brand_new_category", "store_id": None,
    })
    events = pd.DataFrame({"customer_key": some, "event_ts": at, "event_type": "cart", "channel": "tmall",
                           "campaign_id": None})
    # treatment touches just before as_of (in both datasets) whose response window reaches past it: the
    # orders after as_of inside those windows must not count as responses; and touches after as_of
    recent = pd.DataFrame({"campaign_id": "recent", "customer_key": some[:150],
                           "sent_ts": CUT - pd.to_timedelta(rng.integers(1, 13 * 86400, 150), unit="s"),
                           "group": "treatment", "channel": "tmall", "offer_cost": 1.0})
    touches = pd.DataFrame({"campaign_id": "future", "customer_key": some, "sent_ts": at,
                            "group": "treatment", "channel": "tmall", "offer_cost": 1.0})
    # brand-new keys of existing people, only active after as_of
    new_keys = pd.DataFrame({"customer_key": [f"jd:new{i}" for i in range(20)],
                             "person_id": rng.choice(identity["person_id"].to_numpy(), 20)})
    orders_new = orders.iloc[:20].assign(customer_key=new_keys["customer_key"].to_numpy(),
                                         order_id=[f"newkey{i}" for i in range(20)])
    return {"orders": pd.concat([orders, orders_new]), "events": events, "campaign_touches": touches,
            "recent_touches": recent, "identity": new_keys}


def test_rows_after_as_of_change_no_feature(sim):
    tables, identity = sim
    quiet = Console(quiet=True)
    extra = _future_rows(tables, identity)
    tables = dict(tables, campaign_touches=pd.concat([tables["campaign_touches"], extra["recent_touches"]]))
    before = build_features(_dataset(tables, before_only=True), AS_OF, identity=identity, console=quiet)

    full = _dataset(tables, before_only=False)
    full.orders = pd.concat([full.orders, extra["orders"]], ignore_index=True)
    full.events = pd.concat([full.events, extra["events"]], ignore_index=True)
    full.campaign_touches = pd.concat([full.campaign_touches, extra["campaign_touches"]], ignore_index=True)
    assert (full.orders["order_ts"] >= CUT).sum() > 1000  # the simulator's own future plus ours
    identity_full = pd.concat([identity, extra["identity"]], ignore_index=True)
    after = build_features(full, AS_OF, identity=identity_full, console=quiet)

    assert len(before) > 1000
    assert list(before.columns) == list(after.columns)
    pd.testing.assert_frame_equal(before, after, check_exact=False, rtol=1e-12, atol=1e-9)


def test_shuffled_input_gives_identical_features(sim):
    tables, identity = sim
    quiet = Console(quiet=True)
    a = build_features(_dataset(tables, before_only=False), AS_OF, identity=identity, console=quiet)
    shuffled = _dataset(tables, before_only=False)
    rng = np.random.default_rng(1)
    shuffled.orders = shuffled.orders.iloc[rng.permutation(len(shuffled.orders))]
    shuffled.events = shuffled.events.iloc[rng.permutation(len(shuffled.events))]
    b = build_features(shuffled, AS_OF, identity=identity.iloc[::-1], console=quiet)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-9)


def test_links_known_after_as_of_merge_no_one(sim):
    """One-ID in time: phones bound on or after as_of (pairs of buyers of different people) change no feature."""
    tables, _ = sim
    quiet = Console(quiet=True)
    rng = np.random.default_rng(8)
    ident = tables["identities"].copy()
    buyers = tables["orders"].loc[tables["orders"]["order_ts"] < CUT, "customer_key"].unique()
    pairs = rng.choice(buyers, (60, 2), replace=False)
    rows = ident["customer_key"].isin(pairs.ravel()).to_numpy()
    phone = pd.Series({k: f"future-phone-{i}" for i, pair in enumerate(pairs) for k in pair})
    ident["phone_hash"] = ident["customer_key"].map(phone).where(rows)
    ident.loc[rows, "linked_ts"] = CUT + pd.to_timedelta(rng.integers(0, 5 * 86400, rows.sum()), unit="s")
    ident.loc[np.flatnonzero(rows)[0], "linked_ts"] = CUT  # exactly at as_of 00:00 is not before it
    full = _dataset(dict(tables, identities=ident), before_only=False)
    before = _dataset(dict(tables, identities=ident.assign(phone_hash=pd.Series(dtype="str"))), before_only=True)

    a = build_features(before, AS_OF, console=quiet)  # identity=None: One-ID as known before AS_OF
    b = build_features(full, AS_OF, console=quiet)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-9)
    # the same links used regardless of time would merge the pairs (so the equality above is not vacuous)
    from features.identity import resolve_identities

    timeless = resolve_identities(full)
    assert (timeless.person_of(pd.Series(pairs[:, 0])).to_numpy()
            == timeless.person_of(pd.Series(pairs[:, 1])).to_numpy()).all()
    assert len(build_features(full, AS_OF, identity=timeless.key_to_person, console=quiet)) < len(b)
