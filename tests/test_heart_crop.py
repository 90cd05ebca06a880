"""Resampling, crop record, apply_crop and uncrop_labels on the small phantom."""

import json

import numpy as np
import pytest

from cacpipe.errors import GeometryError, InputDataError
from cacpipe.heart import CropRecord, apply_crop, make_record, resample_to_spacing, uncrop_labels
from cacpipe.volume import Volume


def _rotated(vol: Volume) -> Volume:
    """Same voxels with a non-identity direction (rotated 90 degrees about z) and shifted origin."""
    return Volume(vol.array, vol.spacing_zyx, (12.5, -7.0, 3.0), (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


@pytest.mark.parametrize("rotate", [False, True])
def test_crop_then_uncrop_is_lossless_and_on_the_ct_grid(small_phantom, rotate):
    ct, lab, heart = small_phantom.ct, small_phantom.labels, small_phantom.heart
    if rotate:
        ct, lab, heart = _rotated(ct), _rotated(lab), _rotated(heart)
    # Paper padding plus a 5 mm margin: the PDA runs just below the heart's inferior surface.
    rec = make_record(ct, heart, (0.8, 0.73, 0.73), (0, 10, 10), extra_margin_mm=5.0)
    cropped = apply_crop(lab, rec, is_label=True)
    assert cropped.shape == rec.cropped_shape_zyx and cropped.array.dtype == lab.array.dtype
    np.testing.assert_allclose(cropped.spacing_zyx, (0.8, 0.73, 0.73))
    back = uncrop_labels(cropped, rec)
    assert back.shape == ct.shape and back.spacing_zyx == ct.spacing_zyx
    assert back.origin_xyz == ct.origin_xyz and back.direction == ct.direction
    np.testing.assert_array_equal(back.array, lab.array)  # every label voxel lies in the crop


def test_cropped_grid_sits_where_the_ct_was(small_phantom):
    ct = small_phantom.ct
    rec = make_record(ct, small_phantom.heart, (0.8, 0.73, 0.73), (0, 10, 10))
    cct = apply_crop(ct, rec, is_label=False)
    assert cct.array.dtype == np.float32
    # The same physical point has (nearly) the same HU on both grids: linear interpolation of
    # a noisy image, so compare the cropped voxel nearest to a CT voxel centre.
    src = np.array([[50, 128, 140]])
    p = ct.index_to_physical(src)[0]
    d = np.asarray(cct.direction).reshape(3, 3)
    idx_xyz = np.linalg.solve(d, p - np.asarray(cct.origin_xyz)) / np.asarray(cct.spacing_zyx[::-1])
    k = tuple(int(round(v)) for v in idx_xyz[::-1])
    assert abs(float(cct.array[k]) - float(ct.array[tuple(src[0])])) < 60


def test_padding_and_box_follow_the_mask(small_phantom):
    ct, heart = small_phantom.ct, small_phantom.heart
    rec0 = make_record(ct, heart, ct.spacing_zyx, (0, 0, 0))
    nz = np.nonzero(heart.array)
    assert rec0.bbox_lo_zyx == tuple(int(a.min()) for a in nz)
    assert rec0.bbox_hi_zyx == tuple(int(a.max()) + 1 for a in nz)
    rec = make_record(ct, heart, ct.spacing_zyx, (1, 3, 5))
    assert np.subtract(rec0.bbox_lo_zyx, rec.bbox_lo_zyx).tolist() == [1, 3, 5]
    assert np.subtract(rec.bbox_hi_zyx, rec0.bbox_hi_zyx).tolist() == [1, 3, 5]
    # Same spacing: cropping is plain slicing.
    sl = tuple(slice(a, b) for a, b in zip(rec.bbox_lo_zyx, rec.bbox_hi_zyx, strict=True))
    np.testing.assert_array_equal(apply_crop(small_phantom.labels, rec, True).array, small_phantom.labels.array[sl])
    # An empty mask keeps the whole (resampled) scan.
    empty = ct.with_array(np.zeros(ct.shape, np.uint8))
    rec_e = make_record(ct, empty, (0.8, 0.73, 0.73), (0, 10, 10))
    assert rec_e.bbox_lo_zyx == (0, 0, 0) and rec_e.bbox_hi_zyx == rec_e.resampled_shape_zyx


def test_record_json_roundtrip_and_errors(small_phantom, tmp_path):
    ct = small_phantom.ct
    rec = make_record(ct, small_phantom.heart, (0.8, 0.73, 0.73), (0, 10, 10), method="fallback")
    d = rec.to_json()
    for key in ("original_shape_zyx", "original_spacing_zyx", "origin_xyz", "direction", "bbox_lo_zyx",
                "bbox_hi_zyx", "cropped_shape_zyx"):
        assert key in d
    p = rec.save(tmp_path / "crop.json")
    assert CropRecord.load(p) == rec
    assert json.loads(p.read_text())["schema"] == "cacpipe.crop/1"
    with pytest.raises(InputDataError):
        CropRecord.from_json({"schema": "other"})
    with pytest.raises(InputDataError):
        CropRecord.load(tmp_path / "missing.json")
    with pytest.raises(GeometryError):  # wrong grid
        apply_crop(Volume(ct.array[:-1], ct.spacing_zyx), rec, is_label=False)
    with pytest.raises(GeometryError):  # wrong cropped shape
        uncrop_labels(Volume(np.zeros((3, 3, 3), np.uint8), (1, 1, 1)), rec)


def test_resample_to_spacing_keeps_extent(small_phantom):
    r = resample_to_spacing(small_phantom.heart, (1.0, 0.78125, 0.78125), is_label=True)
    assert r.shape == (200, 512, 512) and r.origin_xyz == small_phantom.heart.origin_xyz
    vol_ratio = r.array.sum() * r.voxel_volume_mm3 / (small_phantom.heart.array.sum() * small_phantom.heart.voxel_volume_mm3)
    assert abs(vol_ratio - 1) < 0.02


@pytest.mark.parametrize("direction", [(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
                                       (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
                                       (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)])
def test_physical_to_index_inverts_index_to_physical(direction):
    """Volume.physical_to_index (used by the progression's prior look and the review's prior pane)
    gives back the voxel indices index_to_physical started from, on grids of three orientations."""
    ct = Volume(np.zeros((10, 20, 30), np.int16), (2.5, 0.7, 0.8), (-100.0, 50.0, 12.0), direction=direction)
    idx = np.array([[0.0, 0.0, 0.0], [3.5, 17.25, 2.0], [9.0, 19.0, 29.0]])
    xyz = ct.index_to_physical(idx)
    assert not np.allclose(xyz, idx)
    assert np.allclose(ct.physical_to_index(xyz), idx, atol=1e-9)
    assert np.allclose(ct.physical_to_index(xyz[1]), idx[1:2], atol=1e-9)  # one point: shape (1, 3)
