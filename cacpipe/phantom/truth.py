"""Ground-truth calcium numbers of a phantom, computed by the plainest possible reference code.

This is deliberately a per-slice Python loop (the textbook definition) so that it can serve as
the independent reference for cacpipe's vectorised quantification, in tests and in benchmarks.

Convention (the project's one Agatston convention, see README "Agatston convention"):
- calcium voxel: HU >= 130 inside the artery's calcium label;
- per axial slice, 2D 8-connected components; a component counts if its area >= 1 mm^2;
- weight from the component's peak HU: 130-199 -> 1, 200-299 -> 2, 300-399 -> 3, >= 400 -> 4;
- score = sum(area_mm2 * weight) * (slice spacing / 3 mm), slice spacing from slice positions;
- lesions are counted as 3D 26-connected components of calcium voxels;
- volume = calcium voxels * voxel volume (mm^3).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..labels import ARTERIES, CALCIUM_ID
from ..units import AGATSTON_REFERENCE_SLICE_MM, CALCIUM_THRESHOLD_HU, mm3_to_ml

MIN_LESION_AREA_MM2 = 1.0


def density_weight(peak_hu: float) -> int:
    if peak_hu >= 400:
        return 4
    if peak_hu >= 300:
        return 3
    if peak_hu >= 200:
        return 2
    if peak_hu >= CALCIUM_THRESHOLD_HU:
        return 1
    return 0


def agatston_reference(hu_zyx: np.ndarray, mask_zyx: np.ndarray, spacing_zyx) -> float:
    """Agatston score of the calcium inside ``mask`` by a per-slice loop (reference implementation)."""
    dz, dy, dx = (float(s) for s in spacing_zyx)
    pixel_area = dy * dx
    calc = mask_zyx.astype(bool) & (hu_zyx >= CALCIUM_THRESHOLD_HU)
    eight = np.ones((3, 3), dtype=bool)
    total = 0.0
    for k in range(calc.shape[0]):
        if not calc[k].any():
            continue
        comp, n = ndimage.label(calc[k], structure=eight)
        for lab in range(1, n + 1):
            sel = comp == lab
            area = float(sel.sum()) * pixel_area
            if area < MIN_LESION_AREA_MM2:
                continue
            total += area * density_weight(float(hu_zyx[k][sel].max()))
    return total * dz / AGATSTON_REFERENCE_SLICE_MM


def ground_truth(phantom) -> dict:
    """Per-artery and total calcium truth of a phantom: volumes, Agatston, lesions, analytic volumes."""
    lab = phantom.labels.array
    hu = phantom.ct_clean.array
    spacing = phantom.labels.spacing_zyx
    vox = phantom.labels.voxel_volume_mm3
    per: dict[str, dict] = {}
    for artery in ARTERIES:
        m = lab == CALCIUM_ID[artery]
        _, n_lesions = ndimage.label(m, structure=np.ones((3, 3, 3), dtype=bool))
        vol = float(m.sum()) * vox
        plaques = [p for p in phantom.config.plaques if p.artery == artery]
        per[artery] = {
            "calcium_volume_mm3": vol,
            "calcium_volume_ml": mm3_to_ml(vol),
            "agatston": agatston_reference(hu, m, spacing),
            "lesions": int(n_lesions),
            "peak_hu": float(hu[m].max()) if m.any() else None,
            "analytic_volume_mm3": float(sum(4.0 / 3.0 * np.pi * p.radius_mm**3 for p in plaques)),
            "plaques": len(plaques),
            "artery_voxels": int((lab == CALCIUM_ID[artery] - 3).sum()),
        }
    total_vol = sum(v["calcium_volume_mm3"] for v in per.values())
    return {
        "arteries": per,
        "total": {
            "calcium_volume_mm3": total_vol,
            "calcium_volume_ml": mm3_to_ml(total_vol),
            "agatston": float(sum(v["agatston"] for v in per.values())),
            "lesions": int(sum(v["lesions"] for v in per.values())),
        },
        "spacing_zyx": list(spacing),
        "voxel_volume_mm3": vox,
        "convention": "HU>=130; per-slice 2D 8-connected, min area 1 mm2; weights 1-4 by peak HU; x slice spacing/3 mm; lesions 3D 26-connected",
    }


SCORED_FIELDS = ("calcium_volume_mm3", "agatston", "lesions")


def imaged_numbers(truth: dict) -> dict:
    """The numbers a perfect reader sees on the scan: per artery and total, ``calcium_volume_mm3``,
    ``agatston`` and ``lesions`` **as imaged** (v2: with this scan's cardiac motion; the label maps
    are drawn so too), each with its heart-still value beside it as ``<field>_still``.

    v1 truths and still hearts have one version: imaged = still. Every benchmark and truth.csv scores
    against these (issue 26: one patient's RCA was 88.7 still and 41.7 as imaged)."""
    arteries = {}
    for a in ARTERIES:
        v = truth["arteries"][a]
        img = v.get("imaged") or {}
        arteries[a] = {f: img.get(f, v.get(f)) for f in SCORED_FIELDS} | {f"{f}_still": v.get(f) for f in SCORED_FIELDS}
    total = {f: sum(float(arteries[a][f] or 0) for a in ARTERIES) for f in SCORED_FIELDS}
    total |= {f"{f}_still": truth["total"].get(f) for f in SCORED_FIELDS}
    total["lesions"] = int(total["lesions"])
    return {"arteries": arteries, "total": total}
