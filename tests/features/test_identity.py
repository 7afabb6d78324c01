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


# --- in time: only links known before as_of ---------------------------------------------------------------------


def _timed(identities: pd.DataFrame, orders: dict[str, str]) -> Dataset:
    """Identities plus one paid order per key at the given date."""
    o = pd.DataFrame({"customer_key": list(orders), "order_ts": pd.to_datetime(list(orders.values()))})
    o = o.assign(order_id=[f"o{i}" for i in range(len(o))], amount=10.0)
    return Dataset(orders=o, identities=identities)


def test_link_known_after_as_of_does_not_merge():
    # a WeChat account and a Tmall buyer share a phone that is bound on 2025-09-01
    ids = pd.DataFrame({"customer_key": ["tmall:a", "wechat:b"], "phone_hash": ["h", "h"],
                        "linked_ts": pd.to_datetime(["2025-01-05 00:00", "2025-09-01 10:00"])})
    ds = _timed(ids, {"tmall:a": "2025-01-05", "wechat:b": "2025-02-01"})
    for as_of, persons in [("2025-06-01", 2), ("2025-09-01", 2), ("2025-09-02", 1)]:
        result = resolve_identities(ds, as_of=as_of)
        assert result.stats["persons"] == persons, as_of
    before = resolve_identities(ds, as_of="2025-06-01")
    assert before.stats["identity_rows_not_yet_known"] == 1 and before.stats["as_of"] == "2025-06-01"
    assert _persons(resolve_identities(ds, as_of="2025-09-02"))["wechat:b"] == _pid("tmall:a")  # same rule
    assert resolve_identities(ds).stats["persons"] == 1  # as_of=None: the whole table (identity as known today)


def test_feature_snapshot_before_the_link_keeps_the_keys_apart():
    from features.pipeline import build_features

    ids = pd.DataFrame({"customer_key": ["tmall:a", "wechat:b"], "phone_hash": ["h", "h"],
                        "linked_ts": pd.to_datetime([None, "2025-09-01"])})
    ds = _timed(ids, {"tmall:a": "2025-01-05", "wechat:b": "2025-02-01"})
    quiet = Console(file=io.StringIO())
    early = build_features(ds, "2025-06-01", console=quiet)
    late = build_features(ds, "2025-10-01", console=quiet)
    assert len(early) == 2 and early["orders"].tolist() == [1, 1]
    assert len(late) == 1 and late["orders"].tolist() == [2]


def test_without_timestamps_links_count_from_each_keys_first_sighting():
    ids = pd.DataFrame({"customer_key": ["tmall:a", "wechat:b", "store:c"], "member_card": ["M", "M", "M"]})
    ds = _timed(ids, {"tmall:a": "2025-01-05", "wechat:b": "2025-03-01"})  # store:c never seen: never known
    mid = resolve_identities(ds, as_of="2025-02-01")
    assert mid.stats["persons"] == 3 and "first order or event" in mid.stats["time_note"]
    assert mid.stats["identity_rows_not_yet_known"] == 2
    late = resolve_identities(ds, as_of="2025-03-02")
    assert late.stats["persons"] == 2 and _persons(late)["wechat:b"] == _persons(late)["tmall:a"]
    # join_ts dates a row when linked_ts is absent (and makes the key seen)
    joined = resolve_identities(_timed(ids.assign(join_ts=pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"])),
                                       {"tmall:a": "2025-01-05"}), as_of="2025-01-04")
    assert joined.stats["persons"] == 1 and "time_note" not in joined.stats


def test_print_stats_shows_the_time_note_once():
    ids = pd.DataFrame({"customer_key": ["a", "b"], "phone_hash": ["h", "h"]})
    console = Console(file=io.StringIO(), width=160)
    print_identity_stats(resolve_identities(_timed(ids, {"a": "2025-01-01", "b": "2025-01-02"}), as_of="2025-02-01"),
                         console)
    out = console.file.getvalue()
    assert out.count("taken as known from the first order or event") == 1
    assert "identity rows not known before 2025-02-01" in out


# --- the mega-person guard ----------------------------------------------------------------------------------------


def test_chain_of_500_keys_is_not_one_person():
    # k000—k001 share phone 0, k001—k002 phone 1, ...: every identifier holds 2 keys, the component 500
    n = 500
    keys = [f"k{i:03d}" for i in range(n)]
    chain = pd.DataFrame({"customer_key": keys[:-1] + keys[1:], "phone_hash": [f"h{i}" for i in range(n - 1)] * 2})
    pair = pd.DataFrame({"customer_key": ["tmall:x", "jd:x"], "phone_hash": ["hx", "hx"]})
    ds = _dataset(pd.concat([chain, pair], ignore_index=True))
    result = resolve_identities(ds)
    s = result.stats
    assert s["junk_identifiers"] == {"phone_hash": 0}  # the per-identifier guard does not see it
    assert s["largest_component_before_guard"] == n and s["oversized_persons"] == 1 and s["oversized_keys"] == n
    assert s["persons"] == n + 1 and s["largest_component"] == 2 and s["max_keys_per_person"] == 20
    persons = _persons(result)
    assert all(persons[k] == _pid(k) for k in keys) and persons["jd:x"] == persons["tmall:x"] == _pid("jd:x")

    console = Console(file=io.StringIO(), width=160)
    print_identity_stats(result, console)
    assert "merges over 20 keys (left unmerged)" in console.file.getvalue()
    assert "1 (500 keys)" in console.file.getvalue()
    # configurable: a limit above the chain lets it merge, one of 2 keeps only pairs
    assert resolve_identities(ds, max_keys_per_person=n).stats["persons"] == 2
    assert resolve_identities(ds, max_keys_per_person=2).stats["oversized_keys"] == n
    with pytest.raises(ValueError, match="max_keys_per_person"):
        resolve_identities(ds, max_keys_per_person=1)
