"""Resampling between grids that share origin and direction (SimpleITK).

A grid here is (shape_zyx, spacing_zyx, origin_xyz, direction). Resampling to a target spacing
keeps the origin (centre of voxel 0) and direction and sets the size to
``max(1, round(n * s / t))`` per axis, so the resampled grid covers the same extent as the
original one to within half a target voxel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from ..units import zyx_to_xyz
from ..volume import Volume

Grid = tuple[tuple[int, int, int], tuple[float, float, float], tuple[float, float, float], tuple[float, ...]]


def resampled_shape(shape_zyx: Sequence[int], spacing_zyx: Sequence[float],
                    target_zyx: Sequence[float]) -> tuple[int, int, int]:
    """Shape of the grid with spacing ``target_zyx`` covering the same extent."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx, target_zyx, strict=True))  # type: ignore[return-value]


def grid_of(vol: Volume) -> Grid:
    return (vol.shape, vol.spacing_zyx, vol.origin_xyz, vol.direction)


def resample_to_grid(vol: Volume, grid: Grid, is_label: bool, default: float | None = None) -> Volume:
    """Resample ``vol`` onto ``grid`` (nearest neighbour for labels, linear for images).

    Labels keep their dtype; images come back as float32. Points outside ``vol`` get ``default``
    (0 for labels; for images the minimum of ``vol``, i.e. air for CT).
    """
    shape, spacing, origin, direction = grid
    src = vol.to_sitk()
    if default is None:
        default = 0.0 if is_label else float(np.min(vol.array)) if vol.array.size else 0.0
    f = sitk.ResampleImageFilter()
    f.SetSize([int(s) for s in reversed(shape)])
    f.SetOutputSpacing(zyx_to_xyz(spacing))
    f.SetOutputOrigin(tuple(float(o) for o in origin))
    f.SetOutputDirection(tuple(float(d) for d in direction))
    f.SetTransform(sitk.Transform())
    f.SetDefaultPixelValue(float(default))
    if is_label:
        f.SetInterpolator(sitk.sitkNearestNeighbor)
        f.SetOutputPixelType(src.GetPixelID())
    else:
        f.SetInterpolator(sitk.sitkLinear)
        f.SetOutputPixelType(sitk.sitkFloat32)
    out = Volume.from_sitk(f.Execute(src), meta=dict(vol.meta))
    return out


def resample_to_spacing(vol: Volume, target_zyx: Sequence[float], is_label: bool) -> Volume:
    """Resample ``vol`` to ``target_zyx`` (mm) over the same extent, same origin and direction."""
    target = tuple(float(t) for t in target_zyx)
    shape = resampled_shape(vol.shape, vol.spacing_zyx, target)
    return resample_to_grid(vol, (shape, target, vol.origin_xyz, vol.direction), is_label)  # type: ignore[arg-type]
