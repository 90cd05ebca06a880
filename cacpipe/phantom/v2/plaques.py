"""Calcified plaques (and valve, annulus and aortic wall calcium) as unions of ellipsoid lobes.

A plaque sits in the vessel wall, eccentric, partly bulging into the lumen. Kinds:

- ``focal``: 2-6 overlapping lobes of different sizes and densities (an irregular nodule);
- ``tiny``: one lobe of 0.3-0.8 mm semi-axes, near the detection limit once partial volume
  and noise have their say;
- ``bifurcation``: lobes around the origin of a side branch, on the parent and the branch;
- ``ostial``: lobes round the ostium, partly in the aortic wall;
- ``diffuse``: many thin lobes with gaps along 15-50 mm of a vessel (long-segment calcium).

The lobe centres follow the centreline, so long plaques bend with the vessel.
"""

from __future__ import annotations

import numpy as np

from .config import PlaqueSpec
from .coronary import Branch
from .heart import HeartModel
from .occupancy import Lobes


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / max(float(np.linalg.norm(v)), 1e-9)


def local_frame(branch: Branch, k: int, towards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent, in-plane normal pointing towards ``towards`` (the heart), and binormal at point ``k``."""
    p = branch.points
    a, b = p[max(k - 2, 0)], p[min(k + 2, len(p) - 1)]
    t = _unit(b - a)
    n = towards - p[k]
    n = _unit(n - (n @ t) * t)
    return t, n, np.cross(t, n)


def _lobes_along(branch: Branch, centre_pt: np.ndarray, s_list, psi_list, semi_list, dens_list, rad_off) -> Lobes:
    centres, axes = [], []
    for s, psi, off in zip(s_list, psi_list, rad_off, strict=True):
        k = branch.at(s)
        t, n, bn = local_frame(branch, k, centre_pt)
        radial = np.cos(psi) * n + np.sin(psi) * bn
        circ = np.cross(t, radial)
        centres.append(branch.points[k] + (branch.radius[k] + off) * radial)
        axes.append(np.stack([t, radial, circ], axis=1))
    return Lobes(np.array(centres), np.array(axes), np.array(semi_list, float), np.array(dens_list, float))


def plaque_lobes(spec: PlaqueSpec, tree: dict[str, Branch], heart_centre: np.ndarray) -> Lobes:
    """The lobes of one plaque (deterministic in the spec)."""
    rng = np.random.default_rng(spec.shape_seed)
    br = tree[spec.branch]
    length = br.length
    psi0 = np.radians(spec.angle_deg)
    arc = np.radians(spec.arc_deg)
    th = spec.thickness_mm
    if spec.kind == "tiny":
        a = 0.5 * spec.length_mm
        s0 = spec.t * length
        return _lobes_along(br, heart_centre, [s0], [psi0], [[a, 0.5 * th, 0.5 * th * rng.uniform(0.8, 1.2)]],
                            [spec.density_hu], [0.1 * th])
    if spec.kind == "diffuse":
        n = max(3, int(spec.length_mm / 2.0))
        s0 = np.clip(spec.t * length, 0.0, max(length - spec.length_mm, 0.0))
        s = s0 + np.sort(rng.uniform(0, spec.length_mm, n))
        keep = rng.random(n) > 0.15
        keep[0] = True
        s = s[keep]
        n = len(s)
        psi = psi0 + np.cumsum(rng.normal(0, 0.25, n))
        semi = [[rng.uniform(1.0, 2.2), 0.5 * th * rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.6)] for _ in range(n)]
        dens = spec.density_hu * rng.uniform(0.55, 1.0, n)
        dens[rng.integers(n)] = spec.density_hu
        return _lobes_along(br, heart_centre, s, psi, semi, dens, 0.15 * th * np.ones(n))
    if spec.kind == "bifurcation" and br.parent is not None:
        # Half the lobes on the first mm of the side branch, half on the parent round the origin.
        parent = tree[br.parent]
        n = max(spec.n_lobes, 2)
        lobes = []
        for j in range(n):
            on_parent = j % 2 == 1
            b = parent if on_parent else br
            s = (br.origin_s + rng.uniform(-2.5, 1.5)) if on_parent else rng.uniform(0.3, 3.0)
            lobes.append(_lobes_along(b, heart_centre, [s], [psi0 + rng.uniform(-arc / 2, arc / 2)],
                                      [[rng.uniform(0.8, 1.8), 0.5 * th * rng.uniform(0.7, 1.2), rng.uniform(0.6, 1.4)]],
                                      [spec.density_hu * (1.0 if j == 0 else rng.uniform(0.6, 1.0))], [0.15 * th]))
        return _concat(lobes)
    # focal and ostial (an ostial plaque is a focal plaque in the first 3 mm of the RCA / LM)
    n = max(spec.n_lobes, 1)
    s0 = rng.uniform(0.2, 2.0) if spec.kind == "ostial" else spec.t * length
    s = s0 + rng.uniform(-0.5, 0.5, n) * spec.length_mm
    s = np.clip(s, 0.0, length)
    psi = psi0 + rng.uniform(-arc / 2, arc / 2, n)
    semi = [[0.5 * spec.length_mm / np.sqrt(n) * rng.uniform(0.8, 1.4), 0.5 * th * rng.uniform(0.7, 1.2),
             rng.uniform(0.5, 1.0) * max(0.6, 0.5 * arc * br.radius[br.at(si)] / np.sqrt(n))] for si in s]
    dens = spec.density_hu * rng.uniform(0.6, 1.0, n)
    dens[0] = spec.density_hu
    return _lobes_along(br, heart_centre, s, psi, semi, dens, 0.15 * th * np.ones(n))


def _concat(parts: list[Lobes]) -> Lobes:
    return Lobes(np.concatenate([p.centres for p in parts]), np.concatenate([p.axes for p in parts]),
                 np.concatenate([p.semi for p in parts]), np.concatenate([p.density for p in parts]))


def _ring(centre, axis, radius, angles_deg):
    e1 = _unit(np.cross(axis, [0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.cross(axis, [1.0, 0.0, 0.0]))
    e2 = np.cross(axis, e1)
    a = np.radians(np.asarray(angles_deg, float))
    return centre + radius * (np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2), e1, e2


def aortic_valve_lobes(hm: HeartModel, volume_mm3: float, rng: np.random.Generator) -> Lobes:
    """Nodules on the three cusps near the annulus, sized to about ``volume_mm3`` in total."""
    n = int(np.clip(3 + volume_mm3 / 60.0, 3, 18))
    r_each = (3.0 * max(volume_mm3, 5.0) / (4.0 * np.pi * n)) ** (1.0 / 3.0)
    ang = rng.choice([0.0, 120.0, 240.0], n) + rng.uniform(-35, 35, n)
    rad = hm.root_radius * rng.uniform(0.35, 0.95, n)
    pts = []
    for a, r in zip(ang, rad, strict=True):
        p, _, _ = _ring(hm.root_centre + rng.uniform(0.0, 5.0) * hm.root_axis, hm.root_axis, r, [a])
        pts.append(p[0])
    axes = np.array([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(n)])
    semi = r_each * rng.uniform(0.6, 1.5, (n, 3))
    return Lobes(np.array(pts), axes, semi, rng.uniform(450, 1300, n))


def mitral_annulus_lobes(hm: HeartModel, arc_deg: float, rng: np.random.Generator) -> Lobes:
    """A calcified band along the posterior mitral annulus (next to the LCX in the left AV groove)."""
    axis = hm.frame.axes[:, 2]
    centre = hm.mitral_centre
    # Posterior annulus: the side of the ring facing the heart frame's -t (left-posterior) direction.
    e_post = -hm.frame.axes[:, 0]
    base_ang = np.degrees(np.arctan2(*(_proj_angles(axis, e_post))))
    n = max(3, int(arc_deg / 12.0))
    ang = base_ang + np.linspace(-arc_deg / 2, arc_deg / 2, n)
    pts, e1, e2 = _ring(centre, axis, hm.mitral_radius, ang)
    axes, semi = [], []
    th = rng.uniform(1.5, 3.0)
    for a in np.radians(ang):
        radial = np.cos(a) * e1 + np.sin(a) * e2
        tang = np.cross(axis, radial)
        axes.append(np.stack([tang, radial, axis], axis=1))
        semi.append([rng.uniform(2.5, 4.0), th * rng.uniform(0.7, 1.2), th * rng.uniform(0.7, 1.3)])
    return Lobes(pts, np.array(axes), np.array(semi), rng.uniform(500, 1100, n))


def _proj_angles(axis, direction):
    """(sin-like, cos-like) of ``direction`` in the ring basis of :func:`_ring` (for arctan2)."""
    _, e1, e2 = _ring(np.zeros(3), axis, 1.0, [0.0])
    return float(direction @ e2), float(direction @ e1)


def aortic_wall_lobes(aorta_pts: np.ndarray, aorta_r: np.ndarray, n: int, rng: np.random.Generator) -> Lobes:
    """Flat crescent plaques on the aortic wall (root, arch, descending)."""
    centres, axes, semi = [], [], []
    for _ in range(n):
        i = int(rng.integers(1, len(aorta_pts) - 1))
        t = _unit(aorta_pts[i + 1] - aorta_pts[i - 1])
        nrm = _unit(np.cross(t, rng.normal(size=3)))
        centres.append(aorta_pts[i] + (aorta_r[i] - 0.5) * nrm)
        axes.append(np.stack([t, nrm, np.cross(t, nrm)], axis=1))
        semi.append([rng.uniform(2.0, 6.0), rng.uniform(0.6, 1.3), rng.uniform(1.5, 4.0)])
    return Lobes(np.array(centres), np.array(axes), np.array(semi), rng.uniform(300, 1000, n))
