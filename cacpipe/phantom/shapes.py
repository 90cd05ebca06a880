"""Rasterisation of simple solids into a (z, y, x) grid given in patient mm.

The grid is axis-aligned (identity direction): voxel (iz, iy, ix) has its centre at
origin + (ix*dx, iy*dy, iz*dz). All shape parameters are in mm (LPS x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]  # (nz, ny, nx)
    spacing_zyx: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1D voxel-centre coordinates (z, y, x) in mm."""
        nz, ny, nx = self.shape
        dz, dy, dx = self.spacing_zyx
        ox, oy, oz = self.origin_xyz
        return (oz + dz * np.arange(nz), oy + dy * np.arange(ny), ox + dx * np.arange(nx))

    def box(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of voxels whose centres may lie in the mm box, or None if empty."""
        out = []
        for lo, hi, o, d, n in zip(
            lo_xyz[::-1], hi_xyz[::-1], self.origin_xyz[::-1], self.spacing_zyx, self.shape, strict=True
        ):
            a = max(int(np.floor((lo - o) / d)), 0)
            b = min(int(np.ceil((hi - o) / d)) + 1, n)
            if a >= b:
                return None
            out.append(slice(a, b))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable z, y, x mm coordinates of a box of the grid."""
        z, y, x = self.axes_mm()
        return z[sl[0]][:, None, None], y[sl[1]][None, :, None], x[sl[2]][None, None, :]


def ellipsoid(grid: Grid, centre_xyz, semi_xyz) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Mask of an axis-aligned ellipsoid, returned with the box it lives in."""
    c = np.asarray(centre_xyz, float)
    s = np.asarray(semi_xyz, float)
    sl = grid.box(c - s, c + s)
    if sl is None:
        return None
    z, y, x = grid.coords(sl)
    m = ((x - c[0]) / s[0]) ** 2 + ((y - c[1]) / s[1]) ** 2 + ((z - c[2]) / s[2]) ** 2 <= 1.0
    return sl, m


def elliptic_cylinder(grid: Grid, centre_xy, semi_xy, z_range) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Mask of a cylinder along z with elliptic cross-section, z_range = (zmin, zmax) mm."""
    cx, cy = centre_xy
    ax, ay = semi_xy
    lo = np.array([cx - ax, cy - ay, z_range[0]])
    hi = np.array([cx + ax, cy + ay, z_range[1]])
    sl = grid.box(lo, hi)
    if sl is None:
        return None
    z, y, x = grid.coords(sl)
    m2 = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0
    mz = (z >= z_range[0]) & (z <= z_range[1])
    return sl, m2 & mz


def tube(grid: Grid, points_xyz: np.ndarray, radii: np.ndarray, out: np.ndarray, value) -> None:
    """Paint ``value`` into ``out`` for voxels within radius of a polyline (capsule per segment).

    The radius is interpolated linearly along each segment.
    """
    pts = np.asarray(points_xyz, float)
    rad = np.broadcast_to(np.asarray(radii, float), (len(pts),))
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        r = max(rad[i], rad[i + 1])
        sl = grid.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
        if sl is None:
            continue
        z, y, x = grid.coords(sl)
        ab = b - a
        L2 = float(ab @ ab) or 1e-12
        t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / L2
        t = np.clip(t, 0.0, 1.0)
        d2 = (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2
        rr = rad[i] + t * (rad[i + 1] - rad[i])
        out[sl][d2 <= rr**2] = value


def sphere(grid: Grid, centre_xyz, radius: float) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    return ellipsoid(grid, centre_xyz, (radius, radius, radius))


def paint(out: np.ndarray, shaped, value) -> None:
    """Paint the result of a shape function into ``out``."""
    if shaped is None:
        return
    sl, m = shaped
    out[sl][np.broadcast_to(m, out[sl].shape)] = value


def resample_polyline(points_xyz: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points at equal arc-length steps along a polyline, and their arc-length fraction t in [0, 1]."""
    pts = np.asarray(points_xyz, float)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / step_mm)), 1) + 1
    si = np.linspace(0.0, s[-1], n)
    out = np.stack([np.interp(si, s, pts[:, k]) for k in range(3)], axis=1)
    return out, si / max(s[-1], 1e-12)
