"""Serial phantom studies, registration, lesion matching and ``cacpipe progression`` end to end.

The end-to-end tests scan real serial v2 phantom studies with ``cacpipe scan`` (the runner, DICOM
ingest, result.json) using an analysis that takes the phantom's own label map
(tests/progression_oracle.py), so that the progression code runs on real scan outputs in seconds.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.phantom.v2 import random_config
from cacpipe.phantom.v2.followup import follow_up_config, plaque_rates
from cacpipe.progression.match import LesionAt, artery_change, match_lesions
from cacpipe.record import StudyResult

SEED = 1098  # tests range; v2-small with three plaques (two focal, one diffuse), no device or stent
STILL = {"motion_scale": 0.0, "contrast_phase": "none"}


# --- phantom follow-ups -----------------------------------------------------------------------
def test_follow_up_keeps_anatomy_and_grows_plaques():
    cfg = random_config(SEED, "v2-small")
    later = follow_up_config(cfg, 3.0)
    assert later == follow_up_config(cfg, 3.0)  # deterministic
    assert later.heart.shape_seed == cfg.heart.shape_seed and later.heart.dominance == cfg.heart.dominance
    assert later.habitus.sex == cfg.habitus.sex and later.habitus.body_width_mm == cfg.habitus.body_width_mm
    assert later.findings == cfg.findings and later.acquisition.contrast_phase == "none"
    assert later.acquisition != cfg.acquisition
    rates = plaque_rates(cfg)
    base = {p.id: p for p in cfg.plaques}
    grown = {p.id: p for p in later.plaques}
    assert set(base) <= set(grown)  # none vanished, ids kept
    for pid, p in base.items():
        q = grown[pid]
        size = lambda s: s.length_mm * s.thickness_mm * s.arc_deg  # noqa: E731
        assert size(q) >= size(p) - 1e-9
        assert (size(q) > size(p)) == (rates[pid] > 0)
        assert (q.artery, q.branch, q.t, q.shape_seed) == (p.artery, p.branch, p.t, p.shape_seed)
    assert all(pid > max(base) for pid in set(grown) - set(base))
    rescan = follow_up_config(cfg, 0.0)
    assert rescan.plaques == cfg.plaques and rescan.acquisition != cfg.acquisition
    # a later follow-up keeps the new plaques of an earlier one
    assert {p.id for p in follow_up_config(cfg, 1.0).plaques} <= {p.id for p in follow_up_config(cfg, 6.0).plaques}


@pytest.fixture(scope="module")
def serial_cohort(tmp_path_factory):
    """One v2-small patient: baseline, a rescan (0 y) and a 2-year follow-up, via the CLI."""
    out = tmp_path_factory.mktemp("serial") / "cohort"
    r = CliRunner().invoke(cli, ["phantom", "cohort", "1", str(out), "--preset", "v2-small", "--seed", str(SEED),
                                 "--no-extras", "--follow-up", "0,2"])
    assert r.exit_code == 0, r.output
    return out


def test_cohort_follow_up_writes_serial_studies_and_truth(serial_cohort):
    rows = list(csv.DictReader(open(serial_cohort / "truth.csv")))
    assert [r["time_point"] for r in rows] == ["0", "1", "2"]
    assert {r["patient_id"] for r in rows} == {f"PV2{SEED:07d}"} and len({r["study_uid"] for r in rows}) == 3
    assert rows[2]["study_date"] > rows[0]["study_date"] == rows[1]["study_date"]
    studies = sorted((serial_cohort / "export" / f"PV2{SEED:07d}").iterdir())
    assert len(studies) == 3
    heads = [pydicom.dcmread(next((s / "002_axial").iterdir()), stop_before_pixels=True) for s in studies]
    assert {h.PatientID for h in heads} == {f"PV2{SEED:07d}"} and len({h.StudyInstanceUID for h in heads}) == 3
    truth = json.loads((serial_cohort / "progression_truth.json").read_text())
    p = truth["patients"][f"PV2{SEED:07d}"]
    assert [t["years"] for t in p["time_points"]] == [0.0, 0.0, 2.0]
    for t in p["time_points"]:
        assert (serial_cohort / t["truth_dir"] / "truth_lesions.nii.gz").is_file()
    ids = {les["id"] for les in p["lesions"]}
    assert {1, 2, 3} <= ids
    for les in p["lesions"]:
        if les["id"] <= 3:  # baseline plaques: present at every time point, never smaller in truth
            assert all(tp is not None for tp in les["time_points"])
    assert set(p["pairs"][0]["lesion_status"].values()) <= {"stable"}  # the rescan: nothing changed
    assert set(p["pairs"][1]["lesion_status"].values()) <= {"grown", "stable", "new"}


# --- registration -----------------------------------------------------------------------------
def test_registration_recovers_a_known_shift_and_a_follow_up():
    from scipy import ndimage

    from cacpipe.phantom.v2.generate import generate
    from cacpipe.progression.register import register
    from cacpipe.volume import Volume

    cfg = random_config(SEED, "v2-small", acquisition=STILL)
    a = generate(cfg)
    shift = np.array([6.0, -4.0, 5.0])

    def moved(v):
        return Volume(v.array, v.spacing_zyx, tuple(np.asarray(v.origin_xyz) + shift), v.direction)

    reg = register(a.ct, moved(a.ct), a.labels, moved(a.labels))
    assert np.allclose(reg.translation_mm, shift, atol=0.6), reg.translation_mm
    p = np.array([[10.0, -20.0, -90.0]])
    assert np.allclose(reg.to_prior(reg.to_current(p)), p, atol=1e-6)
    # a real follow-up: patient elsewhere on the table, another breath hold, another scanner
    fcfg = follow_up_config(cfg, 2.0)
    b = generate(replace(fcfg, acquisition=replace(fcfg.acquisition, motion_scale=0.0)))
    reg = register(a.ct, b.ct, a.labels, b.labels)

    def centres(ph):
        ids = ph.lesions.array
        return {int(i): ph.lesions.index_to_physical(np.array(ndimage.center_of_mass(ids == i))[None])[0]
                for i in np.unique(ids)[1:]}

    ca, cb = centres(a), centres(b)
    common = [k for k in ca if k in cb]
    assert common
    before = [np.linalg.norm(cb[k] - ca[k]) for k in common]
    after = [np.linalg.norm(reg.to_prior(cb[k][None])[0] - ca[k]) for k in common]
    # well inside the matching gate (8 mm); plaques that grew moved their own centroids a little
    assert max(after) < 4.0 and np.mean(after) < 0.5 * np.mean(before), (before, after)


# --- matching -----------------------------------------------------------------------------------
def _les(i, artery, xyz, vol, ext=3.0):
    return LesionAt(i, artery, f"{artery} #{i + 1}", np.asarray(xyz, float), vol, vol, ext)


def test_matching_on_known_truth():
    prior = [_les(0, "LAD", (0, 0, 0), 20.0), _les(1, "RCA", (40, 0, 0), 30.0), _les(2, "LCX", (0, 40, 0), 10.0)]
    current = [_les(0, "LAD", (1.5, -1, 0.5), 60.0),  # grew, moved a little
               _les(1, "RCA", (41, 1, 0), 31.0),  # stable
               _les(2, "LAD", (0, 0, 30), 5.0),  # new, far from anything
               _les(3, "LCX", (2, 40, 0), 12.0),  # near the LCX lesion: stable
               _les(4, "LCX", (3, 44, 0), 4.0)]  # leftover within the gate of the same lesion: split part
    ev = {(e["prior"], e["current"]): e["status"] for e in match_lesions(prior, current)}
    assert ev[(0, 0)] == "grown" and ev[(1, 1)] == "stable" and ev[(None, 2)] == "new"
    assert ev[(2, 3)] == "stable" and ev[(2, 4)] == "grown"
    # the artery must agree: an RCA lesion at the same place is not the LAD lesion
    ev = match_lesions([_les(0, "LAD", (0, 0, 0), 20.0)], [_les(0, "RCA", (0, 0, 0), 20.0)])
    assert sorted(e["status"] for e in ev) == ["gone", "new"]
    # LAD and LCX share the left main: a lesion whose attribution flipped between scans still matches,
    # but a same-artery lesion at a similar distance is preferred
    ev = match_lesions([_les(0, "LAD", (0, 0, 0), 20.0)], [_les(0, "LCX", (1, 0, 0), 20.0)])
    assert ev[0]["status"] == "stable" and ev[0]["artery_prior"] == "LAD"
    ev = match_lesions([_les(0, "LAD", (0, 0, 0), 20.0)], [_les(0, "LCX", (1, 0, 0), 20.0), _les(1, "LAD", (3, 0, 0), 20.0)])
    assert {(e["prior"], e["current"]): e["status"] for e in ev}[(0, 1)] == "stable"
    # a long plaque seen in pieces: a leftover beyond the gate but touching a matched lesion of the same
    # scan is a split part of it; one 10 mm away from it is new
    def boxed(i, art, xyz, lo, hi):
        return replace(_les(i, art, xyz, 10.0), box_mm=(np.asarray(lo, float), np.asarray(hi, float)))

    prior = [_les(0, "LCX", (0, 0, 0), 30.0)]
    current = [boxed(0, "LCX", (1, 0, 0), (0, 0, 0), (6, 6, 6)), boxed(1, "LCX", (12, 0, 0), (7.5, 0, 0), (12, 4, 4)),
               boxed(2, "LAD", (20, 0, 0), (16, 0, 0), (22, 4, 4))]
    ev = {e["current"]: e for e in match_lesions(prior, current)}
    assert ev[1]["status"] == "grown" and ev[1]["split"] and ev[1]["prior"] == 0
    assert ev[2]["status"] == "new"


def _result(agatston: dict, volume: dict) -> StudyResult:
    arts = {a: {"assessed": True, "agatston": agatston[a], "calcium_volume_mm3": volume[a]} for a in agatston}
    return StudyResult.from_json({"study": {"patient_id": "P"}, "arteries": arts,
                                  "total": {"agatston": sum(agatston.values()),
                                            "calcium_volume_mm3": sum(volume.values())}})


def test_artery_change_annualised_and_against_repeatability():
    a = _result({"RCA": 100.0, "LAD": 0.0, "LCX": 50.0}, {"RCA": 80.0, "LAD": 0.0, "LCX": 40.0})
    b = _result({"RCA": 144.0, "LAD": 20.0, "LCX": 51.0}, {"RCA": 140.0, "LAD": 16.0, "LCX": 41.0})
    ch = artery_change(a, b, 2.0)
    assert ch["RCA"]["agatston_change_per_year"] == 22.0
    assert ch["RCA"]["agatston_percent_per_year"] == pytest.approx(20.0, abs=0.01)
    assert ch["RCA"]["progression"] and ch["RCA"]["fast"]  # sqrt(140) - sqrt(80) = 2.89 >= 2.5, 20 %/y > 15
    assert ch["LAD"]["progression"] and ch["LAD"]["agatston_percent_per_year"] is None  # incident: sqrt 16 = 4
    assert not ch["LCX"]["exceeds_repeatability"]
    assert ch["RCA"]["sqrt_volume_change"] == pytest.approx(np.sqrt(140.0) - np.sqrt(80.0), abs=1e-3)


# --- the command on real scan outputs -------------------------------------------------------------
@pytest.fixture(scope="module")
def serial_results(serial_cohort, tmp_path_factory):
    import os

    res = tmp_path_factory.mktemp("serial_scan") / "results"
    os.environ["CACPIPE_TEST_TRUTH"] = str(serial_cohort / "truth")
    try:
        r = CliRunner().invoke(cli, ["scan", str(serial_cohort / "export"), "--out", str(res), "--no-progress",
                                     "--analyse", "progression_oracle:oracle_analyse"])
    finally:
        del os.environ["CACPIPE_TEST_TRUTH"]
    assert r.exit_code == 0, r.output
    return res


def test_progression_command_end_to_end(reviewed_serial, serial_results):
    out = reviewed_serial["root"] / "prog"  # `cacpipe progression RESULTS -o OUT`, `cacpipe evaluate OUT COHORT` (the fixture)
    doc = reviewed_serial["doc"]
    p = doc["patients"][f"PV2{SEED:07d}"]
    assert len(p["studies"]) == 3 and [q["years"] for q in p["pairs"]][1] > 1.9
    assert all(q["registration"]["seconds"] < 30 for q in p["pairs"])
    assert doc["repeatability"]["sqrt_volume_threshold"] == 2.5 and "Hokanson" in doc["repeatability"]["source"]
    ev = doc["evaluation"]
    assert ev["matching"]["accuracy"] == 1.0 and ev["false_new"]["matching"] == 0
    rescan = p["pairs"][0]
    assert rescan["counts"]["new"] == 0  # nothing appears on a rescan (lesions can drop under 130 HU: gone)
    assert p["pairs"][1]["lesions"] and ev["matching"]["decisions"] >= 2
    rows = list(csv.DictReader(open(out / "progression.csv")))
    assert len(rows) == 2 * 4 and {r["artery"] for r in rows} == {"RCA", "LAD", "LCX", "total"}
    page = (out / "progression.html").read_text()
    assert "<svg" in page and "L1" in page and "RESEARCH USE ONLY" in page
    # every study says which model and heart locator measured it; one method throughout here
    assert all("model " in s["made_by"] and s["heart_locator"] for s in p["studies"])
    assert all(q["same_method"] for q in p["pairs"]) and "measured by different models" not in page
    assert p["studies"][0]["made_by"] in page and rows[0]["prior_made_by"] == p["studies"][0]["made_by"]
    assert page.count("data:image/png;base64,") >= 2  # prior and current side by side at a lesion
    assert "lesion matching" in reviewed_serial["output"]
    # the scan's cohort.csv carries progression columns when a patient has several studies
    cohort = list(csv.DictReader(open(serial_results / "cohort.csv")))
    assert [c["prior_study_uid"] for c in cohort][0] == "" and cohort[2]["prior_study_uid"] == cohort[1]["study_uid"]
    assert float(cohort[2]["years_since_prior"]) > 1.9 and cohort[1]["years_since_prior"] == "0"


def test_progression_mapping_joins_pseudonyms(serial_results, tmp_path):
    doc0 = json.loads(json.dumps(_run(serial_results, tmp_path / "a", "--no-images", "--no-study-outputs")))
    uids = [s["study_uid"] for s in doc0["patients"][f"PV2{SEED:07d}"]["studies"]]
    mapping = tmp_path / "map.csv"
    mapping.write_text("subject,study_uid\n" + "".join(f"S1,{u}\n" for u in uids))
    doc = _run(serial_results, tmp_path / "b", "--mapping", str(mapping), "--no-images", "--no-study-outputs")
    assert list(doc["patients"]) == ["S1"]


def _run(results, out, *extra) -> dict:
    r = CliRunner().invoke(cli, ["progression", str(results), "-o", str(out), *extra])
    assert r.exit_code == 0, r.output
    return json.loads((out / "progression.json").read_text())


def test_cli_errors_are_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["progression", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not a cacpipe scan results folder" in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["progression", "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "results folder" in r.output
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "manifest.json").write_text("{}")
    bad = tmp_path / "map.csv"
    bad.write_text("who,what\n1,2\n")
    r = CliRunner().invoke(cli, ["progression", str(tmp_path / "res"), "-o", str(tmp_path / "o"), "--mapping", str(bad)])
    assert r.exit_code == 2 and "needs a 'subject' column" in r.output
    r = CliRunner().invoke(cli, ["phantom", "cohort", "1", str(tmp_path / "c"), "--follow-up", "soon"])
    assert r.exit_code == 2 and "--follow-up takes years" in r.output


def test_grouping_orders_by_date_and_says_why_a_study_is_left_out(tmp_path):
    from cacpipe.progression.group import load_studies

    studies = {}
    for key, pid, date, status in [("a", "P1", "20270301", "done"), ("b", "P1", "20250301", "done"),
                                   ("c", "P1", "", "done"), ("d", "", "20250101", "done"), ("e", "P1", "20260101", "failed"),
                                   ("f", "P2", "20260101", "done")]:
        folder = tmp_path / key
        folder.mkdir()
        StudyResult.from_json({"study": {"patient_id": pid, "study_uid": f"1.2.{key}", "study_date": date}}).save(
            folder / "result.json")
        studies[key] = {"status": status, "result": f"{key}/result.json", "patient_id": pid}
    (tmp_path / "manifest.json").write_text(json.dumps({"studies": studies}))
    g = load_studies(tmp_path)
    assert [s.study_uid for s in g.patients["P1"]] == ["1.2.b", "1.2.a"] and list(g.serial) == ["P1"]
    reasons = {s["study"]: s["reason"] for s in g.skipped}
    assert "not a date" in reasons["c"] and "no PatientID" in reasons["d"] and "failed" in reasons["e"]


def test_a_lesion_a_scan_in_between_missed_reappears_with_its_track():
    from cacpipe.progression.run import _reappeared

    class _S:
        study_uid = "1.2.first"

    ended = {"L3": (0, 2, _les(2, "LAD", (10, 0, 0), 20.0))}
    events = [{"prior": None, "current": 0, "status": "new"}, {"prior": None, "current": 1, "status": "new"}]
    shift = np.array([5.0, 0.0, 0.0])  # the middle study's space: 5 mm from the first's
    chain = [None, lambda p: p + shift]
    current = [_les(0, "LCX", (5.5, 0, 0), 22.0), _les(1, "RCA", (40, 0, 0), 5.0)]
    _reappeared(events, current, ended, chain, 1, [_S()])
    assert events[0]["status"] == "reappeared" and events[0]["track"] == "L3" and events[0]["earlier_lesion"] == 2
    assert events[1]["status"] == "new" and not ended


def test_a_pair_measured_by_different_models_says_so(serial_results, tmp_path):
    """A change between studies measured by two models may be the models': the pair says so."""
    import shutil

    res = tmp_path / "results"
    shutil.copytree(serial_results, res)
    results = sorted(res.glob("*/*/result.json"), key=lambda p: json.loads(p.read_text())["study"]["study_date"])
    doc = json.loads(results[-1].read_text())
    doc["pipeline"]["model"] = {**doc["pipeline"].get("model", {}), "id": "0123456789ab", "name": "Dataset777_other/x"}
    results[-1].write_text(json.dumps(doc))
    out = tmp_path / "prog"
    r = CliRunner().invoke(cli, ["progression", str(res), "-o", str(out), "--no-images", "--no-study-outputs"])
    assert r.exit_code == 0, r.output
    pairs = json.loads((out / "progression.json").read_text())["patients"][f"PV2{SEED:07d}"]["pairs"]
    assert [q["same_method"] for q in pairs] == [True, False]
    assert "measured by different models" in (out / "progression.html").read_text()


