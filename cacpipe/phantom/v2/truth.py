"""Ground truth of a v2 phantom: which voxels are calcium of which plaque, and the numbers.

Voxel truth is defined on the noise-free image at the written resolution (the kernel applied,
partial volume and blooming included): a voxel belongs to plaque k when that image is
>= 130 HU there and plaque k is why (without the plaques the voxel would be < 130 HU, or the
plaques fill at least half of it), and plaque k contributes most to it. Numbers come from the
reference per-slice loop (:func:`cacpipe.phantom.truth.agatston_reference`).

Two versions: **reference** (the heart still: what the scan should report; the per-artery and
per-plaque numbers) and **imaged** (with this scan's motion: where the calcium is in this image;
the label maps). They differ only when the phantom moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ... import flags as F
from ...labels import ARTERIES, CALCIUM_ID
from ...quant.categories import cac_drs, category
from ...units import CALCIUM_THRESHOLD_HU, mm3_to_ml
from ..truth import agatston_reference
from .acquisition import blur_box, blur_nonzero, nonzero_box, psf_1d
from .config import ChestConfig
from .occupancy import Lobes

MOTION_FLAG_MM = 4.0  # a coronary point travelling this far within one slice's window smears or doubles
NOISE_WARN_HU = 35.0  # as cacpipe.quant.flags
NOISE_NOT_ASSESSABLE_HU = 70.0

# Expected-flag codes that cacpipe.flags does not define (yet): the phantom states them anyway.
MOTION = "motion"
SITUS_INVERSUS = "situs_inversus"
METAL_DEVICE = "metal_device"
CABG = "cabg"
CONVENTION = ("HU>=130 on the noise-free image; per-slice 2D 8-connected, min area 1 mm2; weights 1-4 by peak HU; "
              "x slice spacing/3 mm; lesions 3D 26-connected; reference = heart still, imaged = with this scan's motion")


@dataclass
class PlaqueImage:
    """One plaque as rendered: occupancy (moving and still) and its contribution to the object."""

    spec: object
    lobes: Lobes
    anchor: np.ndarray
    moving: tuple | None  # (box, f, S) with motion
    still: tuple | None  # (box, f, S) without motion
    delta: np.ndarray | None = None
    motion_mm: float = 0.0


def _pad_box(box, pad, shape):
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, shape, strict=True))


def _rel(box, outer):
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer, strict=True))


def _assign(parts, clean: np.ndarray, kernel: str, n_yx, px: float, pad) -> np.ndarray:
    """Owner plaque id per voxel of ``clean`` (the coronary box); ``parts``: (id, box_rel, f, delta)."""
    sum_bd = np.zeros(clean.shape, np.float32)
    sum_bf = np.zeros(clean.shape, np.float32)
    best = np.zeros(clean.shape, np.float32)
    owner = np.zeros(clean.shape, np.uint16)
    for pid, box, f, delta in parts:
        # Only round the voxels the plaque fills (its box carries the motion margin): elsewhere the
        # blurred fraction and contribution are exactly 0 and change nothing below.
        nzb = nonzero_box(f)
        if nzb is None:
            continue
        box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, nzb, strict=True))
        f, delta = f[nzb], delta[nzb]
        pb = _pad_box(box, pad, clean.shape)
        inner = _rel(box, pb)
        shape = tuple(s.stop - s.start for s in pb)
        arr_f = np.zeros(shape, np.float32)
        arr_d = np.zeros(shape, np.float32)
        arr_f[inner] = f
        arr_d[inner] = delta
        bf = blur_box(arr_f, kernel, n_yx, px)
        bd = blur_box(arr_d, kernel, n_yx, px)
        sum_bf[pb] += bf
        sum_bd[pb] += bd
        better = bd > best[pb]
        owner[pb][better] = pid
        best[pb][better] = bd[better]
    without = clean - sum_bd
    keep = ((clean >= CALCIUM_THRESHOLD_HU) & (sum_bf > 0.01) & (best > 0)
            & ((without < CALCIUM_THRESHOLD_HU) | (sum_bf >= 0.5)))
    owner[~keep] = 0
    return owner


def plaque_region(pis: list[PlaqueImage], shape, acq):
    """Index box holding every plaque (moving and still) plus the kernel's reach, or None."""
    boxes = [p.moving[0] for p in pis if p.moving is not None] + [p.still[0] for p in pis if p.still is not None]
    if not boxes:
        return None
    r = len(psf_1d(acq.kernel, acq.shape_yx[0], acq.pixel_mm)) // 2 + 4
    lo = [min(b[i].start for b in boxes) for i in range(3)]
    hi = [max(b[i].stop for b in boxes) for i in range(3)]
    return _pad_box(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), (2, r, r), shape)


