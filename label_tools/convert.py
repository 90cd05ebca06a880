""".con + CT -> six-class label map (one case or a batch with a report), and label map -> .con."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cacpipe.csvout import write_csv
from cacpipe.errors import CacpipeError, GeometryError
from cacpipe.labels import LABEL_CLASSES
from cacpipe.units import CALCIUM_THRESHOLD_HU
from cacpipe.volume import Volume

from .annotations import Case, load_ct, read_cases, read_image
from .calcium import CalciumRules, six_to_mass, split_calcium
from .con_format import parse_con, write_con
from .errors import ConFormatError
from .mapping import ContourMapping, load_mapping
from .raster import GridOptions, check_header, con_to_masks, masks_to_con

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides how contours become labels."""

    grid: GridOptions = field(default_factory=GridOptions)
    rules: CalciumRules = field(default_factory=CalciumRules)
    require_contours: bool = True


def convert_case(con_path: str | Path, ct: Volume | str | Path, mapping: ContourMapping | None = None,
                 options: ConvertOptions | None = None) -> tuple[Volume, dict]:
    """Read a .con file and rasterise it on the CT grid: (six-class uint8 label Volume, report)."""
    mapping = mapping or load_mapping()
    options = options or ConvertOptions()
    ct_vol = ct if isinstance(ct, Volume) else read_image(ct)
    con = parse_con(con_path, require_contours=options.require_contours)
    checked = check_header(con, ct_vol.shape) if options.grid.check_header else {}
    masks = con_to_masks(con, ct_vol.shape, mapping, GridOptions(**{**options.grid.__dict__, "check_header": False}))
    labels, cal = split_calcium(masks, ct_vol.spacing_zyx, options.rules)
    order_check = slice_order_check(ct_vol.array, masks["calcium"])
    if order_check["suspect"]:
        log.warning("%s: calcium contours mostly below %g HU with this slice order but not reversed: "
                    "check --slice-order", con_path, CALCIUM_THRESHOLD_HU)
    report = {
        "con": str(con_path),
        "shape_zyx": list(ct_vol.shape),
        "header_checked": checked,
        "contours": len(con.contours),
        "contour_types": {str(k): v for k, v in con.types().items()},
        "skipped_sections": con.skipped_sections,
        "voxels_by_class": {c.name: int((labels == c.id).sum()) for c in LABEL_CLASSES},
        "calcium": cal,
        "slice_order_check": order_check,
    }
    return ct_vol.with_array(labels), report


@dataclass
class LoadedCase:
    """A training case in memory: the CT as the scan reads it and its six-class labels on that grid."""

    series: object  # cacpipe.ingest.LoadedSeries (volume, identity, flags, DICOM headers)
    labels: Volume  # uint8 six-class map, (z, y, x), same grid as series.volume
    report: dict  # how the labels were made (conversion report, or the label file's counts)

    @property
    def ct(self) -> Volume:
        return self.series.volume


def labels_report(path: str | Path, ct: Volume, labels: np.ndarray) -> dict:
    """The report of a case whose labels came as a six-class map (no conversion)."""
    calcium = np.isin(labels, [c.id for c in LABEL_CLASSES if c.is_calcium])
    return {
        "labels": str(path),
        "shape_zyx": list(ct.shape),
        "voxels_by_class": {c.name: int((labels == c.id).sum()) for c in LABEL_CLASSES},
        "slice_order_check": slice_order_check(ct.array, calcium),
    }


def load_case(case: Case, mapping: ContourMapping | None = None, options: ConvertOptions | None = None) -> LoadedCase:
    """Read one case: the CT (``annotations.load_ct``) and its labels, from the ``.con`` file
    (converted on the CT grid) or from the label map (checked: same grid, ids of the six-class scheme)."""
    series = load_ct(case.image)
    ct = series.volume
    if case.contour is not None:
        labels, report = convert_case(case.contour, ct, mapping, options)
        return LoadedCase(series, labels, report)
    if case.labels is None:
        raise GeometryError(f"case {case.case}: neither a .con file nor a label map")
    lab = Volume.read(case.labels)
    if not lab.same_grid(ct, tol=1e-3):
        raise GeometryError(f"{case.labels}: label map grid (shape {lab.shape}, spacing {lab.spacing_zyx}) differs "
                            f"from the CT's {case.image} (shape {ct.shape}, spacing {ct.spacing_zyx})")
    bad = sorted(set(np.unique(lab.array).tolist()) - {0, *(c.id for c in LABEL_CLASSES)})
    if bad:
        raise GeometryError(f"{case.labels}: label ids {bad} are not in the six-class scheme (0-6, cacpipe.labels)")
    arr = lab.array.astype(np.uint8)
    return LoadedCase(series, ct.with_array(arr), labels_report(case.labels, ct, arr))


def slice_order_check(hu: np.ndarray, calcium: np.ndarray) -> dict:
    """Fraction of calcium-contour voxels >= 130 HU as read, and with the slice order reversed.

    Calcium is drawn on bright voxels, so a reversed slice order shows up as a low fraction that
    a flip would raise. ``suspect`` is True when as-read < 0.5 and reversed > 2x as-read.
    """
    n = int(calcium.sum())
    if n == 0:
        return {"calcium_voxels": 0, "fraction_ge_130": None, "fraction_ge_130_reversed": None, "suspect": False}
    f = float((hu[calcium] >= CALCIUM_THRESHOLD_HU).mean())
    r = float((hu[calcium[::-1]] >= CALCIUM_THRESHOLD_HU).mean())
    return {"calcium_voxels": n, "fraction_ge_130": round(f, 3), "fraction_ge_130_reversed": round(r, 3),
            "suspect": bool(f < 0.5 and r > 2 * f)}


