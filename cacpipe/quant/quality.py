"""Quality flags detectable from the image + segmentation (stents, valve calcium, noise).

:func:`quality_flags` looks for
- a suspected **stent**: a tubular (elongated) component of metal-like density (default >= 1500 HU,
  >= 5 mm long) in or next to an artery -> that artery's Agatston counts metal (``invalid``);
- suspected **aortic valve calcium**: calcium-dense blobs near the aortic root (located between the
  RCA and left-main ostia) outside the coronary labels -> ``warning`` (check it was not scored);
- **high noise**: the median SD of 8 x 8-pixel blocks wholly inside the heart interior (one tissue
  each: an enhanced heart's mixed blood and muscle is not noise), else the robust SD (1.4826 x MAD)
  there or in a ball at the centre of the coronary tree when no heart mask is given, above 35 HU -> ``warning``; above 70 HU the
  study is ``not_assessable`` (noise at the 130 HU threshold makes and hides lesions).
- **contrast from the image**: the predicted coronary lumen or the heart's interior brighter than
  ``CONTRAST_HU`` (80 HU; non-contrast blood is 30-60 HU, every enhanced phase >= ~100 HU) -> ``contrast_suspected`` (``invalid``), whatever the
  DICOM tags say (a NIfTI carries none);
- **no heart in the field of view** (:func:`cacpipe.ingest.plausibility.heart_fov_problem`: the
  located heart has no lung beside it) -> ``heart_not_in_field_of_view`` and a study-level
  ``not_assessable`` with that reason, never a scored 0.
With a :class:`cacpipe.quant.devices.DeviceScan`, stents come from it (their metal is excluded from
the count) and device voxels are not taken for valve calcium. Motion is not detected (issue 26:
the lumen-contrast measure tried did not separate moving from still arteries).
What the flags mean for the numbers is decided once, in :mod:`cacpipe.quant.validity`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from .. import flags as F
from ..flags import Flag
from ..heart.crop import mask_bbox
from ..labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from ..morph import erode_ball
from ..volume import Volume
from .agatston import _as_label_array, label_boxes

STENT_HU = 1500.0
STENT_MIN_LENGTH_MM = 5.0
NOISE_WARN_HU = 35.0
NOISE_NOT_ASSESSABLE_HU = 70.0
VALVE_MIN_VOLUME_MM3 = 3.0
VALVE_SEARCH_RADIUS_MM = 25.0
CONTRAST_HU = 80.0


def _pad_box(box: tuple[slice, ...], pad: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, shape, strict=True))


def _union_box(boxes: Iterable[tuple[slice, ...] | None]) -> tuple[slice, ...] | None:
    bs = [b for b in boxes if b is not None]
    if not bs:
        return None
    return tuple(slice(min(b[i].start for b in bs), max(b[i].stop for b in bs)) for i in range(3))


def _ball_structure(radius_mm: float, spacing_zyx) -> np.ndarray:
    r = [max(1, int(round(radius_mm / s))) for s in spacing_zyx]
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_zyx
    return (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm**2 + 1e-9


def _length_mm(idx: np.ndarray, spacing_zyx) -> float:
    """Extent (mm) of a voxel set along its principal axis."""
    pts = idx.astype(float) * np.asarray(spacing_zyx, dtype=float)
    if len(pts) < 2:
        return float(max(spacing_zyx))
    pts = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(pts, full_matrices=False)
    proj = pts @ vt[0]
    return float(proj.max() - proj.min()) + float(min(spacing_zyx))


def stent_flags(ct: Volume, lab: np.ndarray, boxes, stent_hu: float = STENT_HU,
                min_length_mm: float = STENT_MIN_LENGTH_MM) -> list[Flag]:
    """One ``stent_suspected`` flag per artery holding an elongated metal-density component."""
    out: list[Flag] = []
    sp = ct.spacing_zyx
    pad = tuple(int(np.ceil(3.0 / s)) + 1 for s in sp)
    for a in ARTERIES:
        box = _union_box([boxes[ARTERY_ID[a]], boxes[CALCIUM_ID[a]]])
        if box is None:
            continue
        box = _pad_box(box, pad, lab.shape)
        hu = ct.array[box]
        metal = hu >= stent_hu
        if not metal.any():
            continue
        near = ndimage.binary_dilation(np.isin(lab[box], (ARTERY_ID[a], CALCIUM_ID[a])),
                                       structure=_ball_structure(2.0, sp))
        comp, n = ndimage.label(metal & near, structure=np.ones((3, 3, 3), bool))
        best = 0.0
        for i, sl in enumerate(ndimage.find_objects(comp), start=1):
            idx = np.argwhere(comp[sl] == i)
            best = max(best, _length_mm(idx, sp))
        if best >= min_length_mm:
            out.append(Flag(F.STENT_SUSPECTED,
                            f"{a}: a {best:.0f} mm long tubular structure of metal density (>= {stent_hu:.0f} HU) "
                            "lies in the artery; a stent is likely and its metal would be scored as calcium",
                            "invalid", a))
    return out


def _ostium(lab: np.ndarray, ids: tuple[int, ...], box, spacing_zyx) -> np.ndarray | None:
    """Mean voxel index of the most superior 2 mm of an artery (its ostium end, approximately)."""
    if box is None:
        return None
    sub = np.isin(lab[box], ids)
    zs = np.flatnonzero(sub.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    # Axis 0 runs inferior -> superior (units.py), so the ostium end is the highest slices.
    top = zs[-1]
    keep = max(1, int(round(2.0 / spacing_zyx[0])))
    sel = np.argwhere(sub[max(zs[0], top - keep + 1): top + 1])
    sel[:, 0] += max(zs[0], top - keep + 1)
    return sel.mean(axis=0) + np.array([s.start for s in box])


def valve_flags(ct: Volume, lab: np.ndarray, boxes, radius_mm: float = VALVE_SEARCH_RADIUS_MM,
                min_volume_mm3: float = VALVE_MIN_VOLUME_MM3, exclude: np.ndarray | None = None) -> list[Flag]:
    """``valve_calcium_suspected`` when calcium-dense blobs sit near the aortic root, outside arteries."""
    sp = np.asarray(ct.spacing_zyx, dtype=float)
    o_r = _ostium(lab, (ARTERY_ID["RCA"], CALCIUM_ID["RCA"]),
                  _union_box([boxes[ARTERY_ID["RCA"]], boxes[CALCIUM_ID["RCA"]]]), sp)
    o_l = _ostium(lab, (ARTERY_ID["LAD"], CALCIUM_ID["LAD"]),
                  _union_box([boxes[ARTERY_ID["LAD"]], boxes[CALCIUM_ID["LAD"]]]), sp)
    if o_r is None or o_l is None:
        return []
    # The aortic valve lies between the two ostia and somewhat below them.
    centre = (o_r + o_l) / 2.0 - np.array([8.0 / sp[0], 0.0, 0.0])
    half = np.ceil(radius_mm / sp).astype(int)
    lo = np.maximum(0, np.floor(centre).astype(int) - half)
    hi = np.minimum(lab.shape, np.ceil(centre).astype(int) + half + 1)
    if np.any(hi - lo < 3):
        return []
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    zz, yy, xx = np.ogrid[box[0], box[1], box[2]]
    ball = ((zz - centre[0]) * sp[0]) ** 2 + ((yy - centre[1]) * sp[1]) ** 2 + ((xx - centre[2]) * sp[2]) ** 2 \
        <= radius_mm**2
    hu = ndimage.median_filter(ct.array[box], size=3)  # removes noise specks, keeps mm-sized calcium
    dense = (hu >= 130) & ball
    if dense.sum() > 0.2 * ball.sum():
        return []  # a bright blood pool (contrast) fills the root: nothing to say about valves
    coronary = ndimage.binary_dilation(lab[box] > 0, structure=_ball_structure(3.0, tuple(sp)))
    if exclude is not None:  # a device's metal (TAVI frame, valve ring) is not valve calcium
        coronary |= exclude[box]
    comp, n = ndimage.label(dense & ~coronary, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    vox = float(np.prod(sp))
    vols = np.bincount(comp.ravel(), minlength=n + 1)[1:] * vox
    keep = (vols >= min_volume_mm3) & (vols <= 1500.0)
    hits = vols[keep]
    if hits.size == 0:
        return []
    # Where a reader finds it: the largest structure's centre, as PACS names the image, and its pixel.
    big = int(np.flatnonzero(keep)[np.argmax(hits)]) + 1
    cz, cy, cx = (np.argwhere(comp == big).mean(axis=0) + [s.start for s in box]).round().astype(int)
    return [Flag(F.VALVE_CALCIUM_SUSPECTED,
                 f"{hits.size} calcified structure(s), {hits.sum():.0f} mm3 in all, near the aortic root outside "
                 f"the coronary arteries (aortic valve/root calcium?), the largest at {ct.slice_reference(cz)}, "
                 f"row {cy + 1}, column {cx + 1}: check it was not scored as coronary calcium", "warning")]


NOISE_BLOCK = 8  # in-plane block (pixels) whose SD measures the noise


def _block_sd(hu: np.ndarray, inner: np.ndarray, n: int = NOISE_BLOCK) -> float | None:
    """Median SD of the n x n in-plane blocks that lie wholly inside ``inner`` and within -300..300 HU.

    Blocks are small enough to be one tissue each, so a heart interior of several tissues (an
    enhanced scan: left blood 390 HU, right 230, myocardium 110) does not pass for noise, as a
    median absolute deviation over the whole interior would (v2 training phantoms: 50-92 HU measured
    for 20-56 HU of noise on enhanced scans). None when fewer than 20 blocks fit."""
    nz, ny, nx = hu.shape
    ny8, nx8 = ny // n * n, nx // n * n
    if ny8 == 0 or nx8 == 0:
        return None
    h = hu[:, :ny8, :nx8].reshape(nz, ny8 // n, n, nx8 // n, n)
    m = inner[:, :ny8, :nx8].reshape(nz, ny8 // n, n, nx8 // n, n)
    full = m.all(axis=(2, 4)) & ((h > -300) & (h < 300)).all(axis=(2, 4))
    if full.sum() < 20:
        return None
    blocks = h.transpose(0, 1, 3, 2, 4)[full].reshape(-1, n * n)
    return float(np.median(blocks.std(axis=1, ddof=1)))


def noise_sd(ct: Volume, lab: np.ndarray, boxes, heart: Volume | None = None) -> float | None:
    """Robust HU noise SD (1.4826 x MAD) in the heart interior, else near the coronary tree's centre."""
    sp = ct.spacing_zyx
    found = None if heart is None else mask_bbox(heart.array)
    if found is not None:  # the heart's box from its projections (no whole-array label map)
        hbox = tuple(slice(lo, hi) for lo, hi in zip(*found, strict=True))
        inner = erode_ball(heart.array[hbox] > 0, 5.0, sp)  # = binary_erosion with a 5 mm ball (cacpipe.morph)
        block = _block_sd(np.asarray(ct.array[hbox], dtype=np.float32), inner)
        if block is not None:
            return block
        vals = ct.array[hbox][inner]
    else:
        box = _union_box([boxes[i] for i in range(1, 7)])
        if box is None:
            return None
        centre = np.array([(s.start + s.stop - 1) / 2.0 for s in box])
        half = np.ceil(15.0 / np.asarray(sp)).astype(int)
        lo = np.maximum(0, np.round(centre).astype(int) - half)
        hi = np.minimum(lab.shape, np.round(centre).astype(int) + half + 1)
        sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        vals = ct.array[sub][lab[sub] == 0]
    vals = vals[(vals > -300) & (vals < 300)]  # soft tissue / blood only; drop lung, bone, calcium
    if vals.size < 100:
        return None
    med = np.median(vals)
    return float(1.4826 * np.median(np.abs(vals - med)))


