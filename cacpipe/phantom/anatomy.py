"""A synthetic non-contrast chest CT with known coronary ground truth.

Anatomy in patient LPS mm (x to the patient's left, y posterior, z superior), FOV centred on
x = y = 0. The shapes are coarse on purpose; what matters is that they carry the HU structure a
CAC pipeline relies on (air lungs, soft-tissue mediastinum, heart in epicardial fat, coronary
tubes on the heart surface, bone and valve calcium as distractors) and exact labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..labels import ARTERIES, ARTERY_ID, BACKGROUND, CALCIUM_ID
from ..volume import Volume
from . import shapes
from .shapes import Grid

# HU of the tissues drawn. Non-contrast blood and myocardium are indistinguishable (~40 HU).
HU = {
    "air": -1000,
    "lung": -850,
    "fat": -100,
    "epicardial_fat": -90,
    "soft": 40,
    "blood": 40,
    "myocardium": 45,
    "blood_contrast": 320,
    "bone_marrow": 250,
    "bone_cortex": 700,
    "rib": 550,
    "sternum": 400,
    "disc": 80,
}

HEART_CENTRE = np.array([25.0, -25.0, -40.0])
HEART_SEMI = np.array([55.0, 45.0, 50.0])
EPICARDIAL_FAT_MM = 6.0
MYOCARDIUM_MM = 10.0
CORONARY_OFFSET_MM = 3.0  # centreline distance outside the myocardium, inside the fat layer
AORTA_XY = (0.0, -45.0)
AORTA_RADIUS = 13.0


@dataclass(frozen=True)
class Plaque:
    """A calcified plaque: a sphere on an artery's centreline."""

    artery: str  # RCA, LAD or LCX
    t: float  # position along the artery, fraction of its length from the ostium (0..1)
    radius_mm: float
    hu: float  # uniform density of the plaque, >= 130

    def __post_init__(self) -> None:
        if self.artery not in ARTERIES:
            raise ValueError(f"plaque artery must be one of {ARTERIES}, got {self.artery!r}")
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"plaque position t must be within 0..1, got {self.t}")
        if self.radius_mm <= 0:
            raise ValueError(f"plaque radius must be > 0 mm, got {self.radius_mm}")
        if self.hu < 130:
            raise ValueError(f"plaque HU must be >= 130 to be calcium, got {self.hu}")

    @classmethod
    def parse(cls, text: str) -> Plaque:
        """Parse ``ARTERY:T:RADIUS_MM:HU`` (e.g. ``LAD:0.3:1.5:400``)."""
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"plaque must be ARTERY:T:RADIUS_MM:HU, got {text!r}")
        return cls(parts[0].upper(), float(parts[1]), float(parts[2]), float(parts[3]))


