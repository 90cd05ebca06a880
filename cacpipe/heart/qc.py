"""Quality checks of stage 1: each finding is a named Flag, never an exception, never a silent zero."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .. import flags as F
from ..flags import Flag
from ..volume import Volume

# Plausible heart volume (whole heart incl. chambers): adults about 400-1200 mL.
MIN_HEART_ML = 150.0
MAX_HEART_ML = 2000.0
# Blood pool HU above which iodine contrast is assumed (non-contrast blood is 30-60 HU).
CONTRAST_HU = 100.0
BLOOD_POOL_EROSION_MM = 8.0


def check_slices(ct: Volume, min_slices: int) -> Flag | None:
    n = ct.shape[0]
    if n < min_slices:
        return Flag(F.FEW_SLICES, f"the series has {n} slices, fewer than {min_slices} (the source study "
                                  f"excluded such scans); the heart may be incompletely covered", "warning")
    return None


def check_heart_mask(mask: Volume, min_ml: float = MIN_HEART_ML, max_ml: float = MAX_HEART_ML) -> list[Flag]:
    """Empty / implausibly small or large heart masks, and hearts that touch the scan edge."""
    from .crop import mask_bbox

    m = np.asarray(mask.array)
    vol_ml = float(np.count_nonzero(m)) * mask.voxel_volume_mm3 / 1000.0
    found = mask_bbox(m)  # the mask's box from its projections
    if found is None:
        return [Flag(F.HEART_EMPTY, "no heart found: the whole scan was passed on uncropped; "
                                    "calcium results are not assessable without review", "invalid")]
    out: list[Flag] = []
    if vol_ml < min_ml:
        out.append(Flag(F.HEART_TOO_SMALL, f"heart mask is {vol_ml:.0f} mL (< {min_ml:.0f} mL): the heart may be "
                                           f"partly outside the scan or missed; check the crop", "warning"))
    elif vol_ml > max_ml:
        out.append(Flag(F.HEART_TOO_LARGE, f"heart mask is {vol_ml:.0f} mL (> {max_ml:.0f} mL): it probably "
                                           f"includes other organs; check the crop", "warning"))
    faces = []
    names = (("inferior/first slice", "superior/last slice"), ("first row", "last row"),
             ("first column", "last column"))
    for ax in range(3):
        if found[0][ax] == 0:
            faces.append(names[ax][0])
        if found[1][ax] == m.shape[ax]:
            faces.append(names[ax][1])
    if faces:
        out.append(Flag(F.HEART_AT_EDGE, f"heart mask touches the scan edge ({', '.join(faces)}): coronary "
                                         f"arteries may lie outside the scanned volume", "warning"))
    return out


def blood_pool_hu(ct: Volume, heart_mask: Volume) -> float | None:
    """Median HU of the heart mask's interior (> 8 mm from its surface: chambers and aortic root, not the wall)."""
    from .crop import mask_bbox

    found = mask_bbox(np.asarray(heart_mask.array))
    if found is None:
        return None
    box = tuple(slice(max(0, lo - 1), hi + 1) for lo, hi in zip(*found, strict=True))
    m = np.asarray(heart_mask.array)[box] > 0
    dist = ndi.distance_transform_edt(m, sampling=ct.spacing_zyx)
    core = dist > BLOOD_POOL_EROSION_MM
    if core.sum() < 50:  # a thin mask: take its deeper half
        core = dist >= dist.max() / 2.0
    return float(np.median(np.asarray(ct.array)[box][core]))


def detect_contrast(ct: Volume, heart_mask: Volume | None) -> Flag | None:
    """Flag ``contrast_suspected`` when the cardiac blood pool is brighter than ~100 HU.

    With no mask, the weights-free fallback locator finds the heart first. Returns None for a
    non-contrast scan or when no heart is found (the empty-mask flag covers that case).
    """
    if heart_mask is None:
        from .fallback import locate_heart

        heart_mask = locate_heart(ct).mask
    return contrast_flag(blood_pool_hu(ct, heart_mask))


def contrast_flag(blood_pool: float | None) -> Flag | None:
    """``contrast_suspected`` for a cardiac blood pool median (HU, :func:`blood_pool_hu`) above ~100 HU."""
    hu = blood_pool
    if hu is None or hu <= CONTRAST_HU:
        return None
    return Flag(F.CONTRAST_SUSPECTED, f"cardiac blood pool median {hu:.0f} HU (> {CONTRAST_HU:.0f} HU): iodine "
                                      f"contrast suspected; Agatston scores are not valid on contrast scans",
                "invalid")
