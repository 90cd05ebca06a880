"""Serial studies of one phantom patient (baseline + follow-ups) and their progression truth.

Written by ``cacpipe phantom cohort ... --follow-up YEARS...`` (:func:`cacpipe.phantom.cohort.write_cohort`):
each follow-up is one more study in the export under the same PatientID (a later StudyDate, its
own accession and StudyInstanceUID), its truth in ``OUT/truth/<StudyInstanceUID>/`` (the baseline
stays in ``OUT/truth/<PatientID>/``) and its row in truth.csv. ``OUT/progression_truth.json``
(schema :data:`SCHEMA`) holds, per patient, the time points and every lesion's identity across
them: the plaque id is the lesion id (stable across time points), with its numbers as imaged at
each time point (``null`` before it appeared) and its true status (new, grown, stable).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ..labels import ARTERIES

SCHEMA = "cacpipe.phantom.progression/1"
GROWN_MIN = 0.02  # a plaque whose drawn volume factor exceeds 1 + this between two time points "grew"


def follow_up_date(study_date: str, years: float) -> str:
    """The StudyDate (YYYYMMDD) ``years`` after ``study_date``."""
    d = dt.date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
    return (d + dt.timedelta(days=int(round(365.25 * float(years))))).strftime("%Y%m%d")


def follow_up_patient(patient, cfg, years: float, k: int):
    """PatientInfo of follow-up ``k`` (1-based): same patient, later date, its own accession and scanner."""
    return replace(patient, study_date=follow_up_date(patient.study_date, years), accession=f"{patient.accession}F{k}",
                   manufacturer=cfg.acquisition.manufacturer, model=cfg.acquisition.model)


def _plaque_numbers(p: dict) -> dict:
    im = p.get("imaged") or p
    return {"artery": p["artery"], "voxel_volume_mm3": round(float(im["voxel_volume_mm3"]), 4),
            "agatston": round(float(im["agatston"]), 4), "detectable": bool(p.get("detectable", True)),
            "centre_xyz_mm": [round(float(v), 3) for v in p["centre_xyz_mm"]]}


def patient_progression(base_cfg, points: list[dict]) -> dict:
    """Progression truth of one patient.

    ``points``: one dict per time point in order (baseline first) with ``years``, ``study_uid``,
    ``study_date``, ``truth_dir``, ``truth`` (the v2 truth dict) and ``row`` (its truth.csv row).
    """
    from .v2.followup import plaque_onsets, plaque_rates

    rates = plaque_rates(base_cfg)
    last_years = points[-1]["years"]
    onsets = plaque_onsets(base_cfg, last_years)
    ids = sorted({int(p["id"]) for pt in points for p in pt["truth"]["plaques"]})
    lesions = []
    for pid in ids:
        per = []
        for pt in points:
            found = next((p for p in pt["truth"]["plaques"] if int(p["id"]) == pid), None)
            per.append(None if found is None else _plaque_numbers(found))
        first = next(p for p in per if p is not None)
        lesions.append({"id": pid, "artery": first["artery"],
                        "kind": next(p["kind"] for pt in points for p in pt["truth"]["plaques"] if int(p["id"]) == pid),
                        "annual_rate": rates.get(pid), "onset_years": onsets.get(pid, 0.0 if pid in rates else None),
                        "time_points": per})
    pairs = []
    for i in range(1, len(points)):
        a, b = points[i - 1], points[i]
        dy = b["years"] - a["years"]
        status = {}
        for les in lesions:
            pa, pb = les["time_points"][i - 1], les["time_points"][i]
            if pb is None:
                continue
            if pa is None:
                status[les["id"]] = "new"
            else:
                r = les["annual_rate"] or 0.0
                status[les["id"]] = "grown" if (1 + r) ** dy - 1 > GROWN_MIN else "stable"
        arteries = {}
        for art in ARTERIES:
            va, vb = a["row"][f"{art}_calcium_volume_mm3"], b["row"][f"{art}_calcium_volume_mm3"]
            ga, gb = a["row"][f"{art}_agatston"], b["row"][f"{art}_agatston"]
            arteries[art] = {"agatston_prior": ga, "agatston": gb, "agatston_change": round(gb - ga, 4),
                             "volume_prior_mm3": va, "volume_mm3": vb, "volume_change_mm3": round(vb - va, 4),
                             "agatston_change_per_year": round((gb - ga) / dy, 4) if dy > 0 else None,
                             "volume_change_per_year_mm3": round((vb - va) / dy, 4) if dy > 0 else None}
        pairs.append({"prior": a["study_uid"], "current": b["study_uid"], "years": round(dy, 4),
                      "lesion_status": {str(k): v for k, v in status.items()}, "arteries": arteries})
    return {"seed": int(base_cfg.seed),
            "time_points": [{k: pt[k] for k in ("years", "study_uid", "study_date", "truth_dir")} for pt in points],
            "lesions": lesions, "pairs": pairs}
