"""Find every DICOM file of a PACS export: folders, DICOMDIR, extension-less files, zip files.

Only headers are read here (``stop_before_pixels``): discovery of a large export stays cheap.
Zip members are read in memory and never extracted (assembly reads them from the zip again); a
zip nested in a zip is copied, under a numbered name, into a temporary folder the caller owns.
A member name is never used as a path, and zip-slip names (``../../x``, ``/etc/x``, ``C:\\x``)
are rejected and reported. Files that are clearly not DICOM (text, images, thumbnails) are
counted and ignored; files that claim to be DICOM but cannot be parsed are reported as problems.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

log = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
MAX_ZIP_DEPTH = 2  # zip inside zip inside the export: deeper nesting is reported, not read


@dataclass(frozen=True)
class Problem:
    """A file or zip member that could not be used, and why (one line)."""

    source: str
    reason: str

    def to_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass
class FileHeader:
    """The header fields of one DICOM file that grouping, selection and assembly need.

    ``path`` is where the file can be read (for zip members: the zip, see ``zip_member``);
    ``source`` is how to name it to a user (``export/a.zip!dir/IM1`` for zip members);
    ``fingerprint`` changes when the file's content changes (size + mtime, or zip CRC).
    """

    path: str
    source: str
    fingerprint: str
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    accession: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    manufacturer: str = ""
    image_type: tuple[str, ...] = ()
    kernel: str = ""
    slice_thickness_mm: float | None = None
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 1
    contrast_agent: str = ""
    gantry_tilt_deg: float = 0.0
    instance_number: int | None = None
    has_pixel_data: bool = True
    zip_member: str = ""  # set when ``path`` is a zip file and the image is this member of it


@dataclass
class Discovery:
    """What a walk over an export found."""

    headers: list[FileHeader] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not DICOM (quietly skipped)
    dicomdirs: list[str] = field(default_factory=list)


# --- header parsing --------------------------------------------------------------------------

def _str(ds, name: str) -> str:
    v = ds.get(name, "")
    return "" if v is None else str(v).strip()


def _floats(ds, name: str, n: int) -> tuple[float, ...] | None:
    v = ds.get(name)
    if v is None or v == "":
        return None
    seq = list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]
    try:
        vals = tuple(float(x) for x in seq)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def _int(ds, name: str) -> int | None:
    v = ds.get(name)
    try:
        return None if v in (None, "") else int(v)
    except (TypeError, ValueError):
        return None


def header_from_dataset(ds, path: str, source: str, fingerprint: str) -> FileHeader:
    """Pick the fields cacpipe uses out of a pydicom dataset (header-only read)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = _str(ds, "SOPClassUID") or (str(meta.get("MediaStorageSOPClassUID", "")) if meta else "")
    sop_inst = _str(ds, "SOPInstanceUID") or (str(meta.get("MediaStorageSOPInstanceUID", "")) if meta else "")
    thick = _floats(ds, "SliceThickness", 1)
    tilt = _floats(ds, "GantryDetectorTilt", 1)
    px = _floats(ds, "PixelSpacing", 2)
    image_type = ds.get("ImageType")
    if image_type is None:
        it: tuple[str, ...] = ()
    elif isinstance(image_type, str):
        it = tuple(s.strip().upper() for s in image_type.split("\\"))
    else:
        it = tuple(str(s).strip().upper() for s in image_type)
    kernel = ds.get("ConvolutionKernel", "")
    if kernel and not isinstance(kernel, str):
        kernel = "\\".join(str(k) for k in kernel)
    return FileHeader(
        path=path, source=source, fingerprint=fingerprint,
        sop_class_uid=sop_class, sop_instance_uid=sop_inst,
        modality=_str(ds, "Modality").upper(),
        patient_id=_str(ds, "PatientID"), patient_name=_str(ds, "PatientName"),
        study_uid=_str(ds, "StudyInstanceUID"), study_date=_str(ds, "StudyDate"),
        study_description=_str(ds, "StudyDescription"), accession=_str(ds, "AccessionNumber"),
        series_uid=_str(ds, "SeriesInstanceUID"), series_number=_int(ds, "SeriesNumber"),
        series_description=_str(ds, "SeriesDescription"), manufacturer=_str(ds, "Manufacturer"),
        image_type=it, kernel=str(kernel or "").strip(),
        slice_thickness_mm=thick[0] if thick else None,
        position=_floats(ds, "ImagePositionPatient", 3),  # type: ignore[arg-type]
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        pixel_spacing=px,  # type: ignore[arg-type]
        rows=_int(ds, "Rows"), columns=_int(ds, "Columns"),
        number_of_frames=_int(ds, "NumberOfFrames") or 1,
        contrast_agent=_str(ds, "ContrastBolusAgent"),
        gantry_tilt_deg=tilt[0] if tilt else 0.0,
        instance_number=_int(ds, "InstanceNumber"),
        has_pixel_data=_int(ds, "Rows") is not None,
    )


