"""Morphology with a ball of a given radius in mm, through a distance map instead of a structure.

``scipy.ndimage.binary_erosion`` with a ball structuring element checks every element of the
ball at every voxel: a 5 mm ball on a 0.625 x 0.7 x 0.7 mm grid has ~1 900 elements, and eroding a
heart box of a thin-slice scan took seconds (docs/performance.md, issue 31). A voxel survives the
erosion exactly when no background voxel (nor anything outside the array) lies within the ball
around it; the exact Euclidean distance map (with the spacing) gives the nearest background voxel,
so one distance map answers for every voxel. Arrays are (z, y, x), spacing in mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def ball_offsets_within(d2: np.ndarray, radius_mm: float) -> np.ndarray:
    """The ball test of a squared distance (mm^2): the same inequality a ball structuring element
    ``(z*sz)^2 + (y*sy)^2 + (x*sx)^2 <= r^2 + 1e-9`` uses (the 1e-9 keeps exact ties inside)."""
    return d2 <= radius_mm**2 + 1e-9


def erode_ball(mask: np.ndarray, radius_mm: float, spacing_zyx: Sequence[float]) -> np.ndarray:
    """``binary_erosion(mask, structure=ball)`` (border value 0) for the ball of ``radius_mm`` on a grid of
    ``spacing_zyx``: True where the mask holds and no background voxel, nor the array's outside, lies
    within ``radius_mm`` (the ball's elements are the integer offsets within it)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.zeros(m.shape, dtype=bool)
    sp = np.asarray(spacing_zyx, dtype=float)
    padded = np.pad(m, 1, constant_values=False)  # the outside is background (border value 0)
    if padded.all():
        return m.copy()
    idx = ndimage.distance_transform_edt(padded, sampling=sp, return_distances=False, return_indices=True)
    grid = np.indices(padded.shape, sparse=True)
    d2 = np.zeros(padded.shape, dtype=float)
    for ax in range(3):  # the nearest background voxel's offset, squared in mm, as the ball formula writes it
        d2 += ((idx[ax] - grid[ax]) * sp[ax]) ** 2
    return (padded & ~ball_offsets_within(d2, radius_mm))[1:-1, 1:-1, 1:-1]


def label_objects(labels: np.ndarray, max_label: int) -> list[tuple[slice, ...] | None]:
    """``ndimage.find_objects(labels, max_label)`` (integer labels >= 0), found inside the box of
    the nonzero voxels only: a six-class map of a chest CT is nonzero in a few percent of it, and
    find_objects over a whole 512 x 512 x 550 grid took a second (issue 31). The box comes from
    the array's projections (its slices holding a label, then rows and columns inside them)."""
    a = np.asarray(labels)
    zs = np.flatnonzero(a.any(axis=(1, 2))) if a.ndim == 3 and a.size else None
    if zs is None:
        return ndimage.find_objects(a, max_label=max_label)
    if zs.size == 0:
        return [None] * max_label
    sub = a[zs[0]:zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    box = (slice(int(zs[0]), int(zs[-1]) + 1), slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1))
    found = ndimage.find_objects(a[box], max_label=max_label)
    return [None if f is None else tuple(slice(s.start + b.start, s.stop + b.start) for s, b in zip(f, box, strict=True))
            for f in found]
