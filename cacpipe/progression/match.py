"""Lesions of two studies matched across time; per-artery change against the repeatability.

Matching: a prior lesion and a current lesion can match when the current lesion's centroid,
mapped into the prior's space by the registration, lies within the gate of the prior one
(:func:`gate_mm`: :data:`GATE_MM`, or half the larger lesion's extent for long lesions) and they
are on the same artery, or both on the left system (LAD and LCX share the left main, and
where the left main's calcium ends up differs from scan to scan: such a pair costs
:data:`LEFT_SWAP_MM` more and says ``artery_prior``); never across RCA and the left system.
Pairs are chosen to minimise the summed distance (Hungarian assignment).
A current lesion left over but within the gate of a matched prior lesion, or within :data:`SPLIT_GAP_MM` (bounding boxes) of a
current lesion that matched, on the same artery system, is part of it that the threshold now
splits off (a long plaque seen in pieces; status ``grown``, same match id); a prior lesion left over within
the gate of a current lesion merged into it (``merged``). Then:

- ``new``: a current lesion with no prior lesion within the gate;
- ``gone``: a prior lesion with no current lesion within the gate (calcium does not vanish: a
  sign of a missed lesion, a stent, or a registration failure, so it is worth a look);
- ``missed_before`` (set by cacpipe.progression.run): a ``new`` lesion where the prior CT has
  calcium the prior's result did not count (cacpipe.progression.prior_look): not a new plaque;
- ``reappeared`` (set by cacpipe.progression.run over a patient's whole series): a ``new``
  lesion where an earlier study had a lesion whose track ended (a scan in between missed it);
- ``grown`` / ``smaller`` / ``stable``: a matched lesion whose square-root volume changed by more
  than +/- the repeatability threshold, or not.

Repeatability (:data:`SQRT_VOLUME_THRESHOLD`): Hokanson et al., AJR 2004;182:1327-1332 (the
"SQRT method"): a difference of >= 2.5 in the square root of the calcium volume score (mm^3)
exceeds the interscan variability of paired scans. It was derived on gated (EBCT) scans; on
non-gated chest CT the variability is larger: cacpipe's own on phantom rescans is measured by
``devtools/progression_check.py`` (docs/progression.md gives the figure). Pass another value
with ``--repeatability``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..labels import ARTERIES
from ..record import StudyResult

GATE_MM = 8.0
LEFT = ("LAD", "LCX")
LEFT_SWAP_MM = 4.0  # extra cost of a LAD <-> LCX match (same artery preferred at equal distance)
SPLIT_GAP_MM = 3.0  # a leftover current lesion this close to a matched one of the same scan is a split part
SQRT_VOLUME_THRESHOLD = 2.5  # Hokanson et al. 2004 (see the module docstring)
REPEATABILITY_SOURCE = ("Hokanson et al., AJR 2004;182:1327-1332 (SQRT method): sqrt(V2) - sqrt(V1) >= 2.5, "
                        "V = calcium volume (mm3); derived on gated scans")
FAST_PERCENT_PER_YEAR = 15.0  # "fast" progression: Agatston more than 15 % a year (the figure)


@dataclass
class LesionAt:
    """One lesion of one study: where (prior space, LPS mm), how big, and its extent (mm)."""

    index: int  # position in the study's result lesions
    artery: str
    name: str
    xyz: np.ndarray
    volume_mm3: float
    agatston: float
    extent_mm: float
    box_mm: tuple | None = None  # (lo, hi) of its bounding box in its own scan's voxel grid, in mm (z, y, x)


def physical(result: StudyResult, centre_zyx) -> np.ndarray:
    """A voxel position (z, y, x) of ``result``'s CT grid in LPS mm."""
    ct = result.ct
    d = np.asarray(ct["direction"], float).reshape(3, 3)
    sp = np.asarray(ct["spacing_zyx"], float)[::-1]
    return np.asarray(ct["origin_xyz"], float) + (np.asarray(centre_zyx, float)[::-1] * sp) @ d.T


def lesions_at(result: StudyResult, to_prior=None) -> list[LesionAt]:
    """``result``'s lesions with positions (mapped by ``to_prior`` when given)."""
    sp = np.asarray(result.ct.get("spacing_zyx") or (1.0, 1.0, 1.0), float)
    out = []
    for i, les in enumerate(result.lesions):
        xyz = physical(result, les.centre_zyx)
        if to_prior is not None:
            xyz = to_prior(xyz[None])[0]
        ext = max(((hi - lo) * s for (lo, hi), s in zip(les.bbox_zyx, sp, strict=True)), default=0.0) \
            if les.bbox_zyx else 2.0 * les.radius_px * float(sp[2])
        box = ((np.array([lo for lo, _ in les.bbox_zyx], float) * sp, np.array([hi for _, hi in les.bbox_zyx], float) * sp)
               if les.bbox_zyx else None)
        out.append(LesionAt(i, les.artery, les.name, xyz, float(les.volume_mm3), float(les.agatston), float(ext), box))
    return out


def gate_mm(a: LesionAt, b: LesionAt) -> float:
    return max(GATE_MM, 0.5 * max(a.extent_mm, b.extent_mm))


