"""One-ID: link channel-scoped ``customer_key``s that belong to one person into a stable ``person_id``.

A person buying on Tmall, in the WeChat mini-program and in a store holds three ``customer_key``s. The
``identities`` table ties keys to identifiers (``phone_hash``, ``unionid_hash``, ``member_card``); two keys
sharing any identifier value are the same person, and the relation is transitive (union-find). It is solved as
connected components of the bipartite key–identifier graph (:func:`scipy.sparse.csgraph.connected_components`),
which is linear in the number of edges: a few seconds for millions of keys.

Over-merging guard: an identifier value held by more than ``max_keys_per_identifier`` keys is not a person's
identifier but junk (a store's default phone, a shared staff member card, a placeholder unionid). Such values
are not used for linking and are counted in ``stats["junk_identifiers"]``.

``person_id = "p_" + sha1(smallest customer_key of the component)[:12]``, so it is stable across runs as long
as that key stays in the component, and does not depend on row order or on the other keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.dataset import Dataset

IDENTIFIERS = ("phone_hash", "unionid_hash", "member_card")


@dataclass
class IdentityResult:
    """The key → person map and how it was obtained.

    Attributes
    ----------
    key_to_person : pandas.DataFrame
        Columns ``customer_key``, ``person_id``; one row per ``customer_key`` seen in any table, sorted by key.
    stats : dict
        ``keys``, ``persons``, ``multi_key_persons``, ``keys_in_multi_key_persons``, ``largest_component``,
        ``keys_per_person`` (size → number of persons), ``keys_without_identifiers``, ``links_by_identifier``
        (per identifier type: Σ over its values of distinct keys − 1, i.e. keys attached to another key through
        that type), ``junk_identifiers`` (per type: values dropped as junk), ``junk_keys`` (keys holding one),
        ``max_keys_per_identifier``, ``person_id_collisions``, and ``note`` when there is nothing to link.
    """

    key_to_person: pd.DataFrame
    stats: dict = field(default_factory=dict)

    def person_of(self, keys: pd.Series) -> pd.Series:
        """``person_id`` of each key (NA for keys never seen)."""
        mapping = pd.Series(self.key_to_person["person_id"].to_numpy(), index=self.key_to_person["customer_key"])
        return keys.map(mapping)


def resolve_identities(dataset: Dataset, *, max_keys_per_identifier: int = 10) -> IdentityResult:
    """Give every ``customer_key`` seen in any table a ``person_id`` (union-find over shared identifiers).

    Parameters
    ----------
    dataset : Dataset
        Validated tables (:func:`features.contract.load_dataset`); identifiers are read from
        ``dataset.identities`` (``phone_hash``, ``unionid_hash``, ``member_card`` — whichever are present).
    max_keys_per_identifier : int, default 10
        An identifier value shared by more keys than this is treated as junk and not used for linking.

    Returns
    -------
    IdentityResult
    """
    if max_keys_per_identifier < 2:
        raise ValueError(f"max_keys_per_identifier must be at least 2, got {max_keys_per_identifier}")
    keys, ident_codes = _factorize_keys(dataset)
    n_keys = len(keys)
    stats: dict = {
        "keys": n_keys,
        "max_keys_per_identifier": max_keys_per_identifier,
        "links_by_identifier": {},
        "junk_identifiers": {},
        "junk_keys": 0,
    }

    rows, cols = [], []
    offset = n_keys
    identities = dataset.identities
    present = [c for c in IDENTIFIERS if identities is not None and c in identities.columns]
    junk_key_codes = []
    with_identifier = np.zeros(n_keys, dtype=bool)
    for col in present:
        column = identities[col]
        has = column.notna().to_numpy()
        value_codes, values = pd.factorize(column[has])
        n_values = len(values)
        pair = np.sort(ident_codes[has].astype(np.int64) * max(n_values, 1) + value_codes)
        pair = pair[np.r_[True, pair[1:] != pair[:-1]]] if len(pair) else pair  # distinct (key, value) pairs
        key_codes, value_codes = pair // max(n_values, 1), pair % max(n_values, 1)
        with_identifier[key_codes] = True
        per_value = np.bincount(value_codes, minlength=n_values)
        junk = per_value > max_keys_per_identifier
        usable = ~junk[value_codes] & (per_value[value_codes] >= 2)  # a value held by one key links nothing
        stats["links_by_identifier"][col] = int((per_value[~junk & (per_value >= 2)] - 1).sum())
        stats["junk_identifiers"][col] = int(junk.sum())
        junk_key_codes.append(key_codes[junk[value_codes]])
        rows.append(key_codes[usable])
        cols.append(offset + value_codes[usable])
        offset += n_values

    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
    else:
        r = c = np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset)).tocsr()
    _, labels = connected_components(graph, directed=False)
    comp, _ = pd.factorize(labels[:n_keys])  # components that hold a key, numbered 0..n_persons-1
    n_persons = int(comp.max()) + 1 if n_keys else 0

    # the smallest key of each component, by rank in sorted order
    order = np.asarray(pc.sort_indices(keys), dtype=np.int64)
    rank = np.empty(n_keys, dtype=np.int64)
    rank[order] = np.arange(n_keys)
    first = np.full(n_persons, n_keys, dtype=np.int64)
    np.minimum.at(first, comp, rank)
    person_ids, collisions = _person_ids(keys.take(pa.array(order[first])).to_pylist())
    key_to_person = pd.DataFrame(
        {
            "customer_key": keys.take(pa.array(order)).to_pandas(),
            "person_id": person_ids.take(pa.array(comp[order])).to_pandas(),
        }
    ).astype({"customer_key": "str", "person_id": "str"})

    sizes = np.bincount(comp, minlength=n_persons)
    size_counts = pd.Series(sizes).value_counts().sort_index()
    junk_keys = np.unique(np.concatenate(junk_key_codes)) if junk_key_codes else np.empty(0)
    stats.update(
        persons=n_persons,
        multi_key_persons=int((sizes > 1).sum()),
        keys_in_multi_key_persons=int(sizes[sizes > 1].sum()),
        largest_component=int(sizes.max()) if n_persons else 0,
        keys_per_person={int(k): int(v) for k, v in size_counts.items()},
        keys_without_identifiers=int((~with_identifier).sum()),
        junk_keys=int(len(junk_keys)),
        person_id_collisions=collisions,
    )
    if identities is None:
        stats["note"] = "no identities table: every customer_key is its own person"
    elif not present:
        stats["note"] = "identities has no phone_hash, unionid_hash or member_card: nothing to link on"
    return IdentityResult(key_to_person=key_to_person, stats=stats)


def print_stats(result: IdentityResult, console) -> None:
    """Print One-ID merge statistics as a small rich table."""
    from rich.table import Table

    s = result.stats
    table = Table(title="One-ID", show_header=False, box=None, pad_edge=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("customer keys", f"{s['keys']:,}")
    table.add_row("persons", f"{s['persons']:,}")
    table.add_row("persons with 2+ keys", f"{s['multi_key_persons']:,} ({s['keys_in_multi_key_persons']:,} keys)")
    table.add_row("largest person (keys)", f"{s['largest_component']:,}")
    table.add_row("keys without any identifier", f"{s['keys_without_identifiers']:,}")
    for col, n in s["links_by_identifier"].items():
        table.add_row(f"keys linked via {col}", f"{n:,}")
    for col, n in s["junk_identifiers"].items():
        if n:
            table.add_row(
                f"junk {col} values (> {s['max_keys_per_identifier']} keys each, not used)", f"{n:,}"
            )
    console.print(table)
    if s.get("note"):
        console.print(f"  note: {s['note']}")


def _factorize_keys(dataset: Dataset) -> tuple[pa.Array, np.ndarray]:
    """Distinct ``customer_key``s over every table (arrow strings) and the key code of each identities row."""
    identities = dataset.identities
    parts = [identities["customer_key"].astype("str")] if identities is not None else []
    for name, table in dataset.tables().items():
        if name != "identities" and "customer_key" in table.columns:
            parts.append(pd.Series(table["customer_key"].dropna().unique()).astype("str"))
    if not parts:
        return pa.array([], type=pa.string()), np.empty(0, dtype=np.int64)
    codes, uniques = pd.factorize(pd.concat(parts, ignore_index=True))
    n_ident = len(identities) if identities is not None else 0
    return pa.array(uniques), codes[:n_ident].astype(np.int64)


def _person_ids(min_keys: list[str]) -> tuple[pa.Array, int]:
    """``"p_" + sha1(key)[:12]``; in the (rare, ~n²/2⁴⁹) event of a prefix collision the colliding ids get 16."""
    sha1 = hashlib.sha1
    ids = ["p_" + sha1(k.encode("utf-8")).hexdigest()[:12] for k in min_keys]
    dup = pd.Series(ids, dtype=object).duplicated(keep=False).to_numpy()
    for i in np.flatnonzero(dup):
        ids[i] = "p_" + sha1(min_keys[i].encode("utf-8")).hexdigest()[:16]
    return pa.array(ids, type=pa.string()), int(dup.sum())
