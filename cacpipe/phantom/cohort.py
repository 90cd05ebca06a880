"""A cohort of v2 phantoms as a PACS export plus the truth table ``cacpipe evaluate`` reads.

Layout::

    OUT/export/<PatientID>/<date_accession>/<NNN_series>/IM*.dcm   (a PACS export)
    OUT/truth/<PatientID>/truth.json labels.nii.gz truth_lesions.nii.gz heart.nii.gz
    OUT/truth.csv      one row per study (columns: TRUTH_COLUMNS)

With ``follow_up`` (years after the baseline, e.g. ``(0, 1, 2)``), each patient also gets later
studies (cacpipe.phantom.serial): their truth in ``OUT/truth/<StudyInstanceUID>/``, truth.csv
rows with the FOLLOW_UP_COLUMNS, and ``OUT/progression_truth.json`` (lesion identity over time).

Studies get extra series at random (a thick 5 mm series, a sharp-kernel series, a derived
reformat, a labelled post-contrast series), as a real export has; the localizer is always there.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..labels import ARTERIES
from ..quant.categories import cac_drs, category
from . import seeds as seed_ranges
from .serial import SCHEMA as SERIAL_SCHEMA
from .serial import follow_up_patient, patient_progression
from .v2 import random_config
from .v2.followup import follow_up_config
from .v2.generate import generate
from .v2.sampling import apply_overrides
from .v2.study import _json_default, patient_of, write_study_v2, write_truth_files

TRUTH_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_uid",
    *[f"{a}_{k}" for a in ARTERIES for k in ("present", "calcium_volume_mm3", "agatston", "lesions")],
    "total_agatston", "total_calcium_volume_mm3", "total_lesions", "category", "cac_drs",
    *[f"{a}_agatston_still" for a in ARTERIES], "total_agatston_still",
    "sex", "age", "vendor", "slice_thickness", "expected_flags", "seed", "preset",
)
FOLLOW_UP_COLUMNS: tuple[str, ...] = ("study_date", "time_point", "years_from_baseline")
EXTRA_P = {"thick": 0.3, "lung": 0.25, "derived": 0.15, "contrast": 0.1}


def cohort_configs(purpose: str, n: int, preset: str = "v2", offset: int = 0, **overrides) -> list:
    """``n`` varied v2 configs whose seeds are reserved for ``purpose`` (``training``, ``heldout``, ...).

    What a training cohort or an accuracy benchmark draws from: the seed ranges keep them apart.
    """
    return [random_config(s, preset, **overrides) for s in seed_ranges.seeds_for(purpose, n, offset)]


def truth_row(truth: dict, patient_id: str, study_uid: str) -> dict:
    """One truth.csv row from a v2 truth dict: the numbers as imaged (what a perfect reader sees on
    the scan, :func:`cacpipe.phantom.truth.imaged_numbers`), the heart-still Agatston beside them."""
    from .truth import imaged_numbers

    num = imaged_numbers(truth)
    row: dict = {"patient_id": patient_id, "study_uid": study_uid}
    for a in ARTERIES:
        v = num["arteries"][a]
        row[f"{a}_present"] = int(float(v["calcium_volume_mm3"]) > 0)
        row[f"{a}_calcium_volume_mm3"] = round(float(v["calcium_volume_mm3"]), 4)
        row[f"{a}_agatston"] = round(float(v["agatston"]), 4)
        row[f"{a}_lesions"] = int(v["lesions"])
        row[f"{a}_agatston_still"] = round(float(v["agatston_still"]), 4)
    tot = num["total"]
    acq = truth["acquisition"]
    row.update({
        "total_agatston": round(float(tot["agatston"]), 4),
        "total_calcium_volume_mm3": round(float(tot["calcium_volume_mm3"]), 4),
        "total_lesions": int(tot["lesions"]), "category": category(tot["agatston"]),
        "cac_drs": cac_drs(tot["agatston"], [num["arteries"][a]["agatston"] for a in ARTERIES]),
        "total_agatston_still": round(float(tot["agatston_still"]), 4),
        "sex": truth["patient"]["sex"], "age": truth["patient"]["age"], "vendor": acq["manufacturer"],
        "slice_thickness": acq["slice_thickness_mm"], "expected_flags": ";".join(truth["expected_flags"]),
        "seed": truth["seed"], "preset": truth["preset"],
    })
    return row


def extras_for(seed: int) -> tuple[str, ...]:
    """Which extra series a cohort study gets (deterministic in its seed)."""
    rng = np.random.default_rng([int(seed), 11])
    return tuple(k for k, p in EXTRA_P.items() if rng.random() < p)


def write_cohort(n: int, out: str | Path, seed: int = seed_ranges.HELDOUT.start, preset: str = "v2",
                 purpose: str | None = None, seeds: Iterable[int] | None = None, extras: bool = True,
                 progress=None, follow_up: Sequence[float] = (), **overrides) -> list[dict]:
    """Write ``n`` phantoms (seeds ``seed`` .. ``seed + n - 1``, or ``seeds``); returns the truth rows.

    ``follow_up``: years after the baseline of each patient's later studies (0 = a rescan).

    With ``purpose`` every seed must lie in that range of :mod:`cacpipe.phantom.seeds`.
    ``overrides`` go to :func:`random_config` (e.g. ``acquisition={"contrast_phase": "none"}``).
    """
    out = Path(out)
    seed_list = list(seeds) if seeds is not None else list(range(int(seed), int(seed) + int(n)))
    if purpose is not None:
        seed_ranges.require(seed_list, purpose)
    export, truth_root = out / "export", out / "truth"
    export.mkdir(parents=True, exist_ok=True)
    years_list = sorted(float(y) for y in follow_up)
    rows, progression = [], {}
    for i, s in enumerate(seed_list):
        cfg = random_config(s, preset, **overrides)
        patient = patient_of(cfg)
        points = [_write_one(cfg, patient, export, truth_root / patient.patient_id, extras_for(s) if extras else ())]
        for k, years in enumerate(years_list, start=1):
            # the caller's overrides hold at every time point (e.g. a still heart, no contrast)
            fcfg = apply_overrides(follow_up_config(cfg, years), overrides)
            fpat = follow_up_patient(patient, fcfg, years, k)
            points.append(_write_one(fcfg, fpat, export, truth_root, (), years=years, time_point=k))
        rows.extend(pt["row"] for pt in points)
        if years_list:
            progression[patient.patient_id] = patient_progression(cfg, points)
        if progress is not None:
            progress(i + 1, len(seed_list), patient.patient_id)
    if years_list:
        (out / "progression_truth.json").write_text(json.dumps(
            {"schema": SERIAL_SCHEMA, "follow_up_years": years_list, "patients": progression}, indent=1,
            default=_json_default))
    columns = list(TRUTH_COLUMNS) + (list(FOLLOW_UP_COLUMNS) if years_list else [])
    with open(out / "truth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (export / "README.txt").write_text("Synthetic phantom PACS export (cacpipe phantom cohort). No real patient.\n")
    return rows


def _write_one(cfg, patient, export: Path, tdir: Path, extras: tuple[str, ...], years: float = 0.0,
               time_point: int = 0) -> dict:
    """Generate and write one study (DICOM + truth files); its time-point record.

    A follow-up's truth folder is ``tdir/<StudyInstanceUID>`` (``cacpipe evaluate`` finds a
    reference by study UID or PatientID)."""
    ph = generate(cfg)
    study = write_study_v2(ph, export, patient, extras)
    if time_point:
        tdir = tdir / study["study_uid"]
    write_truth_files(ph, tdir, ct=False)
    truth = dict(ph.truth) | {"patient_id": patient.patient_id, "study_uid": study["study_uid"],
                              "seed_purpose": seed_ranges.purpose_of(cfg.seed),
                              "dicom": {k: v for k, v in study.items() if k != "study_dir"}}
    if time_point:
        truth["follow_up"] = {"time_point": time_point, "years_from_baseline": years}
    (tdir / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
    row = truth_row(truth, patient.patient_id, study["study_uid"])
    row.update(study_date=patient.study_date, time_point=time_point, years_from_baseline=years)
    return {"years": years, "study_uid": study["study_uid"], "study_date": patient.study_date,
            "truth_dir": str(tdir.relative_to(export.parent)), "truth": ph.truth, "row": row}
