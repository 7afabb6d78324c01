"""The data contract: read a data directory, validate every table, quarantine bad rows, hash PII.

A data directory holds ``orders`` (required) and optionally ``events``, ``identities`` and
``campaign_touches``, each as ``NAME.parquet`` or ``NAME.csv`` (UTF-8). The columns, types and enum values are
described in ``docs/data-contract.md`` and encoded in :data:`SCHEMAS` below.

Two kinds of problems are distinguished:

* **Fatal** — the file cannot be read, both ``NAME.csv`` and ``NAME.parquet`` exist, a required column is
  missing, a whole column has the wrong type (no value parses), the table has no rows or no usable rows.
  :func:`load_dataset` raises :class:`DataContractError` naming the file, the column and the reason. Every
  table is validated before anything is written, so a fatal error leaves no partial output behind.
* **Row problems** — each bad row is quarantined with one ``reject_reason`` (the first failing rule in
  :data:`RULE_ORDER`) into ``REJECTS_DIR/NAME.rejects.parquet``; the good rows are used. The accounting
  ``rows read = rows used + rows rejected`` always closes and is printed.

The rules that look across values or tables (timestamps after the run's time or the plausible end of the data,
the amount bound, the decimal-point / decimal-comma reading of numbers, keys unknown to orders and identities)
and their settings (``DATA/contract.yaml``) live in :mod:`features.contract_rules`.

Raw ``phone`` and ``unionid`` columns are hashed (:mod:`features.pii`) the moment a table is read and dropped,
before validation, so neither the returned :class:`~features.dataset.Dataset` nor the rejects files hold them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import contract_rules
from features.compact import as_category, dictionary_columns, is_categorical, is_clean_text, map_categories
from features.contract_rules import ContractSettings
from features.dataset import TABLES, Dataset, TableFingerprint
from features.errors import InputError
from features.pii import PII_COLUMNS, hmac_hash, normalize_phone, pii_key
from features.vocab import CHANNELS, EVENT_TYPES, GROUPS, STATUSES

LOCAL_TZ = "Asia/Shanghai"
TS_DTYPE = "datetime64[us]"

#: Row rules in the order they are checked; a rejected row carries the first rule it fails.
RULE_ORDER = (
    "empty_key",  # a key column (order_id, customer_key, campaign_id) is missing or blank
    "unparseable_timestamp",  # order_ts / event_ts / sent_ts missing or unparseable; join_ts / linked_ts present but unparseable
    "future_timestamp",  # a timestamp after the run's time or the plausible end of the data (contract_rules)
    "ambiguous_number",  # a number whose decimal-point and decimal-comma readings differ, unsettled by its column
    "missing_amount",  # amount missing, blank, not a number or infinite
    "negative_amount",  # amount < 0
    "implausible_amount",  # amount above the brand's plausibility bound (contract_rules.amount_bound)
    "unknown_channel",  # channel not one of CHANNELS (blank → default "other")
    "unknown_status",  # status not one of STATUSES (blank → default "paid")
    "unknown_event_type",  # event_type missing or not one of EVENT_TYPES
    "unknown_group",  # group missing or not treatment/control
    "bad_discount",  # discount present but not a number, or negative
    "bad_item_count",  # item_count present but not a number, or negative
    "bad_offer_cost",  # offer_cost present but not a number, or negative
    "bad_birth_year",  # birth_year present but not a number
    "bad_marketing_opt_out",  # marketing_opt_out present but not a boolean (true/false/1/0/yes/no/是/否)
    "duplicate_order_id",  # an order_id seen on an earlier otherwise-valid row (the first occurrence is kept)
)

_TRUE = {"true", "t", "yes", "y", "1", "1.0", "是"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", "否"}
_TZ_SUFFIX = r"(?:[zZ]|[+-]\d\d:?\d\d)$"


@dataclass(frozen=True)
class TableSchema:
    """The contract of one table: which columns exist, and how each is typed and checked."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    keys: tuple[str, ...]  # must be non-empty strings
    id_column: str  # shown as example ids in the report
    timestamps: tuple[str, ...] = ()
    enums: dict[str, tuple[tuple[str, ...], str | None]] = field(default_factory=dict)  # col -> (allowed, default)
    numerics: tuple[str, ...] = ()  # optional numeric columns (bad_<col> when not a number)
    non_negative: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    amount: bool = False
    unique: str | None = None
    #: text columns with few distinct values, held as pandas categoricals (sorted categories): 1 byte a row
    #: instead of a string each (``events.event_type`` at 176M rows: 0.2 GB instead of 2.4 GB)
    categorical: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


