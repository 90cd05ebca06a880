"""Readers' corrections: growing a missed lesion, validating corrections files, and `cacpipe review
apply` on a scan's output folder (the CT read again from the phantom DICOM export, numbers
recomputed with the pipeline's code, originals and audit trail kept, cohort.csv, training case);
and the page's image data (encoding, NIfTI geometry, the full-resolution region)."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from test_review_common import mislabelled, scored_result

from cacpipe.config import ReviewSettings, Settings
from cacpipe.errors import InputDataError
from cacpipe.labels import CALCIUM_ID
from cacpipe.review.corrections import GROW_BOX_MM, SCHEMA, grow_lesion, parse_corrections
from cacpipe.volume import Volume


def _blank(shape=(20, 40, 40)):
    hu = np.full(shape, 40, dtype=np.int16)
    return hu, np.zeros(shape, dtype=np.uint8)


def test_grow_snaps_excludes_labelled_calcium_and_stays_in_its_box():
    hu, lab = _blank()
    hu[10, 20, 20:23] = 300  # a small plaque
    hu[11, 21, 22] = 450
    got = grow_lesion(hu, lab, [10, 18, 19], (1.0, 1.0, 1.0))  # clicked 2 px off: snaps to the brightest
    assert got.sum() == 4 and got[11, 21, 22] and got[10, 20, 20]
    with pytest.raises(InputDataError, match="no calcium"):
        grow_lesion(hu, lab, [10, 5, 5], (1.0, 1.0, 1.0))
    lab[10, 20, 20:23] = CALCIUM_ID["LAD"]
    with pytest.raises(InputDataError, match="already labelled"):
        grow_lesion(hu, lab, [10, 20, 21], (1.0, 1.0, 1.0))
    got = grow_lesion(hu, lab, [11, 21, 22], (1.0, 1.0, 1.0))  # the labelled part is not taken again
    assert got.sum() == 1
    hu2, lab2 = _blank((5, 10, 200))
    hu2[2, 5, :] = 500  # a long bright rod (a rib): only GROW_BOX_MM either side of the click
    got = grow_lesion(hu2, lab2, [2, 5, 100], (2.0, 0.5, 0.5))
    assert got.sum() == 2 * int(np.ceil(GROW_BOX_MM / 0.5)) + 1


@pytest.mark.parametrize("doc, match", [
    ({"schema": "x"}, "schema"),
    ({"schema": SCHEMA, "reader": "", "time": "t", "study_uid": "1", "changes": []}, "reader"),
    ({"schema": SCHEMA, "reader": "R", "time": "t", "study_uid": "1", "changes": [{"op": "merge"}]}, "'op' must be"),
    ({"schema": SCHEMA, "reader": "R", "time": "t", "study_uid": "1", "changes": [{"op": "reassign", "lesion": "RCA #1",
                                                                                    "to": "LM"}]}, "'to'"),
    ({"schema": SCHEMA, "reader": "R", "time": "t", "study_uid": "1", "changes": [{"op": "add", "artery": "RCA",
                                                                                    "seed_zyx": [1, -2, 3]}]}, "seed"),
])
def test_corrections_files_are_validated(doc, match):
    with pytest.raises(InputDataError, match=match):
        parse_corrections(doc)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A scan-like output folder for one phantom DICOM study whose labels carry two model errors."""
    from cacpipe.ingest import read_ct
    from cacpipe.phantom import PatientInfo, PhantomConfig
    from cacpipe.phantom.writer import write_phantom
    from cacpipe.scan.layout import study_folder

    root = tmp_path_factory.mktemp("apply")
    ph, truth = write_phantom(PhantomConfig.preset("small", seed=5), root / "ph", PatientInfo(patient_id="PAT9"))
    ct = read_ct(truth["dicom"]["series"]["axial"]["dir"]).volume
    true_labels = ct.with_array(ph.labels.array)
    labels, info = mislabelled(ct, true_labels)
    uid, series = truth["dicom"]["study_uid"], truth["dicom"]["series"]["axial"]["uid"]
    res = scored_result(ct, labels, "PAT9", "PHANTOM^NINE", uid, series)
    res.pipeline["settings"] = Settings().to_dict()
    out = root / "out"
    rel = study_folder("PAT9", uid)
    (out / rel).mkdir(parents=True)
    labels.write(out / rel / "labels.nii.gz")
    res.outputs["result"] = "result.json"
    res.save(out / rel / "result.json")
    manifest = {"schema": "cacpipe.manifest/1", "export": str(root / "ph" / "dicom"), "problems": [],
                "studies": {f"PAT9/{uid}": {"patient_id": "PAT9", "study_uid": uid, "study_date": "20260105",
                                            "status": "done", "reason": "", "result": f"{rel}/result.json",
                                            "series_uid": series}}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    moved = next(les for les in res.lesions if les.bbox_zyx == info["moved"].bbox_zyx)
    m = info["missed"]
    doc = {"schema": SCHEMA, "reader": "R1", "time": "2026-01-05T10:00:00Z", "study_uid": uid, "patient_id": "PAT9",
           "changes": [{"op": "reassign", "lesion": moved.name, "to": "RCA"},
                       {"op": "add", "artery": "LCX", "seed_zyx": [m.best_slice, round(m.centre_yx[0]), round(m.centre_yx[1])]}]}
    (out / "corrections").mkdir()
    (out / "corrections" / "r1.json").write_text(json.dumps(doc))
    return {"root": root, "out": out, "dir": out / rel, "ct": ct, "truth": true_labels, "result": res, "labels": labels}


@pytest.mark.slow
def test_apply_recomputes_keeps_originals_and_makes_a_training_case(scanned):
    from cacpipe.cli import cli
    from cacpipe.quant.quantify import quantify

    out, sd, res = scanned["out"], scanned["dir"], scanned["result"]
    cases = scanned["root"] / "cases"
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "--training-cases", str(cases)])
    assert r.exit_code == 0, r.output
    assert "2 change(s) by R1" in r.output
    got = json.loads((sd / "result.json").read_text())
    truth = quantify(scanned["ct"], scanned["truth"])  # the corrections undo both model errors exactly
    for a in ("RCA", "LAD", "LCX"):
        assert got["arteries"][a]["agatston"] == pytest.approx(truth.arteries[a].agatston)
        assert got["arteries"][a]["calcium_volume_mm3"] == pytest.approx(truth.arteries[a].calcium_volume_mm3)
        assert got["original"]["arteries"][a]["agatston"] == pytest.approx(res.arteries[a].agatston)
    assert got["original"]["total"]["cac_drs"] == res.total.cac_drs
    assert [x["effect"].split()[0] for x in got["corrections"]["audit"]] == ["reassigned", "added"]
    assert got["outputs"]["labels"] == "labels.nii.gz" and got["outputs"]["labels_corrected"] == "labels_corrected.nii.gz"
    corrected = Volume.read(sd / "labels_corrected.nii.gz")
    np.testing.assert_array_equal(Volume.read(sd / "labels.nii.gz").array, scanned["labels"].array)  # model's map kept
    assert (corrected.array != scanned["labels"].array).any()
    assert set(np.unique(corrected.array)) <= set(range(7))
    row = next(csv.DictReader((out / "cohort.csv").open()))
    assert row["corrected"] == "R1 2026-01-05T10:00:00Z" and "reader_corrected" in row["flags"]
    assert float(row["original_total_agatston"]) == pytest.approx(res.total.agatston)
    assert float(row["total_agatston"]) == pytest.approx(got["total"]["agatston"])
    # the training case: CASE/ct.nii.gz + labels.nii.gz (+ patient.txt), the layout `make train DATA=` reads
    case = next(cases.iterdir())
    assert (case / "patient.txt").read_text().strip() == "PAT9"
    assert "PAT9" not in case.name and res.study.study_uid not in case.name  # pseudonymous case id
    np.testing.assert_array_equal(Volume.read(case / "labels.nii.gz").array, corrected.array)
    assert Volume.read(case / "ct.nii.gz").shape == corrected.shape
    from nnunet_plans.data import build_dataset_from_dir

    other = cases / "phantom_truth"  # a second case: the dataset builder splits cases into folds
    other.mkdir()
    scanned["ct"].write(other / "ct.nii.gz")
    scanned["truth"].write(other / "labels.nii.gz")
    ds = build_dataset_from_dir(cases, scanned["root"] / "raw", 991, "corrected", (2.0, 1.5625, 1.5625), n_folds=2)
    built = Volume.read(ds / "labelsTr" / f"{case.name}.nii.gz").array  # cropped to the heart by stage 1
    assert {int(v) for v in np.unique(built)} >= {CALCIUM_ID["RCA"], CALCIUM_ID["LCX"]}
    # applying the same file again changes nothing; a second reader's file adds to it
    r = CliRunner().invoke(cli, ["review", "apply", str(out)])
    assert r.exit_code == 0, r.output
    again = json.loads((sd / "result.json").read_text())
    assert again["arteries"] == got["arteries"] and len(again["corrections"]["files"]) == 1
    doc2 = {"schema": SCHEMA, "reader": "R2", "time": "2026-01-06T09:00:00Z", "study_uid": res.study.study_uid,
            "changes": [{"op": "not_assessable", "artery": "LCX", "reason": "motion"}]}
    p2 = scanned["root"] / "r2.json"
    p2.write_text(json.dumps([doc2]))  # the index page's download: a list of documents
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(p2)])
    assert r.exit_code == 0, r.output
    third = json.loads((sd / "result.json").read_text())
    assert [f["reader"] for f in third["corrections"]["files"]] == ["R1", "R2"]
    assert third["arteries"]["LCX"]["assessed"] is False and third["arteries"]["LCX"]["agatston"] is None
    assert third["arteries"]["RCA"]["agatston"] == pytest.approx(got["arteries"]["RCA"]["agatston"])
    assert third["total"]["category"] is None and third["total"]["complete"] is False
    assert any(f["code"] == "not_assessable" and "reader R2: motion" in f["message"] for f in third["flags"])


