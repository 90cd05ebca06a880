"""Cardiac motion seen in the image, per artery.

On a non-gated scan each slice is reconstructed from about half a rotation; a coronary artery that
moves during it is smeared over the distance it travelled: its cross-section grows, its lumen
fades towards the surrounding fat, calcium on it is stretched and dimmed. A still artery of the
same calibre keeps a lumen close to blood.

Measured per artery on the predicted artery labels (ids 1-3, calcium excluded): the **lumen
contrast** ``(median HU of the label - fat HU) / (blood HU - fat HU)``, where blood is the heart
interior's median and fat the median of the -200..-30 HU voxels 1-4 mm around the artery. A still
artery fills its label (contrast near 1 at the centre, ~0.5 over the label with partial volume); a
smeared one fills it less. Below ``MOTION_CONTRAST`` the artery is flagged ``motion_suspected``
(warning: calcium may be smeared, doubled or missed; the number may be too low or too high).
The threshold was chosen on training-range v2 phantoms (docs/quantification.md, "Flags a reader
can trust"). Arrays (z, y, x).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import flags as F
from ..flags import Flag
from ..labels import ARTERIES, ARTERY_ID
from ..volume import Volume

MOTION_CONTRAST = 0.35
MIN_ARTERY_VOXELS = 200
FAT_HU = (-200.0, -30.0)


def _ball(radius_mm: float, spacing_zyx) -> np.ndarray:
    r = [max(1, int(np.ceil(radius_mm / s))) for s in spacing_zyx]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_zyx
    return (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm**2 + 1e-9


def lumen_contrast(ct: Volume, labels: Volume | np.ndarray, blood_hu: float | None) -> dict[str, float | None]:
    """Per artery: lumen contrast (see module docstring); None when it cannot be measured."""
    lab = np.asarray(labels.array if isinstance(labels, Volume) else labels)
    hu = np.asarray(ct.array)
    sp = tuple(float(s) for s in ct.spacing_zyx)
    out: dict[str, float | None] = {}
    boxes = ndimage.find_objects(lab, max_label=6)
    pad = [int(np.ceil(4.0 / s)) + 1 for s in sp]
    for a in ARTERIES:
        box = boxes[ARTERY_ID[a] - 1]
        if box is None or blood_hu is None:
            out[a] = None
            continue
        box = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, lab.shape, strict=True))
        m = lab[box] == ARTERY_ID[a]
        if m.sum() < MIN_ARTERY_VOXELS:
            out[a] = None
            continue
        sub = hu[box]
        inner = ndimage.binary_dilation(lab[box] > 0, structure=_ball(1.0, sp))
        ring = ndimage.binary_dilation(m, structure=_ball(4.0, sp)) & ~inner
        fat = sub[ring & (sub >= FAT_HU[0]) & (sub <= FAT_HU[1])]
        if fat.size < 50:
            out[a] = None
            continue
        f, v = float(np.median(fat)), float(np.median(sub[m]))
        out[a] = (v - f) / max(blood_hu - f, 30.0)
    return out


def motion_flags(ct: Volume, labels: Volume | np.ndarray, heart: Volume | None,
                 threshold: float = MOTION_CONTRAST) -> tuple[list[Flag], dict]:
    """``motion_suspected`` per artery whose lumen contrast is below ``threshold``; and the measures."""
    from ..heart.qc import blood_pool_hu

    blood = blood_pool_hu(ct, heart) if heart is not None and np.any(heart.array) else None
    c = lumen_contrast(ct, labels, blood)
    flags = [Flag(F.MOTION_SUSPECTED, f"{a}: the artery is faint and smeared (lumen contrast {v:.2f} < {threshold:.2f}): "
                  "cardiac motion suspected; its calcium may be smeared, doubled or missed; check the images",
                  "warning", a) for a, v in c.items() if v is not None and v < threshold]
    return flags, {"lumen_contrast": {a: None if v is None else round(v, 3) for a, v in c.items()}, "blood_hu": blood}
