"""Calcium by definition on the predicted coronary tree: the density rule (docs/stage2.md).

Agatston defines calcium as >= 130 HU on a coronary artery. The network's artery labels find the
trees far more reliably than its calcium channel fires on small plaques, so every >= 130 HU
component on or next to a predicted coronary label is a *candidate*, whether or not the calcium
channel fired on it. A candidate is judged by a small logistic model of what tells plaques from
noise, partial volume and confounders on the same scan (coefficients, their training phantoms
and the command that fitted them: ``cacpipe/data/density_rule.json``):

- ``calc_prob``: the network's highest calcium probability on it (its sigmoid below the 0.5 that
  makes a label: what the network saw and did not call; 0 when the map is not given);
- ``log_voxels``: log(1 + voxels >= 130 HU within ``NEAR_MM`` of the labels);
- ``peak_z``: (peak HU - 130) / blood-pool noise SD (the robust SD of HU inside the heart mask,
  eroded away from its wall: the same scan's own noise);
- ``smooth_z``: (mean HU of the 3 x 3 x 3 voxels round its peak - blood-pool median) / noise SD: a
  plaque blurred by the kernel lifts its neighbours, a noise spike hardly;
- ``log_excess``: log(1 + sum over its voxels of (HU - 130) / noise SD): size and density together;
- ``attached``: share of the whole >= 130 HU component (unbounded) that lies near the labels: a
  piece of bone, valve, aortic wall or contrast lumen reaches far beyond the artery (low share;
  below ``MIN_ATTACHED`` a candidate is never accepted);
- ``on_label``: share of its voxels on a predicted coronary label (not merely next to one);
- ``area_ok``: 1 when some slice holds >= 1 mm2 of it (Agatston's minimum lesion).

Accepted candidates become calcium seeds (the post-processing then completes and attributes them
like the network's own); every candidate, accepted or not, is recorded with its features, so a
dense spot on an artery never vanishes silently: the rejected ones with >= 1 mm2 are reported
by the ``calcium_uncounted`` flag. Arrays are (z, y, x) on the CT's own grid (a work box of it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..units import CALCIUM_THRESHOLD_HU

NEAR_MM = 1.5  # a candidate's voxels lie within this distance of a predicted coronary label
TOUCH_MM = 1.0  # ... and at least one of them this close (on or next to the label)
MIN_AREA_MM2 = 1.0  # Agatston's smallest lesion, in one slice
MIN_ATTACHED = 0.5  # share of its whole >= 130 HU structure a candidate must hold (else: bone, valve, wall)
NOISE_FLOOR_HU = 5.0  # a noise estimate below this is not trusted (a flat synthetic image)
DEFAULT_NOISE_HU = 30.0  # no heart mask or too few blood-pool voxels to measure the noise
DEFAULT_BLOOD_HU = 40.0  # ... and the blood pool's HU then
FEATURES = ("calc_prob", "log_voxels", "peak_z", "smooth_z", "log_excess", "attached", "on_label", "area_ok")
RULE_FILE = Path(__file__).resolve().parent.parent / "data" / "density_rule.json"
_CONN26 = np.ones((3, 3, 3), dtype=bool)
_SLICE8 = np.zeros((3, 3, 3), dtype=bool)
_SLICE8[1] = True


@dataclass(frozen=True)
class DensityRule:
    """A fitted judge: P(plaque) = logistic(intercept + sum(coef * feature)); accept when >= threshold."""

    coef: dict[str, float]
    intercept: float
    threshold: float
    source: str = ""

    def probability(self, feats: dict[str, float]) -> float:
        z = self.intercept + sum(self.coef.get(k, 0.0) * float(feats[k]) for k in FEATURES)
        return float(1.0 / (1.0 + np.exp(-z)))

    @classmethod
    def from_dict(cls, d: dict) -> DensityRule:
        return cls({k: float(v) for k, v in d["coef"].items()}, float(d["intercept"]), float(d["threshold"]),
                   str(d.get("source", "")))


@lru_cache(maxsize=4)
def load_rule(path: str | None = None) -> DensityRule:
    """The shipped rule (``cacpipe/data/density_rule.json``) or one at ``path``."""
    return DensityRule.from_dict(json.loads(Path(path or RULE_FILE).read_text()))


@dataclass
class Candidate:
    """One >= 130 HU component on or next to the predicted coronary labels (indices in the work box)."""

    index: int
    voxels: int
    volume_mm3: float
    max_area_mm2: float
    peak_hu: float
    centre_zyx: tuple[float, float, float]
    features: dict[str, float]
    network: bool  # the calcium channel fired on it (then it is the network's lesion, not a candidate)
    probability: float | None = None
    accepted: bool = False

    def to_dict(self, offset=(0, 0, 0)) -> dict:
        d = asdict(self)
        d["centre_zyx"] = [round(float(c) + float(o), 1) for c, o in zip(self.centre_zyx, offset, strict=True)]
        d["features"] = {k: round(float(v), 4) for k, v in self.features.items()}
        d["volume_mm3"] = round(self.volume_mm3, 2)
        d["max_area_mm2"] = round(self.max_area_mm2, 2)
        if self.probability is not None:
            d["probability"] = round(self.probability, 4)
        return d


def blood_stats(hu: np.ndarray, heart: np.ndarray | None, spacing_zyx) -> tuple[float, float] | None:
    """(median, robust SD = 1.4826 x MAD) of HU in the heart's interior, >= 5 mm from its wall.

    The interior of a non-contrast heart is blood and myocardium (40-60 HU apart), so the MAD is
    dominated by the noise. Voxels >= 130 HU (calcium, devices) are left out. None when the mask
    is missing or holds too few interior voxels. The erosion runs on a coarse grid (~2.5 mm): an
    exact 5 mm erosion of a whole heart at 0.6 mm costs seconds and measures nothing better."""
    if heart is None or not heart.any():
        return None
    step = [max(1, int(round(2.5 / float(s)))) for s in spacing_zyx]
    coarse = heart[::step[0], ::step[1], ::step[2]]
    inner = ndimage.binary_erosion(coarse, structure=np.ones((5, 5, 5), dtype=bool))
    v = hu[::step[0], ::step[1], ::step[2]][inner]
    v = v[v < CALCIUM_THRESHOLD_HU]
    if v.size < 200:
        return None
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))



def _near_labels(coronary: np.ndarray, dense: np.ndarray, sp, near_mm: float, touch_mm: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(dense voxels within ``near_mm`` of a coronary voxel, those within ``touch_mm``), exact
    Euclidean distances in mm. Only the dense voxels inside the labels' box are measured, against
    the label voxels (a k-d tree): a distance map of the whole box would cost seconds at 0.6 mm."""
    from scipy.spatial import cKDTree

    near = np.zeros(dense.shape, dtype=bool)
    close = np.zeros(dense.shape, dtype=bool)
    pad = [int(np.ceil(near_mm / s)) + 1 for s in sp]
    found = ndimage.find_objects(coronary.view(np.uint8))
    if not found or found[0] is None:
        return near, close
    box = tuple(slice(max(0, b.start - k), min(n, b.stop + k)) for b, k, n in zip(found[0], pad, dense.shape, strict=True))
    lo = np.array([b.start for b in box])
    pts = np.argwhere(dense[box])
    if not len(pts):
        return near, close
    scale = np.asarray(sp, dtype=float)
    tree = cKDTree(np.argwhere(coronary[box]) * scale)
    d, _ = tree.query(pts * scale, distance_upper_bound=near_mm + 1e-6)
    for mask, bound in ((near, near_mm), (close, touch_mm)):
        sel = pts[d <= bound + 1e-9] + lo
        mask[tuple(sel.T)] = True
    return near, close


