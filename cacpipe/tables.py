"""Reading the tables an evaluation (and `cacpipe severity fit`) compares, strictly, and joining them.

Every CSV is read as text (IDs keep their leading zeros) with the Python csv module, so that each
row keeps its row number in the file (row 1 = the header, as a spreadsheet numbers it). Numbers
are parsed per column by :func:`numbers`: an empty cell (or ``NA`` / ``N/A``) is "not assessed";
anything else that is not a finite, non-negative number is an error naming file, row, column and
value. The separator is detected from the header (comma, semicolon or tab) and reported; a
decimal comma (``12,5``) is refused with a hint unless the caller says ``decimal=","``.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputDataError

LINE = "_row"  # hidden column: the row number of each record in its file (header = row 1)
MISSING = frozenset({"", "na", "n/a"})
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
MAX_NAMED = 8  # bad cells named in one message


def _sniff_separator(header: str) -> str:
    """The separator that splits the header line into the most fields (comma on a tie)."""
    counts = {sep: len(next(csv.reader([header], delimiter=sep))) for sep in SEPARATORS}
    best = max(counts.values())
    return next(sep for sep in SEPARATORS if counts[sep] == best)


def read_csv(path: str | Path, what: str, sep: str | None = None, decimal: str = ".") -> pd.DataFrame:
    """Read a CSV strictly: text cells (NaN for empty), a ``_row`` column, attrs path/sep/decimal/notes.

    ``sep`` None detects comma, semicolon or tab from the header; a row with more or fewer cells
    than the header is an error (with a hint when decimal commas would explain it).
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what} file not found: {path}")
    if path.is_dir():
        raise InputDataError(f"{what} {path} is a folder; give the CSV file")
    if decimal not in (".", ","):
        raise InputDataError(f"decimal mark must be '.' or ',', got {decimal!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")  # spreadsheets on Windows
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputDataError(f"{what} CSV {path} is empty (no header row)")
    notes: list[str] = []
    if sep is None:
        sep = _sniff_separator(lines[0])
        if sep != ",":
            notes.append(f"{path.name}: read as {SEPARATORS[sep]}-separated (detected from the header)")
    if sep == "," and decimal == ",":  # --decimal ',' is meant for the semicolon/tab files of a run
        decimal = "."
        notes.append(f"{path.name}: comma-separated, so read with '.' as decimal mark")
    reader = csv.reader(text.splitlines(keepends=True), delimiter=sep)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise InputDataError(f"cannot read {what} CSV {path}: {exc}") from exc
    if len(header) == 1 and sep == ",":
        notes.append(f"{path.name}: only one column ({header[0]!r}); is it separated by something other than "
                     "comma, semicolon or tab?")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputDataError(f"{path}: column names occur more than once: {dup}")
    rows, row_numbers = [], []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                hint = ""
                if sep == "," and len(cells) > len(header) and any(_DECIMAL_COMMA.match(f"{a},{b}")
                                                                   for a, b in pairwise(cells)):
                    hint = " (decimal commas such as 12,5 in a comma-separated file? save it with ';' as separator)"
                raise InputDataError(f"{path} row {reader.line_num}: {len(cells)} cells but the header has "
                                     f"{len(header)}{hint}")
            rows.append([c.strip() or None for c in cells])
            row_numbers.append(reader.line_num)
    except csv.Error as exc:
        raise InputDataError(f"cannot read {what} CSV {path} (row {reader.line_num}): {exc}") from exc
    df = pd.DataFrame(rows, columns=header, dtype=object)
    df[LINE] = row_numbers
    df.attrs.update(path=str(path), what=what, sep=sep, decimal=decimal, notes=notes)
    return df


def frame(records: list[dict], path: str | Path, what: str) -> pd.DataFrame:
    """A table built from records (e.g. truth JSON files), with the same attrs as :func:`read_csv`."""
    df = pd.DataFrame([{k: (None if v is None else str(v)) for k, v in r.items()} for r in records], dtype=object)
    df[LINE] = [r.get("_row", i + 2) for i, r in enumerate(records)]
    df.attrs.update(path=str(path), what=what, sep=",", decimal=".", notes=[])
    return df


def where(df: pd.DataFrame) -> str:
    return df.attrs.get("path", "table")


def _cell_error(path: str, col: str, bad: list[tuple[int, str, str]], sep: str) -> InputDataError:
    named = "; ".join(f"row {r}: {v!r} ({why})" for r, v, why in bad[:MAX_NAMED])
    more = f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    hint = ""
    if any(_DECIMAL_COMMA.match(v) for _, v, _ in bad):
        hint = (" - decimal commas? pass --decimal ','" if sep != "," else
                " - decimal commas in a comma-separated file: save it with ';' as separator, then pass --decimal ','")
    return InputDataError(f"{path} column {col}: {named}{more}{hint}")


def parse_number(text: str | None, decimal: str = ".") -> tuple[float, str]:
    """(value, problem): NaN for missing; problem is '' when the cell is a finite number >= 0."""
    if text is None or str(text).strip().lower() in MISSING:
        return float("nan"), ""
    s = str(text).strip()
    if decimal == ",":
        if "." in s:
            return float("nan"), "a '.' in a file read with decimal commas"
        s = s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        return float("nan"), "not a number"
    if not math.isfinite(v):
        return float("nan"), "not a finite number"
    if v < 0:
        return float("nan"), "negative"
    return v, ""