# --- the later study's own outputs: review page and SR with the prior -----------------------------
def _sr_texts(ds) -> list[str]:
    out = []

    def walk(items):
        for it in items:
            if it.get("ValueType") == "TEXT":
                out.append(str(it.TextValue))
            walk(it.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


@pytest.fixture(scope="module")
def reviewed_serial(serial_results, serial_cohort, tmp_path_factory):
    """serial_results with review outputs (page, SEG, SR) for the last pair (to the 2-year follow-up),
    then `cacpipe progression RESULTS -o OUT` and `cacpipe evaluate OUT COHORT` run on it (default: the studies' outputs
    get the prior; one run serves every test of the command's outputs)."""
    import shutil

    from cacpipe.config import ReviewSettings
    from cacpipe.ingest import read_ct
    from cacpipe.review import build_review
    from cacpipe.volume import Volume

    root = tmp_path_factory.mktemp("reviewed_serial")
    res = root / "results"
    shutil.copytree(serial_results, res)
    for old in res.glob("*/*/prior"):  # another test's progression run may have left one
        shutil.rmtree(old)
    from cacpipe.progression.group import load_studies

    studies = load_studies(res).serial[f"PV2{SEED:07d}"]  # in the order progression pairs them
    paths = [s.folder / "result.json" for s in studies[-2:]]  # the last pair: prior, current
    export = serial_cohort / "export" / f"PV2{SEED:07d}"
    for p in paths:
        result = StudyResult.load(p)
        sources = read_ct(export, series_uid=result.study.series_uid).sources
        written = build_review(p.parent, Volume.read(p.parent / "ct.nii.gz"), Volume.read(p.parent / "labels.nii.gz"),
                               result, sources, ReviewSettings(max_slices=2))
        result.outputs.update({k: v for k, v in written.items() if k in ("sr", "seg", "review_html")})
        result.save(p)
    before = pydicom.dcmread(str(paths[-1].parent / "dicom" / "sr.dcm"))
    r = CliRunner().invoke(cli, ["progression", str(res), "-o", str(root / "prog")])
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "prog" / "progression.json").read_text())
    # scored by the evaluation wing (the core's progression command never imports it)
    e = CliRunner().invoke(cli, ["evaluate", str(root / "prog"), str(serial_cohort), "-o", str(root / "prog")])
    assert e.exit_code == 0, e.output
    doc["evaluation"] = json.loads((root / "prog" / "progression_evaluation.json").read_text())
    return {"root": root, "paths": paths, "doc": doc, "before": before, "output": r.output + e.output}