SCHEMAS: dict[str, TableSchema] = {
    "orders": TableSchema(
        name="orders",
        required=("order_id", "customer_key", "order_ts", "amount"),
        optional=("channel", "status", "discount", "item_count", "category", "store_id"),
        keys=("order_id", "customer_key"),
        id_column="order_id",
        timestamps=("order_ts",),
        enums={"channel": (CHANNELS, "other"), "status": (STATUSES, "paid")},
        numerics=("discount", "item_count"),
        non_negative=("discount", "item_count"),
        amount=True,
        unique="order_id",
        categorical=("channel", "status", "category", "store_id"),
    ),
    "events": TableSchema(
        name="events",
        required=("customer_key", "event_ts", "event_type"),
        optional=("channel", "campaign_id"),
        keys=("customer_key",),
        id_column="customer_key",
        timestamps=("event_ts",),
        enums={"event_type": (EVENT_TYPES, None), "channel": (CHANNELS, "other")},
        categorical=("event_type", "channel", "campaign_id", "customer_key"),  # ~35 events a key
    ),
    "identities": TableSchema(
        name="identities",
        required=("customer_key",),
        optional=(
            "channel",
            "phone",
            "phone_hash",
            "unionid",
            "unionid_hash",
            "member_card",
            "join_ts",
            "linked_ts",
            "birth_year",
            "gender",
            "city",
            "marketing_opt_out",
        ),
        keys=("customer_key",),
        id_column="customer_key",
        timestamps=("join_ts", "linked_ts"),
        enums={"channel": (CHANNELS, "other")},
        numerics=("birth_year",),
        bools=("marketing_opt_out",),
        categorical=("channel", "gender", "city"),
    ),
    "campaign_touches": TableSchema(
        name="campaign_touches",
        required=("campaign_id", "customer_key", "sent_ts", "group"),
        optional=("channel", "offer_cost"),
        keys=("campaign_id", "customer_key"),
        id_column="customer_key",
        timestamps=("sent_ts",),
        enums={"group": (GROUPS, None), "channel": (CHANNELS, "other")},
        numerics=("offer_cost",),
        non_negative=("offer_cost",),
        categorical=("campaign_id", "group", "channel"),
    ),
}

#: What is lost when an optional table is absent (printed once).
DEGRADES = {
    "events": "interaction features",
    "identities": "One-ID linking across channels and opt-out flags",
    "campaign_touches": "campaign response features and uplift evaluation",
}


class DataContractError(InputError):
    """A fatal contract violation: the data directory cannot be used at all (``field`` is the column, if any).

    Parameters
    ----------
    file : str or Path
        The offending file (or the data directory when a file is missing).
    column : str or None
        The offending column, when there is one.
    reason : str
        What is wrong, in words an analyst can act on.
    """

    def __init__(self, file: str | Path, column: str | None, reason: str) -> None:
        self.column = column
        where = f"{file}: column '{column}'" if column else str(file)
        super().__init__(f"{where}: {reason}", field=(column,) if column else (), reason=reason, file=file)


@dataclass
class TableReport:
    """How one table was validated: row accounting, per-reason counts and example ids."""

    name: str
    file: str
    rows_read: int
    rows_used: int
    rows_rejected: int
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    unknown_keys: int = 0  # rows (events, campaign_touches) whose customer_key is in neither orders nor identities

    @property
    def accounting(self) -> str:
        return (
            f"rows read {self.rows_read:,} = rows used {self.rows_used:,} + rows rejected {self.rows_rejected:,}"
        )


@dataclass
class ValidationReport:
    """The outcome of validating a data directory (attached to the returned ``Dataset`` as ``validation``)."""

    data_dir: Path
    rejects_dir: Path
    tables: dict[str, TableReport] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables.values())

    def count(self, table: str, reason: str) -> int:
        """Rows of ``table`` rejected for ``reason`` (0 when none or the table is absent)."""
        report = self.tables.get(table)
        return 0 if report is None else report.reasons.get(reason, 0)

    def to_dict(self) -> dict:
        return {
            name: {
                "file": t.file,
                "rows_read": t.rows_read,
                "rows_used": t.rows_used,
                "rows_rejected": t.rows_rejected,
                "reasons": dict(t.reasons),
                "unknown_keys": t.unknown_keys,
            }
            for name, t in self.tables.items()
        }


