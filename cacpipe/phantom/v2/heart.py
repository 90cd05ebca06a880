"""The heart in its own frame: ventricles, atria, walls, aortic root with sinuses and ostia.

Heart frame (mm): ``u`` along the long axis from the base towards the apex, ``s``
the direction in the short-axis plane closest to the patient's head ("superior/anterior"
wall, where the anterior interventricular groove runs), ``t = u x s`` (towards the patient's
right and anterior, where the right ventricle lies). The long axis points to the patient's
left (azimuth), anteriorly and inferiorly (elevation); ``roll`` turns the heart about it.

Structures that are not rigid with the heart at the reference orientation (atria, aortic root)
are given as LPS offsets at the reference orientation (azimuth 45, elevation 25, roll 0) and
carried along rigidly, so a rotated heart keeps its internal anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import HeartSpec
from .raster import Capsules, Ellipsoid

# Reference ventricular envelope (mm, scale 1): semi-axes along t, s, u; the base plane cuts it at u_b.
ENVELOPE = np.array([50.0, 45.0, 60.0])
BASE_U = -22.0
RV_WALL_MM = 4.0
ATRIAL_WALL_MM = 2.5


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def axes_from_angles(azimuth_deg: float, elevation_deg: float, roll_deg: float) -> np.ndarray:
    """3x3 matrix whose columns are the t, s, u axes of the heart frame in LPS."""
    a, e, r = np.radians([azimuth_deg, elevation_deg, roll_deg])
    u = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), -np.sin(e)])
    s0 = _unit(np.array([0.0, 0.0, 1.0]) - u[2] * u)
    t0 = np.cross(u, s0)
    s = np.cos(r) * s0 - np.sin(r) * t0
    t = np.cross(u, s)
    return np.stack([t, s, u], axis=1)


REF_AXES = axes_from_angles(45.0, 25.0, 0.0)


@dataclass(frozen=True)
class HeartFrame:
    centre: np.ndarray  # LPS of the frame origin (ventricular centre)
    axes: np.ndarray  # columns t, s, u in LPS
    scale: float

    def world(self, tsu) -> np.ndarray:
        """Frame coordinates (..., 3) (mm, already scaled) -> LPS."""
        return self.centre + np.asarray(tsu, float) @ self.axes.T

    def local(self, xyz) -> np.ndarray:
        return (np.asarray(xyz, float) - self.centre) @ self.axes

    def ref_offset(self, base_tsu, offset_ref_lps) -> np.ndarray:
        """LPS of a point given as an LPS offset at the reference orientation from a frame point."""
        off_local = np.asarray(offset_ref_lps, float) @ REF_AXES  # reference LPS offset -> frame
        return self.world(np.asarray(base_tsu, float) + self.scale * off_local)

    def ref_rotation(self) -> np.ndarray:
        """Rotation taking reference-orientation LPS directions to this heart's LPS directions."""
        return self.axes @ REF_AXES.T

    @property
    def envelope(self) -> np.ndarray:
        return ENVELOPE * self.scale

    @property
    def base_u(self) -> float:
        return BASE_U * self.scale

    def surface(self, theta_deg, u, offset: float = 0.0) -> np.ndarray:
        """LPS points on the ventricular envelope at angle ``theta`` (0 = +t, 90 = +s) and long-axis ``u``.

        ``offset`` pushes them outward along the surface normal (mm).
        """
        th = np.radians(np.asarray(theta_deg, float))
        u = np.asarray(u, float) * np.ones_like(th)
        at, as_, au = self.envelope
        k = np.sqrt(np.clip(1.0 - (u / au) ** 2, 1e-4, None))
        p = np.stack([at * k * np.cos(th), as_ * k * np.sin(th), u], axis=-1)
        n = p / np.array([at, as_, au]) ** 2
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        return self.world(p + offset * n)


REF_SIZE = 1.0  # scale 1: an adult heart of ~500 mL (myocardium and chambers)


def frame_of(spec: HeartSpec) -> HeartFrame:
    return HeartFrame(np.asarray(spec.centre_mm, float), axes_from_angles(spec.azimuth_deg, spec.elevation_deg,
                                                                          spec.roll_deg), REF_SIZE * float(spec.scale))