def box_gap_mm(a: LesionAt, b: LesionAt) -> float:
    """Gap between two lesions of one scan (their bounding boxes; 0 when they touch or overlap)."""
    if a.box_mm is None or b.box_mm is None:
        return float(np.linalg.norm(a.xyz - b.xyz))
    (l1, h1), (l2, h2) = a.box_mm, b.box_mm
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(l2 - h1, l1 - h2))))


def _dsqrt(v1: float, v2: float) -> float:
    return float(np.sqrt(max(v2, 0.0)) - np.sqrt(max(v1, 0.0)))


def lesion_status(v1: float, v2: float, threshold: float = SQRT_VOLUME_THRESHOLD) -> str:
    d = _dsqrt(v1, v2)
    return "grown" if d >= threshold else "smaller" if d <= -threshold else "stable"


def _same_system(a: LesionAt, b: LesionAt) -> bool:
    return a.artery == b.artery or (a.artery in LEFT and b.artery in LEFT)


def match_lesions(prior: list[LesionAt], current: list[LesionAt],
                  threshold: float = SQRT_VOLUME_THRESHOLD) -> list[dict]:
    """Matches (see the module docstring): one dict per lesion event, ``prior`` / ``current`` indices."""
    n, m = len(prior), len(current)
    dist = np.full((n, m), np.inf)
    for i, p in enumerate(prior):
        for j, c in enumerate(current):
            d = float(np.linalg.norm(p.xyz - c.xyz))
            same = p.artery == c.artery
            if (same or (p.artery in LEFT and c.artery in LEFT)) and d <= gate_mm(p, c):
                dist[i, j] = d + (0.0 if same else LEFT_SWAP_MM)
    pairs: list[tuple[int, int]] = []
    if n and m and np.isfinite(dist).any():
        cost = np.where(np.isfinite(dist), dist, 1e6)
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if np.isfinite(dist[i, j])]
    events = []
    used_p, used_c = {i for i, _ in pairs}, {j for _, j in pairs}
    for i, j in pairs:
        p, c = prior[i], current[j]
        e = {"prior": i, "current": j, "artery": c.artery,
             "distance_mm": round(float(np.linalg.norm(p.xyz - c.xyz)), 2),
             "status": lesion_status(p.volume_mm3, c.volume_mm3, threshold)}
        if p.artery != c.artery:
            e["artery_prior"] = p.artery
        events.append(e)
    link = dict((j, i) for i, j in pairs)
    for j in range(m):
        if j in used_c:
            continue
        near = [i for i in used_p if np.isfinite(dist[i, j])]
        i = min(near, key=lambda k: dist[k, j]) if near else None
        if i is None:  # a part the threshold split off a matched lesion of this scan (a long plaque)
            parts = [k for k in link if _same_system(current[k], current[j])
                     and box_gap_mm(current[k], current[j]) <= SPLIT_GAP_MM]
            i = link[min(parts, key=lambda k: box_gap_mm(current[k], current[j]))] if parts else None
        events.append({"prior": i, "current": j, "artery": current[j].artery,
                       "distance_mm": None if i is None else round(float(np.linalg.norm(prior[i].xyz - current[j].xyz)), 2),
                       "status": "grown" if i is not None else "new", "split": i is not None})
    for i in range(n):
        if i in used_p:
            continue
        near = [j for j in range(m) if np.isfinite(dist[i, j])]
        j = min(near, key=lambda k: dist[i, k]) if near else None
        events.append({"prior": i, "current": j, "artery": prior[i].artery,
                       "distance_mm": None if j is None else round(float(np.linalg.norm(prior[i].xyz - current[j].xyz)), 2),
                       "status": "merged" if j is not None else "gone"})
    return events


def artery_change(prior: StudyResult, current: StudyResult, years: float,
                  threshold: float = SQRT_VOLUME_THRESHOLD) -> dict[str, dict]:
    """Per artery (and total): values, change, annualised change, and whether it exceeds repeatability."""
    out = {}
    for a in (*ARTERIES, "total"):
        p = prior.total if a == "total" else prior.arteries[a]
        c = current.total if a == "total" else current.arteries[a]
        assessed = a == "total" or (p.assessed and c.assessed)
        g1, g2, v1, v2 = p.agatston, c.agatston, p.calcium_volume_mm3, c.calcium_volume_mm3
        if not assessed or None in (g1, g2, v1, v2):
            out[a] = {"assessed": False}
            continue
        row = {"assessed": True, "agatston_prior": g1, "agatston": g2, "agatston_change": round(g2 - g1, 3),
               "volume_prior_mm3": v1, "volume_mm3": v2, "volume_change_mm3": round(v2 - v1, 3),
               "sqrt_volume_change": round(_dsqrt(v1, v2), 3)}
        if years > 0:
            row["agatston_change_per_year"] = round((g2 - g1) / years, 3)
            row["volume_change_per_year_mm3"] = round((v2 - v1) / years, 3)
            row["agatston_percent_per_year"] = (round(((g2 / g1) ** (1.0 / years) - 1.0) * 100.0, 2)
                                                if g1 > 0 else None)
        d = row["sqrt_volume_change"]
        row["exceeds_repeatability"] = bool(abs(d) >= threshold)
        row["progression"] = bool(d >= threshold)
        pct = row.get("agatston_percent_per_year")
        row["fast"] = bool(row["progression"] and (pct is None or pct > FAST_PERCENT_PER_YEAR))
        out[a] = row
    return out