@dataclass
class _Checked:
    """A table after the per-value rules, before the cross-table ones and the split into used and rejected."""

    name: str
    path: Path
    sha256: str
    raw: pd.DataFrame
    frame: pd.DataFrame
    failing: dict[str, np.ndarray]
    notes: list[str]

    def fail(self, rule: str, mask) -> None:
        mask = np.asarray(pd.Series(mask).fillna(False), dtype=bool)
        self.failing[rule] = self.failing[rule] | mask if rule in self.failing else mask


@dataclass
class _Validated:
    name: str
    path: Path
    sha256: str
    good: pd.DataFrame
    rejects: pd.DataFrame
    report: TableReport


# --- public entry point -----------------------------------------------------------------------------------------


def load_dataset(data_dir: str | Path, *, rejects_dir: str | Path | None = None, console=None,
                 settings: ContractSettings | None = None) -> Dataset:
    """Read and validate a data directory into a :class:`~features.dataset.Dataset`.

    Parameters
    ----------
    data_dir : str or Path
        Directory holding ``orders.(parquet|csv)`` and optionally ``events``, ``identities``,
        ``campaign_touches`` in the same formats.
    rejects_dir : str or Path, optional
        Where quarantined rows are written as ``NAME.rejects.parquet`` (default ``data_dir/rejects``). A stale
        rejects file of a table that now has no rejects is removed.
    console : rich.console.Console, optional
        Where to print the per-table accounting and reject summaries; nothing is printed when ``None``.
    settings : ContractSettings, optional
        Tolerances of the cross-value rules (time limit, amount bound, number locale); default: read from
        ``data_dir/contract.yaml`` (:func:`features.contract_rules.load_settings`), every default without one.

    Returns
    -------
    Dataset
        Typed tables (timestamps naive ``datetime64[us]`` in Asia/Shanghai local time, ``amount`` float64, enums
        lowercase with defaults filled, keys as strings), ``fingerprint`` per table, and the
        :class:`ValidationReport` as ``dataset.validation``.

    Raises
    ------
    DataContractError
        On any fatal problem; nothing has been written when it is raised.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataContractError(data_dir, None, "data directory does not exist")
    rejects_dir = Path(rejects_dir) if rejects_dir is not None else data_dir / "rejects"

    files = _find_files(data_dir)
    if "orders" not in files:
        raise DataContractError(
            data_dir, None, "required table 'orders' is missing (expected orders.parquet or orders.csv)"
        )
    settings = settings if settings is not None else contract_rules.load_settings(data_dir)
    checked = {name: _check_table(name, files[name], settings, console=console) for name in TABLES if name in files}
    _check_time_limit(checked, settings)
    validated = {name: _finish_table(c) for name, c in checked.items()}
    _count_unknown_keys(validated)

    # Nothing was written until here: a fatal error above leaves the directory untouched.
    report = ValidationReport(data_dir=data_dir, rejects_dir=rejects_dir)
    report.absent = [name for name in TABLES if name not in files]
    for name, v in validated.items():
        target = rejects_dir / f"{name}.rejects.parquet"
        if len(v.rejects):
            rejects_dir.mkdir(parents=True, exist_ok=True)
            v.rejects.to_parquet(target, index=False)
            v.report.rejects_file = str(target)
        elif target.exists():
            target.unlink()
        report.tables[name] = v.report

    dataset = Dataset(
        orders=validated["orders"].good,
        events=validated["events"].good if "events" in validated else None,
        identities=validated["identities"].good if "identities" in validated else None,
        campaign_touches=validated["campaign_touches"].good if "campaign_touches" in validated else None,
        source=data_dir,
        fingerprint={
            name: TableFingerprint(
                file=str(v.path),
                sha256=v.sha256,
                rows_read=v.report.rows_read,
                rows_used=v.report.rows_used,
                rows_rejected=v.report.rows_rejected,
            )
            for name, v in validated.items()
        },
        validation=report,
    )
    if console is not None:
        print_report(report, console)
    return dataset


def print_report(report: ValidationReport, console) -> None:
    """Print the absent tables (once), and per table the accounting line and a reason/count/examples table."""
    from rich.table import Table

    if report.absent:
        lost = "; ".join(f"{name} → no {DEGRADES[name]}" for name in report.absent if name in DEGRADES)
        console.print(f"optional tables absent: {', '.join(report.absent)} ({lost})")
    for name, t in report.tables.items():
        colour = "green" if t.rows_rejected == 0 else "yellow"
        console.print(f"[bold]{name}[/] ({Path(t.file).name}): [{colour}]{t.accounting}[/]")
        for note in t.notes:
            console.print(f"  note: {note}")
        if t.rows_rejected:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column("reason")
            table.add_column("rows", justify="right")
            table.add_column(f"examples ({SCHEMAS[name].id_column})")
            for reason, n in t.reasons.items():
                table.add_row(reason, f"{n:,}", ", ".join(t.examples.get(reason, [])))
            console.print(table)
            console.print(f"  quarantined → {t.rejects_file}")


# --- reading ----------------------------------------------------------------------------------------------------


def _find_files(data_dir: Path) -> dict[str, Path]:
    files = {}
    for name in TABLES:
        parquet, csv = data_dir / f"{name}.parquet", data_dir / f"{name}.csv"
        if parquet.exists() and csv.exists():
            raise DataContractError(
                parquet, None, f"both {parquet.name} and {csv.name} exist; keep exactly one of them"
            )
        if parquet.exists():
            files[name] = parquet
        elif csv.exists():
            files[name] = csv
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(path: Path, categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    """The file as a frame with lower-cased column names; the ``categorical`` text columns of a Parquet file are
    read dictionary-encoded (pandas categoricals: the strings are never materialised one per row)."""
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path, read_dictionary=dictionary_columns(path, categorical) or None)
        else:
            df = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig", low_memory=False
            )
    except UnicodeDecodeError as exc:
        raise DataContractError(path, None, f"unreadable: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataContractError(path, None, "no rows (the file is empty)") from None
    except Exception as exc:  # any parser failure is fatal: the file as a whole is unusable
        raise DataContractError(path, None, f"unreadable: {type(exc).__name__}: {exc}") from None
    columns = [str(c).strip().lower() for c in df.columns]
    seen = set()
    for col in columns:
        if col in seen:
            raise DataContractError(path, col, "column appears more than once")
        seen.add(col)
    df.columns = columns
    return df.reset_index(drop=True)


# --- column converters ------------------------------------------------------------------------------------------


def _as_text(s: pd.Series) -> pd.Series:
    """Strings, stripped, blanks as NA; integral floats print without ``.0``. A categorical stays categorical
    (the rule runs on its categories); clean strings are returned as they are (no copy)."""
    if is_categorical(s):
        return map_categories(s, _as_text)
    if s.dtype == pd.StringDtype("pyarrow", na_value=np.nan) and is_clean_text(s):
        return s
    if pd.api.types.is_float_dtype(s.dtype):
        f = s.astype("float64")
        integral = np.isfinite(f) & (f % 1 == 0)
        if bool(integral[f.notna()].all()):
            s = f.astype("Int64")
    elif pd.api.types.is_object_dtype(s.dtype):
        s = s.map(lambda v: v if v is None or isinstance(v, str) else (None if pd.isna(v) else str(v)))
    out = s.astype("str").str.strip()
    blank = out.str.len() == 0
    return out.where(~blank) if blank.any() else out


def _parse_timestamps(s: pd.Series, text: pd.Series | None, path: Path, col: str) -> pd.Series:
    """Parse a timestamp column to naive ``datetime64[us]`` local (Asia/Shanghai) time; unparseable → NaT.

    ``text`` is the column as stripped strings (``None`` when the column is not textual).
    """
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None).astype(TS_DTYPE)
    if pd.api.types.is_datetime64_dtype(dtype):
        return s.astype(TS_DTYPE)
    if text is None:  # numbers or booleans
        raise DataContractError(
            path, col, f"wrong type: holds {dtype} values, not timestamps; write ISO strings like 2025-06-18 20:00:00"
        )
    if pd.api.types.is_object_dtype(dtype) and not s.map(lambda v: isinstance(v, str) or v is None).all():
        # datetime.date / datetime / Timestamp objects (e.g. parquet date32 columns)
        text = _as_text(s.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v))
    present = text.notna()
    try:  # fast path: one ISO-8601 pass; raises when naive and offset-carrying strings are mixed
        out = _to_local(pd.to_datetime(text, errors="coerce", format="ISO8601"))
    except (ValueError, TypeError):
        out = pd.Series(pd.NaT, index=s.index, dtype=TS_DTYPE)
        has_tz = present & text.str.contains(_TZ_SUFFIX, regex=True).fillna(False).astype(bool)
        naive = present & ~has_tz
        if naive.any():
            out[naive] = _to_local(pd.to_datetime(text[naive], errors="coerce", format="ISO8601"))
        if has_tz.any():
            out[has_tz] = _to_local(pd.to_datetime(text[has_tz], errors="coerce", format="ISO8601", utc=True))
    retry = present & out.isna()
    if retry.any():  # other common layouts (2025/06/18 20:00, 06/18/2025): slower, so only for the leftovers
        try:
            out[retry] = _to_local(pd.to_datetime(text[retry], errors="coerce", format="mixed"))
        except (ValueError, TypeError, OverflowError):
            pass
    return out


def _to_local(ts: pd.Series) -> pd.Series:
    """Naive local time: tz-aware values are converted to Asia/Shanghai and the zone dropped."""
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None)
    return ts.astype(TS_DTYPE)


def _parse_numbers(s: pd.Series, text: pd.Series | None, col: str, settings: ContractSettings,
                   notes: list[str]) -> tuple[pd.Series, pd.Series]:
    """Parse numbers to float64 by the column's locale (:func:`features.contract_rules.parse_numbers`); bad →
    NaN. Returns the values and the mask of ambiguous values; a comma-decimal reading is noted."""
    no_flags = pd.Series(False, index=s.index)
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.nan, index=s.index, dtype="float64"), no_flags
    if text is None:
        return s.astype("float64"), no_flags
    parsed = contract_rules.parse_numbers(text, settings.locale(col))
    if parsed.locale in ("comma", "mixed") and parsed.example is not None:
        kind = "a decimal comma" if parsed.locale == "comma" else "both decimal marks, each value by its own form"
        notes.append(f"{col}: read with {kind} (e.g. {parsed.example!r}); set number_locale in "
                     f"{contract_rules.CONTRACT_FILE} to fix it")
    if parsed.ambiguous.any():
        notes.append(f"{col}: {int(parsed.ambiguous.sum()):,} value(s) read differently with a decimal point and "
                     f"a decimal comma (e.g. {text[parsed.ambiguous].iloc[0]!r}) quarantined as ambiguous_number; "
                     f"set number_locale in {contract_rules.CONTRACT_FILE}")
    return parsed.values, parsed.ambiguous


# --- one table --------------------------------------------------------------------------------------------------


def _check_time_limit(checked: dict[str, _Checked], settings: ContractSettings) -> None:
    """Quarantine timestamps after the run's time or the plausible end of the orders and events (any table)."""
    # every parsed activity timestamp counts, also of rows failing another rule: they still show the data's span
    activity = [c.frame[col] for c in checked.values() for col in SCHEMAS[c.name].timestamps
                if c.name in ("orders", "events") and col in c.frame.columns]
    limit = contract_rules.time_limit(activity, settings)
    for c in checked.values():
        for col in (col for col in SCHEMAS[c.name].timestamps if col in c.frame.columns):
            late = (c.frame[col] > limit.limit).to_numpy(dtype=bool)
            if late.any():
                c.fail("future_timestamp", late)
                first = c.frame[col][late].min()
                c.notes.append(f"{col}: {int(late.sum()):,} value(s) from {first:%Y-%m-%d} on are {limit.reason(first)}"
                               f"; tolerances in {contract_rules.CONTRACT_FILE}")


