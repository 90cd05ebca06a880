"""The image data a review page carries, encoded for its script.

Two CT volumes, both on the scored series' grid (no resampling, only cropping and block means):

- ``heart``: full resolution over the labelled region plus ``margin_mm`` (the coronary search
  region), exact HU as int16, with the six-class label map and the lesion-id map on the same
  grid. Capped at ``html_max_slices`` slices and ``MAX_DETAIL_VOXELS`` voxels (centred on the
  lesions) so that a page stays small;
- ``scan``: the whole scored series, block means of about ``CONTEXT_MM`` mm, as uint8 codes
  (HU = 8 * code - 1024, so -1024..1016 HU), with a block-max label map for context.

Encoding of each array (decoded by ``static/volumes.js``): little-endian samples, byte planes
split (all low bytes, then all high bytes, which lets deflate find the slowly varying high
bytes: int16 CT shrinks to ~0.95 byte/voxel instead of ~1.2), zlib (``DecompressionStream
('deflate')``), base64. Each volume also carries a 352-byte NIfTI-1 header (RAS affine of its
grid) so that NiiVue can read ``header + samples`` as a .nii file.

Index conventions: arrays are (z, y, x) (NIfTI stores x fastest, which is C order of (z, y, x));
``offset_zyx``/``step_zyx`` map a page voxel (k, j, i) to the scored-series voxel
``offset + step * (k, j, i) + (step - 1) / 2`` (block centre).
"""

from __future__ import annotations

import base64
import logging
import zlib
from dataclasses import dataclass

import numpy as np

from ..config import ReviewSettings
from ..quant.lesions import Lesion, find_lesions
from ..volume import Volume

log = logging.getLogger(__name__)

MAX_DETAIL_VOXELS = 16_000_000  # ~16 MB of int16 before compression (~11 MB in the page)
CONTEXT_MM = 2.0  # block size of the whole-scan context volume
CONTEXT_HU_STEP = 8  # uint8 code -> HU = step * code + CONTEXT_HU_MIN
CONTEXT_HU_MIN = -1024
HU_RANGE = (-1024, 3071)  # 12-bit CT range kept in the int16 heart volume
# deflate level of the page volumes: 3 compresses about twice as fast as 6 for about 4 % more bytes
# (docs/performance.md); the page decodes any level.
ZLIB_LEVEL = 3


@dataclass
class PageVolume:
    """One array for the page with its grid (see the module docstring for offset/step)."""

    name: str
    array: np.ndarray  # (z, y, x)
    offset_zyx: tuple[int, int, int]
    step_zyx: tuple[int, int, int]
    affine_ras: np.ndarray  # 4x4, NIfTI voxel (i, j, k) = (x, y, z) -> RAS mm
    slope: float = 1.0
    inter: float = 0.0

    def encode(self) -> dict:
        a = np.ascontiguousarray(self.array)
        dtype = {np.dtype(np.int16): "int16", np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16"}[a.dtype]
        return {
            "name": self.name, "dtype": dtype, "shape_zyx": list(a.shape),
            "offset_zyx": list(self.offset_zyx), "step_zyx": list(self.step_zyx),
            "slope": self.slope, "inter": self.inter,
            "affine_ras": [[round(float(v), 6) for v in row] for row in self.affine_ras],
            "nifti_header": base64.b64encode(nifti_header(a.shape, a.dtype, self.affine_ras, self.slope,
                                                          self.inter)).decode("ascii"),
            "data": encode_array(a),
        }


def encode_array(a: np.ndarray) -> str:
    """Little-endian samples, byte planes split, zlib, base64 (inverse: volumes.js decodeArray)."""
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    raw = le.view(np.uint8).reshape(-1, le.dtype.itemsize).T.tobytes() if le.dtype.itemsize > 1 else le.tobytes()
    return base64.b64encode(zlib.compress(raw, ZLIB_LEVEL)).decode("ascii")


def decode_array(text: str, dtype, shape) -> np.ndarray:
    """Inverse of :func:`encode_array` (tests and tools)."""
    dt = np.dtype(dtype).newbyteorder("<")
    raw = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8)
    if dt.itemsize > 1:
        raw = raw.reshape(dt.itemsize, -1).T.copy()
    return raw.view(dt).reshape(shape)


