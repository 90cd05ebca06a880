"""Before and after training, without training: the case checks of the dry run, the sources of
training cases, the disk/time arithmetic, and the cross-validation tables on known predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cacpipe.errors import InputDataError
from cacpipe.labels import CALCIUM_ID
from cacpipe.phantom import PhantomConfig, Plaque, generate
from cacpipe.volume import Volume
from label_tools.annotations import Case, read_training_cases
from label_tools.checks import check_case
from label_tools.convert import export_con


@pytest.fixture(scope="module")
def case_files(small_phantom, tmp_path_factory):
    """The small phantom as a CT file, its .con and variants broken in one way each."""
    d = tmp_path_factory.mktemp("cases")
    ct, lab = small_phantom.ct, small_phantom.labels
    ct.write(d / "ct.nii.gz")
    export_con(lab, d / "good.con")
    text = (d / "good.con").read_bytes()
    (d / "badtype.con").write_bytes(text.replace(b" 0 3 1.0", b" 0 8 1.0", 1))
    export_con(lab.with_array(lab.array[::-1].copy()), d / "reversed.con")  # annotated in the other slice order
    Volume(ct.array[:90].copy(), ct.spacing_zyx, ct.origin_xyz, ct.direction).write(d / "short.nii.gz")  # 90 of 100
    ct.with_array(ct.array + 1024.0).write(d / "not_hu.nii.gz")  # stored values, rescale not applied
    return d


@pytest.mark.parametrize("image,contour,status,fragment", [
    ("ct", "good", "ok", None),
    ("ct", "badtype", "failed", "unknown contour type 8"),
    ("short", "good", "failed", "slice"),
    ("not_hu", "good", "failed", "does not look like a CT in HU"),
    ("ct", "reversed", "failed", "try --slice-order reversed"),
    ("missing", "good", "failed", "CT image not found"),
])
def test_case_checks(case_files, image, contour, status, fragment):
    d = case_files
    chk, loaded = check_case(Case("c", "p", d / f"{image}.nii.gz", d / f"{contour}.con", source=str(d)))
    assert chk.status == status, chk.problems
    if fragment:
        assert any(fragment in p for p in chk.problems), chk.problems
    else:
        assert loaded is not None and chk.problems == [] and chk.calcium_fraction_ge_130 == 1.0
        assert chk.spacing_zyx == [2.0, 1.5625, 1.5625] and chk.shape_zyx == [100, 256, 256]
        assert chk.contrast is False and "median artery HU" in chk.contrast_reason
        assert chk.input_kind == "image" and chk.scanner == "" and chk.slice_thickness_mm is None
        ext = chk.labelled_extent_mm_zyx
        assert all(10 < e < 160 for e in ext)  # the coronary tree: heart-sized, not the chest


def test_case_folders_and_their_checks(small_phantom, tmp_path):
    ct, lab = small_phantom.ct, small_phantom.labels
    for name, labels in (("good", lab), ("empty", lab.with_array(np.zeros_like(lab.array))),
                         ("foreign", lab.with_array(np.where(lab.array == 1, 9, lab.array).astype(np.uint8)))):
        ct.write(tmp_path / "cases" / name / "ct.nii.gz")
        labels.write(tmp_path / "cases" / name / "labels.nii.gz")
    (tmp_path / "cases" / "good" / "patient.txt").write_text("P-good\n")
    contrast = generate(PhantomConfig.preset("small", contrast=True))
    contrast.ct.write(tmp_path / "cases" / "contrast" / "ct.nii.gz")
    contrast.labels.write(tmp_path / "cases" / "contrast" / "labels.nii.gz")
    cases = {c.case: c for c in read_training_cases([tmp_path / "cases"])}
    assert sorted(cases) == ["contrast", "empty", "foreign", "good"] and cases["good"].patient_id == "P-good"
    assert cases["empty"].patient_id == "empty" and cases["good"].contour is None
    checks = {k: check_case(c)[0] for k, c in cases.items()}
    assert checks["good"].ok and checks["good"].voxels_by_class["RCA_calcium"] == int((lab.array == 4).sum())
    assert "no artery is labelled" in checks["empty"].problems[0]
    assert "label ids [9]" in checks["foreign"].problems[0]
    assert checks["contrast"].ok and checks["contrast"].contrast is True
    # a case id twice over two DATA folders is an error naming both
    ct.write(tmp_path / "more" / "good" / "ct.nii.gz")
    lab.write(tmp_path / "more" / "good" / "labels.nii.gz")
    with pytest.raises(InputDataError, match="case id good appears in"):
        read_training_cases([tmp_path / "cases", tmp_path / "more"])
    with pytest.raises(InputDataError, match="no training cases"):
        read_training_cases([tmp_path / "cases" / "good"])


def test_disk_and_time_arithmetic():
    from label_tools.checks import CaseCheck
    from nnunet_plans.dryrun import crop_voxels, disk_estimate, run_length, time_estimate

    chk = CaseCheck("c", "p", shape_zyx=[100, 512, 512], spacing_zyx=[2.0, 0.8, 0.8],
                    labelled_extent_mm_zyx=[100.0, 80.0, 90.0])
    # (100 + 40) / 1, (80 + 40) / 1, (90 + 40) / 1 voxels at 1 mm
    assert crop_voxels(chk, (1.0, 1.0, 1.0)) == 140 * 120 * 130
    full = CaseCheck("c", "p", shape_zyx=[10, 20, 20], spacing_zyx=[1.0, 1.0, 1.0], labelled_extent_mm_zyx=[9, 19, 19])
    assert crop_voxels(full, (1.0, 1.0, 1.0)) == 10 * 20 * 20  # never more than the scan
    disk = disk_estimate([chk, CaseCheck("x", "q", status="failed")], (1.0, 1.0, 1.0), parameters=1000, folds=5)
    assert disk["crop_voxels"] == 140 * 120 * 130
    assert disk["parts_bytes"]["model zip (final checkpoints)"] == 5 * 1000 * 4 * 3
    assert disk["total_bytes"] == sum(disk["parts_bytes"].values())
    assert run_length({}, "nnUNetTrainer_250epochs") == (250, 250, 50)
    assert run_length({}, "nnUNetTrainer_cacpipe250") == (250, 250, 50)
    assert run_length({"num_epochs": 200, "iterations_per_epoch": 20}, "nnUNetTrainer_cacpipeShort", 7) == (7, 20, 50)
    assert run_length({}, "nnUNetTrainer") == (1000, 250, 50)
    t = time_estimate({"seconds_per_step": 0.3}, 250, 250, 50, folds=5, gpus=2)
    per_fold = 250 * (250 * 0.3 + 50 * 0.1)
    assert t["hours_per_fold"] == round(per_fold / 3600, 3) and t["hours_total"] == round(3 * per_fold / 3600, 3)


# --- cross-validation tables on known predictions ----------------------------------------------------

def test_crossval_tables_on_known_predictions(tmp_path, monkeypatch):
    """The analysis is replaced by one that returns the annotation itself, except that one case's RCA
    calcium is reported under the LCX: every table must show exactly that."""
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyResult
    from nnunet_plans import crossval
    from nnunet_plans.data import PhantomCase

    plaques = (Plaque("RCA", 0.3, 2.4, 500.0), Plaque("LAD", 0.2, 2.2, 420.0))
    cases = [PhantomCase(f"k{i}", f"P{i}", PhantomConfig.preset("small", seed=2150 + i, plaques=p))
             for i, p in enumerate((plaques, plaques, ()))]
    swapped = "k1"

    def known(series, out_dir, settings):
        lab = next(c for c in cases if c.case == series.identity.study_uid).load().labels
        arr = lab.array.copy()
        if series.identity.study_uid == swapped:  # the RCA plaque reported as LCX calcium
            arr[lab.array == CALCIUM_ID["RCA"]] = CALCIUM_ID["LCX"]
        labels = lab.with_array(arr)
        q = quantify(series.volume, labels)
        r = StudyResult(study=series.identity, arteries=q.arteries, lesions=q.lesions,
                        pipeline={"model": {"name": "known", "folds": list(settings.segment.folds)}})
        finalise(r)
        out_dir.mkdir(parents=True, exist_ok=True)
        labels.write(out_dir / "labels.nii.gz")
        r.outputs["labels"] = "labels.nii.gz"
        return r

    monkeypatch.setattr(crossval, "ANALYSE", known)
    splits = [{"train": ["k2"], "val": ["k0", "k1"]}, {"train": ["k0", "k1"], "val": ["k2"]}]
    s = crossval.cross_validate(cases, splits, [0, 1], tmp_path / "no_model", tmp_path / "cv", html=False)
    p = s["presence"]
    assert (p["LAD"]["sensitivity"], p["LAD"]["specificity"], p["LAD"]["kappa"]) == (1.0, 1.0, 1.0)
    assert (p["RCA"]["tp"], p["RCA"]["fn"], p["RCA"]["tn"], p["RCA"]["fp"]) == (1, 1, 1, 0)
    assert p["RCA"]["sensitivity"] == 0.5 and p["RCA"]["specificity"] == 1.0
    assert (p["LCX"]["fp"], p["LCX"]["tn"]) == (1, 2) and p["LCX"]["specificity"] == pytest.approx(2 / 3)
    assert p["any"]["sensitivity"] == 1.0 and p["any"]["specificity"] == 1.0
    assert s["agatston"]["total"]["n"] == 3 and s["agatston"]["total"]["bias"] == pytest.approx(0.0, abs=1e-3)  # cohort.csv keeps 4 decimals
    assert s["agatston"]["LAD"]["icc"] == pytest.approx(1.0)
    assert s["lesions"]["any"]["sensitivity"] == 1.0 and s["lesions"]["RCA"]["sensitivity"] == 0.5
    assert s["cases"] == 3 and s["patients"] == 3 and s["folds"] == [0, 1] and s["dice_nnunet"] == {}
    for case, fold in (("k0", 0), ("k1", 0), ("k2", 1)):
        res = json.loads((tmp_path / "cv" / "results" / case / "result.json").read_text())
        assert res["pipeline"]["model"]["folds"] == [fold] and res["study"]["patient_id"] == f"P{case[1]}"
    att = json.loads((tmp_path / "cv" / "evaluation" / "evaluation.json").read_text())["lesion_attribution"]
    assert att["table"][att["ref"].index("RCA")][att["pred"].index("LCX")] == 1
    rows = list(csv.DictReader(open(tmp_path / "cv" / "results" / "cohort.csv")))
    assert sorted(r["study_uid"] for r in rows) == ["k0", "k1", "k2"]
    assert Volume.read(tmp_path / "cv" / "reference" / "k0" / "ct.nii.gz").array.dtype == np.int16
