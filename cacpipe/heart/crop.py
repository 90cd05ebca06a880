"""Heart bounding-box crop on the resampled grid, its JSON record, and the exact way back.

Grids: the *original* grid is the input CT's. The *resampled* grid has the target spacing, the
same origin and direction (see resample.py). The crop is a box ``[bbox_lo, bbox_hi)`` of
resampled-grid voxel indices (z, y, x); the *cropped* grid is that box, so its origin is the
physical position of resampled voxel ``bbox_lo``.

:func:`apply_crop` resamples any image or label map on the original grid straight onto the
cropped grid (one interpolation). :func:`uncrop_labels` maps a label map on the cropped grid
back onto the original grid by nearest neighbour, zero outside the box. When the target spacing
is no coarser than the original spacing, crop -> uncrop returns every label voxel inside the box
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InputDataError
from ..jsonfile import read_json, write_json
from ..volume import Volume
from .resample import resample_to_grid, resampled_shape

SCHEMA = "cacpipe.crop/1"


@dataclass
class CropRecord:
    """Everything needed to crop like the CT was cropped, and to go back to the CT's grid."""

    original_shape_zyx: tuple[int, int, int]
    original_spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...]
    target_spacing_zyx: tuple[float, float, float]
    resampled_shape_zyx: tuple[int, int, int]
    bbox_lo_zyx: tuple[int, int, int]  # inclusive, resampled-grid voxel index
    bbox_hi_zyx: tuple[int, int, int]  # exclusive
    padding_voxels_zyx: tuple[int, int, int] = (0, 10, 10)
    method: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.original_shape_zyx = tuple(int(v) for v in self.original_shape_zyx)  # type: ignore[assignment]
        self.original_spacing_zyx = tuple(float(v) for v in self.original_spacing_zyx)  # type: ignore[assignment]
        self.origin_xyz = tuple(float(v) for v in self.origin_xyz)  # type: ignore[assignment]
        self.direction = tuple(float(v) for v in self.direction)
        self.target_spacing_zyx = tuple(float(v) for v in self.target_spacing_zyx)  # type: ignore[assignment]
        self.resampled_shape_zyx = tuple(int(v) for v in self.resampled_shape_zyx)  # type: ignore[assignment]
        self.bbox_lo_zyx = tuple(int(v) for v in self.bbox_lo_zyx)  # type: ignore[assignment]
        self.bbox_hi_zyx = tuple(int(v) for v in self.bbox_hi_zyx)  # type: ignore[assignment]
        self.padding_voxels_zyx = tuple(int(v) for v in self.padding_voxels_zyx)  # type: ignore[assignment]
        if any(lo < 0 or hi > n or hi <= lo for lo, hi, n in
               zip(self.bbox_lo_zyx, self.bbox_hi_zyx, self.resampled_shape_zyx, strict=True)):
            raise GeometryError(f"crop box {self.bbox_lo_zyx}..{self.bbox_hi_zyx} is empty or outside the "
                                f"resampled grid {self.resampled_shape_zyx}")

    # --- derived geometry -------------------------------------------------------------
    @property
    def cropped_shape_zyx(self) -> tuple[int, int, int]:
        return tuple(h - lo for lo, h in zip(self.bbox_lo_zyx, self.bbox_hi_zyx, strict=True))  # type: ignore[return-value]

    @property
    def cropped_origin_xyz(self) -> tuple[float, float, float]:
        d = np.asarray(self.direction).reshape(3, 3)
        step = np.asarray(self.bbox_lo_zyx[::-1], float) * np.asarray(self.target_spacing_zyx[::-1])
        return tuple(float(v) for v in np.asarray(self.origin_xyz) + d @ step)  # type: ignore[return-value]

    def original_grid(self):
        return (self.original_shape_zyx, self.original_spacing_zyx, self.origin_xyz, self.direction)

    def cropped_grid(self):
        return (self.cropped_shape_zyx, self.target_spacing_zyx, self.cropped_origin_xyz, self.direction)

    def matches(self, vol: Volume, tol: float = 1e-3) -> bool:
        """True when ``vol`` lies on this record's original grid."""
        return (vol.shape == self.original_shape_zyx
                and np.allclose(vol.spacing_zyx, self.original_spacing_zyx, atol=tol)
                and np.allclose(vol.origin_xyz, self.origin_xyz, atol=tol)
                and np.allclose(vol.direction, self.direction, atol=tol))

    # --- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        d = asdict(self)
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        d["cropped_shape_zyx"] = list(self.cropped_shape_zyx)
        d["cropped_origin_xyz"] = list(self.cropped_origin_xyz)
        return {"schema": SCHEMA, **d}

    @classmethod
    def from_json(cls, d: dict) -> CropRecord:
        if d.get("schema") != SCHEMA:
            raise InputDataError(f"not a cacpipe crop record (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        keys = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in d.items() if k in keys})
        except TypeError as exc:
            raise InputDataError(f"crop record is missing fields: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> CropRecord:
        return cls.from_json(read_json(path, "crop record"))


def mask_bbox(mask: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """Inclusive-exclusive (lo, hi) index box of the nonzero voxels, or None when empty.

    From the mask's projections (its slices that hold any voxel, then rows and columns inside
    them): no index list of every voxel, which on a 512 x 512 x 550 heart mask took a second."""
    m = np.asarray(mask)
    zs = np.flatnonzero(m.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    sub = m[zs[0]:zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return (int(zs[0]), int(ys[0]), int(xs[0])), (int(zs[-1]) + 1, int(ys[-1]) + 1, int(xs[-1]) + 1)


def make_record(ct: Volume, heart_mask: Volume | None, target_spacing_zyx: Sequence[float],
                padding_voxels_zyx: Sequence[int], extra_margin_mm: float = 0.0, method: str = "") -> CropRecord:
    """Crop record for ``ct`` around ``heart_mask`` (on the CT grid).

    The mask's box is mapped to the resampled grid (outward), widened by ``extra_margin_mm``
    (mm) and then by ``padding_voxels_zyx`` (resampled voxels), and clipped to the grid.
    An empty or missing mask gives the whole resampled grid.
    """
    target = tuple(float(t) for t in target_spacing_zyx)
    rshape = resampled_shape(ct.shape, ct.spacing_zyx, target)
    box = mask_bbox(heart_mask.array) if heart_mask is not None else None
    if box is None:
        lo, hi = (0, 0, 0), rshape
    else:
        lo_l, hi_l = [], []
        for ax in range(3):
            f = ct.spacing_zyx[ax] / target[ax]
            m = extra_margin_mm / target[ax]
            a = int(np.floor(box[0][ax] * f - m)) - int(padding_voxels_zyx[ax])
            b = int(np.ceil((box[1][ax] - 1) * f + m)) + 1 + int(padding_voxels_zyx[ax])
            lo_l.append(max(0, a))
            hi_l.append(min(rshape[ax], max(b, max(0, a) + 1)))
        lo, hi = tuple(lo_l), tuple(hi_l)
    return CropRecord(ct.shape, ct.spacing_zyx, ct.origin_xyz, ct.direction, target, rshape, lo, hi,
                      tuple(int(p) for p in padding_voxels_zyx), method)  # type: ignore[arg-type]


def apply_crop(vol: Volume, record: CropRecord, is_label: bool) -> Volume:
    """Resample + crop an image or label map of the original grid exactly as the CT was.

    Labels: nearest neighbour, dtype kept. Images: linear, float32.
    """
    if not record.matches(vol):
        raise GeometryError(
            f"volume grid (shape {vol.shape}, spacing {vol.spacing_zyx}, origin {vol.origin_xyz}) does not "
            f"match the crop record's original grid (shape {record.original_shape_zyx}, spacing "
            f"{record.original_spacing_zyx}, origin {record.origin_xyz}); crop the volume it was made for")
    return resample_to_grid(vol, record.cropped_grid(), is_label)


def original_box(record: CropRecord, margin_mm: float = 0.0) -> tuple[slice, slice, slice]:
    """The crop box on the ORIGINAL grid (z, y, x index slices), widened by ``margin_mm`` and clipped.

    Every original voxel whose nearest resampled voxel lies in the crop box is inside (one voxel
    to spare each side), so :func:`uncrop_labels` puts no label outside it, and the heart mask the
    box was made from lies inside it too."""
    out = []
    for lo, hi, s, t, n in zip(record.bbox_lo_zyx, record.bbox_hi_zyx, record.original_spacing_zyx,
                               record.target_spacing_zyx, record.original_shape_zyx, strict=True):
        m = int(np.ceil(margin_mm / s))
        a = int(np.floor((lo - 0.5) * t / s)) - 1 - m
        b = int(np.ceil((hi - 0.5) * t / s)) + 2 + m
        out.append(slice(max(0, a), min(n, b)))
    return tuple(out)  # type: ignore[return-value]


def uncrop_labels(labels_cropped: Volume, record: CropRecord, z_stop: int | None = None,
                  stop_zyx: tuple[int, int, int] | None = None) -> Volume:
    """A label map on the cropped grid back onto the original CT grid (nearest neighbour).

    The result has exactly the original shape, spacing, origin and direction; voxels outside
    the crop box are 0. Only the shape of ``labels_cropped`` is checked: its geometry is taken
    from the record, so label maps written by tools that drop geometry still come back right.

    ``z_stop``: only the original slices ``[0, z_stop)`` (same origin, so every voxel is the one
    the whole grid has: the same sample points, bit for bit); with ``z_stop >=
    original_box(record)[0].stop`` the slices left out hold no label.
    ``stop_zyx``: likewise in all three axes, the original voxels ``[0, stop)`` per axis (same origin,
    same sample points: the far corner only is moved in; with ``stop >= original_box(record)[i].stop``
    what is left out holds no label). Resampling only there costs a fraction of the whole grid.
    """
    if labels_cropped.shape != record.cropped_shape_zyx:
        raise GeometryError(f"label map shape {labels_cropped.shape} does not match the crop record's cropped "
                            f"shape {record.cropped_shape_zyx}; was it predicted on this crop?")
    src = Volume(np.asarray(labels_cropped.array), record.target_spacing_zyx, record.cropped_origin_xyz,
                 record.direction, meta=dict(labels_cropped.meta))
    shape, spacing, origin, direction = record.original_grid()
    if z_stop is not None:
        shape = (max(1, min(int(z_stop), shape[0])), shape[1], shape[2])
    if stop_zyx is not None:
        shape = tuple(max(1, min(int(b), n)) for b, n in zip(stop_zyx, shape, strict=True))  # type: ignore[assignment]
    out = resample_to_grid(src, (shape, spacing, origin, direction), is_label=True, default=0)
    # Write the record's geometry verbatim (no float round trip through SimpleITK).
    return Volume(out.array, record.original_spacing_zyx, record.origin_xyz, record.direction, meta=out.meta)
