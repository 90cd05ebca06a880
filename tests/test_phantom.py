"""The phantom is the ground truth everything else is tested against: test it hard."""

from __future__ import annotations

import json
import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom import PhantomConfig, Plaque, agatston_reference, generate, ground_truth
from cacpipe.volume import Volume


def _sphere_volume_bound(r: float, spacing) -> float:
    """Voxelising a sphere by voxel centres errs by at most the shell of half a voxel diagonal."""
    h = 0.5 * math.sqrt(sum(s * s for s in spacing))
    return 4 / 3 * math.pi * ((r + h) ** 3 - r**3)


@pytest.mark.parametrize("preset", ["small", "full"])
def test_plaque_volumes_match_analytic_spheres(preset):
    ph = generate(PhantomConfig.preset(preset, noise_hu=0))
    gt = ground_truth(ph)
    for p in ph.config.plaques:
        assert p.artery in ARTERIES
    for artery, v in gt["arteries"].items():
        plaques = [p for p in ph.config.plaques if p.artery == artery]
        bound = sum(_sphere_volume_bound(p.radius_mm, ph.ct.spacing_zyx) for p in plaques)
        assert v["calcium_volume_mm3"] > 0
        assert abs(v["calcium_volume_mm3"] - v["analytic_volume_mm3"]) <= bound
        assert v["lesions"] == len(plaques)


def test_labels_are_exact_and_calcium_is_bright_in_clean_image(small_phantom):
    lab, hu = small_phantom.labels.array, small_phantom.ct_clean.array
    for artery in ARTERIES:
        calc = lab == CALCIUM_ID[artery]
        plaques = [p for p in small_phantom.config.plaques if p.artery == artery]
        assert set(np.unique(hu[calc])) <= {int(p.hu) for p in plaques}
        assert (lab == ARTERY_ID[artery]).sum() > 100
    # no voxel outside the coronary labels is labelled; calcium distractors exist but are background
    assert ((hu >= 500) & (lab == 0)).sum() > 50  # valve/annulus calcium and bone


def test_agatston_truth_by_hand_for_one_plaque():
    ph = generate(PhantomConfig.preset("small", noise_hu=0, plaques=(Plaque("RCA", 0.3, 2.5, 350.0),)))
    gt = ground_truth(ph)
    m = ph.labels.array == CALCIUM_ID["RCA"]
    dz, dy, dx = ph.ct.spacing_zyx
    expected = m.sum() * dy * dx * 3 * dz / 3  # weight 3 for 350 HU; every slice's area >= 1 mm2
    assert gt["arteries"]["RCA"]["agatston"] == pytest.approx(expected)
    assert gt["arteries"]["LAD"]["agatston"] == 0
    assert gt["total"]["agatston"] == pytest.approx(expected)


def test_agatston_reference_min_area_and_weights():
    hu = np.zeros((2, 10, 10), np.int16)
    mask = np.ones_like(hu, bool)
    hu[0, 1:3, 1:3] = 150  # 4 px x 0.25 mm2 = 1 mm2 -> counts, weight 1
    hu[0, 6, 6] = 500  # 0.25 mm2 -> below the 1 mm2 minimum
    hu[1, 5:9, 5:9] = 410  # 16 px * 0.25 = 4 mm2, weight 4
    score = agatston_reference(hu, mask, (3.0, 0.5, 0.5))
    assert score == pytest.approx(1.0 * 1 + 4.0 * 4)
    assert agatston_reference(hu, mask, (1.5, 0.5, 0.5)) == pytest.approx(score / 2)


def test_deterministic_and_seed_changes_noise_only():
    cfg = PhantomConfig.preset("small")
    a, b = generate(cfg), generate(cfg)
    assert np.array_equal(a.ct.array, b.ct.array)
    c = generate(PhantomConfig.preset("small", seed=1))
    assert not np.array_equal(a.ct.array, c.ct.array)
    assert np.array_equal(a.labels.array, c.labels.array)
    assert np.array_equal(a.ct_clean.array, c.ct_clean.array)


def test_contrast_raises_blood_pool_and_low_dose_raises_noise():
    plain = generate(PhantomConfig.preset("small", noise_hu=0))
    con = generate(PhantomConfig.preset("small", noise_hu=0, contrast=True))
    lab = plain.labels.array
    artery = lab == ARTERY_ID["LAD"]
    assert plain.ct.array[artery].mean() < 100 < con.ct.array[artery].mean()
    low = generate(PhantomConfig.preset("small", noise_hu=60))
    lung = (plain.ct.array == -850)
    assert 50 < low.ct.array[lung].std() < 70


def test_dicom_study_rereads_equal_to_nifti(small_phantom_dir):
    truth = json.loads((small_phantom_dir / "truth.json").read_text())
    ct = Volume.read(small_phantom_dir / "ct.nii.gz")
    axial = truth["dicom"]["series"]["axial"]
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(axial["dir"])
    assert len(files) == 100
    reader.SetFileNames(files)
    img = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(img), ct.array)
    assert np.allclose(img.GetSpacing(), (1.5625, 1.5625, 2.0))
    assert np.allclose(img.GetOrigin(), ct.origin_xyz, atol=1e-3)
    ds = pydicom.dcmread(files[0])
    assert ds.PatientID == "PHANTOM0001" and ds.Modality == "CT"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert float(ds.RescaleIntercept) == -1024
    loc = pydicom.dcmread(next((small_phantom_dir / truth["dicom"]["series"]["localizer"]["dir"]).glob("*.dcm")))
    assert "LOCALIZER" in loc.ImageType and loc.StudyInstanceUID == ds.StudyInstanceUID


def test_cli_writes_contrast_and_thin_series(tmp_path):
    res = CliRunner().invoke(cli, ["phantom", str(tmp_path / "p"), "--preset", "small", "--contrast-series",
                                   "--thin-series", "--plaque", "LCX:0.5:2:500", "--seed", "3"])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    s = truth["dicom"]["series"]
    assert s["thin"]["files"] == 199 and s["contrast"]["files"] == 100
    con = pydicom.dcmread(next((tmp_path / "p" / s["contrast"]["dir"]).glob("*.dcm")), stop_before_pixels=True)
    assert con.ContrastBolusAgent
    assert truth["arteries"]["LCX"]["lesions"] == 1 and truth["arteries"]["RCA"]["lesions"] == 0


def test_cli_rejects_bad_plaque_with_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["phantom", str(tmp_path / "p"), "--plaque", "LAD:0.3:1.5:90"])
    assert res.exit_code == 2
    assert "HU must be >= 130" in res.output
