"""Find every DICOM file of a PACS export: folders, DICOMDIR, extension-less files, zip files.

Only headers are read here (``stop_before_pixels``): discovery of a large export stays cheap.
Zip members are streamed and never extracted (assembly reads them from the zip again); a zip
nested in a zip is copied, under a numbered name, into a temporary folder the caller owns.
A member name is never used as a path, and zip-slip names (``../../x``, ``/etc/x``, ``C:\\x``)
are rejected and reported. Files that are clearly not DICOM (text, images, thumbnails) are
counted and ignored; files that claim to be DICOM but cannot be parsed are reported as problems.

Hostile exports are read with bounded memory and time: named pipes, sockets and devices are
never opened; symbolic links to files outside the export are not followed unless asked;
headers are read through a cap (``MAX_HEADER_BYTES``); zip members above ``MAX_ZIP_RATIO``
or ``MAX_FILE_BYTES`` and deflated DICOM that inflates beyond ``MAX_FILE_BYTES`` are refused
with a reason; a path that is not valid UTF-8 is shown with ``\\xNN`` escapes (``shown``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_preamble
from pydicom.multival import MultiValue

from .content_sample import content_sample

log = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
DEFLATED_TS = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the dataset is one deflate stream
MAX_ZIP_DEPTH = 2  # zip inside zip inside the export: deeper nesting is reported, not read
MAX_HEADER_BYTES = 16 << 20
"""A DICOM header (everything before the pixel data) larger than this is refused: real headers are kilobytes."""
MAX_FILE_BYTES = 256 << 20
"""One DICOM file (a zip member, or a deflated file once inflated) larger than this is refused: a
single-frame CT image is under 10 MB, and assembly holds one file in memory at a time."""
MAX_ZIP_RATIO = 200
"""A zip member that expands more than this many times (and to over ``RATIO_MIN_BYTES``) is refused
as a likely zip bomb: DICOM images compress 2-5x, a 1 GB member in a 1 MB zip is 1000x."""
RATIO_MIN_BYTES = 1 << 20
_CHUNK = 1 << 20


def size_problem(what: str, n_bytes: int) -> str | None:
    """Why a DICOM file (or zip member) of ``n_bytes`` is not read whole (None: it may be)."""
    if n_bytes > MAX_FILE_BYTES:
        return f"{what} of {_size(n_bytes)} exceeds {_size(MAX_FILE_BYTES)}: not a single CT image; not read"
    return None


class RefusedInput(ValueError):
    """A file refused on purpose (too large, a bomb): its message is the reason a user sees."""


def shown(path) -> str:
    """A path as text that can always be written (JSON, CSV, terminal): bytes that are not
    UTF-8 (e.g. a cp1252 folder name from a Windows CD) appear as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _size(n: int) -> str:
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / (1 << k):.1f} {unit}"
    return f"{n} B"


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
    ``fingerprint`` changes when the file's content changes (size, mtime and a content sample, or zip CRC).
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
    transfer_syntax: str = ""
    zip_member: str = ""  # set when ``path`` is a zip file and the image is this member of it
    frame_of_reference: str = ""
    uids_missing: str = ""  # the UIDs the file had blank (an anonymiser removed them), replaced by derived ones


@dataclass
class Discovery:
    """What a walk over an export found."""

    headers: list[FileHeader] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # not DICOM (quietly skipped)
    dicomdirs: list[str] = field(default_factory=list)
    folder_links: list[str] = field(default_factory=list)  # symbolic links to folders: not followed, counted


# --- header parsing --------------------------------------------------------------------------

def _str(ds, name: str) -> str:
    v = ds.get(name, "")
    if v is None:
        return ""
    if isinstance(v, MultiValue):  # "A\B" in a single-valued text element: keep the text, not a list repr
        return "\\".join(str(x) for x in v).strip()
    return str(v).strip()


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
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")) if meta else "",
        frame_of_reference=_str(ds, "FrameOfReferenceUID"),
    )


