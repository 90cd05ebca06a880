"""The coronary tree on the heart surface: branches, courses, calibres, dominance.

Branch names: ``RCA``, ``AM`` (acute marginal), ``PDA`` (posterior descending; from the RCA in
right and co-dominance, from the LCX in left dominance), ``PLB`` (posterolateral branch of a
right-dominant RCA), ``LM`` (left main), ``LAD``, ``D1``.. (diagonals), ``LCX``, ``OM1``..
(obtuse marginals). Each branch belongs to one of the three labelled arteries: the left main
and the diagonals to LAD (as in MASS: "mainstem + LAD"), the marginals to LCX.

Courses follow the grooves of the heart frame (:mod:`.heart`): the RCA in the right
atrioventricular groove from the right coronary sinus to the crux, the LAD down the anterior
interventricular groove (optionally round the apex), the LCX in the left atrioventricular
groove. Calibres taper linearly from the proximal to the distal lumen diameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import HeartSpec
from .heart import HeartModel

# Lumen diameters (mm), proximal -> distal, men, scale 1 (Dodge et al., Circulation 1992: LM 4.5,
# proximal LAD 3.7, distal LAD 1.9, proximal RCA 3.9 right-dominant / 2.8 left-dominant, proximal
# LCX 3.4 / 4.2; women ~9 % smaller). Branch and distal values in between are assumptions.
DIAMETERS = {
    "LM": (4.5, 4.3), "LAD": (3.7, 1.9), "D": (2.3, 1.2), "OM": (2.3, 1.3), "AM": (1.6, 1.0),
    "PDA": (2.0, 1.2), "PLB": (1.9, 1.1),
    ("RCA", "right"): (3.9, 2.6), ("RCA", "co"): (3.4, 2.2), ("RCA", "left"): (2.8, 1.6),
    ("LCX", "right"): (3.4, 1.8), ("LCX", "co"): (3.7, 2.2), ("LCX", "left"): (4.2, 2.6),
}
WALL_MM = 0.4  # the labelled artery = lumen + wall


@dataclass
class Branch:
    name: str
    artery: str
    parent: str | None
    points: np.ndarray  # (N, 3) LPS mm, 0.5 mm apart
    radius: np.ndarray  # (N,) lumen radius mm
    origin_s: float = 0.0  # arc length on the parent where this branch starts

    @property
    def s(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.points, axis=0), axis=1))])

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s_mm: float) -> int:
        """Index of the centreline point at arc length ``s_mm`` (clamped)."""
        return int(np.clip(np.searchsorted(self.s, s_mm), 0, len(self.points) - 1))


def _smooth(p: np.ndarray, passes: int = 3) -> np.ndarray:
    q = p.copy()
    for _ in range(passes):
        q[1:-1] = 0.25 * q[:-2] + 0.5 * q[1:-1] + 0.25 * q[2:]
    return q


def resample(points: np.ndarray, step: float = 0.5) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / step)), 1) + 1
    si = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(si, s, points[:, k]) for k in range(3)], axis=1)


def build_tree(spec: HeartSpec, hm: HeartModel) -> dict[str, Branch]:
    """All branches of one heart, keyed by name (deterministic in ``spec``)."""
    rng = np.random.default_rng(spec.shape_seed)
    f = hm.frame
    au = f.envelope[2]
    ub = f.base_u
    cal = spec.calibre_scale
    dom = spec.dominance
    off = 2.3 * cal  # centreline just outside the myocardium, in the epicardial fat

    def surf(theta, u, o=off):
        return f.surface(theta, u, o)

    def groove(th0, th1, u, n=None):
        n = n or max(int(abs(th1 - th0) / 2.0), 4)
        th = np.linspace(th0, th1, n)
        return surf(th, u + rng.normal(0, 0.6) * np.sin(np.linspace(0, np.pi, n)))

    def make(name, artery, parent, pts, diam, origin_s=0.0):
        p = resample(_smooth(resample(np.asarray(pts, float), 1.0)), 0.5)
        d0, d1 = diam
        r = cal * 0.5 * (d0 + (d1 - d0) * np.linspace(0.0, 1.0, len(p)))
        return Branch(name, artery, parent, p, r, origin_s)

    tree: dict[str, Branch] = {}
    # --- RCA: ostium -> right AV groove -> (crux) ---------------------------------------------
    th_entry = 48.0 + rng.normal(0, 5)
    th_end = {"right": -90.0, "co": -88.0, "left": -35.0}[dom] + rng.normal(0, 4)
    entry = surf(th_entry, ub + 4.0)
    lead_in = (hm.ostium_rca + entry) / 2 + 6.0 * _unit(hm.ostium_rca - hm.root_centre)
    rca_pts = np.concatenate([hm.ostium_rca[None], lead_in[None], groove(th_entry, th_end, ub + 3.0)])
    tree["RCA"] = make("RCA", "RCA", None, rca_pts, DIAMETERS[("RCA", dom)])
    rca = tree["RCA"]
    # acute marginal from the RCA near theta ~ 5 deg
    am_o = rca.at(_arc_to_theta(rca, f, 8.0))
    am_pts = np.concatenate([rca.points[am_o][None], surf(np.linspace(6, 14, 12), np.linspace(ub + 8, 0.45 * au, 12))])
    tree["AM"] = make("AM", "RCA", "RCA", am_pts, DIAMETERS["AM"], rca.s[am_o])
    if dom in ("right", "co"):
        pda_end = (0.72 if dom == "right" else 0.55) * au
        pda_pts = np.concatenate([rca.points[-1][None],
                                  surf(-90 + rng.normal(0, 4) + np.linspace(0, 6, 20), np.linspace(ub + 6, pda_end, 20))])
        tree["PDA"] = make("PDA", "RCA", "RCA", pda_pts, DIAMETERS["PDA"], rca.length)
    if dom == "right":
        plb_pts = np.concatenate([rca.points[-1][None], groove(-92, -118, ub + 3.0, 10),
                                  surf(np.linspace(-120, -128, 10), np.linspace(ub + 6, 0.3 * au, 10))])
        tree["PLB"] = make("PLB", "RCA", "RCA", plb_pts, DIAMETERS["PLB"], rca.length)

    # --- Left main -> LAD and LCX ----------------------------------------------------------------
    g = surf(100.0 + rng.normal(0, 4), ub + 7.0)
    lm_dir = g - hm.ostium_lm
    dist = float(np.linalg.norm(lm_dir))
    lm_len = float(np.clip(spec.lm_length_mm, 2.0, max(dist - 2.0, 2.5)))
    bif = hm.ostium_lm + lm_dir / dist * lm_len
    tree["LM"] = make("LM", "LAD", None, np.stack([hm.ostium_lm, (hm.ostium_lm + bif) / 2, bif]), DIAMETERS["LM"])
    th_ant = 100.0 + rng.normal(0, 5)
    lad_u = np.linspace(ub + 9.0, 0.965 * au, 40)
    lad_pts = [bif[None], ((bif + g) / 2)[None], surf(th_ant + 4 * np.sin(np.linspace(0, 3, 40)), lad_u)]
    if spec.lad_wraps_apex:
        lad_pts.append(surf(th_ant - 180.0 + np.zeros(8), np.linspace(0.96 * au, 0.8 * au, 8)))
    tree["LAD"] = make("LAD", "LAD", "LM", np.concatenate(lad_pts), DIAMETERS["LAD"], tree["LM"].length)
    lad = tree["LAD"]
    for i in range(spec.n_diagonals):
        frac = 0.18 + 0.22 * i + rng.uniform(-0.04, 0.04)
        k = lad.at(frac * lad.length)
        u0 = float(f.local(lad.points[k])[2])
        pts = np.concatenate([lad.points[k][None],
                              surf(np.linspace(th_ant + 12, th_ant + 55 + rng.uniform(-8, 8), 16),
                                   np.linspace(u0 + 4, min(u0 + 38 * f.scale, 0.9 * au), 16))])
        tree[f"D{i + 1}"] = make(f"D{i + 1}", "LAD", "LAD", pts, DIAMETERS["D"], lad.s[k])

    th_lcx0 = 118.0 + rng.normal(0, 4)
    th_lcx1 = {"right": 212.0, "co": 250.0, "left": 270.0}[dom] + rng.normal(0, 6)
    lcx_pts = np.concatenate([bif[None], groove(th_lcx0, th_lcx1, ub + 3.0)])
    tree["LCX"] = make("LCX", "LCX", "LM", lcx_pts, DIAMETERS[("LCX", dom)], tree["LM"].length)
    lcx = tree["LCX"]
    if dom == "left":
        pda_pts = np.concatenate([lcx.points[-1][None], surf(270 + np.linspace(0, -6, 20), np.linspace(ub + 6, 0.7 * au, 20))])
        tree["PDA"] = make("PDA", "LCX", "LCX", pda_pts, DIAMETERS["PDA"], lcx.length)
    for i in range(spec.n_marginals):
        th = th_lcx0 + (th_lcx1 - th_lcx0) * (0.3 + 0.55 * i / max(spec.n_marginals, 1)) + rng.uniform(-6, 6)
        k = lcx.at(_arc_to_theta(lcx, f, th))
        pts = np.concatenate([lcx.points[k][None], surf(np.linspace(th + 3, th + 14, 14),
                                                        np.linspace(ub + 8, 0.5 * au, 14))])
        tree[f"OM{i + 1}"] = make(f"OM{i + 1}", "LCX", "LCX", pts, DIAMETERS["OM"], lcx.s[k])
    return tree


def _unit(v) -> np.ndarray:
    return np.asarray(v, float) / max(float(np.linalg.norm(v)), 1e-9)


def _arc_to_theta(branch: Branch, frame, theta_deg: float) -> float:
    """Arc length along ``branch`` where its heart-frame angle comes closest to ``theta_deg``."""
    loc = frame.local(branch.points)
    th = np.degrees(np.arctan2(loc[:, 1], loc[:, 0]))
    diff = np.abs((th - theta_deg + 180.0) % 360.0 - 180.0)
    return float(branch.s[int(np.argmin(diff))])


def outer_radius(branch: Branch) -> np.ndarray:
    return branch.radius + WALL_MM


def branch_names(spec: HeartSpec) -> dict[str, str]:
    """Branch name -> artery for a heart spec (without building the geometry)."""
    out = {"RCA": "RCA", "AM": "RCA", "LM": "LAD", "LAD": "LAD", "LCX": "LCX"}
    if spec.dominance in ("right", "co"):
        out["PDA"] = "RCA"
    if spec.dominance == "right":
        out["PLB"] = "RCA"
    if spec.dominance == "left":
        out["PDA"] = "LCX"
    out.update({f"D{i + 1}": "LAD" for i in range(spec.n_diagonals)})
    out.update({f"OM{i + 1}": "LCX" for i in range(spec.n_marginals)})
    return out
