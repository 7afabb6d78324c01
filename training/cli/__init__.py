"""The ``scrm`` command line: simulate data, validate it, build features, train, score, serve, compare runs.

``base`` holds the app, the one error handler (:func:`exit_2_on`) and the shared options; each sibling module
registers its commands on import: ``data`` (simulate, validate, features, data, drift), ``models`` (train,
promote, rollback, score, backtest, lookalike), ``refresh``, ``decisions`` (target, tiers suggest), ``runs`` (runs, report), ``uplift``
(uplift backtest) and ``serve``.
"""

from __future__ import annotations

import sys

from training.cli import data, decisions, models, refresh, runs, serve, uplift  # noqa: F401  (register the commands)
from training.cli.base import app, console, exit_2_on, parse_date
from training.cli.serve import _example_person

__all__ = ["app", "console", "exit_2_on", "main", "parse_date", "_example_person"]


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
