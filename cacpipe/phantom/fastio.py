"""Fast writers for phantom studies: one DICOM series from a pre-encoded template, parallel-gzip NIfTI.

gzip members are compressed by ISA-L (the ``isal`` package, several times faster than zlib at the
same level and ratio on CT noise) when it is installed, else by zlib; both write standard gzip.

Writing a 400-slice series with a fresh pydicom dataset per file costs seconds; here the
elements every file shares are encoded once (by pydicom, explicit VR little endian) and each
file is that template with its own SOP instance UID, instance number, position and pixel data
spliced in, in tag order. The bytes equal what ``Dataset.save_as`` writes for the same dataset
(checked by tests/test_phantom_v2.py).
"""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag

# Per-file elements, in tag order; everything else comes from the template.
_SOP = Tag(0x0008, 0x0018)
_INSTANCE = Tag(0x0020, 0x0013)
_POSITION = Tag(0x0020, 0x0032)
_LOCATION = Tag(0x0020, 0x1041)
_PIXELS = Tag(0x7FE0, 0x0010)
_SPLITS = (_SOP, _INSTANCE, _POSITION, _LOCATION, _PIXELS)
_GROUP_LENGTH = Tag(0x0002, 0x0000)
try:  # ISA-L deflate: same gzip format, about 4x zlib's speed at level 1 (docs/phantom.md, Speed)
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps the writer working without it
    _isal_zlib = None
_META_SOP = Tag(0x0002, 0x0003)


def _encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


def _short(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


def _text(s: str, pad: bytes = b" ") -> bytes:
    b = s.encode("ascii")
    return b + pad if len(b) % 2 else b


class SeriesTemplate:
    """Encodes one series' files fast: the shared elements once, the varying ones per file."""

    def __init__(self, ds: Dataset, meta: Dataset):
        # Chunks of the shared elements between the per-file tags.
        chunks: list[Dataset] = [Dataset() for _ in range(len(_SPLITS))]
        for elem in ds:
            if elem.tag in _SPLITS:
                continue
            i = sum(1 for t in _SPLITS if elem.tag > t)
            chunks[i].add(elem)
        self.chunks = [_encode(c) for c in chunks]
        # File meta: let pydicom complete it once (version, implementation UID and name), then
        # keep the elements before and after the SOP instance UID; the group length is recomputed.
        full = Dataset()
        full.update(meta)
        full.MediaStorageSOPInstanceUID = "1.2"
        write_file_meta_info(DicomBytesIO(), full, enforce_standard=True)
        before, after = Dataset(), Dataset()
        for elem in full:
            if elem.tag in (_GROUP_LENGTH, _META_SOP):
                continue
            (before if elem.tag < _META_SOP else after).add(elem)
        self.meta_before, self.meta_after = _encode(before), _encode(after)

    def file_bytes(self, sop_uid: str, instance: int, position: tuple[str, str, str], location: str,
                   pixels: bytes) -> bytes:
        meta_sop = _short(_META_SOP, b"UI", _text(sop_uid, b"\0"))
        group = len(self.meta_before) + len(meta_sop) + len(self.meta_after)
        parts = [b"\0" * 128, b"DICM", _short(_GROUP_LENGTH, b"UL", struct.pack("<I", group)), self.meta_before,
                 meta_sop, self.meta_after, self.chunks[0],
                 _short(_SOP, b"UI", _text(sop_uid, b"\0")), self.chunks[1],
                 _short(_INSTANCE, b"IS", _text(str(instance))), self.chunks[2],
                 _short(_POSITION, b"DS", _text("\\".join(position))), self.chunks[3],
                 _short(_LOCATION, b"DS", _text(location)), self.chunks[4],
                 struct.pack("<HH", 0x7FE0, 0x0010) + b"OW\0\0" + struct.pack("<I", len(pixels)), pixels]
        return b"".join(parts)


def write_files(paths_and_bytes, threads: int = 2) -> None:
    """Write (path, bytes) pairs; file writes release the GIL, so two threads overlap them."""
    def write(pb):
        p, b = pb
        with open(p, "wb") as f:
            f.write(b)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(write, paths_and_bytes))


def gzip_backend(prefer_isal: bool = True):
    """The deflate module the gzip writer uses: ``isal.isal_zlib`` when installed (and preferred), else ``zlib``."""
    return _isal_zlib if prefer_isal and _isal_zlib is not None else zlib


def gzip_parallel(parts, out: Path, level: int = 1, chunk: int = 16 << 20, threads: int = 2,
                  backend=None) -> None:
    """Write the concatenated ``parts`` (bytes-like) as a multi-member gzip file, members compressed in parallel.

    Readers (zlib, Python's gzip, ITK, nibabel) treat consecutive members as one stream.
    ``backend``: a zlib-like module (default :func:`gzip_backend`); ISA-L levels are 0-3, so
    higher levels are capped there.
    """
    mod = backend or gzip_backend()
    if mod is _isal_zlib and mod is not None:
        level = min(level, 3)
    pieces = []
    for p in parts:
        mv = memoryview(p).cast("B")
        pieces += [mv[i:i + chunk] for i in range(0, len(mv), chunk)]

    def member(data) -> bytes:
        c = mod.compressobj(level, mod.DEFLATED, 31)  # 31: gzip header and trailer
        return c.compress(data) + c.flush()

    with ThreadPoolExecutor(threads) as ex:
        members = list(ex.map(member, pieces or [b""]))
    with open(out, "wb") as f:
        for m in members:
            f.write(m)


def nifti_header(volume) -> bytes:
    """NIfTI-1 header (348 bytes + empty extension) of a Volume, geometry as SimpleITK writes it."""
    import nibabel as nib

    d = np.asarray(volume.direction, float).reshape(3, 3)
    sp = np.asarray(volume.spacing_zyx[::-1], float)
    lps = np.eye(4)
    lps[:3, :3] = d * sp[None, :]
    lps[:3, 3] = volume.origin_xyz
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # NIfTI is RAS, ITK is LPS
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(volume.array.dtype)
    hdr.set_data_shape(volume.shape[::-1])
    hdr.set_zooms(tuple(sp))
    hdr.set_qform(ras, code=1)
    hdr.set_sform(ras, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\0\0\0\0"


def write_nifti(volume, path: str | Path, level: int = 1, backend=None) -> Path:
    """Write a Volume as NIfTI-1 (``.nii.gz``: gzip members compressed in parallel at a fast level).

    ``backend``: the deflate module (see :func:`gzip_parallel`); the default is ISA-L when installed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = memoryview(np.ascontiguousarray(volume.array)).cast("B")  # x fastest, as NIfTI stores it
    if not str(path).endswith(".gz"):
        with open(path, "wb") as f:
            f.write(nifti_header(volume))
            f.write(data)
        return path
    gzip_parallel([nifti_header(volume), data], path, level=level, backend=backend)
    return path


def hu_to_stored(hu: np.ndarray) -> np.ndarray:
    """HU -> unsigned stored values (HU + 1024, clipped to 0..65535), little endian uint16."""
    if hu.dtype == np.int16 and hu.size and int(hu.min()) >= -1024:
        return (hu.view(np.uint16) + np.uint16(1024)).astype("<u2", copy=False)  # exact: no wrap-around
    return np.clip(hu.astype(np.int32) + 1024, 0, 65535).astype("<u2")
