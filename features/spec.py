"""The feature schema as data: one ``FeatureSpec`` per snapshot column (or name template).

From ``SNAPSHOT_SPEC`` come the column order of a snapshot, the plain-words docs (``FEATURE_DOCS``, the table in
``docs/features.md``), the columns a model may read (``model_input``) and the churn model's monotone directions.
``TRAINING_SPEC`` describes the columns ``training.frames`` adds before fitting (ratios and BTYD outputs).
Templated names are expanded with the windows of a ``FeatureConfig`` and the vocabularies of ``features.vocab``:

- ``{w}``: ``FeatureConfig.windows``; ``{ew}``: ``FeatureConfig.event_windows``;
- ``{lyw}``: the windows of ``FeatureConfig.windows`` shorter than a year (last year's same calendar window);
- ``{channel}``: ``vocab.CHANNELS``; ``{event}``: ``vocab.EVENT_TYPES`` (``{event_words}`` in docs: the type
  with spaces); ``{bins}`` and ``{response_window_days}`` in docs: the config's values;
- ``{festival}``: the festivals of the packaged calendar (``features.calendar``; ``{festival_label}`` in docs).

``CALENDAR_SPEC`` describes the calendar features of a horizon window (``features.calendar.window_features``).

Regenerate the docs tables with ``python -m features.spec --markdown`` and ``--calendar``.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from features.calendar import DEFAULT_CALENDAR, load_calendar
from features.config import FeatureConfig, FeatureConfigMismatch, check_config
from features.vocab import CHANNELS, EVENT_TYPES, LIFECYCLE_STAGES

__all__ = ["FeatureConfigMismatch", "FeatureSpec", "SNAPSHOT_SPEC", "TRAINING_SPEC", "check_config"]

Dtype = Literal["int64", "float64", "str", "bool", "boolean"]  # "boolean": pandas' nullable boolean


@dataclass(frozen=True)
class FeatureSpec:
    """One output column, or a family of columns when ``name`` holds a ``{placeholder}``.

    Parameters
    ----------
    name
        Column name or template (``orders_{w}d``, ``ev_{event}_{ew}d``; see the module docstring).
    dtype
        pandas dtype of the column in a snapshot.
    doc
        Plain-words meaning (may use the same placeholders, and ``{bins}``, ``{response_window_days}``).
    model_input
        Whether a model may read it (ids, names and the opt-out constraint may not).
    monotone
        Direction the churn probability must follow as the value grows: +1, -1 or 0 (free).
    clv_monotone
        +1 when it counts past orders or spend (the CLV tree models are non-decreasing in it), else 0.
    """

    name: str
    dtype: Dtype
    doc: str
    model_input: bool = True
    monotone: Literal[-1, 0, 1] = 0
    clv_monotone: Literal[0, 1] = 0

    @property
    def templated(self) -> bool:
        """Whether ``name`` is a template expanded over windows or a vocabulary."""
        return "{" in self.name

    @property
    def prefix(self) -> str:
        """The fixed start of the name (the whole name when not templated)."""
        return self.name.split("{", 1)[0]

    def expand(self, config: FeatureConfig | None = None) -> list[tuple[str, str]]:
        """``(column, doc)`` for every column of this entry under ``config`` (defaults when ``None``)."""
        config = config or FeatureConfig()
        values = {"w": config.windows, "ew": config.event_windows, "channel": CHANNELS, "event": EVENT_TYPES,
                  "lyw": tuple(w for w in config.windows if w < 365)}
        labels = {}
        if "{festival}" in self.name:
            calendar = load_calendar(DEFAULT_CALENDAR)
            values["festival"] = calendar.names
            labels = {f.name: f.label for f in calendar.festivals}
        keys = re.findall(r"\{(\w+)\}", self.name)
        unknown = [k for k in keys if k not in values]
        if unknown:
            raise ValueError(f"feature spec {self.name!r} uses unknown placeholder(s) {unknown}")
        out = []
        for combo in itertools.product(*(values[k] for k in keys)):
            fill = dict(zip(keys, combo, strict=True))
            words = {"event_words": str(fill.get("event", "")).replace("_", " "), "bins": config.rfm_bins,
                     "festival_label": labels.get(fill.get("festival"), ""),
                     "response_window_days": config.response_window_days}
            out.append((self.name.format(**fill), self.doc.format(**fill, **words)))
        return out


def _stages() -> str:
    return ", ".join(LIFECYCLE_STAGES[:-1]) + f" or {LIFECYCLE_STAGES[-1]}"


#: Columns of a feature snapshot, in snapshot order.
SNAPSHOT_SPEC: tuple[FeatureSpec, ...] = (
    FeatureSpec("person_id", "str", "the person (One-ID) the row describes", model_input=False),
    FeatureSpec("frequency", "float64", "number of repeat purchase days (days with a paid order, minus the first one)",
                clv_monotone=1),
    FeatureSpec("recency", "float64", "days between the first and the last purchase day (BTYD recency)",
                monotone=-1),  # a later last purchase at the same age
    FeatureSpec("T", "float64", "days from the first purchase day to the day before the snapshot date (BTYD age)"),
    FeatureSpec("monetary_value", "float64", "average spend per repeat purchase day (0 for one-time buyers)"),
    FeatureSpec("orders", "int64", "number of paid orders", clv_monotone=1),
    FeatureSpec("recency_days", "float64", "days since the last paid order", monotone=1),
    FeatureSpec("tenure_days", "float64", "days since the first paid order"),
    FeatureSpec("first_seen_days", "float64", "days since the person was first seen (any order or behaviour event)"),
    FeatureSpec("total_spend", "float64", "total amount spent on paid orders", clv_monotone=1),
    FeatureSpec("avg_spend", "float64", "average amount per paid order"),
    FeatureSpec("orders_{w}d", "int64", "paid orders in the last {w} days", clv_monotone=1),
    FeatureSpec("spend_{w}d", "float64", "amount spent in the last {w} days", clv_monotone=1),
    FeatureSpec("spend_ly_{lyw}d", "float64",
                "amount spent in the {lyw} days starting 365 days before the snapshot date: last year's spend in the "
                "same calendar window as the next {lyw} days", clv_monotone=1),
    FeatureSpec("ipi_mean", "float64", "average number of days between purchase days"),
    FeatureSpec("ipi_std", "float64", "how irregular the gaps between purchase days are (standard deviation, days)"),
    FeatureSpec("refund_rate", "float64", "share of orders that were refunded"),
    FeatureSpec("discount_share", "float64", "share of paid orders that used a discount"),
    FeatureSpec("channel_share_{channel}", "float64", "share of paid orders placed on {channel}"),
    FeatureSpec("n_channels", "int64", "number of different sales channels the person bought in"),
    FeatureSpec("n_categories", "int64", "number of different product categories bought"),
    FeatureSpec("store_share", "float64", "share of paid orders placed in physical stores"),
    FeatureSpec("n_customer_keys", "int64", "number of channel accounts of the person seen so far"),
    FeatureSpec("r_score", "float64", "recency score 1-{bins} (higher = bought more recently)", monotone=-1),
    FeatureSpec("f_score", "float64", "frequency score 1-{bins} (higher = more paid orders)"),
    FeatureSpec("m_score", "float64", "monetary score 1-{bins} (higher = spent more)"),
    FeatureSpec("rfm_segment", "str",
                "RFM segment (Chinese name), from high/low recency, frequency and monetary scores", model_input=False),
    FeatureSpec("rfm_segment_en", "str", "RFM segment (English name)", model_input=False),
    FeatureSpec("lifecycle_stage", "str", f"lifecycle stage: {_stages()}", model_input=False),
    FeatureSpec("ev_{event}_{ew}d", "int64", "number of {event_words} events in the last {ew} days"),
    FeatureSpec("days_since_{event}", "float64", "days since the last {event_words} event", monotone=1),
    FeatureSpec("cart_to_order_ratio", "float64", "paid orders per add-to-cart event"),
    FeatureSpec("msg_open_rate", "float64", "share of campaign messages received that were opened"),
    FeatureSpec("msg_click_rate", "float64", "share of campaign messages received that were clicked"),
    FeatureSpec("campaign_touches", "int64", "number of campaign messages received"),
    FeatureSpec("campaign_response_rate", "float64",
                "share of campaign offers answered by a paid order within {response_window_days} days"),
    FeatureSpec("age", "float64", "age in years (from birth year)"),
    FeatureSpec("member_tenure_days", "float64", "days since the person joined the membership programme"),
    FeatureSpec("is_member", "float64", "1 when the person holds a membership card"),
    FeatureSpec("marketing_opt_out", "boolean",
                "the person opted out of marketing on any account (empty: consent unknown)", model_input=False),
)

#: Columns ``training.frames`` adds to a snapshot's before a model reads it.
TRAINING_SPEC: tuple[FeatureSpec, ...] = (
    FeatureSpec("order_rate", "float64", "paid orders per day since the first paid order", clv_monotone=1),
    FeatureSpec("recency_ratio", "float64",
                "days since the last paid order divided by the person's average gap between purchase days",
                monotone=1),
    FeatureSpec("gap_ratio", "float64",
                "days since the last activity divided by the person's average gap between purchase days", monotone=1),
    FeatureSpec("btyd_p_alive", "float64", "probability the customer is still active (BTYD model)", monotone=-1),
    FeatureSpec("btyd_p_purchase", "float64", "probability of at least one order in the horizon (BTYD model)",
                monotone=-1),
    FeatureSpec("btyd_expected_orders", "float64", "orders the BTYD model expects in the horizon", monotone=-1),
    FeatureSpec("btyd_expected_spend", "float64", "spend the BTYD and Gamma-Gamma models expect in the horizon",
                monotone=-1),
)

#: Calendar features of the horizon window ``[as_of, as_of + H)`` a model predicts: one value per window, the same
#: for every person (``features.calendar.window_features``). The CLV model's level calibration reads them (the
#: trees do not: one value per training cutoff would let them memorise the cutoffs); backtests report them.
CALENDAR_SPEC: tuple[FeatureSpec, ...] = (
    FeatureSpec("cal_days_{festival}", "float64",
                "days of the festival period {festival_label} inside the horizon window", model_input=False),
    FeatureSpec("cal_festival_days", "float64", "days of any festival period inside the horizon window",
                model_input=False),
    FeatureSpec("cal_seasonal_index", "float64",
                "the brand's seasonal index of the horizon window: the mean over its days of each day's festival "
                "lift (revenue over a local baseline, learned from the brand's own history before as_of; 1 outside "
                "festivals)", model_input=False),
)

#: Snapshot columns copied into the scores table (in this order) for tiers, targeting and the service.
SCORE_PASSTHROUGH: tuple[str, ...] = (
    "spend_365d", "recency_days", "orders", "total_spend", "tenure_days", "r_score", "f_score", "m_score",
    "rfm_segment", "rfm_segment_en", "lifecycle_stage", "marketing_opt_out",
)


def expand(spec: Iterable[FeatureSpec] = SNAPSHOT_SPEC, config: FeatureConfig | None = None) -> list[tuple[FeatureSpec, str, str]]:
    """``(entry, column, doc)`` for every column of ``spec`` under ``config``, in spec order."""
    return [(entry, col, doc) for entry in spec for col, doc in entry.expand(config)]


def column_order(config: FeatureConfig | None = None) -> list[str]:
    """Every snapshot column under ``config``, in snapshot order."""
    return [col for _, col, _ in expand(SNAPSHOT_SPEC, config)]


def feature_docs(config: FeatureConfig | None = None) -> dict[str, str]:
    """Plain-words description of every snapshot column for ``config`` (defaults when ``None``)."""
    return {col: doc for _, col, doc in expand(SNAPSHOT_SPEC, config)}


def column_dtypes(config: FeatureConfig | None = None) -> dict[str, str]:
    """pandas dtype of every snapshot column under ``config``."""
    return {col: entry.dtype for entry, col, _ in expand(SNAPSHOT_SPEC, config)}


def non_model_columns() -> frozenset[str]:
    """Snapshot columns no model may read (ids, segment and stage names, the opt-out flag)."""
    return frozenset(e.name for e in SNAPSHOT_SPEC if not e.model_input and not e.templated)


def churn_monotone() -> dict[str, int]:
    """``{column: direction}`` of the fixed-name columns (snapshot and training) with a churn direction.

    Templated entries (``days_since_{event}``) are matched by prefix: see ``monotone_prefixes``.
    """
    return {e.name: e.monotone for e in (*SNAPSHOT_SPEC, *TRAINING_SPEC) if e.monotone and not e.templated}


def clv_count_columns() -> tuple[str, ...]:
    """Fixed-name columns counting past orders or spend (the CLV tree models are non-decreasing in them)."""
    return tuple(e.name for e in (*SNAPSHOT_SPEC, *TRAINING_SPEC) if e.clv_monotone and not e.templated)


def clv_count_prefixes() -> tuple[str, ...]:
    """Name prefixes of the templated columns counting past orders or spend (``orders_``, ``spend_``)."""
    return tuple(e.prefix for e in (*SNAPSHOT_SPEC, *TRAINING_SPEC) if e.clv_monotone and e.templated)


def passthrough_columns(kind: Literal["numeric", "text", "all"] = "all") -> tuple[str, ...]:
    """``SCORE_PASSTHROUGH`` (in order), or only its numeric or its text columns (by spec dtype)."""
    dtypes = column_dtypes()
    missing = [c for c in SCORE_PASSTHROUGH if c not in dtypes]
    if missing:
        raise ValueError(f"SCORE_PASSTHROUGH names column(s) {missing} that are not in SNAPSHOT_SPEC")
    keep = {"numeric": ("int64", "float64"), "text": ("str",), "all": ("int64", "float64", "str", "bool", "boolean")}[kind]
    return tuple(c for c in SCORE_PASSTHROUGH if dtypes[c] in keep)


MARKDOWN_HEADER = "| column | type | model input | meaning |"


def markdown_table(config: FeatureConfig | None = None) -> str:
    """The column table of ``docs/features.md`` (one row per snapshot column under ``config``)."""
    lines = [MARKDOWN_HEADER, "|---|---|---|---|"]
    for entry, col, doc in expand(SNAPSHOT_SPEC, config):
        lines.append(f"| `{col}` | {entry.dtype} | {'yes' if entry.model_input else 'no'} | {doc} |")
    return "\n".join(lines) + "\n"


CALENDAR_MARKDOWN_HEADER = "| window feature | type | meaning |"


def calendar_markdown_table() -> str:
    """The calendar-features table of ``docs/features.md`` (``CALENDAR_SPEC`` under the packaged calendar)."""
    lines = [CALENDAR_MARKDOWN_HEADER, "|---|---|---|"]
    for entry, col, doc in expand(CALENDAR_SPEC):
        lines.append(f"| `{col}` | {entry.dtype} | {doc} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m features.spec --markdown [--config FILE]`` / ``--calendar``: print a docs table."""
    parser = argparse.ArgumentParser(prog="python -m features.spec", description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs/features.md column table")
    parser.add_argument("--calendar", action="store_true",
                        help="print the docs/features.md table of the horizon window's calendar features")
    parser.add_argument("--config", help="a FeatureConfig YAML/JSON file (defaults when omitted)")
    args = parser.parse_args(argv)
    if not args.markdown and not args.calendar:
        parser.error("nothing to do: pass --markdown or --calendar")
    if args.markdown:
        config = FeatureConfig.from_file(args.config) if args.config else None
        print(markdown_table(config), end="")
    if args.calendar:
        print(calendar_markdown_table(), end="")


if __name__ == "__main__":  # pragma: no cover
    main()