@dataclass
class HeartModel:
    """Solids of the heart (in paint order) and landmarks the coronary tree and findings need."""

    frame: HeartFrame
    layers: list  # (solid, material, is_heart) in paint order, outermost first
    ostium_rca: np.ndarray
    ostium_lm: np.ndarray
    root_centre: np.ndarray  # aortic annulus centre (LPS)
    root_axis: np.ndarray  # unit vector up the aortic root
    root_radius: float
    ascending_top: np.ndarray
    rvot: np.ndarray  # start of the pulmonary trunk
    ra_centre: np.ndarray
    la_centre: np.ndarray
    mitral_centre: np.ndarray
    mitral_radius: float
    lv_apex: np.ndarray
    rv_apex: np.ndarray
    envelope_solids: list  # outer heart solids (for the fat / pericardium shells)


def build_heart(spec: HeartSpec, carina_z: float = 0.0) -> HeartModel:
    """The heart's solids (frame-rigid) and its landmarks."""
    f = frame_of(spec)
    sc = f.scale
    env = f.envelope
    ub = f.base_u
    rot = f.axes  # local ellipsoids of the ventricles are axis-aligned in the frame
    ref_rot = f.ref_rotation()
    base = np.array([0.0, 0.0, ub])
    cut_keep_ventricle = (f.world(base), f.axes[:, 2])  # keep u >= u_b

    # Ventricles.
    ventricles = Ellipsoid(f.world([0, 0, 0]), env, rot, cut=cut_keep_ventricle)
    lv_c = np.array([-10.0, 0.0, 3.0]) * sc
    lv_epi_semi = np.array([38.0, 39.0, 57.0]) * sc
    lv_epi = Ellipsoid(f.world(lv_c), lv_epi_semi, rot, cut=cut_keep_ventricle)
    w = spec.lv_wall_mm
    lv_cav = Ellipsoid(f.world(lv_c + np.array([0, 0, 3.0]) * sc), lv_epi_semi - w, rot, cut=cut_keep_ventricle)
    rv_shell = Ellipsoid(f.world([0, 0, 0]), env - RV_WALL_MM, rot, cut=cut_keep_ventricle)

    # Atria, appendages (reference-orientation LPS offsets from the base centre, carried rigidly).
    def ref_ellipsoid(off, semi):
        # 9 mm towards the apex: the atria sit on the ventricular base (blood and muscle join across
        # the AV junction; the AV-groove fat stays at the outer rim)
        return Ellipsoid(f.ref_offset(base, off) + 9.0 * sc * f.axes[:, 2], np.asarray(semi) * sc, ref_rot)

    la_off, la_semi = (6.0, 24.0, 10.0), (30.0, 16.0, 21.0)
    ra_off, ra_semi = (-33.0, 4.0, -2.0), (21.0, 24.0, 27.0)
    laa_off, laa_semi = (33.0, 8.0, 12.0), (12.0, 8.0, 8.0)
    raa_off, raa_semi = (-24.0, -22.0, 10.0), (11.0, 10.0, 9.0)
    atria = [ref_ellipsoid(o, s) for o, s in ((la_off, la_semi), (ra_off, ra_semi), (laa_off, laa_semi),
                                              (raa_off, raa_semi))]
    atria_cav = [ref_ellipsoid(o, np.asarray(s) - ATRIAL_WALL_MM) for o, s in
                 ((la_off, la_semi), (ra_off, ra_semi), (laa_off, laa_semi), (raa_off, raa_semi))]

    # Aortic root (frame coordinates): at the base, towards the superior wall, between the atria.
    t_ax, s_ax, u_ax = f.axes[:, 0], f.axes[:, 1], f.axes[:, 2]
    root_c = f.world(np.array([9.0, 20.0, 0.0]) * sc + [0.0, 0.0, ub - 6.0 * sc])
    root_axis = _unit(-0.5 * u_ax + 0.85 * s_ax + 0.3 * t_ax)
    root_r = 11.5 * sc
    towards_rca = np.cos(np.radians(48.0)) * t_ax + np.sin(np.radians(48.0)) * s_ax
    e1 = _unit(towards_rca - (towards_rca @ root_axis) * root_axis)
    e2 = np.cross(root_axis, e1)

    def around(angle_deg, radius, height):
        a = np.radians(angle_deg)
        return root_c + height * root_axis + radius * (np.cos(a) * e1 + np.sin(a) * e2)

    # Sinuses: right coronary (towards the RCA's groove), left coronary (the one of +-120 deg that
    # faces the left ventricle, -t), non-coronary.
    left = 120.0 if (around(120.0, 1.0, 0.0) - root_c) @ t_ax < (around(-120.0, 1.0, 0.0) - root_c) @ t_ax else -120.0
    sinus_angle = {"right": 0.0, "left": left, "non": -left}
    sinus_r = 9.5 * sc
    sinuses = [Ellipsoid(around(a, 6.0 * sc, 9.0 * sc), (sinus_r, sinus_r, sinus_r * 1.1)) for a in sinus_angle.values()]
    stj = root_c + 22.0 * sc * root_axis
    asc_top = np.array([root_c[0] - 4.0, root_c[1] - 2.0, carina_z + 12.0])
    root_tube = Capsules(np.stack([root_c, stj, stj + 15 * sc * root_axis]), np.array([root_r, 12.5 * sc, 13.5 * sc]))
    ost_h = 12.0 * sc
    ostium_rca = around(sinus_angle["right"], 6.0 * sc + sinus_r + 0.5, ost_h)
    ostium_lm = around(sinus_angle["left"] * 0.85, 6.0 * sc + sinus_r + 0.5, ost_h)

    # Right ventricular outflow up to the pulmonary valve: superior-left of the aortic root.
    rvot = f.world(np.array([0.0, 42.0, 0.0]) * sc + [0.0, 0.0, ub - 4.0 * sc])
    rvot_tube = Capsules(np.stack([f.world([25.0 * sc, 15.0 * sc, 10.0 * sc]), rvot]), np.array([14.0, 12.5]) * sc)

    mitral_c = f.ref_offset(base, (12.0, 10.0, -2.0))
    layers = [
        (ventricles, "myocardium", True),
        (rvot_tube, "myocardium", True),
        *[(a, "myocardium", True) for a in atria],
        (rv_shell, "blood_right", True),  # the RV cavity is what the LV epicardium leaves of it
        (lv_epi, "myocardium", True),
        (lv_cav, "blood_left", True),
        (Capsules(np.stack([f.world([25.0 * sc, 15.0 * sc, 10.0 * sc]), rvot]), np.array([10.0, 9.5]) * sc),
         "blood_right", True),
        (atria_cav[0], "blood_left", True), (atria_cav[2], "blood_left", True),
        (atria_cav[1], "blood_right", True), (atria_cav[3], "blood_right", True),
        *[(s, "blood_left", False) for s in sinuses],
        (root_tube, "blood_left", False),
    ]
    # Apex points (for lead tips and the LAD's end).
    lv_apex = f.world(lv_c + np.array([0, 0, lv_epi_semi[2] - w]))
    rv_apex = f.world(np.array([30.0, -5.0, 30.0]) * sc)
    return HeartModel(
        frame=f, layers=layers, ostium_rca=ostium_rca, ostium_lm=ostium_lm, root_centre=root_c,
        root_axis=root_axis, root_radius=root_r, ascending_top=asc_top, rvot=rvot,
        ra_centre=f.ref_offset(base, ra_off) + 9.0 * sc * f.axes[:, 2],
        la_centre=f.ref_offset(base, la_off) + 9.0 * sc * f.axes[:, 2], mitral_centre=mitral_c,
        mitral_radius=14.0 * sc, lv_apex=lv_apex, rv_apex=rv_apex,
        envelope_solids=[ventricles, *atria[:2], root_tube, rvot_tube],
    )


def grown(solid, by_mm: float):
    """The same solid grown by ``by_mm`` (ellipsoids and tubes: semi-axes/radii + by_mm)."""
    if isinstance(solid, Ellipsoid):
        cut = None
        if solid.cut is not None:
            p0, n = solid.cut
            cut = (p0 - by_mm * n, n)
        return Ellipsoid(solid.c, solid.s + by_mm, solid.r, cut=cut)
    if isinstance(solid, Capsules):
        return Capsules(solid.p, solid.rad + by_mm)
    raise TypeError(f"cannot grow {type(solid).__name__}")
