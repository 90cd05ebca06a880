"""Vectorised calcium scores: Agatston, volume, lesion count, peak HU and mass, per artery.

The convention is the project's one (docs/ARCHITECTURE.md, "Agatston convention"):

- calcium voxel: HU >= 130 inside the artery's calcium label (ids 4-6 of ``cacpipe.labels``);
- Agatston: per axial slice, 2D 8-connected components; a component counts when its area is
  >= 1 mm^2; it is weighted by its peak HU (130-199: 1, 200-299: 2, 300-399: 3, >= 400: 4);
  score = sum(area_mm2 * weight) * (slice spacing / 3 mm), slice spacing = ``spacing_zyx[0]``
  (the spacing of slice positions, which the ingest step derives from the positions, not
  from the SliceThickness tag);
- lesions: 3D 26-connected components of calcium voxels;
- volume: calcium voxels * voxel volume; mass: calibration factor * sum over calcium voxels
  of (voxel volume in mL * HU), i.e. factor * volume * mean HU.

Why it is fast: one ``ndimage.label`` call per artery over the bounding box of that artery's
calcium, with a structuring element that has no z connectivity, yields every per-slice 2D
component at once (scipy numbers them slice by slice in raster order, the same order the
per-slice reference loop visits them, so even the floating-point sum agrees bit for bit);
areas and peaks then come from ``bincount`` / ``maximum.at`` over the few calcium voxels.
The bounding boxes come from one ``ndimage.find_objects`` pass over the label map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import GeometryError, InputDataError
from ..labels import ARTERIES, CALCIUM_ID
from ..morph import label_objects
from ..units import AGATSTON_REFERENCE_SLICE_MM, CALCIUM_THRESHOLD_HU, MM3_PER_ML

MIN_LESION_AREA_MM2 = 1.0
"""Smallest 2D component (mm^2) that counts towards Agatston."""

# 8-connected within the slice, nothing across slices: per-slice 2D components in one call.
SLICE_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
SLICE_STRUCTURE[1] = True
LESION_STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # 26-connected lesions


def density_weights(peak_hu: np.ndarray) -> np.ndarray:
    """Agatston density weight (0-4) of each peak HU value (vectorised)."""
    p = np.asarray(peak_hu, dtype=float)
    return (
        (p >= CALCIUM_THRESHOLD_HU).astype(np.int64)
        + (p >= 200)
        + (p >= 300)
        + (p >= 400)
    )


@dataclass(frozen=True)
class CalciumStats:
    """Scores of the calcium inside one mask."""

    agatston: float
    voxels: int
    volume_mm3: float
    lesions: int
    peak_hu: float | None  # None when there is no calcium voxel
    sum_hu: float  # sum of HU over calcium voxels (for the mass score)

    @property
    def volume_ml(self) -> float:
        return self.volume_mm3 / MM3_PER_ML

    def mass_mg(self, calibration_factor: float | None, spacing_zyx: Sequence[float]) -> float | None:
        """Mass score in mg: factor [mg / (mL * HU)] * voxel volume [mL] * sum of HU."""
        if calibration_factor is None:
            return None
        vox_ml = float(np.prod([float(s) for s in spacing_zyx])) / MM3_PER_ML
        return float(calibration_factor) * vox_ml * self.sum_hu


def _check_spacing(spacing_zyx: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing_zyx)
    if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
        raise GeometryError(f"spacing_zyx must be three positive mm values, got {spacing_zyx!r}")
    return sp  # type: ignore[return-value]


def calcium_stats(hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float]) -> CalciumStats:
    """Agatston, volume, lesions, peak and HU sum of the calcium (HU >= 130) inside ``mask``.

    ``hu`` and ``mask`` are (z, y, x) arrays of the same shape; pass a cropped box for speed
    (results do not depend on the crop as long as it contains the whole mask).
    """
    dz, dy, dx = _check_spacing(spacing_zyx)
    if hu.shape != mask.shape:
        raise GeometryError(f"CT shape {hu.shape} and mask shape {mask.shape} differ")
    calc = mask.astype(bool, copy=False) & (hu >= CALCIUM_THRESHOLD_HU)
    n_vox = int(np.count_nonzero(calc))
    if n_vox == 0:
        return CalciumStats(0.0, 0, 0.0, 0, None, 0.0)
    hu_vals = hu[calc]
    comp, n = ndimage.label(calc, structure=SLICE_STRUCTURE)
    ids = comp[calc]
    counts = np.bincount(ids, minlength=n + 1)[1:]
    peaks = np.full(n + 1, -np.inf)
    np.maximum.at(peaks, ids, hu_vals.astype(float))
    areas = counts.astype(np.float64) * (dy * dx)
    keep = areas >= MIN_LESION_AREA_MM2
    contrib = areas[keep] * density_weights(peaks[1:][keep])
    # Sequential sum in the reference's visiting order (slice, then raster): bit-identical.
    total = float(np.cumsum(contrib)[-1]) if contrib.size else 0.0
    agatston = total * dz / AGATSTON_REFERENCE_SLICE_MM
    _, n_lesions = ndimage.label(calc, structure=LESION_STRUCTURE)
    return CalciumStats(
        agatston=agatston,
        voxels=n_vox,
        volume_mm3=n_vox * (dz * dy * dx),
        lesions=int(n_lesions),
        peak_hu=float(hu_vals.max()),
        sum_hu=float(hu_vals.sum(dtype=np.float64)),
    )


def _as_label_array(labels: np.ndarray) -> np.ndarray:
    """The six-class map as an integer array, checked to hold only ids 0-6 (a few cheap passes)."""
    lab = np.asarray(labels)
    if lab.dtype == bool:
        return lab.view(np.uint8)
    if lab.dtype.kind not in "iuf":
        raise InputDataError(f"label map has dtype {lab.dtype}; expected integer class ids 0-6")
    if lab.size:
        lo, hi = lab.min(), lab.max()
        if lo < 0 or hi > 6:
            raise InputDataError(f"label map holds values {lo}..{hi}; expected the six-class ids 0-6 "
                                 "(cacpipe.labels) - is this a probability map or another label scheme?")
    if lab.dtype.kind == "f":
        as_int = lab.astype(np.uint8)
        if not np.array_equal(as_int, lab):
            raise InputDataError("label map holds non-integer values; expected the six-class ids 0-6")
        lab = as_int
    return lab


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...] | None]:
    """Bounding box (tuple of slices) of each class id 1-6 in one pass; None when absent."""
    lab = _as_label_array(labels)
    objs = label_objects(lab, max_label=6)
    return {i + 1: objs[i] for i in range(6)}


def calcium_stats_by_artery(
    hu: np.ndarray,
    calcium: np.ndarray | Mapping[str, np.ndarray],
    spacing_zyx: Sequence[float],
    boxes: Mapping[int, tuple[slice, ...] | None] | None = None,
) -> dict[str, CalciumStats]:
    """Per-artery :class:`CalciumStats`.

    ``calcium`` is either the six-class label map (calcium ids 4-6 are used) or a mapping
    artery -> boolean calcium mask (full-size arrays).
    """
    hu = np.asarray(hu)
    out: dict[str, CalciumStats] = {}
    if isinstance(calcium, Mapping):
        for artery, mask in calcium.items():
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != hu.shape:
                raise GeometryError(f"{artery} mask shape {mask.shape} differs from CT shape {hu.shape}")
            box = ndimage.find_objects(mask.view(np.uint8), max_label=1)[0]
            out[artery] = (
                calcium_stats(hu[box], mask[box], spacing_zyx) if box is not None
                else CalciumStats(0.0, 0, 0.0, 0, None, 0.0)
            )
        return out
    lab = _as_label_array(calcium)
    if lab.shape != hu.shape:
        raise GeometryError(f"label map shape {lab.shape} differs from CT shape {hu.shape}")
    if boxes is None:
        boxes = label_boxes(lab)
    for artery in ARTERIES:
        cid = CALCIUM_ID[artery]
        box = boxes.get(cid)
        if box is None:
            out[artery] = CalciumStats(0.0, 0, 0.0, 0, None, 0.0)
        else:
            out[artery] = calcium_stats(hu[box], lab[box] == cid, spacing_zyx)
    return out


def agatston_scores(
    hu: np.ndarray,
    calcium: np.ndarray | Mapping[str, np.ndarray],
    spacing_zyx: Sequence[float],
) -> dict[str, float]:
    """Agatston score per artery (and ``"total"``) from the label map or per-artery masks."""
    stats = calcium_stats_by_artery(hu, calcium, spacing_zyx)
    scores = {a: s.agatston for a, s in stats.items()}
    scores["total"] = float(sum(scores.values()))
    return scores
