"""What a scan's INPUT is, and planning for a CT given as one image file.

INPUT may be a PACS export folder, a single DICOM series or study folder, a zip, a DICOMDIR
(its folder is read) or one DICOM file: all of these go through discovery and selection
(``plan.plan``). A NIfTI / NRRD / MHA file is one study on its own: its geometry comes from the
file, its patient id from the file name (or ``--id``), and its study key is
``<PatientID>/file-<PatientID>``, so it gets the usual OUT layout, manifest entry, cohort row and
resume (the fingerprint is the file's path, size, modification time and a content sample). A folder that holds such
files and no DICOM is a cohort of them (kind ``images``): one study per file, ids from the file or
case-folder names or an ids CSV (cacpipe.ingest.image_cohort); files that claim the same id fail
with the reason.
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
from .layout import RESULT, now, output_folders
from .manifest import corrected_by, recover, redo_reason
from .plan import config_hash, keep_study
from .worker import Analyse, StudyTask


@dataclass(frozen=True)
class ScanInput:
    """A resolved INPUT: ``kind`` is ``image`` (one CT image file) or ``dicom`` (walked from ``root``)."""

    path: Path
    kind: str  # image | images | dicom
    root: Path
    ids_csv: Path | None = None  # kind images: a CSV naming each file's patient id

    def describe(self) -> str:
        if self.kind == "image":
            return f"CT image file {self.path}"
        if self.kind == "images":
            return f"folder of CT image files {self.path}"
        if self.root != self.path:
            return f"DICOMDIR {self.path} (its folder {self.root} is read)"
        return f"{'zip file' if self.path.is_file() else 'folder'} {self.path}"


def resolve_input(path: str | Path, patient_id: str | None = None, ids_csv: str | Path | None = None) -> ScanInput:
    """Classify INPUT; a DICOMDIR file stands for the folder that holds it."""
    from ..ingest.image_cohort import image_files

    p = Path(path)
    if not p.exists():
        raise InputDataError(f"input not found: {p}")
    if is_image_file(p):
        if ids_csv is not None:
            raise ConfigError("--ids names the files of a folder of CT image files; for one file give --id")
        return ScanInput(p, "image", p)
    if p.is_dir() and image_files(p):
        if patient_id:
            raise ConfigError("--id names the patient of one CT image file; a folder of them takes its ids from "
                              "file or case-folder names, or from --ids CSV")
        return ScanInput(p, "images", p, None if ids_csv is None else Path(ids_csv))
    if ids_csv is not None:
        raise ConfigError("--ids names the files of a folder of CT image files (NIfTI/NRRD/MHA); DICOM inputs "
                          "carry their own PatientID")
    if patient_id:
        raise ConfigError("--id names the patient of a CT image file (NIfTI/NRRD/MHA); DICOM inputs carry "
                          "their own PatientID")
    if p.is_file() and p.name.upper() == "DICOMDIR":
        return ScanInput(p, "dicom", p.parent)
    return ScanInput(p, "dicom", p)


def image_fingerprint(path: Path) -> str:
    """Changes with the file's path, size, time and content (a sample: a file rewritten in place with
    its size and time kept, as ``cp -p`` does, is seen; cacpipe.ingest.content_sample)."""
    from ..ingest.content_sample import file_sample

    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{file_sample(path)}".encode()).hexdigest()


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
    ident = image_identity(inp.path, patient_id)
    return plan_images([(inp.path, ident.patient_id)], [], str(inp.path.resolve()), out, manifest, analyse,
                       settings, force, summary, redo_corrected, strict=True)


def plan_image_folder(inp: ScanInput, out: Path, manifest: dict, analyse: Analyse, settings: Settings,
                      force: bool, summary, redo_corrected: bool = False) -> list[StudyTask]:
    """A folder of CT image files: one study per file (cacpipe.ingest.image_cohort)."""
    from ..ingest.image_cohort import collision_reason, image_cohort

    root = inp.path.resolve()  # the same folder spelled differently is the same input
    cohort = image_cohort(root, inp.ids_csv)
    refused = [(pid, collision_reason(pid, files, root)) for pid, files in cohort.collisions]
    return plan_images(cohort.images, refused, str(root), out, manifest, analyse, settings, force, summary,
                       redo_corrected, notes=cohort.notes)


def plan_images(images: list[tuple[Path, str]], refused: list[tuple[str, str]], export: str, out: Path,
                manifest: dict, analyse: Analyse, settings: Settings, force: bool, summary,
                redo_corrected: bool = False, notes: list[str] | None = None, strict: bool = False
                ) -> list[StudyTask]:
    """Studies of CT image files ((file, patient id) pairs), recorded in ``manifest``; returns those to
    run. ``refused``: (patient id, reason) of ids claimed by several files (failed, not run). A
    file whose header is not a 3D CT fails alone (``strict``: one file given: it stops the scan)."""
    manifest.update(export=export, cacpipe_version=__version__, scanned=now(), problems=[],
                    ignored_files=0, settings=settings.to_record(), notes=list(notes or []))
    summary.problems, summary.ignored_files, summary.studies = 0, 0, len(images) + len(refused)
    for entry in manifest["studies"].values():
        entry["in_last_scan"] = False
    idents = {path: image_identity(path, pid) for path, pid in images}
    # Folders of earlier studies take part, as in plan.plan (no two folders differ only in case).
    folders = output_folders([(i.patient_id, i.study_uid) for i in idents.values()]
                             + [(str(e.get("patient_id", "")), str(e.get("study_uid", "")))
                                for e in manifest["studies"].values()], settings.review)
    cfg = config_hash(analyse, settings)
    tasks = []
    for pid, reason in refused:
        key = Study(pid, "", f"file-{pid}", "", "").key
        manifest["studies"][key] = {"patient_id": pid, "study_uid": f"file-{pid}", "study_date": "",
                                    "accession": "", "in_last_scan": True, "skipped_series": [], "series_uid": "",
                                    "status": "failed", "reason": reason, "result": None}
        summary.failed += 1
        summary.failures.append((key, reason))
    for path, ident in idents.items():
        key = Study(ident.patient_id, "", ident.study_uid, "", "").key  # the manifest key DICOM studies get
        entry = manifest["studies"].get(key)
        base = {"patient_id": ident.patient_id, "study_uid": ident.study_uid, "study_date": "", "accession": "",
                "in_last_scan": True, "skipped_series": [], "series_uid": ident.series_uid,
                "image_file": str(path)}
        try:
            size_xyz = check_image(path)
        except InputDataError as exc:
            if strict:
                raise
            manifest["studies"][key] = {**base, "status": "failed", "reason": str(exc), "result": None}
            summary.failed += 1
            summary.failures.append((key, str(exc)))
            continue
        base["notes"] = [f"CT image file {path.name} ({'x'.join(map(str, size_xyz))} voxels, x y z)"]
        rel = folders[(ident.patient_id, ident.study_uid)]
        fp = image_fingerprint(path)
        why = redo_reason(entry, fp, cfg, out, force, rel, ident.study_uid)
        if why and not force and recover(out, rel, fp, cfg, ident.study_uid) is not None:
            why, entry = None, {**(entry or {}), "status": "done", "result": f"{rel}/{RESULT}", "reason": ""}
        if why is None:
            manifest["studies"][key] = {**entry, **base, "input_fingerprint": fp, "config_hash": cfg}
            summary.up_to_date += 1
            continue
        if keep_study(out, rel, why, redo_corrected, manifest, key, entry, base, summary):
            continue
        manifest["studies"][key] = {**(entry or {}), **base, "status": "pending", "reason": why,
                                    "input_fingerprint": fp, "config_hash": cfg, "result": None}
        tasks.append(StudyTask(key=key, candidates=[], out_dir=str(out / rel), input_fingerprint=fp, config_hash=cfg,
                               analyse=analyse, settings=settings, image=str(path), patient_id=ident.patient_id,
                               supersede=bool(corrected_by(out / rel)), out_root=str(out)))
    return tasks
