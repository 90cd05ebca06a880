"""Lesion-level evaluation: predicted lesions matched to reference lesions by overlap.

Lesions are those of the project's one lesion model (:func:`cacpipe.quant.lesions.find_lesions`:
26-connected calcium components >= 130 HU inside one artery's calcium label), computed on both
label maps with the same CT. Without a CT every calcium-labelled voxel counts as calcium (the
report says which). A phantom's ``truth_lesions.nii.gz`` (one id per plaque), when given,
defines the reference lesions directly.

Matching rule: a predicted and a reference lesion match when they share at least one voxel,
whatever artery each was assigned to. Then, per artery A:

- a reference lesion of A is *detected* (TP) when it overlaps a predicted lesion of A, else it is
  a false negative of A (missed, or found under another artery);
- a predicted lesion of A is a false positive of A when it overlaps no reference lesion of A;
- sensitivity = TP reference lesions / reference lesions; PPV = predicted lesions overlapping a
  reference lesion of their artery / predicted lesions; FP per scan = false positives / scans.

``any`` ignores the artery (location only). The attribution confusion matrix counts each
reference lesion once, under (its artery, the artery of the predicted lesion that overlaps it
most, or ``missed``), and each predicted lesion that overlaps no reference lesion under
(``none``, its artery): an RCA plaque reported as LCX lands in the (RCA, LCX) cell.
Per-voxel Dice of calcium per artery (and any artery) is pooled over the scans.
Arrays are (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import GeometryError
from ..labels import ARTERIES, CALCIUM_IDS
from ..units import CALCIUM_THRESHOLD_HU
from .stats import wilson_ci

SCOPES: tuple[str, ...] = (*ARTERIES, "any")
REF_AXIS: tuple[str, ...] = (*ARTERIES, "none")  # rows of the attribution matrix
PRED_AXIS: tuple[str, ...] = (*ARTERIES, "missed")  # columns


@dataclass
class LesionSet:
    """Lesions of one map: ``ids`` (z, y, x) uint32, 0 = none, k = lesion k; ``arteries[k-1]``."""

    ids: np.ndarray
    arteries: list[str]
    spacing_zyx: tuple[float, float, float]

    @property
    def count(self) -> int:
        return len(self.arteries)

    def artery_map(self) -> np.ndarray:
        """(z, y, x) int8: 0 = no calcium, i + 1 = calcium of ARTERIES[i]."""
        lut = np.zeros(self.count + 1, dtype=np.int8)
        for k, a in enumerate(self.arteries, start=1):
            lut[k] = ARTERIES.index(a) + 1
        return lut[self.ids]


def lesions_of(labels: np.ndarray, spacing_zyx, hu: np.ndarray | None = None) -> LesionSet:
    """Lesions of a six-class map by :func:`cacpipe.quant.lesions.find_lesions`.

    Without ``hu`` every calcium-labelled voxel counts (a constant image at the threshold).
    """
    from ..quant.lesions import find_lesions

    lab = np.asarray(labels)
    if hu is None:
        hu = np.full(lab.shape, CALCIUM_THRESHOLD_HU, dtype=np.int16)
    elif hu.shape != lab.shape:
        raise GeometryError(f"CT shape {hu.shape} differs from the label map's {lab.shape}")
    found, lmap = find_lesions(hu, lab, spacing_zyx, with_map=True)
    return LesionSet(lmap.astype(np.uint32), [f.artery for f in found], tuple(float(s) for s in spacing_zyx))


def lesions_from_ids(ids: np.ndarray, labels: np.ndarray, spacing_zyx) -> LesionSet:
    """Lesions given as an id map (e.g. a phantom's truth_lesions): artery = most common calcium label."""
    ids = np.asarray(ids).astype(np.int64)
    lab = np.asarray(labels)
    present = [int(i) for i in np.unique(ids) if i > 0]
    relabel = np.zeros(int(ids.max()) + 1 if ids.size else 1, dtype=np.uint32)
    arteries = []
    for i in present:
        votes = [int(np.sum((ids == i) & (lab == cid))) for cid in CALCIUM_IDS]
        if max(votes) == 0:
            continue  # a lesion id outside every calcium label: not coronary calcium
        arteries.append(ARTERIES[int(np.argmax(votes))])
        relabel[i] = len(arteries)
    return LesionSet(relabel[ids], arteries, tuple(float(s) for s in spacing_zyx))


def match_scan(pred: LesionSet, ref: LesionSet) -> dict:
    """Match one scan's lesions; returns per-scope counts, attribution cells, lesion pairs and Dice counts."""
    if pred.ids.shape != ref.ids.shape:
        raise GeometryError(f"prediction and reference maps differ in shape: {pred.ids.shape} vs {ref.ids.shape}")
    n_p, n_r = pred.count, ref.count
    both = (pred.ids > 0) & (ref.ids > 0)
    ov = np.bincount(pred.ids[both].astype(np.int64) * (n_r + 1) + ref.ids[both],
                     minlength=(n_p + 1) * (n_r + 1)).reshape(n_p + 1, n_r + 1)[1:, 1:]  # pred x ref voxels
    pa = np.array(pred.arteries, dtype=object)
    ra = np.array(ref.arteries, dtype=object)
    counts: dict[str, dict[str, int]] = {}
    for scope in SCOPES:
        ps = np.ones(n_p, bool) if scope == "any" else pa == scope
        rs = np.ones(n_r, bool) if scope == "any" else ra == scope
        sub = ov[np.ix_(ps, rs)] > 0
        tp_ref = int(sub.any(axis=0).sum())
        tp_pred = int(sub.any(axis=1).sum())
        counts[scope] = {"ref_lesions": int(rs.sum()), "pred_lesions": int(ps.sum()), "tp_ref": tp_ref,
                         "fn": int(rs.sum()) - tp_ref, "tp_pred": tp_pred, "fp": int(ps.sum()) - tp_pred}
    cells: dict[tuple[str, str], int] = {}
    pairs = []
    ref_vox = np.bincount(ref.ids.ravel(), minlength=n_r + 1)[1:]
    pred_vox = np.bincount(pred.ids.ravel(), minlength=n_p + 1)[1:]
    centres = ndimage.center_of_mass(ref.ids > 0, ref.ids, range(1, n_r + 1)) if n_r else []
    vox_mm3 = float(np.prod(ref.spacing_zyx))
    for j in range(n_r):
        col = ov[:, j]
        best = int(np.argmax(col)) if n_p and col.max() > 0 else -1
        got = pred.arteries[best] if best >= 0 else "missed"
        cells[(ref.arteries[j], got)] = cells.get((ref.arteries[j], got), 0) + 1
        pairs.append({"ref_lesion": j + 1, "ref_artery": ref.arteries[j], "ref_volume_mm3": float(ref_vox[j]) * vox_mm3,
                      "ref_centre_zyx": "/".join(f"{c:.1f}" for c in centres[j]),
                      "pred_lesion": best + 1 if best >= 0 else None, "pred_artery": got,
                      "pred_volume_mm3": float(pred_vox[best]) * vox_mm3 if best >= 0 else None,
                      "overlap_voxels": int(col[best]) if best >= 0 else 0,
                      "other_pred_lesions": int((col > 0).sum()) - (1 if best >= 0 else 0)})
    for i in np.nonzero(~(ov > 0).any(axis=1))[0] if n_p else []:
        cells[("none", pred.arteries[i])] = cells.get(("none", pred.arteries[i]), 0) + 1
        pairs.append({"ref_lesion": None, "ref_artery": "none", "ref_volume_mm3": None, "ref_centre_zyx": None,
                      "pred_lesion": int(i) + 1, "pred_artery": pred.arteries[i],
                      "pred_volume_mm3": float(pred_vox[i]) * vox_mm3, "overlap_voxels": 0,
                      "other_pred_lesions": 0})
    pam, ram = pred.artery_map(), ref.artery_map()
    dice = {}
    for k, scope in enumerate(SCOPES, start=1):
        p = pam > 0 if scope == "any" else pam == k
        r = ram > 0 if scope == "any" else ram == k
        dice[scope] = {"intersection": int(np.sum(p & r)), "pred_voxels": int(p.sum()), "ref_voxels": int(r.sum())}
    return {"counts": counts, "cells": cells, "pairs": pairs, "dice": dice}


def _dice(d: dict) -> float | None:
    den = d["pred_voxels"] + d["ref_voxels"]
    return 2.0 * d["intersection"] / den if den else None


def summarise(per_scan: list[dict]) -> dict:
    """Pool scans: per-scope lesion sensitivity / PPV (Wilson CI), FP per scan, Dice; attribution matrix."""
    n = len(per_scan)
    rows = []
    for scope in SCOPES:
        c = {k: sum(s["counts"][scope][k] for s in per_scan) for k in per_scan[0]["counts"][scope]} if n else {}
        d = {k: sum(s["dice"][scope][k] for s in per_scan) for k in ("intersection", "pred_voxels", "ref_voxels")} \
            if n else {"intersection": 0, "pred_voxels": 0, "ref_voxels": 0}
        sens = c["tp_ref"] / c["ref_lesions"] if n and c["ref_lesions"] else None
        ppv = c["tp_pred"] / c["pred_lesions"] if n and c["pred_lesions"] else None
        s_lo, s_hi = wilson_ci(c.get("tp_ref", 0), c.get("ref_lesions", 0))
        p_lo, p_hi = wilson_ci(c.get("tp_pred", 0), c.get("pred_lesions", 0))
        rows.append({"artery": scope, "scans": n, **c, "sensitivity": sens, "sensitivity_ci_low": s_lo,
                     "sensitivity_ci_high": s_hi, "ppv": ppv, "ppv_ci_low": p_lo, "ppv_ci_high": p_hi,
                     "fp_per_scan": c["fp"] / n if n else None, "dice": _dice(d), **{f"dice_{k}": v for k, v in d.items()}})
    table = np.zeros((len(REF_AXIS), len(PRED_AXIS)), dtype=int)
    for s in per_scan:
        for (r, p), v in s["cells"].items():
            table[REF_AXIS.index(r), PRED_AXIS.index(p)] += v
    return {"rows": rows, "attribution": {"ref": list(REF_AXIS), "pred": list(PRED_AXIS), "table": table.tolist()}}


def scan_dice(match: dict) -> dict[str, float | None]:
    return {scope: _dice(match["dice"][scope]) for scope in SCOPES}


# --- one study: put both maps (and a CT) on the prediction's grid ---------------------------
def on_grid(vol, grid, labels: bool) -> np.ndarray:
    """``vol``'s voxels on ``grid``'s grid (Volumes): as is when the grids agree, else resampled in
    patient space with SimpleITK (nearest neighbour for labels, linear for HU; outside = 0 / -1024)."""
    import SimpleITK as sitk

    if vol.same_grid(grid):
        return vol.array
    out = sitk.Resample(vol.to_sitk(), grid.to_sitk(), sitk.Transform(),
                        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, 0.0 if labels else -1024.0,
                        vol.to_sitk().GetPixelID())
    arr = sitk.GetArrayFromImage(out)
    if labels and np.asarray(vol.array).any() and not arr.any():
        raise GeometryError("the reference label map does not overlap the prediction's grid (different scan?)")
    return arr


def _first(*vols):
    return next((v for v in vols if v is not None), None)


def prepare_scan(pred_src, ref_src) -> tuple[LesionSet, LesionSet, list[str]]:
    """Lesions of a predicted and a reference map (sources.LabelSource) on the prediction's grid.

    CT used: the prediction's own ``ct.nii.gz``, else the one the reference knows the scan was
    given (a phantom's noisy CT), else the reference's CT, else none (labels alone). The
    reference is thresholded with its own CT when it has one (a phantom's noise-free image).
    """
    grid = pred_src.labels
    notes: list[str] = []
    ref_lab = on_grid(ref_src.labels, grid, labels=True)
    if not ref_src.labels.same_grid(grid):
        notes.append("reference map resampled to the prediction grid (nearest neighbour)")
    pred_ct = _first(pred_src.ct, ref_src.scan_ct, ref_src.ct)
    ref_ct = _first(ref_src.ct, pred_ct)
    p_hu = None if pred_ct is None else on_grid(pred_ct, grid, labels=False)
    r_hu = None if ref_ct is None else on_grid(ref_ct, grid, labels=False)
    if pred_ct is None:
        notes.append("no CT found: every calcium-labelled voxel counts as calcium")
    elif pred_src.ct is None:
        notes.append("prediction thresholded with the reference's CT of the same scan")
    pred = lesions_of(pred_src.labels.array, grid.spacing_zyx, p_hu)
    if ref_src.lesion_ids is not None:
        ref = lesions_from_ids(on_grid(ref_src.lesion_ids, grid, labels=True), ref_lab, grid.spacing_zyx)
        notes.append("reference lesions from truth_lesions.nii.gz")
    else:
        ref = lesions_of(ref_lab, grid.spacing_zyx, r_hu)
    return pred, ref, notes