def _looks_like_dicom(head: bytes) -> bool:
    """True for Part 10 files (``DICM`` at 128) and for raw datasets starting with group 0008."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Old exports hold preamble-less datasets that start with a (0008,xxxx) tag.
    return len(head) >= 8 and head[:2] == b"\x08\x00" and head[2:4] < b"\x20\x00"


def _read_header(fp, force: bool):
    with warnings.catch_warnings():  # garbage makes pydicom warn per element; we report the file once
        warnings.simplefilter("ignore")
        return pydicom.dcmread(fp, stop_before_pixels=True, force=force)


def _parse(data_or_path, head: bytes, path: str, source: str, fingerprint: str, out: Discovery) -> None:
    """Read one candidate file's header and add it (or a problem) to ``out``."""
    part10 = len(head) >= 132 and head[128:132] == b"DICM"
    try:
        ds = _read_header(data_or_path, force=not part10)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError, NotImplementedError) as exc:
        out.problems.append(Problem(source, f"corrupt DICOM file ({type(exc).__name__}: {_one_line(exc)})"))
        return
    except Exception as exc:  # pydicom raises many types on garbage; one bad file must not stop discovery
        out.problems.append(Problem(source, f"corrupt DICOM file ({type(exc).__name__}: {_one_line(exc)})"))
        return
    sop_class = _str(ds, "SOPClassUID") or str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        out.dicomdirs.append(source)
        return
    if not _str(ds, "SeriesInstanceUID") or not _str(ds, "StudyInstanceUID"):
        out.problems.append(Problem(source, "corrupt or incomplete DICOM file: no Study/Series Instance UID "
                                           "(cannot be grouped)"))
        return
    out.headers.append(header_from_dataset(ds, path, source, fingerprint))


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] or type(exc).__name__


# --- zip files -------------------------------------------------------------------------------

