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

from .annotations import Case, read_cases, read_image
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
    comp = report["calcium"]["components"]
    row.update(status="done", contours=report["contours"], calcium_components=report["calcium"]["calcium_components"],
               ambiguous=comp["ambiguous"], orphan_assigned=comp["orphan_assigned"],
               orphan_dropped=comp["orphan_dropped"], artery_overlap_voxels=report["calcium"]["artery_overlap_voxels"],
               calcium_fraction_ge_130=report["slice_order_check"]["fraction_ge_130"],
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
