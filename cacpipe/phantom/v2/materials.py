"""HU of every material the v2 phantom paints, for each contrast phase.

Non-contrast values are typical adult CT numbers at 120 kV; enhanced values are typical of the
phase (pulmonary-arterial, systemic arterial, portal-venous, delayed). They are assumptions of
this phantom within published ranges; docs/phantom.md lists them.
"""

from __future__ import annotations

from .config import ChestConfig

# Physical density of metal as the phantom paints it before partial volume and the scanner's
# HU ceiling (3071): thin struts and wires then reach realistic displayed values.
METAL_HU = 12000.0
HU_MAX = 3071.0
HU_MIN = -1024.0

_ENHANCED = {
    "none": {},
    "pulmonary": {"blood_right": 380.0, "blood_left": 210.0, "myocardium": 85.0, "liver": 62.0, "spleen": 70.0},
    "arterial": {"blood_right": 230.0, "blood_left": 390.0, "myocardium": 110.0, "liver": 75.0, "spleen": 120.0},
    "venous": {"blood_right": 165.0, "blood_left": 175.0, "myocardium": 105.0, "liver": 110.0, "spleen": 115.0},
    "delayed": {"blood_right": 105.0, "blood_left": 105.0, "myocardium": 85.0, "liver": 85.0, "spleen": 80.0},
}


def material_hu(cfg: ChestConfig) -> dict[str, float]:
    """Material name -> HU for this phantom's patient and contrast phase."""
    h = cfg.habitus
    hu = {
        "air": -1000.0, "lung": h.lung_hu, "fat": -100.0, "epicardial_fat": -85.0, "muscle": 48.0,
        "breast": -55.0, "liver": 58.0, "spleen": 48.0, "stomach": 32.0, "abdomen": -30.0,
        "pericardium": 30.0, "fluid": 10.0, "myocardium": h.blood_hu + 8.0,
        "blood_left": h.blood_hu, "blood_right": h.blood_hu, "artery_wall": h.blood_hu + 5.0,
        "cortex": 800.0, "cancellous": h.bone_hu, "rib": 0.5 * (h.bone_hu + 800.0), "disc": 85.0, "csf": 10.0,
        "cartilage": 110.0, "cartilage_calcified": 330.0, "table": 250.0, "pad": -850.0, "metal": METAL_HU,
    }
    hu.update(_ENHANCED[cfg.acquisition.contrast_phase])
    return hu
