"""One-ID: transitive merges, the junk-identifier guard, stable ids, and precision/recall against simulator truth."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from features.dataset import Dataset
from features.identity import IDENTIFIERS, resolve_identities
from features.identity import print_stats as print_identity_stats


def _dataset(identities: pd.DataFrame | None, *, order_keys=(), event_keys=(), touch_keys=()) -> Dataset:
    orders = pd.DataFrame({"order_id": [f"o{i}" for i in range(len(order_keys))], "customer_key": list(order_keys)})
    events = pd.DataFrame({"customer_key": list(event_keys)}) if event_keys else None
    touches = pd.DataFrame({"customer_key": list(touch_keys), "campaign_id": "c"}) if touch_keys else None
    return Dataset(orders=orders, events=events, identities=identities, campaign_touches=touches)


def _pid(key: str) -> str:
    return "p_" + hashlib.sha1(key.encode()).hexdigest()[:12]


def _persons(result) -> dict[str, str]:
    return dict(zip(result.key_to_person["customer_key"], result.key_to_person["person_id"], strict=True))


HAND = pd.DataFrame(
    {
        #             a—b share a phone, b—c a member card, c—d a unionid: a, b, c, d are one person (transitive)
        "customer_key": ["tmall:a", "jd:b", "jd:b", "wechat:c", "store:d", "tmall:e", "jd:f"],
        "phone_hash": ["h1", "h1", None, None, None, "h9", None],
        "unionid_hash": [None, None, None, "u1", "u1", None, "u7"],
        "member_card": [None, None, "M1", "M1", None, None, None],
    }
)


def test_transitive_merge_and_every_key_covered():
    ds = _dataset(HAND, order_keys=["tmall:a", "jd:f", "web:g"], event_keys=["douyin:h"], touch_keys=["web:g", "x:i"])
    result = resolve_identities(ds)
    persons = _persons(result)

    assert set(persons) == {"tmall:a", "jd:b", "wechat:c", "store:d", "tmall:e", "jd:f", "web:g", "douyin:h", "x:i"}
    assert persons["tmall:a"] == persons["jd:b"] == persons["wechat:c"] == persons["store:d"]
    # person_id = "p_" + sha1(smallest key of the component)[:12]
    assert persons["tmall:a"] == _pid(min(["tmall:a", "jd:b", "wechat:c", "store:d"]))
    assert len({persons[k] for k in ["tmall:e", "jd:f", "web:g", "douyin:h", "x:i", "tmall:a"]}) == 6
    assert persons["x:i"] == _pid("x:i")
    assert result.key_to_person["customer_key"].is_monotonic_increasing

    s = result.stats
    assert s["keys"] == 9 and s["persons"] == 6
    assert s["multi_key_persons"] == 1 and s["keys_in_multi_key_persons"] == 4 and s["largest_component"] == 4
    assert s["links_by_identifier"] == {"phone_hash": 1, "unionid_hash": 1, "member_card": 1}
    assert s["keys_without_identifiers"] == 3  # web:g, douyin:h, x:i
    assert s["keys_per_person"] == {1: 5, 4: 1}


def test_person_ids_are_stable_under_row_order_and_unrelated_keys():
    base = resolve_identities(_dataset(HAND, order_keys=["tmall:a"]))
    shuffled = HAND.sample(frac=1.0, random_state=3).reset_index(drop=True)
    more = pd.concat([shuffled, pd.DataFrame({"customer_key": ["zz:1", "zz:2"], "phone_hash": ["h5", "h5"]})])
    other = resolve_identities(_dataset(more, order_keys=["web:q", "tmall:a"]))
    a, b = _persons(base), _persons(other)
    assert all(b[k] == v for k, v in a.items())
    assert b["zz:1"] == b["zz:2"] == _pid("zz:1")


def test_junk_identifier_shared_by_many_keys_is_not_used():
    # a store's default phone typed in for 12 walk-in customers, plus one genuine pair sharing a phone
    walk_ins = [f"store:w{i:02d}" for i in range(12)]
    ids = pd.DataFrame(
        {
            "customer_key": walk_ins + ["tmall:x", "jd:x"],
            "phone_hash": ["default"] * 12 + ["hx", "hx"],
        }
    )
    result = resolve_identities(_dataset(ids), max_keys_per_identifier=10)
    persons = _persons(result)
    assert len({persons[k] for k in walk_ins}) == 12
    assert persons["tmall:x"] == persons["jd:x"]
    assert result.stats["junk_identifiers"] == {"phone_hash": 1}
    assert result.stats["junk_keys"] == 12
    assert result.stats["largest_component"] == 2

    # with a looser guard the same value merges all twelve (which is why the guard exists)
    loose = resolve_identities(_dataset(ids), max_keys_per_identifier=20)
    assert loose.stats["largest_component"] == 12 and loose.stats["junk_identifiers"] == {"phone_hash": 0}


def test_exactly_at_the_limit_still_links():
    ids = pd.DataFrame({"customer_key": [f"k{i}" for i in range(10)], "member_card": "M"})
    assert resolve_identities(_dataset(ids), max_keys_per_identifier=10).stats["persons"] == 1
    with pytest.raises(ValueError, match="max_keys_per_identifier"):
        resolve_identities(_dataset(ids), max_keys_per_identifier=1)


def test_same_key_repeated_with_one_identifier_is_not_a_link():
    ids = pd.DataFrame({"customer_key": ["k1", "k1", "k2"], "phone_hash": ["h", "h", None]})
    result = resolve_identities(_dataset(ids))
    assert result.stats["persons"] == 2 and result.stats["links_by_identifier"]["phone_hash"] == 0


def test_without_identities_every_key_is_its_own_person():
    result = resolve_identities(_dataset(None, order_keys=["a", "b", "a"], event_keys=["c"]))
    assert result.key_to_person["customer_key"].tolist() == ["a", "b", "c"]
    assert result.key_to_person["person_id"].tolist() == [_pid("a"), _pid("b"), _pid("c")]
    assert "no identities table" in result.stats["note"]
    lone = resolve_identities(_dataset(pd.DataFrame({"customer_key": ["a", "d"], "city": ["x", "y"]})))
    assert lone.stats["persons"] == 2 and "nothing to link" in lone.stats["note"]


def test_person_of_maps_keys():
    result = resolve_identities(_dataset(HAND))
    mapped = result.person_of(pd.Series(["jd:b", "nope"]))
    assert mapped.iloc[0] == _pid("jd:b") and pd.isna(mapped.iloc[1])


def test_print_stats_mentions_merges_and_junk():
    ids = pd.DataFrame({"customer_key": [f"w{i}" for i in range(4)] + ["a", "b"], "phone_hash": ["d"] * 4 + ["h", "h"]})
    result = resolve_identities(_dataset(ids), max_keys_per_identifier=3)
    console = Console(file=io.StringIO(), width=120)
    print_identity_stats(result, console)
    out = console.file.getvalue()
    assert "persons with 2+ keys" in out and "1 (2 keys)" in out
    assert "junk phone_hash values (> 3 keys each, not used)" in out


def test_large_random_graph_matches_naive_union_find():
    rng = np.random.default_rng(4)
    n = 3000
    ids = pd.DataFrame(
        {
            "customer_key": [f"k{i:05d}" for i in rng.integers(0, 2500, n)],
            "phone_hash": pd.Series(rng.integers(0, 1500, n).astype(str)).where(rng.random(n) < 0.3),
            "member_card": pd.Series(rng.integers(0, 1500, n).astype(str)).where(rng.random(n) < 0.3),
        }
    )
    result = resolve_identities(_dataset(ids), max_keys_per_identifier=4)

    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for col in ("phone_hash", "member_card"):
        groups = ids.dropna(subset=[col]).groupby(col)["customer_key"].unique()
        for keys in groups:
            if 2 <= len(keys) <= 4:
                for k in keys[1:]:
                    parent[find(k)] = find(keys[0])
    naive = {k: find(k) for k in ids["customer_key"]}
    persons = _persons(result)
    # same partition: two keys share a person_id exactly when union-find put them together
    by_root = pd.Series(naive).groupby(lambda k: naive[k]).apply(lambda s: frozenset(s.index))
    by_pid = pd.Series(persons).groupby(lambda k: persons[k]).apply(lambda s: frozenset(s.index))
    assert set(by_root) == set(by_pid)


# --- against simulator truth -----------------------------------------------------------------------------------


def _pairs(frame: pd.DataFrame, *cols: str) -> int:
    sizes = frame.groupby(list(cols)).size().to_numpy(dtype=np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    simulate = pytest.importorskip("features.simulate")
    from features.contract import load_dataset

    tables = simulate.simulate(3000, seed=17)
    out = tmp_path_factory.mktemp("sim")
    simulate.write_dataset(tables, out)
    return load_dataset(out), tables["truth_keys"]


def test_link_precision_and_recall_against_simulator_truth(simulated):
    ds, truth_keys = simulated
    result = resolve_identities(ds)
    merged = result.key_to_person.merge(truth_keys[["customer_key", "true_person"]], on="customer_key", how="left")
    assert merged["true_person"].notna().all()

    # "linkable": keys of one true person connected through identifiers that are present in the data.
    # Namespacing every identifier value by its true person and linking without a junk limit gives exactly those.
    ids = ds.identities.merge(truth_keys[["customer_key", "true_person"]], on="customer_key", how="left")
    for col in IDENTIFIERS:
        if col in ids.columns:
            ids[col] = ids[col] + "|" + ids["true_person"].astype(str)
    oracle = resolve_identities(
        dataclasses.replace(ds, identities=ids.drop(columns="true_person")), max_keys_per_identifier=10**9
    )
    merged = merged.merge(oracle.key_to_person.rename(columns={"person_id": "linkable"}), on="customer_key")

    predicted = _pairs(merged, "person_id")
    correct = _pairs(merged, "person_id", "true_person")
    linkable = _pairs(merged, "linkable")
    found = _pairs(merged, "person_id", "linkable")
    assert linkable > 500  # the simulator fragments people, so there is real linking to do
    precision, recall = correct / predicted, found / linkable
    assert precision >= 0.99, precision
    assert recall >= 0.95, recall
    assert result.stats["keys"] == len(truth_keys)