def _looks_like_dicom(head: bytes) -> bool:
    """True for Part 10 files (``DICM`` at 128) and for raw datasets starting with group 0008."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Old exports hold preamble-less datasets that start with a (0008,xxxx) tag.
    return len(head) >= 8 and head[:2] == b"\x08\x00" and head[2:4] < b"\x20\x00"


class _Capped:
    """A read-only view of a binary stream that refuses to read past ``limit`` bytes.

    pydicom reads an element's value in one call of its declared length: a hostile header that
    declares a 1 GB element is refused here before anything is allocated.
    """

    def __init__(self, fp, limit: int):
        self.fp, self.limit = fp, limit
        self.name = getattr(fp, "name", None)

    def read(self, n: int = -1) -> bytes:
        pos = self.fp.tell()
        if n is None or n < 0:
            n = max(self.limit - pos, 0) + 1
        if pos + n > self.limit:
            raise RefusedInput(f"corrupt or oversized DICOM header: an element of {_size(n)} at byte {pos} (a header "
                               f"may hold {_size(self.limit)}); not read")
        return self.fp.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        return self.fp.tell()


def _at_pixel_data(tag, vr, length) -> bool:
    return tag == 0x7FE00010


def _inflate(fp, keep: int, limit: int) -> tuple[bytes, int | None]:
    """Inflate the raw deflate stream ``fp`` (a deflated DICOM dataset) with bounded memory.

    Returns the first ``keep`` inflated bytes and the inflated size, or None for the size when it
    exceeds ``limit`` (reading stops there: a compression bomb never expands in memory).
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    kept = bytearray()
    total = 0
    while not d.eof:
        data = fp.read(_CHUNK)
        if not data:
            break
        while data:
            out = d.decompress(data, _CHUNK)
            total += len(out)
            if total > limit:
                return bytes(kept), None
            if len(kept) < keep:
                kept += out[: keep - len(kept)]
            data = d.unconsumed_tail
    return bytes(kept), total


def _read_meta(fp):
    """The File Meta group of a Part 10 stream (``fp`` at 0); leaves ``fp`` at the dataset."""
    read_preamble(fp, False)
    return read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)


def deflated_problem(fp) -> str | None:
    """Why a deflated Part 10 DICOM stream (``fp`` at 0) must not be read whole (None: it may).

    pydicom inflates the whole dataset in memory; this checks its inflated size first.
    """
    _read_meta(fp)
    _, total = _inflate(fp, 0, MAX_FILE_BYTES)
    if total is None:
        return f"deflated DICOM inflates to more than {_size(MAX_FILE_BYTES)}: refused (a compression bomb?)"
    return None


def _read_header(fp, part10: bool):
    """Header-only read of one DICOM stream (positioned at 0), with bounded memory."""
    capped = _Capped(fp, MAX_HEADER_BYTES)
    with warnings.catch_warnings():  # garbage makes pydicom warn per element; we report the file once
        warnings.simplefilter("ignore")
        if part10:
            meta = _read_meta(capped)
            if str(meta.get("TransferSyntaxUID", "")) == DEFLATED_TS:
                # pydicom would inflate the whole dataset at once: inflate a bounded head instead.
                head, total = _inflate(fp, MAX_HEADER_BYTES, MAX_FILE_BYTES)
                if total is None:
                    raise RefusedInput(f"deflated DICOM inflates to more than {_size(MAX_FILE_BYTES)}: refused "
                                       "(a compression bomb?)")
                ds = read_dataset(DicomBytesIO(head), False, True, stop_when=_at_pixel_data)
                ds.file_meta = meta
                return ds
            capped.seek(0)
        return pydicom.dcmread(capped, stop_before_pixels=True, force=not part10)