def lumen_hu(ct: Volume, lab: np.ndarray, boxes) -> float | None:
    """Median HU of the predicted coronary lumen (artery labels 1-3, not calcium), or None when
    there are fewer than 50 such voxels. Non-contrast: blood and partial volume with the
    surrounding fat (about -40..50 HU); an enhanced lumen is far brighter."""
    vals = []
    for a in ARTERIES:
        box = boxes[ARTERY_ID[a]]
        if box is not None:
            vals.append(ct.array[box][lab[box] == ARTERY_ID[a]])
    v = np.concatenate(vals) if vals else np.zeros(0)
    return float(np.median(v)) if v.size >= 50 else None


def contrast_flags(ct: Volume, lab: np.ndarray, boxes, heart: Volume | None = None,
                   threshold_hu: float = CONTRAST_HU, heart_interior_hu: float | None = None) -> tuple[list[Flag], dict]:
    """``contrast_suspected`` from the image: the coronary lumen or the heart's interior > threshold.

    ``heart_interior_hu``: :func:`cacpipe.heart.qc.blood_pool_hu` of this CT and ``heart``, when
    already measured (stage 1 does, on the same voxels): its distance map is not computed again."""
    from ..heart.qc import blood_pool_hu

    lumen = lumen_hu(ct, lab, boxes)
    pool = heart_interior_hu
    if pool is None:
        pool = blood_pool_hu(ct, heart) if heart is not None and np.any(heart.array) else None
    info = {"lumen_hu": lumen, "heart_interior_hu": pool}
    seen = [(v, where) for v, where in ((lumen, "coronary lumen"), (pool, "heart interior")) if v is not None]
    hits = [(v, where) for v, where in seen if v > threshold_hu]
    if not hits:
        return [], info
    what = ", ".join(f"{where} median {v:.0f} HU" for v, where in hits)
    return [Flag(F.CONTRAST_SUSPECTED, f"blood brighter than non-contrast blood ({what}; > {threshold_hu:.0f} HU): "
                 "iodine contrast suspected from the image; Agatston scores are not valid on contrast scans",
                 "invalid")], info


