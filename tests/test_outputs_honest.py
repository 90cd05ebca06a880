"""Outputs that cannot be mistaken (issue 16): provenance in every output, honest SR, PACS slice
references, drawn calcium = counted calcium, salted anonymised ids, one file-permission policy.

End-to-end checks on a real scan with the demo model are in test_pipeline.py; these use the
phantom's own labels (no model) and the real review, DICOM, and settings code.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from test_review_common import axial_datasets, result_from_truth

from cacpipe import __version__
from cacpipe.config import ReviewSettings, Settings
from cacpipe.flags import Flag
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_COLOUR, CALCIUM_ID
from cacpipe.quant.quantify import quantify
from cacpipe.quant.severity import SeverityModel
from cacpipe.quant.validity import finalise
from cacpipe.record import (
    COHORT_COLUMNS,
    DEMO_MODEL_STATEMENT,
    FALLBACK_HEART_STATEMENT,
    RESEARCH_USE,
    SEVERITY_UNFITTED_STATEMENT,
    StudyResult,
    cohort_row,
)
from cacpipe.review import build_review
from cacpipe.review.overlays import (
    STATEMENT_BG,
    STATEMENT_FONT_SIZE,
    STATEMENT_TEXT,
    crop_box,
    statement_banner,
    statement_lines,
)
from cacpipe.volume import Volume

DCIODVFY = "/usr/bin/dciodvfy"
DEMO_PIPELINE = {"version": __version__, "heart_method": "fallback",
                 "model": {"name": "Dataset990_cacpipe_phantom_demo/nnUNetTrainer__nnUNetPlans__3d_fullres",
                           "id": "e60903488e65", "is_demo": True},
                 "severity_model": {"source": "cacpipe/data/severity_default.json", "fitted_on_grades": False}}


# --- helpers other test modules use too ---------------------------------------------------------

def rendered_text(text: str, size: int = STATEMENT_FONT_SIZE, fg=STATEMENT_TEXT, bg=STATEMENT_BG) -> np.ndarray:
    """``text`` drawn with Pillow's default font on ``bg``, cropped to its ink: the pixels it must have
    wherever it is burned in (an independent rendering, not the code under test)."""
    f = ImageFont.load_default(size=size)
    img = Image.new("RGB", (int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=f)) + 20, size * 2),
                    bg)
    ImageDraw.Draw(img).text((4, 2), text, fill=fg, font=f)
    a = np.asarray(img)
    ys, xs = np.nonzero((a != np.array(bg, dtype=np.uint8)).any(axis=-1))
    return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def contains(img: np.ndarray, tpl: np.ndarray, rows: int = 140) -> bool:
    """True when ``tpl`` appears pixel for pixel in the top ``rows`` rows of ``img`` (RGB arrays)."""
    img = np.asarray(img)[..., :3]
    h, w = tpl.shape[:2]
    key = int(np.argmax((tpl != tpl[0, 0]).any(axis=-1).sum(axis=1)))  # the row with the most ink
    for y in range(min(rows, img.shape[0]) - h + 1):
        windows = np.lib.stride_tricks.sliding_window_view(img[y + key], (w, 3))[:, 0]
        for x in np.nonzero((windows == tpl[key]).all(axis=(1, 2)))[0]:
            if np.array_equal(img[y:y + h, x:x + w], tpl):
                return True
    return False


def statement_present(img: np.ndarray, result: StudyResult) -> bool:
    """Every statement of ``result`` is burned into ``img`` as the banner lays it out."""
    lines = statement_lines(result.provenance().statements(), img.shape[1])
    return all(contains(img, rendered_text(line)) for line in lines)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of dicom3tools' validator on one file."""
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_study(tmp_path_factory):
    """The small phantom's DICOM study and a demo-made result with PACS slice references."""
    from cacpipe.phantom import PatientInfo, PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    root = tmp_path_factory.mktemp("honest")
    _, truth = write_phantom(PhantomConfig.preset("small"), root / "ph", PatientInfo(patient_id="1234567"))
    ct, labels = Volume.read(root / "ph" / "ct.nii.gz"), Volume.read(root / "ph" / "labels.nii.gz")
    sources = axial_datasets(truth)
    result = result_from_truth(truth, "1234567", "PHANTOM^X", ct=ct, labels=labels)
    result.pipeline = dict(DEMO_PIPELINE)
    result.set_grid(ct, [int(ds.InstanceNumber) for ds in sources], [float(ds.SliceLocation) for ds in sources])
    return root, truth, ct, labels, sources, result


