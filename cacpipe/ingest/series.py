"""Group DICOM headers into patients, studies and series."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..record import StudyIdentity
from .discover import FileHeader, Problem


@dataclass
class Series:
    """One DICOM series: its files and the metadata selection and assembly need."""

    series_uid: str
    files: list[FileHeader]
    duplicates_dropped: int = 0  # files with a SOP Instance UID already seen in this series

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
        """Median distance between distinct slice positions along the normal (header-only)."""
        n = self.slice_normal
        pos = [f.position for f in self.files if f.position is not None]
        if n is None or len(pos) < 2:
            return None
        d = np.unique(np.round(np.asarray(pos) @ n, 3))
        if len(d) < 2:
            return None
        return float(np.median(np.diff(d)))

    def fingerprint(self) -> str:
        """Changes when any file of the series is added, removed or changed."""
        h = hashlib.sha1()
        for f in sorted(self.files, key=lambda f: (f.sop_instance_uid, f.source)):
            h.update(f"{f.sop_instance_uid}|{f.source}|{f.fingerprint}\n".encode())
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

    @property
    def key(self) -> str:
        return f"{self.patient_id}/{self.study_uid}"


def group_studies(headers: list[FileHeader]) -> tuple[list[Study], list[Problem]]:
    """Group headers by study and series; duplicate SOP instances (same image twice) are dropped.

    Returns the studies (sorted by patient, date, UID) and problems found while grouping.
    """
    problems: list[Problem] = []
    by_series: dict[tuple[str, str], list[FileHeader]] = {}
    for h in headers:
        by_series.setdefault((h.study_uid, h.series_uid), []).append(h)
    studies: dict[str, Study] = {}
    for (study_uid, series_uid), files in by_series.items():
        seen: dict[str, FileHeader] = {}
        dropped = 0
        for f in files:
            key = f.sop_instance_uid or f.source
            if key in seen:
                dropped += 1  # the same instance exported twice (folder + zip, or copies)
                continue
            seen[key] = f
        uniq = sorted(seen.values(), key=lambda f: (f.instance_number or 0, f.source))
        s = Series(series_uid, uniq, dropped)
        first = uniq[0]
        st = studies.get(study_uid)
        if st is None:
            st = studies[study_uid] = Study(first.patient_id, first.patient_name, study_uid, first.study_date,
                                            first.accession)
        ids = {f.patient_id for f in uniq} | {st.patient_id}
        if len(ids) > 1:
            problems.append(Problem(f"study {study_uid}", f"files of one study carry several Patient IDs {sorted(ids)}"))
            st.notes.append(f"several Patient IDs in one study: {sorted(ids)}")
        st.series.append(s)
    for st in studies.values():
        st.series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30, s.series_uid))
    ordered = sorted(studies.values(), key=lambda s: (s.patient_id, s.study_date, s.study_uid))
    return ordered, problems
