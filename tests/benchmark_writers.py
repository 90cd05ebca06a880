"""Writers of small synthetic datasets in the exact layouts of Stanford COCA and orCaScore, fed by phantom truth.

Used by tests/test_benchmark*.py. The CT written is the phantom's noise-free image rounded down
to whole HU (floor keeps every >= 130 HU and weight-boundary decision of the truth), so the
reference scores computed from the written annotations must equal the phantom's truth exactly.

- COCA gated: ``Gated_release_final/patient/<case>/<series>/IM*.dcm`` and
  ``Gated_release_final/calcium_xml/<case>.xml``, an OsiriX-style plist: per annotated image
  ``ImageIndex`` (instance order), ``NumberOfROIs``, ``ROIs`` with ``Name`` (artery), ``Point_px``
  (``"(x, y)"``, the outline of the lesion's pixels through pixel corners), ``Point_mm``
  (``"(x, y, z)"``), ``Area`` and statistics. The first LAD contour is named "Left Coronary
  Artery" (the left main, which counts as LAD).
- COCA non-gated: ``deidentified_nongated/<case>/<series>/IM*.dcm`` and ``scores.xlsx`` (a
  minimal Office Open XML workbook: ID, LCA, LAD, LCX, RCA, Total; ids ``<case>A``).
- orCaScore: ``Training Set/Images/<case>CTI.mhd`` (+ .raw) and
  ``Training Set/Reference standard/<case>R.mhd`` (0 / 1 LAD / 2 LCX / 3 RCA).

``oracle_analyse`` stands in for the model in end-to-end tests: it returns the phantom's own
label map (written by the writers to ``$CACPIPE_TEST_ORACLE/<patient id>.nii.gz``).
"""

from __future__ import annotations

import os
import plistlib
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from cacpipe.labels import CALCIUM_ID
from cacpipe.phantom.dicom_study import PatientInfo, uid, write_axial_series
from cacpipe.phantom.v2 import generate, random_config

ROI_NAMES = {"RCA": "Right Coronary Artery", "LAD": "Left Anterior Descending Artery",
             "LCX": "Left Circumflex Artery"}
LEFT_MAIN_NAME = "Left Coronary Artery"
ORCA_VALUE = {"LAD": 1, "LCX": 2, "RCA": 3}
SERIES_FOLDER = "Pro_Gated_CS_3.0_I30f_3_70%"


def cardiac_phantom(seed: int, shape: int = 128, **overrides):
    """A small still (motion 0) cardiac-FOV phantom with its noise-free image."""
    acq = {"shape_yx": (shape, shape), "motion_scale": 0.0, **overrides.pop("acquisition", {})}
    return generate(random_config(seed, "v2-cardiac", acquisition=acq, **overrides), with_clean=True)


def floor_ct(ph):
    """The noise-free image rounded down to whole HU, as int16 (the CT the datasets get)."""
    return ph.ct.with_array(np.floor(np.asarray(ph.ct_clean.array)).astype(np.int16))


def pixel_outline(mask: np.ndarray) -> np.ndarray:
    """The outline (x, y through pixel corners, pixel centres at integers) of a 4-connected mask without holes.

    Filling it by pixel centres gives back exactly ``mask``: no centre lies on a corner line.
    """
    edges: dict[tuple[float, float], list[tuple[float, float]]] = {}
    ys, xs = np.nonzero(mask)
    h, w = mask.shape

    def on(y, x):
        return 0 <= y < h and 0 <= x < w and mask[y, x]

    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        x0, x1, y0, y1 = x - 0.5, x + 0.5, y - 0.5, y + 0.5
        # clockwise in (x right, y down), region on the right of each edge
        if not on(y - 1, x):
            edges.setdefault((x0, y0), []).append((x1, y0))
        if not on(y, x + 1):
            edges.setdefault((x1, y0), []).append((x1, y1))
        if not on(y + 1, x):
            edges.setdefault((x1, y1), []).append((x0, y1))
        if not on(y, x - 1):
            edges.setdefault((x0, y1), []).append((x0, y0))
    start = min(edges)
    pts, cur, prev_dir = [start], start, None
    while True:
        outs = edges[cur]
        if len(outs) == 1:
            nxt = outs.pop()
        else:  # a pinch vertex (diagonal contact): turn right first, the way that keeps to this region
            def turn(p, d=prev_dir, c=cur):
                nd = (p[0] - c[0], p[1] - c[1])
                return d[0] * nd[1] - d[1] * nd[0]
            nxt = max(outs, key=turn)
            outs.remove(nxt)
        prev_dir = (nxt[0] - cur[0], nxt[1] - cur[1])
        cur = nxt
        if cur == start:
            break
        pts.append(cur)
    if any(edges.values()):
        raise ValueError("mask has a hole or is not 4-connected: one outline cannot describe it")
    return np.asarray(pts, float)