def lesion_truth(pis: list[PlaqueImage], obj_cb: np.ndarray | None, clean_cb: np.ndarray | None, cb,
                 pre_bloom: np.ndarray | None, spacing, acq, lesion_map: np.ndarray, labels: np.ndarray,
                 bloom_fn, art_still=None) -> dict:
    """Fill ``lesion_map`` and the calcium classes of ``labels`` (imaged) inside the plaque region ``cb``.

    ``obj_cb`` / ``pre_bloom``: the object in ``cb`` after / before blooming; ``clean_cb``: the
    noise-free image there (exact, from the same FFT as the CT); ``art_still``: (box, change) that
    puts the coronary arteries where the still heart has them. Returns the clean images and owner
    maps of ``cb`` for :func:`assemble_truth`.
    """
    have = [p for p in pis if p.moving is not None or p.still is not None]
    if cb is None or not have:
        return {"box": None}
    px = acq.pixel_mm
    n_yx = acq.shape_yx
    r = len(psf_1d(acq.kernel, n_yx[0], px)) // 2 + 2
    pad = (1, r, r)
    img_clean = np.rint(clean_cb)
    moving_parts = [(p.spec.id, _rel(p.moving[0], cb), p.moving[1], p.delta) for p in have if p.moving is not None]
    owner_img = _assign(moving_parts, img_clean, acq.kernel, n_yx, px, pad)
    if any(p.still is not p.moving for p in have) and pre_bloom is not None:
        still = pre_bloom.copy()
        for _, box, _, delta in moving_parts:
            still[box] -= delta
        if art_still is not None:  # the still heart's arteries under its plaques
            hb, change = art_still
            inter = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(cb, hb, strict=True))
            if all(s.start < s.stop for s in inter):
                still[_rel(inter, cb)] += change[_rel(inter, hb)]
        still_parts = []
        for p in have:
            if p.still is None:
                continue
            box, f, s = p.still
            rb = _rel(box, cb)
            old = still[rb].copy()
            still[rb] = still[rb] * (1 - f) + s
            still_parts.append((p.spec.id, rb, f, still[rb] - old))
        bloom_fn(still)
        ref_clean = np.rint(clean_cb + blur_nonzero(still - obj_cb, acq.kernel, n_yx, px))
        owner_ref = _assign(still_parts, ref_clean, acq.kernel, n_yx, px, pad)
    else:
        ref_clean, owner_ref = img_clean, owner_img
    artery_of = {p.spec.id: p.spec.artery for p in have}
    lesion_map[cb] = owner_img
    lab = labels[cb]
    for pid, a in artery_of.items():
        lab[owner_img == pid] = CALCIUM_ID[a]
    return {"box": cb, "img_clean": img_clean, "owner_img": owner_img, "ref_clean": ref_clean, "owner_ref": owner_ref,
            "spacing": spacing}