def _count_unknown_keys(validated: dict[str, _Validated]) -> None:
    """Count the events and touches whose customer_key is in neither orders nor identities (kept, reported)."""
    identities = validated["identities"].good if "identities" in validated else None
    known = contract_rules.known_customer_keys(validated["orders"].good, identities)
    where = "orders or identities" if identities is not None else "orders (no identities table)"
    for name in ("events", "campaign_touches"):
        if name in validated:
            rows, keys = contract_rules.count_unknown_keys(validated[name].good, known)
            validated[name].report.unknown_keys = rows
            if rows:
                left_out = "; campaign evaluation leaves them out" if name == "campaign_touches" else ""
                validated[name].report.notes.append(
                    f"{rows:,} row(s) of {keys:,} customer_key(s) not in {where}{left_out}")


def _check_table(name: str, path: Path, settings: ContractSettings, *, console=None) -> _Checked:
    schema = SCHEMAS[name]
    sha = _sha256(path)
    raw = _read(path, schema.categorical)
    rows_read = len(raw)
    if rows_read == 0:
        raise DataContractError(path, None, "no rows")
    missing = [c for c in schema.required if c not in raw.columns]
    if missing:
        raise DataContractError(
            path, missing[0], f"required column missing (required: {', '.join(schema.required)}; found: "
            f"{', '.join(raw.columns)})"
        )
    notes: list[str] = []
    hashable = [c for c, h in PII_COLUMNS.items() if c in raw.columns and h in schema.columns]
    ignored = [c for c in raw.columns if c not in schema.columns and c not in hashable]
    if ignored:
        notes.append(f"columns outside the contract dropped: {', '.join(ignored)}")

    # PII first: raw phone / unionid never leave this function, not even in rejects.
    if hashable:
        raw = _hash_pii(raw, key=pii_key(console=console), notes=notes)
    raw = raw[[c for c in schema.columns if c in raw.columns and c not in PII_COLUMNS]]

    typed: dict[str, pd.Series] = {}
    checked = _Checked(name=name, path=path, sha256=sha, raw=raw, frame=pd.DataFrame(), failing={}, notes=notes)
    fail = checked.fail

    for col in schema.columns:
        if col not in raw.columns:
            continue
        s = raw[col]
        text = _as_text(s) if _is_textual(s) else None  # once per column: stripped strings, blanks as NA
        present = text.notna() if text is not None else s.notna()
        required = col in schema.required
        if col in schema.timestamps:
            parsed = _parse_timestamps(s, text, path, col)
            if parsed.notna().sum() == 0 and (required or present.any()):
                raise DataContractError(
                    path, col, f"wrong type: no value parses as a timestamp (e.g. {_sample(s, text)})"
                )
            typed[col] = parsed
            # a required timestamp must be there; an optional one (join_ts) may be empty but not garbage
            fail("unparseable_timestamp", parsed.isna() if required else parsed.isna() & present)
        elif col == "amount" and schema.amount:
            parsed, ambiguous = _parse_numbers(s, text, col, settings, notes)
            finite = np.isfinite(parsed)
            if not finite.any() and not ambiguous.any():
                raise DataContractError(
                    path, col, f"wrong type: no value parses as a number (e.g. {_sample(s, text)})"
                )
            fail("ambiguous_number", ambiguous)
            typed[col] = parsed.where(finite)
            fail("missing_amount", ~finite)
            fail("negative_amount", finite & (parsed < 0))
            bound = contract_rules.amount_bound(parsed[finite & (parsed >= 0)], settings)
            if bound is not None and (finite & (parsed > bound)).any():
                fail("implausible_amount", finite & (parsed > bound))
                notes.append(f"amount: {int((finite & (parsed > bound)).sum()):,} value(s) above the plausibility "
                             f"bound {bound:,.2f} (max_amount_factor × median, max_amount in "
                             f"{contract_rules.CONTRACT_FILE})")
        elif col in schema.numerics:
            parsed, ambiguous = _parse_numbers(s, text, col, settings, notes)
            fail("ambiguous_number", ambiguous)
            bad = present & ~np.isfinite(parsed) & ~ambiguous
            if present.any() and not (present & ~bad).any():
                raise DataContractError(
                    path, col, f"wrong type: no value parses as a number (e.g. {_sample(s, text)})"
                )
            if col in schema.non_negative:
                bad |= parsed < 0
            typed[col] = parsed.where(~bad)
            fail(f"bad_{col}", bad)
        elif col in schema.enums:
            allowed, default = schema.enums[col]
            value = _normalise_enum(s)
            if default is not None:
                if is_categorical(value) and default not in value.cat.categories:
                    value = value.cat.add_categories([default])
                value = value.fillna(default)
            bad = ~value.isin(allowed)
            typed[col] = value.where(~bad)
            fail(f"unknown_{col}", bad)
        elif col in schema.bools:
            value, bad = _parse_bools(s)
            typed[col] = value
            fail(f"bad_{col}", bad)
        else:
            value = text if text is not None else _as_text(s)
            typed[col] = value
            if col in schema.keys:
                fail("empty_key", value.isna())
    for col, (_, default) in schema.enums.items():
        if col not in typed and default is not None:
            typed[col] = pd.Series(default, index=raw.index, dtype="str")
    for col in schema.categorical:
        if col in typed:
            typed[col] = as_category(typed[col])
    for col in schema.bools:
        if col not in typed:  # absent column: the value is unknown (consent policy: features.brand)
            typed[col] = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    checked.frame = pd.DataFrame(typed, index=raw.index, copy=False)  # dict input copies by default
    return checked