def nifti_header(shape_zyx, dtype, affine_ras: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> bytes:
    """A NIfTI-1 header (+4 empty extension bytes = 352) for samples stored right after it."""
    import nibabel as nib

    h = nib.Nifti1Header()
    h.set_data_shape(tuple(int(s) for s in shape_zyx[::-1]))
    h.set_data_dtype(np.dtype(dtype))
    h.set_sform(affine_ras, code=1)
    h.set_qform(affine_ras, code=1)
    h.set_xyzt_units("mm")
    h.set_slope_inter(slope, inter)
    h["vox_offset"] = 352
    out = h.binaryblock + b"\0\0\0\0"
    assert len(out) == 352
    return out


def ras_affine(vol: Volume, offset_zyx, step_zyx) -> np.ndarray:
    """Voxel (x, y, z) of a cropped / block-averaged grid -> RAS mm (NIfTI), from the ITK geometry."""
    d = np.asarray(vol.direction, dtype=float).reshape(3, 3)
    sp = np.array(vol.spacing_zyx[::-1], dtype=float) * np.array(step_zyx[::-1], dtype=float)
    centre = np.asarray(offset_zyx, dtype=float) + (np.asarray(step_zyx, dtype=float) - 1) / 2
    origin_lps = vol.index_to_physical(centre[None, :])[0]
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = lps_to_ras @ d @ np.diag(sp)
    aff[:3, 3] = lps_to_ras @ origin_lps
    return aff


def detail_box(labels: Volume, lesions: list[Lesion], options: ReviewSettings) -> tuple[slice, slice, slice]:
    """The full-resolution region: labelled voxels plus ``margin_mm`` on every side (square in-plane),
    at most ``html_max_slices`` slices and MAX_DETAIL_VOXELS voxels, centred on the lesions.
    Without labels: the central half of the field of view."""
    nz, ny, nx = labels.shape
    sp = labels.spacing_zyx
    if labels.array.any():
        (z0, z1), (y0, y1), (x0, x1) = ((s.start, s.stop) for s in _label_bbox(labels))
        mz = int(np.ceil(options.margin_mm / sp[0]))
        z0, z1 = max(0, z0 - mz), min(nz, z1 + mz)
        half_mm = max((y1 - y0) * sp[1], (x1 - x0) * sp[2]) / 2 + options.margin_mm
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        hy, hx = int(np.ceil(half_mm / sp[1])), int(np.ceil(half_mm / sp[2]))
        y0, y1 = max(0, int(cy) - hy), min(ny, int(cy) + hy)
        x0, x1 = max(0, int(cx) - hx), min(nx, int(cx) + hx)
    else:
        z0, z1 = 0, nz
        y0, y1, x0, x1 = ny // 4, ny - ny // 4, nx // 4, nx - nx // 4
    max_z = max(1, min(options.html_max_slices, MAX_DETAIL_VOXELS // max(1, (y1 - y0) * (x1 - x0))))
    if z1 - z0 > max_z:  # keep the slices around the lesions
        centre = int(np.median([les.best_slice for les in lesions])) if lesions else (z0 + z1) // 2
        start = min(max(z0, centre - max_z // 2), z1 - max_z)
        z0, z1 = start, start + max_z
    return slice(z0, z1), slice(y0, y1), slice(x0, x1)


def context_steps(spacing_zyx) -> tuple[int, int, int]:
    """Block size (z, y, x) of the whole-scan context volume: about CONTEXT_MM per block."""
    return tuple(max(1, int(round(CONTEXT_MM / float(s)))) for s in spacing_zyx)  # type: ignore[return-value]


def block_reduce(a: np.ndarray, step: tuple[int, int, int], how: str) -> np.ndarray:
    """Block mean or max over (step) blocks; the last partial block of each axis is dropped."""
    sz, sy, sx = step
    nz, ny, nx = (a.shape[0] // sz) * sz, (a.shape[1] // sy) * sy, (a.shape[2] // sx) * sx
    out = None
    for dz in range(sz):  # accumulate block by block: no 6-D float copy of a 200 MB scan
        for dy in range(sy):
            for dx in range(sx):
                part = a[dz:nz:sz, dy:ny:sy, dx:nx:sx]
                if how == "mean":
                    out = part.astype(np.float32) if out is None else out + part
                else:
                    out = part.copy() if out is None else np.maximum(out, part)
    if how == "mean":
        out = out / float(sz * sy * sx)
    return out


def context_labels(labels: Volume, step: tuple[int, int, int], shape) -> np.ndarray:
    """Block maxima of the label map on the context grid (calcium ids beat artery ids), computed
    over the labelled box only."""
    out = np.zeros(shape, dtype=np.uint8)
    if not labels.array.any():
        return out
    sub = []
    for b, st, n in zip(_label_bbox(labels), step, shape, strict=True):
        lo, hi = b.start // st, min(n, -(-b.stop // st))
        sub.append((lo, hi, slice(lo * st, hi * st)))
    if any(lo >= hi for lo, hi, _ in sub):
        return out
    part = block_reduce(labels.array[tuple(s for _, _, s in sub)].astype(np.uint8), step, "max")
    out[tuple(slice(lo, lo + m) for (lo, _, _), m in zip(sub, part.shape, strict=True))] = part
    return out


def lesion_map(ct: Volume, labels: Volume, lesions: list[Lesion], box: tuple[slice, ...]) -> np.ndarray:
    """uint16 map of ``box``: i + 1 where lesion ``lesions[i]`` is (the record's lesion order)."""
    lab_box = _label_bbox(labels) if labels.array.any() else box
    inside = all(s.start <= b.start and b.stop <= s.stop for s, b in zip(box, lab_box, strict=True))
    # lesions are found per artery in bounding boxes: a box holding every label gives the same lesions
    # (the page box and the labels' box together, not the whole scan, when the page box is capped)
    sub = box if inside else tuple(slice(min(s.start, b.start), max(s.stop, b.stop))
                                   for s, b in zip(box, lab_box, strict=True))
    found, lmap = find_lesions(ct.array[sub], labels.array[sub], ct.spacing_zyx, with_map=True)
    index = {les.name: i for i, les in enumerate(lesions)}
    remap = np.zeros(len(found) + 1, dtype=np.uint16)
    for j, les in enumerate(found, start=1):
        i = index.get(les.name)
        if i is not None and lesions[i].voxels == les.voxels:
            remap[j] = i + 1
        else:
            log.warning("lesion %s of the label map is not in the study record; it is not clickable", les.name)
    out = remap[lmap]
    return out if inside else out[tuple(slice(s.start - u.start, s.stop - u.start) for s, u in zip(box, sub, strict=True))]


def _label_bbox(labels: Volume) -> tuple[slice, ...]:
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(labels.array.any(axis=other))[0]
        out.append(slice(int(idx.min()), int(idx.max()) + 1))
    return tuple(out)


def page_volumes(ct: Volume, labels: Volume, lesions: list[Lesion], options: ReviewSettings) -> dict:
    """The encoded volumes of one review page: heart (CT, labels, lesion ids) and scan (CT, labels)."""
    box = detail_box(labels, lesions, options)
    off = tuple(int(s.start) for s in box)
    one = (1, 1, 1)
    aff = ras_affine(ct, off, one)
    hu = np.clip(np.rint(ct.array[box]), *HU_RANGE).astype(np.int16)
    lab = labels.array[box].astype(np.uint8)
    lmap = lesion_map(ct, labels, lesions, box)
    lmap = lmap.astype(np.uint8) if len(lesions) < 255 else lmap
    step = context_steps(ct.spacing_zyx)
    mean = block_reduce(ct.array, step, "mean")
    codes = np.clip(np.rint((mean - CONTEXT_HU_MIN) / CONTEXT_HU_STEP), 0, 255).astype(np.uint8)
    ctx_lab = context_labels(labels, step, codes.shape)
    ctx_aff = ras_affine(ct, (0, 0, 0), step)
    return {
        "heart": {
            "ct": PageVolume("heart", hu, off, one, aff).encode(),
            "labels": PageVolume("heart_labels", lab, off, one, aff).encode(),
            "lesions": PageVolume("heart_lesions", lmap, off, one, aff).encode(),
        },
        "scan": {
            "ct": PageVolume("scan", codes, (0, 0, 0), step, ctx_aff, float(CONTEXT_HU_STEP),
                             float(CONTEXT_HU_MIN)).encode(),
            "labels": PageVolume("scan_labels", ctx_lab, (0, 0, 0), step, ctx_aff).encode(),
        },
    }
