"""One-ID: link channel-scoped ``customer_key``s that belong to one person into a stable ``person_id``.

A person buying on Tmall, in the WeChat mini-program and in a store holds three ``customer_key``s. The
``identities`` table ties keys to identifiers (``phone_hash``, ``unionid_hash``, ``member_card``); two keys
sharing any identifier value are the same person, and the relation is transitive (union-find). It is solved as
connected components of the bipartite key–identifier graph (:func:`scipy.sparse.csgraph.connected_components`),
which is linear in the number of edges: a few seconds for millions of keys.

One-ID in time: with ``as_of``, only the links known strictly before ``as_of`` are used. An identities row
(a key holding an identifier value) is known from ``max(first seen of the key, linked_ts)``, where ``linked_ts``
falls back to ``join_ts`` and the key's first sighting is its earliest order, event or ``join_ts``. Two keys are
linked through a value only when both of their rows are known, so a phone that arrives after ``as_of`` merges
nothing in features as of that date. Without ``linked_ts``/``join_ts`` every row is taken as known from the first
order or event of its key (``stats["time_note"]`` says so); a row whose key is never seen and carries no
timestamp is never known.

Over-merging guards: an identifier value held by more than ``max_keys_per_identifier`` keys is not a person's
identifier but junk (a store's default phone, a shared staff member card, a placeholder unionid). Such values
are not used for linking and are counted in ``stats["junk_identifiers"]``. A merged person of more than
``max_keys_per_person`` keys (a chain of keys each linked to the next by its own phone) is not a person either:
its keys are left unmerged, each its own person, and counted in ``stats["oversized_persons"]`` /
``stats["oversized_keys"]``.

``person_id = "p_" + sha1(smallest customer_key of the component)[:12]``, so it is stable across runs as long
as that key stays in the component, and does not depend on row order or on the other keys.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.dataset import Dataset

IDENTIFIERS = ("phone_hash", "unionid_hash", "member_card")
#: When an identities row became known: the first of these that is set (then the key's first order or event).
LINK_TIMESTAMPS = ("linked_ts", "join_ts")

log = logging.getLogger(__name__)
_time_note_logged = False


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
        ``max_keys_per_identifier``, ``person_id_collisions``, ``max_keys_per_person``, ``oversized_persons``
        (merged persons over that size, left unmerged), ``oversized_keys`` (their keys),
        ``largest_component_before_guard``, ``as_of`` and ``identity_rows_not_yet_known`` (rows dated on or after
        ``as_of``, or never dated), ``time_note`` when the rows carry no timestamp, and ``note`` when there is
        nothing to link.
    """

    key_to_person: pd.DataFrame
    stats: dict = field(default_factory=dict)

    def person_of(self, keys: pd.Series) -> pd.Series:
        """``person_id`` of each key (NA for keys never seen)."""
        mapping = pd.Series(self.key_to_person["person_id"].to_numpy(), index=self.key_to_person["customer_key"])
        return keys.map(mapping)


def resolve_identities(
    dataset: Dataset, *, as_of=None, max_keys_per_identifier: int = 10, max_keys_per_person: int = 20
) -> IdentityResult:
    """Give every ``customer_key`` seen in any table a ``person_id`` (union-find over shared identifiers).

    Parameters
    ----------
    dataset : Dataset
        Validated tables (:func:`features.contract.load_dataset`); identifiers are read from
        ``dataset.identities`` (``phone_hash``, ``unionid_hash``, ``member_card`` — whichever are present).
    as_of : date, str or Timestamp, optional
        Use only the identities rows known strictly before ``as_of`` 00:00 (see the module docstring); every
        point-in-time caller passes it. ``None`` uses the whole table (the identity as known today).
    max_keys_per_identifier : int, default 10
        An identifier value shared by more keys than this is treated as junk and not used for linking.
    max_keys_per_person : int, default 20
        A merged person of more keys than this is left unmerged (each of its keys its own person).

    Returns
    -------
    IdentityResult
    """
    if max_keys_per_identifier < 2:
        raise ValueError(f"max_keys_per_identifier must be at least 2, got {max_keys_per_identifier}")
    if max_keys_per_person < 2:
        raise ValueError(f"max_keys_per_person must be at least 2, got {max_keys_per_person}")
    keys, ident_codes = _factorize_keys(dataset)
    n_keys = len(keys)
    stats: dict = {
        "keys": n_keys,
        "max_keys_per_identifier": max_keys_per_identifier,
        "max_keys_per_person": max_keys_per_person,
        "as_of": None,
        "identity_rows_not_yet_known": 0,
        "links_by_identifier": {},
        "junk_identifiers": {},
        "junk_keys": 0,
    }

    rows, cols = [], []
    offset = n_keys
    identities = dataset.identities
    present = [c for c in IDENTIFIERS if identities is not None and c in identities.columns]
    if as_of is not None and identities is not None and present:
        known, time_note = _known_before(dataset, pd.Timestamp(as_of))
        stats.update(as_of=pd.Timestamp(as_of).date().isoformat(), identity_rows_not_yet_known=int((~known).sum()))
        if time_note:
            stats["time_note"] = time_note
        identities, ident_codes = identities[known], ident_codes[known]
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
    # mega-person guard: a component of more keys than a person holds is a chain of links, not a person
    sizes = np.bincount(comp) if n_keys else np.empty(0, dtype=np.int64)
    oversized = sizes > max_keys_per_person
    stats["largest_component_before_guard"] = int(sizes.max()) if len(sizes) else 0
    stats["oversized_persons"] = int(oversized.sum())
    stats["oversized_keys"] = int(sizes[oversized].sum())
    if oversized.any():
        alone = oversized[comp]
        comp = comp.copy()
        comp[alone] = len(sizes) + np.arange(int(alone.sum()))
        comp, _ = pd.factorize(comp)
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
    if s.get("oversized_persons"):
        table.add_row(
            f"merges over {s['max_keys_per_person']} keys (left unmerged)",
            f"{s['oversized_persons']:,} ({s['oversized_keys']:,} keys)",
        )
    if s.get("as_of"):
        table.add_row(f"identity rows not known before {s['as_of']}", f"{s['identity_rows_not_yet_known']:,}")
    table.add_row("keys without any identifier", f"{s['keys_without_identifiers']:,}")
    for col, n in s["links_by_identifier"].items():
        table.add_row(f"keys linked via {col}", f"{n:,}")
    for col, n in s["junk_identifiers"].items():
        if n:
            table.add_row(
                f"junk {col} values (> {s['max_keys_per_identifier']} keys each, not used)", f"{n:,}"
            )
    console.print(table)
    for note in (s.get("note"), s.get("time_note")):
        if note:
            console.print(f"  note: {note}")


