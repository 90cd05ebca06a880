"""Writing CSV files people open in spreadsheets: one writer, formula injection neutralised.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula
by Excel, LibreOffice and Google Sheets (CSV injection). Patient IDs, rater names and comments come
from outside, so every text cell that could be read as a formula gets a leading apostrophe, the
OWASP-recommended escape, which spreadsheets show as text. Numbers (including negative ones) are
left alone: they are written by us, not taken from input.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """A CSV cell for ``value``: '' for None, numbers as they are, risky text prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if text.startswith(FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_text(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    """CSV text (header + rows, ``\\n`` line ends) with every cell passed through :func:`safe_cell`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([safe_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(path: str | Path, rows: Iterable[Mapping], columns: Sequence[str]) -> Path:
    """Write :func:`csv_text` to ``path`` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(csv_text(rows, columns), encoding="utf-8", newline="")
    return path
