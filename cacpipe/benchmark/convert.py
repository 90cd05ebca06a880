"""One case of a public dataset -> a reference row, a six-class reference label map and a conversion report.

Writes, per case, ``OUT/reference/<study key>/labels.nii.gz`` (uint8, calcium classes 4-6 of
``cacpipe.labels`` on the CT grid, (z, y, x)) and ``conversion.json`` (what was read, how each
contour was placed, the reference numbers). The reference numbers use cacpipe's one Agatston
convention (``cacpipe.quant.agatston``) on the same CT the scan scores, so a perfect prediction
equals them exactly. A conversion is redone only when its sources changed (size, time).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import GeometryError, InputDataError
from ..jsonfile import jsonable
from ..labels import ARTERIES, CALCIUM_ID
from ..quant.agatston import calcium_stats_by_artery
from ..quant.categories import cac_drs, category
from ..scan.layout import write_atomic
from ..volume import Volume
from .layout import Case

REFERENCE = "reference"
CONVERSION = "conversion.json"
SCHEMA = "cacpipe.benchmark.conversion/1"
# orCaScore reference values (challenge data page): 1 LAD (left main included), 2 LCX, 3 RCA.
ORCA_VALUES: dict[int, str] = {1: "LAD", 2: "LCX", 3: "RCA"}


def _fingerprint(case: Case) -> str:
    parts = []
    paths = [case.image, case.annotation] if case.annotation else [case.image]
    for p in paths:
        files = sorted(p.iterdir()) if p.is_dir() else [p, p.with_suffix(".raw")]
        for f in files:
            if f.exists():
                st = f.stat()
                parts.append(f"{f.name}|{st.st_size}|{st.st_mtime_ns}")
    if case.scores is not None:
        parts.append(json.dumps(case.scores, sort_keys=True))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def read_case_ct(case: Case, settings: Settings):
    """The CT as ``cacpipe scan`` reads it (same door, same series selection): a LoadedSeries."""
    from ..ingest.loaded import read_ct

    if case.is_image_file:
        return read_ct(case.image, settings, patient_id=case.case_id)
    return read_ct(case.image, settings)


def orcascore_labels(ref_path: Path, ct: Volume) -> tuple[np.ndarray, dict]:
    """The orCaScore reference image (values 0-3) as a six-class calcium map on ``ct``'s grid."""
    ref = Volume.read(ref_path)
    if ref.shape != ct.shape or not ref.same_grid(ct, tol=1e-3):
        raise GeometryError(f"{ref_path.name}: reference grid {ref.shape} spacing {ref.spacing_zyx} differs from the "
                            f"CT's {ct.shape} {ct.spacing_zyx}")
    a = np.asarray(ref.array)
    values = {int(v) for v in np.unique(a)}
    bad = sorted(values - {0, *ORCA_VALUES})
    if bad:
        raise InputDataError(f"{ref_path.name}: unexpected reference value(s) {bad}; orCaScore references hold 0 "
                             "(background), 1 (LAD), 2 (LCX), 3 (RCA)")
    labels = np.zeros(a.shape, np.uint8)
    counts = {}
    for v, artery in ORCA_VALUES.items():
        m = a == v
        labels[m] = CALCIUM_ID[artery]
        counts[artery] = int(m.sum())
    return labels, {"reference_values": sorted(values), "voxels_by_artery": counts}


def reference_numbers(ct: Volume, labels: np.ndarray) -> dict:
    """Per-artery and total Agatston, calcium volume and lesions of a reference map (cacpipe's convention)."""
    stats = calcium_stats_by_artery(np.asarray(ct.array), labels, ct.spacing_zyx)
    per = {a: {"agatston": s.agatston, "calcium_volume_mm3": s.volume_mm3, "lesions": s.lesions,
               "peak_hu": s.peak_hu, "labelled_voxels": int(np.count_nonzero(labels == CALCIUM_ID[a]))}
           for a, s in stats.items()}
    tot = float(sum(per[a]["agatston"] for a in ARTERIES))
    return {"arteries": per, "total": {"agatston": tot,
                                       "calcium_volume_mm3": float(sum(per[a]["calcium_volume_mm3"] for a in ARTERIES)),
                                       "lesions": int(sum(per[a]["lesions"] for a in ARTERIES)),
                                       "category": category(tot),
                                       "cac_drs": cac_drs(tot, [per[a]["agatston"] for a in ARTERIES])}}


