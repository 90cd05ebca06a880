"""A later scan of the same v2 patient: same anatomy, a new acquisition, calcium grown.

:func:`follow_up_config` turns a patient's baseline :class:`ChestConfig` into the config of a scan
``years`` later (``years = 0``: a rescan of an unchanged patient, the repeatability case):

- **same anatomy**: habitus, heart, coronary tree (same shape seeds), findings (no stent is
  placed, so no plaque vanishes);
- **new acquisition**: vendor, kernel, slice thickness, noise, heart rate, motion and table start
  drawn again (non-contrast, as a screening scan); the patient lies elsewhere on the table
  (in-plane shift, :data:`SHIFT_SD_MM`) and holds the breath differently (the heart moves against
  the spine by :data:`BREATH_SD_MM` and turns by :data:`TURN_SD_DEG` about each axis);
- **calcium grown**: each plaque keeps its id (the lesion identity across time points) and grows
  by ``(1 + r) ** years`` in volume, ``r`` its annual rate: a patient rate drawn log-normal
  (median :data:`RATE_MEDIAN`, a fifth of a year's scale spread) times a per-plaque factor; a
  quarter of the plaques do not grow (stable). New plaques appear at :data:`NEW_PER_YEAR` per
  year (Poisson), with ids after the baseline's, drawn as the baseline's are.

Every draw is deterministic in (baseline seed, years). Growth keeps a plaque's shape seed, so
its lobes stay where they were and swell (length, thickness and arc each by the cube root of the
volume factor; a diffuse plaque thickens, a bifurcation plaque's lobes thicken).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...errors import ConfigError
from .config import ChestConfig, PlaqueSpec
from .sampling import PRESETS, _acquisition, draw_plaque, plaque_branches, under_stent

RATE_MEDIAN = 0.20  # annual volume growth (median): assumption, in the range reported for CAC progression
RATE_SPREAD = 0.6  # log-normal sigma of the patient's rate
STABLE_P = 0.25  # share of plaques that do not grow
NEW_PER_YEAR = (0.35, 0.08)  # new plaques per year: patients with / without calcium at baseline
SHIFT_SD_MM = 6.0  # in-plane position on the table
BREATH_SD_MM = 4.0  # heart against the spine (breath hold)
TURN_SD_DEG = 2.0  # heart orientation (breath hold)


def _rng(cfg: ChestConfig, years: float, part: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), int(round(float(years) * 1000)), 31, part])


def plaque_rates(cfg: ChestConfig) -> dict[int, float]:
    """Annual volume growth rate of each baseline plaque (id -> r), the same for every follow-up."""
    rng = np.random.default_rng([int(cfg.seed), 37])
    patient = float(np.clip(RATE_MEDIAN * np.exp(rng.normal(0.0, RATE_SPREAD)), 0.03, 0.9))
    out = {}
    for p in cfg.plaques:
        stable = rng.random() < STABLE_P
        each = float(np.clip(patient * np.exp(rng.normal(0.0, 0.3)), 0.0, 1.2))
        out[p.id] = 0.0 if stable else round(each, 4)
    return out


def grow(p: PlaqueSpec, factor: float) -> PlaqueSpec:
    """``p`` with its volume multiplied by about ``factor`` (same lobes, larger)."""
    if factor == 1.0:
        return p
    if p.kind in ("diffuse", "bifurcation"):  # lobe count and layout depend on the length: thicken only
        return replace(p, thickness_mm=round(p.thickness_mm * factor, 4))
    c = factor ** (1.0 / 3.0)
    return replace(p, length_mm=round(p.length_mm * c, 4), thickness_mm=round(p.thickness_mm * c, 4),
                   arc_deg=round(min(p.arc_deg * c, 330.0), 3))


def _new_stream(cfg: ChestConfig, years: float) -> list[tuple[float, PlaqueSpec]]:
    """(onset in years, plaque) of each plaque that appeared by ``years``: one Poisson stream per
    patient, so a later follow-up keeps the earlier ones (same ids, same places)."""
    rng = np.random.default_rng([int(cfg.seed), 41])
    rate = NEW_PER_YEAR[0] if cfg.plaques else NEW_PER_YEAR[1]
    names, side = plaque_branches(cfg.heart)
    first = max((p.id for p in cfg.plaques), default=0) + 1
    out, t = [], 0.0
    for k in range(40):
        t += float(rng.exponential(1.0 / rate))
        spec = draw_plaque(rng, first + k, names, side)
        if t > years:
            break
        if not under_stent(spec, cfg.findings.stents):
            out.append((round(t, 4), spec))
    return out


def new_plaques(cfg: ChestConfig, years: float) -> tuple[PlaqueSpec, ...]:
    """Plaques that appeared by ``years``, ids after the baseline's; each starts at a quarter of its
    drawn size and grows at the median rate since its onset."""
    return tuple(grow(spec, float(np.clip(0.25 * (1.0 + RATE_MEDIAN) ** (years - t), 0.05, 1.0)))
                 for t, spec in _new_stream(cfg, years))


def plaque_onsets(cfg: ChestConfig, years: float) -> dict[int, float]:
    """Onset (years after baseline) of each new plaque present at ``years``."""
    return {spec.id: t for t, spec in _new_stream(cfg, years)}


def follow_up_config(cfg: ChestConfig, years: float) -> ChestConfig:
    """The config of the same patient scanned ``years`` (>= 0) after ``cfg`` (see the module docstring)."""
    years = float(years)
    if not 0.0 <= years <= 30.0:
        raise ConfigError(f"a follow-up must be 0-30 years after the baseline, got {years:g}")
    if cfg.preset not in PRESETS or PRESETS[cfg.preset].get("cardiac"):
        raise ConfigError(f"follow-ups are drawn for the chest presets, not {cfg.preset!r}")
    rates = plaque_rates(cfg)
    grown = tuple(grow(p, (1.0 + rates[p.id]) ** years) for p in cfg.plaques)
    plaques = grown + new_plaques(cfg, years)
    rng = _rng(cfg, years, 1)
    acq = replace(_acquisition(rng, cfg.habitus, PRESETS[cfg.preset]), contrast_phase="none")
    dx, dy = (float(v) for v in rng.normal(0.0, SHIFT_SD_MM, 2))
    dz = float(rng.normal(0.0, BREATH_SD_MM))
    turn = rng.normal(0.0, TURN_SD_DEG, 3)
    h, hs = cfg.habitus, cfg.heart
    hab = replace(h, age=int(h.age + int(years)),
                  body_offset_xy_mm=(round(h.body_offset_xy_mm[0] + dx, 2), round(h.body_offset_xy_mm[1] + dy, 2)))
    heart = replace(hs, centre_mm=(round(hs.centre_mm[0] + dx, 2), round(hs.centre_mm[1] + dy, 2),
                                   round(hs.centre_mm[2] + dz, 2)),
                    azimuth_deg=round(hs.azimuth_deg + float(turn[0]), 3),
                    elevation_deg=round(hs.elevation_deg + float(turn[1]), 3),
                    roll_deg=round(hs.roll_deg + float(turn[2]), 3))
    return replace(cfg, habitus=hab, heart=heart, plaques=plaques, acquisition=acq)
