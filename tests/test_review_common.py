"""Shared helpers for the review tests: a phantom study and a result dict in the schema shape."""

from __future__ import annotations

from pathlib import Path

import pydicom

from cacpipe.flags import Flag
from cacpipe.labels import ARTERIES
from cacpipe.quant.lesions import find_lesions
from cacpipe.record import StudyResult

HOSTILE_NAME = "<script>alert(1)</script>^<b>X</b>"


def grade_of(volume_mm3: float) -> str:
    return "none" if volume_mm3 == 0 else "mild" if volume_mm3 < 30 else "moderate" if volume_mm3 < 100 else "severe"


def result_from_truth(truth: dict, patient_id: str, patient_name: str, study_date: str = "20260105",
                      ct=None, labels=None) -> StudyResult:
    """A per-study result (docs/ARCHITECTURE.md schema) built from phantom ground truth; with the
    phantom's ``ct`` and ``labels`` its lesion list too (as quantification would find them)."""
    arts = {}
    for a in ARTERIES:
        t = truth["arteries"][a]
        arts[a] = {"assessed": True, "calcium_volume_mm3": t["calcium_volume_mm3"],
                   "calcium_volume_ml": t["calcium_volume_ml"], "agatston": t["agatston"],
                   "lesions": t["lesions"], "peak_hu": t["peak_hu"], "mass_mg": None,
                   "grade": grade_of(t["calcium_volume_mm3"]), "grade_probabilities": None}
    tot = truth["total"]
    flags = [Flag("demo_model_not_for_clinical_use", "Synthetic <phantom> result", "info").to_dict(),
             Flag("valve_calcium_suspected", "Aortic valve calcium near the LAD ostium", "warning", "LAD").to_dict()]
    lesions = [] if ct is None else [les.to_dict() for les in find_lesions(ct.array, labels.array, ct.spacing_zyx)[0]]
    return StudyResult.from_json({
        "status": "done", "lesions": lesions,
        "study": {"patient_id": patient_id, "patient_name": patient_name, "study_uid": truth["dicom"]["study_uid"],
                  "study_date": study_date, "accession": "ACC0001", "series_uid": truth["dicom"]["series"]["axial"]["uid"],
                  "series_description": "Thorax 2mm STANDARD", "manufacturer": "GE MEDICAL SYSTEMS"},
        "pipeline": {"version": "test"},
        "flags": flags,
        "arteries": arts,
        "total": {"calcium_volume_mm3": tot["calcium_volume_mm3"], "calcium_volume_ml": tot["calcium_volume_ml"],
                  "agatston": tot["agatston"], "lesions": tot["lesions"], "category": "101-400", "cac_drs": "A1/N3",
                  "vessels_with_calcium": 3, "mass_mg": None},
        "outputs": {"labels": "labels.nii.gz"},
    })


def axial_datasets(truth: dict) -> list[pydicom.Dataset]:
    """The phantom's axial series, sorted inferior -> superior like the volume (slice k = ct.array[k])."""
    d = Path(truth["dicom"]["series"]["axial"]["dir"])
    ds = [pydicom.dcmread(p) for p in sorted(d.glob("*.dcm"))]
    return sorted(ds, key=lambda x: float(x.ImagePositionPatient[2]))


def scored_result(ct, labels, patient_id: str, patient_name: str, study_uid: str, series_uid: str,
                  flags: list | None = None) -> StudyResult:
    """The record the pipeline would write for this CT and label map (quantify + finalise; no model)."""
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyIdentity

    q = quantify(ct, labels)
    res = StudyResult(study=StudyIdentity(patient_id=patient_id, patient_name=patient_name, study_uid=study_uid,
                                          series_uid=series_uid, study_date="20260105"),
                      pipeline={"version": "test", "heart_method": "fallback",
                                "model": {"name": "phantom test labels", "is_demo": True}},
                      flags=list(flags or []), arteries=q.arteries, lesions=q.lesions,
                      outputs={"labels": "labels.nii.gz"})
    res.set_grid(ct, [1000 + k for k in range(ct.shape[0])])
    return finalise(res)


def mislabelled(ct, labels):
    """The phantom's true labels with two model errors a reader corrects: the largest RCA lesion
    labelled as LCX calcium, and the largest LCX lesion missed (its calcium left as LCX artery).
    Returns (labels, {"moved": RCA lesion, "missed": LCX lesion}) with the true lesions."""
    import numpy as np

    from cacpipe.labels import ARTERY_ID, CALCIUM_ID

    found, lmap = find_lesions(ct.array, labels.array, ct.spacing_zyx, with_map=True)
    rca = next(les for les in found if les.artery == "RCA")
    lcx = next(les for les in found if les.artery == "LCX")
    lab = labels.array.copy()
    lab[(lmap == found.index(rca) + 1)] = CALCIUM_ID["LCX"]
    lab[(labels.array == CALCIUM_ID["LCX"]) & np.isin(lmap, [found.index(lcx) + 1, 0]) &
        _near(lmap == found.index(lcx) + 1)] = ARTERY_ID["LCX"]
    return labels.with_array(lab), {"moved": rca, "missed": lcx}


def _near(mask):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=2)