def _finish_table(checked: _Checked) -> _Validated:
    """Assign each row its first failing rule, keep the first valid occurrence of an id, split, account."""
    name, path, raw, frame, failing = checked.name, checked.path, checked.raw, checked.frame, checked.failing
    schema, notes, n, rows_read = SCHEMAS[name], checked.notes, len(checked.frame), len(checked.raw)

    # reason code per row: 0 = used, i + 1 = RULE_ORDER[i]; assigning in reverse lets the first failing rule win
    code = np.zeros(n, dtype=np.int8)
    for i in reversed(range(len(RULE_ORDER))):
        if RULE_ORDER[i] in failing:
            code[failing[RULE_ORDER[i]]] = i + 1
    if schema.unique:
        # checked last, among otherwise valid rows: the first valid occurrence of an id is kept
        ok = code == 0
        dup = ok & frame[schema.unique].where(ok).duplicated(keep="first").to_numpy()
        code[dup] = RULE_ORDER.index("duplicate_order_id") + 1

    rejected = code > 0
    if rejected.any():
        good = frame.loc[~rejected].reset_index(drop=True)
        for col in schema.categorical:  # categories seen only in rejected rows go
            if col in good.columns:
                good[col] = as_category(good[col])
        labels = np.array(("",) + RULE_ORDER, dtype=object)[code[rejected]]
        rejects = _rejects_frame(raw.loc[rejected], pd.Series(labels, index=raw.index[rejected]))
    else:
        good = frame.reset_index(drop=True)
        rejects = raw.iloc[:0]
    rows_used, rows_rejected = len(good), len(rejects)
    assert rows_read == rows_used + rows_rejected, f"{path}: accounting does not close"

    counts = np.bincount(code, minlength=len(RULE_ORDER) + 1)
    reasons = {rule: int(counts[i + 1]) for i, rule in enumerate(RULE_ORDER) if counts[i + 1]}
    examples = {}
    for rule in reasons:
        rows = np.flatnonzero(code == RULE_ORDER.index(rule) + 1)[:3]
        ids = _as_text(raw[schema.id_column].iloc[rows]) if schema.id_column in raw.columns else None
        examples[rule] = [
            ids.iloc[j] if ids is not None and isinstance(ids.iloc[j], str) else f"row {r + 1}"
            for j, r in enumerate(rows)
        ]
    if rows_used == 0:
        top = max(reasons, key=reasons.get)
        hint = {
            "ambiguous_number": f"; set number_locale (dot or comma) in {contract_rules.CONTRACT_FILE}",
            "future_timestamp": f"; check the clock, or set now / now_tolerance_days in {contract_rules.CONTRACT_FILE}",
        }.get(top, "")
        raise DataContractError(
            path, _rule_column(schema, top), f"no usable rows: all {rows_read:,} rows rejected (mostly {top}){hint}"
        )
    report = TableReport(
        name=name,
        file=str(path),
        rows_read=rows_read,
        rows_used=rows_used,
        rows_rejected=rows_rejected,
        reasons=reasons,
        examples=examples,
        notes=notes,
    )
    return _Validated(name=name, path=path, sha256=checked.sha256, good=good, rejects=rejects, report=report)


