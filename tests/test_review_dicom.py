"""Overlays, review outputs and DICOM SEG / SR / SC on the phantom, re-read with pydicom/highdicom."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from PIL import Image
from test_review_common import HOSTILE_NAME, axial_datasets, result_from_truth

from cacpipe.config import ReviewSettings
from cacpipe.errors import ConfigError, GeometryError, InputDataError
from cacpipe.labels import ARTERIES, ARTERY_COLOURS, CALCIUM_COLOUR, CALCIUM_ID, LABEL_CLASSES
from cacpipe.record import ArteryResult, StudyResult
from cacpipe.review import anonymised_id, build_review
from cacpipe.review.overlays import statement_banner
from cacpipe.volume import Volume

SEG_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SR_UID = "1.2.840.10008.5.1.4.1.1.88.34"
SC_UID = "1.2.840.10008.5.1.4.1.1.7"


def _near(img: np.ndarray, rgb) -> int:
    return int((np.abs(img - np.array(rgb)).max(axis=-1) <= 30).sum())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from cacpipe.phantom import PatientInfo, PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    root = tmp_path_factory.mktemp("review_dicom")
    _, truth = write_phantom(PhantomConfig.preset("small"), root / "ph",
                             PatientInfo(patient_id="PID-77", patient_name=HOSTILE_NAME))
    ct, labels = Volume.read(root / "ph" / "ct.nii.gz"), Volume.read(root / "ph" / "labels.nii.gz")
    result = result_from_truth(truth, "PID-77", HOSTILE_NAME, ct=ct, labels=labels)
    sources = axial_datasets(truth)
    result.set_grid(ct, [int(ds.InstanceNumber) for ds in sources], [float(ds.SliceLocation) for ds in sources])
    agreement = (labels.array > 0).astype(np.float32) * 0.8
    out = build_review(root / "out", ct, labels, result, sources, ReviewSettings(), agreement=agreement)
    return root, truth, ct, labels, result, sources, out


def test_overlay_pngs_show_every_lesion_in_label_colours(study):
    root, truth, ct, labels, result, _, out = study
    d = root / "out"
    assert out["overlays"][0] == "overlays/summary.png"
    lesion_total = sum(truth["arteries"][a]["lesions"] for a in ARTERIES)
    review = json.loads((d / "review.json").read_text())
    assert len(review["lesions"]) == lesion_total
    # every lesion's best slice has a PNG named after its PACS image, and each PNG shows calcium blue and
    # at least one artery colour
    shown = {int(Path(p).stem.split("_")[1]) for p in out["overlays"][1:]}
    assert {les["image"] for les in review["lesions"]} <= shown
    px = ReviewSettings().display_px
    for rel in out["overlays"]:
        img = np.asarray(Image.open(d / rel).convert("RGB")).astype(int)
        top = statement_banner(img.shape[1], result).height + 26 + 20  # statement + header bar + panel title
        assert img.std() > 20
        # panels only (the legend below also holds colour swatches): left = CT or MIP, right = overlay/coronal
        left = img[top:top + px, :px]
        if rel.endswith("summary.png"):
            assert _near(left, CALCIUM_COLOUR) > 10, rel
            assert all(_near(left, ARTERY_COLOURS[a]) > 50 for a in ARTERIES), rel
        else:
            overlay = img[top:top + px, px + 4:2 * px + 4]
            assert _near(left, CALCIUM_COLOUR) == 0, rel  # the plain CT panel carries no overlay
            assert _near(overlay, CALCIUM_COLOUR) > 10, rel
            assert max(_near(overlay, ARTERY_COLOURS[a]) for a in ARTERIES) > 10, rel
            assert img.shape[1] == 3 * px + 8  # agreement heat-map panel present


def test_burned_in_text_defaults_to_anonymised_id(study, tmp_path):
    root, _, ct, labels, result, _, _ = study
    from cacpipe.review.options import display_items

    items = dict(display_items(result.study.to_dict(), ReviewSettings().fields))
    assert items == {"Anon ID": anonymised_id("PID-77"), "Study date": "2026-01-05"}
    assert anonymised_id("PID-77") != anonymised_id("PID-77", "salt") and "PID-77" not in anonymised_id("PID-77")
    html = (root / "out" / "review.html").read_text()
    assert "PID-77" not in html.split('id="review-data"')[0]  # not displayed (kept only for the ratings CSV)
    assert "alert(1)" not in html  # patient name not allowed by default: absent entirely
    with pytest.raises(ConfigError, match="unknown field"):
        ReviewSettings(fields=("birth_date",))


def test_hostile_patient_name_is_escaped_when_shown(study, tmp_path):
    _, _, ct, labels, result, _, _ = study
    build_review(tmp_path, ct, labels, result, None, ReviewSettings(fields=("patient_name",)))
    html = (tmp_path / "review.html").read_text()
    assert "<script>alert(1)" not in html and "<b>X</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;^&lt;b&gt;X&lt;/b&gt;" in html
    # offline: no external reference in the markup, and the policy forbids any fetch (the inlined
    # viewer's code mentions web addresses in comments only)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    assert "http://" not in markup and "https://" not in markup and "src=" not in markup.replace("src='data:", "")
    assert "default-src 'none'" in html and "connect-src 'none'" in html


def test_seg_references_source_and_matches_labels(study):
    root, truth, ct, labels, result, sources, out = study
    seg = pydicom.dcmread(root / "out" / out["seg"])
    src = sources[0]
    assert seg.SOPClassUID == SEG_UID
    for tag in ("PatientID", "PatientName", "StudyInstanceUID", "PatientBirthDate", "AccessionNumber"):
        assert str(seg[tag].value) == str(src[tag].value), tag
    assert str(seg.PatientName) == HOSTILE_NAME
    assert [s.SegmentNumber for s in seg.SegmentSequence] == [c.id for c in LABEL_CLASSES]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    k_of = {ds.SOPInstanceUID: k for k, ds in enumerate(sources)}
    refs = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs <= set(k_of)
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    rebuilt = np.zeros(labels.shape, dtype=np.uint8)
    for f, fg in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        number = fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        sop = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        rebuilt[k_of[sop]][f > 0] = number
    np.testing.assert_array_equal(rebuilt, labels.array)


def test_sr_tid1500_has_per_artery_numbers_and_references_seg(study):
    import highdicom as hd

    root, truth, _, _, result, sources, out = study
    seg = pydicom.dcmread(root / "out" / out["seg"], stop_before_pixels=True)
    ds = pydicom.dcmread(root / "out" / out["sr"])
    assert ds.SOPClassUID == SR_UID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.PatientID == sources[0].PatientID and ds.StudyInstanceUID == sources[0].StudyInstanceUID
    sr = hd.sr.srread(root / "out" / out["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    by_site = {g.finding_sites[0].value.meaning: g for g in groups}
    names = {"RCA": "Right Coronary Artery", "LAD": "Left Anterior Descending Coronary Artery",
             "LCX": "Circumflex Coronary Artery"}
    assert set(by_site) == set(names.values())
    for a in ARTERIES:
        g = by_site[names[a]]
        ref = g.referenced_segment[0].ReferencedSOPSequence[0]  # IMAGE item -> the SEG
        assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID and ref.ReferencedSegmentNumber == CALCIUM_ID[a]
        vals = {m.name.meaning: (m.value, m.unit.value) for m in g.get_measurements()}
        assert vals["Volume"][0] == round(truth["arteries"][a]["calcium_volume_mm3"], 1)  # 0.1 mm3, as reported
        assert vals["Volume"][1] == "mm3"
        assert vals["Calcium score"][0] == round(truth["arteries"][a]["agatston"], 1)
        assert vals["Number of lesions"][0] == truth["arteries"][a]["lesions"]
        # the grades of this result come from no severity model fitted on local grades: not in the SR
        assert g.get_qualitative_evaluations() == []


def test_sc_images_carry_identifiers_and_overlay_pixels(study):
    root, _, _, _, _, sources, out = study
    assert len(out["sc"]) == len(out["overlays"])
    for sc_rel, png_rel in zip(out["sc"], out["overlays"], strict=True):
        sc = pydicom.dcmread(root / "out" / sc_rel)
        assert sc.SOPClassUID == SC_UID and sc.BurnedInAnnotation == "YES"
        assert sc.PatientID == sources[0].PatientID and sc.StudyInstanceUID == sources[0].StudyInstanceUID
        assert sc.SeriesInstanceUID != sources[0].SeriesInstanceUID
        np.testing.assert_array_equal(sc.pixel_array, np.asarray(Image.open(root / "out" / png_rel).convert("RGB")))


def test_no_sources_skips_dicom_and_misordered_sources_fail(study, tmp_path):
    _, _, ct, labels, result, sources, _ = study
    out = build_review(tmp_path / "a", ct, labels, result, None, ReviewSettings())
    assert "seg" not in out and "SEG" in out["dicom_skipped"] and not (tmp_path / "a" / "dicom").exists()
    with pytest.raises(GeometryError, match="order or position"):
        build_review(tmp_path / "b", ct, labels, result, sources[::-1], ReviewSettings())


def test_cli_build_from_dicom_folder_and_index(study, tmp_path):
    from cacpipe.cli import cli

    root, truth, _, _, result, _, _ = study
    (tmp_path / "s1").mkdir()
    result.save(tmp_path / "s1" / "result.json")
    series_dir = truth["dicom"]["study_dir"]  # axial + localizer: the localizer is ignored
    r = CliRunner().invoke(cli, ["review", "build", str(tmp_path / "s1"), "--ct", series_dir,
                                 "--labels", str(root / "ph" / "labels.nii.gz"), "--show", "anon_id"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s1" / "dicom" / "seg.dcm").exists() and (tmp_path / "s1" / "review.html").exists()
    r = CliRunner().invoke(cli, ["review", "index", str(tmp_path)])
    assert r.exit_code == 0 and "s1/review.html" in (tmp_path / "index.html").read_text()
    r = CliRunner().invoke(cli, ["review", "build", str(tmp_path / "s2"), "--ct", series_dir,
                                 "--labels", str(root / "ph" / "labels.nii.gz")])
    assert r.exit_code != 0 and "result file not found" in r.output


def test_not_assessed_artery_has_no_numbers_in_sr(study):
    import highdicom as hd

    from cacpipe.review.dicom_out import make_sr

    root, _, _, _, result, sources, out = study
    seg = pydicom.dcmread(root / "out" / out["seg"], stop_before_pixels=True)
    res = StudyResult.from_json(result.to_json())
    res.arteries["LCX"] = ArteryResult.not_assessed()
    sr = hd.sr.Comprehensive3DSR.from_dataset(make_sr(res, seg, sources, 9102))
    groups = {g.finding_sites[0].value.meaning: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    assert groups["Circumflex Coronary Artery"].get_measurements() == []
    assert len(groups["Right Coronary Artery"].get_measurements()) == 3  # volume, Agatston, lesion count


def test_study_without_calcium_or_labels(tmp_path):
    from cacpipe.phantom import PhantomConfig, generate

    ph = generate(PhantomConfig.preset("small", plaques=()))
    res = StudyResult.from_json({
        "status": "done", "study": {"patient_id": "P0", "study_uid": "1.2.3"},
        "arteries": {a: {"assessed": True, "calcium_volume_mm3": 0.0, "agatston": 0.0, "lesions": 0, "grade": "none"}
                     for a in ARTERIES}, "total": {"agatston": 0.0, "calcium_volume_mm3": 0.0}, "flags": []})
    out = build_review(tmp_path / "a", ph.ct, ph.labels, res, None, ReviewSettings())
    assert out["overlays"] == ["overlays/summary.png"]
    assert "No calcified lesions found." in (tmp_path / "a" / "review.html").read_text()
    empty = ph.labels.with_array(np.zeros_like(ph.labels.array))
    out = build_review(tmp_path / "b", ph.ct, empty, res, None, ReviewSettings(html_max_slices=10))
    page = (tmp_path / "b" / "review.html").read_text()
    data = json.loads(page.split('id="review-data">', 1)[1].split("</script>", 1)[0])
    assert data["volumes"]["heart"]["ct"]["shape_zyx"][0] == 10  # full-resolution slices capped
    assert data["volumes"]["scan"]["ct"]["shape_zyx"][0] == ph.ct.shape[0] // data["volumes"]["scan"]["ct"]["step_zyx"][0]


def test_seg_from_label_map_equals_the_one_hot_seg(study):
    """make_seg hands highdicom the label map; the frames (pixels, segment, source slice) are those
    of a SEG built from the one-hot stack, as it was built before (docs/performance.md)."""
    import highdicom as hd

    from cacpipe.review.dicom_out import make_seg

    root, truth, ct, labels, result, sources, out = study
    seg = make_seg(labels, sources, 90, result)
    descriptions = [hd.seg.SegmentDescription.from_dataset(item) for item in seg.SegmentSequence]
    onehot = np.stack([labels.array == c.id for c in LABEL_CLASSES], axis=-1)
    before = hd.seg.Segmentation(
        source_images=sources, pixel_array=onehot, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=90, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="x", manufacturer_model_name="x", software_versions="x",
        device_serial_number="0", omit_empty_frames=True)

    def frames(ds):
        px = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
        key = [(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
                fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
               for fg in ds.PerFrameFunctionalGroupsSequence]
        return dict(zip(key, px, strict=True))

    a, b = frames(seg), frames(before)
    assert sorted(a) == sorted(b) and len(a) > 0
    assert {n for n, _ in a} == {c.id for c in LABEL_CLASSES if (labels.array == c.id).any()}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert seg.SegmentsOverlap == "NO"
    with pytest.raises(InputDataError, match="label classes"):
        make_seg(labels.with_array(labels.array.astype(np.int16) * 50), sources, 90, result)


def test_non_ascii_text_is_written_as_declared_utf8(study, tmp_path):
    """A Latin-1 patient name copied from the source, and a non-ASCII flag message, are written
    under SpecificCharacterSet ISO_IR 192 (UTF-8) and read back unchanged; ASCII-only outputs keep
    the default repertoire."""
    from cacpipe.flags import Flag
    from cacpipe.review.dicom_out import write_dicom_outputs

    root, _, ct, labels, result, sources, out = study
    for key in ("seg", "sr"):
        assert "SpecificCharacterSet" not in pydicom.dcmread(root / "out" / out[key])  # ASCII only here
    latin = []
    for ds in sources:
        d = ds.copy()
        d.SpecificCharacterSet = "ISO_IR 100"
        d.PatientName = "Müller^Jürgen"
        latin.append(d)
    res = StudyResult.from_json(result.to_json())
    res.flags.append(Flag("phantom_note", "Kontrollfall für Überprüfung: Gefäß", "info"))
    paths = write_dicom_outputs(tmp_path / "dicom", labels, res, latin, [], [])
    for path in (paths["seg"], paths["sr"]):
        raw = Path(path).read_bytes()
        ds = pydicom.dcmread(path)
        assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Müller^Jürgen"
        assert "Müller^Jürgen".encode() in raw and "Müller".encode("latin-1") not in raw
    sr_text = Path(paths["sr"]).read_bytes()
    assert "Überprüfung: Gefäß".encode() in sr_text