def test_apply_refuses_what_it_cannot_apply(scanned, tmp_path):
    from cacpipe.cli import cli

    res = scanned["result"]
    bad = {"schema": SCHEMA, "reader": "R3", "time": "2026-01-07T00:00:00Z", "study_uid": res.study.study_uid,
           "changes": [{"op": "delete", "lesion": "RCA #9"}]}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    before = (scanned["dir"] / "result.json").read_text()
    r = CliRunner().invoke(cli, ["review", "apply", str(scanned["out"]), "-c", str(p)])
    assert r.exit_code != 0 and "lesion 'RCA #9' is not in this study's record" in r.output
    assert (scanned["dir"] / "result.json").read_text() == before
    name = res.lesions[0].name
    bad["changes"] = [{"op": "reassign", "lesion": name, "to": "LAD", "centre_zyx": [0.0, 0.0, 0.0]}]
    p.write_text(json.dumps(bad))
    r = CliRunner().invoke(cli, ["review", "apply", str(scanned["out"]), "-c", str(p)])
    assert r.exit_code != 0 and f"lesion '{name}' is elsewhere" in r.output
    other = {**bad, "study_uid": "5.5.5", "changes": []}
    p.write_text(json.dumps(other))
    r = CliRunner().invoke(cli, ["review", "apply", str(scanned["out"]), "-c", str(p)])
    assert r.exit_code != 0 and "no result.json for it" in r.output
    r = CliRunner().invoke(cli, ["review", "apply", str(tmp_path)])
    assert r.exit_code != 0 and "no corrections given" in r.output


