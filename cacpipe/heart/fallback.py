"""A heart locator that needs no model weights (classical, from the HU structure of a chest CT).

Used when TotalSegmentator's weights are not installed (or on request). It is coarse: its job
is a crop box that safely contains the heart and the coronary ostia, not a precise heart mask.

Steps, on a copy block-averaged to about 3 mm (speed and noise):
1. body = largest connected region above -500 HU, holes filled slice by slice;
2. lungs = air (< -400 HU) inside the body;
3. trachea and carina: per axial slice, a small, very dark (< -900 HU mean) air region near the
   body's left-right middle, separate from the lungs; followed from the top of the scan down,
   the last slice of that run is the carina; the heart lies below it;
4. mediastinum = per slice, the convex hull of the lungs minus the lungs, in slices that have
   lung on both sides;
5. the vertebral column (found along the posterior midline: the first bony run >= 18 mm deep,
   from the back) and everything behind its front within 40 mm of the midline (descending aorta,
   rib heads) are taken out of the mediastinum;
6. heart = soft tissue / blood (-30..500 HU) in the mediastinum below the carina, opened to cut
   thin links (vessels, pleura), largest 3D component, grown back inside the candidate region;
   then tubes are cut off (what a 16 mm ball cannot enter: aorta, pulmonary trunk, venae cavae,
   oesophagus; an opening computed with distance maps), 4 mm grown back, the vessel roots within
   15 mm above the heart given back (the coronary ostia lie there), holes filled.
The mask goes back to the CT grid by nearest neighbour. Nothing here uses phantom coordinates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ..volume import Volume
from .resample import grid_of, resample_to_grid

log = logging.getLogger(__name__)

WORK_SPACING_MM = 3.0
BODY_HU = -500.0
LUNG_HU = -400.0
AIRWAY_HU = -900.0
HEART_HU = (-30.0, 500.0)
TRACHEA_AREA_MM2 = (40.0, 1200.0)
OPENING_MM = 6.0
SPINE_HU = 150.0  # vertebral bone (cancellous and cortex) at the work resolution
SPINE_BAND_MM = 10.0  # half-width of the midline strip searched for the vertebral column
SPINE_MIN_RUN_MM = 18.0  # the vertebral body: the first bony run this deep, from the back
SPINE_KEEP_OUT_MM = 40.0  # half-width of the strip behind the vertebral front that is never heart
TUBE_MM = 16.0  # vessels thinner than twice this are cut off the heart
REGROW_MM = 4.0  # what the tube cut shaved off the heart's surface grows back this far
ROOT_KEEP_MM = 15.0  # the great vessels' roots kept above the heart (the coronary ostia are there)
# A cardiac reconstruction (200-250 mm field of view centred on the heart) cuts the body at the image
# edge: then the lungs may touch the edge and are no holes of the body.
CUT_SLICE_FRACTION = 0.3  # the field of view cuts the body when it does on this share of the slices
CARDIAC_FOV_MAX_MM = 300.0  # cardiac reconstructions are 180-250 mm (larger patients up to ~300); chest CT >= 320
CUT_LUNG_GAIN = 1.5  # the cut-field-of-view body must find this many times the lung of the usual one
MIN_LUNG_ML = 200.0  # less lung than this: not a chest CT, or a field of view that cuts the lungs
OUTSIDE_AIR_HU = -970.0  # air outside the patient (or the scanner's padding) is darker than any lung


@dataclass
class FallbackResult:
    mask: Volume  # uint8 on the CT grid
    carina_z_mm: float | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


SHRINK_CHUNK_SLICES = 16  # work-grid slices block-averaged at a time (a float32 copy of a few cm, not of the scan)


def _shrink(ct: Volume) -> tuple[Volume, bool]:
    """Block-average to ~3 mm; return the work volume and whether z was flipped to run inferior->superior.

    The blocks are averaged a slab of whole blocks at a time: each work voxel averages the same
    CT voxels as on the whole volume (slabs start at multiples of the z factor, and the partial
    last block is dropped as BinShrink drops it), and the geometry is the first slab's, which
    starts where the volume does. The float32 copy is then a slab's, not the scan's (2 x 288 MB
    on a 512 x 512 x 550 study; issue 31)."""
    factors = [max(1, int(round(WORK_SPACING_MM / s))) for s in ct.spacing_zyx[::-1]]  # x, y, z
    # z of the index axis in patient space: flip so that index increases towards the head.
    flip = np.asarray(ct.direction).reshape(3, 3)[2, 2] < 0
    fz = factors[2]
    step = fz * SHRINK_CHUNK_SLICES
    n_whole = (ct.shape[0] // fz) * fz
    if max(factors) == 1 or n_whole <= step:
        img = sitk.Cast(ct.to_sitk(), sitk.sitkFloat32)
        return Volume.from_sitk(sitk.BinShrink(img, factors) if max(factors) > 1 else img), flip
    parts, first = [], None
    for z0 in range(0, n_whole, step):
        slab = Volume(ct.array[z0:min(z0 + step, n_whole)], ct.spacing_zyx, ct.origin_xyz, ct.direction)
        small = Volume.from_sitk(sitk.BinShrink(sitk.Cast(slab.to_sitk(), sitk.sitkFloat32), factors))
        first = first or small
        parts.append(np.asarray(small.array))
    assert first is not None
    return Volume(np.concatenate(parts), first.spacing_zyx, first.origin_xyz, first.direction), flip


def _mask_to_grid(small_mask: Volume, ct: Volume) -> Volume:
    """The work-grid mask back on ``ct``'s grid (nearest neighbour), uint8.

    Resampled onto ``ct``'s voxels [0, stop) per axis only, ``stop`` past every voxel whose
    nearest work voxel lies inside the mask's box (one voxel to spare): the same origin, hence the
    same sample points, as the whole grid; the rest is 0. On a 0.625 mm chest CT the heart's box
    ends well before the scan's far corner (issue 31: the whole grid took seconds)."""
    from .crop import mask_bbox

    out = np.zeros(ct.shape, dtype=np.uint8)
    found = mask_bbox(np.asarray(small_mask.array))
    if found is None:
        return ct.with_array(out)
    d_ct = np.asarray(ct.direction, float).reshape(3, 3)
    if not np.allclose(np.asarray(small_mask.direction, float).reshape(3, 3), d_ct, atol=1e-9):
        full = resample_to_grid(small_mask, grid_of(ct), is_label=True, default=0)
        return ct.with_array(np.asarray(full.array, dtype=np.uint8))
    # Continuous work-grid index of ct voxel i along each axis: (delta + i * spacing) / work spacing.
    delta = (d_ct.T @ (np.asarray(ct.origin_xyz, float) - np.asarray(small_mask.origin_xyz, float)))[::-1]
    stop = []
    for hi, dz, s_ct, s_w, n in zip(found[1], delta, ct.spacing_zyx, small_mask.spacing_zyx, ct.shape, strict=True):
        first_out = ((hi - 0.5) * float(s_w) - dz) / float(s_ct)  # from here on the nearest work voxel is >= hi
        stop.append(int(min(n, max(1, np.ceil(first_out) + 1))))
    part = resample_to_grid(small_mask, (tuple(stop), ct.spacing_zyx, ct.origin_xyz, ct.direction), is_label=True,
                            default=0)
    out[:stop[0], :stop[1], :stop[2]] = np.asarray(part.array, dtype=np.uint8)
    return ct.with_array(out)


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.asarray(radius_vox), 0)
    rz, ry, rx = (int(np.ceil(v)) for v in r)
    z, y, x = np.ogrid[-rz:rz + 1, -ry:ry + 1, -rx:rx + 1]
    den = np.maximum(r, 1e-6) ** 2
    return (z * z / den[0] + y * y / den[1] + x * x / den[2]) <= 1.0


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _fill_slices(mask: np.ndarray) -> np.ndarray:
    out = np.empty_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndi.binary_fill_holes(mask[k])
    return out


