"""Generate a v2 phantom: scene -> object (partial volume, motion) -> kernel + noise -> CT + truth."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ...labels import ARTERIES, ARTERY_ID
from ...volume import Volume
from .acquisition import CardiacMotion, add_noise, blur_box, kernel_spectrum, noise_per_slice, to_image
from .config import ChestConfig
from .coronary import build_tree, outer_radius
from .devices import build_devices
from .heart import build_heart
from .materials import HU_MAX, HU_MIN, material_hu
from .occupancy import SliceGrid, lobe_occupancy, static_displacer, tube_occupancy
from .plaques import aortic_valve_lobes, aortic_wall_lobes, mitral_annulus_lobes, plaque_lobes
from .scene import build_scene, render
from .thorax import body_layout
from .truth import PlaqueImage, lesion_truth, plaque_region

BLOOM_HU = 1000.0  # excess density above this spreads into a wider halo (metal, dense calcium)
BLOOM_FRACTION = 0.35
BLOOM_SIGMA_MM = 0.7


@dataclass
class ChestPhantom:
    """A generated v2 phantom: images on the written grid and the full truth."""

    config: ChestConfig
    ct: Volume  # int16 HU as the scanner writes it
    labels: Volume  # uint8 six-class map (as imaged)
    heart: Volume  # uint8 heart mask (myocardium + chambers)
    lesions: Volume  # uint16 plaque id per voxel (as imaged), 0 = none
    truth: dict
    branches: dict = field(default_factory=dict)  # name -> {"artery", "points" (N, 3) mm, "radius"}
    distractors: list = field(default_factory=list)
    _clean: Volume | None = None

    @property
    def expected_flags(self) -> list[str]:
        return list(self.truth["expected_flags"])

    @property
    def centrelines(self) -> dict[str, np.ndarray]:
        """Artery -> its main centreline from the ostium (LAD includes the left main)."""
        b = self.branches
        return {"RCA": b["RCA"]["points"], "LAD": np.concatenate([b["LM"]["points"], b["LAD"]["points"][1:]]),
                "LCX": np.concatenate([b["LM"]["points"], b["LCX"]["points"][1:]])}

    @property
    def ct_clean(self) -> Volume:
        """The noise-free image (kernel applied); only when generated with ``with_clean=True``."""
        if self._clean is None:
            raise ValueError("the noise-free image was not kept: generate(config, with_clean=True)")
        return self._clean


def slice_positions(cfg: ChestConfig) -> np.ndarray:
    acq = cfg.acquisition
    n = acq.n_slices
    return acq.z_top_mm - (n - 1 - np.arange(n)) * acq.slice_spacing_mm  # ascending (inferior -> superior)


_PAGES_LOCK = threading.Lock()
_PAGES_USERS = [0, None]  # generate() calls inside small_pages(), numpy's setting before the first


@contextmanager
def small_pages():
    """Within: numpy does not ask the kernel for transparent huge pages for its large arrays.

    A phantom allocates many large, short-lived arrays. Where huge pages come with direct
    compaction (Linux THP defrag "madvise", a busy machine), every fresh array's first touch
    stalls: writing a 512 x 512 x 400 study took ~0.7 s more CPU with them on the 2-core
    development machine (docs/phantom.md, Speed). Only speed changes; numpy's own setting is
    restored when the last concurrent user leaves. A no-op where numpy lacks the switch.
    """
    setter = getattr(getattr(np, "_core", None), "multiarray", None)
    setter = getattr(setter, "_set_madvise_hugepage", None)
    if setter is None:
        yield
        return
    with _PAGES_LOCK:
        if _PAGES_USERS[0] == 0:
            _PAGES_USERS[1] = setter(False)
        _PAGES_USERS[0] += 1
    try:
        yield
    finally:
        with _PAGES_LOCK:
            _PAGES_USERS[0] -= 1
            if _PAGES_USERS[0] == 0:
                setter(bool(_PAGES_USERS[1]))


def generate(cfg: ChestConfig, with_clean: bool = False) -> ChestPhantom:
    """Build a v2 phantom (deterministic in ``cfg``, seed included).

    ``with_clean`` also keeps the noise-free image (``ct_clean``; one more inverse FFT pass).
    """
    with small_pages():
        return _generate(cfg, with_clean)


def _generate(cfg: ChestConfig, with_clean: bool) -> ChestPhantom:
    acq = cfg.acquisition
    ny, nx = acq.shape_yx
    px = acq.pixel_mm
    x = (np.arange(nx) - (nx - 1) / 2) * px
    y = (np.arange(ny) - (ny - 1) / 2) * px
    z = slice_positions(cfg)
    rng = np.random.default_rng([cfg.seed, 2])  # details not worth a config field (lung vessels, nodules...)
    mats = material_hu(cfg)

    hm = build_heart(cfg.heart)
    tree = build_tree(cfg.heart, hm)
    th, uu = np.meshgrid(np.linspace(0, 360, 36), np.linspace(hm.frame.base_u, hm.frame.envelope[2], 12))
    heart_bottom = float(hm.frame.surface(th, uu)[..., 2].min())
    body = body_layout(cfg, heart_bottom)
    devices = build_devices(cfg, hm, tree, body, rng)
    scene = build_scene(cfg, body, hm, tree, devices, mats, x, y, rng)
    obj, heart = render(scene, z, y, x, acq.slice_thickness_mm, background=mats["air"])

    grid = SliceGrid(z, y, x, acq.slice_thickness_mm)
    motion = CardiacMotion(acq, hm.frame, z, phase0=float(rng.random()))
    max_d = motion.max_displacement() if motion.moving else 0.0

    # --- coronary arteries (partial volume, moving) -> artery labels ----------------------------
    shape = obj.shape
    labels = np.zeros(shape, np.uint8)
    all_pts = np.concatenate([b.points for b in tree.values()])
    margin = 6.0 + max_d
    hb = grid.index_box(all_pts.min(axis=0) - margin, all_pts.max(axis=0) + margin)
    art_still = None  # (box, still - moving): the arteries of the still heart, for the reference truth
    if hb is not None:
        contrast = acq.contrast_phase != "none"
        before = obj[hb].copy() if motion.moving and cfg.plaques else None
        paint_arteries(obj[hb], labels[hb], hb, tree, grid, motion, max_d, mats, contrast=contrast)
        if before is not None:
            paint_arteries(before, np.zeros(before.shape, np.uint8), hb, tree, grid, static_displacer, 0.0, mats,
                           contrast=contrast)
            art_still = (hb, before - obj[hb])
            del before

    # --- calcium and metal (sub-voxel, moving where they sit on the heart) ----------------------
    centre = hm.frame.centre
    plaque_imgs: list[PlaqueImage] = []
    for spec in cfg.plaques:
        lobes = plaque_lobes(spec, tree, centre)
        anchor = lobes.centres.mean(axis=0)
        res = lobe_occupancy(grid, lobes, motion, anchor, max_d)
        static = lobe_occupancy(grid, lobes, static_displacer, anchor, 0.0) if motion.moving else res
        pi = PlaqueImage(spec, lobes, anchor, res, static)
        if res is not None:
            box, f, s = res
            old = obj[box].copy()
            obj[box] = obj[box] * (1 - f) + s
            pi.delta = obj[box] - old
        ks = np.arange(res[0][0].start, res[0][0].stop) if res is not None else np.arange(0)
        pi.motion_mm = motion.spread(ks, anchor)
        plaque_imgs.append(pi)

    distractors: list[dict] = []
    fnd = cfg.findings
    others = []
    if fnd.aortic_valve_calcium_mm3 > 0:
        others.append(("aortic_valve_calcium", aortic_valve_lobes(hm, fnd.aortic_valve_calcium_mm3, rng), True))
    if fnd.mitral_annulus_calcium_deg > 0:
        others.append(("mitral_annulus_calcium", mitral_annulus_lobes(hm, fnd.mitral_annulus_calcium_deg, rng), True))
    if fnd.aortic_wall_plaques > 0:
        aorta = scene_aorta(scene_items=scene.items)
        if aorta is not None:
            others.append(("aortic_wall_calcium", aortic_wall_lobes(aorta.p, aorta.rad, fnd.aortic_wall_plaques, rng),
                           False))
    for kind, mesh in devices.mesh_lobes:
        others.append((kind, mesh, kind == "stent"))
    for kind, lobes, moves in others:
        anchor = lobes.centres.mean(axis=0)
        res = lobe_occupancy(grid, lobes, motion if moves else static_displacer, anchor, max_d if moves else 0.0,
                             ss=4 if kind != "tavi" else 3)
        if res is not None:
            box, f, s = res
            obj[box] = obj[box] * (1 - f) + s
        rec = {"kind": kind, "centre_xyz_mm": anchor.tolist()}
        if kind.endswith("calcium"):
            rec["volume_mm3"] = lobes.volume()
        distractors.append(rec)
    for w in devices.wires:
        for box, f in tube_occupancy(grid, w.points, np.full(len(w.points), w.radius), static_displacer, 0.0):
            obj[box] = obj[box] * (1 - f) + w.density * f
    distractors += devices.records

    cb = plaque_region(plaque_imgs, shape, acq)
    pre_bloom = obj[cb].copy() if cb is not None else None
    bloom(obj, acq.pixel_mm, acq.slice_thickness_mm)
    obj_cb = obj[cb].copy() if cb is not None else None

    # --- kernel, truth on the noise-free image, then noise ---------------------------------------
    spacing = (acq.slice_spacing_mm, px, px)
    geo = {"spacing_zyx": spacing, "origin_xyz": (float(x[0]), float(y[0]), float(z[0]))}
    ref = int(np.clip(np.searchsorted(z, centre[2]), 0, len(z) - 1))
    sd = noise_per_slice(obj, px, acq.noise_hu, ref)
    spec = kernel_spectrum(obj, acq.kernel, px)
    del obj
    clean = to_image(spec, (ny, nx)) if with_clean else None
    if cb is not None:
        clean_cb = clean[cb] if clean is not None else to_image(spec[cb[0]], (ny, nx), rows=cb[1])[:, :, cb[2]]
    else:
        clean_cb = None
    lesion_map = np.zeros(shape, np.uint16)
    mirror = -1.0 if cfg.heart.situs_inversus else 1.0
    from .truth import assemble_truth

    def truth_job() -> dict:
        # Reads the noise-free image and fills lesion_map / labels: nothing the noise pass touches.
        parts = lesion_truth(plaque_imgs, obj_cb, clean_cb, cb, pre_bloom, spacing, acq, lesion_map, labels,
                             lambda a: bloom(a, px, acq.slice_thickness_mm), art_still)
        return assemble_truth(cfg, parts, plaque_imgs, distractors, devices, motion, tree, heart, spacing,
                              float(sd[ref]), mirror)

    overlap = 1.0 - acq.slice_spacing_mm / acq.slice_thickness_mm
    with ThreadPoolExecutor(1) as ex:  # the truth (mostly serial) alongside the noise and the inverse FFT
        truth_future = ex.submit(truth_job)
        add_noise(spec, acq.kernel, px, (ny, nx), sd, overlap, np.random.default_rng([cfg.seed, 3]))
        ct = to_image(spec, (ny, nx), overwrite=True, hu_range=(HU_MIN, HU_MAX))  # int16 HU as the scanner writes
        del spec
        truth = truth_future.result()
    if clean is not None:
        clean = np.clip(np.rint(clean, out=clean), HU_MIN, HU_MAX, out=clean).astype(np.int16)
    if cfg.heart.situs_inversus:  # the mirror image, left-right (the grid is symmetric about x = 0)
        for a in (ct, heart, labels, lesion_map) + ((clean,) if clean is not None else ()):
            a[:] = a[:, :, ::-1]

    branches = {n: {"artery": b.artery, "points": b.points * [mirror, 1, 1], "radius": b.radius}
                for n, b in tree.items()}
    return ChestPhantom(
        config=cfg, ct=Volume(ct, **geo), labels=Volume(labels, **geo), heart=Volume(heart, **geo),
        lesions=Volume(lesion_map, **geo), truth=truth, branches=branches, distractors=distractors,
        _clean=Volume(clean, **geo) if clean is not None else None,
    )


def _rel(box, outer):
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer, strict=True))


def paint_arteries(obj: np.ndarray, labels: np.ndarray, hb, tree, grid, motion, max_d: float, mats: dict,
                   contrast: bool) -> None:
    """Composite the coronary tubes (wall; lumen too when enhanced) into the box ``hb`` and label them."""
    shape = obj.shape
    art_f = {a: np.zeros(shape, np.float32) for a in ARTERIES}  # calloc: pages no tube reaches stay untouched
    lumen_f = np.zeros(shape, np.float32) if contrast else None
    touched = []  # every voxel a tube fills lies in one of these boxes
    for b in tree.values():
        pts, rad = b.points[::4], outer_radius(b)[::4]
        if len(b.points) % 4 != 1:  # keep the branch's last point
            pts, rad = np.concatenate([pts, b.points[-1:]]), np.concatenate([rad, outer_radius(b)[-1:]])
        for box, f in tube_occupancy(grid, pts, rad, motion, max_d):
            r = _rel(box, hb)
            np.maximum(art_f[b.artery][r], f, out=art_f[b.artery][r])
            touched.append(r)
        if lumen_f is not None:
            lum = b.radius[::4] if len(pts) == len(b.points[::4]) else np.concatenate([b.radius[::4], b.radius[-1:]])
            for box, f in tube_occupancy(grid, pts, lum, motion, max_d):
                r = _rel(box, hb)
                np.maximum(lumen_f[r], f, out=lumen_f[r])
                touched.append(r)
    if not touched:
        return
    # Only the voxels some tube fills change (elsewhere v (1 - 0) + 0 = v): gather them, composite, scatter.
    ub = tuple(slice(min(t[i].start for t in touched), max(t[i].stop for t in touched)) for i in range(3))
    fs = {a: art_f[a][ub] for a in ARTERIES}
    f_any = np.maximum(np.maximum(fs["RCA"], fs["LAD"]), fs["LCX"])
    nz = np.nonzero(f_any if lumen_f is None else (f_any > 0) | (lumen_f[ub] > 0))
    ov, fa = obj[ub], f_any[nz]
    v = ov[nz] * (1 - fa)
    v += mats["artery_wall"] * fa
    if lumen_f is not None:
        v += lumen_f[ub][nz] * (mats["blood_left"] - mats["artery_wall"])
    ov[nz] = v
    lab = labels[ub][nz]
    best = np.zeros(lab.shape, np.float32)
    for a in ARTERIES:
        fa = fs[a][nz]
        lab[(fa >= 0.5) & (fa > best)] = ARTERY_ID[a]
        np.maximum(best, fa, out=best)
    labels[ub][nz] = lab


def scene_aorta(scene_items):
    """The aorta tube of the scene (the first capsule chain of the great vessels)."""
    from .raster import Capsules

    for solid, _, flag in scene_items:
        if isinstance(solid, Capsules) and flag == 0 and len(solid.p) >= 6:
            return solid
    return None


def bloom(obj: np.ndarray, pixel_mm: float, thickness_mm: float) -> None:
    """Spread part of the density above BLOOM_HU into a halo (in place; mass-preserving)."""
    from scipy import ndimage

    dense = obj > BLOOM_HU
    if not dense.any():
        return
    zs, ys, xs = (np.flatnonzero(dense.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1)))
    pad = [int(np.ceil(4 * BLOOM_SIGMA_MM / s)) + 1 for s in (thickness_mm, pixel_mm, pixel_mm)]
    box = tuple(slice(max(a[0] - p, 0), min(a[-1] + p + 1, n)) for a, p, n in zip((zs, ys, xs), pad, obj.shape,
                                                                                  strict=True))
    sub = obj[box]
    excess = np.clip(sub - BLOOM_HU, 0, None)
    sig = (BLOOM_SIGMA_MM / thickness_mm, BLOOM_SIGMA_MM / pixel_mm, BLOOM_SIGMA_MM / pixel_mm)
    halo = ndimage.gaussian_filter(excess, sig, mode="constant")
    sub += BLOOM_FRACTION * (halo - excess)


__all__ = ["ChestPhantom", "blur_box", "generate", "slice_positions"]
