"""Partial-volume rendering of small structures onto the written slices, with cardiac motion.

For every written voxel the fraction of it a structure fills (``f``) and the density-weighted
fraction (``S``, HU x fraction) are integrated over the slice profile (a rectangle of the slice
thickness, sampled every <= 0.25 mm), over the pixel (a sub-grid of ``ss`` x ``ss`` points for
solids; an analytic distance ramp for tubes) and over the time the slice was acquired (``M``
samples, each with its own displacement of the structure). Compositing ``v = v (1 - f) + S``
then gives the voxel the mixture a real detector element would see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class SliceGrid:
    """The written grid: slice centres ``z`` (ascending), pixel centres ``y``, ``x``, slice thickness."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    thickness: float

    @property
    def pixel(self) -> float:
        return float(self.x[1] - self.x[0]) if len(self.x) > 1 else 1.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    def index_box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Voxels whose slice window or pixel may overlap the xyz box [lo, hi]."""
        t2 = self.thickness / 2
        h = self.pixel / 2
        k0 = int(np.searchsorted(self.z, lo[2] - t2, side="left"))
        k1 = int(np.searchsorted(self.z, hi[2] + t2, side="right"))
        j0 = int(np.searchsorted(self.y, lo[1] - h, side="left"))
        j1 = int(np.searchsorted(self.y, hi[1] + h, side="right"))
        i0 = int(np.searchsorted(self.x, lo[0] - h, side="left"))
        i1 = int(np.searchsorted(self.x, hi[0] + h, side="right"))
        if k0 >= k1 or j0 >= j1 or i0 >= i1:
            return None
        return (slice(k0, k1), slice(j0, j1), slice(i0, i1))

    def sub_z(self, step: float) -> np.ndarray:
        """Offsets (mm) of the sub-planes that sample one slice's profile."""
        n = max(1, int(np.ceil(self.thickness / step)))
        return ((np.arange(n) + 0.5) / n - 0.5) * self.thickness