def coca_rois(ph) -> list[dict]:
    """The plist ``Images`` list for a phantom's calcium labels."""
    lab, ct = ph.labels.array, floor_ct(ph)
    nz = lab.shape[0]
    dz, dy, dx = ph.ct.spacing_zyx
    ox, oy, oz = ph.ct.origin_xyz
    images, lm_done = [], False
    for k in range(nz - 1, -1, -1):  # instance order: instance 1 is the most superior slice
        rois = []
        for artery in ("RCA", "LAD", "LCX"):
            comp, n = ndimage.label(lab[k] == CALCIUM_ID[artery])
            for i in range(1, n + 1):
                m = comp == i
                outline = pixel_outline(ndimage.binary_fill_holes(m))
                name = ROI_NAMES[artery]
                if artery == "LAD" and not lm_done:
                    name, lm_done = LEFT_MAIN_NAME, True
                hu = ct.array[k][m]
                z = oz + k * dz
                rois.append({
                    "Area": float(m.sum() * dx * dy / 100.0), "Center": f"({ox:.3f}, {oy:.3f}, {z:.3f})",
                    "Dev": float(hu.std()), "IndexInImage": len(rois), "Length": 0.0, "Max": float(hu.max()),
                    "Mean": float(hu.mean()), "Min": float(hu.min()), "Name": name, "NumberOfPoints": len(outline),
                    "Point_px": [f"({x:.6f}, {y:.6f})" for x, y in outline],
                    "Point_mm": [f"({ox + x * dx:.6f}, {oy + y * dy:.6f}, {z:.6f})" for x, y in outline],
                    "Total": float(hu.sum()), "Type": 15,
                })
        if rois:
            images.append({"ImageHeight": int(lab.shape[1]), "ImageIndex": int(nz - 1 - k),
                           "ImageWidth": int(lab.shape[2]), "NumberOfROIs": len(rois), "ROIs": rois})
    return images


def _patient(case: str) -> PatientInfo:
    return PatientInfo(patient_id=f"COCA{case}", patient_name=f"COCA^{case}", accession=f"A{case}")


def write_dicom_case(ph, folder: Path, case: str) -> str:
    """The floor CT as one axial DICOM series in ``folder``; returns its study UID."""
    study = uid("benchmark-test", case, ph.config.seed)
    write_axial_series(floor_ct(ph), folder, _patient(case), study, 2, "CaScore 3.0 gated", kernel="B35f")
    return study


def write_oracle(ph, oracle: Path | None, patient_id: str) -> None:
    if oracle is not None:
        oracle.mkdir(parents=True, exist_ok=True)
        ph.labels.write(oracle / f"{patient_id}.nii.gz")


def write_coca_gated(root: Path, phantoms: dict[str, object], oracle: Path | None = None,
                     no_xml: tuple[str, ...] = ()) -> Path:
    """COCA gated release under ``root``; cases listed in ``no_xml`` get no annotation file."""
    rel = root / "Gated_release_final"
    (rel / "calcium_xml").mkdir(parents=True, exist_ok=True)
    for case, ph in phantoms.items():
        write_dicom_case(ph, rel / "patient" / case / SERIES_FOLDER, case)
        write_oracle(ph, oracle, f"COCA{case}")
        if case not in no_xml:
            with open(rel / "calcium_xml" / f"{case}.xml", "wb") as f:
                plistlib.dump({"Images": coca_rois(ph)}, f)
    return rel


