"""cohort.csv: one row per study of the manifest, in the columns ``cacpipe evaluate`` reads.

A study corrected by a reader (``cacpipe review apply``) has its corrected numbers in the usual
columns, the readers in ``corrected`` and the numbers before correction in ``original_*``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..csvout import csv_text
from ..errors import InputDataError
from ..record import COHORT_COLUMNS as RESULT_COLUMNS
from ..record import StudyResult, cohort_row
from .layout import COHORT, write_atomic

COHORT_COLUMNS = (*RESULT_COLUMNS, "reason", "corrected", "original_total_agatston", "original_category",
                  "original_cac_drs")


def _cell(v) -> str:
    if v is None:
        return ""  # not assessed: empty, never 0
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))
    return str(v)


def cohort_rows(out: Path, manifest: dict) -> list[dict]:
    """One row per study of the manifest; numbers come from each done study's result.json."""
    rows = []
    for entry in sorted(manifest["studies"].values(),
                        key=lambda e: (e.get("patient_id", ""), e.get("study_date", ""), e.get("study_uid", ""))):
        row = {c: "" for c in COHORT_COLUMNS}
        row.update(patient_id=entry.get("patient_id", ""), study_uid=entry.get("study_uid", ""),
                   study_date=entry.get("study_date", ""), series_uid=entry.get("series_uid", ""),
                   status=entry.get("status", ""), reason=entry.get("reason", ""))
        if entry.get("status") == "done" and entry.get("result"):
            try:
                raw = json.loads((out / entry["result"]).read_text())
                res = StudyResult.from_json(raw)
            except (OSError, ValueError, InputDataError) as exc:
                row.update(status="failed", reason=f"result unreadable: {exc}")
                rows.append(row)
                continue
            row.update({k: _cell(v) for k, v in cohort_row(res).items() if v is not None and v != ""})
            row.update(_corrected_cells(raw))
        rows.append(row)
    return rows


def _corrected_cells(raw: dict) -> dict:
    """The readers who corrected a study and its total before correction (empty when not corrected)."""
    files = (raw.get("corrections") or {}).get("files") or []
    if not files:
        return {}
    total = (raw.get("original") or {}).get("total") or {}
    return {"corrected": "; ".join(f"{f.get('reader', '')} {f.get('time', '')}" for f in files),
            "original_total_agatston": _cell(total.get("agatston")),
            "original_category": _cell(total.get("category")), "original_cac_drs": _cell(total.get("cac_drs"))}


def write_cohort(out: Path, manifest: dict) -> Path:
    write_atomic(out / COHORT, csv_text(cohort_rows(out, manifest), COHORT_COLUMNS))
    return out / COHORT
