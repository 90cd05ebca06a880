"""Post-processing of the six-class map on the ORIGINAL CT grid: lesion completion, anatomical
attribution and plausibility flags (docs/stage2.md, "Post-processing").

The network's map is trusted for *where the coronary trees are*; the calcium inside them is
then defined the way Agatston defines it, and each lesion is given to the tree it lies on:

1. **Completion.** Agatston is defined on connected regions of >= 130 HU. Each predicted calcium
   region (calcium label and >= 130 HU) grows into every >= 130 HU voxel 26-connected to it that
   lies within ``completion_mm`` (2 mm) of the predicted coronary labels (artery or calcium of any
   artery). The bound keeps bone, valves and the aortic wall out: they are reached only through
   voxels farther than 2 mm from a coronary label. Calcium on a tree fragment (< 50 mm³ of artery
   label) is not grown. Voxels labelled calcium below 130 HU become artery: never drawn, never
   counted as calcium.
2. **Attribution.** Each completed lesion (3D 26-connected) goes to the artery whose tree it lies
   on, not to the calcium channel that fired: its tree is its connected component of coronary
   labels (the RCA tree and the left tree, LM + LAD + LCX, share no label: they meet only in the
   aorta). The side (RCA vs left) is the majority of artery labels within ``TREE_MM`` (20 mm)
   *along* the tree (geodesic: a stray label bridging the trees adds little); LAD vs LCX is the
   majority of artery labels on the branch *beyond* the lesion: the left tree's voxels that lie
   farther from its ostium end (geodesic, from the top of the tree) and are reached from the
   lesion without going back towards the ostium. The labels next to a lesion are the least
   reliable ones (a network often paints the first centimetres of the LAD as LCX, and a plaque
   blurs them), while the branch beyond it is long and mostly right. When the branch beyond does
   not decide (LAD and LCX alike beyond it: the left main or its bifurcation; or less than
   ``MIN_BEYOND_MM3`` beyond it: a distal lesion or a fragment of a tree), the evidence at the
   lesion decides: the calcium channel that fired on most of it, else the majority of artery
   labels within ``local_mm`` (3 mm), else the LAD (the label scheme is LM + LAD). When the tree holds both
   sides alike, the lesion's position relative to the aortic root breaks the tie (never in a heart
   flagged as mirrored), else the labels next to it. A lesion on a mixed tree, on no tree, with
   labels next to it that disagree with its tree, or touching LAD and LCX alike is recorded with
   ``calcium_attribution_ambiguous`` and the reason.
Before all of this, with a heart mask: a connected piece of coronary labels lying wholly more than
``HEART_DISTANCE_MM`` (20 mm) outside the heart, and smaller than a quarter of all labels, is
removed (coronary arteries run on the heart; the ostia sit ~10 mm outside it): a network's stray
labels in the lungs, aorta or chest wall would otherwise count their calcium. The removed volume
is recorded (``removed_outside_heart_mm3``; an info flag ``artery_outside_heart`` only when the removed
pieces hold >= ``REMOVED_CALCIUM_FLAG_MM3`` of calcium label); a larger piece is kept, and flagged when
more than ``OUTSIDE_FRACTION`` of an artery lies outside (a heart mask that misses part of the heart
must not delete an artery).

3. **Plausibility** per artery, in patient LPS coordinates (from the volume's direction cosines,
   never from array axes): a tree that is missing or tiny (< ``min_tree_mm3``); a tree that
   lies mostly on the wrong side of the aortic root (located between the RCA and left-main ostia,
   else the body midline), or a lesion on the wrong side of it (which also puts the artery that
   runs there in doubt: it may miss that calcium); labels far
   outside the heart; and for the study, a heart whose centre lies to the patient's right of the
   body midline (dextrocardia / situs inversus: the model knows left-sided hearts only).

Arrays are (z, y, x); the output map is on the input grid. Nothing here reads model internals, so
any model's map can be refined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .. import flags as F
from ..flags import Flag
from ..labels import ARTERIES, ARTERY_ID, CALCIUM_ID, CALCIUM_IDS
from ..units import CALCIUM_THRESHOLD_HU
from ..volume import Volume
from .density import (
    DEFAULT_BLOOD_HU,
    DEFAULT_NOISE_HU,
    DensityRule,
    blood_stats,
    find_candidates,
    judge,
    load_rule,
)

COMPLETION_MM = 2.0  # growth bound: distance from the predicted coronary labels
FRAGMENT_MM3 = 50.0  # calcium on a tree with less artery label than this is not grown
LOCAL_MM = 3.0  # neighbourhood whose artery labels decide LAD vs LCX (and a mixed tree's side)
TREE_MM = 20.0  # a lesion's side = the majority of artery labels within this distance along its tree
MIXED_TREE_SHARE = 1.0 / 3.0  # 1/3-2/3 RCA along the tree: both sides; the labels next to it decide
NEAR_TREE_MM = 5.0  # a lesion on no tree goes to the nearest artery within this distance
BRANCH_SHARE = 2.0 / 3.0  # LAD (or LCX) share of the labels beyond a left lesion that names its branch
MIN_BEYOND_MM3 = 100.0  # less artery label than this beyond a left lesion (a fragment): the labels next to it decide
MIN_TREE_MM3 = 20.0  # an artery whose labels (artery + calcium) fill less is "missing"
SIDE_MARGIN_MM = 10.0  # tolerance around the aortic root for the laterality checks
RCA_LESION_MARGIN_MM = 30.0  # distal RCA / PDA lesions may lie left of the root: wider tolerance
WRONG_SIDE_FRACTION = 0.2  # share of an artery's labels beyond the margin that earns a warning
HEART_DISTANCE_MM = 20.0  # coronary labels farther than this from the heart mask are "outside"
OUTSIDE_FRACTION = 0.15  # ... and flagged when they are more than this share of the artery (5 %: 15 of 16 studies)
REMOVED_CALCIUM_FLAG_MM3 = 100.0  # removed far-off pieces holding this much calcium label are flagged (info)
FRAGMENT_SHARE = 0.25  # a label component wholly outside the heart and smaller than this share of all labels is removed
METAL_SPOT = "metal-dense: a device?"  # why an uncounted spot is listed when it peaks at metal density
UNCOUNTED_MIN_P = 0.3  # a rejected density-rule candidate at least this likely a plaque is reported uncounted
MAX_RECORDED = 200  # density-rule candidates recorded per study (result.json)
METAL_HU = 1500.0  # a candidate this dense is a device (lead, clip, stent, valve frame), never density-rule calcium
DEXTRO_MARGIN_MM = 10.0  # heart centre this far to the patient's right of the midline: flagged
ROOT_MIDLINE_MM = 40.0  # ostia whose midpoint lies farther from the body midline are not trusted
_CONN26 = np.ones((3, 3, 3), dtype=bool)
_LEFT = ("LAD", "LCX")


@dataclass
class LesionAttribution:
    """How one completed lesion was attributed (``pipeline.postprocess.lesions`` of result.json)."""

    artery: str
    voxels: int
    added_voxels: int  # voxels completion added to the predicted calcium
    centre_zyx: tuple[float, float, float]  # voxel units, original grid
    lateral_mm: float | None  # patient-left offset of the centre from the aortic root (+ = left)
    channels: dict[str, int]  # predicted calcium voxels per artery channel
    tree_votes: dict[str, int]  # artery-label voxels within TREE_MM along its tree (connected labels)
    local_votes: dict[str, int]  # artery-label voxels of that tree within LOCAL_MM
    reason: str | None = None  # why it is ambiguous, when it is
    beyond_votes: dict[str, int] | None = None  # left lesions: artery labels of the branch beyond it
    found_by: str = "network"  # "network": the calcium channel fired on it; "density_rule": cacpipe.segment.density

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centre_zyx"] = [round(float(c), 2) for c in self.centre_zyx]
        if self.lateral_mm is not None:
            d["lateral_mm"] = round(float(self.lateral_mm), 1)
        return d


@dataclass
class Refinement:
    """The refined map, its flags and what was done (``info`` goes to ``pipeline.postprocess``)."""

    labels: Volume
    flags: list[Flag]
    assessed: dict[str, bool]  # per artery: False when its tree is missing
    lesions: list[LesionAttribution] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.info, "lesions": [les.to_dict() for les in self.lesions]}

    def explain_metal(self) -> None:
        """Devices were found in this scan (cacpipe.quant.devices): the metal-dense spots on the
        arteries are theirs, already flagged and out of the count; ``calcium_uncounted`` keeps only
        what no device explains (it was raised on every lead-crossed RCA)."""
        spots = self.info.get("uncounted") or {}
        kept = {a: [s for s in ss if s["why"] != METAL_SPOT] for a, ss in spots.items()}
        kept = {a: ss for a, ss in kept.items() if ss}
        if kept == spots:
            return
        self.info["uncounted"] = kept
        self.info["uncounted_explained_by_devices"] = sum(len(ss) for ss in spots.values()) - \
            sum(len(ss) for ss in kept.values())
        counting = self.info.get("density_rule", {}).get("counting", True)
        self.flags = [f for f in self.flags if f.code != F.CALCIUM_UNCOUNTED] + uncounted_flags(kept, counting)

    def mark_found_by(self, lesions: list) -> list:
        """``lesions`` (:class:`cacpipe.quant.lesions.Lesion`) with ``found_by`` set: ``density_rule``
        when every refined lesion whose centre lies in its box was found by the density rule."""
        from dataclasses import replace

        out = []
        for les in lesions:
            hits = [r.found_by for r in self.lesions
                    if all(lo <= round(c) < hi for c, (lo, hi) in zip(r.centre_zyx, les.bbox_zyx, strict=True))]
            rule = bool(hits) and all(h == "density_rule" for h in hits)
            out.append(replace(les, found_by="density_rule" if rule else "network"))
        return out


def _box(mask: np.ndarray, pad: tuple[int, int, int]) -> tuple[slice, ...] | None:
    nz = np.nonzero(mask.any(axis=(1, 2)))[0]
    if nz.size == 0:
        return None
    out = [slice(max(0, int(nz[0]) - pad[0]), min(mask.shape[0], int(nz[-1]) + 1 + pad[0]))]
    for ax, p in ((1, pad[1]), (2, pad[2])):
        idx = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0]
        out.append(slice(max(0, int(idx[0]) - p), min(mask.shape[ax], int(idx[-1]) + 1 + p)))
    return tuple(out)


def _nonzero_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s nonzero voxels (``ndimage.find_objects``' slices for a 0/1
    mask), from its projections; None when empty."""
    return _box(np.asarray(mask), (0, 0, 0))