def test_the_later_study_page_shows_the_prior_beside_it_with_match_ids(reviewed_serial):
    from cacpipe.review.prior import read_prior
    from cacpipe.review.viewer_data import decode_array

    last = reviewed_serial["paths"][-1].parent
    pair = reviewed_serial["doc"]["patients"][f"PV2{SEED:07d}"]["pairs"][-1]
    assert pair["study_outputs"]["review_html"] == "review.html" and pair["study_outputs"]["sr"] == "dicom/sr.dcm"
    prior = read_prior(last, StudyResult.load(last / "result.json"))
    assert prior["prior"]["study_uid"] == pair["prior"] and prior["current_to_prior"] is not None
    assert [e["match_id"] for e in prior["lesions"]] == [e["match_id"] for e in pair["lesions"]]
    page = (last / "review.html").read_text()
    data = json.loads(page.split('id="review-data">', 1)[1].split("</script>", 1)[0])
    pv = data["prior"]["volume"]
    heart = data["volumes"]["heart"]["ct"]
    assert pv["shape_zyx"] == heart["shape_zyx"] and pv["offset_zyx"] == heart["offset_zyx"]  # the viewer's slices
    # registered: the prior's calcium lies where the current page's lesions are
    hu = decode_array(pv["data"], "uint8", pv["shape_zyx"]) * pv["slope"] + pv["inter"]
    cur = decode_array(heart["data"], "int16", heart["shape_zyx"])
    both = (hu >= 130) & (cur >= 130)
    assert both.sum() > 0.3 * min((hu >= 130).sum(), (cur >= 130).sum())
    for e in pair["lesions"]:
        assert f"data-match='{e['match_id']}'" in page
    assert "id=prior-study" in page and "prior-canvas" in page and "cacpipe-cross" in page
    d = prior["prior"]["study_date"]
    assert f"{d[:4]}-{d[4:6]}-{d[6:8]}" in page
    # a site that shows no study dates (review.fields) sees the years between the studies only
    from cacpipe.config import ReviewSettings
    from cacpipe.review.page import study_page
    from cacpipe.volume import Volume

    res = StudyResult.load(last / "result.json")
    undated = study_page(Volume.read(last / "ct.nii.gz"), Volume.read(last / "labels.nii.gz"), res, None,
                         ReviewSettings(fields=("anon_id",)), prior=prior, study_dir=last)
    assert "id=prior-study" in undated and "years before" in undated and f"{d[:4]}-{d[4:6]}-{d[6:8]}" not in undated
    assert d not in undated.split('id="review-data">', 1)[1]
    # another version of the result (a rescan) does not get this prior
    other = StudyResult.load(last / "result.json")
    other.lesions = other.lesions[:-1]
    assert read_prior(last, other) is None


