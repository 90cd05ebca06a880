"""Draw a varied v2 phantom config from a seed: patient, heart, plaques, findings, acquisition.

Every draw is deterministic in (seed, preset, overrides). Distributions are the phantom's
assumptions, chosen within published ranges (docs/phantom.md gives each range and its source).
Seeds: take them from :mod:`cacpipe.phantom.seeds` (training and evaluation seeds never mix).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from ...errors import ConfigError
from .config import Acquisition, ChestConfig, Findings, Habitus, HeartSpec, PlaqueSpec, StentSpec
from .coronary import branch_names
from .heart import build_heart
from .thorax import SPINE_FROM_BACK_MM, STERNUM_MM, VB_SEMI_AP

VENDORS = (
    ("GE MEDICAL SYSTEMS", "Revolution CT"), ("SIEMENS", "SOMATOM Definition AS"),
    ("CANON_MEC", "Aquilion ONE"), ("Philips", "iCT 256"),
)

# Grid presets: in-plane matrix, FOV rule, slice choices. "v2" samples realistic clinical
# protocols; "v2-small" is a quarter-size grid for tests; "v2-bench" is the 512 x 512 x 400 study;
# "v2-cardiac" is a gated calcium-scoring scan: a 200-250 mm field of view centred on the heart,
# 2.5-3 mm slices from above the aortic root to below the apex, gated noise, a still heart (as the
# public COCA and orCaScore scans).
PRESETS: dict[str, dict] = {
    "v2": {"shape_yx": (512, 512), "thickness": (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
           "p_thickness": (0.08, 0.17, 0.2, 0.1, 0.15, 0.15, 0.15), "overlap_p": 0.3},
    "v2-small": {"shape_yx": (256, 256), "thickness": (2.0, 2.5, 3.0), "p_thickness": (0.4, 0.4, 0.2),
                 "overlap_p": 0.0, "fov": 400.0},
    "v2-bench": {"shape_yx": (512, 512), "thickness": (1.0,), "p_thickness": (1.0,), "overlap_p": 0.0,
                 "fov": 400.0, "n_slices": 400},
    "v2-cardiac": {"shape_yx": (512, 512), "thickness": (2.5, 3.0), "p_thickness": (0.4, 0.6), "overlap_p": 0.0,
                   "cardiac": True},
}
CARDIAC_FOV_MM = (200.0, 250.0)
CARDIAC_MARGIN_MM = ((10.0, 25.0), (10.0, 20.0))  # above the heart's top (aortic root), below its bottom


def _sig(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def _choice(rng, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def random_config(seed: int, preset: str = "v2", **overrides) -> ChestConfig:
    """A varied phantom config for ``seed``.

    ``overrides`` replace fields after sampling: top-level ``ChestConfig`` fields, or nested
    ones as dicts, e.g. ``acquisition={"contrast_phase": "none"}, heart={"situs_inversus": True}``.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown v2 phantom preset {preset!r}; choose from {sorted(PRESETS)}")
    pre = PRESETS[preset]
    rng = np.random.default_rng(seed)
    hab = _habitus(rng)
    heart = _heart(rng, hab)
    plaques = _plaques(rng, hab, heart)
    findings, plaques = _findings(rng, hab, heart, plaques)
    acq = _acquisition(rng, hab, pre)
    cfg = ChestConfig(seed=int(seed), preset=preset, habitus=hab, heart=heart, plaques=plaques, findings=findings,
                      acquisition=acq)
    cfg = fit_heart(cfg, rng)
    if pre.get("cardiac"):
        cfg = cardiac_fov(cfg, rng)
    return apply_overrides(cfg, overrides)


