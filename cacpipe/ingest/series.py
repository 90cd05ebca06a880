"""Group DICOM headers into patients, studies and series.

Nothing is merged silently and nothing depends on the order in which files were found:

- one StudyInstanceUID under several PatientIDs becomes one ``Study`` per PatientID, each with a
  ``conflict`` naming all of them; the scan refuses such studies (it cannot tell which patient
  the images belong to);
- the same SOPInstanceUID found more than once in a series keeps one copy (the first by source
  name) in ``files`` and the others in ``copies``; assembly compares their content and refuses
  the series when two copies differ.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..record import StudyIdentity
from .discover import FileHeader, Problem


@dataclass
class Series:
    """One DICOM series: its files and the metadata selection and assembly need."""

    series_uid: str
    files: list[FileHeader]
    copies: list[tuple[FileHeader, FileHeader]] = field(default_factory=list)  # (kept file, another copy)

    @property
    def duplicates_dropped(self) -> int:
        """Files with a SOP Instance UID already found in this series (compared at assembly)."""
        return len(self.copies)

    @property
    def first(self) -> FileHeader:
        return self.files[0]

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def slice_normal(self) -> np.ndarray | None:
        o = self.first.orientation
        if o is None:
            return None
        n = np.cross(np.asarray(o[:3]), np.asarray(o[3:]))
        norm = float(np.linalg.norm(n))
        return n / norm if norm > 0 else None

    def slice_spacing_mm(self) -> float | None:
        """Median distance between distinct slice positions along the normal (header-only). Non-finite
        positions are left out here: assembly refuses such a file, naming it."""
        n = self.slice_normal
        pos = [f.position for f in self.files if f.position is not None and all(map(math.isfinite, f.position))]
        if n is None or len(pos) < 2:
            return None
        d = np.unique(np.round(np.asarray(pos) @ n, 3))
        if len(d) < 2:
            return None
        return float(np.median(np.diff(d)))

    def fingerprint(self) -> str:
        """Changes when any file of the series is added, removed or changed."""
        h = hashlib.sha1()
        files = self.files + [c for _, c in self.copies]
        for f in sorted(files, key=lambda f: (f.sop_instance_uid, f.source)):
            h.update(f"{f.sop_instance_uid}|{f.source}|{f.fingerprint}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def identity(self) -> StudyIdentity:
        """Identifiers of the study and of this series (from the series' first file)."""
        f = self.first
        return StudyIdentity(
            patient_id=f.patient_id, patient_name=f.patient_name, study_uid=f.study_uid, study_date=f.study_date,
            accession=f.accession, series_uid=self.series_uid, series_number=f.series_number,
            series_description=f.series_description, manufacturer=f.manufacturer, kernel=f.kernel,
            slice_thickness_mm=f.slice_thickness_mm)

    def summary(self) -> dict:
        return {
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "modality": self.modality,
            "image_type": "\\".join(self.image_type),
            "kernel": self.kernel,
            "files": self.n_files,
        }


# Series-level fields are those of the series' first file.
_SERIES_FIELDS = ("modality", "series_number", "series_description", "image_type", "kernel", "manufacturer",
                  "slice_thickness_mm", "contrast_agent", "sop_class_uid", "orientation", "number_of_frames",
                  "patient_id", "study_uid")
for _name in _SERIES_FIELDS:
    setattr(Series, _name, property(lambda self, _n=_name: getattr(self.files[0], _n)))


@dataclass
class Study:
    """One study (StudyInstanceUID) of one patient with all its series."""

    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    accession: str
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    conflict: str = ""  # why the study must not be analysed (its UID is shared by several patients)

    @property
    def key(self) -> str:
        """The manifest key ``PatientID/StudyUID``; a PatientID holding ``/`` or ``%`` is
        percent-encoded so that the first ``/`` always ends it (two studies never share a key)."""
        pid = self.patient_id
        if "/" in pid or "%" in pid:
            pid = pid.replace("%", "%25").replace("/", "%2F")
        return f"{pid}/{self.study_uid}"


def _series(series_uid: str, files: list[FileHeader]) -> Series:
    """One series; copies of one SOP instance are kept aside, the kept one chosen by source name."""
    by_sop: dict[str, list[FileHeader]] = {}
    for f in files:
        by_sop.setdefault(f.sop_instance_uid or f"\x00{f.source}", []).append(f)
    uniq, copies = [], []
    for group in by_sop.values():
        group.sort(key=lambda f: f.source)
        uniq.append(group[0])
        copies += [(group[0], c) for c in group[1:]]
    uniq.sort(key=lambda f: (f.instance_number or 0, f.source))
    return Series(series_uid, uniq, copies)


def _conflict(study_uid: str, files: list[FileHeader]) -> str:
    counts: dict[str, int] = {}
    for f in files:
        counts[f.patient_id] = counts.get(f.patient_id, 0) + 1
    if len(counts) < 2:
        return ""
    names = ", ".join(f"{pid!r} ({n} file(s))" for pid, n in sorted(counts.items()))
    return (f"StudyInstanceUID {study_uid} is used by {len(counts)} PatientIDs: {names}; the export mixes "
            "patients in one study, so it is not analysed (correct the IDs in the PACS or export the patients "
            "separately)")


def group_studies(headers: list[FileHeader]) -> tuple[list[Study], list[Problem]]:
    """Group headers by study, patient and series (see the module docstring for conflicts).

    Returns the studies (sorted by patient, date, UID) and problems found while grouping.
    """
    problems: list[Problem] = []
    by_study: dict[str, list[FileHeader]] = {}
    for h in headers:
        by_study.setdefault(h.study_uid, []).append(h)
    studies: list[Study] = []
    for study_uid, files in by_study.items():
        conflict = _conflict(study_uid, files)  # reported with each of its studies, not as a file problem
        by_patient: dict[str, dict[str, list[FileHeader]]] = {}
        for f in files:
            by_patient.setdefault(f.patient_id, {}).setdefault(f.series_uid, []).append(f)
        for by_series in by_patient.values():
            series = [_series(uid, fs) for uid, fs in by_series.items()]
            series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
            first = min((s.first for s in series), key=lambda f: f.source)
            studies.append(Study(first.patient_id, first.patient_name, study_uid, first.study_date, first.accession,
                                 series, conflict=conflict))
    ordered = sorted(studies, key=lambda s: (s.patient_id, s.study_date, s.study_uid))
    return ordered, problems
