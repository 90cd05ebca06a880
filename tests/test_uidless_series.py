"""Series whose files had their Study/Series/SOP Instance UIDs blanked by an anonymiser (the SOP UID
left in the file meta) are read: grouped by folder, frame of reference, orientation and spacing,
and flagged (issue 27, item 10)."""

from __future__ import annotations

import json

import pydicom
from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe.cli import cli
from cacpipe.phantom.demo_export import write_demo_export


def _blank(folder):
    n = 0
    for p in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID = ""
        ds.SeriesInstanceUID = ""
        ds.SOPInstanceUID = ""  # the file meta keeps MediaStorageSOPInstanceUID, as such anonymisers do
        ds.save_as(p, enforce_file_format=True)
        n += 1
    return n


def test_uidless_series_are_grouped_and_flagged(tmp_path):
    export = tmp_path / "export"
    write_demo_export(export, shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=24)
    assert _blank(export / "DEMO001") == 49  # localizer, axial, contrast series
    out = tmp_path / "out"
    args = ["scan", str(export), "-o", str(out), "--min-slices", str(MIN_SLICES), "--analyse",
            "export_faults:threshold_analyse", "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "3 done now" in r.output and "0 unreadable files" in r.output
    m = json.loads((out / "manifest.json").read_text())
    e = next(e for e in m["studies"].values() if e["patient_id"] == "DEMO001")
    assert e["status"] == "done" and e["study_uid"].startswith("2.25.") and "uids_missing" in e["flags"]
    skipped = {s["series_description"]: s["reason"] for s in e["skipped_series"]}
    assert "localizer" in skipped["Topogram 0.6 T20f"] and "contrast agent" in skipped["Thorax C+ 2mm"]
    res = json.loads((out / e["result"]).read_text())
    assert res["study"]["series_description"] == "Thorax 2mm STANDARD"  # the axial non-contrast series
    flag = next(f for f in res["flags"] if f["code"] == "uids_missing")
    assert flag["severity"] == "warning" and "grouped by folder" in flag["message"]
    assert "StudyInstanceUID, SeriesInstanceUID" in flag["message"]
    assert res["ct"]["shape_zyx"][0] == 24
    # the derived UIDs are stable: a second run finds everything up to date
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "0 done now, 3 already done" in r.output, r.output