def cardiac_fov(cfg: ChestConfig, rng) -> ChestConfig:
    """A gated cardiac scan of ``cfg``'s patient: the field of view centred on the heart, its z range only.

    The image grid is centred on (0, 0), so the whole patient (body and heart) moves in-plane until
    the heart's centre lies there; the body is cut by the field of view, as in a real cardiac
    reconstruction. Noise is that of a gated calcium-scoring protocol at 120 kV (about 15-30 HU at
    3 mm in soft tissue), the heart is nearly still and there is no contrast.
    """
    h, hs = cfg.habitus, cfg.heart
    lo, hi = heart_extent(hs)
    mid = (lo + hi) / 2.0
    dx, dy = -float(mid[0]), -float(mid[1])
    hab = replace(h, body_offset_xy_mm=(round(h.body_offset_xy_mm[0] + dx, 2), round(h.body_offset_xy_mm[1] + dy, 2)))
    heart = replace(hs, centre_mm=(round(hs.centre_mm[0] + dx, 2), round(hs.centre_mm[1] + dy, 2), hs.centre_mm[2]))
    acq = cfg.acquisition
    (a0, a1), (b0, b1) = CARDIAC_MARGIN_MM
    z_top = float(hi[2]) + float(rng.uniform(a0, a1))
    bottom = float(lo[2]) - float(rng.uniform(b0, b1))
    n = int(np.ceil((z_top - bottom) / acq.slice_spacing_mm)) + 1
    size = np.exp(0.0195 * 0.25 * (h.body_width_mm - 330))
    kernel = _choice(rng, ("soft", "standard"), (0.5, 0.5))
    kfac = {"soft": 0.85, "standard": 1.0}[kernel]
    noise = float(np.clip(rng.uniform(15, 28) * size * kfac * np.sqrt(3.0 / acq.slice_thickness_mm), 10, 40))
    acq = replace(acq, fov_mm=round(float(rng.uniform(*CARDIAC_FOV_MM)), 1), z_top_mm=round(z_top, 2), n_slices=n,
                  kernel=kernel, noise_hu=round(noise, 2), contrast_phase="none",
                  motion_scale=round(float(rng.uniform(0.0, 0.1)), 3), kvp=120, pitch=0.2)
    return replace(cfg, habitus=hab, heart=heart, acquisition=acq)


def apply_overrides(cfg: ChestConfig, overrides: dict) -> ChestConfig:
    """``replace`` with nested dicts allowed for the sub-configs."""
    nested = {}
    for k, v in overrides.items():
        sub = getattr(cfg, k, None)
        if isinstance(v, dict) and sub is not None and hasattr(sub, "__dataclass_fields__"):
            unknown = set(v) - set(asdict(sub))
            if unknown:
                raise ConfigError(f"unknown {k} field(s) {sorted(unknown)}")
            nested[k] = replace(sub, **v)
        else:
            nested[k] = v
    return replace(cfg, **nested)


def _habitus(rng) -> Habitus:
    male = rng.random() < 0.5
    age = int(np.clip(rng.normal(62, 12), 35, 90))
    z = float(np.clip(rng.normal(0, 1), -2.2, 2.6))  # body size (BMI-like z score)
    return Habitus(
        sex="M" if male else "F", age=age,
        body_width_mm=float(np.clip((345 if male else 318) + 36 * z, 260, 440)),
        body_depth_mm=float(np.clip((238 if male else 226) + 30 * z, 185, 330)),
        body_offset_xy_mm=(float(rng.normal(0, 7)), float(rng.normal(0, 5))),
        fat_mm=float(np.clip(15 + 9 * z + (0 if male else 4) + rng.normal(0, 3), 4, 60)),
        muscle_mm=float(np.clip(14 - 0.08 * (age - 60) + (2 if male else -1) + rng.normal(0, 2), 7, 22)),
        lung_hu=float(np.clip(rng.normal(-855, 22) - (40 if rng.random() < 0.1 else 0), -950, -780)),
        blood_hu=float(np.clip(rng.normal(42, 4), 28, 55)),
        bone_hu=float(np.clip(300 - 2.4 * (age - 40) + rng.normal(0, 30), 90, 340)),
        breast_mm=0.0 if male else float(np.clip(42 + 10 * z + rng.normal(0, 6), 22, 75)),
        diaphragm_mm=float(rng.normal(0, 8)),
    )