def _known_before(dataset: Dataset, as_of: pd.Timestamp) -> tuple[np.ndarray, str | None]:
    """Which identities rows were known strictly before ``as_of``, and the note when the rows carry no timestamp.

    A row is known from ``max(first seen of its key, linked_ts or else join_ts)``; a key is first seen at its
    earliest order, event or ``join_ts``. A row with neither a timestamp nor a sighting of its key is never known.
    """
    global _time_note_logged
    identities = dataset.identities
    row_keys = identities["customer_key"].astype("str")
    keys = pd.Index(row_keys.unique())
    never = np.iinfo(np.int64).max
    first = np.full(len(keys), never, dtype=np.int64)  # ns since the epoch of each key's first sighting
    for table, col in [(dataset.orders, "order_ts"), (dataset.events, "event_ts"), (identities, "join_ts")]:
        if table is not None and col in table.columns and "customer_key" in table.columns:
            key_codes = _key_codes(keys, table["customer_key"])
            for start in range(0, len(table), _CHUNK_ROWS):  # in slices: the temporaries stay small
                codes = key_codes(start, start + _CHUNK_ROWS)
                ts = _ns(table[col].iloc[start:start + _CHUNK_ROWS])
                ok = (codes >= 0) & (ts != np.iinfo(np.int64).min)  # NaT is the smallest int64
                np.minimum.at(first, codes[ok], ts[ok])
    first[first == never] = np.iinfo(np.int64).min  # never seen: NaT
    seen = pd.Series(first[keys.get_indexer(row_keys)].view("datetime64[ns]"), index=identities.index)
    stamped = [c for c in LINK_TIMESTAMPS if c in identities.columns]
    row_ts = pd.Series(pd.NaT, index=identities.index, dtype="datetime64[ns]")
    for col in stamped:
        row_ts = row_ts.fillna(pd.to_datetime(identities[col]).astype("datetime64[ns]"))
    known_at = pd.concat([seen, row_ts], axis=1).max(axis=1)  # NaT only when both are missing
    note = None
    if not stamped or row_ts.isna().all():
        note = (
            "identities carry no linked_ts or join_ts: each link is taken as known from the first order or "
            "event of its keys"
        )
        if not _time_note_logged:
            log.info(note)
            _time_note_logged = True
    return (known_at < as_of).fillna(False).to_numpy(dtype=bool), note


#: Rows of a table handled at a time where One-ID reads every order and event (the first sighting of each key).
_CHUNK_ROWS = 5_000_000


def _key_codes(keys: pd.Index, column: pd.Series):
    """``f(start, stop)``: the position in ``keys`` of each value of ``column[start:stop]`` (-1 if absent). A
    categorical column is looked up once per category, without writing its strings out row by row."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        per_category = np.append(keys.get_indexer(column.cat.categories.astype("str")), -1)  # code -1: missing
        cat_codes = column.cat.codes.to_numpy()
        return lambda start, stop: per_category[cat_codes[start:stop]]
    return lambda start, stop: keys.get_indexer(column.iloc[start:stop].astype("str"))


def _ns(column: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (NaT as the smallest int64)."""
    return pd.to_datetime(column).to_numpy(dtype="datetime64[ns]").view(np.int64)


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