def _is_textual(s: pd.Series) -> bool:
    if is_categorical(s):
        return pd.api.types.is_string_dtype(s.cat.categories.dtype) or pd.api.types.is_object_dtype(
            s.cat.categories.dtype)
    return pd.api.types.is_string_dtype(s.dtype) or pd.api.types.is_object_dtype(s.dtype)


def _sample(s: pd.Series, text: pd.Series | None, n: int = 3) -> str:
    values = (text if text is not None else _as_text(s)).dropna().unique()[:n].tolist()
    return ", ".join(repr(v) for v in values) if values else "all empty"


def _normalise_enum(s: pd.Series) -> pd.Series:
    """Lowercase, stripped strings (blank → NA), computed once per distinct value: enums have few of them."""
    if is_categorical(s):
        return map_categories(s, lambda c: _as_text(c).str.lower())
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    normal = _as_text(pd.Series(uniques)).str.lower().to_numpy(dtype=object, na_value=None)
    if pd.api.types.is_string_dtype(s.dtype) and (normal == uniques.to_numpy(dtype=object)).all():
        return s  # already clean (the common case): no new column needed
    return pd.Series(np.append(normal, None)[codes], index=s.index, dtype="str")


def _rule_column(schema: TableSchema, rule: str) -> str | None:
    if rule == "empty_key":
        return schema.keys[0]
    if rule in ("unparseable_timestamp", "future_timestamp"):
        return schema.timestamps[0] if schema.timestamps else None
    if rule in ("missing_amount", "negative_amount", "implausible_amount", "ambiguous_number"):
        return "amount"
    if rule == "duplicate_order_id":
        return "order_id"
    for prefix in ("unknown_", "bad_"):
        if rule.startswith(prefix):
            return rule[len(prefix) :]
    return None


