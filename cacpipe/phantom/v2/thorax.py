"""Body, lungs, diaphragm and upper abdomen, mediastinum, great vessels, airways and skeleton.

All positions are LPS mm with the carina at z = 0. Sizes follow the habitus; the heart model
(:mod:`.heart`) supplies where the great vessels attach. Returns solids in paint order, each
with a material name (:mod:`.materials` turns materials into HU for the contrast phase).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ChestConfig
from .heart import HeartModel
from .raster import Both, Box, Capsules, Ellipsoid, Solid, ZCylinder

STERNUM_MM = 16.0  # skin fat + sternum in front of the mediastinum, at the midline
SPINE_FROM_BACK_MM = 50.0  # subcutaneous fat excluded: back muscles + posterior elements to the VB centre
VB_SEMI_AP = 17.0  # vertebral body half-depth


@dataclass
class Body:
    """Landmarks of the trunk derived from the habitus (LPS mm, carina at z = 0)."""

    bx: float
    by: float
    width: float
    depth: float
    cavity_a: float  # thoracic cavity semi-axes (inside ribs) at heart level
    cavity_b: float
    sternum_y: float  # inner surface of the sternum
    spine_y: float  # centre of the vertebral bodies
    trachea_y: float
    z_apex: float  # lung apex
    z_lo: float  # lowest z drawn
    z_hi: float  # highest z drawn
    dome_r: tuple[float, float, float]  # right diaphragm dome apex (x, y, z)
    dome_l: tuple[float, float, float]


def body_layout(cfg: ChestConfig, heart_bottom_z: float) -> Body:
    h = cfg.habitus
    bx, by = h.body_offset_xy_mm
    w, d = h.body_width_mm, h.body_depth_mm
    wall = h.fat_mm + h.muscle_mm + 14.0
    ca, cb = w / 2 - wall, d / 2 - wall
    spine_y = by + d / 2 - h.fat_mm - SPINE_FROM_BACK_MM
    acq = cfg.acquisition
    z_top = acq.z_top_mm
    z_bot = z_top - (acq.n_slices - 1) * acq.slice_spacing_mm
    zr = heart_bottom_z + 8.0 + h.diaphragm_mm
    return Body(
        bx=bx, by=by, width=w, depth=d, cavity_a=ca, cavity_b=cb, sternum_y=by - d / 2 + h.fat_mm + STERNUM_MM, spine_y=spine_y,
        trachea_y=spine_y - 48.0, z_apex=95.0, z_lo=z_bot - 20.0, z_hi=z_top + 20.0,
        dome_r=(bx - 0.22 * w, by + 0.05 * d, zr), dome_l=(bx + 0.24 * w, by + 0.05 * d, zr - 14.0),
    )


def _zs(b: Body, n: int = 24) -> np.ndarray:
    return np.linspace(b.z_lo, b.z_hi, n)


def _taper(zs: np.ndarray, z_from: float, z_to: float, lo: float) -> np.ndarray:
    """1 below ``z_from``, falling smoothly to ``lo`` at ``z_to`` (and above)."""
    s = np.clip((zs - z_from) / (z_to - z_from), 0.0, 1.0)
    return 1.0 - (1.0 - lo) * (3 * s**2 - 2 * s**3)


def diaphragm_height(b: Body, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z of the diaphragm under each (y, x) pixel: the higher of two paraboloid domes."""
    xx, yy = np.meshgrid(x, y)
    rc = 115.0

    def dome(c):
        return c[2] - ((xx - c[0]) ** 2 + (0.8 * (yy - c[1])) ** 2) / (2 * rc)

    return np.maximum(dome(b.dome_r), dome(b.dome_l))


