"""Metal and surgical confounders: coronary stents, CABG (grafts, clips, sternal wires),
pacemaker / ICD (can and leads), prosthetic valves (mechanical aortic, TAVI frame, mitral ring).

Metal is drawn with a physical density far above the scanner's 3071 HU ceiling, so thin struts
and wires reach realistic displayed values after partial volume; blooming is added later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ChestConfig, StentSpec
from .coronary import Branch
from .heart import HeartModel
from .materials import METAL_HU
from .occupancy import Lobes
from .raster import Capsules, Ellipsoid, Solid

# Stent and TAVI struts are drawn 0.4 mm thick (the sub-voxel sampler resolves that) with an
# effective density that keeps their metal mass x attenuation: at 0.78 mm pixels and 1 mm slices
# a coronary stent then peaks at 2000-2500 HU with blooming, as clinical stents do.
STRUT_HU = 35000.0


@dataclass
class Wire:
    """A thin tube of given density (lead, sternal wire, valve ring, clip); occupancy by distance ramp."""

    points: np.ndarray
    radius: float
    density: float
    kind: str
    moving: bool = False


@dataclass
class DeviceSet:
    wires: list[Wire]
    mesh_lobes: list[tuple[str, Lobes]]  # stents / TAVI frames as many small strut lobes
    big: list[tuple[Solid, str]]  # large solids for the raster painter (can, grafts)
    stent_branches: list[tuple[str, str]]  # (branch, artery) of each stent
    records: list[dict]


def _unit(v):
    v = np.asarray(v, float)
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _perp_basis(t):
    a = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = _unit(np.cross(t, a))
    return e1, np.cross(t, e1)


def mesh_along(points: np.ndarray, radius: np.ndarray | float, density: float, cell_mm: float = 2.0,
               n_around: int = 8) -> Lobes:
    """A cylindrical strut mesh (zig-zag rings linked by bridges) along a centreline, as thin lobes."""
    pts = np.asarray(points, float)
    rad = np.broadcast_to(np.asarray(radius, float), (len(pts),))
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    centres, axes, semi = [], [], []
    n_rings = max(int(s[-1] / cell_mm), 1)
    for i in range(n_rings + 1):
        si = min(i * cell_mm, s[-1])
        k = int(np.clip(np.searchsorted(s, si), 0, len(pts) - 1))
        t = _unit(pts[min(k + 1, len(pts) - 1)] - pts[max(k - 1, 0)])
        e1, e2 = _perp_basis(t)
        for j in range(n_around):
            a = 2 * np.pi * (j + 0.5 * (i % 2)) / n_around
            radial = np.cos(a) * e1 + np.sin(a) * e2
            tang = np.cross(t, radial)
            # a strut: a thin ellipsoid tilted in the cylinder wall (the zig-zag)
            d = _unit(tang + (0.8 if j % 2 else -0.8) * t)
            centres.append(pts[k] + rad[k] * radial)
            axes.append(np.stack([d, radial, np.cross(d, radial)], axis=1))
            semi.append([0.5 * np.pi * rad[k] * 2 / n_around * 1.3, 0.2, 0.2])  # effective strut (see density)
    n = len(centres)
    return Lobes(np.array(centres), np.array(axes), np.array(semi), np.full(n, density))


def build_devices(cfg: ChestConfig, hm: HeartModel, tree: dict[str, Branch], body, rng) -> DeviceSet:
    fnd = cfg.findings
    wires: list[Wire] = []
    meshes: list[tuple[str, Lobes]] = []
    big: list[tuple[Solid, str]] = []
    stents: list[tuple[str, str]] = []
    recs: list[dict] = []
    for st in fnd.stents:
        pts, rad = stent_course(st, tree)
        meshes.append(("stent", mesh_along(pts, rad + 0.15, STRUT_HU)))
        stents.append((st.branch, tree[st.branch].artery))
        recs.append({"kind": "stent", "branch": st.branch, "artery": tree[st.branch].artery,
                     "centre_xyz_mm": pts[len(pts) // 2].tolist(), "length_mm": st.length_mm})
    if fnd.cabg:
        for k in range(6):  # sternal wires: loops round the sternum every ~2.5 cm
            z = 40.0 - 26.0 * k
            a = np.radians(np.linspace(0, 360, 25))
            loop = np.stack([body.bx + 14.0 * np.cos(a), body.sternum_y - 6.0 + 9.0 * np.sin(a), np.full_like(a, z)], 1)
            wires.append(Wire(loop, 0.5, METAL_HU, "sternal_wire"))
        # LIMA to the mid LAD, vein graft from the ascending aorta to the RCA or an OM.
        lad = tree["LAD"]
        target = lad.points[lad.at(0.45 * lad.length)]
        lima_o = np.array([body.bx + 30.0, body.sternum_y + 4.0, 45.0])
        lima = np.stack([lima_o, (lima_o + target) / 2 + np.array([8.0, -6.0, 0.0]), target])
        big.append((Capsules(lima, 1.4), "blood_left"))
        for p in np.linspace(0.15, 0.85, 5):
            c = lima[0] + p * (lima[2] - lima[0])
            d = _unit(np.cross(lima[2] - lima[0], [0, 0, 1.0]))
            wires.append(Wire(np.stack([c - 1.6 * d, c + 1.6 * d]), 0.35, METAL_HU, "surgical_clip"))
        dest_b = tree["RCA"] if rng.random() < 0.5 else tree.get("OM1", tree["LCX"])
        dest = dest_b.points[dest_b.at(0.5 * dest_b.length)]
        orig = hm.root_centre + 38.0 * hm.root_axis + np.array([0.0, -14.0, 0.0])
        svg = np.stack([orig, orig + np.array([0.0, -14.0, -10.0]), (orig + dest) / 2 + np.array([0, -16.0, 0]), dest])
        big.append((Capsules(svg, 2.3), "blood_left"))
        recs.append({"kind": "cabg", "grafts": ["LIMA-LAD", f"SVG-{dest_b.name}"]})
    if fnd.device != "none":
        side = -1.0 if rng.random() < 0.15 else 1.0  # most are implanted on the left
        can_c = np.array([body.bx + side * 0.3 * body.width, body.by - body.depth / 2 + 12.0, 55.0])
        big.append((Ellipsoid(can_c, (24.0, 4.5, 21.0)), "metal"))
        vein = np.array([body.bx + side * 0.2 * body.width, body.trachea_y - 20.0, 62.0])
        svc = np.array([body.bx - 30.0, body.trachea_y - 14.0, 20.0])
        ra = hm.ra_centre + np.array([0.0, -4.0, 14.0])
        course = [can_c, vein, svc, ra]
        v_lead = np.concatenate([np.stack(course), np.stack([(ra + hm.rv_apex) / 2 + np.array([0, -6.0, -4.0]),
                                                              hm.rv_apex])])
        wires.append(Wire(_densify(v_lead, 3.0), 0.9, 6000.0, "pacing_lead"))
        a_lead = np.concatenate([np.stack(course), (hm.ra_centre + np.array([-8.0, -18.0, 16.0]))[None]])
        wires.append(Wire(_densify(a_lead, 3.0), 0.9, 6000.0, "pacing_lead"))
        if fnd.device == "icd":  # shock coils in the SVC and the RV
            rv_coil = _densify(np.stack([(ra + hm.rv_apex) / 2, hm.rv_apex]), 2.0)
            wires.append(Wire(rv_coil, 1.6, 9000.0, "icd_coil"))
            wires.append(Wire(_densify(np.stack([svc, ra]), 2.0), 1.6, 9000.0, "icd_coil"))
        recs.append({"kind": fnd.device, "can_centre_xyz_mm": can_c.tolist()})
    if fnd.prosthetic_valve != "none":
        recs.append({"kind": fnd.prosthetic_valve})
        if fnd.prosthetic_valve == "mechanical_aortic":
            ring = _circle(hm.root_centre, hm.root_axis, hm.root_radius + 0.5)
            wires.append(Wire(ring, 1.2, 6000.0, "valve_ring"))
            for side in (-1, 1):  # two tilting discs (pyrolytic carbon)
                e1, _ = _perp_basis(hm.root_axis)
                c = hm.root_centre + 1.5 * hm.root_axis + side * 0.45 * hm.root_radius * e1
                disc = np.stack([c - 0.4 * hm.root_radius * _unit(np.cross(hm.root_axis, e1)),
                                 c + 0.4 * hm.root_radius * _unit(np.cross(hm.root_axis, e1))])
                wires.append(Wire(disc, 0.8, 2500.0, "valve_leaflet"))
        elif fnd.prosthetic_valve == "tavi":
            axis_pts = np.stack([hm.root_centre - 6.0 * hm.root_axis, hm.root_centre + 42.0 * hm.root_axis])
            meshes.append(("tavi", mesh_along(_densify(axis_pts, 1.0), hm.root_radius + 1.0, STRUT_HU, 5.0, 12)))
        else:
            ring = _circle(hm.mitral_centre, hm.frame.axes[:, 2], hm.mitral_radius, 300.0)
            wires.append(Wire(ring, 1.0, 6000.0, "annuloplasty_ring"))
    return DeviceSet(wires, meshes, big, stents, recs)


def stent_course(st: StentSpec, tree: dict[str, Branch]) -> tuple[np.ndarray, np.ndarray]:
    br = tree[st.branch]
    s0 = np.clip(st.t * br.length, 0.0, max(br.length - st.length_mm, 0.0))
    i0, i1 = br.at(s0), br.at(s0 + st.length_mm)
    return br.points[i0:i1 + 1], br.radius[i0:i1 + 1]


def _circle(centre, axis, radius, arc_deg: float = 360.0):
    e1, e2 = _perp_basis(_unit(axis))
    a = np.radians(np.linspace(0.0, arc_deg, max(int(arc_deg / 8), 6)))
    return centre + radius * (np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2)


def _densify(pts: np.ndarray, step: float) -> np.ndarray:
    from .coronary import resample

    return resample(np.asarray(pts, float), step)
