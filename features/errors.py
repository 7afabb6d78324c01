"""Typed input errors: bad input that names where it is, so each caller can point at it without parsing text.

The lowest layer (``features/`` imports nothing from ``training/`` or ``serving/``), so every package raises and
catches the same class: the CLI turns an :class:`InputError` into ``error: <message>`` and exit code 2, the HTTP
service into a 400 whose ``detail[].loc`` is :attr:`InputError.field` when that names a request field.
"""

from __future__ import annotations

from pathlib import Path

Field = tuple[str | int, ...]


class InputError(ValueError):
    """Input that breaks a rule of the code it was given to: the message says what, the attributes say where.

    Parameters
    ----------
    message : str
        The whole message, as printed (``str(error)``).
    field : str or tuple, optional
        Where the problem is: a parameter or request field path such as ``("budget",)`` or
        ``("filters", "segments")``, or a column name. A string is one level (``"budget"`` → ``("budget",)``);
        ``()`` when the problem is not one field's.
    reason : str, optional
        What is wrong without the location (default: the message).
    file : str or Path, optional
        The offending file, when the input came from one.
    rows : int, optional
        How many rows are affected, when it is about rows.
    """

    def __init__(self, message: str, *, field: str | Field = (), reason: str | None = None,
                 file: str | Path | None = None, rows: int | None = None) -> None:
        super().__init__(message)
        self.field: Field = (field,) if isinstance(field, str) else tuple(field)
        self.reason = message if reason is None else reason
        self.file = None if file is None else str(file)
        self.rows = rows