def _heart(rng, h: Habitus) -> HeartSpec:
    male = h.sex == "M"
    z = (h.body_width_mm - (345 if male else 318)) / 36.0
    scale = float(np.clip(rng.normal(1.0 + (0.04 if male else -0.03) + 0.002 * (h.age - 60), 0.06), 0.84, 1.2))
    if rng.random() < 0.05:  # cardiomegaly
        scale *= float(rng.uniform(1.12, 1.25))
    return HeartSpec(
        # A broader, shorter chest holds a more horizontal heart.
        azimuth_deg=float(np.clip(rng.normal(45 + 5 * z, 7), 28, 66)),
        elevation_deg=float(np.clip(rng.normal(27 - 5 * z, 6), 10, 45)),
        roll_deg=float(rng.normal(0, 8)),
        scale=scale,
        centre_mm=(float(rng.normal(20, 6)), 0.0, float(rng.normal(-82, 9))),
        lv_wall_mm=float(np.clip(rng.normal(10 + 0.05 * (h.age - 60), 1.4), 7, 16)),
        epicardial_fat_mm=float(np.clip(4.5 + 2.5 * z + 0.05 * (h.age - 60) + rng.normal(0, 1.2), 1.5, 14)),
        pericardial_effusion_mm=float(rng.uniform(4, 18)) if rng.random() < 0.05 else 0.0,
        dominance=_choice(rng, ("right", "co", "left"), (0.80, 0.10, 0.10)),
        lm_length_mm=float(np.clip(rng.normal(10.5, 4.5), 2, 22)),
        n_diagonals=int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2])),
        n_marginals=int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2])),
        lad_wraps_apex=bool(rng.random() < 0.7),
        calibre_scale=float((1.0 if male else 0.91) * np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
        shape_seed=int(rng.integers(2**31)),
    )


KIND_P = {"focal": 0.45, "tiny": 0.15, "bifurcation": 0.12, "ostial": 0.08, "diffuse": 0.20}


def _plaques(rng, h: Habitus, heart: HeartSpec) -> tuple[PlaqueSpec, ...]:
    male = h.sex == "M"
    if rng.random() >= _sig(-1.6 + 0.08 * (h.age - 50) + (0.9 if male else 0.0)):
        return ()
    n = int(min(1 + rng.poisson(np.exp(0.25 + 0.045 * (h.age - 60) + (0.3 if male else 0.0))), 25))
    names, side = plaque_branches(heart)
    return tuple(draw_plaque(rng, i + 1, names, side) for i in range(n))


def plaque_branches(heart: HeartSpec) -> tuple[dict, dict]:
    """Branch name -> artery, and per artery its side branches (where a plaque may sit)."""
    names = branch_names(heart)
    side = {a: [b for b, art in names.items() if art == a and b not in ("RCA", "LM", "LAD", "LCX")]
            for a in ("RCA", "LAD", "LCX")}
    return names, side


def draw_plaque(rng, pid: int, names: dict, side: dict) -> PlaqueSpec:
    """One plaque (kind, artery, branch, position, size, density) drawn from ``rng``; id ``pid``."""
    kind = _choice(rng, tuple(KIND_P), tuple(KIND_P.values()))
    artery = _choice(rng, ("LAD", "RCA", "LCX"), (0.45, 0.3, 0.25))
    main = {"LAD": "LAD", "RCA": "RCA", "LCX": "LCX"}[artery]
    branch = main if rng.random() < 0.8 or not side[artery] else _choice(rng, tuple(side[artery]))
    t = float(rng.beta(1.6, 3.2))
    dens = float(np.clip(np.exp(rng.normal(np.log(550), 0.45)), 200, 1600))
    if kind == "ostial":
        artery, branch = ("RCA", "RCA") if rng.random() < 0.5 else ("LAD", "LM")
        t = 0.0
    if kind == "bifurcation":
        options = [b for b in names if b not in ("RCA", "LM")]
        branch = _choice(rng, tuple(options))
        artery = names[branch]
        t = 0.0
    if kind == "tiny":
        d = float(rng.uniform(0.6, 1.6))
        spec = dict(length_mm=d, thickness_mm=d * float(rng.uniform(0.8, 1.2)), density_hu=float(rng.uniform(350, 900)))
    elif kind == "diffuse":
        spec = dict(length_mm=float(rng.uniform(15, 45)), thickness_mm=float(rng.uniform(0.5, 1.2)),
                    arc_deg=float(rng.uniform(90, 300)), density_hu=min(dens, 900.0))
    else:
        spec = dict(length_mm=float(rng.uniform(2, 9) if kind != "ostial" else rng.uniform(2, 5)),
                    thickness_mm=float(rng.uniform(0.8, 2.5)), arc_deg=float(rng.uniform(60, 240)),
                    n_lobes=int(rng.integers(2, 7)), density_hu=dens)
    return PlaqueSpec(id=pid, artery=artery, branch=branch, kind=kind, t=t,
                      angle_deg=float(rng.uniform(0, 360)), shape_seed=int(rng.integers(2**31)), **spec)


