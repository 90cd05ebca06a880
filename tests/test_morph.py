"""cacpipe.morph.erode_ball is scipy's ball erosion, voxel for voxel (the quality flags' noise SD uses it)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cacpipe.morph import erode_ball
from cacpipe.quant.quality import _ball_structure


@pytest.mark.parametrize("spacing", [(0.625, 0.7421875, 0.7421875), (3.0, 0.78, 0.78), (1.0, 1.0, 1.0), (2.5, 0.5, 0.9)])
@pytest.mark.parametrize("radius", [5.0, 2.0, 3.0])
def test_erode_ball_equals_binary_erosion_with_a_ball(spacing, radius):
    rng = np.random.default_rng(int(radius * 10 + spacing[0] * 100))
    shape = (40, 44, 38)
    zz, yy, xx = np.indices(shape)
    blob = ((zz - 20) * spacing[0]) ** 2 / 400 + ((yy - 20) * spacing[1]) ** 2 / 150 + ((xx - 18) * spacing[2]) ** 2 / 100 < 1
    noisy = blob ^ (rng.random(shape) < 0.03)  # holes and specks
    noisy[:, :3, :] = True  # touches the array's edge: the outside counts as background
    for mask in (blob, noisy):
        want = ndimage.binary_erosion(mask, structure=_ball_structure(radius, spacing))
        got = erode_ball(mask, radius, spacing)
        assert want.any() or mask is noisy
        assert np.array_equal(got, want)


def test_label_objects_is_find_objects(small_phantom):
    """cacpipe.morph.label_objects (find_objects inside the labels' box) gives scipy's boxes for every
    class of a phantom's six-class map, for a map with classes missing, and for an empty one."""
    from cacpipe.morph import label_objects

    lab = np.asarray(small_phantom.labels.array)
    assert lab.any()
    no_rca = np.where(np.isin(lab, (1, 4)), 0, lab).astype(lab.dtype)
    corner = np.zeros_like(lab)
    corner[-1, -1, -1] = 6  # a label at the array's far corner
    for m in (lab, no_rca, corner, np.zeros_like(lab)):
        assert label_objects(m, max_label=6) == ndimage.find_objects(m, max_label=6)


def test_heart_centroid_from_projections_is_the_voxel_list_mean(small_phantom):
    """post-processing's heart centroid (index sums from projections) is what it was: the mean of
    np.argwhere over the mask's box, plus the box's start, bit for bit."""
    from cacpipe.segment.postprocess import _centroid

    heart = np.asarray(small_phantom.heart.array)
    rng = np.random.default_rng(7)
    for m in (heart, heart * (rng.random(heart.shape) < 0.3), np.zeros_like(heart)):
        got = _centroid(m)
        if not m.any():
            assert got is None
            continue
        sl = ndimage.find_objects((m > 0).view(np.uint8) if m.dtype == bool else (m > 0).astype(np.uint8))[0]
        assert np.array_equal(got, np.argwhere(m[sl] > 0).mean(axis=0) + [s.start for s in sl])