def export_con(labels: Volume | np.ndarray, path: str | Path, mapping: ContourMapping | None = None,
               grid: GridOptions | None = None, header: dict[str, str] | None = None,
               artery_includes_calcium: bool = True) -> dict:
    """Write a six-class label map as a MASS .con file (calcium merged into one class); stats back."""
    arr = labels.array if isinstance(labels, Volume) else np.asarray(labels)
    if arr.ndim != 3:
        raise GeometryError(f"label map must be 3D (z, y, x), got shape {arr.shape}")
    bad = np.setdiff1d(np.unique(arr), [0] + [c.id for c in LABEL_CLASSES])
    if bad.size:
        raise GeometryError(f"label map has ids {bad.tolist()} outside the six-class scheme (0-6)")
    mapping = mapping or load_mapping()
    con, stats = masks_to_con(six_to_mass(arr, artery_includes_calcium), mapping, grid, header)
    write_con(con, path)
    if stats["hole_pixels_filled"]:
        log.warning("%s: %d pixels inside holes were filled (MASS contours have no holes)", path,
                    stats["hole_pixels_filled"])
    return stats | {"path": str(path)}


REPORT_COLUMNS = ["case", "patient_id", "status", "error", "file", "line", "contours", "calcium_components",
                  "ambiguous", "orphan_assigned", "orphan_dropped", "artery_overlap_voxels",
                  "calcium_fraction_ge_130", "suspect_slice_order",
                  *[c.name for c in LABEL_CLASSES]]


def case_row(case: Case, report: dict | None, error: BaseException | None) -> dict:
    """One flat row of the batch report (CSV) for a converted or failed case."""
    row: dict = {k: "" for k in REPORT_COLUMNS}
    row.update(case=case.case, patient_id=case.patient_id)
    if error is not None:
        row.update(status="failed", error=str(error) if isinstance(error, CacpipeError)
                   else f"unexpected {type(error).__name__}: {error}")
        if isinstance(error, ConFormatError):
            row.update(file=error.path or "", line=error.line or "")
        return row
    assert report is not None
    if "calcium" in report:  # converted from a .con file
        comp = report["calcium"]["components"]
        row.update(contours=report["contours"], calcium_components=report["calcium"]["calcium_components"],
                   ambiguous=comp["ambiguous"], orphan_assigned=comp["orphan_assigned"],
                   orphan_dropped=comp["orphan_dropped"], artery_overlap_voxels=report["calcium"]["artery_overlap_voxels"])
    else:
        row.update(file=report.get("labels", ""))
    row.update(status="done", calcium_fraction_ge_130=report["slice_order_check"]["fraction_ge_130"],
               suspect_slice_order=report["slice_order_check"]["suspect"],
               **report["voxels_by_class"])
    return row


def write_reports(rows: list[dict], details: dict, out_stem: str | Path) -> tuple[Path, Path]:
    """``<stem>.csv`` (one row a case) and ``<stem>.json`` (rows + per-case details)."""
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
    write_csv(csv_path, rows, REPORT_COLUMNS)
    summary = {
        "cases": len(rows),
        "done": sum(r["status"] == "done" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "ambiguous_calcium_components": sum(int(r["ambiguous"] or 0) for r in rows),
        "orphan_calcium_components": sum(int(r["orphan_assigned"] or 0) + int(r["orphan_dropped"] or 0) for r in rows),
        "suspect_slice_order": [r["case"] for r in rows if r["suspect_slice_order"] is True],
    }
    json_path.write_text(json.dumps({"summary": summary, "cases": rows, "details": details}, indent=2))
    return csv_path, json_path


def convert_batch(ann_dir: str | Path, out_dir: str | Path, mapping: ContourMapping | None = None,
                  options: ConvertOptions | None = None) -> dict:
    """Convert every case of ANNOTATIONS/cases.csv to ``out_dir/<case>.nii.gz``.

    A case that fails is recorded (error, file, line) and the batch goes on. Writes
    ``out_dir/conversion_report.csv`` and ``.json``; returns the JSON summary and paths.
    """
    mapping = mapping or load_mapping()
    out = Path(out_dir)
    rows, details = [], {}
    for case in read_cases(ann_dir):
        try:
            labels, rep = convert_case(case.contour, case.image, mapping, options)
            labels.write(out / f"{case.case}.nii.gz")
            rows.append(case_row(case, rep, None))
            details[case.case] = rep
        except Exception as exc:  # noqa: BLE001 - a batch records every failure and goes on
            log.warning("case %s failed: %s", case.case, exc)
            rows.append(case_row(case, None, exc))
    csv_path, json_path = write_reports(rows, details, out / "conversion_report")
    summary = json.loads(json_path.read_text())["summary"]
    return summary | {"report_csv": str(csv_path), "report_json": str(json_path)}