def find_candidates(hu: np.ndarray, lab: np.ndarray, seeds: np.ndarray, spacing_zyx, noise_sd: float,
                    near_mm: float = NEAR_MM, touch_mm: float = TOUCH_MM, blood_hu: float = DEFAULT_BLOOD_HU,
                    prob: np.ndarray | None = None, dense_labels: tuple[np.ndarray, int] | None = None
                    ) -> tuple[np.ndarray, list[Candidate]]:
    """(map of candidate ids, candidates) of a work box: connected >= 130 HU voxels within
    ``near_mm`` of a coronary label (``lab > 0``), touching one within ``touch_mm``.

    ``seeds``: the voxels the calcium channel marked (>= 130 HU); a candidate holding one is the
    network's (``network=True``) and is not judged. ``prob``: the network's calcium probability.
    ``dense_labels``: ``ndimage.label(hu >= 130 HU, 26-connected)`` when already computed.
    Arrays are (z, y, x) on one grid."""
    coronary = lab > 0
    dense = hu >= CALCIUM_THRESHOLD_HU
    ids = np.zeros(hu.shape, dtype=np.int32)
    if not coronary.any() or not dense.any():
        return ids, []
    sp = tuple(float(s) for s in spacing_zyx)
    near, close = _near_labels(coronary, dense, sp, near_mm, touch_mm)
    comp, n = ndimage.label(near, structure=_CONN26)
    if n == 0:
        return ids, []
    hit = np.zeros(n + 1, dtype=bool)  # = ndimage.maximum(close, comp, idx): any close voxel per component
    hit[comp[close]] = True
    touch = hit[1:]
    full = dense_labels[0] if dense_labels is not None else ndimage.label(dense, structure=_CONN26)[0]
    vox = float(np.prod(sp))
    area_px = sp[1] * sp[2]
    sd = max(float(noise_sd), NOISE_FLOOR_HU)
    full_size = np.bincount(full.ravel())
    out: list[Candidate] = []
    k = 0
    for i, sl in enumerate(ndimage.find_objects(comp), start=1):
        if sl is None or not touch[i - 1]:
            continue
        m = comp[sl] == i
        h = hu[sl][m].astype(float)
        n_vox = int(m.sum())
        per_slice = m.reshape(m.shape[0], -1).sum(axis=1)
        # largest 8-connected piece in any slice: Agatston's area
        pieces, _ = ndimage.label(m, structure=_SLICE8)
        max_area = float(np.bincount(pieces.ravel())[1:].max()) * area_px if per_slice.any() else 0.0
        owners = np.unique(full[sl][m])
        whole = int(full_size[owners[owners > 0]].sum())
        # the 3 x 3 x 3 mean round its densest voxel: a plaque (blurred by the kernel) lifts its
        # neighbours too, a noise spike much less
        pz, py, px = (int(v) for v in np.argwhere(m)[int(np.argmax(h))] + [s_.start for s_ in sl])
        nb = hu[max(0, pz - 1):pz + 2, max(0, py - 1):py + 2, max(0, px - 1):px + 2]
        feats = {
            "calc_prob": 0.0 if prob is None else float(prob[sl][m].max()),
            "smooth_z": (float(nb.mean()) - blood_hu) / sd,
            "log_voxels": float(np.log1p(n_vox)),
            "peak_z": (float(h.max()) - CALCIUM_THRESHOLD_HU) / sd,
            "log_excess": float(np.log1p(np.sum(h - CALCIUM_THRESHOLD_HU) / sd)),
            "attached": n_vox / max(whole, 1),
            "on_label": float(coronary[sl][m].mean()),
            "area_ok": float(max_area >= MIN_AREA_MM2 - 1e-9),
        }
        k += 1
        ids[sl][m] = k
        out.append(Candidate(k, n_vox, n_vox * vox, max_area, float(h.max()),
                             tuple(float(c) for c in (np.argwhere(m).mean(axis=0) + [s.start for s in sl])),
                             feats, bool(seeds[sl][m].any())))
    return ids, out


def judge(cands: list[Candidate], rule: DensityRule) -> None:
    """Set ``probability`` and ``accepted`` of each candidate the network did not mark.

    Two guards hold whatever the model says: a candidate under Agatston's minimum area could not
    count, and one that is a small part (< ``MIN_ATTACHED``) of a dense structure reaching beyond the
    artery (bone, a calcified valve or aortic wall, an enhanced lumen) is that structure, not a plaque."""
    for c in cands:
        if c.network:
            continue
        c.probability = rule.probability(c.features)
        c.accepted = (bool(c.features["area_ok"]) and c.features["attached"] >= MIN_ATTACHED
                      and c.probability >= rule.threshold)
