"""Solids in patient mm and their rasterisation onto stacks of axial planes.

A :class:`Planes` is a stack of axial planes (any z positions, one in-plane grid); a solid
paints itself into the part of the stack its bounding box covers. Arrays are (z, y, x) float32.
Large organs are painted hard-edged here (the reconstruction kernel and the slice profile
soften them later); small structures use :mod:`.occupancy` (sub-voxel partial volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
PAINT_SLAB_VOXELS = 1 << 20  # voxels per slab when a solid paints its box (speed only: the result is the same)


@dataclass(frozen=True)
class Planes:
    """Axial planes at ``z`` (mm) on a (ny, nx) grid with voxel centres ``y``/``x`` (mm)."""

    z: np.ndarray  # (nz,) any order
    y: np.ndarray  # (ny,) increasing
    x: np.ndarray  # (nx,) increasing

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.z), len(self.y), len(self.x))

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of the planes/pixels whose centres may lie in [lo, hi] (xyz mm)."""
        out = []
        for ax, a, b in ((self.z, lo[2], hi[2]), (self.y, lo[1], hi[1]), (self.x, lo[0], hi[0])):
            if ax is self.z:
                sel = np.flatnonzero((ax >= a) & (ax <= b))
                if sel.size == 0:
                    return None
                out.append(slice(int(sel[0]), int(sel[-1]) + 1))
                continue
            i0 = int(np.searchsorted(ax, a, side="left"))
            i1 = int(np.searchsorted(ax, b, side="right"))
            if i0 >= i1:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, sl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable float32 (x, y, z) coordinate arrays of a box."""
        return (self.x[sl[2]].astype(F32)[None, None, :], self.y[sl[1]].astype(F32)[None, :, None],
                self.z[sl[0]].astype(F32)[:, None, None])


class Solid:
    """A region of space: a bounding box and an inside test on broadcast coordinate arrays."""

    lo: np.ndarray
    hi: np.ndarray

    def inside(self, x, y, z) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def paint(self, planes: Planes, arr: np.ndarray, value, *, mask_out: list | None = None) -> None:
        """Set ``arr`` to ``value`` inside the solid; with ``mask_out``, also collect (box, mask) there.

        The box is painted in slabs of planes (``inside`` is pointwise): the temporaries stay
        small enough for the CPU caches and are not fresh pages each time.
        """
        sl = planes.box(self.lo, self.hi)
        if sl is None:
            return
        v = F32(value) if arr.dtype == F32 else value
        z0, z1 = sl[0].start, sl[0].stop
        step = max(1, PAINT_SLAB_VOXELS // ((sl[1].stop - sl[1].start) * (sl[2].stop - sl[2].start)))
        for k in range(z0, z1, step):
            part = (slice(k, min(k + step, z1)), sl[1], sl[2])
            m = self.inside(*planes.coords(part))
            m = np.broadcast_to(m, arr[part].shape)
            if not m.any():
                continue
            np.copyto(arr[part], v, where=m)
            if mask_out is not None:
                mask_out.append((part, m))


def _rot(r) -> np.ndarray:
    return np.eye(3, dtype=float) if r is None else np.asarray(r, float)


class Ellipsoid(Solid):
    """An ellipsoid with semi-axes along the columns of the rotation ``rot`` (world = rot @ local)."""

    def __init__(self, centre, semi, rot=None, cut: tuple | None = None):
        self.c = np.asarray(centre, float)
        self.s = np.maximum(np.asarray(semi, float), 1e-6)
        self.r = _rot(rot)
        # Optional half-space cut: keep points with n . (p - p0) >= 0.
        self.cut = None if cut is None else (np.asarray(cut[0], float), np.asarray(cut[1], float))
        ext = np.sqrt(((self.r * self.s[None, :]) ** 2).sum(axis=1))  # half-extent along world axes
        self.lo, self.hi = self.c - ext, self.c + ext

    def surface_points(self, n: int = 24) -> np.ndarray:
        """Points on the surface (those the cut keeps), for tight extents."""
        th, ph = np.meshgrid(np.linspace(0, 2 * np.pi, 2 * n), np.linspace(0, np.pi, n))
        unit = np.stack([np.sin(ph) * np.cos(th), np.sin(ph) * np.sin(th), np.cos(ph)], axis=-1).reshape(-1, 3)
        p = self.c + (unit * self.s) @ self.r.T
        if self.cut is not None:
            p0, nrm = self.cut
            p = p[(p - p0) @ nrm >= 0]
        return p

    def inside(self, x, y, z):
        dx, dy, dz = x - F32(self.c[0]), y - F32(self.c[1]), z - F32(self.c[2])
        acc = None
        for i in range(3):
            a, b, c = (F32(v / self.s[i]) for v in self.r[:, i])
            q = (dx * a + dy * b) + dz * c
            q = q * q
            acc = q if acc is None else acc + q
        m = acc <= 1.0
        if self.cut is not None:
            p0, n = self.cut
            m &= ((dx + F32(self.c[0] - p0[0])) * F32(n[0]) + (dy + F32(self.c[1] - p0[1])) * F32(n[1])
                  + (dz + F32(self.c[2] - p0[2])) * F32(n[2])) >= 0
        return m


class ZCylinder(Solid):
    """An elliptic cylinder along z whose centre and semi-axes vary with z (tables ``zs``)."""

    def __init__(self, zs, cx, cy, ax, ay):
        self.zs = np.asarray(zs, float)
        self.cx, self.cy, self.ax, self.ay = (np.asarray(v, float) * np.ones_like(self.zs) for v in (cx, cy, ax, ay))
        self.lo = np.array([(self.cx - self.ax).min(), (self.cy - self.ay).min(), self.zs.min()])
        self.hi = np.array([(self.cx + self.ax).max(), (self.cy + self.ay).max(), self.zs.max()])

    def _at(self, z):
        zz = z.ravel().astype(float)
        return [np.interp(zz, self.zs, v).astype(F32)[:, None, None] for v in (self.cx, self.cy, self.ax, self.ay)]

    def inside(self, x, y, z):
        cx, cy, ax, ay = self._at(z)
        u = ((x - cx) / ax) ** 2
        u[((z < self.zs.min()) | (z > self.zs.max())).ravel()] = np.inf  # outside the z range
        v = ((y - cy) / ay) ** 2
        return (u + v) <= 1.0


class Capsules(Solid):
    """A tube along a polyline; the radius varies linearly along each segment."""

    def __init__(self, points, radii):
        self.p = np.asarray(points, float)
        self.rad = np.broadcast_to(np.asarray(radii, float), (len(self.p),)).astype(float)
        r = float(self.rad.max())
        self.lo, self.hi = self.p.min(axis=0) - r, self.p.max(axis=0) + r

    def paint(self, planes: Planes, arr: np.ndarray, value, *, mask_out: list | None = None) -> None:
        # Per segment: a small box each, so a long thin tube costs little.
        for i in range(len(self.p) - 1):
            a, b = self.p[i], self.p[i + 1]
            r = max(self.rad[i], self.rad[i + 1])
            sl = planes.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
            if sl is None:
                continue
            m = capsule_mask(*planes.coords(sl), a, b, self.rad[i], self.rad[i + 1])
            if not m.any():
                continue
            np.copyto(arr[sl], F32(value) if arr.dtype == F32 else value, where=m)
            if mask_out is not None:
                mask_out.append((sl, m))

    def inside(self, x, y, z):
        m = None
        for i in range(len(self.p) - 1):
            mi = capsule_mask(x, y, z, self.p[i], self.p[i + 1], self.rad[i], self.rad[i + 1])
            m = mi if m is None else (m | mi)
        return m


def capsule_mask(x, y, z, a, b, ra, rb) -> np.ndarray:
    """Voxels within the linearly varying radius of segment a-b (broadcast float32 coords)."""
    ab = np.asarray(b, float) - np.asarray(a, float)
    l2 = float(ab @ ab) or 1e-12
    dx, dy, dz = x - F32(a[0]), y - F32(a[1]), z - F32(a[2])
    t = (dx * F32(ab[0] / l2) + dy * F32(ab[1] / l2)) + dz * F32(ab[2] / l2)
    np.clip(t, 0.0, 1.0, out=t)
    ex = dx - t * F32(ab[0])
    ey = dy - t * F32(ab[1])
    ez = dz - t * F32(ab[2])
    rr = F32(ra) + t * F32(rb - ra)
    return (ex * ex + ey * ey + ez * ez) <= rr * rr


class Below(Solid):
    """Points of ``base`` below (``below=True``) or above a height field z = h(x, y).

    ``height`` is sampled on the in-plane pixel grid given by ``x`` and ``y`` (mm, increasing).
    """

    def __init__(self, base: Solid, height: np.ndarray, x: np.ndarray, y: np.ndarray, below: bool = True):
        self.base, self.h, self.below = base, height.astype(F32), below
        self.x0, self.dx = float(x[0]), float(x[1] - x[0]) if len(x) > 1 else 1.0
        self.y0, self.dy = float(y[0]), float(y[1] - y[0]) if len(y) > 1 else 1.0
        self.lo, self.hi = base.lo, base.hi

    def inside(self, x, y, z):
        ix = np.clip(np.rint((x.ravel() - self.x0) / self.dx).astype(int), 0, self.h.shape[1] - 1)
        iy = np.clip(np.rint((y.ravel() - self.y0) / self.dy).astype(int), 0, self.h.shape[0] - 1)
        h = self.h[np.ix_(iy, ix)][None]
        m = self.base.inside(x, y, z)
        return m & ((z < h) if self.below else (z >= h))


class Both(Solid):
    """Intersection of solids (``a`` inside and ``b`` inside; ``b`` may be negated)."""

    def __init__(self, a: Solid, b: Solid, negate_b: bool = False):
        self.a, self.b, self.neg = a, b, negate_b
        self.lo, self.hi = a.lo, a.hi

    def inside(self, x, y, z):
        mb = self.b.inside(x, y, z)
        return self.a.inside(x, y, z) & (~mb if self.neg else mb)


class Box(Solid):
    """An axis-aligned box [lo, hi] (xyz mm)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)

    def inside(self, x, y, z):
        return ((x >= self.lo[0]) & (x <= self.hi[0]) & (y >= self.lo[1]) & (y <= self.hi[1])
                & (z >= self.lo[2]) & (z <= self.hi[2]))