DEFAULT_PLAQUES: tuple[Plaque, ...] = (
    Plaque("RCA", 0.30, 2.2, 450.0),
    Plaque("LAD", 0.22, 2.0, 350.0),
    Plaque("LAD", 0.55, 1.4, 220.0),
    Plaque("LCX", 0.35, 1.8, 180.0),
)


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that determines a phantom. Same config + seed -> identical voxels."""

    shape_yx: tuple[int, int] = (512, 512)
    pixel_mm: float = 400.0 / 512  # FOV 400 mm
    slice_mm: float = 2.5
    n_slices: int = 120
    z_centre_mm: float = -20.0
    seed: int = 0
    noise_hu: float = 20.0  # Gaussian noise SD; low-dose scans 40-60
    contrast: bool = False  # iodine in the blood pool (Agatston then invalid)
    plaques: tuple[Plaque, ...] = DEFAULT_PLAQUES
    artery_radius_scale: float = 1.0  # >1 on coarse grids so arteries stay a few voxels wide
    aortic_valve_calcium: bool = True
    mitral_annulus_calcium: bool = True
    # Small shift of the heart (mm, x y z) so phantoms of a cohort differ in anatomy.
    heart_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def preset(cls, name: str, **overrides) -> PhantomConfig:
        """``full``: 512x512, 120 x 2.5 mm (a routine chest CT); ``small``: 256x256, 100 x 2 mm, for tests."""
        presets = {
            "full": {},
            "small": dict(shape_yx=(256, 256), pixel_mm=400.0 / 256, slice_mm=2.0, n_slices=100,
                          artery_radius_scale=1.5),
            "thin": dict(slice_mm=1.0, n_slices=300),
        }
        if name not in presets:
            raise ValueError(f"unknown phantom preset {name!r}; choose from {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def grid(self) -> Grid:
        ny, nx = self.shape_yx
        ox = -(nx - 1) / 2 * self.pixel_mm
        oy = -(ny - 1) / 2 * self.pixel_mm
        oz = self.z_centre_mm - (self.n_slices - 1) / 2 * self.slice_mm
        return Grid((self.n_slices, ny, nx), (self.slice_mm, self.pixel_mm, self.pixel_mm), (ox, oy, oz))

    def to_json(self) -> dict:
        d = asdict(self)
        d["plaques"] = [asdict(p) for p in self.plaques]
        return d


@dataclass
class Phantom:
    """The generated images and their exact ground truth (all on the same grid)."""

    config: PhantomConfig
    ct: Volume  # int16 HU, noise included
    ct_clean: Volume  # int16 HU before noise: the image the ground-truth scores are defined on
    labels: Volume  # uint8 six-class map (labels.py)
    heart: Volume  # uint8 0/1 heart mask (myocardium + chambers)
    centrelines: dict[str, np.ndarray] = field(default_factory=dict)  # artery -> (N, 3) mm xyz
    distractors: list[dict] = field(default_factory=list)


def _surface(theta_deg, phi_deg, centre, semi, offset):
    th, ph = np.radians(theta_deg), np.radians(phi_deg)
    s = semi + offset
    return centre + np.stack(
        [s[0] * np.sin(ph) * np.cos(th), s[1] * np.sin(ph) * np.sin(th), s[2] * np.cos(ph)], axis=-1
    )


def coronary_centrelines(heart_centre: np.ndarray) -> dict[str, np.ndarray]:
    """Centrelines (mm, LPS) of RCA, LM+LAD and LCX from the aortic root over the heart surface.

    Angles: theta in the axial plane from +x (left) towards +y (posterior); phi from +z.
    """
    off = EPICARDIAL_FAT_MM - CORONARY_OFFSET_MM
    centre = heart_centre
    shift = heart_centre - HEART_CENTRE
    ax, ay = AORTA_XY[0] + shift[0], AORTA_XY[1] + shift[1]
    z_ost = 2.0 + shift[2]
    u = np.linspace(0, 1, 200)

    # RCA: right-anterior ostium, right AV groove, then posterior descending branch.
    rca_ost = np.array([ax - 0.70 * AORTA_RADIUS, ay - 0.72 * AORTA_RADIUS, z_ost])
    groove = _surface(-115 - 125 * u, 55 + 30 * u, centre, HEART_SEMI, off)
    pda = _surface(-240 - 20 * u, 85 + 50 * u, centre, HEART_SEMI, off)
    rca = np.concatenate([rca_ost[None], groove, pda[1:]])

    # LM from the left-posterior aortic wall to the bifurcation; LAD down the anterior groove.
    lm_ost = np.array([ax + 0.85 * AORTA_RADIUS, ay + 0.55 * AORTA_RADIUS, z_ost])
    bif = _surface(np.array([-55.0]), np.array([48.0]), centre, HEART_SEMI, off)
    lad = np.concatenate([lm_ost[None], bif, _surface(-55 + 25 * u, 48 + 117 * u, centre, HEART_SEMI, off)[1:]])

    # LCX from the bifurcation round the left AV groove towards the posterior wall.
    lcx = np.concatenate([bif, _surface(-55 + 125 * u, 48 + 32 * u, centre, HEART_SEMI, off)[1:]])
    return {"RCA": rca, "LAD": lad, "LCX": lcx}


def _artery_radius(t: np.ndarray, scale: float) -> np.ndarray:
    return scale * (2.0 - 0.9 * t)  # proximal 2 mm tapering to 1.1 mm


def generate(config: PhantomConfig) -> Phantom:
    """Build a phantom. Deterministic for a given config (the seed drives the noise only)."""
    g = config.grid()
    ct = np.full(g.shape, HU["air"], dtype=np.int16)
    lab = np.zeros(g.shape, dtype=np.uint8)
    heart_mask = np.zeros(g.shape, dtype=np.uint8)
    z0, z1 = g.axes_mm()[0][0] - 5, g.axes_mm()[0][-1] + 5
    blood = HU["blood_contrast"] if config.contrast else HU["blood"]
    hc = HEART_CENTRE + np.asarray(config.heart_shift_mm, float)

    # Body: subcutaneous fat ring around soft tissue.
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 0), (165, 115), (z0, z1)), HU["fat"])
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 0), (150, 100), (z0, z1)), HU["soft"])
    # Mediastinal fat, so that non-contrast vessels (blood ~ soft tissue) stand out as in real CT.
    shapes.paint(ct, shapes.elliptic_cylinder(g, (8, -10), (50, 80), (-100, 90)), HU["fat"])
    # Lungs (the diaphragm is where they end inferiorly).
    shapes.paint(ct, shapes.ellipsoid(g, (-78, 5, 15), (58, 82, 135)), HU["lung"])
    shapes.paint(ct, shapes.ellipsoid(g, (82, 5, 15), (55, 82, 135)), HU["lung"])
    # Trachea down to the carina (z = +25), then the main bronchi.
    carina = np.array([0.0, 10.0, 25.0])
    shapes.tube(g, np.array([[0, -5, z1], [0, 5, 60], carina]), 9.0, ct, HU["air"])
    shapes.tube(g, np.array([carina, [-35, 15, 5]]), 6.0, ct, HU["air"])
    shapes.tube(g, np.array([carina, [38, 15, 3]]), 6.0, ct, HU["air"])
    # Mediastinal fat + heart: epicardial fat shell, myocardium, blood pool.
    shapes.paint(ct, shapes.ellipsoid(g, hc, HEART_SEMI + EPICARDIAL_FAT_MM), HU["epicardial_fat"])
    heart = shapes.ellipsoid(g, hc, HEART_SEMI)
    shapes.paint(ct, heart, HU["myocardium"])
    shapes.paint(heart_mask, heart, 1)
    shapes.paint(ct, shapes.ellipsoid(g, hc, HEART_SEMI - MYOCARDIUM_MM), blood)
    # Aorta: root in the heart base, ascending, arch over the bronchus, descending by the spine.
    shift = hc - HEART_CENTRE
    ax, ay = AORTA_XY[0] + shift[0], AORTA_XY[1] + shift[1]
    arch = np.array([[ax, ay, -12 + shift[2]], [ax, ay, 45], [5, -20, 68], [20, 20, 70], [28, 50, 55], [28, 55, z0]])
    arch_pts, _ = shapes.resample_polyline(arch, 2.0)
    shapes.tube(g, arch_pts, AORTA_RADIUS, ct, blood)
    # Spine: vertebral bodies with discs, cortical shell; spinal canal.
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 82), (22, 20), (z0, z1)), HU["bone_cortex"])
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 82), (19, 17), (z0, z1)), HU["bone_marrow"])
    for zd in np.arange(-300, 300, 28.0):
        shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 82), (21, 19), (zd, zd + 5)), HU["disc"])
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, 108), (8, 7), (z0, z1)), HU["soft"])
    # Sternum in front of the heart and ribs: bone near the heart, a classic distractor.
    shapes.paint(ct, shapes.elliptic_cylinder(g, (0, -92), (16, 7), (-110, 70)), HU["sternum"])
    # Ribs cover the sides and back (not the sternum, not the spine they join).
    arcs = [np.radians(np.linspace(-60, 70, 60)), np.radians(np.linspace(110, 240, 60))]
    for zr in np.arange(-300, 300, 24.0):
        for ang in arcs:
            ring = np.stack([140 * np.cos(ang), 93 * np.sin(ang), np.full_like(ang, zr)], axis=1)
            shapes.tube(g, ring, 5.0, ct, HU["rib"])

    # Coronary arteries and their calcium.
    distractors: list[dict] = []
    cls = coronary_centrelines(hc)
    dense: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for artery in ARTERIES:
        pts, t = shapes.resample_polyline(cls[artery], 0.5)
        dense[artery] = (pts, t)
        radii = _artery_radius(t, config.artery_radius_scale)
        shapes.tube(g, pts, radii, ct, blood)
        shapes.tube(g, pts, radii, lab, ARTERY_ID[artery])
    for p in config.plaques:
        pts, t = dense[p.artery]
        centre = pts[int(np.argmin(np.abs(t - p.t)))]
        sph = shapes.sphere(g, centre, p.radius_mm)
        shapes.paint(ct, sph, int(round(p.hu)))
        shapes.paint(lab, sph, CALCIUM_ID[p.artery])

    # Distractors: calcium that is not coronary (labelled background).
    if config.aortic_valve_calcium:
        for k, (dx, dy) in enumerate([(-5, -3), (4, -4), (0, 5)]):
            c = np.array([ax + dx, ay + dy, -10.0 + shift[2]])
            shapes.paint(ct, shapes.sphere(g, c, 2.5), 650)
            distractors.append({"kind": "aortic_valve_calcium", "centre_mm": c.tolist(), "radius_mm": 2.5, "hu": 650, "index": k})
    if config.mitral_annulus_calcium:
        a = np.radians(np.linspace(200, 320, 40))
        mc = hc + np.array([18.0, 10.0, 15.0])
        arc = np.stack([mc[0] + 14 * np.cos(a), mc[1] + 14 * np.sin(a), np.full_like(a, mc[2])], axis=1)
        shapes.tube(g, arc, 1.8, ct, 520)
        distractors.append({"kind": "mitral_annulus_calcium", "centre_mm": mc.tolist(), "radius_mm": 14, "hu": 520})
    distractors.append({"kind": "sternum", "hu": HU["sternum"]})
    distractors.append({"kind": "ribs", "hu": HU["rib"]})
    # The label map must not claim voxels that the calcium distractors overwrote.
    lab[(ct >= 500) & (lab > 0) & ~np.isin(lab, list(CALCIUM_ID.values()))] = BACKGROUND

    clean = ct.copy()
    if config.noise_hu > 0:
        rng = np.random.default_rng(config.seed)
        noisy = ct.astype(np.float32) + rng.normal(0.0, config.noise_hu, size=ct.shape).astype(np.float32)
        ct = np.clip(np.round(noisy), -1024, 3071).astype(np.int16)

    geo = dict(spacing_zyx=g.spacing_zyx, origin_xyz=g.origin_xyz)
    return Phantom(
        config=config,
        ct=Volume(ct, **geo),
        ct_clean=Volume(clean, **geo),
        labels=Volume(lab, **geo),
        heart=Volume(heart_mask, **geo),
        centrelines={a: dense[a][0] for a in ARTERIES},
        distractors=distractors,
    )
