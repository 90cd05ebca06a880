"""Is a "new" lesion really new? Look at the prior CT where it is now.

A lesion of the current study with no prior lesion within the gate is ``new`` only if the prior
scan had no calcium there. The prior's result can miss a plaque its model did not find (small,
faint, or partly under 130 HU), while the plaque is plainly on the prior CT: a reader comparing
the two scans would see it. So, at the current lesion's centroid mapped into the prior scan
(through the registration), :func:`prior_calcium` measures the calcium on the prior CT: voxels
>= 130 HU connected to each other (26-connectivity) within :data:`RADIUS_MM` plus half the
lesion's extent of the point (registration residual and growth move a centroid by a few mm),
the largest component that holds a voxel :data:`SEED_SD` noise SDs above the soft tissue round
it (the noise measured there: median absolute deviation of neighbour differences of -200..300 HU
voxels), so that low-dose noise, which makes >= 130 HU specks of its own, is not taken for
calcium. Any such calcium makes the lesion ``missed_before``: calcium the prior study's result
did not count, not a new plaque (however small: a coarse grid or partial volume can shrink a
faint plaque the prior's model missed to a voxel or two).

Parameters were set on development phantoms (training seeds the demo model never saw:
``devtools/progression_check.py --first-seed 20000 --purpose training``), never on held-out ones.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..units import CALCIUM_THRESHOLD_HU
from ..volume import Volume

RADIUS_MM = 3.0
SEED_SD = 5.0  # a component counts when one voxel exceeds the local soft-tissue median by 5 noise SDs


def _noise_sd(hu: np.ndarray) -> float:
    """Noise SD (HU) of soft tissue: from differences of in-plane neighbours (which cancel anatomy
    but not noise), robustly (median absolute deviation), over pairs of -200..300 HU voxels."""
    a, b = hu[:, :, 1:], hu[:, :, :-1]
    ok = (a > -200) & (a < 300) & (b > -200) & (b < 300)
    d = (a - b)[ok]
    if d.size < 20:
        return 0.0
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)


def prior_calcium(prior_ct: Volume, xyz: np.ndarray, extent_mm: float) -> dict:
    """Calcium on ``prior_ct`` near ``xyz`` (prior space, LPS mm): {"volume_mm3", "peak_hu",
    "distance_mm" (of its centroid from ``xyz``), "radius_mm"}; volume 0 when none."""
    radius = RADIUS_MM + 0.5 * float(extent_mm)
    sp = np.asarray(prior_ct.spacing_zyx, float)
    c = prior_ct.physical_to_index(xyz)[0]
    pad = np.ceil((radius + 4.0) / sp).astype(int) + 1  # some tissue round the ball for the noise
    lo = np.maximum(np.floor(c).astype(int) - pad, 0)
    hi = np.minimum(np.ceil(c).astype(int) + pad + 1, prior_ct.shape)
    out = {"volume_mm3": 0.0, "peak_hu": None, "distance_mm": None, "radius_mm": round(radius, 2)}
    if np.any(hi <= lo):
        return out
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    hu = np.asarray(prior_ct.array[box], np.float32)
    soft = hu[(hu > -200) & (hu < 300)]
    if soft.size < 20:
        return out
    med = float(np.median(soft))
    noise = _noise_sd(hu)
    seed_hu = max(CALCIUM_THRESHOLD_HU, med + SEED_SD * noise)
    zz, yy, xx = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    dist = np.sqrt(((zz - c[0]) * sp[0]) ** 2 + ((yy - c[1]) * sp[1]) ** 2 + ((xx - c[2]) * sp[2]) ** 2)
    calc = (hu >= CALCIUM_THRESHOLD_HU) & (dist <= radius)
    lab, n = ndimage.label(calc, structure=np.ones((3, 3, 3), bool))
    out.update(noise_hu=round(float(noise), 1), seed_hu=round(float(seed_hu), 1))
    if not n:
        return out
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    seeded = np.unique(lab[(hu >= seed_hu) & calc])
    seeded = seeded[seeded > 0]
    if not seeded.size:
        return out
    k = int(seeded[np.argmax(sizes[seeded])])
    part = lab == k
    vox = float(np.prod(sp))
    centre = np.array([a[part].mean() for a in (zz, yy, xx)])
    out.update(volume_mm3=round(float(sizes[k]) * vox, 3), peak_hu=round(float(hu[part].max()), 1),
               distance_mm=round(float(np.linalg.norm((centre - c) * sp)), 2))
    return out


def seen_before(found: dict) -> bool:
    """Whether the prior CT's calcium at a "new" lesion's place makes it ``missed_before``."""
    return found["volume_mm3"] > 0
