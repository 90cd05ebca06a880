"""Everything that determines a v2 phantom, as frozen, JSON-serialisable dataclasses.

A :class:`ChestConfig` fixes the voxels: same config, same voxels. :func:`.sampling.random_config`
draws one from a seed; every field can also be set by hand (``dataclasses.replace``). Lengths
are mm, angles degrees, densities HU; positions are LPS patient mm (x to the patient's left,
y posterior, z to the head). Ranges and their sources: docs/phantom.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from ...errors import ConfigError
from ...labels import ARTERIES

KERNELS = ("soft", "standard", "sharp")
CONTRAST_PHASES = ("none", "pulmonary", "arterial", "venous", "delayed")
DOMINANCE = ("right", "left", "co")
PLAQUE_KINDS = ("focal", "tiny", "bifurcation", "ostial", "diffuse")
DEVICES = ("none", "pacemaker", "icd")
VALVES = ("none", "mechanical_aortic", "tavi", "mitral_ring")


@dataclass(frozen=True)
class Habitus:
    """Patient and body build."""

    sex: str = "M"
    age: int = 62
    body_width_mm: float = 330.0  # outer lateral width at heart level
    body_depth_mm: float = 235.0  # outer antero-posterior depth at heart level
    body_offset_xy_mm: tuple[float, float] = (0.0, 0.0)  # patient not exactly at the FOV centre
    fat_mm: float = 18.0  # subcutaneous fat
    muscle_mm: float = 14.0  # chest-wall muscle between fat and ribs
    lung_hu: float = -855.0
    blood_hu: float = 40.0  # non-contrast blood (haematocrit)
    bone_hu: float = 230.0  # cancellous bone (falls with age)
    breast_mm: float = 0.0  # breast radius (0 = none)
    diaphragm_mm: float = 0.0  # right dome height relative to the heart's inferior surface (+ = higher)

    def __post_init__(self) -> None:
        if self.sex not in ("M", "F"):
            raise ConfigError(f"sex must be M or F, got {self.sex!r}")


@dataclass(frozen=True)
class HeartSpec:
    """Heart size, position, orientation, walls, fat, and the coronary layout."""

    azimuth_deg: float = 45.0  # long axis, in the axial plane, from anterior towards the patient's left
    elevation_deg: float = 25.0  # long axis below the axial plane (base -> apex runs inferiorly)
    roll_deg: float = 0.0  # rotation about the long axis
    scale: float = 1.0  # size relative to the reference heart (ventricles ~ 84 mm base to apex)
    centre_mm: tuple[float, float, float] = (22.0, -18.0, -95.0)  # ventricular centre, LPS
    lv_wall_mm: float = 10.0
    epicardial_fat_mm: float = 5.0
    pericardial_effusion_mm: float = 0.0
    dominance: str = "right"
    lm_length_mm: float = 10.0
    n_diagonals: int = 2
    n_marginals: int = 2
    lad_wraps_apex: bool = True
    calibre_scale: float = 1.0
    situs_inversus: bool = False  # mirror image (left-right) of the whole chest
    shape_seed: int = 0  # small variations of branch courses

    def __post_init__(self) -> None:
        if self.dominance not in DOMINANCE:
            raise ConfigError(f"dominance must be one of {DOMINANCE}, got {self.dominance!r}")


@dataclass(frozen=True)
class PlaqueSpec:
    """One calcified plaque on a named coronary branch (see :mod:`.coronary` for branch names)."""

    id: int
    artery: str
    branch: str
    kind: str = "focal"
    t: float = 0.3  # position along the branch (0 = its origin, 1 = its end)
    length_mm: float = 4.0  # extent along the vessel
    thickness_mm: float = 1.2  # radial thickness
    arc_deg: float = 120.0  # circumferential extent
    angle_deg: float = 0.0  # circumferential centre (0 = towards the myocardium)
    density_hu: float = 600.0  # physical density of the calcium (the image shows less when small)
    n_lobes: int = 3
    shape_seed: int = 0

    def __post_init__(self) -> None:
        if self.artery not in ARTERIES:
            raise ConfigError(f"plaque artery must be one of {ARTERIES}, got {self.artery!r}")
        if self.kind not in PLAQUE_KINDS:
            raise ConfigError(f"plaque kind must be one of {PLAQUE_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.t <= 1.0:
            raise ConfigError(f"plaque position t must be within 0..1, got {self.t}")
        if self.density_hu < 130:
            raise ConfigError(f"plaque density must be >= 130 HU to be calcium, got {self.density_hu}")
        if self.id < 1:
            raise ConfigError(f"plaque ids start at 1 (0 is 'no plaque' in the lesion map), got {self.id}")


@dataclass(frozen=True)
class StentSpec:
    branch: str
    t: float = 0.3
    length_mm: float = 18.0


@dataclass(frozen=True)
class Findings:
    """Everything that is not coronary calcium but looks like it or hides it."""

    aortic_valve_calcium_mm3: float = 0.0
    mitral_annulus_calcium_deg: float = 0.0  # arc of the posterior annulus that is calcified
    aortic_wall_plaques: int = 0
    stents: tuple[StentSpec, ...] = ()
    cabg: bool = False
    device: str = "none"
    prosthetic_valve: str = "none"
    pleural_effusion_mm: tuple[float, float] = (0.0, 0.0)  # right, left: depth of the fluid layer
    costal_cartilage_calcium: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.prosthetic_valve not in VALVES:
            raise ConfigError(f"prosthetic_valve must be one of {VALVES}, got {self.prosthetic_valve!r}")


@dataclass(frozen=True)
class Acquisition:
    """Scanner, reconstruction and timing."""

    shape_yx: tuple[int, int] = (512, 512)
    fov_mm: float = 400.0
    slice_spacing_mm: float = 2.5
    slice_thickness_mm: float = 2.5
    n_slices: int = 120
    z_top_mm: float = 100.0  # position of the most superior slice
    kernel: str = "standard"
    noise_hu: float = 25.0  # pixel noise SD in soft tissue at the reference body size
    contrast_phase: str = "none"
    heart_rate_bpm: float = 70.0
    motion_scale: float = 0.0  # 0 = still heart (gated), 1 = typical non-gated coronary motion
    rotation_s: float = 0.35
    pitch: float = 1.0
    collimation_mm: float = 40.0  # detector coverage per rotation
    kvp: int = 120
    manufacturer: str = "GE MEDICAL SYSTEMS"
    model: str = "Phantom CT 64"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.contrast_phase not in CONTRAST_PHASES:
            raise ConfigError(f"contrast_phase must be one of {CONTRAST_PHASES}, got {self.contrast_phase!r}")
        if self.slice_spacing_mm <= 0 or self.slice_thickness_mm <= 0 or self.n_slices < 1:
            raise ConfigError("slice spacing and thickness must be > 0 mm and n_slices >= 1")

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / self.shape_yx[1]


@dataclass(frozen=True)
class ChestConfig:
    """A v2 phantom: patient, heart, plaques, other findings, acquisition. Same config -> same voxels."""

    seed: int = 0
    preset: str = "v2"
    habitus: Habitus = field(default_factory=Habitus)
    heart: HeartSpec = field(default_factory=HeartSpec)
    plaques: tuple[PlaqueSpec, ...] = ()
    findings: Findings = field(default_factory=Findings)
    acquisition: Acquisition = field(default_factory=Acquisition)
    version: int = 2

    def __post_init__(self) -> None:
        ids = [p.id for p in self.plaques]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"plaque ids must be unique, got {ids}")

    # convenience views used by the shared writers (v1 names)
    @property
    def slice_mm(self) -> float:
        return self.acquisition.slice_spacing_mm

    @property
    def n_slices(self) -> int:
        return self.acquisition.n_slices

    @property
    def shape_yx(self) -> tuple[int, int]:
        return self.acquisition.shape_yx

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ChestConfig:
        return _build(cls, d)


def _build(tp, value: Any):
    """Rebuild nested frozen dataclasses (and tuples) from ``asdict`` output."""
    if is_dataclass(tp):
        hints = {f.name: f for f in fields(tp)}
        kw = {}
        for k, v in value.items():
            if k not in hints:
                raise ConfigError(f"unknown field {k!r} in {tp.__name__}")
            kw[k] = _field_value(tp, k, v)
        return tp(**kw)
    return value


_NESTED = {
    ("ChestConfig", "habitus"): Habitus, ("ChestConfig", "heart"): HeartSpec,
    ("ChestConfig", "findings"): Findings, ("ChestConfig", "acquisition"): Acquisition,
}
_TUPLES_OF = {("ChestConfig", "plaques"): PlaqueSpec, ("Findings", "stents"): StentSpec}


def _field_value(tp, name: str, v):
    key = (tp.__name__, name)
    if key in _NESTED:
        return _build(_NESTED[key], v)
    if key in _TUPLES_OF:
        return tuple(_build(_TUPLES_OF[key], x) for x in v)
    if isinstance(v, list):
        return tuple(v)
    return v
