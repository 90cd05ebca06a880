"""The pipeline's box path (issue 31) gives what the whole-grid path gives.

After the network, ``cacpipe.pipeline.finish_series`` uncrops onto the scan's slices up to the
heart box, post-processes there and quantifies in the 3D box of the labels and the heart. Here
the same phantom studies go through that path and through the whole-grid path it replaced
(uncrop onto the whole grid, refine, quantify and flag on the whole grid), with the real stage 1
(fallback locator) and, as the network's output, the phantom's true labels cropped exactly as
stage 2 sees the CT (a perfect network) with the RCA's calcium in the LAD's channel and half of the
LCX's calcium missed, so that attribution and completion have work to do. Same Agatston per artery, same lesions, same flags,
same post-processing record, same labels.nii.gz. The network's calcium probability goes through
both paths too (the box path resamples it onto the crop box's corner only).

The stage 1 steps that work on part of the grid (the fallback locator's 3 mm work copy made a slab
at a time, its mask resampled back up to the heart's far corner only) are compared with the whole-
grid computations they replaced on phantom CTs of several geometries, voxel for voxel.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from cacpipe.config import Settings
from cacpipe.flags import CONTRAST_SUSPECTED
from cacpipe.heart import heart_crop, uncrop_labels
from cacpipe.heart.crop import apply_crop
from cacpipe.ingest import LoadedSeries
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom.v2 import generate, random_config
from cacpipe.pipeline import Prepared, finish_series
from cacpipe.quant.quality import quality_flags
from cacpipe.quant.quantify import quantify
from cacpipe.record import StudyIdentity
from cacpipe.segment import find_model, refine
from cacpipe.segment.predict import SegmentResult
from cacpipe.volume import Volume

# Test seeds (cacpipe.phantom.seeds: 1000-1999) that draw calcium; thin slices (0.625 mm: every
# 32nd slice is a nearest-neighbour tie against the model's 0.8 mm) and the 3 mm classic.
STUDIES = {
    "thin": (1003, {"slice_thickness_mm": 0.625, "slice_spacing_mm": 0.625, "n_slices": 420}),
    "thick": (1003, {"slice_thickness_mm": 3.0, "slice_spacing_mm": 3.0, "n_slices": 100}),
}


def _prepared(seed: int, acq: dict, tmp_path) -> tuple[Prepared, Volume]:
    ph = generate(random_config(seed, "v2-small", acquisition={"contrast_phase": "none", **acq}))
    settings = Settings.from_dict({"heart": {"method": "fallback"}, "segment": {"allow_demo_model": True},
                                   "review": {"enabled": False, "ct_nifti": False}})
    model = find_model(None, None, allow_demo=True)
    st1 = heart_crop(ph.ct, settings.heart, target_spacing_zyx=model.spacing_zyx)
    lab = np.asarray(apply_crop(ph.labels, st1.record, is_label=True).array).copy()
    lab[lab == CALCIUM_ID["RCA"]] = CALCIUM_ID["LAD"]  # the wrong channel fired: attribution gives it back
    thin = (lab == CALCIUM_ID["LCX"]) & (np.arange(lab.shape[0]) % 2 == 1)[:, None, None]
    lab[thin] = ARTERY_ID["LCX"]  # half the calcium missed: completion grows it back
    # A calcium probability (a density-rule feature, uncropped onto the crop box's corner only):
    # high on the calcium labels, graded elsewhere, so that the rule's features differ voxel by voxel.
    rng = np.random.default_rng(seed)
    prob = np.where(np.isin(lab, list(CALCIUM_ID.values())), 0.9, 0.0).astype(np.float32)
    prob += rng.uniform(0.0, 0.3, lab.shape).astype(np.float32) * (lab > 0)
    seg = SegmentResult(labels=st1.cropped_ct.with_array(lab), agreement=None, device="cpu", folds=(0,),
                        mirroring=False, seconds=0.0, calcium_prob=st1.cropped_ct.with_array(prob))
    series = LoadedSeries(volume=ph.ct, identity=StudyIdentity(patient_id=f"BOX{seed}", study_uid=f"1.2.3.{seed}"))
    return Prepared(series, settings, model, st1, seg), ph.ct


def _whole_grid(prep: Prepared, ct: Volume):
    """The path finish_series took before issue 31: everything on the whole scan grid."""
    st1, seg = prep.st1, prep.seg
    labels = uncrop_labels(seg.labels, st1.record)
    prob = uncrop_labels(seg.calcium_prob, st1.record)
    contrast = any(f.code == CONTRAST_SUSPECTED for f in st1.flags)
    post = refine(ct, labels, heart=st1.heart_mask, complete=not contrast, calcium_prob=prob)
    numbers = quantify(ct, post.labels, assessed=post.assessed)
    flags = post.flags + quality_flags(ct, post.labels, heart=st1.heart_mask)
    return post, numbers, flags


@pytest.mark.parametrize("name", list(STUDIES))
def test_box_path_gives_the_whole_grid_results(name, tmp_path):
    seed, acq = STUDIES[name]
    prep, ct = _prepared(seed, acq, tmp_path)
    post, numbers, flags = _whole_grid(prep, ct)
    assert post.lesions and post.info["added_voxels"] > 0, "the study must exercise completion and attribution"
    assert post.info["density_rule"]["network_probability"] and post.info["density_rule"]["candidates"] > 0
    assert any(numbers.arteries[a].agatston for a in ARTERIES)

    result = finish_series(prep, tmp_path / "out")
    for a in ARTERIES:  # same numbers per artery, exactly (validity is decided later, from the flags)
        got, want = asdict(result.arteries[a]), asdict(numbers.arteries[a])
        got.pop("agatston_valid"), want.pop("agatston_valid")
        assert got == want, a
    assert [les.to_dict() for les in result.lesions] == [les.to_dict() for les in numbers.lesions]
    assert result.pipeline["postprocess"] == json.loads(json.dumps(post.to_dict())) or \
        result.pipeline["postprocess"] == post.to_dict()
    want = [f.to_dict() for f in flags]
    got = [f.to_dict() for f in result.flags]
    assert [f for f in got if f in want] == want  # every flag of the whole-grid path, in order, same words
    written = Volume.read(tmp_path / "out" / "labels.nii.gz")
    assert written.same_grid(ct) and np.array_equal(written.array, post.labels.array)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, -1)])
def test_stored_ct_nifti_reads_back_identically_on_the_labels_grid(direction, tmp_path):
    """ct.nii.gz as the pipeline writes it (gzip members, stored): same voxels and grid as SimpleITK's file."""
    from cacpipe.niftiout import CHUNK_BYTES, write_nifti_gz

    rng = np.random.default_rng(0)
    shape = (CHUNK_BYTES // (2 * 64 * 64) + 3, 64, 64)  # more than one gzip member
    ct = Volume(rng.integers(-1024, 3000, shape, dtype=np.int16), (0.625, 0.7421875, 0.7421875),
                (-190.3, -170.25, -312.5), direction)
    write_nifti_gz(ct, tmp_path / "ct.nii.gz", level=0)
    ct.with_array(np.zeros(shape, np.uint8)).write(tmp_path / "labels.nii.gz")
    back, labels = Volume.read(tmp_path / "ct.nii.gz"), Volume.read(tmp_path / "labels.nii.gz")
    assert np.array_equal(back.array, ct.array) and back.array.dtype == np.int16
    assert back.same_grid(labels, tol=1e-6)
    import nibabel as nib  # a second reader (Python's gzip) sees the same voxels

    assert np.array_equal(np.asarray(nib.load(tmp_path / "ct.nii.gz").dataobj).T, ct.array)


def test_page_lesion_map_of_a_capped_page_box_is_the_whole_scan_one(tmp_path):
    """A page box capped in z (html_max_slices) no longer makes the lesion map search the whole scan;
    it must still number every voxel as the whole-scan search did."""
    from cacpipe.config import ReviewSettings
    from cacpipe.quant.lesions import find_lesions
    from cacpipe.review.viewer_data import detail_box, lesion_map

    shape = (200, 64, 64)
    hu = np.full(shape, 40, np.int16)
    lab = np.zeros(shape, np.uint8)
    lab[20:180, 30:34, 30:34] = ARTERY_ID["LAD"]  # a long artery: the labels' box spans 160 slices
    for z0, (y0, x0) in ((30, (30, 30)), (100, (31, 31)), (170, (30, 31))):
        lab[z0:z0 + 4, y0:y0 + 3, x0:x0 + 3] = CALCIUM_ID["LAD"]
        hu[z0:z0 + 4, y0:y0 + 3, x0:x0 + 3] = 400
    ct = Volume(hu, (1.0, 0.7, 0.7))
    labels = ct.with_array(lab)
    lesions, whole = find_lesions(hu, lab, ct.spacing_zyx, with_map=True)
    options = ReviewSettings(html_max_slices=40)
    box = detail_box(labels, lesions, options)
    assert box[0].stop - box[0].start == 40  # capped: the labels do not fit
    got = lesion_map(ct, labels, lesions, box)
    assert np.array_equal(got, whole[box]) and got.any()


def _phantom_ct(direction, n_slices: int = 143) -> Volume:
    """A v2-small phantom CT (0.625 mm slices, a slice count no multiple of the 3 mm block) on ``direction``."""
    ph = generate(random_config(1003, "v2-small", acquisition={"contrast_phase": "none", "slice_thickness_mm": 0.625,
                                                               "slice_spacing_mm": 0.625, "n_slices": n_slices}))
    ct = ph.ct
    return Volume(np.asarray(ct.array), ct.spacing_zyx, ct.origin_xyz, direction)


DIRECTIONS = [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, -1), (1, 0, 0, 0, -1, 0, 0, 0, 1)]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fallback_work_copy_in_slabs_is_the_whole_scan_one(direction, monkeypatch):
    """The 3 mm work copy, block-averaged a slab at a time, equals BinShrink of the whole scan."""
    import SimpleITK as sitk

    from cacpipe.heart import fallback

    monkeypatch.setattr(fallback, "SHRINK_CHUNK_SLICES", 3)  # several slabs on a small scan
    ct = _phantom_ct(direction)
    factors = [max(1, int(round(fallback.WORK_SPACING_MM / s))) for s in ct.spacing_zyx[::-1]]
    whole = Volume.from_sitk(sitk.BinShrink(sitk.Cast(ct.to_sitk(), sitk.sitkFloat32), factors))
    got, _ = fallback._shrink(ct)
    assert ct.shape[0] % factors[2] and got.shape[0] > 3 * 3  # a partial last block, more than 3 slabs
    assert np.array_equal(got.array, whole.array)
    assert (got.spacing_zyx, got.origin_xyz, got.direction) == (whole.spacing_zyx, whole.origin_xyz, whole.direction)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fallback_mask_back_on_the_grid_is_the_whole_grid_resample(direction):
    """The locator's mask resampled up to the heart's far corner equals the whole-grid resample."""
    from cacpipe.heart import fallback
    from cacpipe.heart.resample import grid_of, resample_to_grid

    ct = _phantom_ct(direction)
    small, _ = fallback._shrink(ct)
    mask = locate_heart_small(small)
    assert mask.any()
    small_mask = small.with_array(mask.astype(np.uint8))
    got = fallback._mask_to_grid(small_mask, ct)
    want = resample_to_grid(small_mask, grid_of(ct), is_label=True, default=0)
    assert got.same_grid(ct) and got.array.dtype == np.uint8
    assert np.array_equal(got.array, want.array) and got.array.any()


def locate_heart_small(small: Volume) -> np.ndarray:
    """A heart-sized blob on the work grid (the locator's own output on these phantoms is checked in
    tests/test_heart_fallback.py): soft tissue near the work grid's centre, off-centre on purpose."""
    a = np.asarray(small.array)
    zz, yy, xx = np.indices(a.shape)
    c = np.array(a.shape) * np.array([0.45, 0.55, 0.6])
    r = np.array(a.shape) * 0.22
    return (((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1.0) & (a > -200)
