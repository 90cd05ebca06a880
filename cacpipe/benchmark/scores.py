"""The score spreadsheet of non-gated COCA: one row per scan, Agatston per vessel and in total.

Rows are keyed by the case folder name plus ``A`` (``12A`` for folder ``12``; a key without the
``A`` is accepted too). Columns are found by name, case-insensitively: the first column is the
id; ``LCA`` / ``LM`` / ``Left main`` (left main, counted as LAD in cacpipe's label scheme),
``LAD``, ``LCX`` / ``CX``, ``RCA``, ``Total``. A sheet with vessel columns but no total gets the
sum; one with only a total has no per-vessel numbers.

``.xlsx`` is read with the standard library (an xlsx file is a zip of XML parts), so no spreadsheet
package is needed; ``.csv`` with the csv module.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from ..errors import InputDataError

VESSEL_ALIASES: dict[str, tuple[str, ...]] = {
    "LM": ("lca", "lm", "left main", "lmca", "left main coronary artery", "left coronary artery"),
    "LAD": ("lad", "left anterior descending", "left anterior descending artery"),
    "LCX": ("lcx", "cx", "circumflex", "left circumflex", "left circumflex artery"),
    "RCA": ("rca", "right coronary artery"),
    "total": ("total", "total score", "agatston", "total agatston", "cac", "cac score", "total cac"),
}
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _col_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref.upper()).group(0)
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def read_xlsx_rows(path: str | Path) -> list[list[str]]:
    """The first worksheet of an .xlsx file as rows of cell texts (numbers as written in the file)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
                for si in root.findall("m:si", _NS):
                    shared.append("".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")))
            sheet = "xl/worksheets/sheet1.xml"
            if "xl/workbook.xml" in names and "xl/_rels/workbook.xml.rels" in names:
                wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
                first = wb.find("m:sheets/m:sheet", _NS)
                rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
                if first is not None:
                    rid = first.get(_REL_NS)
                    for rel in rels:
                        if rel.get("Id") == rid:
                            target = rel.get("Target", "").lstrip("/")
                            sheet = target if target.startswith("xl/") else f"xl/{target}"
            if sheet not in names:
                raise InputDataError(f"{path}: no worksheet {sheet} inside the xlsx file")
            root = ElementTree.fromstring(z.read(sheet))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as exc:
        raise InputDataError(f"{path}: not a readable .xlsx file ({exc})") from exc
    rows: list[list[str]] = []
    for row in root.iter(f"{{{_NS['m']}}}row"):
        cells: dict[int, str] = {}
        for i, c in enumerate(row.findall("m:c", _NS)):
            col = _col_index(c.get("r")) if c.get("r") else i
            kind = c.get("t", "n")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            else:
                v = c.find("m:v", _NS)
                text = "" if v is None or v.text is None else v.text
                if kind == "s" and text:
                    text = shared[int(text)]
            cells[col] = text
        if cells:
            rows.append([cells.get(k, "") for k in range(max(cells) + 1)])
    return rows


def _rows(path: Path) -> list[list[str]]:
    if path.suffix.lower() == ".xlsx":
        return read_xlsx_rows(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        return [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]


def _number(text: str, where: str) -> float:
    t = str(text).strip()
    try:
        v = float(t)
    except ValueError:
        raise InputDataError(f"{where}: {t!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise InputDataError(f"{where}: {t!r} is not a finite number >= 0")
    return v


def read_scores(path: str | Path) -> dict[str, dict]:
    """Case folder name -> ``{"LM", "LAD", "LCX", "RCA", "total"}`` (Agatston; None where the sheet has no column)."""
    path = Path(path)
    rows = _rows(path)
    if len(rows) < 2:
        raise InputDataError(f"{path}: no score rows (expected a header row and one row per scan)")
    header = [h.strip().lower() for h in rows[0]]
    cols: dict[str, int] = {}
    for key, aliases in VESSEL_ALIASES.items():
        for i, h in enumerate(header):
            if i > 0 and h in aliases and key not in cols:
                cols[key] = i
    if "total" not in cols and not all(v in cols for v in ("LAD", "LCX", "RCA")):
        raise InputDataError(f"{path}: found no Agatston columns (header {rows[0]}); expected Total and/or "
                             "LCA, LAD, LCX, RCA")
    out: dict[str, dict] = {}
    for n, r in enumerate(rows[1:], start=2):
        rid = str(r[0]).strip() if r else ""
        if not rid:
            continue
        if rid.endswith(".0"):
            rid = rid[:-2]  # an id typed as a number
        vals: dict = {}
        for key in VESSEL_ALIASES:
            i = cols.get(key)
            cell = r[i] if i is not None and i < len(r) else ""
            vals[key] = None if i is None or str(cell).strip() == "" else _number(cell, f"{path.name} row {n} column "
                                                                                          f"{rows[0][i]}")
        if vals["total"] is None:
            parts = [vals[k] for k in ("LM", "LAD", "LCX", "RCA")]
            if all(v is not None for v in parts[1:]):
                vals["total"] = float(sum(v or 0.0 for v in parts))
        case = rid[:-1] if rid[-1:] in ("A", "a") else rid
        if case in out:
            raise InputDataError(f"{path.name} row {n}: id {rid} appears twice")
        out[case] = vals
    return out