def reference_row(identity, numbers: dict | None, scores: dict | None, slice_mm: float | None) -> dict:
    """The row of the reference CSV that ``cacpipe evaluate`` reads (docs/evaluation.md)."""
    row: dict = {"patient_id": identity.patient_id, "study_uid": identity.study_uid}
    if numbers is not None:
        for a in ARTERIES:
            n = numbers["arteries"][a]
            row.update({f"{a}_present": int(n["calcium_volume_mm3"] > 0), f"{a}_agatston": n["agatston"],
                        f"{a}_calcium_volume_mm3": n["calcium_volume_mm3"], f"{a}_lesions": n["lesions"]})
        t = numbers["total"]
        row.update(total_agatston=t["agatston"], total_calcium_volume_mm3=t["calcium_volume_mm3"],
                   category=t["category"], cac_drs=t["cac_drs"])
    else:  # non-gated COCA: Agatston from the spreadsheet (left main counted as LAD)
        per = {"RCA": scores.get("RCA"), "LCX": scores.get("LCX"),
               "LAD": None if scores.get("LAD") is None else scores["LAD"] + (scores.get("LM") or 0.0)}
        for a in ARTERIES:  # a blank cell is "unknown" to the evaluation (a sheet with the total only)
            row[f"{a}_present"] = "" if per[a] is None else int(per[a] > 0)
            if per[a] is not None:
                row[f"{a}_agatston"] = per[a]
        tot = scores["total"]
        row.update(total_agatston=tot, category=category(tot))
        if all(per[a] is not None for a in ARTERIES):
            row["cac_drs"] = cac_drs(tot, [per[a] for a in ARTERIES])
    if slice_mm is not None:
        row["slice_thickness_mm"] = round(float(slice_mm), 3)
    return row


def convert_case(case: Case, out: Path, settings: Settings, force: bool = False) -> dict:
    """Convert one case (or reuse an up-to-date conversion); returns its conversion record."""
    fp = _fingerprint(case)
    marker = out / REFERENCE / "by_case" / f"{case.case_id}.json"
    if marker.exists() and not force:
        try:
            rec = json.loads(marker.read_text())
            if rec.get("schema") == SCHEMA and rec.get("source_fingerprint") == fp and rec.get("status") == "done":
                return rec
        except (OSError, ValueError):
            pass
    rec: dict = {"schema": SCHEMA, "case": case.case_id, "dataset": case.dataset, "subset": case.subset,
                 "image": str(case.image), "annotation": str(case.annotation) if case.annotation else None,
                 "source_fingerprint": fp, "status": "failed", "reason": ""}
    try:
        series = read_case_ct(case, settings)
        ct, ident = series.volume, series.identity
        rec.update(patient_id=ident.patient_id, study_uid=ident.study_uid, shape_zyx=list(ct.shape),
                   spacing_zyx=[float(s) for s in ct.spacing_zyx])
        numbers, labels = None, None
        if case.dataset == "orcascore":
            labels, info = orcascore_labels(case.annotation, ct)
            rec["conversion"] = info
        elif case.subset == "gated":
            from .coca_xml import read_rois, rois_to_labels

            if case.annotation is None:  # no XML: no calcium annotated in this scan
                labels, rec["conversion"] = np.zeros(ct.shape, np.uint8), {"rois": 0, "note": "no annotation file: "
                                                                                             "no calcium"}
            else:
                labels, rec["conversion"] = rois_to_labels(read_rois(case.annotation), ct, series.instance_numbers)
        else:
            rec["conversion"] = {"scores": case.scores, "note": "scores only (no contours): total Agatston and "
                                                                "per-vessel Agatston from the spreadsheet"}
        if labels is not None:
            numbers = reference_numbers(ct, labels)
            rec["reference"] = numbers
            folder = out / REFERENCE / ident.study_uid
            folder.mkdir(parents=True, exist_ok=True)
            ct.with_array(labels).write(folder / "labels.nii.gz")
            rec["labels"] = str((folder / "labels.nii.gz").relative_to(out))
        rec["row"] = reference_row(ident, numbers, case.scores, float(ct.spacing_zyx[0]))
        rec["status"] = "done"
    except (InputDataError, GeometryError) as exc:
        rec["reason"] = str(exc).splitlines()[0]
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, json.dumps(rec, indent=1, default=jsonable))
    if rec.get("study_uid") and rec["status"] == "done" and rec.get("labels"):
        write_atomic(out / REFERENCE / rec["study_uid"] / CONVERSION, json.dumps(rec, indent=1, default=jsonable))
    return rec


