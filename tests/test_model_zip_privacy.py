"""Nothing identifying in a model zip: nnU-Net's export carries local paths (debug.json) and case
ids with paths (validation/summary.json); the scrubbed zip carries neither, still installs, and
training cases made from corrections have pseudonymous ids (issue 27, item 6)."""

from __future__ import annotations

import json
import shutil
import zipfile

from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.commands.review import training_case_id
from cacpipe.segment.models import DEMO_ZIP
from nnunet_plans.zip_privacy import identifying_strings, scrub_model_zip


def test_scrubbed_model_zip_has_no_paths_or_case_ids_and_installs(tmp_path):
    z = tmp_path / "model.zip"
    shutil.copy(DEMO_ZIP, z)
    before = identifying_strings(z, case_ids=("phantom_000",))
    assert any("debug.json" in f for f in before) and any("summary.json" in f for f in before)  # nnU-Net's export
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        summaries = {n: json.loads(zf.read(n)) for n in names if n.endswith("validation/summary.json")}
        kept = {n: zf.read(n) for n in names if n.endswith((".pth", "dataset.json", "plans.json", "card.json"))}
    changed = scrub_model_zip(z)
    assert sorted(changed) == sorted(n for n in names if n.endswith(("debug.json", "validation/summary.json")))
    # unzip it and look at every file
    root = tmp_path / "unzipped"
    with zipfile.ZipFile(z) as zf:
        zf.extractall(root)
        for n, data in kept.items():
            assert zf.read(n) == data  # weights, plans and card byte for byte
    assert not list(root.rglob("debug.json"))
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".md", ".txt"):
            text = p.read_text()
            assert "/work/" not in text and "/tmp/" not in text and "phantom_0" not in text, p
    assert identifying_strings(z, case_ids=("phantom_000", "phantom_002")) == []
    for n, old in summaries.items():
        new = json.loads((root / n).read_text())
        assert new["mean"] == old["mean"] and new["foreground_mean"] == old["foreground_mean"]
        assert [c["case"] for c in new["metric_per_case"]] == [f"case_{i:03d}" for i in range(len(old["metric_per_case"]))]
        assert all(set(c) == {"case", "metrics"} for c in new["metric_per_case"])
    r = CliRunner().invoke(cli, ["models", "install", str(z), "--model-dir", str(tmp_path / "models"),
                                 "--accept-weak-model"])
    assert r.exit_code == 0, r.output


def test_training_case_ids_are_pseudonymous():
    a = training_case_id("PAT9^MRN", "1.2.840.99.1", "site-secret")
    assert "PAT9" not in a and "1.2.840" not in a and a.startswith("anon-")
    assert a == training_case_id("PAT9^MRN", "1.2.840.99.1", "site-secret")  # stable: resumable training data
    assert a != training_case_id("PAT9^MRN", "1.2.840.99.2", "site-secret")


def _carded_zip(tmp_path, name, kappa, icc, dice):
    """A model zip (placeholder weights) whose card records this cross-validation."""
    from cacpipe.labels import nnunet_dataset_json
    from cacpipe.segment.card import file_digests, write_card

    folder = tmp_path / name / "Dataset778_gate" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(nnunet_dataset_json(5)))
    (folder / "plans.json").write_text(json.dumps({"transpose_backward": [0, 1, 2], "configurations": {
        "3d_fullres": {"spacing": [2.0, 1.5, 1.5], "patch_size": [8, 8, 8]}}}))
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    cv = {"folds": [0], "cases": 10, "presence": {a: {"kappa": kappa, "sensitivity": 1.0} for a in ("RCA", "LAD", "LCX")}
          | {"any": {"sensitivity": 1.0, "specificity": 0.0, "kappa": kappa}},
          "agatston": {"total": {"icc": icc, "bias": 94887.0, "n": 10}}, "dice_nnunet": {"mean": dice}}
    write_card(folder, {"model": {"name": "Dataset778_gate/nnUNetTrainer__nnUNetPlans__3d_fullres", "folds": [0]},
                        "files": file_digests(folder, [0]), "training_data": {"cases_used": 10, "patients": 10},
                        "cross_validation": cv})
    z = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent.parent).as_posix())
    return z


def test_install_gate_refuses_a_weak_model_unless_insisted(tmp_path):
    models = tmp_path / "models"
    weak = _carded_zip(tmp_path, "weak", kappa=0.0, icc=0.05, dice=0.0)
    r = CliRunner().invoke(cli, ["models", "install", str(weak), "--model-dir", str(models)])
    assert r.exit_code == 2, r.output
    assert "below the floor" in r.output and "RCA presence kappa 0.00" in r.output and "--accept-weak-model" in r.output
    assert "bias +94887.0" in r.output and not list(models.rglob("dataset.json"))
    r = CliRunner().invoke(cli, ["models", "install", str(weak), "--model-dir", str(models), "--accept-weak-model"])
    assert r.exit_code == 0 and "WARNING: installed although its cross-validation is below the floor" in r.output
    r = CliRunner().invoke(cli, ["models", "list", "--model-dir", str(models)])
    assert "CV kappa RCA 0.00 LAD 0.00 LCX 0.00, total Agatston ICC 0.05" in r.output
    assert "BELOW THE INSTALL FLOOR" in r.output and "any-artery sens" not in r.output
    good = _carded_zip(tmp_path, "good", kappa=0.8, icc=0.95, dice=0.7)
    r = CliRunner().invoke(cli, ["models", "install", str(good), "--model-dir", str(tmp_path / "m2")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["models", "list", "--model-dir", str(tmp_path / "m2")])
    assert "CV kappa RCA 0.80 LAD 0.80 LCX 0.80, total Agatston ICC 0.95" in r.output and "BELOW" not in r.output
