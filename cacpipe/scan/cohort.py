"""cohort.csv: one row per study of the manifest, in the columns ``cacpipe evaluate`` reads.

A study corrected by a reader (``cacpipe review apply``) has its corrected numbers in the usual
columns, the readers in ``corrected`` and the numbers before correction in ``original_*``
(cacpipe.record.cohort_row).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..csvout import csv_text
from ..errors import InputDataError
from ..record import COHORT_COLUMNS as RESULT_COLUMNS
from ..record import StudyResult, cohort_row
from .layout import COHORT, one_line, write_atomic

COHORT_COLUMNS = (*RESULT_COLUMNS, "reason")


def _cell(v) -> str:
    if v is None:
        return ""  # not assessed: empty, never 0
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""  # not a usable number (a result written by an older or foreign analysis)
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
                res = StudyResult.load(out / entry["result"])
                if res.study.study_uid != entry.get("study_uid"):
                    raise InputDataError(f"{entry['result']} holds study {res.study.study_uid}, not this one")
                row.update({k: _cell(v) for k, v in cohort_row(res).items() if v is not None and v != ""})
            except Exception as exc:  # one unreadable result must not cost the whole cohort.csv
                row.update(status="failed", reason=f"result unreadable: {one_line(exc)}")
        rows.append(row)
    return rows


def write_cohort(out: Path, manifest: dict) -> Path:
    """cohort.csv; with progression columns when a patient has more than one done study
    (cacpipe.progression.columns)."""
    from ..progression.columns import PROGRESSION_COLUMNS, add_progression_columns

    rows = cohort_rows(out, manifest)
    columns = (*COHORT_COLUMNS, *PROGRESSION_COLUMNS) if add_progression_columns(rows) else COHORT_COLUMNS
    write_atomic(out / COHORT, csv_text(rows, columns))
    return out / COHORT
