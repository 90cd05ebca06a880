"""What a scan's INPUT is, and planning for a CT given as one image file.

INPUT may be a PACS export folder, a single DICOM series or study folder, a zip, a DICOMDIR
(its folder is read) or one DICOM file: all of these go through discovery and selection
(``plan.plan``). A NIfTI / NRRD / MHA file is one study on its own: its geometry comes from the
file, its patient id from the file name (or ``--id``), and its study key is
``<PatientID>/file-<PatientID>``, so it gets the usual OUT layout, manifest entry, cohort row and
resume (the fingerprint is the file's path, size and modification time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..config import Settings
from ..errors import ConfigError, InputDataError
from ..ingest import Study, is_image_file
from ..ingest.loaded import image_identity
from .layout import RESULT, now, study_folders
from .manifest import corrected_by, recover, redo_reason
from .plan import config_hash, keep_study
from .worker import Analyse, StudyTask


@dataclass(frozen=True)
class ScanInput:
    """A resolved INPUT: ``kind`` is ``image`` (one CT image file) or ``dicom`` (walked from ``root``)."""

    path: Path
    kind: str
    root: Path

    def describe(self) -> str:
        if self.kind == "image":
            return f"CT image file {self.path}"
        if self.root != self.path:
            return f"DICOMDIR {self.path} (its folder {self.root} is read)"
        return f"{'zip file' if self.path.is_file() else 'folder'} {self.path}"


def resolve_input(path: str | Path, patient_id: str | None = None) -> ScanInput:
    """Classify INPUT; a DICOMDIR file stands for the folder that holds it."""
    p = Path(path)
    if not p.exists():
        raise InputDataError(f"input not found: {p}")
    if is_image_file(p):
        return ScanInput(p, "image", p)
    if patient_id:
        raise ConfigError("--id names the patient of a CT image file (NIfTI/NRRD/MHA); DICOM inputs carry "
                          "their own PatientID")
    if p.is_file() and p.name.upper() == "DICOMDIR":
        return ScanInput(p, "dicom", p.parent)
    return ScanInput(p, "dicom", p)


def image_fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def check_image(path: Path) -> tuple[int, ...]:
    """Read the image header (not the voxels): a 3D scalar image, or InputDataError."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputDataError(f"cannot read the CT image {path}: {str(exc).strip().splitlines()[-1]}") from exc
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) != 3 or reader.GetNumberOfComponents() != 1:
        raise InputDataError(f"{path} is not a 3D CT volume (size {size}, {reader.GetNumberOfComponents()} "
                             "component(s) per voxel)")
    return size


def plan_image(inp: ScanInput, out: Path, manifest: dict, analyse: Analyse, settings: Settings, force: bool,
               summary, patient_id: str | None = None, redo_corrected: bool = False) -> list[StudyTask]:
    """The one study of a CT image file: recorded in ``manifest``, returned as a task unless up to date."""
    size_xyz = check_image(inp.path)
    ident = image_identity(inp.path, patient_id)
    manifest.update(export=str(inp.path.resolve()), cacpipe_version=__version__, scanned=now(), problems=[],
                    ignored_files=0, settings=settings.to_dict())
    summary.problems, summary.ignored_files, summary.studies = 0, 0, 1
    for entry in manifest["studies"].values():
        entry["in_last_scan"] = False
    key = Study(ident.patient_id, "", ident.study_uid, "", "").key  # the manifest key DICOM studies get
    # Folders of earlier studies take part, as in plan.plan (no two folders differ only in case).
    rel = study_folders([(ident.patient_id, ident.study_uid)]
                        + [(str(e.get("patient_id", "")), str(e.get("study_uid", "")))
                           for e in manifest["studies"].values()])[(ident.patient_id, ident.study_uid)]
    fp, cfg = image_fingerprint(inp.path), config_hash(analyse, settings)
    entry = manifest["studies"].get(key)
    base = {"patient_id": ident.patient_id, "study_uid": ident.study_uid, "study_date": "", "accession": "",
            "in_last_scan": True, "skipped_series": [], "series_uid": ident.series_uid,
            "notes": [f"CT image file {inp.path.name} ({'x'.join(map(str, size_xyz))} voxels, x y z)"]}
    why = redo_reason(entry, fp, cfg, out, force, rel, ident.study_uid)
    if why and not force and recover(out, rel, fp, cfg, ident.study_uid) is not None:
        why, entry = None, {**(entry or {}), "status": "done", "result": f"{rel}/{RESULT}", "reason": ""}
    if why is None:
        manifest["studies"][key] = {**entry, **base, "input_fingerprint": fp, "config_hash": cfg}
        summary.up_to_date += 1
        return []
    if keep_study(out, rel, why, redo_corrected, manifest, key, entry, base, summary):
        return []
    manifest["studies"][key] = {**(entry or {}), **base, "status": "pending", "reason": why,
                                "input_fingerprint": fp, "config_hash": cfg, "result": None}
    return [StudyTask(key=key, candidates=[], out_dir=str(out / rel), input_fingerprint=fp, config_hash=cfg,
                      analyse=analyse, settings=settings, image=str(inp.path), patient_id=ident.patient_id,
                      supersede=bool(corrected_by(out / rel)), out_root=str(out))]