def _label_in_box(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask, 26-connected)``, labelled in the mask's bounding box: the same map
    (raster order, hence numbering, is kept), zero outside, at the cost of the box."""
    out = np.zeros(mask.shape, dtype=np.int32)
    sl = _nonzero_box(mask)
    if sl is None:
        return out, 0
    out[sl], n = ndimage.label(mask[sl], structure=_CONN26)
    return out, int(n)


def _read_box(arr: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``arr[box]`` where ``arr`` may stop short of the box's far corner (voxels [0, k) per axis of
    the box's grid, same origin): zero beyond."""
    if all(s.stop <= n for s, n in zip(box, arr.shape, strict=True)):
        return arr[box]
    out = np.zeros(tuple(s.stop - s.start for s in box), dtype=arr.dtype)
    have = tuple(slice(s.start, max(s.start, min(s.stop, n))) for s, n in zip(box, arr.shape, strict=True))
    out[tuple(slice(0, h.stop - h.start) for h in have)] = arr[have]
    return out


def _pad(mm: float, spacing_zyx) -> tuple[int, int, int]:
    return tuple(int(np.ceil(mm / float(s))) + 1 for s in spacing_zyx)  # type: ignore[return-value]


def lateral_mm(vol: Volume, idx_zyx: np.ndarray) -> np.ndarray:
    """Patient-left coordinate (LPS x, mm) of voxel indices (N, 3) in (z, y, x) order."""
    return vol.index_to_physical(np.asarray(idx_zyx, dtype=float).reshape(-1, 3))[:, 0]


