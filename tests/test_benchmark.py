"""cacpipe benchmark: public-dataset layouts written exactly as distributed, from phantom truth.

annotation -> label map -> score must give the phantom's truth; a wrong layout exits 2 with one
line; the command end to end (with the phantom's own labels standing in for the model) reports
per-artery figures equal to the truth.
"""

from __future__ import annotations

import json
import plistlib
import shutil

import numpy as np
import pytest
from benchmark_writers import (
    cardiac_phantom,
    pixel_outline,
    write_coca_gated,
    write_coca_nongated,
    write_orcascore,
)
from click.testing import CliRunner

from cacpipe.benchmark import DatasetLayoutError, find_cases
from cacpipe.benchmark.coca_xml import read_rois
from cacpipe.benchmark.convert import convert_case
from cacpipe.benchmark.scores import read_scores
from cacpipe.cli import cli
from cacpipe.config import Settings
from cacpipe.labels import ARTERIES, CALCIUM_IDS
from cacpipe.volume import Volume

SETTINGS = Settings().merged({"selection": {"min_slices": 20}})
# DICOM stores PixelSpacing as a decimal string (6 significant digits here): through DICOM the
# areas, volumes and scores match the truth to that precision; through MetaImage, to the bit.
DICOM_REL = 1e-5


# Test seeds of the v2-cardiac preset (128 x 128): two with calcium (1705, 1707) and one without (1700).
SEEDS = {"1": 1705, "2": 1707, "3": 1700}


@pytest.fixture(scope="module")
def phantoms():
    """Two calcified cardiac-FOV phantoms (test seeds) and one without calcium."""
    out = {k: cardiac_phantom(s) for k, s in SEEDS.items()}
    assert out["1"].truth["total"]["agatston"] > 0 and out["2"].truth["total"]["agatston"] > 0
    assert out["3"].truth["total"]["calcium_volume_mm3"] == 0
    return out


def _calcium(ph) -> np.ndarray:
    lab = ph.labels.array
    return np.where(np.isin(lab, CALCIUM_IDS), lab, 0)


def _check_truth(rec: dict, ph, rel: float) -> None:
    assert rec["status"] == "done", rec["reason"]
    for a in ARTERIES:
        got, want = rec["reference"]["arteries"][a], ph.truth["arteries"][a]
        assert got["agatston"] == pytest.approx(want["agatston"], rel=rel, abs=1e-9)
        assert got["calcium_volume_mm3"] == pytest.approx(want["calcium_volume_mm3"], rel=rel, abs=1e-9)
    assert rec["row"]["category"] == ph.truth["total"]["category"]


def test_pixel_outline_fills_back_exactly():
    rng = np.random.default_rng(3)
    from scipy import ndimage
    from skimage.draw import polygon

    for _ in range(30):
        m = ndimage.binary_fill_holes(rng.random((12, 12)) > 0.45)
        lab, n = ndimage.label(m)
        for i in range(1, n + 1):
            comp = ndimage.binary_fill_holes(lab == i)
            xy = pixel_outline(comp)
            back = np.zeros_like(comp)
            rr, cc = polygon(xy[:, 1], xy[:, 0], shape=comp.shape)
            back[rr, cc] = True
            assert np.array_equal(back, comp)


def test_coca_gated_contours_reproduce_truth(tmp_path, phantoms):
    write_coca_gated(tmp_path / "coca", phantoms, no_xml=("3",))
    cases, _ = find_cases("coca", tmp_path / "coca", "gated")
    assert [c.case_id for c in cases] == ["1", "2", "3"]
    assert cases[2].annotation is None
    names = {r.name for c in cases[:2] for r in read_rois(c.annotation)}
    assert "Left Coronary Artery" in names or not any(phantoms[k].truth["arteries"]["LAD"]["lesions"] for k in "12")
    for c in cases:
        rec = convert_case(c, tmp_path / "out", SETTINGS)
        _check_truth(rec, phantoms[c.case_id], DICOM_REL)
        lab = Volume.read(tmp_path / "out" / rec["labels"]).array
        assert np.array_equal(lab, _calcium(phantoms[c.case_id]))  # every contour on its slice, every voxel
        if c.annotation is not None:
            conv = rec["conversion"]
            assert conv["unplaced"] == [] and conv["overlap_voxels"] == 0
            assert set(conv["image_index_vs_slice"]) == {"instance order"}
    # resumable: an unchanged case is not converted again
    again = convert_case(cases[0], tmp_path / "out", SETTINGS)
    assert again["source_fingerprint"] == rec["source_fingerprint"] or again["case"] == "1"


def test_orcascore_reference_reproduces_truth(tmp_path, phantoms):
    write_orcascore(tmp_path / "orca", {f"TRV1P{k}": v for k, v in phantoms.items()})
    cases, notes = find_cases("orcascore", tmp_path / "orca")
    assert [c.case_id for c in cases] == ["TRV1P1", "TRV1P2", "TRV1P3"] and notes == []
    for c in cases:
        rec = convert_case(c, tmp_path / "out", SETTINGS)
        ph = phantoms[c.case_id[-1]]
        _check_truth(rec, ph, 0.0)
        assert np.array_equal(Volume.read(tmp_path / "out" / rec["labels"]).array, _calcium(ph))


def test_coca_nongated_scores(tmp_path, phantoms):
    write_coca_nongated(tmp_path / "ng", {"7": phantoms["1"], "8": phantoms["3"]})
    scores = read_scores(tmp_path / "ng" / "deidentified_nongated" / "scores.xlsx")
    assert set(scores) == {"7", "8"}
    assert scores["7"]["total"] == pytest.approx(phantoms["1"].truth["total"]["agatston"])
    cases, _ = find_cases("coca", tmp_path / "ng", "nongated")
    rec = convert_case(cases[0], tmp_path / "out", SETTINGS)
    assert rec["status"] == "done" and "labels" not in rec
    row = rec["row"]
    assert row["total_agatston"] == pytest.approx(phantoms["1"].truth["total"]["agatston"])
    for a in ARTERIES:
        assert row[f"{a}_agatston"] == pytest.approx(phantoms["1"].truth["arteries"][a]["agatston"])


