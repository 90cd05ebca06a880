"""The ANNOTATIONS folder: cases.csv, images/ and contours/ (see data_README.md)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from cacpipe.errors import InputDataError
from cacpipe.volume import Volume

CASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


@dataclass(frozen=True)
class Case:
    case: str
    patient_id: str
    image: Path
    contour: Path


def _default_image(root: Path, case: str) -> Path:
    for suf in IMAGE_SUFFIXES:
        p = root / "images" / f"{case}{suf}"
        if p.exists():
            return p
    d = root / "images" / case
    if d.is_dir():
        return d
    return root / "images" / f"{case}.nii.gz"  # reported as missing when the case is converted


def read_cases(ann_dir: str | Path) -> list[Case]:
    """Rows of ``ANNOTATIONS/cases.csv`` (columns case, patient_id[, image, contour]).

    Relative image/contour paths are taken from ANNOTATIONS; empty ones default to
    ``images/<case>.nii.gz`` (or .nii, .mha, .nrrd, or a DICOM folder ``images/<case>/``) and
    ``contours/<case>.con``. Case ids become nnU-Net file names: letters, digits, ``_ . -``.
    """
    root = Path(ann_dir)
    csv_path = root / "cases.csv"
    if not csv_path.is_file():
        raise InputDataError(f"{csv_path} not found: ANNOTATIONS needs cases.csv with columns "
                             "case,patient_id[,image,contour] (see data_README.md)")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = {"case", "patient_id"} - set(cols)
        if missing:
            raise InputDataError(f"{csv_path}: missing column(s) {sorted(missing)}; found {cols}")
        cases: list[Case] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            case, pid = row.get("case", ""), row.get("patient_id", "")
            if not case and not pid:
                continue
            if not CASE_ID_RE.fullmatch(case):
                raise InputDataError(f"{csv_path}:{i}: case id {case!r} must be letters, digits, '_', '.', '-'")
            if not pid:
                raise InputDataError(f"{csv_path}:{i}: case {case} has no patient_id (needed to keep patients "
                                     "in one fold)")
            if case in seen:
                raise InputDataError(f"{csv_path}:{i}: case {case} already listed on line {seen[case]}")
            seen[case] = i
            image = root / row["image"] if row.get("image") else _default_image(root, case)
            contour = root / row["contour"] if row.get("contour") else root / "contours" / f"{case}.con"
            cases.append(Case(case, pid, image, contour))
    if not cases:
        raise InputDataError(f"{csv_path}: no cases listed")
    return cases


def read_image(path: str | Path) -> Volume:
    """A CT as a Volume: an image file (NIfTI, MHA, NRRD) or DICOM (a series or study folder, a zip).

    DICOM is read by ``cacpipe.ingest`` exactly as ``cacpipe scan`` reads it (discovery, series
    selection, assembly: sorting along the slice normal, the -1024 HU floor, tilt and spacing
    checks), so a training case has the voxels inference would see.
    """
    from cacpipe.ingest import read_ct

    return read_ct(path).volume
