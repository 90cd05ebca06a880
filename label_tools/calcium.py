"""Four MASS classes (RCA, LAD, LCX, calcium of any artery) -> the six-class label map.

The rule (documented in docs/label_tools.md, counted in every conversion report):

1. Calcium is split into 3D 26-connected components (the lesion definition of cacpipe).
2. A component *touches* an artery when some of its voxels lie within ``dilation_mm`` (Euclidean,
   in mm, voxel centre to voxel centre) of that artery's mask, i.e. inside the artery mask
   dilated by a ball of that radius.
3. Touches exactly one artery -> the whole component is that artery's calcium.
4. Touches two or more (typically at the left main bifurcation) -> *ambiguous*: each voxel goes
   to the nearest touching artery (ties: report order RCA, LAD, LCX).
5. Touches none -> *orphan*: with ``orphan="nearest"`` the whole component goes to the nearest
   artery if that is within ``orphan_max_mm``, else it is dropped; ``orphan="drop"`` always drops.
   Dropped calcium is absent from the label map and listed in the report.
6. Artery labels keep only non-calcified voxels (calcium is painted over them). Where artery
   contours overlap, the voxel goes to the first artery in report order (RCA, LAD, LCX) and the
   overlap is counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cacpipe.errors import ConfigError
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID


@dataclass(frozen=True)
class CalciumRules:
    """Settings of the calcium-to-artery assignment."""

    dilation_mm: float = 2.0
    orphan: str = "nearest"  # "nearest" | "drop"
    orphan_max_mm: float = 5.0

    def __post_init__(self) -> None:
        if self.orphan not in ("nearest", "drop"):
            raise ConfigError(f"orphan rule {self.orphan!r}: choose 'nearest' or 'drop'")
        if not (self.dilation_mm >= 0 and self.orphan_max_mm >= 0):
            raise ConfigError("dilation_mm and orphan_max_mm must be >= 0 mm")


def _box(sl: tuple[slice, ...], margin: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(sl, margin, shape, strict=True))


def split_calcium(masks: dict[str, np.ndarray], spacing_zyx, rules: CalciumRules | None = None
                  ) -> tuple[np.ndarray, dict]:
    """Six-class uint8 label map (cacpipe.labels ids) from the four MASS masks, and a report.

    ``masks``: boolean (z, y, x) arrays under the keys RCA, LAD, LCX and calcium.
    The report has counts (components single / ambiguous / orphan assigned / dropped, voxels)
    and one entry per non-simple component (ambiguous or orphan) with its centroid.
    """
    from scipy import ndimage

    rules = rules or CalciumRules()
    calc = masks["calcium"].astype(bool)
    shape = calc.shape
    spacing = tuple(float(s) for s in spacing_zyx)
    reach = max(rules.dilation_mm, rules.orphan_max_mm if rules.orphan == "nearest" else 0.0)
    margin = tuple(int(math.ceil(reach / s)) + 1 for s in spacing)

    out = np.zeros(shape, dtype=np.uint8)
    overlap = 0
    covered = np.zeros(shape, dtype=bool)
    for a in ARTERIES:
        m = masks[a].astype(bool)
        overlap += int((m & covered).sum())
        out[m & ~covered] = ARTERY_ID[a]
        covered |= m

    comp, n = ndimage.label(calc, structure=np.ones((3, 3, 3), dtype=bool))
    counts = {"single": 0, "ambiguous": 0, "orphan_assigned": 0, "orphan_dropped": 0}
    voxels = {a: 0 for a in ARTERIES} | {"dropped": 0}
    issues: list[dict] = []
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        box = _box(sl, margin, shape)
        cm = comp[box] == i
        dist: dict[str, np.ndarray] = {}
        for a in ARTERIES:
            am = masks[a][box]
            if am.any():
                dist[a] = ndimage.distance_transform_edt(~am, sampling=spacing)[cm]
        mins = {a: float(d.min()) for a, d in dist.items()}
        touching = [a for a in ARTERIES if a in mins and mins[a] <= rules.dilation_mm]
        idx = tuple(np.asarray(ix)[cm] + s.start for ix, s in zip(np.indices(cm.shape), box, strict=True))
        centroid = [round(float(np.mean(ix)), 1) for ix in idx]
        nvox = int(cm.sum())
        entry = {"component": i, "voxels": nvox, "centroid_zyx": centroid,
                 "min_distance_mm": {a: round(v, 2) for a, v in mins.items()}}
        if len(touching) == 1:
            counts["single"] += 1
            a = touching[0]
            out[idx] = CALCIUM_ID[a]
            voxels[a] += nvox
            continue
        if len(touching) >= 2:
            counts["ambiguous"] += 1
            d = np.stack([dist[a] for a in touching])  # argmin keeps the first on ties: report order
            pick = np.argmin(d, axis=0)
            split = {}
            for k, a in enumerate(touching):
                sel = pick == k
                out[tuple(ix[sel] for ix in idx)] = CALCIUM_ID[a]
                voxels[a] += int(sel.sum())
                split[a] = int(sel.sum())
            issues.append(entry | {"resolution": "ambiguous_split_by_nearest", "voxels_by_artery": split})
            continue
        nearest = min(mins, key=mins.__getitem__) if mins else None
        if rules.orphan == "nearest" and nearest is not None and mins[nearest] <= rules.orphan_max_mm:
            counts["orphan_assigned"] += 1
            out[idx] = CALCIUM_ID[nearest]
            voxels[nearest] += nvox
            issues.append(entry | {"resolution": "orphan_assigned_to_nearest", "artery": nearest})
        else:
            counts["orphan_dropped"] += 1
            voxels["dropped"] += nvox
            # The voxel keeps whatever artery label it had (none: orphans touch no artery).
            issues.append(entry | {"resolution": "orphan_dropped"})
    report = {
        "rules": asdict(rules),
        "calcium_components": int(n),
        "components": counts,
        "calcium_voxels": voxels,
        "artery_overlap_voxels": overlap,
        "issues": issues,
    }
    return out, report


def six_to_mass(labels: np.ndarray, artery_includes_calcium: bool = True) -> dict[str, np.ndarray]:
    """Six-class label map -> the four MASS masks (calcium merged over arteries).

    With ``artery_includes_calcium`` (default) an artery mask is the whole vessel (artery + its
    calcium), as a radiologist draws it around a calcified segment.
    """
    out: dict[str, np.ndarray] = {}
    for a in ARTERIES:
        m = labels == ARTERY_ID[a]
        if artery_includes_calcium:
            m |= labels == CALCIUM_ID[a]
        out[a] = m
    out["calcium"] = np.isin(labels, [CALCIUM_ID[a] for a in ARTERIES])
    return out
