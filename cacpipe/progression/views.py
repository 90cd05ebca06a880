"""Prior and current CT side by side at each matched lesion, on synchronised slices.

For a lesion event, an axial patch of :data:`PATCH_MM` round the lesion's position in the prior
scan's space is sampled from the prior CT, and the same patch from the current CT through the
registration (so both show the same anatomy, whatever the table position or breath hold),
then drawn as two small PNGs (calcium window; >= 130 HU tinted) with a ring round the lesion.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw

from ..units import CALCIUM_THRESHOLD_HU
from ..volume import Volume

PATCH_MM = 48.0
PIXEL_MM = 0.5
WINDOW = (-160.0, 640.0)  # level 240, width 800: calcium stands out against soft tissue
SCALE = 2


def _patch(ct: sitk.Image, centre_xyz: np.ndarray, transform: sitk.Transform) -> np.ndarray:
    n = int(round(PATCH_MM / PIXEL_MM))
    ref = sitk.Image([n, n, 1], sitk.sitkFloat32)
    ref.SetSpacing((PIXEL_MM, PIXEL_MM, 1.0))
    ref.SetOrigin(tuple(float(v) for v in centre_xyz - np.array([PATCH_MM / 2, PATCH_MM / 2, 0.0])))
    out = sitk.Resample(ct, ref, transform, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)[0]


def _png(hu: np.ndarray) -> str:
    g = np.clip((hu - WINDOW[0]) / (WINDOW[1] - WINDOW[0]) * 255.0, 0, 255).astype(np.uint8)
    rgb = np.stack([g, g, g], axis=-1)
    calc = hu >= CALCIUM_THRESHOLD_HU
    rgb[calc] = (0.5 * rgb[calc] + 0.5 * np.array([255, 60, 40])).astype(np.uint8)
    img = Image.fromarray(rgb).resize((rgb.shape[1] * SCALE, rgb.shape[0] * SCALE), Image.NEAREST)
    d = ImageDraw.Draw(img)
    c, r = img.size[0] / 2, 7.0 / PIXEL_MM * SCALE
    d.ellipse((c - r, c - r, c + r, c + r), outline=(255, 220, 0), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pair_views(prior: Volume, current: Volume, transform: sitk.Transform | None,
               positions: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """match id -> [prior PNG, current PNG] (base64) at each position (prior space, LPS mm)."""
    a, b = prior.to_sitk(), current.to_sitk()
    tx = transform if transform is not None else sitk.Transform()
    return {mid: [_png(_patch(a, xyz, sitk.Transform())), _png(_patch(b, xyz, tx))]
            for mid, xyz in positions.items()}
