"""The validated tables a data directory holds, as one object passed between the pipeline steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

TABLES = ("orders", "events", "identities", "campaign_touches")


@dataclass
class TableFingerprint:
    """Where a table came from and how its rows were accounted for."""

    file: str
    sha256: str
    rows_read: int
    rows_used: int
    rows_rejected: int

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "rows_rejected": self.rows_rejected,
        }


@dataclass
class Dataset:
    """Validated tables of one data directory.

    ``orders`` is required; the optional tables are ``None`` when the directory does not hold them.
    Raw PII never reaches this object: phones and unionids are already hashed.
    """

    orders: pd.DataFrame
    events: pd.DataFrame | None = None
    identities: pd.DataFrame | None = None
    campaign_touches: pd.DataFrame | None = None
    source: Path | None = None
    fingerprint: dict[str, TableFingerprint] = field(default_factory=dict)
    validation: Any = None  # features.contract.ValidationReport: per-table, per-reason reject counts

    @property
    def data_end(self) -> pd.Timestamp:
        """The last timestamp seen in orders or events: labels need the data to reach ``as_of + horizon``."""
        ends = [self.orders["order_ts"].max()]
        if self.events is not None and len(self.events):
            ends.append(self.events["event_ts"].max())
        return max(ends)

    @property
    def data_start(self) -> pd.Timestamp:
        return self.orders["order_ts"].min()

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables present, by name."""
        return {name: getattr(self, name) for name in TABLES if getattr(self, name) is not None}

    def fingerprint_dict(self) -> dict[str, dict]:
        return {name: fp.to_dict() for name, fp in self.fingerprint.items()}