# --- provenance ----------------------------------------------------------------------------------

def test_provenance_states_what_applies_and_fills_the_cohort_columns(phantom_study):
    *_, result = phantom_study
    prov = result.provenance()
    assert prov.statements()[:4] == [RESEARCH_USE, DEMO_MODEL_STATEMENT, FALLBACK_HEART_STATEMENT,
                                     SEVERITY_UNFITTED_STATEMENT]
    assert "e60903488e65" in result.provenance_statement() and f"cacpipe {__version__}" in prov.line()
    row = cohort_row(result)
    assert list(row) == list(COHORT_COLUMNS)
    assert (row["model_is_demo"], row["heart_locator"], row["severity_model_fitted"], row["model_id"]) == \
        (True, "fallback", False, "e60903488e65")
    assert row["cacpipe_version"] == __version__ and DEMO_MODEL_STATEMENT in row["statement"]
    trained = StudyResult.from_json(result.to_json())
    trained.pipeline = {"version": __version__, "heart_method": "totalsegmentator",
                        "model": {"name": "Dataset101_CAC/T__P__3d_fullres", "id": "0123456789ab", "is_demo": False},
                        "severity_model": {"fitted_on_grades": True}}
    trained.flags = []
    assert trained.provenance().statements() == [RESEARCH_USE, "model Dataset101_CAC (id 0123456789ab), cacpipe "
                                                 + __version__]


def test_statement_is_burned_into_every_png_and_secondary_capture(phantom_study, tmp_path):
    root, _, ct, labels, sources, result = phantom_study
    out = build_review(tmp_path, ct, labels, result, sources, ReviewSettings())
    assert len(out["overlays"]) > 1
    for png, sc in zip(out["overlays"], out["sc"], strict=True):
        img = np.asarray(Image.open(tmp_path / png).convert("RGB"))
        assert statement_present(img, result), png
        assert statement_present(pydicom.dcmread(tmp_path / sc).pixel_array, result), sc
    # the check can fail: a trained model's statement is not in a demo image
    other = StudyResult.from_json(result.to_json())
    other.pipeline = {**DEMO_PIPELINE, "model": {"name": "Dataset101_CAC/x", "id": "0123456789ab", "is_demo": False}}
    other.flags = []
    assert not statement_present(np.asarray(Image.open(tmp_path / out["overlays"][0]).convert("RGB")), other)


def test_dicom_headers_name_model_version_and_run(phantom_study, tmp_path):
    import datetime as dt

    from cacpipe.review.dicom_out import write_dicom_outputs

    root, _, ct, labels, sources, result = phantom_study
    img = [np.zeros((8, 8, 3), np.uint8)]
    runs = []
    for i, stamp in enumerate((dt.datetime(2026, 1, 5, 10, 15, 2), dt.datetime(2026, 1, 5, 10, 15, 3))):
        d = write_dicom_outputs(tmp_path / str(i), labels, result, sources, img, ["summary"], stamp=stamp)
        runs.append({k: pydicom.dcmread(d[k] if k != "sc" else d["sc"][0], stop_before_pixels=True)
                     for k in ("seg", "sr", "sc")})
    for kind, ds in runs[0].items():
        desc = ds.SeriesDescription
        assert desc.startswith("DEMO NOT CLINICAL") and f"CAC {kind.upper()}" in desc, desc
        assert "model e6090348" in desc and f"cacpipe {__version__}" in desc and len(desc) <= 64, desc
        assert (ds.SeriesDate, ds.SeriesTime) == ("20260105", "101502")
        assert desc != runs[1][kind].SeriesDescription  # a re-run is told apart
    seg = runs[0]["seg"]
    assert seg.ContentDescription == "DEMO MODEL - NOT FOR CLINICAL USE"
    assert seg.ImageComments == result.provenance_statement()
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "Dataset990_cacpipe_phantom_demo" in algo.AlgorithmName and "e60903488e65" in algo.AlgorithmVersion
    assert result.provenance_statement() in runs[0]["sc"].ImageComments
    assert _sr_texts(runs[0]["sr"])[0] == result.provenance_statement()


