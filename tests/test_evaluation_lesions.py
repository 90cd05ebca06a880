"""Lesion-level evaluation on the small phantom with a known missed, extra and mis-attributed lesion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.evaluation import lesions as L
from cacpipe.labels import ARTERY_ID, CALCIUM_ID


@pytest.fixture(scope="module")
def edited(small_phantom):
    """(reference labels, predicted labels): the prediction misses the LCX plaque, reports the RCA
    plaque as LAD and adds an LAD 'lesion' on the aortic valve calcium."""
    ph = small_phantom
    ref = ph.labels.array
    pred = ref.copy()
    pred[ref == CALCIUM_ID["LCX"]] = ARTERY_ID["LCX"]  # missed
    pred[ref == CALCIUM_ID["RCA"]] = CALCIUM_ID["LAD"]  # mis-attributed
    valve = next(d for d in ph.distractors if d["kind"] == "aortic_valve_calcium")
    x, y, z = ph.ct_clean.to_sitk().TransformPhysicalPointToIndex(valve["centre_mm"])
    box = np.zeros_like(ref, dtype=bool)
    box[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = True
    extra = box & (ph.ct_clean.array >= 130) & (ref == 0)
    assert extra.sum() >= 5
    pred[extra] = CALCIUM_ID["LAD"]  # extra
    return ref, pred, extra


def test_matching_counts_attribution_and_dice(small_phantom, edited):
    ref, pred, extra = edited
    hu, sp = small_phantom.ct_clean.array, small_phantom.labels.spacing_zyx
    r = L.lesions_of(ref, sp, hu)
    p = L.lesions_of(pred, sp, hu)
    assert sorted(r.arteries) == ["LAD", "LAD", "LCX", "RCA"]  # the four plaques of the phantom
    assert sorted(p.arteries) == ["LAD"] * 4
    m = L.match_scan(p, r)
    c = m["counts"]
    assert (c["RCA"]["ref_lesions"], c["RCA"]["tp_ref"], c["RCA"]["fn"], c["RCA"]["fp"]) == (1, 0, 1, 0)
    assert (c["LAD"]["ref_lesions"], c["LAD"]["tp_ref"], c["LAD"]["pred_lesions"], c["LAD"]["fp"]) == (2, 2, 4, 2)
    assert (c["LCX"]["tp_ref"], c["LCX"]["fn"], c["LCX"]["pred_lesions"]) == (0, 1, 0)
    assert (c["any"]["ref_lesions"], c["any"]["tp_ref"], c["any"]["fn"], c["any"]["fp"]) == (4, 3, 1, 1)
    assert m["cells"] == {("RCA", "LAD"): 1, ("LAD", "LAD"): 2, ("LCX", "missed"): 1, ("none", "LAD"): 1}
    # Dice by hand on the same calcium definition (label and HU >= 130).
    calc_r, calc_p = hu >= 130, hu >= 130
    lad_r = (ref == CALCIUM_ID["LAD"]) & calc_r
    lad_p = (pred == CALCIUM_ID["LAD"]) & calc_p
    d = L.scan_dice(m)
    assert d["LAD"] == pytest.approx(2 * (lad_r & lad_p).sum() / (lad_r.sum() + lad_p.sum()))
    assert d["RCA"] == 0.0 and d["LCX"] == 0.0
    s = L.summarise([m, L.match_scan(r, r)])  # a second, perfect scan
    rows = {x["artery"]: x for x in s["rows"]}
    assert rows["any"]["sensitivity"] == pytest.approx(7 / 8) and rows["any"]["ppv"] == pytest.approx(7 / 8)
    assert rows["LAD"]["fp_per_scan"] == pytest.approx(1.0) and rows["RCA"]["sensitivity"] == pytest.approx(0.5)
    t = np.array(s["attribution"]["table"])
    assert t[L.REF_AXIS.index("RCA"), L.PRED_AXIS.index("LAD")] == 1
    assert t[L.REF_AXIS.index("RCA"), L.PRED_AXIS.index("RCA")] == 1
    assert t[L.REF_AXIS.index("none"), L.PRED_AXIS.index("LAD")] == 1
    assert t[L.REF_AXIS.index("LCX"), L.PRED_AXIS.index("missed")] == 1


def test_truth_lesion_ids_and_a_reference_on_another_grid(small_phantom, edited):
    from cacpipe.evaluation.sources import LabelSource
    from cacpipe.volume import Volume

    ref, pred, _ = edited
    lab = small_phantom.labels
    # Two plaques that touch would be one component; a truth_lesions map keeps them apart.
    ids = np.zeros(ref.shape, np.uint16)
    ids[ref == CALCIUM_ID["LAD"]] = 7
    ids[ref == CALCIUM_ID["RCA"]] = 3
    s = L.lesions_from_ids(ids, ref, lab.spacing_zyx)
    assert sorted(s.arteries) == ["LAD", "RCA"]
    # The reference cropped to a sub-box (other origin, other shape) is resampled onto the prediction grid.
    crop = (slice(20, 90), slice(40, 200), slice(50, 230))
    origin = lab.index_to_physical(np.array([[c.start for c in crop]]))[0]
    sub = Volume(ref[crop].copy(), lab.spacing_zyx, tuple(origin), lab.direction)
    p_set, r_set, notes = L.prepare_scan(LabelSource(lab.with_array(pred)),
                                         LabelSource(sub, origin="cropped"))
    assert "reference map resampled to the prediction grid (nearest neighbour)" in notes
    assert "no CT found: every calcium-labelled voxel counts as calcium" in notes
    direct = L.lesions_of(ref, lab.spacing_zyx)
    assert np.array_equal(r_set.ids > 0, direct.ids > 0)
    assert L.match_scan(p_set, r_set)["cells"][("RCA", "LAD")] == 1


def _fake_scan(tmp_path, ph, maps: dict[str, np.ndarray], demo=True, uids=None):
    """A results folder as `cacpipe scan` leaves it: manifest, result.json, labels.nii.gz, cohort.csv."""
    from cacpipe.csvout import write_csv
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import COHORT_COLUMNS, StudyIdentity, StudyResult, cohort_row

    out = tmp_path / "results"
    studies, rows = {}, []
    for i, (pid, arr) in enumerate(maps.items()):
        uid = uids[i] if uids else f"1.2.3.{i}"
        folder = out / pid / uid
        folder.mkdir(parents=True)
        ph.labels.with_array(arr).write(folder / "labels.nii.gz")
        q = quantify(ph.ct_clean, ph.labels.with_array(arr))
        res = finalise(StudyResult(StudyIdentity(patient_id=pid, study_uid=uid), arteries=q.arteries,
                                   lesions=q.lesions, outputs={"labels": "labels.nii.gz"},
                                   pipeline={"model": {"name": "M", "is_demo": demo}, "heart_method": "fallback"}))
        res.save(folder / "result.json")
        studies[f"{pid}/{uid}"] = {"status": "done", "result": f"{pid}/{uid}/result.json", "patient_id": pid,
                                   "study_uid": uid}
        rows.append(cohort_row(res))
    (out / "manifest.json").write_text(json.dumps({"schema": "cacpipe.manifest/1", "studies": studies}))
    write_csv(out / "cohort.csv", rows, COHORT_COLUMNS)
    return out


def _demo_truth(tmp_path, ph, pids):
    from cacpipe.phantom.truth import ground_truth

    truth = tmp_path / "truth"
    truth.mkdir()
    for pid in pids:  # the layout `cacpipe demo` writes
        (truth / f"{pid}.json").write_text(json.dumps(ground_truth(ph) | {"patient_id": pid,
                                                                         "config": ph.config.to_json()}))
    return truth


def test_cli_end_to_end_on_demo_truth_layout(tmp_path, small_phantom, edited):
    ref, pred, _ = edited
    results = _fake_scan(tmp_path, small_phantom, {"P1": pred, "P2": ref})
    truth = _demo_truth(tmp_path, small_phantom, ["P1", "P2"])
    out = tmp_path / "eval"
    r = CliRunner().invoke(cli, ["evaluate", str(results / "cohort.csv"), str(truth), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "P1: RCA lesion 1" in r.output and "reported as LAD" in r.output
    res = json.loads((out / "evaluation.json").read_text())
    assert res["matching"]["key"] == "patient_id" and res["demo_model"] is True
    a = res["lesion_attribution"]
    t = np.array(a["table"])
    assert t[a["ref"].index("RCA"), a["pred"].index("LAD")] == 1
    assert t[a["ref"].index("LCX"), a["pred"].index("missed")] == 1
    assert t[a["ref"].index("none"), a["pred"].index("LAD")] == 1
    rows = {x["artery"]: x for x in res["lesions"]}
    assert (rows["any"]["ref_lesions"], rows["any"]["tp_ref"], rows["any"]["fp"]) == (8, 7, 1)
    # Continuous agreement and categories come from the truth numbers; P2 is perfect.
    cont = {(x["measure"], x["artery"]): x for x in res["continuous"]}
    assert cont[("agatston", "total")]["n"] == 2
    pts = [p for p in res["points"] if p["patient_id"] == "P2" and p["measure"] == "agatston"]
    assert all(p["pred"] == pytest.approx(p["ref"]) for p in pts)
    assert {c["scale"] for c in res["categories"]} == {"agatston_category", "cac_drs"}
    # Files: CSVs through the safe writer, long-form matrices, and one self-contained HTML page.
    att = pd.read_csv(out / "evaluation_lesion_attribution.csv")
    assert att.query("reference_artery == 'RCA' and predicted_artery == 'LAD'")["lesions"].item() == 1
    assert (out / "evaluation_reclassification.csv").exists() and (out / "evaluation_lesion_pairs.csv").exists()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "NOT FOR CLINICAL USE" in page
    assert "src=\"http" not in page and "<script" not in page


def test_cli_label_folder_layouts_and_skips(tmp_path, small_phantom, edited):
    ref, pred, _ = edited
    results = _fake_scan(tmp_path, small_phantom, {"P1": pred, "P2": ref, "P3": ref})
    maps = tmp_path / "refmaps"
    (maps / "P1").mkdir(parents=True)
    small_phantom.labels.write(maps / "P1" / "labels.nii.gz")  # <key>/labels.nii.gz
    small_phantom.ct_clean.write(maps / "P1" / "ct.nii.gz")
    small_phantom.labels.write(maps / "1.2.3.1.nii.gz")  # <StudyUID>.nii.gz (cacpipe labels convert)
    refcsv = tmp_path / "ref.csv"
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "study_uid": ["1.2.3.0", "1.2.3.1", "1.2.3.2"],
                  "RCA_present": [1, 1, 1], "LAD_present": [1, 1, 1], "LCX_present": [1, 1, 1]}).to_csv(refcsv,
                                                                                                   index=False)
    r = CliRunner().invoke(cli, ["evaluate", str(results), str(refcsv), "--ref-labels", str(maps), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [s["study_uid"] for s in res["lesion_skipped"]] == ["1.2.3.2"]
    assert "no reference label map" in res["lesion_skipped"][0]["reason"]
    by = {s["study_uid"]: s for s in res["lesion_studies"]}
    assert by["1.2.3.0"]["RCA_fn"] == 1 and by["1.2.3.1"]["any_fn"] == 0
    assert any("prediction thresholded with the reference's CT" in n for n in res["notes"])
    assert res["categories"] == [] and res["continuous"] == []  # this REF has presence only
    r2 = CliRunner().invoke(cli, ["evaluate", str(results), str(refcsv), "--ref-labels", str(maps), "--no-lesions",
                                  "--json"])
    assert "lesions" not in json.loads(r2.output)


def test_phantom_cohort_layout_and_single_phantom_folder(tmp_path, small_phantom, small_phantom_dir, edited):
    from cacpipe.evaluation.sources import truth_record

    ref, pred, _ = edited
    # The phantom cohort writer's layout: OUT/truth.csv and OUT/truth/<PatientID>/{labels,truth_lesions}.nii.gz.
    out = tmp_path / "cohort_out"
    rec = truth_record(json.loads((small_phantom_dir / "truth.json").read_text()), small_phantom_dir / "truth.json")
    pd.DataFrame([rec | {"patient_id": "P1", "study_uid": "1.2.3.0"}]).to_csv(out.mkdir() or out / "truth.csv",
                                                                             index=False)
    (out / "truth" / "P1").mkdir(parents=True)
    small_phantom.labels.write(out / "truth" / "P1" / "labels.nii.gz")
    ids = np.zeros(ref.shape, np.uint16)
    for k, cid in enumerate((4, 5, 6), start=1):
        ids[ref == cid] = k  # one id per artery: the two LAD plaques count as one lesion here
    small_phantom.labels.with_array(ids).write(out / "truth" / "P1" / "truth_lesions.nii.gz")
    results = _fake_scan(tmp_path, small_phantom, {"P1": pred})
    for refarg in (out, out / "truth.csv"):
        r = CliRunner().invoke(cli, ["evaluate", str(results), str(refarg), "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.output)
        assert res["matching"]["key"] == "study_uid"
        rows = {x["artery"]: x for x in res["lesions"]}
        assert rows["LAD"]["ref_lesions"] == 1 and rows["any"]["ref_lesions"] == 3
        assert "reference lesions from truth_lesions.nii.gz" in res["notes"]
    # One phantom folder as `cacpipe phantom OUT` writes it, matched on its DICOM study UID.
    uid = json.loads((small_phantom_dir / "truth.json").read_text())["dicom"]["study_uid"]
    results2 = _fake_scan(tmp_path / "two", small_phantom, {"PX": pred}, uids=[uid])
    r = CliRunner().invoke(cli, ["evaluate", str(results2), str(small_phantom_dir), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["lesion_attribution"]["table"][0][1] == 1  # RCA reported as LAD