def _bad_layouts(tmp_path, phantoms):
    good = tmp_path / "good"
    write_coca_gated(good, {"1": phantoms["1"]})
    yield "coca", tmp_path / "nothing_here", "dataset folder not found"
    empty = tmp_path / "empty"
    empty.mkdir()
    yield "coca", empty, "no Gated_release_final/ folder"
    no_xml_dir = tmp_path / "noxml"
    shutil.copytree(good, no_xml_dir)
    shutil.rmtree(no_xml_dir / "Gated_release_final" / "calcium_xml")
    yield "coca", no_xml_dir, "missing folder calcium_xml/"
    stray = tmp_path / "stray"
    shutil.copytree(good, stray)
    with open(stray / "Gated_release_final" / "calcium_xml" / "99.xml", "wb") as f:
        plistlib.dump({"Images": []}, f)
    yield "coca", stray, "without a case folder"
    yield "orcascore", empty, "no 'Training Set/'"
    orca = tmp_path / "orca"
    write_orcascore(orca, {"TRV1P1": phantoms["1"]})
    (orca / "Training Set" / "Reference standard" / "TRV1P1R.mhd").unlink()
    yield "orcascore", orca, "missing TRV1P1R.mhd"


def test_wrong_layout_exits_2_with_one_line(tmp_path, phantoms):
    runner = CliRunner()
    for dataset, root, words in _bad_layouts(tmp_path, phantoms):
        with pytest.raises(DatasetLayoutError, match=words.replace("(", r"\(").replace(")", r"\)")):
            find_cases(dataset, root)
        res = runner.invoke(cli, ["benchmark", dataset, str(root), "-o", str(tmp_path / "o"), "--no-progress"])
        assert res.exit_code == 2, res.output
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert len(lines) == 1 and words in lines[0], res.output


def test_benchmark_end_to_end_equals_truth(tmp_path, phantoms, monkeypatch):
    """orCaScore layout, the phantom's own labels as the 'model': every per-artery figure is perfect."""
    oracle = tmp_path / "oracle"
    write_orcascore(tmp_path / "orca", {f"TRV1P{k}": v for k, v in phantoms.items()}, oracle=oracle)
    monkeypatch.setenv("CACPIPE_TEST_ORACLE", str(oracle))
    out = tmp_path / "bench"
    args = ["benchmark", "orcascore", str(tmp_path / "orca"), "-o", str(out), "--no-progress",
            "--analyse", "benchmark_writers:oracle_analyse"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "benchmark.json").read_text())
    m = {r["metric"]: r["value"] for r in doc["metrics"]}
    for a in ("RCA", "LAD", "LCX", "total"):
        if f"{a}_agatston_ba_bias" in m:
            assert m[f"{a}_agatston_ba_bias"] == pytest.approx(0.0, abs=1e-3)  # cohort.csv keeps 4 decimals
            assert m[f"{a}_volume_ba_bias"] == pytest.approx(0.0, abs=1e-3)
    assert m["total_agatston_icc"] == pytest.approx(1.0)
    assert m["category_exact_agreement"] == 1.0
    assert m["any_lesion_sensitivity"] == 1.0 and m["any_lesion_ppv"] == 1.0 and m["any_lesion_f1"] == 1.0
    assert m["any_presence_sensitivity"] == 1.0 and m["any_presence_specificity"] == 1.0
    assert any("phantom-oracle" in p for p in doc["provenance"])
    html = (out / "benchmark_report.html").read_text()
    assert "Which model and heart locator" in html and "phantom-oracle" in html
    assert (out / "reference" / "by_case" / "TRV1P1.json").exists()
    # resumable: a second run analyses nothing again
    res2 = CliRunner().invoke(cli, [*args, "--no-html"])
    assert res2.exit_code == 0, res2.output
    manifest = json.loads((out / "scan" / "manifest.json").read_text())
    assert len(manifest["studies"]) == 3
    assert "0 conversion(s) failed, 3 scanned" in res2.output


def test_cardiac_preset_and_fallback_locator():
    """v2-cardiac: 200-250 mm field of view centred on the heart, 2.5-3 mm slices, gated noise; the
    fallback locator finds the heart although the field of view cuts the lungs."""
    from cacpipe.heart.fallback import locate_heart
    from cacpipe.phantom.v2 import generate, random_config

    cfg = random_config(1701, "v2-cardiac", acquisition={"shape_yx": (256, 256)})
    acq = cfg.acquisition
    assert 200 <= acq.fov_mm <= 250 and acq.slice_spacing_mm in (2.5, 3.0) and acq.contrast_phase == "none"
    assert acq.noise_hu <= 40 and acq.motion_scale <= 0.1
    ph = generate(cfg)
    heart = ph.heart.array > 0
    zc, yc, xc = (np.mean(i) for i in np.nonzero(heart))
    assert abs(yc - 127.5) * ph.ct.spacing_zyx[1] < 25 and abs(xc - 127.5) * ph.ct.spacing_zyx[2] < 25
    res = locate_heart(ph.ct)
    assert res.info["fov_cuts_body"] and res.info["lung_volume_ml"] > 200
    m = res.mask.array > 0
    dice = 2 * (m & heart).sum() / (m.sum() + heart.sum())
    assert dice >= 0.85, dice