# --- the SR ----------------------------------------------------------------------------------------

def _sr_texts(ds) -> list[str]:
    """Every TEXT value of an SR, in document order."""
    out = []

    def walk(items):
        for it in items:
            if it.ValueType == "TEXT" and it.ConceptNameCodeSequence[0].CodeValue in ("121106", "121071"):
                out.append(str(it.TextValue))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    comments = [t for t in out if t.startswith(RESEARCH_USE)]
    return comments + [t for t in out if t not in comments]


def _sr(result, labels, sources, tmp_path):
    from cacpipe.review.dicom_out import write_dicom_outputs

    d = write_dicom_outputs(tmp_path, labels, result, sources, [np.zeros((8, 8, 3), np.uint8)], ["summary"])
    return pydicom.dcmread(d["sr"]), Path(d["seg"]), Path(d["sr"])


def test_sr_rounds_reports_category_cac_drs_lesions_and_grades_only_from_a_fitted_model(phantom_study, tmp_path):
    import highdicom as hd

    _, truth, ct, labels, sources, result = phantom_study
    ds, _, _ = _sr(result, labels, sources, tmp_path / "unfitted")
    texts = _sr_texts(ds)
    assert "Agatston category 101-400" in texts and "CAC-DRS A1/N3" in texts
    lad1 = next(les for les in result.lesions if les.name == "LAD #1")
    assert any(t.startswith("LAD #1: ") and t.endswith(f"largest on {result.slice_reference(lad1.best_slice)}")
               for t in texts)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    total = sr.content.get_planar_roi_measurement_groups() + sr.content.get_volumetric_roi_measurement_groups()
    assert all(g.get_qualitative_evaluations() == [] for g in total)  # severity model not fitted: no grade
    nums = [m.value for g in sr.content.get_volumetric_roi_measurement_groups() for m in g.get_measurements()]
    assert all(round(v, 1) == v for v in nums)
    fitted = StudyResult.from_json(result.to_json())
    fitted.pipeline["severity_model"] = {"fitted_on_grades": True}
    sr = hd.sr.Comprehensive3DSR.from_dataset(_sr(fitted, labels, sources, tmp_path / "fitted")[0])
    grades = {g.finding_sites[0].value.meaning: [q.value.meaning.lower() for q in g.get_qualitative_evaluations()]
              for g in sr.content.get_volumetric_roi_measurement_groups()}
    assert grades["Right Coronary Artery"] == [result.arteries["RCA"].grade]


def test_sr_says_not_assessed_and_no_category_and_passes_dciodvfy(phantom_study, tmp_path):
    _, _, ct, labels, sources, result = phantom_study
    res = StudyResult.from_json(result.to_json())
    res.arteries["LCX"].assessed = False
    finalise(res)
    ds, seg_path, sr_path = _sr(res, labels, sources, tmp_path)
    texts = _sr_texts(ds)
    assert any(t.startswith("NOT ASSESSED: LCX not assessed") for t in texts)
    assert any(t.startswith("Agatston category not given: not every artery was assessed") for t in texts)
    if not Path(DCIODVFY).exists():
        pytest.skip("dciodvfy (Debian package dicom3tools; `make test` installs it) is not installed")
    for path in (seg_path, sr_path, sr_path.parent / "sc_000.dcm"):
        errors, warnings = dciodvfy(path)
        assert errors == [], (path.name, errors)
        assert warnings == [], (path.name, warnings)


# --- slices, calcium ------------------------------------------------------------------------------

