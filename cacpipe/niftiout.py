"""Fast ``.nii.gz`` writing for the study outputs: one NIfTI-1 file, compressed in parallel.

SimpleITK compresses a NIfTI file in one thread at zlib's default level: on a 512 x 512 x 550
CT (288 MB of int16) that is several seconds, the largest cost of writing a study's outputs
(docs/performance.md). Here the voxels are cut into chunks that are deflated at level 1 in a few
threads (zlib releases the GIL) and written as consecutive gzip members. A file of several gzip
members is one valid gzip file (RFC 1952): gzip, zlib's ``gzread`` (ITK, SimpleITK, dcm2niix,
3D Slicer, ITK-SNAP) and Python's ``gzip`` (nibabel) read it as one stream.

The header carries the volume's geometry the way ITK writes it: the RAS affine (ITK's LPS
geometry with x and y negated) as both qform and sform (code 1, scanner), millimetres, voxel
offset 352. Arrays are (z, y, x) in C order, which is NIfTI's x-fastest order.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .volume import Volume

LEVEL = 1  # zlib level: about 3x faster than the default (6) for a few % more bytes on CT (docs/performance.md)
CHUNK_BYTES = 8 << 20  # per gzip member: enough to keep the ratio, small enough to share between threads
_DTYPES = (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64)


def ras_affine(vol: Volume) -> np.ndarray:
    """4x4 affine, NIfTI voxel (i, j, k) = (x, y, z) -> RAS mm, from the volume's ITK (LPS) geometry."""
    d = np.asarray(vol.direction, dtype=float).reshape(3, 3)
    sp = np.asarray(vol.spacing_zyx[::-1], dtype=float)
    flip = np.diag([-1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = flip @ d @ np.diag(sp)
    aff[:3, 3] = flip @ np.asarray(vol.origin_xyz, dtype=float)
    return aff


def nifti_header(vol: Volume, dtype: np.dtype) -> bytes:
    """The 348-byte NIfTI-1 header plus the 4-byte empty extension flag (352 bytes)."""
    import nibabel as nib

    h = nib.Nifti1Header()
    h.set_data_shape(tuple(int(s) for s in vol.shape[::-1]))
    h.set_data_dtype(dtype)
    aff = ras_affine(vol)
    h.set_qform(aff, code=1)
    h.set_sform(aff, code=1)
    h.set_xyzt_units("mm")
    h["vox_offset"] = 352
    out = h.binaryblock + b"\0\0\0\0"
    assert len(out) == 352
    return out


def _member(data: memoryview, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member (header + deflate + CRC)
    return c.compress(data) + c.flush()


def write_nifti_gz(vol: Volume, path: str | Path, level: int = LEVEL, threads: int | None = None) -> Path:
    """Write ``vol`` as ``path`` (.nii.gz), deflated at ``level`` in ``threads`` threads (default: the CPUs,
    at most 4). Reads back identically with :meth:`cacpipe.volume.Volume.read`."""
    path = Path(path)
    if not str(path).endswith(".nii.gz"):
        raise ValueError(f"write_nifti_gz writes .nii.gz files, not {path.name}")
    a = np.asarray(vol.array)
    if a.dtype == bool:
        a = a.view(np.uint8)
    if a.dtype.type not in _DTYPES:
        raise ValueError(f"cannot write dtype {a.dtype} as NIfTI here")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    raw = memoryview(a.reshape(-1).view(np.uint8))
    parts = [memoryview(nifti_header(vol, a.dtype))]
    parts += [raw[i:i + CHUNK_BYTES] for i in range(0, len(raw), CHUNK_BYTES)]
    # The header rides in the first member (352 bytes: not worth a member of its own).
    if len(parts) > 1:
        parts = [memoryview(bytes(parts[0]) + bytes(parts[1])), *parts[2:]]
    n = threads or min(4, os.cpu_count() or 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if n <= 1 or len(parts) == 1:
            for p in parts:
                f.write(_member(p, level))
        else:
            with ThreadPoolExecutor(n) as pool:
                for blob in pool.map(lambda p: _member(p, level), parts):
                    f.write(blob)
    return path
