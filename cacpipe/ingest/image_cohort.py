"""A folder of CT image files (NIfTI, NRRD, MHA) as a cohort: one study per file, ids from names.

Layouts read (any depth):

- flat, as nnU-Net's ``imagesTs``: ``P01_0000.nii.gz``, ``P02_0000.nii.gz`` -> ``P01``, ``P02``
  (nnU-Net's channel suffix ``_0000`` is stripped; other channels ``_0001``... are not CTs of
  their own and are left out with a note);
- case folders: ``P01/ct.nii.gz``, ``P02/ct.nii.gz`` -> ``P01``, ``P02``: a file that is the only
  image of its case folder (the folder right under the cohort folder) takes the folder's name; in a
  case folder with several images each is ``<folder>_<file name>``;
- an optional CSV (``file,patient_id``; ``file`` relative to the cohort folder) names any file's id.

Two files that still end with the same id (``P01.nii.gz`` and ``P01.nrrd``, or ``A/ct.nii`` and
``x/A/ct.nii``) are a true collision: neither is scored, and the reason names both files. The
patient id of each file is compared exactly and without case (folders are made case-safe later).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputDataError
from .loaded import IMAGE_SUFFIXES

NNUNET_CHANNEL = re.compile(r"_(\d{4})$")


@dataclass
class ImageCohort:
    """The studies of an image-file cohort: (file, patient id) pairs, refused files with reasons, notes."""

    root: Path
    images: list[tuple[Path, str]] = field(default_factory=list)
    collisions: list[tuple[str, list[Path]]] = field(default_factory=list)  # (id, the files that claim it)
    notes: list[str] = field(default_factory=list)


def _stem(path: Path) -> str:
    name = path.name
    for suf in IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _is_dicom(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def image_files(root: Path) -> list[Path] | None:
    """The CT image files under ``root`` (sorted), or None when ``root`` holds DICOM (it is then an
    export) or no image file at all."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(p)
            elif _is_dicom(p):
                return None
    return found or None


def read_ids_csv(path: Path, root: Path) -> dict[Path, str]:
    """``file,patient_id`` rows (a header row naming them; ``file`` relative to ``root`` or absolute)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"ids file {path} is unreadable: {exc}") from exc
    if not rows or not {"file", "patient_id"} <= set(rows[0]):
        raise InputDataError(f"ids file {path} needs the columns file,patient_id (one row per image file)")
    out: dict[Path, str] = {}
    for i, row in enumerate(rows, start=2):
        f, pid = (row.get("file") or "").strip(), (row.get("patient_id") or "").strip()
        if not f or not pid:
            raise InputDataError(f"ids file {path} line {i}: needs both a file and a patient_id")
        p = Path(f) if Path(f).is_absolute() else root / f
        out[p.resolve()] = pid
    return out


def image_cohort(root: Path, ids_csv: Path | None = None) -> ImageCohort:
    """The studies of the image files under ``root`` (see the module docstring)."""
    root = Path(root)
    files = image_files(root) or []
    cohort = ImageCohort(root)
    given = read_ids_csv(ids_csv, root) if ids_csv is not None else {}
    unknown = sorted(str(p) for p in given if p not in {f.resolve() for f in files})
    if unknown:
        raise InputDataError(f"ids file {ids_csv} names files that are not CT image files of {root}: "
                             + ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else ""))
    stems: dict[Path, str] = {}
    for f in files:
        stem = _stem(f)
        m = NNUNET_CHANNEL.search(stem)
        if m and m.group(1) != "0000" and (f.with_name(f.name.replace(m.group(0), "_0000", 1))).exists():
            cohort.notes.append(f"{f.relative_to(root)}: nnU-Net channel {m.group(1)} of a case, not a CT of its own; "
                                "left out")
            continue
        stems[f] = NNUNET_CHANNEL.sub("", stem) if m and m.group(1) == "0000" else stem
    per_case: dict[str, int] = {}
    for f in stems:
        if f.parent != root:
            case = f.relative_to(root).parts[0]
            per_case[case] = per_case.get(case, 0) + 1
    ids: dict[Path, str] = {}
    for f, stem in stems.items():
        case = f.relative_to(root).parts[0] if f.parent != root else None
        if f.resolve() in given:
            ids[f] = given[f.resolve()]
        elif case is not None and per_case[case] == 1:
            ids[f] = case  # the case folder names the case
        elif case is not None:
            ids[f] = f"{case}_{stem}"
        else:
            ids[f] = stem
    by_id: dict[str, list[Path]] = {}
    for f, pid in ids.items():
        by_id.setdefault(pid.casefold(), []).append(f)
    for f, pid in ids.items():
        claim = by_id[pid.casefold()]
        if len(claim) == 1:
            cohort.images.append((f, pid))
        elif f == claim[0]:
            cohort.collisions.append((pid, claim))
    return cohort


def collision_reason(pid: str, files: list[Path], root: Path) -> str:
    names = ", ".join(str(f.relative_to(root)) for f in files)
    return (f"{len(files)} image files give the patient id {pid!r} ({names}); none is scored: rename them, or "
            "name each file's id in a CSV (file,patient_id) given with --ids")
