"""Where labelled training cases come from (see data_README.md):

- an ANNOTATIONS folder: ``cases.csv``, ``images/`` and ``contours/`` (MASS ``.con`` files);
- a folder of case folders: ``CASE/ct.nii.gz`` + ``CASE/labels.nii.gz`` (six-class map on the CT
  grid) [+ ``CASE/patient.txt``], as ``cacpipe review apply --training-cases`` and
  ``cacpipe phantom`` write them.

Both become :class:`Case` rows; :func:`read_training_cases` reads any number of such folders.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from cacpipe.errors import InputDataError
from cacpipe.volume import Volume

CASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


CASE_CT = "ct.nii.gz"
CASE_LABELS = "labels.nii.gz"
CASE_PATIENT = "patient.txt"


@dataclass(frozen=True)
class Case:
    """One labelled CT: its id (the nnU-Net file name), patient (fold grouping) and files.

    Exactly one of ``contour`` (a MASS .con, rasterised on the CT) and ``labels`` (a six-class
    map already on the CT grid) says where its labels come from.
    """

    case: str
    patient_id: str
    image: Path
    contour: Path | None = None
    labels: Path | None = None
    source: str = ""  # the folder the case was listed in (reports)

    def load(self, mapping=None, options=None):
        """CT and six-class labels on the CT grid: a :class:`label_tools.convert.LoadedCase`."""
        from .convert import load_case

        return load_case(self, mapping, options)


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
            cases.append(Case(case, pid, image, contour, source=str(root)))
    if not cases:
        raise InputDataError(f"{csv_path}: no cases listed")
    return cases


def read_case_folders(data_dir: str | Path) -> list[Case]:
    """Case folders under ``data_dir``: every ``CASE/ct.nii.gz`` with its ``CASE/labels.nii.gz``.

    The patient id is ``CASE/patient.txt`` when present (cases of one patient stay in one fold),
    else the case id. A case folder without labels is an error naming it.
    """
    root = Path(data_dir)
    folders = sorted(p for p in root.iterdir() if (p / CASE_CT).is_file()) if root.is_dir() else []
    cases = []
    for f in folders:
        if not CASE_ID_RE.fullmatch(f.name):
            raise InputDataError(f"case folder {f}: its name becomes the nnU-Net case id and must be letters, "
                                 "digits, '_', '.', '-'")
        if not (f / CASE_LABELS).is_file():
            raise InputDataError(f"case folder {f} has {CASE_CT} but no {CASE_LABELS}")
        pf = f / CASE_PATIENT
        pid = pf.read_text(encoding="utf-8").strip() if pf.is_file() else ""
        cases.append(Case(f.name, pid or f.name, f / CASE_CT, labels=f / CASE_LABELS, source=str(root)))
    return cases


def read_training_cases(data_dirs) -> list[Case]:
    """Every case of one or more DATA folders (ANNOTATIONS with cases.csv, or case folders).

    Case ids must be unique over all folders (they become nnU-Net file names).
    """
    dirs = [Path(d) for d in ([data_dirs] if isinstance(data_dirs, (str, Path)) else data_dirs)]
    cases: list[Case] = []
    for d in dirs:
        if not d.is_dir():
            raise InputDataError(f"training data folder not found: {d}")
        found = read_cases(d) if (d / "cases.csv").is_file() else read_case_folders(d)
        if not found:
            raise InputDataError(f"no training cases in {d}: expected an ANNOTATIONS folder (cases.csv, images/, "
                                 f"contours/) or case folders (CASE/{CASE_CT} + CASE/{CASE_LABELS}); "
                                 "see data_README.md")
        cases += found
    seen: dict[str, Case] = {}
    for c in cases:
        if c.case in seen:
            raise InputDataError(f"case id {c.case} appears in {seen[c.case].source} and in {c.source}; "
                                 "case ids must be unique (rename one)")
        seen[c.case] = c
    return cases


def training_read_settings():
    """The ingest settings of ``cacpipe scan`` with one change: contrast-enhanced series are read.

    Training sets may hold contrast CTs (the source paper trained on 42 non-contrast and 27
    contrast scans); ``cacpipe scan`` skips them by default because Agatston is not defined there.
    """
    from cacpipe.config import Settings

    s = Settings()
    return s.replace(selection=s.selection.replace(allow_contrast=True))


def load_ct(path: str | Path):
    """A CT as a ``cacpipe.ingest.LoadedSeries``: an image file (NIfTI, MHA, NRRD) or DICOM (a
    series or study folder, a zip).

    DICOM is read by ``cacpipe.ingest`` exactly as ``cacpipe scan`` reads it (discovery, series
    selection, assembly: sorting along the slice normal, the -1024 HU floor, tilt and spacing
    checks), so a training case has the voxels inference would see; contrast series are read
    (:func:`training_read_settings`).
    """
    from cacpipe.ingest import read_ct

    return read_ct(path, training_read_settings())


def read_image(path: str | Path) -> Volume:
    """A CT as a Volume (see :func:`load_ct`)."""
    return load_ct(path).volume
