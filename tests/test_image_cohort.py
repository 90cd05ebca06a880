"""A folder of NIfTI/NRRD/MHA files (nnU-Net ``imagesTs``, or case folders) is a cohort: one study
per file, ids from file or case-folder names, collisions refused with a reason, an optional CSV of
ids (issue 27, item 4)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.volume import Volume


def _ct(path, calcium_voxels: int, seed: int = 0) -> None:
    """A small CT (24 x 48 x 48, HU) with ``calcium_voxels`` voxels at 400 HU: each file scores differently."""
    rng = np.random.default_rng(seed)
    a = rng.normal(40, 10, (24, 48, 48)).astype(np.float32)
    a.reshape(-1)[:calcium_voxels] = 400
    path.parent.mkdir(parents=True, exist_ok=True)
    Volume(a, (2.0, 0.8, 0.8)).write(path)


@pytest.fixture
def cohort(tmp_path):
    root = tmp_path / "cohort"
    _ct(root / "P01" / "ct.nii.gz", 10)
    _ct(root / "P02" / "ct.nii.gz", 200)
    _ct(root / "P03_0000.nii.gz", 400)
    _ct(root / "P03_0001.nii.gz", 5)  # another nnU-Net channel of P03: not a CT of its own
    _ct(root / "P04.nrrd", 30)
    return root


def _scan(inp, out, *extra):
    return CliRunner().invoke(cli, ["scan", str(inp), "-o", str(out), "--analyse", "export_faults:threshold_analyse",
                                    "--no-progress", *extra])


def _results(out) -> dict[str, dict]:
    studies = json.loads((out / "manifest.json").read_text())["studies"]
    return {e["patient_id"]: (json.loads((out / e["result"]).read_text()) if e["status"] == "done" else e)
            for e in studies.values()}


def test_a_folder_of_images_is_a_cohort(cohort, tmp_path, monkeypatch):
    out = tmp_path / "out"
    r = _scan(cohort, out)
    assert r.exit_code == 0, r.output
    assert "4 studies: 4 done now" in r.output
    res = _results(out)
    assert set(res) == {"P01", "P02", "P03", "P04"}
    voxels = {pid: sum(les["voxels"] for les in x["lesions"]) for pid, x in res.items()}
    assert voxels == {"P01": 10, "P02": 200, "P03": 400, "P04": 30}  # each its own file: nothing overwritten
    rows = list(csv.DictReader((out / "cohort.csv").open()))
    assert sorted(r["patient_id"] for r in rows) == ["P01", "P02", "P03", "P04"]
    notes = json.loads((out / "manifest.json").read_text())["notes"]
    assert any("P03_0001" in n and "channel" in n for n in notes)
    # the same folder given as a relative path: nothing to redo
    monkeypatch.chdir(cohort.parent)
    r = _scan("cohort", out)
    assert r.exit_code == 0 and "0 done now, 4 already done" in r.output, r.output
    # the dry run lists the same studies
    r = CliRunner().invoke(cli, ["list", "cohort", "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert sorted(s["patient_id"] for s in json.loads(r.output)["studies"]) == ["P01", "P02", "P03", "P04"]


def test_a_true_collision_is_refused_with_a_reason_and_a_csv_resolves_it(cohort, tmp_path):
    _ct(cohort / "P04.nii.gz", 60)  # P04.nrrd and P04.nii.gz: the same id
    out = tmp_path / "out"
    r = _scan(cohort, out)
    assert r.exit_code == 1, r.output
    assert "FAILED P04/file-P04" in r.output and "P04.nii.gz" in r.output and "P04.nrrd" in r.output
    assert "--ids" in r.output
    res = _results(out)
    assert res["P04"]["status"] == "failed" and not (out / "P04").exists()
    assert {pid for pid, x in res.items() if x.get("status") == "done"} == {"P01", "P02", "P03"}
    ids = tmp_path / "ids.csv"
    ids.write_text("file,patient_id\nP04.nii.gz,P04A\nP04.nrrd,P04B\n")
    r = _scan(cohort, tmp_path / "out2", "--ids", str(ids))
    assert r.exit_code == 0, r.output
    res = _results(tmp_path / "out2")
    assert sum(les["voxels"] for les in res["P04A"]["lesions"]) == 60
    assert sum(les["voxels"] for les in res["P04B"]["lesions"]) == 30
    bad = tmp_path / "bad.csv"
    bad.write_text("file,patient_id\nnope.nii.gz,X\n")
    r = _scan(cohort, tmp_path / "out3", "--ids", str(bad))
    assert r.exit_code == 2 and "not CT image files" in r.output, r.output


def test_case_folders_named_alike_and_an_id_for_a_folder_refused(tmp_path):
    root = tmp_path / "cases"
    _ct(root / "A" / "ct.nii.gz", 10)
    _ct(root / "B" / "ct.nii.gz", 20)
    _ct(root / "B" / "lung.mha", 30)
    r = _scan(root, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert set(_results(tmp_path / "out")) == {"A", "B_ct", "B_lung"}
    r = _scan(root, tmp_path / "o2", "--id", "X")
    assert r.exit_code == 2 and "--id names the patient of one CT image file" in r.output


def test_send_with_image_inputs_says_there_is_nothing_to_send(cohort, tmp_path):
    from test_send_never_loses import scp

    server, received = scp([])
    try:
        r = _scan(cohort, tmp_path / "out", "--send", f"TESTPACS@127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert r.exit_code == 0, r.output
    assert "0 studies sent, 0 pending, 4 without DICOM outputs to send" in r.output and received == []