def _stats(clean: np.ndarray, mask: np.ndarray, spacing) -> dict:
    vox = float(np.prod(spacing))
    n = int(mask.sum())
    if n == 0:
        return {"voxel_volume_mm3": 0.0, "agatston": 0.0, "peak_hu": None, "lesions": 0}
    sl = nonzero_box(mask)  # the mask's bounding box (as ndimage.find_objects gives it, faster)
    _, lesions = ndimage.label(mask[sl], structure=np.ones((3, 3, 3), bool))
    return {"voxel_volume_mm3": n * vox, "agatston": agatston_reference(clean[sl], mask[sl], spacing),
            "peak_hu": float(clean[sl][mask[sl]].max()), "lesions": int(lesions)}


def _noise_flags(sd: float) -> list[str]:
    if sd > NOISE_NOT_ASSESSABLE_HU:
        return [F.NOT_ASSESSABLE]
    if sd > NOISE_WARN_HU:
        return [F.HIGH_NOISE]
    return []


def coronary_motion_mm(motion, tree) -> dict[str, float]:
    """Per artery: how far its points typically travel within one slice's window (75th percentile, mm)."""
    out = {a: 0.0 for a in ARTERIES}
    if not motion.moving:
        return out
    z = motion.z
    spreads: dict[str, list[float]] = {a: [] for a in ARTERIES}
    for b in tree.values():
        for p in b.points[::10]:
            k = int(np.searchsorted(z, p[2]))
            ks = np.arange(max(k - 1, 0), min(k + 2, len(z)))
            spreads[b.artery].append(motion.spread(ks, p))
    return {a: float(np.percentile(v, 75)) if v else 0.0 for a, v in spreads.items()}


def assemble_truth(cfg: ChestConfig, parts: dict, pis: list[PlaqueImage], distractors: list, devices, motion,
                   tree, heart: np.ndarray, spacing, noise_sd: float, mirror: float) -> dict:
    vox = float(np.prod(spacing))
    plaques: list[dict] = []
    per_art = {a: {"ref": None, "img": None} for a in ARTERIES}
    if parts.get("box") is not None:
        oi, orf = parts["owner_img"], parts["owner_ref"]
        ci, cr = parts["img_clean"], parts["ref_clean"]
        for a in ARTERIES:
            ids = [p.spec.id for p in pis if p.spec.artery == a]
            per_art[a]["ref"] = _stats(cr, np.isin(orf, ids), spacing)
            per_art[a]["img"] = _stats(ci, np.isin(oi, ids), spacing)
    else:
        oi = orf = ci = cr = None
    for p in pis:
        s = p.spec
        ref = _stats(cr, orf == s.id, spacing) if orf is not None else _stats(np.zeros(1), np.zeros(1, bool), spacing)
        img = _stats(ci, oi == s.id, spacing) if oi is not None else ref
        c = p.lobes.centres.mean(axis=0) * [mirror, 1, 1]
        plaques.append({
            "id": s.id, "artery": s.artery, "branch": s.branch, "kind": s.kind,
            "analytic_volume_mm3": p.lobes.volume(), "voxel_volume_mm3": ref["voxel_volume_mm3"],
            "agatston": ref["agatston"], "peak_hu": ref["peak_hu"], "density_hu": s.density_hu,
            "centre_xyz_mm": [float(v) for v in c], "detectable": bool(ref["agatston"] > 0),
            "motion_mm": round(float(p.motion_mm), 3),
            "imaged": {k: img[k] for k in ("voxel_volume_mm3", "agatston", "peak_hu")},
        })
    arteries = {}
    for a in ARTERIES:
        ref, img = per_art[a]["ref"], per_art[a]["img"]
        ref = ref or {"voxel_volume_mm3": 0.0, "agatston": 0.0, "peak_hu": None, "lesions": 0}
        img = img or ref
        mine = [p for p in plaques if p["artery"] == a]
        arteries[a] = {
            "present": bool(ref["voxel_volume_mm3"] > 0), "calcium_volume_mm3": ref["voxel_volume_mm3"],
            "calcium_volume_ml": mm3_to_ml(ref["voxel_volume_mm3"]), "agatston": ref["agatston"],
            "lesions": ref["lesions"], "peak_hu": ref["peak_hu"],
            "analytic_volume_mm3": float(sum(p["analytic_volume_mm3"] for p in mine)),
            "plaques": mine,
            "imaged": {"calcium_volume_mm3": img["voxel_volume_mm3"], "agatston": img["agatston"],
                       "lesions": img["lesions"]},
        }
    tot_vol = sum(v["calcium_volume_mm3"] for v in arteries.values())
    tot_ag = float(sum(v["agatston"] for v in arteries.values()))
    expected, by_artery = expected_flags(cfg, devices, motion, tree, distractors, noise_sd)
    acq = cfg.acquisition
    return {
        "schema": "cacpipe.phantom.truth/2",
        "version": 2, "seed": cfg.seed, "preset": cfg.preset,
        "arteries": arteries,
        "plaques": plaques,
        "total": {"calcium_volume_mm3": tot_vol, "calcium_volume_ml": mm3_to_ml(tot_vol), "agatston": tot_ag,
                  "lesions": int(sum(v["lesions"] for v in arteries.values())), "category": category(tot_ag),
                  "cac_drs": cac_drs(tot_ag, [arteries[a]["agatston"] for a in ARTERIES]),
                  "vessels_with_calcium": sum(1 for a in ARTERIES if arteries[a]["agatston"] > 0)},
        "expected_flags": expected,
        "expected_flag_arteries": by_artery,
        "patient": {"sex": cfg.habitus.sex, "age": cfg.habitus.age},
        "acquisition": {"slice_thickness_mm": acq.slice_thickness_mm, "slice_spacing_mm": acq.slice_spacing_mm,
                        "n_slices": acq.n_slices, "pixel_mm": acq.pixel_mm, "fov_mm": acq.fov_mm,
                        "kernel": acq.kernel, "contrast_phase": acq.contrast_phase, "noise_sd_hu": noise_sd,
                        "heart_rate_bpm": acq.heart_rate_bpm, "motion_scale": acq.motion_scale,
                        "manufacturer": acq.manufacturer},
        "heart": {"volume_ml": float(np.count_nonzero(heart)) * vox / 1000.0, "dominance": cfg.heart.dominance,
                  "situs_inversus": cfg.heart.situs_inversus,
                  "branches": {n: {"artery": b.artery, "length_mm": round(b.length, 1),
                                   "proximal_diameter_mm": round(2 * float(b.radius[0]), 2)} for n, b in tree.items()}},
        "distractors": distractors,
        "spacing_zyx": list(spacing),
        "voxel_volume_mm3": vox,
        "convention": CONVENTION,
        "config": cfg.to_json(),
    }


