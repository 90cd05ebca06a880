"""One result JSON -> one flat cohort-CSV row, in the columns ``cacpipe evaluate`` reads.

Offered to the batch step (``cacpipe scan``) so that the cohort CSV and the evaluator agree on
names. Nulls stay empty cells (not assessed), never 0.
"""

from __future__ import annotations

from ..labels import ARTERIES

ARTERY_FIELDS: tuple[str, ...] = (
    "assessed", "calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "peak_hu", "mass_mg", "grade",
)
TOTAL_FIELDS: tuple[str, ...] = ("calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "mass_mg")
STUDY_FIELDS: tuple[str, ...] = ("patient_id", "study_uid", "series_uid", "study_date", "manufacturer",
                                 "slice_thickness_mm")
COHORT_COLUMNS: tuple[str, ...] = (
    *STUDY_FIELDS, "status",
    *(f"{a}_{f}" for a in ARTERIES for f in ARTERY_FIELDS),
    *(f"total_{f}" for f in TOTAL_FIELDS),
    "category", "cac_drs", "vessels_with_calcium", "agatston_valid", "flags",
)


def cohort_row(result: dict) -> dict:
    """Flat row of a (finalised) result dict; keys in :data:`COHORT_COLUMNS` order."""
    study = result.get("study") or {}
    arteries = result.get("arteries") or {}
    total = result.get("total") or {}
    row: dict = {k: study.get(k) for k in STUDY_FIELDS}
    row["status"] = result.get("status")
    for a in ARTERIES:
        art = arteries.get(a) or {}
        for f in ARTERY_FIELDS:
            row[f"{a}_{f}"] = art.get(f)
    for f in TOTAL_FIELDS:
        row[f"total_{f}"] = total.get(f)
    for f in ("category", "cac_drs", "vessels_with_calcium", "agatston_valid"):
        row[f] = total.get(f)
    row["flags"] = ";".join(sorted({fl["code"] if isinstance(fl, dict) else fl.code for fl in result.get("flags") or []}))
    return row