def under_stent(p: PlaqueSpec, stents) -> bool:
    """Whether plaque ``p`` lies under one of ``stents`` (it would be scored with the metal)."""
    return any(s.branch == p.branch and s.t - 0.05 <= p.t <= s.t + 0.3 for s in stents)


def _findings(rng, h: Habitus, heart: HeartSpec, plaques):
    age = h.age
    stents: list[StentSpec] = []
    if rng.random() < (0.12 if plaques else 0.02):
        for _ in range(1 + int(rng.random() < 0.3)):
            br = _choice(rng, ("LAD", "RCA", "LCX"), (0.5, 0.3, 0.2))
            if any(s.branch == br for s in stents):
                continue
            stents.append(StentSpec(branch=br, t=float(rng.uniform(0.05, 0.4)), length_mm=float(rng.uniform(12, 38))))
    # plaques do not sit under a stent (they would be scored with its metal)
    plaques = tuple(p for p in plaques if not under_stent(p, stents))
    plaques = tuple(replace(p, id=i + 1) for i, p in enumerate(plaques))
    device = "none"
    if rng.random() < 0.05:
        device = "pacemaker" if rng.random() < 0.7 else "icd"
    valve = "none"
    if rng.random() < 0.025 + 0.001 * max(age - 60, 0):
        valve = _choice(rng, ("mechanical_aortic", "tavi", "mitral_ring"), (0.4, 0.4, 0.2))
    eff = (0.0, 0.0)
    if rng.random() < 0.08:
        both = rng.random() < 0.5
        right = rng.random() < 0.6
        eff = (float(rng.uniform(10, 60)) if both or right else 0.0, float(rng.uniform(10, 60)) if both or not right else 0.0)
    f = Findings(
        aortic_valve_calcium_mm3=float(np.clip(np.exp(rng.normal(np.log(40), 1.0)), 3, 1500))
        if rng.random() < float(np.clip(0.1 + 0.01 * (age - 60), 0.03, 0.45)) and valve == "none" else 0.0,
        mitral_annulus_calcium_deg=float(rng.uniform(40, 200))
        if rng.random() < float(np.clip(0.05 + 0.006 * (age - 60), 0.02, 0.3)) else 0.0,
        aortic_wall_plaques=int(np.clip(1 + rng.poisson(max(0.0, 2 + 0.1 * (age - 60))), 1, 15))
        if rng.random() < float(np.clip(0.2 + 0.02 * (age - 50), 0.1, 0.9)) else 0,
        stents=tuple(stents),
        cabg=bool(age > 55 and rng.random() < 0.03),
        device=device, prosthetic_valve=valve, pleural_effusion_mm=eff,
        costal_cartilage_calcium=bool(rng.random() < float(np.clip(0.1 + 0.012 * (age - 40), 0.1, 0.7))),
    )
    return f, plaques