def unsafe_member_name(name: str) -> str | None:
    """Why a zip member name would escape an extraction folder (None when it is safe)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if any(part == ".." for part in PurePosixPath(norm).parts):
        return "'..' in path"
    if "\x00" in name:
        return "NUL byte in name"
    return None


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04" and zipfile.is_zipfile(path)
    except OSError:
        return False


def _scan_zip(zpath: Path, label: str, workdir: Path, out: Discovery, depth: int) -> None:
    """Read the headers of every member of the zip file ``zpath``; nested zips are followed.

    Members are not extracted: their headers are parsed from memory (after the CRC check) and
    ``FileHeader.zip_member`` tells assembly to read them from the zip. Only a nested zip is
    copied, whole, to a numbered file in ``workdir`` so that it can be opened the same way.
    """
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        out.problems.append(Problem(label, f"unreadable zip file ({_one_line(exc)})"))
        return
    with zf:
        for info in zf.infolist():
            source = f"{label}!{info.filename}"
            if info.is_dir():
                continue
            why = unsafe_member_name(info.filename)
            if why:
                out.problems.append(Problem(source, f"zip-slip member name rejected ({why}); not read"))
                continue
            if info.flag_bits & 0x1:
                out.problems.append(Problem(source, "unreadable zip member (encrypted)"))
                continue
            try:
                data = zf.read(info)  # checks the CRC
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, ValueError, EOFError) as exc:
                out.problems.append(Problem(source, f"unreadable zip member ({_one_line(exc)})"))
                continue
            name = PurePosixPath(info.filename).name
            if data[:4] == b"PK\x03\x04":
                if depth >= MAX_ZIP_DEPTH:
                    out.problems.append(Problem(source, f"zip nested deeper than {MAX_ZIP_DEPTH} levels; not read"))
                    continue
                # Numbered name inside our own folder: a member name never becomes a path.
                workdir.mkdir(parents=True, exist_ok=True)
                inner = workdir / f"nested-{hashlib.sha1(source.encode()).hexdigest()[:16]}.zip"
                inner.write_bytes(data)
                _scan_zip(inner, source, workdir, out, depth + 1)
                continue
            if name.upper() == "DICOMDIR":
                out.dicomdirs.append(source)
                continue
            if not _looks_like_dicom(data[:132]):
                out.ignored.append(source)
                continue
            n = len(out.headers)
            _parse(io.BytesIO(data), data[:132], str(zpath), source, f"zip:{info.CRC:08x}:{info.file_size}", out)
            if len(out.headers) > n:
                out.headers[-1].zip_member = info.filename


# --- the walk --------------------------------------------------------------------------------

def _check_dicomdir(path: Path, out: Discovery) -> None:
    """Report files a DICOMDIR references that are missing from the export."""
    try:
        ds = pydicom.dcmread(str(path), force=True)
        records = ds.get("DirectoryRecordSequence", [])
    except Exception as exc:  # a broken DICOMDIR is only a note: the files are found by the walk
        out.problems.append(Problem(str(path), f"unreadable DICOMDIR ({_one_line(exc)})"))
        return
    missing = 0
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        if unsafe_member_name("/".join(parts)):
            out.problems.append(Problem(str(path), f"DICOMDIR references an unsafe path {parts!r}; ignored"))
            continue
        if not (path.parent.joinpath(*parts)).exists():
            missing += 1
    if missing:
        out.problems.append(Problem(str(path), f"DICOMDIR references {missing} file(s) missing from the export"))


def discover(root: str | Path, workdir: str | Path, progress: bool = False,
             exclude: tuple[str | Path, ...] = ()) -> Discovery:
    """Walk ``root`` (a folder, a zip file or one DICOM file) and read every DICOM header.

    ``workdir`` receives copies of zip files nested in zip files (the caller deletes it after
    the scan, since those members are read from there).
    Symbolic links to folders are not followed (they can form loops). ``progress`` shows a
    tqdm bar over the files. Folders in ``exclude`` (e.g. an output folder inside the export)
    are not walked.
    """
    root = Path(root)
    workdir = Path(workdir)
    out = Discovery()
    if not root.exists():
        from ..errors import InputDataError

        raise InputDataError(f"export folder not found: {root}")
    if root.is_file():
        paths = [root]
    else:
        paths = []
        skip = {Path(p).resolve() for p in exclude}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if (Path(dirpath) / d).resolve() not in skip)
            paths.extend(Path(dirpath) / f for f in sorted(filenames))
    from tqdm import tqdm

    for path in tqdm(paths, desc="reading headers", unit="file", disable=not progress or len(paths) < 2,
                     dynamic_ncols=True, leave=False):
        _discover_file(path, workdir, out)
    return out


def _discover_file(path: Path, workdir: Path, out: Discovery) -> None:
    try:
        st = path.stat()
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        out.problems.append(Problem(str(path), f"cannot read file ({_one_line(exc)})"))
        return
    if path.name.upper() == "DICOMDIR":
        out.dicomdirs.append(str(path))
        _check_dicomdir(path, out)
        return
    if head[:4] == b"PK\x03\x04" and _is_zip(path):
        _scan_zip(path, str(path), workdir, out, depth=1)
        return
    if not _looks_like_dicom(head):
        if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
            out.problems.append(Problem(str(path), "not a DICOM file (no DICM marker) despite its extension"))
        else:
            out.ignored.append(str(path))
        return
    fingerprint = f"file:{st.st_size}:{st.st_mtime_ns}"
    _parse(str(path), head, str(path), str(path), fingerprint, out)
