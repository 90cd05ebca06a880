"""A reader's corrections are part of the record: no rescan replaces a corrected study silently
(``--force``, other settings, another analysis, the export spelled as a relative path); it is
redone only with ``--redo-corrected``, which keeps the corrected folder (issue 27, item 2)."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe.cli import cli


@pytest.fixture(scope="module")
def export(tiny_demo_export):
    return tiny_demo_export  # conftest.py: written once per test process


def _scan(export, out, *extra, analyse="export_faults:threshold_analyse"):
    return CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                    "--analyse", analyse, "--no-progress", *extra])


def _entry(out, pid):
    return next(e for e in json.loads((out / "manifest.json").read_text())["studies"].values()
                if e["patient_id"] == pid)


def _correct(out, pid, tmp_path) -> float:
    """A reader deletes the first lesion of ``pid``'s study; returns the corrected total Agatston."""
    e = _entry(out, pid)
    res = json.loads((out / e["result"]).read_text())
    doc = {"schema": "cacpipe.corrections/1", "reader": "dr_a", "time": "2026-12-01T10:00:00Z",
           "study_uid": e["study_uid"], "changes": [{"op": "delete", "lesion": res["lesions"][0]["name"]}]}
    p = tmp_path / "corr.json"
    p.write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(p)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / e["result"]).read_text())
    assert res["corrections"]["files"][0]["reader"] == "dr_a"
    return res["total"]["agatston"]


def _assert_corrected(out, pid, total):
    e = _entry(out, pid)
    assert e["status"] == "done"
    d = (out / e["result"]).parent
    res = json.loads((d / "result.json").read_text())
    assert res["total"]["agatston"] == total and res["corrections"]["audit"]
    assert (d / "labels_corrected.nii.gz").exists()
    rows = {r["patient_id"]: r for r in csv.DictReader((out / "cohort.csv").open())}
    assert "dr_a" in rows[pid]["corrected"] and rows[pid]["original_total_agatston"] != ""


def test_no_rescan_replaces_a_corrected_study(export, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _scan(export, out).exit_code == 0
    total = _correct(out, "DEMO002", tmp_path)
    _assert_corrected(out, "DEMO002", total)

    # --force: the two others are redone, the corrected one is kept, and the run says so.
    r = _scan(export, out, "--force")
    assert r.exit_code == 0, r.output
    assert "2 done now" in r.output and "KEPT DEMO002/" in r.output and "corrected by dr_a" in r.output
    _assert_corrected(out, "DEMO002", total)
    assert "forced" in _entry(out, "DEMO002")["kept"]

    # other settings, another analysis ("a new model"): kept each time
    r = _scan(export, out, "--max-missing-slices", "3")
    assert r.exit_code == 0 and "KEPT DEMO002/" in r.output and "settings changed" in r.output, r.output
    _assert_corrected(out, "DEMO002", total)
    r = _scan(export, out, analyse="export_faults:review_analyse")
    assert r.exit_code == 0 and "KEPT DEMO002/" in r.output, r.output
    _assert_corrected(out, "DEMO002", total)

    # The export spelled as a relative path is the same input: nothing to redo at all.
    r = _scan(export, out, analyse="export_faults:review_analyse")
    assert r.exit_code == 0 and "0 done now" in r.output, r.output
    monkeypatch.chdir(export.parent)
    r = _scan(export.name, out, analyse="export_faults:review_analyse")
    assert r.exit_code == 0 and "0 done now, 3 already done" in r.output, r.output
    _assert_corrected(out, "DEMO002", total)


def test_redo_corrected_keeps_the_corrected_version(export, tmp_path):
    out = tmp_path / "out"
    assert _scan(export, out).exit_code == 0
    total = _correct(out, "DEMO001", tmp_path)
    before = (out / _entry(out, "DEMO001")["result"]).read_text()
    r = _scan(export, out, "--force", "--redo-corrected")
    assert r.exit_code == 0 and "3 done now" in r.output and "KEPT" not in r.output, r.output
    e = _entry(out, "DEMO001")
    res = json.loads((out / e["result"]).read_text())
    assert not res.get("corrections") and res["total"]["agatston"] != total
    kept = out / res["ingest"]["superseded"]
    assert kept.parent.parent == out / "superseded"
    assert (kept / "result.json").read_text() == before and (kept / "labels_corrected.nii.gz").exists()
    # the superseded folder never shows up as a study of its own
    assert len(list(csv.DictReader((out / "cohort.csv").open()))) == 3