def numbers(df: pd.DataFrame, col: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Column ``col`` as floats (NaN = not assessed); any other unparseable cell raises, naming it.

    ``df`` may be a joined table whose columns carry a ``pred:`` / ``ref:`` prefix: then the
    rows are named from that side's ``_row`` column and file.
    """
    side = col.split(":", 1)[0] + ":" if ":" in col else ""
    lines = df[f"{side}{LINE}"].to_numpy() if f"{side}{LINE}" in df.columns else np.arange(len(df)) + 2
    decimal = df.attrs.get(f"{side}decimal", df.attrs.get("decimal", "."))
    out = np.empty(len(df), dtype=float)
    bad = []
    for i, (v, line) in enumerate(zip(df[col], lines, strict=True)):
        out[i], why = parse_number(v, decimal)
        if why:
            bad.append((int(line), str(v), why))
    if bad:
        raise _cell_error(df.attrs.get(f"{side}path", where(df)), col.split(":", 1)[-1], bad,
                          df.attrs.get(f"{side}sep", ","))
    return out


def texts(df: pd.DataFrame, col: str) -> list[str | None]:
    """Column as stripped strings, None for empty."""
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip() else str(v).strip()
            for v in df[col]]


def require_filled(df: pd.DataFrame, cols: list[str]) -> None:
    """Every cell of ``cols`` must be filled; blanks are named by row and column."""
    bad = [(int(line), c) for c in cols for v, line in zip(df[c], df[LINE], strict=True)
           if v is None or (isinstance(v, float) and np.isnan(v)) or not str(v).strip()]
    if bad:
        named = ", ".join(f"row {r} column {c}" for r, c in bad[:MAX_NAMED])
        more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        raise InputDataError(f"{where(df)}: empty cells where a value is needed: {named}{more}")


# --- joining prediction and reference -------------------------------------------------------
@dataclass
class Joined:
    """PRED and REF rows matched on ``key``; columns prefixed ``pred:`` / ``ref:``."""

    df: pd.DataFrame
    key: str
    pred_rows: int
    ref_rows: int
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_ref: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"key": self.key, "pred_rows": self.pred_rows, "ref_rows": self.ref_rows, "matched": len(self.df),
                "unmatched_pred": self.unmatched_pred, "unmatched_ref": self.unmatched_ref}


def _filled(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and all(v is not None for v in texts(df, col))


def join_key(pred: pd.DataFrame, ref: pd.DataFrame) -> str:
    """study_uid when both tables fill it on every row, else patient_id."""
    for key in ("study_uid", "patient_id"):
        if _filled(pred, key) and _filled(ref, key):
            return key
    raise InputDataError(
        f"cannot match {where(pred)} to {where(ref)}: both need a study_uid or patient_id column filled on every "
        f"row (pred columns: {[c for c in pred.columns if c != LINE][:8]}, "
        f"ref columns: {[c for c in ref.columns if c != LINE][:8]})")


def _listing(ids: list[str]) -> str:
    return ", ".join(ids)


def join(pred: pd.DataFrame, ref: pd.DataFrame, allow_partial: bool = False) -> Joined:
    """Match PRED and REF rows; unmatched studies are an error (listed) unless ``allow_partial``.

    When rows are matched on study_uid and both tables carry patient_id, the two patient IDs of
    every matched row must agree (blank cells are not checked): a disagreement means the tables
    describe different patients under one study UID, and is always an error.
    """
    key = join_key(pred, ref)
    for df in (pred, ref):
        ids = pd.Series(texts(df, key))
        dup = sorted(ids[ids.duplicated()].unique())
        if dup:
            raise InputDataError(f"{where(df)}: {key} values occur more than once: {dup[:10]}")
    p = pred.rename(columns={c: f"pred:{c}" for c in pred.columns if c != key}).assign(**{key: texts(pred, key)})
    r = ref.rename(columns={c: f"ref:{c}" for c in ref.columns if c != key}).assign(**{key: texts(ref, key)})
    pids, rids = set(p[key]), set(r[key])
    only_p, only_r = sorted(pids - rids), sorted(rids - pids)
    m = p.merge(r, on=key, how="inner")
    if m.empty:
        raise InputDataError(f"no {key} is shared by {where(pred)} and {where(ref)}; nothing to evaluate "
                             f"(pred: {_listing(sorted(pids)[:5])}...; ref: {_listing(sorted(rids)[:5])}...)")
    if (only_p or only_r) and not allow_partial:
        parts = []
        if only_p:
            parts.append(f"{len(only_p)} in {where(pred)} only: {_listing(only_p)}")
        if only_r:
            parts.append(f"{len(only_r)} in {where(ref)} only: {_listing(only_r)}")
        raise InputDataError(f"{len(only_p) + len(only_r)} studies are not in both tables ({'; '.join(parts)}). "
                             "Fix the tables, or pass --allow-partial to evaluate the matched studies only.")
    if key == "study_uid" and "pred:patient_id" in m.columns and "ref:patient_id" in m.columns:
        pp, rp = texts(m, "pred:patient_id"), texts(m, "ref:patient_id")
        bad = [(u, a, b) for u, a, b in zip(m[key], pp, rp, strict=True) if a and b and a != b]
        if bad:
            named = "; ".join(f"{u}: pred {a!r} vs ref {b!r}" for u, a, b in bad[:MAX_NAMED])
            raise InputDataError(f"patient_id disagrees for {len(bad)} studies matched on study_uid ({named}); "
                                 "the two tables describe different patients under one study UID")
    m.attrs.update({f"pred:{k}": v for k, v in pred.attrs.items()})
    m.attrs.update({f"ref:{k}": v for k, v in ref.attrs.items()})
    m.attrs["key"] = key
    return Joined(m, key, len(pred), len(ref), only_p, only_r)