def lung_top_height(b: Body, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z of the lung apices (round domes above each lung), as a height field."""
    xx, yy = np.meshgrid(x, y)
    out = np.full(xx.shape, -1e4)
    for side in (-1, 1):
        cx = b.bx + side * 0.45 * b.cavity_a
        top = b.z_apex - ((xx - cx) ** 2 + (yy - b.by - 0.1 * b.depth) ** 2) / (2 * 45.0)
        out = np.maximum(out, top)
    return out


def trunk_solids(cfg: ChestConfig, b: Body) -> list[tuple[Solid, str]]:
    """Outer body layers, in paint order: fat, muscle, (breasts); the lungs come separately."""
    h = cfg.habitus
    zs = _zs(b)
    # The trunk narrows a little towards the neck and is widest at the lower chest.
    k = _taper(zs, 40.0, 140.0, 0.86)
    out: list[tuple[Solid, str]] = [
        (ZCylinder(zs, b.bx, b.by, k * b.width / 2, k * b.depth / 2), "fat"),
        (ZCylinder(zs, b.bx, b.by, k * b.width / 2 - h.fat_mm, k * b.depth / 2 - h.fat_mm), "muscle"),
    ]
    if h.breast_mm > 0:  # supine: flattened, spread laterally over the pectoral muscles
        for side in (-1, 1):
            c = (b.bx + side * 0.21 * b.width, b.by - b.depth / 2 + 0.3 * h.breast_mm, -80.0)
            out.append((Ellipsoid(c, (1.1 * h.breast_mm, 0.55 * h.breast_mm, 0.8 * h.breast_mm)), "breast"))
    return out


def cavity(b: Body) -> ZCylinder:
    zs = _zs(b)
    k = _taper(zs, 30.0, 110.0, 0.7)
    return ZCylinder(zs, b.bx, b.by + 0.02 * b.depth, k * b.cavity_a, b.cavity_b * _taper(zs, 30.0, 110.0, 0.85))


def mediastinum(b: Body) -> Solid:
    """Central fat column between the lungs, from the thoracic inlet to the diaphragm."""
    zs = _zs(b)
    half = np.interp(zs, [-200.0, -60.0, 0.0, 60.0, 200.0], [30.0, 34.0, 26.0, 20.0, 20.0])
    cy = (b.sternum_y + b.spine_y) / 2
    return ZCylinder(zs, b.bx + 6.0, cy, half, (b.spine_y - b.sternum_y) / 2)


def abdomen_solids(b: Body, rng: np.random.Generator) -> list[tuple[Solid, str]]:
    """Liver (right and the left lobe anteriorly), spleen, stomach; drawn below the diaphragm only."""
    zs = _zs(b)
    cav = cavity(b)
    liver = Ellipsoid((b.bx - 0.12 * b.width, b.by - 0.02 * b.depth, b.dome_r[2] - 70.0),
                      (0.42 * b.width, 0.45 * b.depth, 95.0))
    out: list[tuple[Solid, str]] = [(Both(ZCylinder(zs, b.bx, b.by, b.cavity_a + 8, b.cavity_b + 8), cav), "abdomen"),
                                    (liver, "liver")]
    spleen = Ellipsoid((b.bx + 0.3 * b.width, b.by + 0.22 * b.depth, b.dome_l[2] - 45.0), (35.0, 45.0, 55.0))
    out.append((spleen, "spleen"))
    stomach_c = (b.bx + 0.17 * b.width, b.by - 0.08 * b.depth, b.dome_l[2] - 45.0)
    out.append((Ellipsoid(stomach_c, (45.0, 35.0, 40.0)), "stomach"))
    if rng.random() < 0.6:  # gastric air under the left dome
        out.append((Ellipsoid((stomach_c[0], stomach_c[1] - 5.0, b.dome_l[2] - 22.0), (28.0, 20.0, 12.0)), "air"))
    return out


def lung_vessels(b: Body, rng: np.random.Generator) -> list[tuple[Solid, str]]:
    """Branching pulmonary vessels from each hilum (a random tree per lobe)."""
    out: list[tuple[Solid, str]] = []
    cav_a, cav_b = b.cavity_a, b.cavity_b

    def inside(p):
        return (((p[0] - b.bx) / (0.92 * cav_a)) ** 2 + ((p[1] - b.by) / (0.92 * cav_b)) ** 2 <= 1.0
                and b.dome_r[2] - 60 < p[2] < b.z_apex - 10)

    for side in (-1, 1):
        hilum = np.array([b.bx + side * 48.0, b.trachea_y + 18.0, -12.0])
        for lobe_dir in ((side * 0.6, -0.3, 0.75), (side * 0.9, -0.2, -0.1), (side * 0.5, 0.5, -0.7),
                         (side * 0.7, -0.6, -0.4)):
            stack = [(hilum, np.asarray(lobe_dir, float) / np.linalg.norm(lobe_dir), 5.0, 28.0)]
            pts_segs = []
            while stack:
                p, d, r, length = stack.pop()
                q = p + d * length
                if not inside(q) or r < 0.7:
                    continue
                pts_segs.append((p, q, r))
                for _ in range(2):
                    nd = d + rng.normal(0, 0.45, 3)
                    nd /= np.linalg.norm(nd)
                    stack.append((q, nd, r * 0.72, length * 0.78))
            for p, q, r in pts_segs:
                out.append((Capsules(np.stack([p, q]), np.array([r, r * 0.9])), "blood_right"))
    return out


def vessel_solids(cfg: ChestConfig, b: Body, hm: HeartModel) -> list[tuple[Solid, str]]:
    """Aorta, arch branches, pulmonary arteries and veins, venae cavae; airways and oesophagus."""
    age = cfg.habitus.age
    r_asc = 14.0 * (1.0 + 0.004 * (age - 60))
    sp = b.spine_y
    arch = np.array([
        hm.root_centre + 30.0 * hm.root_axis, hm.ascending_top, [b.bx + 2.0, b.trachea_y - 14.0, 32.0],
        [b.bx + 16.0, b.trachea_y + 8.0, 36.0], [b.bx + 28.0, sp - 16.0, 22.0], [b.bx + 30.0, sp - 12.0, -40.0],
        [b.bx + 24.0, sp - 16.0, b.z_lo],
    ])
    aorta = Capsules(arch, np.array([r_asc, r_asc, r_asc * 0.95, 12.5, 12.0, 11.5, 11.0]))
    out: list[tuple[Solid, str]] = [(aorta, "blood_left")]
    for dx in (-6.0, 6.0, 16.0):  # brachiocephalic, left carotid, left subclavian
        p0 = np.array([b.bx + dx, b.trachea_y - 8.0 + 0.6 * dx, 38.0])
        out.append((Capsules(np.stack([p0, p0 + [2.5 * dx, 4.0, 120.0]]), np.array([6.5, 5.0])), "blood_left"))
    bif = np.array([b.bx + 14.0, b.trachea_y + 4.0, -16.0])
    out += [
        (Capsules(np.stack([hm.rvot, (hm.rvot + bif) / 2 + [0, -4, 4], bif]), np.array([12.5, 13.0, 12.0])), "blood_right"),
        (Capsules(np.stack([bif, [b.bx + 52.0, b.trachea_y + 14.0, -8.0]]), np.array([11.0, 9.0])), "blood_right"),
        (Capsules(np.stack([bif, [b.bx - 20.0, b.trachea_y + 10.0, -20.0], [b.bx - 52.0, b.trachea_y + 16.0, -22.0]]),
                  np.array([11.0, 10.0, 9.0])), "blood_right"),
    ]
    for side, dz in ((-1, 8.0), (-1, -12.0), (1, 8.0), (1, -12.0)):  # pulmonary veins into the LA
        p0 = hm.la_centre + np.array([side * 14.0, 6.0, dz * 0.6])
        out.append((Capsules(np.stack([p0, p0 + [side * 34.0, 6.0, dz]]), np.array([7.0, 6.0])), "blood_left"))
    svc_bottom = hm.ra_centre + np.array([2.0, 0.0, 22.0])
    out.append((Capsules(np.stack([[b.bx - 32.0, b.trachea_y - 16.0, b.z_hi], [b.bx - 28.0, b.trachea_y - 12.0, 10.0],
                                   svc_bottom]), np.array([9.5, 10.0, 10.0])), "blood_right"))
    ivc_top = hm.ra_centre + np.array([6.0, 10.0, -18.0])
    out.append((Capsules(np.stack([ivc_top, [ivc_top[0] + 6.0, ivc_top[1] + 18.0, b.dome_r[2] - 20.0],
                                   [ivc_top[0] + 8.0, ivc_top[1] + 22.0, b.z_lo]]), np.array([12.0, 12.0, 11.0])),
                "blood_right"))
    # Oesophagus between the left atrium and the spine, then the airways.
    out.append((Capsules(np.array([[b.bx + 2.0, sp - 28.0, b.z_hi], [b.bx + 5.0, sp - 28.0, -60.0],
                                   [b.bx + 20.0, sp - 36.0, b.z_lo]]), 7.5), "muscle"))
    carina = np.array([b.bx, b.trachea_y, 0.0])
    out.append((Capsules(np.stack([[b.bx, b.trachea_y - 12.0, b.z_hi], [b.bx, b.trachea_y - 6.0, 60.0], carina]),
                         np.array([11.0, 11.0, 10.0])), "muscle"))
    out.append((Capsules(np.stack([[b.bx, b.trachea_y - 12.0, b.z_hi], [b.bx, b.trachea_y - 6.0, 60.0], carina]),
                         np.array([9.0, 9.0, 8.0])), "air"))
    for side, end in ((-1, [-44.0, 14.0, -22.0]), (1, [48.0, 16.0, -14.0])):
        e = carina + np.array(end)
        out.append((Capsules(np.stack([carina, e]), np.array([6.5, 5.5])), "air"))
        for d in ((side * 16.0, -6.0, 22.0), (side * 18.0, 4.0, -26.0), (side * 8.0, 14.0, -30.0)):
            out.append((Capsules(np.stack([e, e + d]), np.array([4.0, 3.0])), "air"))
    return out


def skeleton_solids(cfg: ChestConfig, b: Body) -> list[tuple[Solid, str]]:
    """Spine with discs and posterior elements, ribs with costal cartilage, sternum, clavicles, scapulae."""
    zs = _zs(b)
    sp = b.spine_y
    out: list[tuple[Solid, str]] = []
    kyph = sp + 0.00012 * (zs + 40.0) ** 2  # a gentle thoracic kyphosis
    out.append((ZCylinder(zs, b.bx, kyph, 21.0, VB_SEMI_AP), "cortex"))
    out.append((ZCylinder(zs, b.bx, kyph, 19.0, VB_SEMI_AP - 2.0), "cancellous"))
    level = 26.0
    for z0 in np.arange(np.floor(b.z_lo / level) * level, b.z_hi + level, level):
        out.append((ZCylinder(np.array([z0, z0 + 5.0]), b.bx, sp + 0.00012 * (z0 + 40.0) ** 2, 20.0, 17.0), "disc"))
        yk = sp + 0.00012 * (z0 + 13.0 + 40.0) ** 2
        zc = z0 + 13.0
        out.append((Capsules(np.array([[b.bx - 14, yk + 22, zc], [b.bx, yk + 34, zc], [b.bx + 14, yk + 22, zc]]), 5.0),
                    "cortex"))
        out.append((Capsules(np.array([[b.bx, yk + 34, zc], [b.bx, yk + 56, zc - 12]]), 4.5), "cortex"))
        for side in (-1, 1):
            out.append((Capsules(np.array([[b.bx + side * 12, yk + 22, zc], [b.bx + side * 34, yk + 26, zc]]), 5.0),
                        "cortex"))
    out.append((ZCylinder(zs, b.bx, kyph + 29.0, 8.0, 7.0), "csf"))

    # Ribs: 12 pairs, posterior heads 26 mm apart from T1, running down as they come forward.
    ra, rb = b.cavity_a + 8.0, b.cavity_b + 8.0
    calcified = cfg.findings.costal_cartilage_calcium
    for i in range(12):
        z_head = 88.0 - i * 24.5
        drop = 30.0 + 3.0 * i
        floating = i >= 10
        for side in (-1, 1):
            # Angle from the patient's side (0) towards the back (+90) and the front (< 0).
            phis = np.radians(np.linspace(80.0, -60.0 if not floating else 20.0, 28))
            frac = np.linspace(0.0, 1.0, len(phis))
            x = b.bx + side * ra * np.cos(phis)
            y = b.by + rb * np.sin(phis)
            z = z_head - drop * frac ** 1.3
            pts = np.stack([x, y, z], axis=1)
            bone_end = len(phis) if floating else int(len(phis) * 0.78)
            out.append((Capsules(pts[:bone_end], 4.8), "rib"))
            if not floating and i < 10:
                tip = np.array([b.bx + side * 14.0, b.sternum_y - 5.0, pts[-1, 2] + (0 if i < 7 else 12.0)])
                cart = np.concatenate([pts[bone_end - 1:], tip[None]])
                out.append((Capsules(cart, 4.5), "cartilage_calcified" if calcified and i % 2 == 0 else "cartilage"))
    # Sternum (manubrium + body + xiphoid), clavicles, scapulae.
    zst = np.array([-135.0, -120.0, 0.0, 10.0, 50.0])  # xiphoid, body, manubrium
    half_w = np.array([6.0, 14.0, 15.0, 24.0, 26.0])
    out.append((ZCylinder(zst, b.bx, b.sternum_y - 7.0, half_w, 7.0), "cortex"))
    out.append((ZCylinder(zst, b.bx, b.sternum_y - 7.0, half_w - 1.5, 5.5), "cancellous"))
    for side in (-1, 1):
        out.append((Capsules(np.array([[b.bx + side * 16.0, b.sternum_y - 10.0, 50.0],
                                       [b.bx + side * 0.42 * b.width, b.by - 0.12 * b.depth, 72.0]]), 6.5), "cortex"))
        # scapula: a thin plate in the back muscles, outside the ribs, upper chest only
        rot = np.array([[np.cos(0.35), -side * np.sin(0.35), 0], [side * np.sin(0.35), np.cos(0.35), 0], [0, 0, 1.0]])
        y_sc = b.by + b.depth / 2 - cfg.habitus.fat_mm - 0.45 * cfg.habitus.muscle_mm - 6.0
        out.append((Ellipsoid((b.bx + side * 0.3 * b.width, y_sc, 50.0), (42.0, 4.0, 55.0), rot), "cortex"))
    return out


def table_solids(b: Body) -> list[tuple[Solid, str]]:
    """The patient table under the back (in every slice): a carbon-fibre top and its foam pad."""
    y0 = b.by + b.depth / 2
    return [(Box((b.bx - 230.0, y0 + 10.0, -1e4), (b.bx + 230.0, y0 + 22.0, 1e4)), "table"),
            (Box((b.bx - 225.0, y0 + 13.0, -1e4), (b.bx + 225.0, y0 + 19.0, 1e4)), "air"),
            (Box((b.bx - 220.0, y0, -1e4), (b.bx + 220.0, y0 + 10.0, 1e4)), "pad")]
