"""Phantom v2 fast paths give the same numbers as the straightforward computation they replace.

Each fast path (slab painting, one array operation per tube segment, gathered artery
compositing, the inverse FFT in two 1D passes, blurring only round nonzero voxels) is checked
against a plain version of the same arithmetic, exactly (``array_equal``), on small grids.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.fft as sfft
from scipy import ndimage

from cacpipe.labels import ARTERIES, ARTERY_ID
from cacpipe.phantom.v2 import generate, random_config
from cacpipe.phantom.v2 import raster as raster_mod
from cacpipe.phantom.v2.acquisition import CardiacMotion, blur_box, blur_nonzero, nonzero_box, to_image
from cacpipe.phantom.v2.heart import build_heart
from cacpipe.phantom.v2.occupancy import SliceGrid, static_displacer, tube_occupancy

F32 = np.float32
HEART_ONLY = {"z_top_mm": -10.0, "n_slices": 40, "slice_spacing_mm": 2.5, "slice_thickness_mm": 2.5,
              "contrast_phase": "none"}


@pytest.mark.parametrize("shape_yx", [(64, 128), (48, 60)])  # two 1D passes; irfft2 per slab (not powers of 2)
def test_inverse_fft_in_slabs_equals_irfft2(shape_yx):
    rng = np.random.default_rng(0)
    img = rng.normal(0, 300, (7, *shape_yx)).astype(F32)
    spec = sfft.rfft2(img + 1000.0)
    spec *= rng.random(spec.shape[1:], dtype=F32)  # some filter, as the kernel applies
    ref = sfft.irfft2(spec, s=shape_yx).astype(F32) - F32(1000.0)
    assert np.array_equal(to_image(spec, shape_yx, chunk=3), ref)
    assert np.array_equal(to_image(spec, shape_yx, rows=slice(10, 30), chunk=2), ref[:, 10:30])
    hu = to_image(spec.copy(), shape_yx, overwrite=True, hu_range=(-1024.0, 3071.0), chunk=4)
    assert hu.dtype == np.int16 and np.array_equal(hu, np.clip(np.rint(ref), -1024, 3071).astype(np.int16))


def test_blur_round_nonzero_voxels_equals_blurring_everything():
    a = np.zeros((6, 60, 70), F32)
    a[2, 30, 31], a[3, 1, 68], a[5, 40:44, 10:13] = 500.0, -80.0, 900.0  # one next to the border
    for kernel in ("soft", "standard", "sharp"):
        assert np.array_equal(blur_nonzero(a, kernel, (512, 512), 0.78), blur_box(a, kernel, (512, 512), 0.78))
    assert not blur_nonzero(np.zeros_like(a), "soft", (512, 512), 0.78).any()
    assert nonzero_box(a) == ndimage.find_objects((a != 0).astype(np.uint8))[0]
    assert nonzero_box(np.zeros_like(a)) is None


def _tube_reference(grid, points, radii, disp, max_d, z_step=0.5):
    """The per-slice occupancy of each segment, one slice at a time (what tube_occupancy vectorises)."""
    out = np.zeros(grid.shape, F32)
    px, offs = grid.pixel, grid.sub_z(z_step).astype(F32)
    for i in range(len(points) - 1):
        a, b = points[i], points[i + 1]
        ra, rb = float(radii[i]), float(radii[i + 1])
        r = max(ra, rb) + px
        cand = grid.index_box(np.minimum(a, b) - r - max_d, np.maximum(a, b) + r + max_d)
        if cand is None:
            continue
        ks = np.arange(cand[0].start, cand[0].stop)
        d_all = disp(ks, (a + b) / 2).astype(F32)
        ab = (b - a).astype(float)
        l2 = float(ab @ ab) or 1e-12
        for ki, k in enumerate(ks):
            d = d_all[ki]
            box = grid.index_box(np.minimum(a, b) - r + d.min(axis=0), np.maximum(a, b) + r + d.max(axis=0))
            if box is None:
                continue
            x = grid.x[box[2]].astype(F32)[None, None, None, :] - d[:, 0, None, None, None] - F32(a[0])
            y = grid.y[box[1]].astype(F32)[None, None, :, None] - d[:, 1, None, None, None] - F32(a[1])
            z = (F32(grid.z[k]) + offs)[None, :, None, None] - d[:, 2, None, None, None] - F32(a[2])
            t = np.clip((x * F32(ab[0] / l2) + y * F32(ab[1] / l2)) + z * F32(ab[2] / l2), 0.0, 1.0)
            dist = np.sqrt((x - t * F32(ab[0])) ** 2 + (y - t * F32(ab[1])) ** 2 + (z - t * F32(ab[2])) ** 2)
            cov = np.clip((F32(ra) + t * F32(rb - ra) - dist) / F32(px) + F32(0.5), 0.0, 1.0)
            sub = out[k, box[1], box[2]]
            np.maximum(sub, cov.mean(axis=(0, 1)), out=sub)
    return out


@pytest.mark.parametrize("moving", [False, True])
def test_tube_occupancy_equals_the_per_slice_computation(moving):
    cfg = random_config(1010, "v2-small", acquisition={**HEART_ONLY, "motion_scale": 1.2 if moving else 0.0})
    acq = cfg.acquisition
    hm = build_heart(cfg.heart)
    z = acq.z_top_mm - (acq.n_slices - 1 - np.arange(acq.n_slices)) * acq.slice_spacing_mm
    xy = (np.arange(256) - 127.5) * acq.pixel_mm
    grid = SliceGrid(z, xy, xy, acq.slice_thickness_mm)
    motion = CardiacMotion(acq, hm.frame, z, phase0=0.3) if moving else static_displacer
    max_d = motion.max_displacement() if moving else 0.0
    # a curved tube over the heart, thinning, with short and long segments
    s = np.linspace(0, 1, 14) ** 1.3
    pts = hm.frame.centre + np.stack([40 * np.cos(3 * s), 35 * np.sin(3 * s), -30 + 70 * s], axis=1)
    rad = np.linspace(2.2, 0.9, len(pts))
    got = np.zeros(grid.shape, F32)
    for box, f in tube_occupancy(grid, pts, rad, motion, max_d):
        np.maximum(got[box], f, out=got[box])
    ref = _tube_reference(grid, pts, rad, motion, max_d)
    assert ref.sum() > 100 and np.array_equal(got, ref)


def test_slab_painting_and_gathered_arteries_give_the_same_phantom(monkeypatch):
    cfg = random_config(1010, "v2-small", acquisition={**HEART_ONLY, "motion_scale": 0.8})
    fast = generate(cfg)
    monkeypatch.setattr(raster_mod, "PAINT_SLAB_VOXELS", 1 << 40)  # one slab per solid: the whole box at once
    whole = generate(cfg)
    assert np.array_equal(fast.ct.array, whole.ct.array) and np.array_equal(fast.heart.array, whole.heart.array)
    assert np.array_equal(fast.labels.array, whole.labels.array)
    assert {ARTERY_ID[a] for a in ARTERIES} <= set(np.unique(fast.labels.array))


def test_noise_texture_is_unchanged_by_the_slab_inverse(monkeypatch):
    """The noise pass and the inverse FFT in slabs: same image as one irfft2 over the whole volume."""
    cfg = random_config(1011, "v2-small", acquisition={**HEART_ONLY, "noise_hu": 40.0})
    fast = generate(cfg)

    def whole_irfft2(spec, shape_yx, workers=-1, overwrite=False, rows=None, hu_range=None, chunk=32):
        img = sfft.irfft2(spec, s=shape_yx, workers=workers).astype(F32) - F32(1000.0)
        img = img[:, rows] if rows is not None else img
        return np.clip(np.rint(img), *hu_range).astype(np.int16) if hu_range else img

    monkeypatch.setattr(sys.modules["cacpipe.phantom.v2.generate"], "to_image", whole_irfft2)
    plain = generate(cfg)
    assert np.array_equal(fast.ct.array, plain.ct.array)
    assert fast.truth["total"] == plain.truth["total"]
    assert 30.0 < fast.ct.array[:, :20, :20].std() < 55.0  # air: noise only


def test_small_pages_is_scoped_and_restores_numpys_setting():
    from cacpipe.phantom.v2.generate import small_pages

    setter = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
    if setter is None:
        pytest.skip("this numpy has no huge-page switch")
    orig = setter(True)
    try:
        with small_pages():
            with small_pages():  # nested (or concurrent) users: the setting comes back once, at the end
                pass
            assert setter(False) is False  # still off inside
        assert setter(True) is True  # restored on exit
    finally:
        setter(orig)
