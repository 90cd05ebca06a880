"""A loaded CT series (volume + identity + ingest flags + source headers), and one CT read from a path.

``LoadedSeries`` is what ingestion hands on: the pipeline analyses it, DICOM SEG/SR/SC reference
its ``sources`` (header-only datasets, one per volume slice, in volume order), and its ``flags``
join the study's flags before the validity decision. :func:`read_ct` is the single door for one
CT given as a path: an image file (NIfTI, NRRD, MHA) or DICOM (a series folder, a study folder, a
zip, a DICOMDIR) read with exactly the discovery, selection and assembly ``cacpipe scan`` uses,
so training cases, rebuilt reviews and scans all see the same voxels.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputDataError
from ..flags import Flag
from ..record import StudyIdentity
from ..volume import Volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class LoadedSeries:
    """One assembled CT series ready for analysis. ``volume.array`` is HU, (z, y, x)."""

    volume: Volume
    identity: StudyIdentity
    flags: list[Flag] = field(default_factory=list)
    sources: list | None = None  # pydicom Datasets without pixels, one per slice; None: no DICOM outputs
    source_files: list[str] = field(default_factory=list)  # how to name each slice's file to a user
    files: int = 0
    info: dict = field(default_factory=dict)  # assembly facts (gantry tilt, ...)

    def __post_init__(self) -> None:
        # Flags name slices as PACS does (Volume.slice_reference): the volume carries its InstanceNumbers.
        self.volume.meta.setdefault("instance_numbers", self.instance_numbers)
        self.volume.meta.setdefault("slice_positions_mm", self.slice_positions_mm)

    @property
    def instance_numbers(self) -> list[int | None]:
        """The PACS InstanceNumber of each volume slice (None when unknown)."""
        if not self.sources:
            return [None] * self.volume.shape[0]
        return [int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None for ds in self.sources]


    @property
    def slice_positions_mm(self) -> list[float]:
        """Table position (mm) of each volume slice as a PACS shows it: SliceLocation when the header
        has it, else the z of ImagePositionPatient, else the patient-space z of the volume slice."""
        out = []
        for k in range(self.volume.shape[0]):
            ds = self.sources[k] if self.sources else None
            if ds is not None and ds.get("SliceLocation") not in (None, ""):
                out.append(round(float(ds.SliceLocation), 3))
            elif ds is not None and ds.get("ImagePositionPatient"):
                out.append(round(float(ds.ImagePositionPatient[2]), 3))
            else:
                out.append(round(float(self.volume.index_to_physical([[k, 0, 0]])[0, 2]), 3))
        return out


def is_image_file(path: Path) -> bool:
    """True for a single-file image format cacpipe reads (NIfTI, NRRD, MHA)."""
    name = path.name.lower()
    return path.is_file() and name.endswith(IMAGE_SUFFIXES)


def image_identity(path: Path, patient_id: str | None = None) -> StudyIdentity:
    """Identity of a CT given as an image file: the patient id from ``patient_id`` or the file name."""
    stem = path.name
    for suf in IMAGE_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    pid = patient_id or re.sub(r"_0000$", "", stem) or "UNKNOWN"
    return StudyIdentity(patient_id=pid, study_uid=f"file-{pid}", series_uid=f"file-{pid}",
                         series_description=path.name, input_kind="image")


def read_ct(path: str | Path, settings=None, patient_id: str | None = None,
            series_uid: str | None = None) -> LoadedSeries:
    """One CT from ``path``: an image file, or DICOM holding exactly one study.

    For DICOM the series is the one ``cacpipe scan`` would score under ``settings``
    (a ``cacpipe.config.Settings``; default rules), or ``series_uid`` when given.
    """
    from ..config import Settings
    from .assemble import load_series
    from .discover import discover
    from .select import select_series
    from .series import group_studies

    p = Path(path)
    if not p.exists():
        raise InputDataError(f"CT image not found: {p}")
    if is_image_file(p):
        vol = Volume.read(p)
        return LoadedSeries(volume=vol, identity=image_identity(p, patient_id), files=1, source_files=[str(p)])
    settings = settings or Settings()
    with tempfile.TemporaryDirectory(prefix="cacpipe_read_") as work:
        disc = discover(p, Path(work), progress=False, follow_symlinks=settings.discovery.follow_symlinks)
        studies, _ = group_studies(disc.headers)
        if series_uid is not None:
            found = [s for st in studies for s in st.series if s.series_uid == series_uid]
            if not found:
                known = [s.series_uid for st in studies for s in st.series]
                raise InputDataError(f"series {series_uid} not found under {p}; found {known}")
            loaded = load_series(found[0], settings.assembly)
        else:
            if not studies:
                why = "; ".join(f"{x.source}: {x.reason}" for x in disc.problems[:3])
                raise InputDataError(f"no DICOM study found in {p}" + (f" ({why})" if why else ""))
            if studies[0].conflict:
                raise InputDataError(studies[0].conflict)
            if len(studies) != 1:
                raise InputDataError(f"{p} holds {len(studies)} studies; give one study (or use `cacpipe scan` "
                                     "for a whole export)")
            sel = select_series(studies[0], settings.selection)
            if sel.selected is None:
                raise InputDataError(f"no scorable CT series in {p}: {sel.reason}")
            loaded = load_series(sel.selected, settings.assembly)
    if patient_id:
        loaded.identity.patient_id = patient_id
    return loaded
