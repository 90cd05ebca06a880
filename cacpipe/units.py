"""Units and array conventions, stated once.

- Lengths in mm, volumes in mm^3 (mL = mm^3 / 1000), intensities in Hounsfield units (HU).
- Voxel arrays are indexed (z, y, x): z = slice (inferior -> superior after sorting), y = row,
  x = column. Spacing tuples in this package are (z, y, x) in mm unless a name says _xyz.
- SimpleITK / ITK / DICOM use (x, y, z) for spacing, origin and index; volume.py converts.
- Patient coordinates are DICOM LPS (x to patient left, y to posterior, z to head).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MM3_PER_ML = 1000.0
CALCIUM_THRESHOLD_HU = 130.0
AGATSTON_REFERENCE_SLICE_MM = 3.0

# Training spacing of the source paper, (z, y, x) mm.
PAPER_SPACING_ZYX: tuple[float, float, float] = (0.8, 0.73, 0.73)


def voxel_volume_mm3(spacing_zyx: Sequence[float]) -> float:
    """Volume of one voxel in mm^3."""
    return float(math.prod(float(s) for s in spacing_zyx))


def mm3_to_ml(v: float) -> float:
    return float(v) / MM3_PER_ML


def zyx_to_xyz(t: Sequence[float]) -> tuple[float, float, float]:
    """Reverse a (z, y, x) tuple to ITK's (x, y, z) order (and back: it is its own inverse)."""
    return (float(t[2]), float(t[1]), float(t[0]))


xyz_to_zyx = zyx_to_xyz