def test_the_later_study_sr_carries_the_prior_values_and_the_change(reviewed_serial):
    last = reviewed_serial["paths"][-1].parent
    pair = reviewed_serial["doc"]["patients"][f"PV2{SEED:07d}"]["pairs"][-1]
    before, sr = reviewed_serial["before"], pydicom.dcmread(str(last / "dicom" / "sr.dcm"))
    assert sr.SOPInstanceUID != before.SOPInstanceUID and sr.SeriesInstanceUID == before.SeriesInstanceUID
    assert sr.StudyInstanceUID == before.StudyInstanceUID and sr.PatientID == before.PatientID
    old_refs = {r.ReferencedSOPInstanceUID for s in before.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    new_refs = {r.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    assert new_refs == old_refs  # the same source slices and SEG
    texts = _sr_texts(sr)
    assert not any("Prior study" in t for t in _sr_texts(before))
    for a in ("RCA", "LAD", "LCX", "total"):
        ch = pair["arteries"][a]
        want = f"Agatston {ch['agatston_prior']:.1f}, volume {ch['volume_prior_mm3']:.1f} mm3"
        assert sum(want in t and t.startswith("Prior study (") for t in texts) >= 1, (a, want)
        assert any(t.startswith("Change since the prior study: Agatston " + f"{ch['agatston_change']:+.1f}")
                   for t in texts)
    assert any(pair["prior"] in t and t.startswith("compared with the prior study") for t in texts)
    # the baseline's SR is referenced as other evidence (another study)
    base = pydicom.dcmread(str(reviewed_serial["paths"][0].parent / "dicom" / "sr.dcm"))
    other = {r.ReferencedSOPInstanceUID for s in sr.PertinentOtherEvidenceSequence
             for se in s.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
    assert other == {base.SOPInstanceUID}
    import os
    import subprocess

    if os.path.exists("/usr/bin/dciodvfy"):  # dicom3tools (`make test` installs it): a valid SR
        out = subprocess.run(["/usr/bin/dciodvfy", str(last / "dicom" / "sr.dcm")], capture_output=True, text=True)
        assert not [x for x in (out.stdout + out.stderr).splitlines() if x.startswith(("Error", "Warning"))]


@pytest.mark.browser
def test_the_prior_pane_follows_the_viewer_in_chromium(reviewed_serial):
    """In headless Chromium: the prior pane draws the prior CT at the viewer's slice, follows the
    slider, and a match row's current lesion button takes both to that lesion."""
    import os
    import time

    from devtools.browser import CHROMIUM, Browser, Page

    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium not installed (make test installs it)")
    last = reviewed_serial["paths"][-1].parent
    pair = reviewed_serial["doc"]["patients"][f"PV2{SEED:07d}"]["pairs"][-1]
    browser = Browser(reviewed_serial["root"] / "profile")
    try:
        page = Page(browser)
        page.open(last / "review.html", "#viewer=basic")
        deadline = time.time() + 30
        while not page.js("document.body.dataset.priorReady === '1'") and time.time() < deadline:
            time.sleep(0.1)
        caption = lambda: page.js("document.getElementById('prior-caption').textContent")  # noqa: E731
        pixels = lambda: page.js("Array.from(document.getElementById('prior-canvas').getContext('2d')"  # noqa: E731
                                 ".getImageData(0, 0, 400, 400).data.filter((v, i) => i % 4 === 0)).join(',')")
        assert "same slice" in caption() and "NOT registered" not in caption()
        first = (caption(), pixels())
        page.js("(() => { const r = document.getElementById('slice-range'); r.value = String(Number(r.value) + 8);"
                " r.dispatchEvent(new Event('input')); })()")
        assert caption() != first[0] and pixels() != first[1]  # the pane followed the viewer
        mid = next(e["match_id"] for e in pair["lesions"] if e["current_lesion"])
        name = next(e["current_lesion"] for e in pair["lesions"] if e["match_id"] == mid)
        page.js(f"document.querySelector(\"button[data-prior-select='{name}']\").click()")
        assert mid in caption().split("\u00b7")[-1]  # at that lesion's slice, ringed with its id
        assert page.js("document.querySelector('#lesion-table tr.selected') !== null")
        flags = page.js("Array.from(document.querySelectorAll('#lesion-table td.flags')).map((t) => t.textContent)")
        assert any(f.startswith(mid + " ") and "since the prior study" in f for f in flags)  # the id in the table too
    finally:
        browser.close()


def test_the_prior_ct_tells_a_missed_lesion_from_a_new_one(small_phantom):
    """prior_look on a real phantom CT: the calcium of a plaque is found at its place (a lesion
    there is missed_before, not new), nothing at a place without calcium, even with low-dose noise."""
    from dataclasses import replace as dc_replace

    from scipy import ndimage

    from cacpipe.labels import CALCIUM_ID
    from cacpipe.phantom import PhantomConfig, generate
    from cacpipe.progression.prior_look import prior_calcium, seen_before

    ct, lab = small_phantom.ct, small_phantom.labels
    calc = (lab.array == CALCIUM_ID["RCA"]) & (ct.array >= 130)
    comp, n = ndimage.label(calc)
    big = int(np.argmax(np.bincount(comp.ravel())[1:])) + 1
    zyx = np.array(ndimage.center_of_mass(comp == big))
    xyz = ct.index_to_physical(zyx[None])[0]
    vol = float((comp == big).sum() * ct.voxel_volume_mm3)
    found = prior_calcium(ct, xyz + np.array([1.5, -1.0, 0.0]), 4.0)  # a registration residual off
    assert found["volume_mm3"] > 0.5 * vol and found["peak_hu"] >= 300 and seen_before(found)
    # the heart's soft tissue, no calcium within 10 mm (on the noise-free CT), also at 60 HU noise
    clean = generate(dc_replace(PhantomConfig.preset("small"), noise_hu=0.0)).ct
    quiet = (ndimage.maximum_filter(clean.array, size=(11, 13, 13)) < 60) & (clean.array > 20)
    k = np.argwhere(quiet)
    spot = k[np.argmin(np.abs(k - zyx).sum(axis=1))]  # the quiet voxel nearest the plaque
    rng = np.random.default_rng(7)  # low-dose noise as the generator draws it (Gaussian, 60 HU)
    noisy = clean.with_array(clean.array + rng.normal(0.0, 60.0, clean.shape).astype(np.float32))
    centre = noisy.index_to_physical(spot[None].astype(float))[0]
    for v in (ct, noisy):
        assert not seen_before(prior_calcium(v, centre, 4.0))


def test_the_demo_follow_up_is_the_same_patient_later_and_its_trend_reads_the_truth(tmp_path):
    """`cacpipe demo`'s DEMO001 follow-up: same patient, later date, its own study; plaques grown and
    one new; the trend table pairs reported and true numbers study by study."""
    from cacpipe.evaluation.demo import trend_table
    from cacpipe.phantom.demo_export import FOLLOW_UP_RATES, write_demo_export

    tiny = {"shape_yx": (64, 64), "pixel_mm": 400.0 / 64, "n_slices": 24}
    studies = write_demo_export(tmp_path / "export", truth_dir=tmp_path / "truth", follow_up=True, **tiny)
    base = json.loads((tmp_path / "truth" / "DEMO001.json").read_text())
    later = json.loads((tmp_path / "truth" / "DEMO001_20280107.json").read_text())
    assert len(studies) == 4 and later["study_uid"] == studies[-1]["study_uid"] != base["study_uid"]
    ds = pydicom.dcmread(next(f for f in (tmp_path / "export" / "DEMO001").rglob("*") if f.is_file()
                              and "20280107" in str(f)), stop_before_pixels=True)
    assert (ds.PatientID, ds.PatientBirthDate, ds.StudyDate) == ("DEMO001", "19550101", "20280107")
    assert ds.StudyInstanceUID == later["study_uid"]
    r0, r1 = base["config"]["plaques"], later["config"]["plaques"]
    assert len(r1) == len(r0) + 1 and all(b["radius_mm"] >= a["radius_mm"] for a, b in zip(r0, r1, strict=False))
    assert [b["radius_mm"] > a["radius_mm"] for a, b in zip(r0, r1, strict=False)] == [r > 0 for r in FOLLOW_UP_RATES]
    doc = {"repeatability": {"sqrt_volume_threshold": 2.5}, "patients": {"DEMO001": {
        "studies": [{"study_uid": base["study_uid"], "study_date": "20260105"},
                    {"study_uid": later["study_uid"], "study_date": "20280107"}],
        "pairs": [{"prior": base["study_uid"], "current": later["study_uid"], "years": 2.0,
                   "counts": {"new": 1, "grown": 0, "stable": 3},
                   "arteries": {"RCA": {"agatston_prior": 1.0, "agatston": 2.0, "agatston_change_per_year": 0.5,
                                        "sqrt_volume_change": 0.1, "progression": False}}}]}}}
    text = trend_table(doc, tmp_path / "truth")
    rca = next(ln for ln in text.splitlines() if ln.startswith("RCA"))
    t0, t1 = base["arteries"]["RCA"]["agatston"], later["arteries"]["RCA"]["agatston"]
    assert f"{t0:.1f} / 1.0" in rca and f"{t1:.1f} / 2.0" in rca and "/ no" in rca
