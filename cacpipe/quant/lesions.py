"""The one lesion model: calcified lesions of a six-class label map, with their Agatston share.

A lesion is a 3D 26-connected component of calcium voxels (HU >= 130 inside one artery's calcium
label, ids 4-6 of ``cacpipe.labels``). Its Agatston contribution is the sum, over the per-slice
2D 8-connected components inside it that reach the minimum area, of area x density weight x
(slice spacing / 3 mm): the same convention as :mod:`cacpipe.quant.agatston`, so the lesions of
an artery add up to that artery's score. Every 2D component lies in exactly one lesion, because
in-plane 8-connectivity is part of 26-connectivity.

The ``Lesion`` type is defined in :mod:`cacpipe.record` (the record sits below the stages) and
re-exported here. Quantification, review pages, overlays, DICOM SR and evaluation all read lesions from here.
Arrays are (z, y, x); slice indices are 0-based in volume order (inferior -> superior).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from scipy import ndimage

from ..labels import ARTERIES, CALCIUM_ID
from ..morph import label_objects
from ..record import Lesion  # the data type lives with the study record (re-exported here)
from ..units import AGATSTON_REFERENCE_SLICE_MM, CALCIUM_THRESHOLD_HU
from .agatston import LESION_STRUCTURE, MIN_LESION_AREA_MM2, SLICE_STRUCTURE, _as_label_array, density_weights


def _artery_lesions(hu: np.ndarray, mask: np.ndarray, spacing_zyx: Sequence[float], artery: str,
                    offset: tuple[int, int, int]) -> list[tuple[Lesion, np.ndarray, tuple[slice, ...]]]:
    """Lesions of one calcium mask (a box of the full volume starting at ``offset``)."""
    dz, dy, dx = (float(s) for s in spacing_zyx)
    calc = mask & (hu >= CALCIUM_THRESHOLD_HU)
    if not calc.any():
        return []
    comp3, n3 = ndimage.label(calc, structure=LESION_STRUCTURE)
    comp2, n2 = ndimage.label(calc, structure=SLICE_STRUCTURE)
    ids2 = comp2[calc]
    vals = hu[calc].astype(float)
    area2 = np.bincount(ids2, minlength=n2 + 1) * (dy * dx)
    peak2 = np.full(n2 + 1, -np.inf)
    np.maximum.at(peak2, ids2, vals)
    owner = np.zeros(n2 + 1, dtype=np.int64)
    owner[ids2] = comp3[calc]
    keep = area2 >= MIN_LESION_AREA_MM2
    keep[0] = False
    contrib = np.where(keep, area2 * density_weights(np.where(np.isfinite(peak2), peak2, 0.0)), 0.0)
    per_lesion = np.bincount(owner, weights=contrib, minlength=n3 + 1) * dz / AGATSTON_REFERENCE_SLICE_MM
    out = []
    for i, sl in enumerate(ndimage.find_objects(comp3), start=1):
        sub = comp3[sl] == i
        per_slice = sub.sum(axis=(1, 2))
        kb = int(np.argmax(per_slice))
        ys, xs = np.nonzero(sub[kb])
        cy, cx = ys.mean(), xs.mean()
        r = float(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max()))
        zz, yy, xx = np.nonzero(sub)
        h = hu[sl][sub]
        lo = tuple(s.start + o for s, o in zip(sl, offset, strict=True))
        hi = tuple(s.stop + o for s, o in zip(sl, offset, strict=True))
        les = Lesion(
            artery=artery, number=0, voxels=int(sub.sum()), volume_mm3=float(sub.sum()) * dz * dy * dx,
            peak_hu=float(h.max()), mean_hu=float(h.mean()), agatston=float(per_lesion[i]),
            area_mm2=float(per_slice.max()) * dy * dx,
            slices=tuple(int(lo[0] + k) for k in np.nonzero(per_slice)[0]), best_slice=int(lo[0] + kb),
            centre_zyx=(float(zz.mean() + lo[0]), float(yy.mean() + lo[1]), float(xx.mean() + lo[2])),
            centre_yx=(float(cy + lo[1]), float(cx + lo[2])), radius_px=r,
            bbox_zyx=tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=True)),
        )
        out.append((les, sub, sl))
    return out


def find_lesions(hu: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float],
                 with_map: bool = False) -> tuple[list[Lesion], np.ndarray | None]:
    """All calcified lesions of a six-class map, per artery in report order, largest first.

    ``hu`` and ``labels`` are (z, y, x) arrays on the same grid. With ``with_map``, also returns
    a uint16 lesion-id map (0 = none, k = the k-th lesion of the returned list, 1-based).
    """
    hu = np.asarray(hu)
    lab = _as_label_array(labels)
    boxes = label_objects(lab, max_label=6)
    lesions: list[Lesion] = []
    lmap = np.zeros(lab.shape, dtype=np.uint16) if with_map else None
    for artery in ARTERIES:
        cid = CALCIUM_ID[artery]
        box = boxes[cid - 1]
        if box is None:
            continue
        offset = tuple(s.start for s in box)
        found = _artery_lesions(hu[box], lab[box] == cid, spacing_zyx, artery, offset)  # type: ignore[arg-type]
        found.sort(key=lambda f: (-f[0].voxels, f[0].centre_zyx))
        for number, (les, sub, sl) in enumerate(found, start=1):
            lesions.append(Lesion(**{**asdict(les), "number": number}))
            if lmap is not None:
                view = lmap[box][sl]
                view[sub] = len(lesions)
    return lesions, lmap