def _parse(fp, head: bytes, path: str, source: str, fingerprint: str, out: Discovery) -> None:
    """Read one candidate stream's header (``fp`` at 0) and add it (or a problem) to ``out``."""
    part10 = len(head) >= 132 and head[128:132] == b"DICM"
    try:
        ds = _read_header(fp, part10)
    except RefusedInput as exc:
        out.problems.append(Problem(source, str(exc)))
        return
    except (zipfile.BadZipFile, zlib.error) as exc:
        out.problems.append(Problem(source, f"unreadable zip member or deflated data ({_one_line(exc)})"))
        return
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
        h = header_from_dataset(ds, path, source, fingerprint)
        if h.position is None or h.orientation is None or h.pixel_spacing is None or not h.has_pixel_data:
            out.problems.append(Problem(source, "corrupt or incomplete DICOM file: no Study/Series Instance UID "
                                               "and no image geometry (cannot be grouped)"))
            return
        # Some research anonymisers blank the UIDs: the image is kept, its series is derived from
        # its folder and geometry (derive_missing_uids) and flagged at assembly.
        h.uids_missing = ", ".join(n for n, v in (("StudyInstanceUID", h.study_uid), ("SeriesInstanceUID", h.series_uid),
                                                  ("SOPInstanceUID", h.sop_instance_uid)) if not v)
        out.headers.append(h)
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


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be read, from its directory entry alone (None: it may be)."""
    if info.flag_bits & 0x1:
        return "unreadable zip member (encrypted)"
    if info.file_size >= RATIO_MIN_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        return (f"zip member expands {info.file_size / max(info.compress_size, 1):.0f} times ({_size(info.file_size)} "
                f"from {_size(info.compress_size)}; limit {MAX_ZIP_RATIO}x): refused as a likely zip bomb")
    return None


def _drain(fh) -> None:
    """Read a zip member stream to its end (in chunks): the CRC is checked at the end."""
    while fh.read(_CHUNK):
        pass


def _scan_zip(zpath: str, label: str, workdir: Path, out: Discovery, depth: int) -> None:
    """Read the headers of every member of the zip file ``zpath``; nested zips are followed.

    Members are streamed, never held whole in memory, and read to their end (the CRC check);
    ``FileHeader.zip_member`` tells assembly to read them from the zip. Only a nested zip is
    copied, streamed, to a numbered file in ``workdir`` so that it can be opened the same way.
    """
    try:
        zf = zipfile.ZipFile(zpath)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
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
            why = member_problem(info)
            if why:
                out.problems.append(Problem(source, why))
                continue
            n = len(out.headers)
            try:
                with zf.open(info) as fh:
                    _zip_member(zf, info, fh, zpath, source, workdir, out, depth)
            except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError, RuntimeError, ValueError,
                    EOFError) as exc:
                del out.headers[n:]  # a member that fails its CRC is not used, even if its header parsed
                out.problems.append(Problem(source, f"unreadable zip member ({_one_line(exc)})"))


def _zip_member(zf, info, fh, zpath: str, source: str, workdir: Path, out: Discovery, depth: int) -> None:
    head = fh.read(132)
    name = PurePosixPath(info.filename).name
    if head[:4] == b"PK\x03\x04":
        if depth >= MAX_ZIP_DEPTH:
            out.problems.append(Problem(source, f"zip nested deeper than {MAX_ZIP_DEPTH} levels; not read"))
            return
        # Numbered name inside our own folder: a member name never becomes a path.
        workdir.mkdir(parents=True, exist_ok=True)
        inner = workdir / f"nested-{hashlib.sha1(source.encode('utf-8', 'backslashreplace')).hexdigest()[:16]}.zip"
        with open(inner, "wb") as dst:
            dst.write(head)
            shutil.copyfileobj(fh, dst, _CHUNK)
        _scan_zip(str(inner), source, workdir, out, depth + 1)
        return
    if name.upper() == "DICOMDIR":
        _drain(fh)
        out.dicomdirs.append(source)
        return
    if not _looks_like_dicom(head):
        _drain(fh)
        out.ignored.append(source)
        return
    why = size_problem("zip member", info.file_size)
    if why:
        out.problems.append(Problem(source, why))
        return
    n = len(out.headers)
    fh.seek(0)
    _parse(fh, head, zpath, source, f"zip:{info.CRC:08x}:{info.file_size}", out)
    _drain(fh)
    if len(out.headers) > n:
        out.headers[-1].zip_member = info.filename


# --- the walk --------------------------------------------------------------------------------

def _check_dicomdir(fp, source: str, folder: Path, out: Discovery) -> None:
    """Report files a DICOMDIR references that are missing from the export."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_Capped(fp, MAX_HEADER_BYTES), force=True)
        records = ds.get("DirectoryRecordSequence", [])
    except Exception as exc:  # a broken DICOMDIR is only a note: the files are found by the walk
        out.problems.append(Problem(source, f"unreadable DICOMDIR ({_one_line(exc)})"))
        return
    missing = 0
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        if unsafe_member_name("/".join(parts)):
            out.problems.append(Problem(source, f"DICOMDIR references an unsafe path {parts!r}; ignored"))
            continue
        if not (folder.joinpath(*parts)).exists():
            missing += 1
    if missing:
        out.problems.append(Problem(source, f"DICOMDIR references {missing} file(s) missing from the export"))


def discover(root: str | Path, workdir: str | Path, progress: bool = False,
             exclude: tuple[str | Path, ...] = (), follow_symlinks: bool = False) -> Discovery:
    """Walk ``root`` (a folder, a zip file or one DICOM file) and read every DICOM header.

    ``workdir`` receives copies of zip files nested in zip files (the caller deletes it after
    the scan, since those members are read from there).
    Symbolic links to folders are never followed (they can form loops) but listed in
    ``folder_links``; symbolic links to files outside ``root`` only when ``follow_symlinks``
    (otherwise they are reported as problems).
    ``progress`` shows a tqdm bar over the files. Folders in ``exclude`` (e.g. an output folder
    inside the export) are not walked.
    """
    root = Path(root)
    workdir = Path(workdir)
    out = Discovery()
    if not root.exists():
        from ..errors import InputDataError

        raise InputDataError(f"export folder not found: {shown(root)}")
    if root.is_dir():
        paths = []
        skip = {Path(p).resolve() for p in exclude}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if (Path(dirpath) / d).resolve() not in skip)
            # os.walk lists links to folders among the folders and does not enter them: say so.
            out.folder_links.extend(folder_link_text(Path(dirpath) / d) for d in dirnames
                                    if (Path(dirpath) / d).is_symlink())
            paths.extend(Path(dirpath) / f for f in sorted(filenames))
        base = root.resolve()
    else:
        paths = [root]
        base = root.resolve().parent
    from tqdm import tqdm

    for path in tqdm(paths, desc="reading headers", unit="file", disable=not progress or len(paths) < 2,
                     dynamic_ncols=True, leave=False):
        _discover_file(path, base, workdir, out, follow_symlinks)
    derive_missing_uids(out.headers)
    return out