def test_slices_are_named_as_pacs_names_them(phantom_study, tmp_path):
    _, _, ct, labels, sources, result = phantom_study
    out = build_review(tmp_path, ct, labels, result, None, ReviewSettings())
    review = json.loads((tmp_path / "review.json").read_text())
    by_instance = {int(ds.InstanceNumber): ds for ds in sources}
    moved = 0
    for les, entry in zip(result.lesions, review["lesions"], strict=True):
        ds = by_instance[entry["image"]]
        z = float(ct.index_to_physical(np.array([[les.best_slice, 0, 0]]))[0, 2])
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(z, abs=1e-3)  # the reader lands on the lesion
        assert entry["reference"] == f"image {entry['image']} (z {float(ds.SliceLocation):.1f} mm)"
        assert f"overlays/image_{entry['image']:04d}.png" in out["overlays"]
        moved += entry["image"] != les.best_slice + 1
    assert moved  # volume order and PACS numbering differ in this series: the test can tell them apart


def test_drawn_calcium_is_counted_calcium(phantom_study, tmp_path):
    from cacpipe.review.overlays import _orient, _upscale, display_flips

    _, _, ct, labels, sources, result = phantom_study
    # a segmentation whose calcium labels spill into soft tissue below 130 HU
    lab = labels.array.copy()
    for a in ARTERIES:
        grown = ndimage.binary_dilation(lab == CALCIUM_ID[a], iterations=2) & (lab == ARTERY_ID[a])
        lab[grown] = CALCIUM_ID[a]
    spilled = labels.with_array(lab)
    calc_label = np.isin(lab, list(CALCIUM_ID.values()))
    counted = calc_label & (ct.array >= 130)
    assert (calc_label & ~counted).sum() >= 50  # there is something not to draw
    res = StudyResult.from_json(result.to_json())
    q = quantify(ct, spilled)
    res.arteries, res.lesions = q.arteries, q.lesions
    finalise(res)
    out = build_review(tmp_path, ct, spilled, res, sources, ReviewSettings())
    # SEG: the calcium segments are the counted voxels, and their volume is the reported volume
    seg = pydicom.dcmread(tmp_path / out["seg"])
    k_of = {ds.SOPInstanceUID: k for k, ds in enumerate(sources)}
    seg_calc = np.zeros(ct.shape, bool)
    for f, fg in zip(seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns)), seg.PerFrameFunctionalGroupsSequence,
                     strict=True):
        if fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber in CALCIUM_ID.values():
            seg_calc[k_of[fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]] |= f > 0
    np.testing.assert_array_equal(seg_calc, counted)
    assert seg_calc.sum() * np.prod(ct.spacing_zyx) == pytest.approx(res.total.calcium_volume_mm3)
    # PNG: blue only where calcium is counted (the overlay panel of the largest lesion's slice)
    les = max(res.lesions, key=lambda x: x.voxels)
    png = np.asarray(Image.open(tmp_path / "overlays" / f"image_{int(sources[les.best_slice].InstanceNumber):04d}.png")
                     .convert("RGB")).astype(int)
    y0, y1, x0, x1 = crop_box(labels.with_array(lab), ReviewSettings())
    flips, px = display_flips(ct), ReviewSettings().display_px
    scale = px / max(y1 - y0, x1 - x0)

    def shown(mask2d):
        return np.asarray(_upscale(Image.fromarray(_orient(mask2d[y0:y1, x0:x1], flips).astype(np.uint8)), scale,
                                   smooth=False)) > 0

    ok, spill = shown(counted[les.best_slice]), shown(calc_label[les.best_slice] & ~counted[les.best_slice])
    h, w = ok.shape
    top = statement_banner(png.shape[1], res).height + 26 + 20  # statement, header bar, panel title
    panel = png[top:top + h, px + 4:px + 4 + w]
    blue = (np.abs(panel - np.array(CALCIUM_COLOUR)).max(axis=-1) <= 30)
    assert blue[ok].sum() > 0.5 * ok.sum()
    assert blue[spill & ~ndimage.binary_dilation(ok, iterations=2)].sum() == 0