def _acquisition(rng, h: Habitus, pre: dict) -> Acquisition:
    vendor, model = VENDORS[int(rng.integers(len(VENDORS)))]
    kernel = _choice(rng, ("soft", "standard", "sharp"), (0.45, 0.4, 0.15))
    thick = float(_choice(rng, pre["thickness"], pre["p_thickness"]))
    spacing = thick
    if rng.random() < pre["overlap_p"]:
        spacing = max(0.5, round(thick * float(rng.choice([0.5, 0.8])), 3))
    fov = pre.get("fov") or float(np.clip(h.body_width_mm + rng.uniform(20, 90), 320, 500))
    if "fov" not in pre and rng.random() < 0.05:  # a large patient cut by the field of view
        fov = float(np.clip(h.body_width_mm - rng.uniform(0, 30), 300, 500))
    z_top = float(95 + rng.uniform(5, 30))
    length = float(rng.uniform(290, 350))
    n = pre.get("n_slices") or max(int(np.ceil(length / spacing)) + 1, 100)
    size = np.exp(0.0195 * 0.25 * (h.body_width_mm - 330))  # bigger patients, noisier (partly compensated)
    kfac = {"soft": 0.85, "standard": 1.0, "sharp": 1.9}[kernel]
    dose = float(rng.uniform(12, 28)) * (1.8 if rng.random() < 0.2 else 1.0)  # 1 in 5 is low-dose
    noise = float(np.clip(dose * size * kfac * np.sqrt(2.5 / thick), 6, 95))
    contrast = "none"
    if rng.random() < 0.1:
        contrast = _choice(rng, ("pulmonary", "arterial", "venous", "delayed"), (0.25, 0.35, 0.3, 0.1))
    motion = 0.0 if rng.random() < 0.1 else float(np.clip(np.exp(rng.normal(np.log(0.6), 0.5)), 0.1, 1.8))
    return Acquisition(
        shape_yx=tuple(pre["shape_yx"]), fov_mm=round(fov, 1), slice_spacing_mm=spacing, slice_thickness_mm=thick,
        n_slices=int(n), z_top_mm=round(z_top, 2), kernel=kernel, noise_hu=round(noise, 2), contrast_phase=contrast,
        heart_rate_bpm=float(np.clip(rng.normal(72, 12), 45, 120)), motion_scale=round(motion, 3),
        rotation_s=float(rng.choice([0.28, 0.33, 0.35, 0.4, 0.5])), pitch=float(rng.uniform(0.8, 1.5)),
        collimation_mm=float(rng.choice([20.0, 40.0, 80.0])), kvp=int(rng.choice([100, 120, 120, 140])),
        manufacturer=vendor, model=model,
    )


def heart_extent(spec: HeartSpec) -> tuple[np.ndarray, np.ndarray]:
    """LPS extent (lo, hi) of the heart's chambers and aortic root for ``spec``."""
    from .raster import Ellipsoid

    hm = build_heart(spec)
    pts = [s.surface_points() if isinstance(s, Ellipsoid) else np.stack([s.lo, s.hi]) for s, _, _ in hm.layers]
    pts = np.concatenate(pts)
    return pts.min(axis=0), pts.max(axis=0)


def fit_heart(cfg: ChestConfig, rng) -> ChestConfig:
    """Place the heart between sternum and spine (deepening the chest if it must) and inside the lungs."""
    h, hs = cfg.habitus, cfg.heart
    lo, hi = heart_extent(replace(hs, centre_mm=(0.0, 0.0, 0.0)))
    ap = hi[1] - lo[1]
    gap_front = float(rng.uniform(3, 14)) + 0.3 * h.fat_mm
    gap_back = 20.0  # the oesophagus between the left atrium and the vertebral body
    # sternum inner y = by - depth/2 + fat + STERNUM_MM; vertebral body front = by + depth/2 - fat - ...
    inner = h.body_depth_mm - 2 * h.fat_mm - STERNUM_MM - SPINE_FROM_BACK_MM - VB_SEMI_AP
    need = ap + gap_front + gap_back
    depth = h.body_depth_mm + max(0.0, need - inner)
    by = h.body_offset_xy_mm[1]
    sternum = by - depth / 2 + h.fat_mm + STERNUM_MM
    cy = sternum + gap_front - lo[1]
    cx = hs.centre_mm[0] + h.body_offset_xy_mm[0]
    # keep at least 25 mm of lung lateral to the heart on the left
    cavity_a = h.body_width_mm / 2 - (h.fat_mm + h.muscle_mm + 14.0)
    over = (cx + hi[0]) - (h.body_offset_xy_mm[0] + cavity_a - 25.0)
    if over > 0:
        cx -= over
    return replace(cfg, habitus=replace(h, body_depth_mm=round(float(depth), 1)),
                   heart=replace(hs, centre_mm=(round(float(cx), 2), round(float(cy), 2), hs.centre_mm[2])))