def _parse_bools(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Nullable booleans: a blank value is unknown (``<NA>``), never silently ``False``."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), pd.Series(False, index=s.index)
    text = _as_text(s).str.lower()
    is_true, is_false = text.isin(_TRUE), text.isin(_FALSE)
    bad = text.notna() & ~is_true & ~is_false
    value = pd.Series(pd.NA, index=s.index, dtype="boolean")
    value[is_true.to_numpy(dtype=bool)] = True
    value[is_false.to_numpy(dtype=bool)] = False
    return value, bad.astype(bool)


def _hash_pii(df: pd.DataFrame, *, key: bytes, notes: list[str]) -> pd.DataFrame:
    """Replace raw ``phone``/``unionid`` with ``phone_hash``/``unionid_hash``; raw columns are dropped."""
    df = df.copy()
    if "phone_hash" in df.columns:
        df["phone_hash"] = _as_text(df["phone_hash"]).str.lower()
    if "unionid_hash" in df.columns:
        df["unionid_hash"] = _as_text(df["unionid_hash"]).str.lower()
    if "phone" in df.columns:
        normal = normalize_phone(df["phone"])
        given = _as_text(df["phone"]).notna()
        invalid = int((given & normal.isna()).sum())
        if invalid:
            notes.append(f"phone: {invalid:,} values are not mainland mobile numbers; their phone_hash is empty")
        hashed = hmac_hash(normal, key)
        df["phone_hash"] = df["phone_hash"].fillna(hashed) if "phone_hash" in df.columns else hashed
        df = df.drop(columns="phone")
    if "unionid" in df.columns:
        hashed = hmac_hash(_as_text(df["unionid"]), key)
        df["unionid_hash"] = df["unionid_hash"].fillna(hashed) if "unionid_hash" in df.columns else hashed
        df = df.drop(columns="unionid")
    return df


def _rejects_frame(raw: pd.DataFrame, reason: pd.Series) -> pd.DataFrame:
    """Rejected rows as read (PII already hashed), all columns as text, plus row number and reason."""
    out = pd.DataFrame(index=raw.index)
    out["row_number"] = (raw.index.to_numpy() + 1).astype("int64")  # 1-based data row (CSV line = row + 1)
    for col in raw.columns:
        s = raw[col]
        out[col] = s.astype("str").where(s.notna()) if len(s) else s.astype("str")
    out["reject_reason"] = reason.astype("str")
    return out.reset_index(drop=True)