def complete_calcium(hu: np.ndarray, lab: np.ndarray, spacing_zyx, completion_mm: float | None = COMPLETION_MM,
                     fragment_mm3: float = FRAGMENT_MM3, extra_seeds: np.ndarray | None = None,
                     dense_labels: tuple[np.ndarray, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(completed calcium mask, predicted calcium voxels below 130 HU) of a six-class map.

    Completed calcium = every >= 130 HU voxel 26-connected to a predicted calcium voxel of
    >= 130 HU through >= 130 HU voxels that all lie within ``completion_mm`` of a coronary label.
    Calcium on a tree fragment (its connected coronary labels hold less than ``fragment_mm3`` of
    artery label, about 1 cm of artery) is kept as predicted, not grown: a fragment is no artery to
    bound the growth (a stray label on a valve or the aortic wall would pull in the whole blob).
    ``completion_mm=None``: no growth (the predicted calcium >= 130 HU only). ``extra_seeds``: more
    seed voxels (>= 130 HU) than the calcium labels, e.g. the density rule's accepted candidates.
    ``dense_labels``: ``ndimage.label(hu >= 130 HU, 26-connected)`` when already computed.
    """
    coronary = lab > 0
    is_calc_label = np.isin(lab, CALCIUM_IDS)
    dense = hu >= CALCIUM_THRESHOLD_HU
    seeds = is_calc_label & dense
    if extra_seeds is not None:
        seeds |= extra_seeds & dense
    if not seeds.any() or completion_mm is None:
        return seeds, is_calc_label & ~dense
    tree, n_tree = ndimage.label(coronary, structure=_CONN26)
    artery_vox = np.bincount(tree[coronary & ~is_calc_label], minlength=n_tree + 1)
    vox = float(np.prod(spacing_zyx))
    growing = seeds & (artery_vox * vox >= fragment_mm3)[tree]
    # Candidates: the >= 130 HU components that hold a growing seed (small: plaques, unless one
    # touches bone); the distance bound is then computed in their box only.
    comp, n = dense_labels if dense_labels is not None else ndimage.label(dense, structure=_CONN26)
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.unique(comp[growing])] = True
    hit[0] = False
    candidates = hit[comp]
    box = _box(candidates, _pad(completion_mm, spacing_zyx))
    grown = np.zeros(lab.shape, dtype=bool)
    if box is not None:
        near = ndimage.distance_transform_edt(~coronary[box], sampling=spacing_zyx) <= completion_mm
        comp, n = ndimage.label(candidates[box] & near, structure=_CONN26)
        keep = np.zeros(n + 1, dtype=bool)
        keep[np.unique(comp[growing[box]])] = True
        keep[0] = False
        grown[box] = keep[comp]
    return grown | seeds, is_calc_label & ~dense


def _votes(values: np.ndarray) -> dict[str, int]:
    """Artery-label voxel counts (ids 1-3) of ``values`` by artery name."""
    c = np.bincount(values.ravel(), minlength=7)
    return {a: int(c[ARTERY_ID[a]]) for a in ARTERIES}


def root_distance_mm(tree: np.ndarray, spacing_zyx) -> np.ndarray:
    """Geodesic distance (mm, inside ``tree``) of each voxel from the top of the tree.

    ``tree``: one connected coronary tree (0/1). Its top (most superior 2 mm, as :func:`_ostium`)
    is its ostium end: axis 0 runs inferior -> superior. Outside the tree: inf. Arrays are (z, y, x).
    """
    from skimage.graph import MCP_Geometric

    zs = np.nonzero(tree.any(axis=(1, 2)))[0]
    keep = max(1, int(round(2.0 / float(spacing_zyx[0]))))
    starts = np.argwhere(tree & (np.arange(tree.shape[0]) > zs[-1] - keep)[:, None, None])
    dist, _ = MCP_Geometric(np.where(tree, 1.0, np.inf), sampling=tuple(float(s) for s in spacing_zyx)
                            ).find_costs(starts)
    return np.where(tree, dist, np.inf)


def beyond_votes(lab: np.ndarray, lesion: np.ndarray, tree: np.ndarray, root_mm: np.ndarray) -> dict[str, int]:
    """Artery labels of the branch beyond ``lesion``: voxels of ``tree`` (the left tree holding the
    lesion) no nearer the ostium end than the lesion (``root_mm``: :func:`root_distance_mm`),
    reached from the lesion through such voxels. Arrays are (z, y, x) on one grid."""
    d0 = float(root_mm[lesion].min())
    comp, _ = ndimage.label(tree & (root_mm >= d0), structure=_CONN26)
    ids = np.unique(comp[lesion])
    return _votes(lab[np.isin(comp, ids[ids > 0]) & ~lesion])


def _left_branch(beyond: dict[str, int] | None, local: dict[str, int], along: dict[str, int],
                 channels: dict[str, int], voxel_mm3: float) -> tuple[str, str | None]:
    """LAD or LCX for a lesion on the left tree, and why it is ambiguous (None when it is not).

    The branch beyond the lesion decides when the tree beyond it is large enough and >= 2/3 one
    branch. Otherwise (both branches alike beyond it: the left main or the bifurcation; or a
    fragment of a tree, or a distal lesion, with little beyond it) the evidence at the lesion
    decides: the calcium channel that fired on most of it, else the artery labels next to it, else
    those along its tree, else the LAD (the label scheme is LM + LAD)."""
    n = 0 if beyond is None else beyond["LAD"] + beyond["LCX"]
    if beyond is not None and n * voxel_mm3 >= MIN_BEYOND_MM3:
        if beyond["LAD"] >= BRANCH_SHARE * n:
            return "LAD", None
        if beyond["LCX"] >= BRANCH_SHARE * n:
            return "LCX", None
        where = (f"the tree beyond it holds LAD and LCX labels alike ({beyond['LAD']} vs {beyond['LCX']} voxels): "
                 "it lies on the left main or at its bifurcation")
    else:
        where = None
    lv = local if local["LAD"] + local["LCX"] else along
    for votes, what in ((channels, "its calcium channel"), (lv, "the artery labels next to it")):
        if votes["LAD"] != votes["LCX"]:
            art = "LAD" if votes["LAD"] > votes["LCX"] else "LCX"
            how = f"{what} ({votes['LAD']} LAD vs {votes['LCX']} LCX voxels)"
            break
    else:
        art, how = "LAD", "the convention LM + LAD (nothing else tells them apart)"
    if where is not None:
        return art, f"{where}; given to the {art} by {how}"
    other = "LCX" if art == "LAD" else "LAD"
    if lv[other] > lv[art]:  # the labels next to it disagree with the channel that decided
        return art, (f"the artery labels next to it are mostly {other} ({lv['LAD']} LAD vs {lv['LCX']} LCX voxels, "
                     f"little of the tree beyond it): given to the {art} by {how}")
    return art, None


def _attribute(lab: np.ndarray, lesion: np.ndarray, tree: np.ndarray, channels: dict[str, int], spacing_zyx,
               local_mm: float, side_mm: float | None, tree_mm: float = TREE_MM, near_mm: float = NEAR_TREE_MM,
               beyond: dict[str, int] | None = None) -> tuple[str, dict[str, int], dict[str, int], str | None, str]:
    """One lesion (arrays of a box around it): (artery, tree votes, local votes, ambiguity reason, severity).

    Tree votes: artery labels reached from the lesion within about ``tree_mm`` along its tree (its
    connected coronary labels; geodesic, so a stray label bridging to the other tree adds little).
    Local votes: artery labels of the tree within ``local_mm`` of the lesion. ``side_mm``: the
    lesion's patient-left offset from the aortic root (None: unknown, or a mirrored heart), used
    only when the labels along the tree hold both sides alike. ``beyond``: the artery labels of
    the left-tree branch beyond the lesion (:func:`beyond_votes`), which decide LAD vs LCX.
    """
    vox = float(np.prod(spacing_zyx))
    channel = max(ARTERIES, key=lambda a: (channels[a], -ARTERIES.index(a)))
    is_artery = np.isin(lab, [ARTERY_ID[a] for a in ARTERIES])
    dist = ndimage.distance_transform_edt(~lesion, sampling=spacing_zyx)
    local = _votes(lab[(dist <= local_mm) & tree & is_artery])
    steps = max(1, int(np.ceil(tree_mm / min(float(s) for s in spacing_zyx))))
    reached = ndimage.binary_dilation(lesion, structure=_CONN26, iterations=steps, mask=tree)
    along = _votes(lab[reached & is_artery])
    right, left = along["RCA"], along["LAD"] + along["LCX"]
    if right + left == 0:  # calcium on no labelled tree: the nearest artery label, if close
        near = {a: float(dist[lab == ARTERY_ID[a]].min()) for a in ARTERIES if (lab == ARTERY_ID[a]).any()}
        near = {a: d for a, d in near.items() if d <= near_mm}
        if not near:
            return channel, along, local, (f"lies on no artery tree and > {near_mm:g} mm from every artery label; "
                                           f"kept as {channel} (the channel that fired): check it is coronary"), \
                "warning"
        best = min(near, key=near.__getitem__)
        rivals = [a for a in near if (a == "RCA") != (best == "RCA") and near[a] - near[best] < 2.0]
        if rivals:
            return best, along, local, (f"lies on no artery tree, {near[best]:.1f} mm from {best} and "
                                        f"{near[rivals[0]]:.1f} mm from {rivals[0]}"), "warning"
        return best, along, local, None, "info"
    share = right / (right + left)
    near_right, near_left = local["RCA"], local["LAD"] + local["LCX"]
    reason, severity = None, "info"
    if share >= 1.0 - MIXED_TREE_SHARE:
        art = "RCA"
    elif share <= MIXED_TREE_SHARE:
        art, reason = _left_branch(beyond, local, along, channels, vox)
    else:  # both sides along its tree (trees joined by a stray label, or a confused model)
        how = f"the labels next to it ({near_right} RCA, {near_left} LAD/LCX within {local_mm:g} mm)"
        if side_mm is not None and (side_mm < -SIDE_MARGIN_MM or side_mm > RCA_LESION_MARGIN_MM):
            rca = side_mm < 0  # clearly on one side of the aortic root: anatomy breaks the tie
            how = f"its position, {abs(side_mm):.0f} mm to the patient's {'right' if rca else 'left'} of the aortic root"
        else:
            rca = (near_right, right) > (near_left, left)
        art = "RCA" if rca else _left_branch(beyond, local, along, channels, vox)[0]
        return art, along, local, (f"its tree holds RCA and left-coronary labels alike within {tree_mm:g} mm "
                                   f"({share:.0%} RCA); given to {art} by {how}"), "warning"
    if (art == "RCA") != (near_right >= near_left) and near_right + near_left:
        reason, severity = (f"the labels next to it are {'LAD/LCX' if art == 'RCA' else 'RCA'} ({near_right} RCA, "
                            f"{near_left} LAD/LCX within {local_mm:g} mm) but its tree is {share if art == 'RCA' else 1 - share:.0%} "
                            f"{'RCA' if art == 'RCA' else 'left coronary'} within {tree_mm:g} mm: given to {art}"), "warning"
    return art, along, local, reason, severity


def _ostium(mask: np.ndarray, spacing_zyx) -> np.ndarray | None:
    """Mean index (z, y, x) of the most superior 2 mm of the largest component of ``mask``."""
    # Labelled in the mask's own box (the same components, numbered alike: raster order is kept).
    sl = _nonzero_box(mask)
    if sl is None:
        return None
    comp, _ = ndimage.label(mask[sl], structure=_CONN26)
    main = comp == (int(np.argmax(np.bincount(comp.ravel())[1:])) + 1)
    zs = np.nonzero(main.any(axis=(1, 2)))[0]
    # Axis 0 runs inferior -> superior (ingest sorts slices so), so the ostium end is the highest slices.
    keep = max(1, int(round(2.0 / float(spacing_zyx[0]))))
    top = main
    top[: max(zs[0], zs[-1] - keep + 1)] = False
    return (np.argwhere(top) + [s.start for s in sl]).mean(axis=0)


def body_midline_mm(ct: Volume, z_index: int) -> float | None:
    """Patient-left coordinate of the body's left-right middle on slice ``z_index`` (trunk extent)."""
    sl = np.asarray(ct.array[int(np.clip(z_index, 0, ct.shape[0] - 1))]) > -500
    comp, n = ndimage.label(sl)
    if n == 0:
        return None
    trunk = np.argwhere(comp == (int(np.argmax(np.bincount(comp.ravel())[1:])) + 1))
    pts = np.column_stack([np.full(len(trunk), z_index), trunk])
    xs = lateral_mm(ct, pts)
    return float((xs.min() + xs.max()) / 2.0)


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    """Mean index (z, y, x) of a 0/1 mask, computed inside its bounding box (one pass over the volume)."""
    m = np.asarray(mask)
    sl = _nonzero_box(m)
    if sl is None:
        return None
    sub = m[sl] > 0
    # = np.argwhere(sub).mean(axis=0): the index sums are integers either way (exact in float64),
    # here from the three projections' counts instead of an (N, 3) list of a whole heart's voxels.
    n = np.count_nonzero(sub)
    sums = [int(np.dot(np.arange(sub.shape[ax], dtype=np.int64),
                       sub.sum(axis=tuple(a for a in range(3) if a != ax), dtype=np.int64))) for ax in range(3)]
    return np.array(sums, dtype=np.float64) / n + [s.start for s in sl]


@dataclass
class _Reference:
    """Where left and right are: the aortic root and the heart's side (patient-left mm, LPS x)."""

    root_mm: float | None
    root_from: str
    heart_offset_mm: float | None  # heart centre minus body midline (+ = patient's left)

    @property
    def dextrocardia(self) -> bool:
        return self.heart_offset_mm is not None and self.heart_offset_mm < -DEXTRO_MARGIN_MM


def _reference(ct: Volume, lab: np.ndarray, offset: np.ndarray, heart: np.ndarray | None,
               min_tree_mm3: float) -> _Reference:
    """The aortic root between the RCA and left-main ostia (the top of the RCA tree and of the left
    tree, LM + LAD + LCX, which may be split where the branches' labels meet); the body midline when
    a tree is missing or the ostia land implausibly far (> ROOT_MIDLINE_MM) from it.

    ``lab`` is the label map inside a box starting at ``offset``; ``heart`` the whole heart mask.
    """
    sp = ct.spacing_zyx
    vox = ct.voxel_volume_mm3
    right = np.isin(lab, (ARTERY_ID["RCA"], CALCIUM_ID["RCA"]))
    left = np.isin(lab, [ARTERY_ID[a] for a in _LEFT] + [CALCIUM_ID[a] for a in _LEFT])
    zs = np.nonzero((right | left).any(axis=(1, 2)))[0]
    midline = body_midline_mm(ct, int(zs.mean()) + int(offset[0]) if len(zs) else ct.shape[0] // 2)
    root, root_from = midline, "body midline"
    if right.sum() * vox >= min_tree_mm3 and left.sum() * vox >= min_tree_mm3:
        ostia = lateral_mm(ct, np.stack([_ostium(right, sp), _ostium(left, sp)]) + offset)
        if midline is None or abs(float(ostia.mean()) - midline) <= ROOT_MIDLINE_MM:
            root, root_from = float(ostia.mean()), "ostia"
    side = None
    hc = None if heart is None else _centroid(heart)
    if hc is not None:
        mid = body_midline_mm(ct, int(round(hc[0])))
        side = None if mid is None else float(lateral_mm(ct, hc)[0] - mid)
    return _Reference(root, root_from, side)


def refine(ct: Volume, labels: Volume, heart: Volume | None = None, *, complete: bool = True,
           completion_mm: float = COMPLETION_MM, local_mm: float = LOCAL_MM,
           min_tree_mm3: float = MIN_TREE_MM3, density_rule: bool = True, rule: DensityRule | None = None,
           calcium_prob: Volume | None = None) -> Refinement:
    """Complete, attribute and check the calcium of a six-class map on the CT's own grid.

    ``heart`` (0/1 on the same grid, optional) enables the outside-heart and heart-side checks and
    measures the blood-pool noise the density rule judges candidates by.
    ``complete=False`` skips the growth and the density rule (a contrast scan: the enhanced lumen is
    >= 130 HU too). ``density_rule``: >= 130 HU spots on the predicted tree that the calcium channel
    missed become calcium when :mod:`cacpipe.segment.density`'s judge accepts them (``rule``: the
    shipped one by default). Flags name slices as PACS does (``ct.slice_reference``).
    ``calcium_prob`` (same grid): the network's calcium probability, a feature of the density rule;
    it may cover only the voxels [0, k) per axis of the grid (same origin; zero beyond: the
    pipeline resamples it onto the crop box's corner only).
    Returns the refined map (what is written to disk and quantified), the flags and a record.
    """
    if ct.shape != labels.shape:
        raise ValueError(f"CT {ct.shape} and labels {labels.shape} differ: refine on the original grid")
    sp = tuple(float(s) for s in ct.spacing_zyx)
    lab_full = np.asarray(labels.array).astype(np.uint8, copy=False)  # read only: the map is changed in ``out``
    out = lab_full.copy()
    heart_full = None if heart is None else np.asarray(heart.array)
    # Everything happens in one box: the labels plus the farthest any step looks from them.
    reach = max(HEART_DISTANCE_MM, TREE_MM + 1.0, NEAR_TREE_MM + local_mm, completion_mm + local_mm)
    # Nothing labelled: a one-voxel box of background, so every step below sees an empty map.
    box = _box(lab_full > 0, _pad(reach, sp)) or (slice(0, 1),) * 3
    offset = np.array([s.start for s in box])
    hu, lab = np.asarray(ct.array)[box], lab_full[box]
    heart_box = None if heart_full is None or not heart_full.any() else heart_full[box] > 0
    far = None if heart_box is None else _far_from_heart(ct, heart_box)
    flags: list[Flag] = []
    if far is not None:
        lab, removed = _drop_far_fragments(lab, far, ct.voxel_volume_mm3, flags)
    ref = _reference(ct, lab, offset, heart_full, min_tree_mm3)
    # Position breaks a tie between the sides only in a left-sided heart: a mirrored one is flagged instead.
    root = None if ref.dextrocardia else ref.root_mm
    lesions: list[LesionAttribution] = []
    info: dict = {"completion_mm": completion_mm if complete else None, "local_mm": local_mm, "tree_mm": TREE_MM,
                  "root_from": ref.root_from, "root_lateral_mm": None if ref.root_mm is None else round(ref.root_mm, 1),
                  "heart_centre_lateral_mm": None if ref.heart_offset_mm is None else round(ref.heart_offset_mm, 1),
                  "removed_outside_heart_mm3": None if far is None else removed}
    extra, cands, cand_ids, dense_labels = None, [], None, None
    if complete:  # candidates are found (and the plausible ones reported) even with the rule off
        # the >= 130 HU components of the box, labelled once for the density rule and the completion
        dense_labels = ndimage.label(hu >= CALCIUM_THRESHOLD_HU, structure=_CONN26)
        prob = None if calcium_prob is None else _read_box(np.asarray(calcium_prob.array), box)
        extra, cands, cand_ids = _density_candidates(hu, lab, heart_box, sp, rule, info, offset, density_rule, prob,
                                                     dense_labels=dense_labels)
    calc, below = complete_calcium(hu, lab, sp, completion_mm if complete else None, extra_seeds=extra,
                                   dense_labels=dense_labels)
    del dense_labels
    new = lab.copy()
    for a in ARTERIES:  # every calcium label back to artery first; lesions are painted below
        new[lab == CALCIUM_ID[a]] = ARTERY_ID[a]
    tree, _ = _label_in_box((lab > 0) | calc)
    les_map, n_les = _label_in_box(calc)
    # The left trees (LM + LAD + LCX labels and the completed lesions) and, per tree holding a
    # lesion, the geodesic distance from its ostium end: what lies beyond a lesion names its branch.
    left, _ = _label_in_box(np.isin(lab, [ARTERY_ID[a] for a in _LEFT] + [CALCIUM_ID[a] for a in _LEFT]) | calc)
    left_boxes = ndimage.find_objects(left)
    root_cache: dict[int, np.ndarray] = {}
    pad = _pad(max(local_mm, NEAR_TREE_MM, TREE_MM) + 1.0, sp)
    owner = np.zeros(n_les + 1, dtype=np.uint8)
    for i, sl in enumerate(ndimage.find_objects(les_map), start=1):
        sub = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, lab.shape, strict=True))
        lesion = les_map[sub] == i
        tid = int(tree[sub][lesion][0])
        centre = np.argwhere(lesion).mean(axis=0) + [s.start for s in sub] + offset
        side_mm = None if root is None else float(lateral_mm(ct, centre)[0] - root)
        channels = {a: int((lab[sub][lesion] == CALCIUM_ID[a]).sum()) for a in ARTERIES}
        lid = int(left[sub][lesion][0])
        lsl = left_boxes[lid - 1]
        if lid not in root_cache:
            root_cache[lid] = root_distance_mm(left[lsl] == lid, sp)
        beyond = beyond_votes(lab[lsl], les_map[lsl] == i, left[lsl] == lid, root_cache[lid])
        art, tvotes, local, reason, severity = _attribute(lab[sub], lesion, tree[sub] == tid, channels, sp,
                                                          local_mm, side_mm, beyond=beyond)
        owner[i] = ARTERY_ID[art]
        rec = LesionAttribution(art, int(lesion.sum()), int(lesion.sum()) - sum(channels.values()),
                                tuple(float(c) for c in centre), side_mm, channels, tvotes, local, reason,
                                beyond if art in _LEFT else None,
                                found_by="network" if sum(channels.values()) else "density_rule")
        lesions.append(rec)
        if reason:
            flags.append(Flag(F.CALCIUM_ATTRIBUTION_AMBIGUOUS,
                              f"{art} lesion at {ct.slice_reference(centre[0])} ({rec.voxels} voxels): {reason}",
                              severity, art))
    painted = owner[les_map]  # artery id of each lesion voxel
    new[calc] = painted[calc] + 3  # artery id -> its calcium id
    # Sub-threshold calcium next to a lesion joins that lesion's artery (as artery, not calcium).
    # The 3 x 3 x 3 maximum is taken in their box only, one voxel wider: it reads a voxel's
    # neighbours only, and at the array's edge the box's edge is the array's (the same reflection).
    bb = _box(below, (1, 1, 1))
    if bb is not None:
        near_owner = ndimage.grey_dilation(painted[bb], footprint=_CONN26)
        nb = below[bb] & (near_owner > 0)
        new[bb][nb] = near_owner[nb]
    out[box] = new
    if cands:
        flags += _uncounted(ct, cands, cand_ids, calc, new, offset, sp, info)
    info.update(completed_voxels=int(calc.sum()), added_voxels=int((calc & ~np.isin(lab, CALCIUM_IDS)).sum()),
                below_threshold_relabelled=int(below.sum()),
                reattributed_lesions=sum(1 for les in lesions if les.channels[les.artery] < max(les.channels.values())))
    assessed, checks = _plausibility(ct, new, offset, far, lesions, ref, min_tree_mm3, info)
    return Refinement(labels.with_array(out), flags + checks, assessed, lesions, info)


def _plausibility(ct: Volume, lab: np.ndarray, offset: np.ndarray, far: np.ndarray | None,
                  lesions: list[LesionAttribution], ref: _Reference, min_tree_mm3: float, info: dict
                  ) -> tuple[dict[str, bool], list[Flag]]:
    """Tree presence, laterality (trees and lesions), labels outside the heart, heart side.

    ``lab`` is the refined map inside the work box at ``offset``; ``far`` marks the box's voxels
    more than HEART_DISTANCE_MM outside the heart (None: no heart mask).
    """
    vox = ct.voxel_volume_mm3
    flags: list[Flag] = []
    assessed: dict[str, bool] = {}
    whole = {a: (lab == ARTERY_ID[a]) | (lab == CALCIUM_ID[a]) for a in ARTERIES}
    volumes = {a: float(whole[a].sum()) * vox for a in ARTERIES}
    info["tree_mm3"] = {a: round(v, 1) for a, v in volumes.items()}
    for a in ARTERIES:
        assessed[a] = volumes[a] >= min_tree_mm3
        if not assessed[a]:
            what = "no" if volumes[a] == 0 else f"only {volumes[a]:.0f} mm3 of"
            flags.append(Flag(F.ARTERY_TREE_MISSING,
                              f"{a}: the segmentation found {what} {a} label (< {min_tree_mm3:g} mm3): the artery "
                              "is not assessed (its calcium may have been missed or given to another artery)",
                              "invalid", a))

    root = ref.root_mm
    if root is not None:
        for a in ARTERIES:
            if not assessed[a]:
                continue
            d = lateral_mm(ct, np.argwhere(whole[a]) + offset) - root
            sign = -1.0 if a == "RCA" else 1.0  # expected side: RCA right (-), LAD/LCX left (+)
            median = float(np.median(d))
            wrong = float(np.mean(sign * d < -SIDE_MARGIN_MM))
            side, other = ("left", "right") if a == "RCA" else ("right", "left")
            if sign * median < 0:
                flags.append(Flag(F.ARTERY_IMPLAUSIBLE_POSITION,
                                  f"{a}: its labels lie mostly to the patient's {side} of the aortic root (median "
                                  f"{abs(median):.0f} mm); the {a} belongs on the {other}: this artery's numbers are "
                                  "not valid (labels swapped, mirrored anatomy or a mirrored model?)", "invalid", a))
            elif wrong > WRONG_SIDE_FRACTION:
                flags.append(Flag(F.ARTERY_IMPLAUSIBLE_POSITION,
                                  f"{a}: {wrong:.0%} of its labels lie more than {SIDE_MARGIN_MM:g} mm to the "
                                  f"patient's {side} of the aortic root: part of another artery may carry the {a} "
                                  "label; check the overlay", "warning", a))
        for les in lesions:
            d = float(lateral_mm(ct, np.asarray(les.centre_zyx))[0] - root)
            les.lateral_mm = d
            if d > RCA_LESION_MARGIN_MM if les.artery == "RCA" else d < -SIDE_MARGIN_MM:
                side, others = ("left", _LEFT) if les.artery == "RCA" else ("right", ("RCA",))
                where = (f"{les.artery} lesion at {ct.slice_reference(les.centre_zyx[0])} lies {abs(d):.0f} mm to "
                         f"the patient's {side}")
                flags.append(Flag(F.ARTERY_IMPLAUSIBLE_POSITION,
                                  f"{where} of the aortic root, where the {les.artery} does not run: this artery's "
                                  "numbers are not valid", "invalid", les.artery))
                for o in others:  # the artery that does run there may be missing this calcium
                    flags.append(Flag(F.ARTERY_IMPLAUSIBLE_POSITION,
                                      f"{where} of the aortic root, where the {o} runs: the {o}'s numbers may miss "
                                      "this calcium and are not valid", "invalid", o))

    if far is not None:
        _outside_heart(ct, lab, whole, far, flags, info)
    if ref.dextrocardia:
        flags.append(Flag(F.DEXTROCARDIA_SUSPECTED,
                          f"the heart's centre lies {-ref.heart_offset_mm:.0f} mm to the patient's right of the body "
                          "midline (dextrocardia or situs inversus?): the coronary model knows left-sided hearts "
                          "only, so no per-artery number is valid; the total may be", "invalid"))
    return assessed, flags


def _far_from_heart(ct: Volume, heart: np.ndarray) -> np.ndarray:
    """Voxels of the work box more than HEART_DISTANCE_MM outside ``heart`` (both (z, y, x), one box).

    The box reaches HEART_DISTANCE_MM beyond every label, so distances up to that bound are exact
    inside it. Computed on a grid of about 2 mm (the bound is 20 mm) and read back per voxel."""
    step = [max(1, int(round(2.0 / float(s)))) for s in ct.spacing_zyx]
    coarse = heart[::step[0], ::step[1], ::step[2]]
    dist = ndimage.distance_transform_edt(~coarse, sampling=[s * k for s, k in zip(ct.spacing_zyx, step, strict=True)])
    idx = np.ix_(*(np.arange(n) // k for n, k in zip(heart.shape, step, strict=True)))
    return (dist > HEART_DISTANCE_MM)[idx]


def _drop_far_fragments(lab: np.ndarray, far: np.ndarray, voxel_mm3: float, flags: list[Flag]
                        ) -> tuple[np.ndarray, float]:
    """``lab`` without its connected label pieces that lie wholly in ``far`` and hold less than
    FRAGMENT_SHARE of all labels; returns (map, removed mm3).

    A network's stray labels far from the heart are routine (measured on the v2 clinical-resolution
    phantoms: removed on 4 of 4 studies), so their removal is recorded (``pipeline.postprocess``
    ``removed_outside_heart_mm3``), not flagged: a flag on every study teaches readers to ignore
    flags. Only removed pieces holding at least ``REMOVED_CALCIUM_FLAG_MM3`` of calcium-labelled
    dense voxels get an info flag (calcium the reader might look for in the count)."""
    sl = _nonzero_box(lab)  # the pieces lie in the labels' box: labelled there (same numbering)
    if sl is None:
        return lab, 0.0
    comp, n = ndimage.label(lab[sl] > 0, structure=_CONN26)
    size = np.bincount(comp.ravel(), minlength=n + 1)
    near = np.bincount(comp[~far[sl]].ravel(), minlength=n + 1)
    drop = (near == 0) & (size < FRAGMENT_SHARE * size[1:].sum())
    drop[0] = False
    if not drop.any():
        return lab, 0.0
    gone_sub = drop[comp]
    gone = np.zeros(lab.shape, dtype=bool)
    gone[sl] = gone_sub
    per = {a: float(np.isin(lab[gone], (ARTERY_ID[a], CALCIUM_ID[a])).sum()) * voxel_mm3 for a in ARTERIES}
    calc = float(np.isin(lab[gone], CALCIUM_IDS).sum()) * voxel_mm3
    if calc >= REMOVED_CALCIUM_FLAG_MM3:
        what = ", ".join(f"{a} {v:.0f} mm3" for a, v in per.items() if v)
        flags.append(Flag(F.ARTERY_OUTSIDE_HEART,
                          f"removed {int(drop.sum())} piece(s) of coronary label lying wholly more than "
                          f"{HEART_DISTANCE_MM:g} mm outside the heart ({what}; {calc:.0f} mm3 of it labelled calcium, "
                          "not counted)", "info"))
    out = lab.copy()
    out[gone] = 0
    return out, round(sum(per.values()), 1)


def _outside_heart(ct: Volume, lab: np.ndarray, whole: dict[str, np.ndarray], far: np.ndarray,
                   flags: list[Flag], info: dict) -> None:
    """``artery_outside_heart`` per artery for the labels left after :func:`_drop_far_fragments`."""
    vox = ct.voxel_volume_mm3
    info["outside_heart_mm3"] = {}
    for a, m in whole.items():
        n, out = int(m.sum()), int((m & far).sum())
        info["outside_heart_mm3"][a] = round(out * vox, 1)
        if n and out > OUTSIDE_FRACTION * n:
            calc = int((far & (lab == CALCIUM_ID[a])).sum())
            extra = f", {calc * vox:.0f} mm3 of it calcium that was counted" if calc else ""
            flags.append(Flag(F.ARTERY_OUTSIDE_HEART,
                              f"{a}: {out * vox:.0f} mm3 ({out / n:.0%}) of its labels lie more than "
                              f"{HEART_DISTANCE_MM:g} mm outside the heart{extra}; check the overlay", "warning", a))


def _density_candidates(hu: np.ndarray, lab: np.ndarray, heart: np.ndarray | None, sp, rule: DensityRule | None,
                        info: dict, offset, accept: bool = True, prob: np.ndarray | None = None,
                        dense_labels: tuple[np.ndarray, int] | None = None) -> tuple[np.ndarray | None, list, np.ndarray]:
    """The density rule on the work box: (accepted seed voxels or None, candidates, candidate-id map).

    Candidates holding metal (>= METAL_HU) are never accepted: a lead, clip or stent next to an
    artery is a device, which quality checks flag, not calcium. ``accept=False`` (the rule switched
    off): candidates are judged and recorded, none is counted."""
    blood = blood_stats(hu, heart, sp)
    noise = None if blood is None else blood[1]
    rule = rule or load_rule()
    seeds = np.isin(lab, CALCIUM_IDS) & (hu >= CALCIUM_THRESHOLD_HU)
    ids, cands = find_candidates(hu, lab, seeds, sp, DEFAULT_NOISE_HU if blood is None else blood[1],
                                 blood_hu=DEFAULT_BLOOD_HU if blood is None else blood[0], prob=prob,
                                 dense_labels=dense_labels)
    judge(cands, rule)
    for c in cands:
        if c.accepted and (c.peak_hu >= METAL_HU or not accept):
            c.accepted = False
    acc = [c.index for c in cands if c.accepted]
    info["density_rule"] = {
        "noise_sd_hu": None if noise is None else round(noise, 1),
        "blood_hu": None if blood is None else round(blood[0], 1),
        "network_probability": prob is not None,
        "noise_from": "heart interior" if noise is not None else f"default {DEFAULT_NOISE_HU:g} HU (no heart interior)",
        "rule": rule.source, "threshold": rule.threshold, "counting": accept,
        "candidates": len(cands), "network": sum(c.network for c in cands), "accepted": len(acc),
        # every candidate that could count (>= 1 mm2 in a slice), most likely first; centres on the CT grid
        "candidate_list": [c.to_dict(offset) for c in sorted(
            (c for c in cands if c.features["area_ok"]), key=lambda c: -(c.probability or 1.0))][:MAX_RECORDED],
    }
    return (np.isin(ids, acc) if acc else None), cands, ids


def _uncounted(ct: Volume, cands: list, ids: np.ndarray, calc: np.ndarray, lab: np.ndarray, offset: np.ndarray,
               sp, info: dict) -> list[Flag]:
    """``calcium_uncounted`` per artery: dense spots on or next to a predicted artery, >= 1 mm2 in a
    slice, that the density rule judged plausible (P >= UNCOUNTED_MIN_P) yet did not count: never
    silently dropped. Records every such spot in ``info["uncounted"]``."""
    spots: dict[str, list[dict]] = {}
    pad = _pad(LOCAL_MM, sp)
    for c in cands:
        if c.network or c.accepted or not c.features["area_ok"] or (c.probability or 0.0) < UNCOUNTED_MIN_P:
            continue
        m = ids == c.index
        if (calc & m).any():  # grown into a counted lesion after all
            continue
        box = _box(m, pad)
        votes = np.bincount(lab[box][lab[box] > 0].ravel(), minlength=7)
        by = {a: int(votes[ARTERY_ID[a]] + votes[CALCIUM_ID[a]]) for a in ARTERIES}
        art = max(ARTERIES, key=lambda a: by[a])
        z = int(round(c.centre_zyx[0])) + int(offset[0])
        why = METAL_SPOT if c.peak_hu >= METAL_HU else f"P {c.probability:.2f}"
        spots.setdefault(art, []).append({"image": ct.slice_reference(z), "slice": z,
                                          "volume_mm3": round(c.volume_mm3, 1), "peak_hu": round(c.peak_hu),
                                          "why": why})
    info["uncounted"] = spots
    return uncounted_flags(spots, info.get("density_rule", {}).get("counting", True))


def uncounted_flags(spots: dict[str, list[dict]], counting: bool = True) -> list[Flag]:
    """The ``calcium_uncounted`` flags (one per artery) of the spots ``info["uncounted"]`` records."""
    why = ("too faint or small to tell from noise" if counting
           else "the density rule is switched off (segment.density_rule)")
    flags = []
    for art, ss in spots.items():
        where = ", ".join(f"{s['image']} ({s['volume_mm3']:g} mm3, peak {s['peak_hu']} HU, {s['why']})" for s in ss[:5])
        more = f" and {len(ss) - 5} more" if len(ss) > 5 else ""
        flags.append(Flag(F.CALCIUM_UNCOUNTED,
                          f"{art}: {len(ss)} dense spot(s) >= 130 HU on or next to the artery not counted as calcium: "
                          f"{where}{more}; {why}: check them on the images", "warning", art))
    return flags