# Displacement of a structure: (slice indices (nK,), anchor xyz) -> (nK, M, 3) mm.
Displacer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def static_displacer(k: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    return np.zeros((len(k), 1, 3))


def tube_occupancy(grid: SliceGrid, points: np.ndarray, radii: np.ndarray, disp: Displacer,
                   max_disp_mm: float, z_step: float = 0.5):
    """Per segment of a polyline tube: yields (box, f), f = filled fraction of each voxel of ``box``.

    Each segment moves rigidly with the displacement of its midpoint; each slice only looks at
    where the segment was during that slice's own acquisition window. ``box`` spans the slices
    the segment touches (one array operation for all of them); voxels it does not reach get 0.
    """
    px = grid.pixel
    t2 = grid.thickness / 2
    h = px / 2
    offs = grid.sub_z(z_step).astype(F32)
    for i in range(len(points) - 1):
        a, b = points[i], points[i + 1]
        ra, rb = float(radii[i]), float(radii[i + 1])
        r = max(ra, rb) + px
        cand = grid.index_box(np.minimum(a, b) - r - max_disp_mm, np.maximum(a, b) + r + max_disp_mm)
        if cand is None:
            continue
        ks = np.arange(cand[0].start, cand[0].stop)
        d_all = disp(ks, (a + b) / 2).astype(F32)  # (nK, M, 3)
        ab = (b - a).astype(float)
        l2 = float(ab @ ab) or 1e-12
        seg_lo, seg_hi = np.minimum(a, b) - r, np.maximum(a, b) + r
        # Per slice: where the segment can be during its window (as grid.index_box, for all slices at once).
        lo, hi = seg_lo + d_all.min(axis=1), seg_hi + d_all.max(axis=1)  # (nK, 3)
        zk = grid.z[ks]
        j0 = np.searchsorted(grid.y, lo[:, 1] - h, side="left")
        j1 = np.searchsorted(grid.y, hi[:, 1] + h, side="right")
        i0 = np.searchsorted(grid.x, lo[:, 0] - h, side="left")
        i1 = np.searchsorted(grid.x, hi[:, 0] + h, side="right")
        hit = ~((hi[:, 2] < zk - t2) | (lo[:, 2] > zk + t2)) & (j0 < j1) & (i0 < i1)
        if not hit.any():
            continue
        kk = np.flatnonzero(hit)
        sel = slice(int(kk[0]), int(kk[-1]) + 1)  # the slices it reaches (and any between them)
        box = (slice(int(ks[sel][0]), int(ks[sel][-1]) + 1), slice(int(j0[kk].min()), int(j1[kk].max())),
               slice(int(i0[kk].min()), int(i1[kk].max())))
        d = d_all[sel]  # (nK', M, 3)
        x = grid.x[box[2]].astype(F32)[None, None, None, None, :]
        y = grid.y[box[1]].astype(F32)[None, None, None, :, None]
        z = (zk[sel].astype(F32)[:, None] + offs[None, :])[:, None, :, None, None]
        dx = x - d[:, :, 0, None, None, None] - F32(a[0])
        dy = y - d[:, :, 1, None, None, None] - F32(a[1])
        dz = z - d[:, :, 2, None, None, None] - F32(a[2])
        t = np.clip((dx * F32(ab[0] / l2) + dy * F32(ab[1] / l2)) + dz * F32(ab[2] / l2), 0.0, 1.0)
        ex, ey, ez = dx - t * F32(ab[0]), dy - t * F32(ab[1]), dz - t * F32(ab[2])
        dist = np.sqrt(ex * ex + ey * ey + ez * ez)
        rr = F32(ra) + t * F32(rb - ra)
        cov = np.clip((rr - dist) / F32(px) + F32(0.5), 0.0, 1.0)
        f = cov.mean(axis=(1, 2))  # (nK', ny, nx): over the window's instants and the slice profile
        if f.any():
            yield box, f


@dataclass
class Lobes:
    """A union of ellipsoids (each with its own density): plaques, valve and annulus calcium."""

    centres: np.ndarray  # (K, 3)
    axes: np.ndarray  # (K, 3, 3) columns = principal directions
    semi: np.ndarray  # (K, 3)
    density: np.ndarray  # (K,) HU

    def __post_init__(self) -> None:
        self.inv = np.transpose(self.axes, (0, 2, 1)) / self.semi[:, :, None]  # rows: axis_i / semi_i
        ext = np.sqrt(((self.axes * self.semi[:, None, :]) ** 2).sum(axis=2))  # (K, 3) world half-extents
        self.lo_k, self.hi_k = self.centres - ext, self.centres + ext

    @property
    def lo(self) -> np.ndarray:
        return self.lo_k.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.hi_k.max(axis=0)

    def volume(self, step: float | None = None) -> float:
        """Geometric volume of the union (mm^3), on a fine grid (relative error well below 1 %)."""
        h = step or float(np.clip(self.semi.min() / 6.0, 0.015, 0.1))
        boxes = np.prod(self.hi_k - self.lo_k, axis=1).sum()
        h = max(h, float((boxes / 4e6) ** (1 / 3)))  # at most ~4 million grid points in all
        lo, hi = self.lo - h, self.hi + h
        n = np.ceil((hi - lo) / h).astype(int)
        occ = np.zeros(n[::-1], dtype=bool)  # (z, y, x)
        for k in range(len(self.centres)):
            i0 = np.floor((self.lo_k[k] - lo) / h).astype(int)
            i1 = np.minimum(np.ceil((self.hi_k[k] - lo) / h).astype(int) + 1, n)
            xs = lo[0] + (np.arange(i0[0], i1[0]) + 0.5) * h
            ys = lo[1] + (np.arange(i0[1], i1[1]) + 0.5) * h
            zs = lo[2] + (np.arange(i0[2], i1[2]) + 0.5) * h
            m = _inside(self, k, xs[None, None, :], ys[None, :, None], zs[:, None, None])
            occ[i0[2]:i1[2], i0[1]:i1[1], i0[0]:i1[0]] |= m
        return float(occ.sum()) * h**3


def _inside(lobes: Lobes, k: int, x, y, z) -> np.ndarray:
    c = lobes.centres[k]
    dx, dy, dz = x - F32(c[0]), y - F32(c[1]), z - F32(c[2])
    acc = None
    for i in range(3):
        a, b, cc = (F32(v) for v in lobes.inv[k, i])
        q = (dx * a + dy * b) + dz * cc
        acc = q * q if acc is None else acc + q * q
    return acc <= 1.0


def lobe_occupancy(grid: SliceGrid, lobes: Lobes, disp: Displacer, anchor: np.ndarray, max_disp_mm: float,
                   ss: int = 4, z_step: float = 0.25):
    """(box, f, S) of a lobe union: filled fraction and density x fraction per voxel of ``box``."""
    px = grid.pixel
    pad = px + max_disp_mm
    box = grid.index_box(lobes.lo - pad, lobes.hi + pad)
    if box is None:
        return None
    ks = np.arange(box[0].start, box[0].stop)
    d_all = disp(ks, anchor).astype(F32)  # (nK, M, 3)
    m_t = d_all.shape[1]
    offs = grid.sub_z(z_step).astype(F32)
    sub = ((np.arange(ss) + 0.5) / ss - 0.5) * px
    xf = (grid.x[box[2]][:, None] + sub[None, :]).ravel().astype(F32)  # fine x (nx*ss,)
    yf = (grid.y[box[1]][:, None] + sub[None, :]).ravel().astype(F32)
    ny, nx = len(yf) // ss, len(xf) // ss
    f = np.zeros((len(ks), ny, nx), F32)
    s_acc = np.zeros((len(ks), ny, nx), F32)
    t2 = grid.thickness / 2
    for ki, k in enumerate(ks):
        zf = (grid.z[k] + offs).astype(F32)  # (nsub,)
        dmin, dmax = d_all[ki].min(axis=0), d_all[ki].max(axis=0)
        lo_k, hi_k = lobes.lo_k + dmin, lobes.hi_k + dmax
        hit = np.flatnonzero((hi_k[:, 2] >= grid.z[k] - t2) & (lo_k[:, 2] <= grid.z[k] + t2))
        if hit.size == 0:
            continue
        # pixel range of this slice's lobes, then the fine sub-grid of just that range
        p0 = max(int(np.searchsorted(xf, lo_k[hit, 0].min())) // ss, 0)
        p1 = min(int(np.searchsorted(xf, hi_k[hit, 0].max(), side="right")) // ss + 1, nx)
        q0 = max(int(np.searchsorted(yf, lo_k[hit, 1].min())) // ss, 0)
        q1 = min(int(np.searchsorted(yf, hi_k[hit, 1].max(), side="right")) // ss + 1, ny)
        if p0 >= p1 or q0 >= q1:
            continue
        xs, ys = xf[p0 * ss:p1 * ss], yf[q0 * ss:q1 * ss]
        dens = np.zeros((m_t, len(offs), len(ys), len(xs)), F32)
        for j in hit:
            i0, i1 = np.searchsorted(xs, lo_k[j, 0]), np.searchsorted(xs, hi_k[j, 0], side="right")
            j0, j1 = np.searchsorted(ys, lo_k[j, 1]), np.searchsorted(ys, hi_k[j, 1], side="right")
            if i0 >= i1 or j0 >= j1:
                continue
            x = xs[i0:i1][None, None, None, :] - d_all[ki, :, 0, None, None, None]
            y = ys[j0:j1][None, None, :, None] - d_all[ki, :, 1, None, None, None]
            z = zf[None, :, None, None] - d_all[ki, :, 2, None, None, None]
            m = _inside(lobes, j, x, y, z)
            sub_d = dens[:, :, j0:j1, i0:i1]
            np.maximum(sub_d, np.where(m, F32(lobes.density[j]), F32(0.0)), out=sub_d)
        dr = dens.reshape(m_t, len(offs), q1 - q0, ss, p1 - p0, ss)
        f[ki, q0:q1, p0:p1] = (dr > 0).mean(axis=(0, 1, 3, 5))
        s_acc[ki, q0:q1, p0:p1] = dr.mean(axis=(0, 1, 3, 5))
    return box, f, s_acc
