"""Weights-free heart locator, stage 1 glue and QC flags on phantoms with known anatomy."""

import json

import numpy as np
import pytest

from cacpipe import flags as F
from cacpipe.config import HeartMethod, HeartSettings, Settings
from cacpipe.errors import ConfigError, ModelNotInstalledError
from cacpipe.heart import apply_crop, detect_contrast, heart_crop, uncrop_labels
from cacpipe.heart.fallback import locate_heart
from cacpipe.heart.qc import check_heart_mask
from cacpipe.labels import CALCIUM_ID
from cacpipe.phantom import PhantomConfig, generate
from cacpipe.volume import Volume

NO_WEIGHTS = HeartSettings(totalseg_home="/nonexistent-cacpipe-test-totalseg")  # auto -> fallback


def _codes(res):
    return [f.code for f in res.flags]


def _assert_crop_holds_truth(ph, res):
    """Every coronary and calcium voxel of the truth survives crop -> uncrop unchanged."""
    lab = ph.labels
    back = uncrop_labels(apply_crop(lab, res.record, is_label=True), res.record)
    assert back.same_grid(lab)
    np.testing.assert_array_equal(back.array, lab.array)
    cal = np.isin(lab.array, list(CALCIUM_ID.values()))
    assert cal.sum() > 0 and (back.array[cal] == lab.array[cal]).all()


def test_fallback_finds_the_heart_and_carina(small_phantom):
    r = locate_heart(small_phantom.ct)
    m, h = r.mask.array > 0, small_phantom.heart.array > 0
    assert r.mask.same_grid(small_phantom.ct) and r.mask.array.dtype == np.uint8
    dice = 2 * (m & h).sum() / (m.sum() + h.sum())
    assert dice > 0.85, dice
    assert abs(r.carina_z_mm - 25.0) <= 6.0  # the phantom's carina is at z = +25 mm
    assert not r.warnings


def test_auto_without_weights_uses_fallback_and_keeps_every_coronary_voxel(small_phantom):
    res = heart_crop(small_phantom.ct, NO_WEIGHTS)
    assert res.method == "fallback" and res.record.method == "fallback"
    assert F.FALLBACK_HEART_LOCATOR in _codes(res)
    assert any("fallback" in w for w in res.warnings)
    assert F.CONTRAST_SUSPECTED not in _codes(res) and F.HEART_EMPTY not in _codes(res)
    assert res.heart_mask.same_grid(small_phantom.ct)
    np.testing.assert_allclose(res.cropped_ct.spacing_zyx, (0.8, 0.73, 0.73))
    assert res.cropped_ct.shape == res.record.cropped_shape_zyx
    # The crop is much smaller than the resampled scan but holds all coronary truth, incl. the ostia.
    assert np.prod(res.record.cropped_shape_zyx) < 0.25 * np.prod(res.record.resampled_shape_zyx)
    _assert_crop_holds_truth(small_phantom, res)
    for artery, line in small_phantom.centrelines.items():
        ostium = line[0]  # at the aortic root
        lo = np.asarray(res.record.cropped_origin_xyz)
        hi = lo + (np.asarray(res.record.cropped_shape_zyx[::-1]) - 1) * np.asarray(res.record.target_spacing_zyx[::-1])
        assert (ostium >= lo).all() and (ostium <= hi).all(), artery


@pytest.mark.parametrize("overrides", [
    {"heart_shift_mm": (12.0, -8.0, 14.0), "seed": 3, "noise_hu": 45.0},
    {"heart_shift_mm": (-10.0, 6.0, -12.0), "seed": 4},
])
def test_fallback_follows_other_anatomy(overrides):
    ph = generate(PhantomConfig.preset("small", **overrides))
    res = heart_crop(ph.ct, HeartSettings(method=HeartMethod.FALLBACK))
    assert res.method == "fallback" and F.FALLBACK_HEART_LOCATOR in _codes(res)
    _assert_crop_holds_truth(ph, res)


def test_contrast_is_flagged_invalid():
    ph = generate(PhantomConfig.preset("small", contrast=True))
    res = heart_crop(ph.ct, HeartSettings(method=HeartMethod.FALLBACK))
    flag = next(f for f in res.flags if f.code == F.CONTRAST_SUSPECTED)
    assert flag.severity == "invalid" and res.info["blood_pool_hu"] > 250
    assert detect_contrast(ph.ct, ph.heart).code == F.CONTRAST_SUSPECTED
    assert detect_contrast(ph.ct, None).code == F.CONTRAST_SUSPECTED