def _xlsx(path: Path, rows: list[list]) -> None:
    """A minimal workbook (one sheet, inline strings and numbers) as spreadsheet programs write it."""
    def cell(ref, v):
        if isinstance(v, str):
            return f'<c r="{ref}" t="inlineStr"><is><t>{v}</t></is></c>'
        return f'<c r="{ref}"><v>{v!r}</v></c>'

    body = "".join(f'<row r="{i}">' + "".join(cell(f"{chr(65 + j)}{i}", v) for j, v in enumerate(r)) + "</row>"
                   for i, r in enumerate(rows, start=1))
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.'
                   'openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
                   'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="'
                   'application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}" xmlns:r="{rns}">'
                   '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
                   'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                   'openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
                   '</Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}">'
                   f"<sheetData>{body}</sheetData></worksheet>")


def write_coca_nongated(root: Path, phantoms: dict[str, object], oracle: Path | None = None) -> Path:
    """COCA non-gated release: DICOM per case and scores.xlsx with the truth's Agatston (left main = 0)."""
    rel = root / "deidentified_nongated"
    rows: list[list] = [["ID", "LCA", "LAD", "LCX", "RCA", "Total"]]
    for case, ph in phantoms.items():
        write_dicom_case(ph, rel / case / "series1", case)
        write_oracle(ph, oracle, f"COCA{case}")
        t = ph.truth["arteries"]
        rows.append([f"{case}A", 0.0, t["LAD"]["agatston"], t["LCX"]["agatston"], t["RCA"]["agatston"],
                     ph.truth["total"]["agatston"]])
    _xlsx(rel / "scores.xlsx", rows)
    return rel


def write_orcascore(root: Path, phantoms: dict[str, object], oracle: Path | None = None, noisy: bool = False) -> Path:
    """orCaScore training set: <case>CTI.mhd/.raw and Reference standard/<case>R.mhd/.raw.

    ``noisy`` writes the phantom's scanner image (with noise) instead of the floor of the noise-free one.
    """
    import SimpleITK as sitk

    base = root / "Training Set"
    (base / "Images").mkdir(parents=True, exist_ok=True)
    (base / "Reference standard").mkdir(parents=True, exist_ok=True)
    for case, ph in phantoms.items():
        ct = ph.ct if noisy else floor_ct(ph)
        sitk.WriteImage(ct.to_sitk(), str(base / "Images" / f"{case}CTI.mhd"), False)
        ref = np.zeros(ph.labels.shape, np.uint8)
        for artery, v in ORCA_VALUE.items():
            ref[ph.labels.array == CALCIUM_ID[artery]] = v
        sitk.WriteImage(ph.labels.with_array(ref).to_sitk(), str(base / "Reference standard" / f"{case}R.mhd"), False)
        write_oracle(ph, oracle, case)
    return base


def oracle_analyse(series, out_dir, settings):
    """A stand-in for the model: the phantom's own label map (``$CACPIPE_TEST_ORACLE/<patient id>.nii.gz``)."""
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyResult
    from cacpipe.volume import Volume

    info = series.identity
    lab = Volume.read(Path(os.environ["CACPIPE_TEST_ORACLE"]) / f"{info.patient_id}.nii.gz")
    lab = series.volume.with_array(np.asarray(lab.array, np.uint8))
    lab.write(Path(out_dir) / "labels.nii.gz")
    series.volume.write(Path(out_dir) / "ct.nii.gz")
    q = quantify(series.volume, lab, assessed={"RCA": True, "LAD": True, "LCX": True})
    result = StudyResult(study=info, flags=list(series.flags), arteries=q.arteries, lesions=q.lesions,
                         pipeline={"version": "test", "heart_method": "oracle", "model": {"name": "phantom-oracle",
                                                                                            "is_demo": True},
                                   "device": "cpu", "settings": settings.to_record()},
                         outputs={"labels": "labels.nii.gz", "ct": "ct.nii.gz"})
    result.set_grid(series.volume)
    return finalise(result)
