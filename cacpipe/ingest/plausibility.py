"""Plausibility rules for CT header values and HU data: stated once, each with the reason a user sees.

Assembly applies them to every series before it is scored (``load_series``); a series that breaks
one is refused with ``InputDataError`` (the study fails with that reason, or the next qualifying
series is scored and flagged ``series_fallback``). Nothing implausible is scored silently, and no
value is quietly replaced (a RescaleSlope of 0 is not read as 1). docs/scan.md lists the rules.

Why these limits:

- **Field of view.** CT reconstructs a field of view (DFOV) between about 100 mm (a targeted
  cardiac reconstruction) and about 800 mm (extended-FOV reconstructions on 70-80 cm bore
  scanners). PixelSpacing times the matrix is that field of view, so the pixel spacing must lie
  in ``[MIN_FOV_MM / matrix, MAX_FOV_MM / matrix]``: 0.20-1.56 mm for 512 columns, 0.10-0.78 mm
  for 1024. A spacing outside it is a wrong header (25 mm pixels would make a 1.6 m body).
- **Matrix.** Rows and Columns between ``MIN_MATRIX`` and ``MAX_MATRIX`` (CT uses 256-1024;
  larger values would only make decoding allocate gigabytes).
- **Rescale.** HU = stored x RescaleSlope + RescaleIntercept: the slope must be a finite
  number > 0 (0 erases the image, a negative slope inverts it) and the intercept finite.
- **Orientation.** ImageOrientationPatient holds two unit vectors at right angles (tolerance
  ``ORTHONORMAL_TOLERANCE``); anything else is not a valid slice plane.
- **HU range.** A chest CT holds air or lung (<= ``AIR_HU``) and soft tissue
  (``SOFT_TISSUE_HU``), and almost nothing above ``MAX_HU`` (dense metal, if any, is a few
  voxels). Signed pixel data read as unsigned turns air into +64000, a missing intercept turns it
  into 0: both fail here instead of becoming calcium everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

MIN_FOV_MM = 100.0
MAX_FOV_MM = 800.0
MIN_MATRIX = 16
MAX_MATRIX = 4096
ORTHONORMAL_TOLERANCE = 0.01
MAX_HU = 4000.0
MAX_FRACTION_ABOVE_MAX_HU = 0.01
AIR_HU = -500.0
MIN_FRACTION_AIR = 0.005
SOFT_TISSUE_HU = (-200.0, 300.0)
MIN_FRACTION_SOFT_TISSUE = 0.005


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def matrix_problem(rows, columns) -> str | None:
    """Why an image of ``rows`` x ``columns`` pixels is not a plausible CT slice (None: it is)."""
    for name, v in (("Rows", rows), ("Columns", columns)):
        if v is None or not MIN_MATRIX <= int(v) <= MAX_MATRIX:
            return f"{name} {v} outside {MIN_MATRIX}-{MAX_MATRIX}: not a plausible CT image matrix"
    return None


def pixel_spacing_problem(spacing_rc: Sequence[float] | None, rows: int, columns: int) -> str | None:
    """Why PixelSpacing (row spacing, column spacing; mm) is implausible for this matrix (None: fine)."""
    if spacing_rc is None or len(spacing_rc) != 2:
        return "PixelSpacing missing or not two numbers"
    sr, sc = (float(v) for v in spacing_rc)
    if not (math.isfinite(sr) and math.isfinite(sc)):
        return f"PixelSpacing {_num(sr)} x {_num(sc)} mm is not a finite number"
    if sr <= 0 or sc <= 0:
        return f"PixelSpacing {_num(sr)} x {_num(sc)} mm must be > 0"
    fov = (rows * sr, columns * sc)
    if not all(MIN_FOV_MM <= f <= MAX_FOV_MM for f in fov):
        return (f"PixelSpacing {_num(sr)} x {_num(sc)} mm on a {rows}x{columns} matrix gives a "
                f"{fov[0]:.0f} x {fov[1]:.0f} mm field of view; CT reconstructs {MIN_FOV_MM:g}-{MAX_FOV_MM:g} mm "
                f"(pixel spacing {MIN_FOV_MM / max(rows, columns):.2f}-{MAX_FOV_MM / max(rows, columns):.2f} mm "
                "for this matrix): wrong PixelSpacing?")
    return None


def rescale_problem(slope, intercept) -> str | None:
    """Why RescaleSlope / RescaleIntercept cannot turn stored values into HU (None: they can)."""
    try:
        s, i = float(slope), float(intercept)
    except (TypeError, ValueError):
        return f"RescaleSlope {slope!r} / RescaleIntercept {intercept!r} are not numbers"
    if not math.isfinite(s) or s <= 0:
        return f"RescaleSlope {_num(s)} must be a finite number > 0"
    if not math.isfinite(i):
        return f"RescaleIntercept {_num(i)} must be a finite number"
    return None


def orientation_problem(iop: Sequence[float] | None) -> str | None:
    """Why ImageOrientationPatient is not two orthonormal direction cosines (None: it is)."""
    if iop is None or len(iop) != 6:
        return "ImageOrientationPatient missing or not six numbers"
    v = np.asarray(iop, dtype=float)
    if not np.all(np.isfinite(v)):
        return "ImageOrientationPatient holds non-finite values"
    row, col = v[:3], v[3:]
    nr, nc, dot = float(np.linalg.norm(row)), float(np.linalg.norm(col)), float(row @ col)
    tol = ORTHONORMAL_TOLERANCE
    if abs(nr - 1) > tol or abs(nc - 1) > tol or abs(dot) > tol:
        return (f"ImageOrientationPatient is not two orthonormal directions (|row| {nr:.3f}, |column| {nc:.3f}, "
                f"row.column {dot:.3f}; tolerance {tol:g})")
    return None


def hu_counts(hu: np.ndarray) -> np.ndarray:
    """(voxels, above MAX_HU, air, soft tissue) of rescaled values: what :func:`hu_problem` judges.
    Counts add up, so a volume's are the sum of its slices' (taken while each slice is in cache)."""
    lo, hi = SOFT_TISSUE_HU
    return np.array([hu.size, np.count_nonzero(hu > MAX_HU), np.count_nonzero(hu <= AIR_HU),
                     np.count_nonzero((hu >= lo) & (hu <= hi))], dtype=np.int64)


def hu_problem(hu: np.ndarray, counts: np.ndarray | None = None) -> str | None:
    """Why a stack of rescaled values does not look like a chest CT in HU (None: it does).

    ``hu`` is the rescaled volume before padding is clipped (any shape); ``counts``: its
    :func:`hu_counts`, when already taken.
    """
    n, above, air, tissue = (int(c) for c in (hu_counts(hu) if counts is None else counts))
    if n == 0:
        return "empty image"
    if above > MAX_FRACTION_ABOVE_MAX_HU * n:
        return (f"HU values implausible for CT: {100 * above / n:.1f} % of voxels above +{MAX_HU:g} HU "
                f"(maximum {float(hu.max()):g}): signed pixel data read as unsigned (PixelRepresentation) "
                "or a wrong RescaleSlope/RescaleIntercept?")
    lo, hi = SOFT_TISSUE_HU
    if air < MIN_FRACTION_AIR * n or tissue < MIN_FRACTION_SOFT_TISSUE * n:
        what = "no air or lung" if air < MIN_FRACTION_AIR * n else "no soft tissue"
        return (f"HU values implausible for a chest CT: {what} ({100 * air / n:.2f} % of voxels <= {AIR_HU:g} HU, "
                f"{100 * tissue / n:.2f} % within {lo:g}..{hi:g} HU; values {float(hu.min()):g}..{float(hu.max()):g}): "
                "a wrong RescaleIntercept/RescaleSlope?")
    return None


# --- Is there a heart in the field of view? --------------------------------------------------
# A heart lies between the lungs: in a chest CT most of the located heart's slices show lung on
# both sides of it. An abdomen or neck CT (or a locator that found the liver) does not, and a
# score of 0 there would be read as "no calcium" instead of "not looked at".
FOV_LUNG_HU = -400.0
FOV_MIN_LUNG_MM2 = 1000.0  # lung area each side of the heart, per slice (a lung base cut shows less)
FOV_MIN_SHARE = 0.3  # share of the heart's slices that must have lung on both sides
FOV_MIN_HEART_ML = 20.0


def heart_fov_problem(hu: np.ndarray, heart: np.ndarray | None, spacing_zyx: Sequence[float]) -> str | None:
    """Why the scan does not show a heart (None: it does). Arrays (z, y, x) on one grid.

    ``heart`` is the located heart mask (0/1; None or empty: no heart found). The check asks
    whether the located heart has lung on both sides in at least ``FOV_MIN_SHARE`` of its slices,
    measured in the array's x direction (left and right of the mask's own centre, so it does not
    depend on which way x runs).
    """
    sz, sy, sx = (float(s) for s in spacing_zyx)
    if heart is None or not np.any(heart):
        return "no heart was found in the scanned volume: the field of view does not show the heart"
    m = np.asarray(heart) > 0
    ml = float(m.sum()) * sz * sy * sx / 1000.0
    if ml < FOV_MIN_HEART_ML:
        return f"the located heart is {ml:.0f} mL (< {FOV_MIN_HEART_ML:g} mL): no heart in the field of view"
    zs = np.nonzero(m.any(axis=(1, 2)))[0]
    step = max(1, len(zs) // 40)  # about 40 slices are enough
    both = 0
    checked = 0
    px = sy * sx
    for k in zs[::step]:
        cols = np.nonzero(m[k].any(axis=0))[0]
        if cols.size == 0:
            continue
        checked += 1
        body = np.asarray(hu[k]) > FOV_LUNG_HU
        lung = ndimage.binary_fill_holes(body) & ~body  # air enclosed by the body: lungs (and bowel gas)
        c = int(round(cols.mean()))
        left = float(lung[:, :c].sum()) * px
        right = float(lung[:, c:].sum()) * px
        if left >= FOV_MIN_LUNG_MM2 and right >= FOV_MIN_LUNG_MM2:
            both += 1
    share = both / checked if checked else 0.0
    if share < FOV_MIN_SHARE:
        return (f"the located heart has lung on both sides in {share:.0%} of its slices (a chest CT shows "
                f"lung beside the heart; needs >= {FOV_MIN_SHARE:.0%}): the field of view does not show the heart "
                "(abdomen or neck scan?)")
    return None