# --- anonymised ids, secrets, permissions ----------------------------------------------------------

def test_anonymised_id_is_salted_per_installation_unless_a_study_salt_is_given(tmp_path, monkeypatch):
    import hashlib

    from cacpipe.review.options import anonymised_id, salt_path

    ids = []
    for site in ("a", "b"):
        monkeypatch.setenv("CACPIPE_CONFIG_DIR", str(tmp_path / site / "cacpipe"))
        ids.append((anonymised_id("1234567"), anonymised_id("1234567"), anonymised_id("1234567", "multi-site secret")))
        assert stat.S_IMODE(salt_path().stat().st_mode) == 0o600
        assert stat.S_IMODE(salt_path().parent.stat().st_mode) == 0o700
        assert len(salt_path().read_text().strip()) == 64
    (a1, a2, a_study), (b1, _, b_study) = ids
    assert a1 == a2 != b1  # stable within an installation, different across installations
    assert a_study == b_study  # one study secret: the same pseudonym at every site
    # no longer the unsalted hash a 7-digit MRN was recovered from
    assert a1 != "anon-" + hashlib.sha256(b"\x001234567").hexdigest()[:10]


def test_a_study_salt_is_never_written_down(tmp_path):
    from export_faults import MIN_SLICES, threshold_analyse

    from cacpipe.phantom.demo_export import write_demo_export
    from cacpipe.scan import run_scan

    write_demo_export(tmp_path / "export", shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=24)
    secret = "multi-site-secret-4711"
    settings = Settings().merged({"selection": {"min_slices": MIN_SLICES}, "review": {"salt": secret}})
    assert settings.to_record()["review"]["salt"].startswith("secret ")
    run_scan(tmp_path / "export", tmp_path / "out", analyse=threshold_analyse, settings=settings, progress=False)
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p


def test_outputs_with_patient_data_are_owner_only(phantom_study, tmp_path):
    from cacpipe.review import build_index

    _, _, ct, labels, sources, result = phantom_study
    os.umask(0o022)  # the usual umask: the policy must not depend on it
    study = tmp_path / "out" / "P1" / "S1"
    result.save(tmp_path / "result_elsewhere.json")
    build_review(study, ct, labels, result, sources, ReviewSettings())
    index = build_index(tmp_path / "out")
    written = [index, *study.rglob("*")]
    assert len(written) > 10
    for p in written:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    for d in (study, study.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_severity_model_says_whether_it_was_fitted_on_grades(tmp_path):
    import pandas as pd

    default = SeverityModel.load_default()
    assert default.fitted_on_grades is False
    rng = np.random.default_rng(0)
    rows = [{"artery": a, "volume_ml": v, "grade": "none" if v < 0.01 else "mild" if v < 0.1 else
             "moderate" if v < 0.3 else "severe"} for a in ARTERIES for v in rng.uniform(0, 0.6, 60)]
    fitted = SeverityModel.fit(pd.DataFrame(rows))
    assert fitted.fitted_on_grades is True
    again = SeverityModel.load(fitted.save(tmp_path / "sev.json"))
    assert again.fitted_on_grades is True and again.describe()["fitted_on_grades"] is True
    legacy = json.loads((tmp_path / "sev.json").read_text())
    legacy.pop("fitted_on_grades")  # written by an older `cacpipe severity fit`: its fit statistics tell
    assert SeverityModel.from_dict(legacy).fitted_on_grades is True


def test_flags_from_the_series_reach_the_validity_decision(phantom_study):
    *_, result = phantom_study
    res = StudyResult.from_json(result.to_json())
    res.flags.append(Flag("contrast_suspected", "contrast agent tag set (IOPAMIDOL): not valid", "invalid"))
    finalise(res)
    row = cohort_row(res)
    assert res.total.category is None and res.total.cac_drs is None and res.total.agatston_valid is False
    assert (row["category"], row["cac_drs"], row["agatston_valid"]) == (None, None, False)
    assert "contrast_suspected" in row["flags"]