def test_no_contrast_on_plain_scan(small_phantom):
    assert detect_contrast(small_phantom.ct, small_phantom.heart) is None


def test_qc_flags_without_crashing(small_phantom):
    ct = small_phantom.ct
    # Fewer slices than required, heart cut at the top of the scan.
    cut = Volume(ct.array[:50], ct.spacing_zyx, ct.origin_xyz)
    res = heart_crop(cut, HeartSettings(method=HeartMethod.FALLBACK), min_slices=100)
    assert F.FEW_SLICES in _codes(res)
    assert F.HEART_AT_EDGE in _codes(res) or F.HEART_EMPTY in _codes(res)
    # No body at all: empty mask is a named, invalid flag and the whole scan is kept.
    air = Volume(np.full((20, 40, 40), -1000, np.int16), (2.0, 2.0, 2.0))
    res = heart_crop(air, HeartSettings(method=HeartMethod.FALLBACK), min_slices=10)
    assert F.HEART_EMPTY in _codes(res) and res.heart_mask.array.sum() == 0
    assert res.record.bbox_hi_zyx == res.record.resampled_shape_zyx
    assert next(f for f in res.flags if f.code == F.HEART_EMPTY).severity == "invalid"
    # Implausible sizes.
    tiny = ct.with_array(np.zeros(ct.shape, np.uint8))
    tiny.array[50, 128, 128] = 1
    assert [f.code for f in check_heart_mask(tiny)] == [F.HEART_TOO_SMALL]
    huge = ct.with_array(np.ones(ct.shape, np.uint8))
    codes = [f.code for f in check_heart_mask(huge)]
    assert F.HEART_TOO_LARGE in codes and F.HEART_AT_EDGE in codes


def test_explicit_totalsegmentator_without_weights_names_models_and_steps(small_phantom, tmp_path):
    with pytest.raises(ModelNotInstalledError) as exc:
        heart_crop(small_phantom.ct, HeartSettings(method=HeartMethod.TOTALSEGMENTATOR, totalseg_home=str(tmp_path)))
    msg = str(exc.value)
    for s in ("Dataset298", "Dataset293", "totalseg_import_weights", str(tmp_path / "nnunet" / "results")):
        assert s in msg
    with pytest.raises(ModelNotInstalledError, match="Dataset297"):
        heart_crop(small_phantom.ct, HeartSettings(method=HeartMethod.TOTALSEGMENTATOR, fast=True, totalseg_home=str(tmp_path)))
    assert not (tmp_path / "nnunet").exists()  # nothing was created or downloaded


def test_config_is_validated():
    for bad in ({"heart": {"method": "magic"}}, {"device": "tpu"}, {"heart": {"padding_voxels_zyx": [-1, 0, 0]}},
                {"heart": {"margin_mm": -1}}, {"heart": {"padding_voxels_zyx": [1, 2]}}, {"heart": {"fast": "yes"}}):
        with pytest.raises(ConfigError):
            Settings().merged(bad)


def test_cli_heart_writes_mask_crop_and_record(small_phantom, tmp_path):
    from click.testing import CliRunner

    from cacpipe.cli import cli
    from cacpipe.heart import CropRecord

    ct_path = small_phantom.ct.write(tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["heart", str(ct_path), str(out), "--method", "fallback", "--padding", "2", "10", "10"])
    assert r.exit_code == 0, r.output
    assert "fallback_heart_locator" in r.output
    rec = CropRecord.load(out / "crop.json")
    assert rec.padding_voxels_zyx == (2, 10, 10)
    cropped = Volume.read(out / "ct_cropped.nii.gz")
    assert cropped.shape == rec.cropped_shape_zyx
    np.testing.assert_allclose(cropped.origin_xyz, rec.cropped_origin_xyz, atol=1e-3)
    assert Volume.read(out / "heart_mask.nii.gz").same_grid(small_phantom.ct)
    summary = json.loads((out / "stage1.json").read_text())
    assert summary["method"] == "fallback" and summary["flags"][0]["code"] == F.FALLBACK_HEART_LOCATOR
    r = CliRunner().invoke(cli, ["heart", "--status", "--totalseg-home", str(tmp_path / "ts")])
    assert r.exit_code == 0 and "NOT installed" in r.output and "totalseg_import_weights" in r.output
    r = CliRunner().invoke(cli, ["heart", str(ct_path), str(out), "--method", "totalsegmentator",
                                 "--totalseg-home", str(tmp_path / "ts")])
    assert r.exit_code != 0 and "Dataset298" in r.output