def fov_flags(ct: Volume, heart: Volume | None) -> list[Flag]:
    """``heart_not_in_field_of_view`` + a study-level ``not_assessable`` when the scan shows no heart."""
    from ..ingest.plausibility import heart_fov_problem

    why = heart_fov_problem(ct.array, None if heart is None else heart.array, ct.spacing_zyx)
    if why is None:
        return []
    return [Flag(F.HEART_NOT_IN_FOV, why, "invalid"),
            Flag(F.NOT_ASSESSABLE, f"not assessable: {why}; a score of 0 would mean 'no calcium', not "
                 "'no heart scanned'", "invalid")]


def quality_flags(ct: Volume, labels: Volume, heart: Volume | None = None, *,
                  stent_hu: float = STENT_HU, noise_warn_hu: float = NOISE_WARN_HU,
                  noise_not_assessable_hu: float | None = NOISE_NOT_ASSESSABLE_HU,
                  valve: bool = True, devices=None, contrast: bool = True, fov: bool = True,
                  heart_interior_hu: float | None = None) -> list[Flag]:
    """Flags detectable from the CT and the six-class map (same grid): stents, valve calcium, noise,
    contrast, a field of view without a heart.

    ``devices`` (a :class:`cacpipe.quant.devices.DeviceScan`): its stents replace the metal-density
    stent check here and its exclusion mask is not taken for valve calcium. ``fov`` needs ``heart``.
    ``heart_interior_hu``: the blood pool of ``heart`` on this CT when already measured
    (:func:`contrast_flags`).
    """
    lab = _as_label_array(labels.array)
    boxes = label_boxes(lab)
    out: list[Flag] = []
    if fov and heart is not None:
        out += fov_flags(ct, heart)
    out += stent_flags(ct, lab, boxes, stent_hu=stent_hu) if devices is None else []
    # A valve prosthesis's frame (a TAVI's struts show 130-1400 HU on thick slices) cannot be told
    # from valve calcium, and native calcium under it is crushed by it: metal_device says so instead.
    prosthesis = devices is not None and "valve_prosthesis" in devices.kinds()
    if valve and not prosthesis:
        out += valve_flags(ct, lab, boxes, exclude=None if devices is None else devices.exclusion)
    if contrast:
        out += contrast_flags(ct, lab, boxes, heart, heart_interior_hu=heart_interior_hu)[0]
    sd = noise_sd(ct, lab, boxes, heart)
    if sd is not None:
        if noise_not_assessable_hu is not None and sd > noise_not_assessable_hu:
            out.append(Flag(F.NOT_ASSESSABLE, f"image noise SD {sd:.0f} HU exceeds {noise_not_assessable_hu:.0f} HU: "
                            "the 130 HU calcium threshold is not reliable on this scan", "invalid"))
        elif sd > noise_warn_hu:
            out.append(Flag(F.HIGH_NOISE, f"image noise SD {sd:.0f} HU (> {noise_warn_hu:.0f} HU): noise can create "
                            "or hide small lesions; review the calcium overlays", "warning"))
    return out
