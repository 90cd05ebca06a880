"""Retraining for real, end to end on phantoms through the MASS route (issue 21):

phantom -> .con export (ANNOTATIONS with cases.csv, one case as a DICOM study) -> `make train
DRY_RUN=1` (checks, summary, disk and time) -> refused with a broken case -> `make train
SKIP_FAILED=1` with a tiny plan (stage-1 crop, preprocessing, a fold, cross-validation through the
scan pipeline) -> zip with a model card -> install (card checked and shown) -> `cacpipe scan`
(result.json names the card) -> fine-tuning from the zip on case folders (weights move, lineage kept).

Mechanics, not accuracy: the tiny model trains for one epoch of three iterations.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.errors import ModelMismatchError
from cacpipe.phantom import PatientInfo, PhantomConfig, Plaque, generate, write_study
from cacpipe.phantom.seeds import seeds_for
from cacpipe.record import StudyResult
from cacpipe.segment import install_model
from cacpipe.segment.card import CARD_JSON, CARD_MD, card_id, file_sha256
from cacpipe.volume import Volume
from label_tools.convert import export_con

pytestmark = [pytest.mark.xdist_group("train_real"), pytest.mark.train, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "configuration": "3d_fullres_tiny", "inherits_from": "3d_fullres", "spacing_zyx": [3.0, 3.0, 3.0],
    "patch_size_zyx": [16, 24, 24], "batch_size": 2, "features_base": 4, "features_max": 8, "max_stages": 3,
    "trainer": "nnUNetTrainer_cacpipeShort", "num_epochs": 1, "iterations_per_epoch": 3,
    "val_iterations_per_epoch": 1, "oversample_foreground_percent": 1.0, "folds": 2,
}
SEEDS = tuple(seeds_for("tests", 4, offset=900))  # 1900-1903: never a training or held-out seed (cacpipe.phantom.seeds)
BROKEN, OTHER = seeds_for("tests", 2, offset=990)  # the broken case's CT and the contours drawn on it
SITE = seeds_for("tests", 2, offset=910)  # fine-tuning cases
PLAQUES = (Plaque("RCA", 0.3, 2.2, 500.0), Plaque("LAD", 0.2, 2.0, 420.0))
MANUFACTURER = "GE MEDICAL SYSTEMS Phantom CT 64"


def _phantom(seed: int, i: int, plaques=PLAQUES, shift=None):
    return PhantomConfig.preset("small", seed=seed, plaques=plaques,
                                heart_shift_mm=shift or (2.0 * i, -1.0 * i, 0.0))


def _make(*args: str, **kw) -> subprocess.CompletedProcess:
    """`make train ...` as a user runs it, with this interpreter (the venv is not rebuilt)."""
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1"}
    cmd = ["make", "-s", "-o", ".venv/.installed", "train", f"BIN={Path(sys.executable).parent}", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, **kw)


@pytest.fixture(scope="module")
def ann(tmp_path_factory):
    """ANNOTATIONS: four patients (one DICOM study, one without calcium) and one broken case."""
    root = tmp_path_factory.mktemp("ANNOTATIONS")
    rows = []
    for i, seed in enumerate(SEEDS):
        cfg = _phantom(seed, i, () if i == 3 else PLAQUES)
        ph = generate(cfg)
        case, pid = f"case_{seed}", f"PATIENT_{seed}"
        image = ""
        if i == 0:  # a DICOM study, read as `cacpipe scan` reads it
            st = write_study(cfg, root / "dicom", PatientInfo(patient_id=pid), phantom=ph)
            image = str(Path(st["series"]["axial"]["dir"]).relative_to(root))
        else:
            ph.ct.write(root / "images" / f"{case}.nii.gz")
        export_con(ph.labels, root / "contours" / f"{case}.con")
        rows.append((case, pid, image))
    # broken: the contours of another patient's heart on this CT, so its calcium lies on soft tissue
    generate(PhantomConfig.preset("small", seed=BROKEN)).ct.write(root / "images" / "case_broken.nii.gz")
    other = generate(_phantom(OTHER, 0, (Plaque("RCA", 0.5, 2.2, 500.0),), shift=(25.0, 0.0, 0.0)))
    export_con(other.labels, root / "contours" / "case_broken.con")
    rows.append(("case_broken", f"PATIENT_{BROKEN}", ""))
    with open(root / "cases.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "patient_id", "image"])
        w.writerows(rows)
    plan = root.parent / "tiny_plan.json"
    plan.write_text(json.dumps(TINY))
    return root, plan


@pytest.fixture(scope="module")
def trained(ann, tmp_path_factory):
    """Dry run, refused run, then the real run leaving the broken case out."""
    root, plan = ann
    work = tmp_path_factory.mktemp("work")
    model = work / "site_model.zip"
    common = [f"DATA={root}", f"PLAN={plan}", f"WORK={work}", f"MODEL={model}", "SPLITS=2", "FOLDS=0",
              "TRAIN_ARGS=--dataset-id 963 --name massroute --num-processes 1"]
    dry = _make(*common, "DRY_RUN=1")
    dry_report = json.loads((work / "preflight.json").read_text())
    refused = _make(*common)
    refused_state = {"raw": (work / "raw" / "Dataset963_massroute").exists(), "zip": model.exists()}
    run = _make(*common, "SKIP_FAILED=1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"work": work, "zip": model, "dry": dry, "dry_report": dry_report, "refused": refused, "refused_state": refused_state, "run": run,
            "root": root}


def _card_in(zip_path: Path) -> tuple[dict, str, zipfile.ZipFile]:
    zf = zipfile.ZipFile(zip_path)
    name = next(n for n in zf.namelist() if n.endswith("/" + CARD_JSON))
    return json.loads(zf.read(name)), name.rsplit("/", 1)[0], zf


# --- the dry run and the refusal ------------------------------------------------------------------

def test_dry_run_summarises_the_data_and_catches_the_broken_case(trained):
    dry = trained["dry"]
    out = dry.stdout
    assert dry.returncode == 2, out + dry.stderr
    assert "cases: 5 (4 ok, 1 failed)" in out
    assert f"FAILED case_broken (patient PATIENT_{BROKEN}): only 0% of the calcium-labelled voxels are >= 130 HU" in out
    assert "patients: 4" in out and "folds: [2, 2] patients per validation fold" in out
    assert f"scanners: unknown (no DICOM header) (3), {MANUFACTURER} (1)" in out
    assert "slice thickness (DICOM tag): unknown (3), 2 mm (1)" in out and "slice spacing: 2 mm (4)" in out
    assert "contrast: 4 non-contrast, 0 contrast; 1 case(s) without calcium" in out
    assert "one training step" in out and "time: about" in out and "disk: about" in out
    assert "training would refuse them" in dry.stderr
    rows = {r["case"]: r for r in csv.DictReader(open(trained["work"] / "preflight.csv"))}
    assert rows["case_broken"]["status"] == "failed" and rows[f"case_{SEEDS[1]}"]["status"] == "ok"
    est = trained["dry_report"]
    assert est["step"]["parameters"] > 0 and est["time"]["epochs"] == 1 and est["disk"]["total_bytes"] > 0


def test_training_never_starts_with_a_failing_case(trained):
    r = trained["refused"]
    assert r.returncode == 2
    assert "1 case(s) failed the checks (case_broken" in r.stderr and "SKIP_FAILED=1" in r.stderr
    assert "Nothing was trained" in r.stderr
    assert trained["refused_state"] == {"raw": False, "zip": False}
    assert "leaving out 1 failed case(s): case_broken" in trained["run"].stdout


# --- the model zip and its card -------------------------------------------------------------------

def test_zip_carries_a_card_bound_to_its_weights(trained):
    card, prefix, zf = _card_in(trained["zip"])
    assert f"{prefix}/{CARD_MD}" in zf.namelist()
    assert card["id"] == card_id(card) and card["schema"] == "cacpipe.model_card/1"
    m = card["model"]
    assert m["configuration"] == "3d_fullres_tiny" and m["trainer"] == "nnUNetTrainer_cacpipeShort"
    assert m["folds"] == [0] and m["spacing_zyx"] == [3.0, 3.0, 3.0] and m["run"]["epochs_per_fold"] == {"0": 1}
    assert set(m["mirroring_axes"]) == {"0"} and m["left_right_network_axis"] == 2
    data = card["training_data"]
    assert (data["cases_listed"], data["cases_used"], data["cases_skipped"], data["patients"]) == (5, 4, 1, 4)
    assert data["scanners"] == {"unknown (no DICOM header)": 3, MANUFACTURER: 1}
    assert data["contrast"] == {"contrast": 0, "non_contrast": 4, "unknown": 0} and data["calcium_free_cases"] == 1
    assert data["heart_method"] == {"fallback": 4}  # the stage-1 crop of inference (no TotalSegmentator here)
    assert card["folds"] == {"n_splits": 2, "grouping": "patient", "trained": [0], "val_cases": [2, 2],
                             "val_patients": [2, 2]}
    assert card["lineage"] == [] and card["not_for_clinical_use"] is True
    assert card["software"]["nnunetv2"] and card["software"]["cacpipe"]
    # the digests are those of the files in the zip
    import hashlib

    for rel, digest in card["files"].items():
        assert hashlib.sha256(zf.read(f"{prefix}/{rel}")).hexdigest() == digest
    text = zf.read(f"{prefix}/{CARD_JSON}").decode()
    assert "PATIENT_" not in text and "case_1" not in text  # counts only: no ids leave the site in the card


def test_cross_validation_runs_the_scan_pipeline_against_the_annotations(trained):
    work = trained["work"]
    card, _, _ = _card_in(trained["zip"])
    cv = card["cross_validation"]
    saved = json.loads((work / "crossval" / "crossval.json").read_text())
    assert cv == saved and cv["folds"] == [0] and cv["cases"] == 2 and cv["failed"] == 0
    splits = json.loads(next((work / "raw").glob("Dataset963_*/splits_final.json")).read_text())
    assert sorted(json.loads((work / "crossval" / "results" / "manifest.json").read_text())["studies"]) == \
        sorted(splits[0]["val"])
    for case in splits[0]["val"]:
        res = json.loads((work / "crossval" / "results" / case / "result.json").read_text())
        assert res["pipeline"]["model"]["folds"] == [0]  # the fold's own network, through the scan's analysis
        assert res["pipeline"]["heart_method"] == "fallback" and res["pipeline"]["crossval"]["fold"] == 0
        lab = Volume.read(work / "crossval" / "results" / case / "labels.nii.gz")
        ref = Volume.read(work / "crossval" / "reference" / case / "labels.nii.gz")
        assert lab.same_grid(ref, tol=1e-3) and ref.shape == (100, 256, 256)  # the original CT grid, not the crop
    refs = {r["study_uid"]: r for r in csv.DictReader(open(work / "crossval" / "reference.csv"))}
    for case, r in refs.items():
        calcified = case != f"case_{SEEDS[3]}"
        assert (r["RCA_present"], r["LAD_present"], r["LCX_present"]) == (str(int(calcified)),) * 2 + ("0",)
        assert (float(r["total_agatston"]) > 0) == calcified
    anyp = cv["presence"]["any"]
    assert anyp["n"] == 2 and anyp["tp"] + anyp["fp"] + anyp["fn"] + anyp["tn"] == 2
    assert set(cv["presence"]) == {"RCA", "LAD", "LCX", "any"} and cv["agatston"]["total"]["n"] == 2
    assert set(cv["dice_nnunet"]) == {"whole_RCA", "whole_LAD", "whole_LCX", "RCA_calcium", "LAD_calcium",
                                      "LCX_calcium", "mean"}
    report = (work / "crossval" / "report.txt").read_text()
    assert "Presence" in report or "presence" in report
    assert "nnU-Net validation Dice per region" in report
    assert (work / "crossval" / "evaluation" / "report.html").exists()


# --- install, list, scan ----------------------------------------------------------------------------

def test_install_checks_and_shows_the_card(trained, tmp_path):
    card, prefix, zf = _card_in(trained["zip"])
    r = CliRunner().invoke(cli, ["models", "install", str(trained["zip"]), "--model-dir", str(tmp_path / "m"),
                                 "--accept-weak-model"])
    assert r.exit_code == 0, r.output
    assert f"model card {card['id']}" in r.output and "trained on 4 cases of 4 patients" in r.output
    assert "1-fold cross-validation on 2 cases" in r.output and "any: sensitivity" in r.output
    r = CliRunner().invoke(cli, ["models", "list", "--model-dir", str(tmp_path / "m")])
    assert f"card {card['id']}; 4 cases / 4 patients; CV kappa RCA" in r.output
    # an edited card (more cases than were used) is refused: its id no longer matches its content
    edited = dict(card, training_data={**card["training_data"], "cases_used": 400})
    bad = tmp_path / "edited.zip"
    with zipfile.ZipFile(bad, "w") as out:
        for n in zf.namelist():
            out.writestr(n, json.dumps(edited) if n.endswith(CARD_JSON) else zf.read(n))
    with pytest.raises(ModelMismatchError, match="the card was edited"):
        install_model(bad, tmp_path / "m2")
    # a consistent card for other weights is refused too
    other = dict(card, files={**card["files"], "fold_0/checkpoint_final.pth": "0" * 64})
    other["id"] = card_id(other)
    with zipfile.ZipFile(bad, "w") as out:
        for n in zf.namelist():
            out.writestr(n, json.dumps(other) if n.endswith(CARD_JSON) else zf.read(n))
    with pytest.raises(ModelMismatchError, match="fold_0/checkpoint_final.pth is not the file"):
        install_model(bad, tmp_path / "m3")
    assert not (tmp_path / "m3" / prefix).exists()


def test_card_less_model_says_so_and_the_demo_card_says_what_it_is(tmp_path):
    from cacpipe.segment.models import DEMO_ZIP

    # the shipped demo model was made by `make demo-model`: its card names its use
    r = CliRunner().invoke(cli, ["models", "install", str(DEMO_ZIP), "--model-dir", str(tmp_path / "demo")])
    assert r.exit_code == 0 and "NOT FOR CLINICAL USE" in r.output and "no model card" not in r.output
    # a bare nnU-Net zip (no card) installs, and install and list say it has no card
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(DEMO_ZIP) as zf, zipfile.ZipFile(bare, "w") as out:
        for n in zf.namelist():
            if not n.endswith((CARD_JSON, CARD_MD)):
                out.writestr(n, zf.read(n))
    r = CliRunner().invoke(cli, ["models", "install", str(bare), "--model-dir", str(tmp_path / "bare")])
    assert r.exit_code == 0 and "no model card" in r.output, r.output
    r = CliRunner().invoke(cli, ["models", "list", "--model-dir", str(tmp_path / "bare")])
    assert "no model card" in r.output


def test_scan_result_names_the_model_card(trained, tmp_path):
    card, _, _ = _card_in(trained["zip"])
    install_model(trained["zip"], tmp_path / "models", accept_weak=True)
    r = CliRunner().invoke(cli, ["scan", str(trained["root"] / "dicom"), "--out", str(tmp_path / "out"),
                                 "--model-dir", str(tmp_path / "models"), "--no-review", "--no-progress"])
    assert r.exit_code == 0, r.output
    res_path = next((tmp_path / "out").rglob("result.json"))
    res = json.loads(res_path.read_text())
    assert res["pipeline"]["model"]["card_id"] == card["id"]
    assert res["pipeline"]["model"]["name"] == card["model"]["name"]
    # every output states it (main's provenance: statement, cohort.csv)
    assert f"card {card['id']}" in StudyResult.load(res_path).provenance_statement()
    (row,) = csv.DictReader(open(tmp_path / "out" / "cohort.csv"))
    assert row["model_card_id"] == card["id"] and f"card {card['id']}" in row["statement"]


# --- fine-tuning ----------------------------------------------------------------------------------

def test_fine_tuning_starts_from_the_parent_and_keeps_the_lineage(trained, tmp_path):
    parent_card, prefix, zf = _card_in(trained["zip"])
    cases = tmp_path / "site_cases"  # the case-folder layout `cacpipe review apply --training-cases` writes
    for i, seed in enumerate(SITE):
        ph = generate(_phantom(seed, i))
        d = cases / f"site_{seed}"
        ph.ct.write(d / "ct.nii.gz")
        ph.labels.write(d / "labels.nii.gz")
        (d / "patient.txt").write_text(f"SITE_PATIENT_{i}\n")
    work = tmp_path / "work"
    child_zip = tmp_path / "site_finetuned.zip"
    r = _make(f"DATA={cases}", f"INIT={trained['zip']}", f"WORK={work}", f"MODEL={child_zip}", "SPLITS=2", "FOLDS=0",
              "EPOCHS=1", "TRAIN_ARGS=--dataset-id 964 --name finetuned --num-processes 1 --no-crossval")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "starting from" in r.stdout
    card, child_prefix, czf = _card_in(child_zip)
    assert card["lineage"][0]["card_id"] == parent_card["id"]
    assert card["lineage"][0]["model_name"] == parent_card["model"]["name"]
    assert card["lineage"][0]["zip_sha256"] == file_sha256(trained["zip"])
    assert card["init"]["fold_map"] == {"0": 0} and card["cross_validation"] is None
    assert card["training_data"]["cases_used"] == 2 and card["model"]["plan_spec"] is None
    # the parent's plan, untouched but for the dataset name
    pp, cp = (json.loads(z.read(f"{p}/plans.json")) for z, p in ((zf, prefix), (czf, child_prefix)))
    assert {**pp, "dataset_name": ""} == {**cp, "dataset_name": ""}
    # the weights moved, from the parent's (a random start would be uncorrelated with them)
    import io

    w0 = torch.load(io.BytesIO(zf.read(f"{prefix}/fold_0/checkpoint_final.pth")), weights_only=False)["network_weights"]
    w1 = torch.load(io.BytesIO(czf.read(f"{child_prefix}/fold_0/checkpoint_final.pth")),
                    weights_only=False)["network_weights"]
    assert w0.keys() == w1.keys()
    a = np.concatenate([w0[k].float().ravel().numpy() for k in w0 if "conv.weight" in k])
    b = np.concatenate([w1[k].float().ravel().numpy() for k in w1 if "conv.weight" in k])
    assert not np.array_equal(a, b)
    assert np.corrcoef(a, b)[0, 1] > 0.9
    heads = [k for k in w0 if ".seg_layers." in k and k.endswith("weight")]
    assert heads and all(np.corrcoef(w0[k].ravel().numpy(), w1[k].ravel().numpy())[0, 1] > 0.9 for k in heads)
    r = CliRunner().invoke(cli, ["models", "install", str(child_zip), "--model-dir", str(tmp_path / "m"),
                                 "--accept-weak-model"])
    assert r.exit_code == 0 and f"fine-tuned from {parent_card['model']['name']} (card {parent_card['id']})" in r.output
    shutil.rmtree(work, ignore_errors=True)