def expected_flags(cfg: ChestConfig, devices, motion, tree, distractors, noise_sd: float):
    """Flags a perfect pipeline should raise on this study, and the arteries of artery-level ones."""
    out: list[str] = []
    by_artery: dict[str, list[str]] = {}
    acq = cfg.acquisition
    if acq.contrast_phase != "none":
        out.append(F.CONTRAST_SUSPECTED)
    if devices.stent_branches:
        out.append(F.STENT_SUSPECTED)
        by_artery[F.STENT_SUSPECTED] = sorted({a for _, a in devices.stent_branches})
    av = sum(d.get("volume_mm3", 0.0) for d in distractors if d.get("kind") == "aortic_valve_calcium")
    if av >= 3.0:
        out.append(F.VALVE_CALCIUM_SUSPECTED)
    out += _noise_flags(noise_sd)
    spread = coronary_motion_mm(motion, tree)
    moving = sorted(a for a, v in spread.items() if v >= MOTION_FLAG_MM)
    if moving:
        out.append(MOTION)
        by_artery[MOTION] = moving
    if acq.n_slices < 100:
        out.append(F.FEW_SLICES)
    if cfg.heart.situs_inversus:
        out.append(SITUS_INVERSUS)
    if cfg.findings.device != "none" or cfg.findings.prosthetic_valve != "none":
        out.append(METAL_DEVICE)
    if cfg.findings.cabg:
        out.append(CABG)
    return out, by_artery