def test_page_volumes_round_trip_with_their_geometry():
    from cacpipe.phantom import PhantomConfig, generate
    from cacpipe.review.viewer_data import decode_array, page_volumes
    from cacpipe.units import zyx_to_xyz

    ph = generate(PhantomConfig.preset("small", seed=2))
    vols = page_volumes(ph.ct, ph.labels, [], ReviewSettings(html_max_slices=12))
    heart = vols["heart"]["ct"]
    assert heart["shape_zyx"][0] == 12  # capped
    z0, y0, x0 = heart["offset_zyx"]
    arr = decode_array(heart["data"], np.int16, heart["shape_zyx"])
    np.testing.assert_array_equal(arr, ph.ct.array[z0:z0 + 12, y0:y0 + arr.shape[1], x0:x0 + arr.shape[2]])
    # the NIfTI header NiiVue reads puts each voxel where the CT has it (RAS = LPS with x, y negated)
    import base64

    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(base64.b64decode(heart["nifti_header"])))
    aff = hdr.get_best_affine()
    k, j, i = 3, 5, 7
    ras = aff @ [i, j, k, 1]
    lps = ph.ct.index_to_physical(np.array([[z0 + k, y0 + j, x0 + i]]))[0]
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)
    scan = vols["scan"]["ct"]
    codes = decode_array(scan["data"], np.uint8, scan["shape_zyx"])
    step = scan["step_zyx"]
    block = ph.ct.array[:step[0], :step[1], :step[2]].astype(float).mean()
    assert codes[0, 0, 0] * scan["slope"] + scan["inter"] == pytest.approx(block, abs=scan["slope"] / 2 + 1e-6)
    assert hdr["vox_offset"] == 352 and tuple(int(v) for v in hdr.get_data_shape()) == zyx_to_xyz(heart["shape_zyx"])