def _lungs(a: np.ndarray, body: np.ndarray, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lungs (air regions of >= 50 mL inside the in-plane eroded body) and all air inside the body."""
    # Erode in-plane first: rim voxels averaged with outside air are not lung.
    inner = ndi.binary_erosion(body, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), iterations=2)
    air_in_body = inner & (a < LUNG_HU)
    lab, n = ndi.label(air_in_body)
    sizes = np.bincount(lab.ravel()) * float(np.prod(sp)) / 1000.0  # mL
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes[1:] >= 50.0
    return keep[lab], air_in_body


def _fov_cuts_body(body: np.ndarray) -> bool:
    """True when the body touches the image edge on at least CUT_SLICE_FRACTION of its slices.

    A cardiac field of view cuts the body at the sides, or in front and behind for a narrow chest:
    either way a lung can reach the edge and is then no hole of the body.
    """
    has = body.any(axis=(1, 2))
    if not has.any():
        return False
    edge = body[:, :, 0].any(axis=1) | body[:, :, -1].any(axis=1) | body[:, 0, :].any(axis=1) | body[:, -1, :].any(axis=1)
    return bool(edge[has].mean() >= CUT_SLICE_FRACTION)


def _fill_cut_slices(a: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Body per slice when the field of view cuts it: holes filled as if the body went on past the image edge.

    Every air region then counts as inside, so the air darker than any lung (OUTSIDE_AIR_HU: air in
    front of the chest, the scanner's padding outside the reconstruction circle) that reaches the
    image edge is taken out again, pixel by pixel (it may touch a lung where the chest wall leaves
    the image).
    """
    out = np.empty_like(body)
    for k in range(body.shape[0]):
        filled = ndi.binary_fill_holes(np.pad(body[k], 1, constant_values=True))[1:-1, 1:-1]
        dark = a[k] < OUTSIDE_AIR_HU
        lab, n = ndi.label(dark)
        if n:
            rim = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
            filled &= ~np.isin(lab, rim[rim > 0])
        out[k] = filled
    return out


def _spine_columns(a: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Per slice, the column of the vertebral column (most bone in the posterior half), or -1.

    For a field of view centred on the heart, whose centre is not the body's midline.
    """
    out = np.full(a.shape[0], -1, dtype=int)
    for k in range(a.shape[0]):
        ys = np.nonzero(body[k].any(axis=1))[0]
        if ys.size == 0:
            continue
        half = (ys[0] + ys[-1]) // 2
        prof = ndi.uniform_filter1d((a[k, half:] >= SPINE_HU).sum(axis=0).astype(float), 5)
        if prof.max() > 0:
            out[k] = int(np.argmax(prof))
    return out


def _spine_front(a: np.ndarray, body: np.ndarray, sp: np.ndarray, mids: np.ndarray | None = None) -> np.ndarray:
    """Per slice, the row (y index) of the vertebral body's anterior surface, or -1 when not found.

    Along the posterior midline, from the back forwards: bony runs (spinous process and laminae,
    then, after the spinal canal, the vertebral body); the first run at least SPINE_MIN_RUN_MM
    deep is the vertebral body. Works with contrast too: the blood pool in front of the spine is
    a separate run.
    """
    nz = a.shape[0]
    out = np.full(nz, -1, dtype=int)
    half = max(1, int(round(SPINE_BAND_MM / sp[2])))
    min_run = max(2, int(round(SPINE_MIN_RUN_MM / sp[1])))
    for k in range(nz):
        if not body[k].any():
            continue
        xs = np.nonzero(body[k].any(axis=0))[0]
        ys = np.nonzero(body[k].any(axis=1))[0]
        mid = int(round((xs[0] + xs[-1]) / 2.0)) if mids is None or mids[k] < 0 else int(mids[k])
        back, front = int(ys[-1]), int(ys[0])
        bone = a[k, :, max(mid - half, 0):mid + half + 1].max(axis=1) >= SPINE_HU
        y = back
        limit = back - 0.5 * (back - front)  # the spine lies in the posterior half of the body
        while y > limit:
            if bone[y]:
                run_end = y
                while run_end - 1 >= 0 and bone[run_end - 1]:
                    run_end -= 1
                if y - run_end + 1 >= min_run:
                    out[k] = run_end
                    break
                y = run_end - 1
            else:
                y -= 1
    return out


def _without_tubes(mask: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Drop what a ball of TUBE_MM cannot enter (great vessels, oesophagus), then regrow REGROW_MM inside ``mask``.

    An opening by a 16 mm ball, done with distance maps (cheap for large radii): the heart (about
    90-120 mm across) keeps its shape; the aorta, pulmonary trunk, venae cavae and oesophagus
    (under 32 mm across) fall away.
    """
    dist = ndi.distance_transform_edt(mask, sampling=sp)
    core = _largest(dist >= TUBE_MM)
    if not core.any():
        return mask
    cover = ndi.distance_transform_edt(~core, sampling=sp) <= TUBE_MM + REGROW_MM
    return _largest(cover & mask)


def _keep_root(before: np.ndarray, cut: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Give back the vessel roots within ROOT_KEEP_MM above the cut heart: the coronary ostia sit in the
    aortic root, and the crop box must keep a margin above them."""
    zs = np.nonzero(cut.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return cut
    top = int(zs.max())
    roots = before.copy()
    roots[: top + 1] = False  # only above the cut heart ...
    roots[top + 1 + int(round(ROOT_KEEP_MM / sp[0])):] = False  # ... and at most ROOT_KEEP_MM above it
    roots[top] = cut[top]  # the slice they stand on, to connect them
    lab, _ = ndi.label(roots)
    keep = np.unique(lab[top][cut[top] & (lab[top] > 0)])
    return cut | (np.isin(lab, keep[keep > 0]) & before)


def locate_heart(ct: Volume) -> FallbackResult:
    """Estimate the heart on ``ct`` from HU structure alone (see module docstring)."""
    from skimage.morphology import convex_hull_image  # scikit-image ships with nnU-Net

    small, flip = _shrink(ct)
    a = np.asarray(small.array, dtype=np.float32)
    if flip:
        a = a[::-1]
    sp = np.asarray(small.spacing_zyx)
    px_area = float(sp[1] * sp[2])
    warnings: list[str] = []
    info: dict = {"work_spacing_zyx": [float(s) for s in sp]}

    raw_body = _largest(a > BODY_HU)
    body = _fill_slices(raw_body)
    lungs, air_in_body = _lungs(a, body, sp)
    cut = False
    fov_mm = float(min(ct.shape[1] * ct.spacing_zyx[1], ct.shape[2] * ct.spacing_zyx[2]))
    info["fov_mm"] = fov_mm
    if fov_mm <= CARDIAC_FOV_MAX_MM and _fov_cuts_body(raw_body):
        # A cardiac field of view: lungs that reach the image edge are no holes of the body. Taken
        # only when that finds much more lung (a chest scan whose arms touch the edge keeps its body).
        body_c = _fill_cut_slices(a, raw_body)
        lungs_c, air_c = _lungs(a, body_c, sp)
        vox_ml = float(np.prod(sp)) / 1000.0
        if lungs_c.sum() * vox_ml > max(CUT_LUNG_GAIN * lungs.sum() * vox_ml, lungs.sum() * vox_ml + MIN_LUNG_ML):
            body, lungs, air_in_body, cut = body_c, lungs_c, air_c, True
    info["fov_cuts_body"] = cut
    info["lung_volume_ml"] = float(lungs.sum() * np.prod(sp) / 1000.0)
    if info["lung_volume_ml"] < MIN_LUNG_ML:
        warnings.append(f"fallback heart locator: little or no lung found ({info['lung_volume_ml']:.0f} mL); "
                        f"is this a chest CT?")

    # Trachea / carina, per slice, from the top down.
    nz = a.shape[0]
    trachea = np.zeros(nz, dtype=bool)
    for k in range(nz):
        if not body[k].any():
            continue
        xs = np.nonzero(body[k].any(axis=0))[0]
        mid, width = (xs[0] + xs[-1]) / 2.0, xs[-1] - xs[0] + 1
        lab2, n2 = ndi.label(air_in_body[k])
        for i in range(1, n2 + 1):
            comp = lab2 == i
            area = comp.sum() * px_area
            if not TRACHEA_AREA_MM2[0] <= area <= TRACHEA_AREA_MM2[1]:
                continue
            cx = np.nonzero(comp)[1].mean()
            # Its darkest tenth is air (partial-volume edges blur the mean).
            if abs(cx - mid) <= 0.15 * width and np.percentile(a[k][comp], 10) < AIRWAY_HU:
                trachea[k] = True
                break
    carina_k = None
    if trachea.any():
        k = int(np.nonzero(trachea)[0].max())
        top_k = k
        while k - 1 >= 0 and (trachea[k - 1] or (k - 2 >= 0 and trachea[k - 2])):
            k -= 1
        # A run of at least ~2 cm counts as the trachea; its lower end is the carina.
        if (top_k - k + 1) * sp[0] >= 20.0:
            carina_k = k
    if carina_k is None:
        warnings.append("fallback heart locator: no trachea/carina found; searching the whole scan height")
        z_limit = nz
    else:
        z_limit = carina_k + 1

    # Mediastinum: convex hull of the lungs minus the lungs, where both lungs are present.
    cand = np.zeros_like(body)
    soft = (a >= HEART_HU[0]) & (a <= HEART_HU[1]) & body
    lungs_grown = ndi.binary_dilation(lungs, iterations=1)
    for k in range(min(z_limit, nz)):
        lk = lungs[k]
        if lk.sum() * px_area < 500.0:
            continue
        xs = np.nonzero(body[k].any(axis=0))[0]
        mid = (xs[0] + xs[-1]) / 2.0
        cols = np.nonzero(lk.any(axis=0))[0]
        if not ((cols < mid).any() and (cols > mid).any()):
            continue
        hull = convex_hull_image(lk)
        cand[k] = hull & ~lungs_grown[k] & soft[k]
    # The vertebral column and what lies beside and behind its front (descending aorta, rib heads)
    # are never heart; in v2 phantoms they joined the heart through the oesophagus (docs/phantom.md).
    mids = _spine_columns(a, body) if cut else None
    front = _spine_front(a, body, sp, mids)
    keep_out = max(1, int(round(SPINE_KEEP_OUT_MM / sp[2])))
    for k in np.nonzero(front >= 0)[0]:
        xs = np.nonzero(body[k].any(axis=0))[0]
        mid = int(round((xs[0] + xs[-1]) / 2.0)) if mids is None or mids[k] < 0 else int(mids[k])
        cand[k, max(front[k] - 1, 0):, max(mid - keep_out, 0):mid + keep_out + 1] = False
    r = np.maximum(OPENING_MM / sp, 1.0)
    # Pad by edge replication so that morphology does not erode a heart cut by the scan range
    # (it must still touch the scan edge, for the QC flag).
    pw = [(int(np.ceil(v)) + 1,) * 2 for v in r]
    cand_p = np.pad(cand, pw, mode="edge")
    heart = _largest(ndi.binary_opening(cand_p, structure=_ball(r)))
    if heart.any():
        # Grow back what the opening shaved off, but only inside the candidate region.
        heart = ndi.binary_dilation(heart, structure=_ball(r), iterations=1) & cand_p
        heart = _largest(heart)
        heart = ndi.binary_closing(heart, structure=_ball(r))
        heart = _keep_root(heart, _without_tubes(heart, sp), sp)
    heart = heart[tuple(slice(a, a + n) for (a, _), n in zip(pw, cand.shape, strict=True))]
    if heart.any():
        heart = _fill_slices(heart)
    else:
        warnings.append("fallback heart locator: no heart-like soft tissue between the lungs")
    info["heart_volume_ml"] = float(heart.sum() * np.prod(sp) / 1000.0)
    if flip:
        heart = heart[::-1]
        carina_k = None if carina_k is None else nz - 1 - carina_k
    mask = _mask_to_grid(small.with_array(heart.astype(np.uint8)), ct)
    carina_mm = None
    if carina_k is not None:
        carina_mm = float(small.index_to_physical(np.array([[carina_k, 0, 0]]))[0, 2])
    info["carina_z_mm"] = carina_mm
    return FallbackResult(mask=mask, carina_z_mm=carina_mm, warnings=warnings, info=info)