def folder_link_text(link: Path) -> str:
    """A skipped folder link as a user reads it: ``link -> target`` (the target as the link says it)."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return f"{shown(link)} -> {shown(target)}"


def _uid(*parts) -> str:
    """A stable UID under the UUID root 2.25 from ``parts`` (SHA-1, 128 bits)."""
    import hashlib

    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogateescape")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def derive_missing_uids(headers: list[FileHeader]) -> None:
    """Give files whose UIDs were blanked stable derived ones (in place).

    A series is the files of one folder (a zip member's folder inside the zip) with the same frame
    of reference, orientation (1e-3) and pixel spacing (1e-3 mm) and matrix; a study is the series
    of one patient, study date and accession under the folder above (where an export keeps a
    study's series folders). A file that kept one of the UIDs keeps it. The same export always
    gives the same UIDs (resume works), and ``uids_missing`` says which were derived."""
    for h in headers:
        if not h.uids_missing:
            continue
        folder = h.source.rsplit("/", 1)[0] if "/" in h.source else ""
        parent = folder.rsplit("/", 1)[0] if "/" in folder else ""
        if not h.study_uid:
            h.study_uid = _uid("study", h.patient_id, h.study_date, h.accession, parent)
        if not h.series_uid:
            geom = (tuple(round(v, 3) for v in h.orientation or ()), tuple(round(v, 3) for v in h.pixel_spacing or ()),
                    h.rows, h.columns)
            h.series_uid = _uid("series", h.study_uid, folder, h.frame_of_reference, geom, h.series_number)
        if not h.sop_instance_uid:
            h.sop_instance_uid = _uid("instance", h.source)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _discover_file(path: Path, base: Path, workdir: Path, out: Discovery, follow_symlinks: bool) -> None:
    source = shown(path)
    try:
        if path.is_symlink():
            target = Path(os.path.realpath(path, strict=True))
            if not follow_symlinks and not target.is_relative_to(base):
                out.problems.append(Problem(source, f"symbolic link to {shown(target)}, outside the export: not "
                                                    "followed (settings discovery.follow_symlinks)"))
                return
        st = path.stat()
    except OSError as exc:
        out.problems.append(Problem(source, f"cannot read file ({_one_line(exc)})"))
        return
    if not stat.S_ISREG(st.st_mode):
        # Opening a named pipe blocks until a writer comes; devices may have side effects.
        out.problems.append(Problem(source, f"{_kind(st.st_mode)}, not a file: skipped"))
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        out.problems.append(Problem(source, f"cannot read file ({_one_line(exc)})"))
        return
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped since the check above
                out.problems.append(Problem(source, f"{_kind(st.st_mode)}, not a file: skipped"))
                return
            head = f.read(132)
        except OSError as exc:
            out.problems.append(Problem(source, f"cannot read file ({_one_line(exc)})"))
            return
        _discover_open(f, head, st, path, source, workdir, out)


def _discover_open(f, head: bytes, st, path: Path, source: str, workdir: Path, out: Discovery) -> None:
    if head[:4] == b"PK\x03\x04":
        if zipfile.is_zipfile(f):
            _scan_zip(str(path), source, workdir, out, depth=1)
        else:  # starts like a zip file but has no central directory at its end: cut short
            out.problems.append(Problem(source, "unreadable zip file (no central directory: truncated, or still "
                                                "being copied?); not read"))
        return
    if path.name.upper() == "DICOMDIR":
        out.dicomdirs.append(source)
        f.seek(0)
        _check_dicomdir(f, source, path.parent, out)
        return
    if not _looks_like_dicom(head):
        if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
            out.problems.append(Problem(source, "not a DICOM file (no DICM marker) despite its extension"))
        else:
            out.ignored.append(source)
        return
    why = size_problem("file", st.st_size)
    if why:
        out.problems.append(Problem(source, why))
        return
    # Size and time miss a file rewritten in place with both kept (rsync -a, cp -p): sample its content too.
    fingerprint = f"file:{st.st_size}:{st.st_mtime_ns}:{content_sample(f, st.st_size)}"
    _parse(f, head, str(path), source, fingerprint, out)
