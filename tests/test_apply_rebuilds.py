"""``review apply`` rebuilds every output a reader or PACS sees (page, overlays, SEG, SC) and writes a
new SR that is VERIFIED by the reader and references its predecessor; ``review send OUT`` then
sends only the new objects (issue 27, item 3)."""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES
from test_send_never_loses import SC_UID, SEG_UID, SR_UID, scp

from cacpipe.cli import cli


@pytest.fixture(scope="module")
def export(tiny_demo_export, tmp_path_factory):
    """The shared tiny demo export cut to DEMO003 (its zip): the study corrected below; the others
    would only add two scans with review outputs to the test's time."""
    root = tmp_path_factory.mktemp("apply_rebuild") / "export"
    root.mkdir()
    shutil.copy(tiny_demo_export / "DEMO003.zip", root)
    return root


def _numbers(ds) -> list[float]:
    out = []
    for item in getattr(ds, "ContentSequence", []):
        for mv in getattr(item, "MeasuredValueSequence", []):
            out.append(round(float(mv.NumericValue), 1))
        out += _numbers(item)
    return out


@pytest.mark.slow
def test_apply_rebuilds_page_seg_sc_and_a_verified_sr(export, tmp_path):
    out = tmp_path / "out"
    server, received = scp([SEG_UID, SR_UID, SC_UID])
    target = f"TESTPACS@127.0.0.1:{server.server_address[1]}"
    try:
        r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                     "--analyse", "export_faults:review_analyse", "--no-progress", "--send", target])
        assert r.exit_code == 0, r.output
        e = next(e for e in json.loads((out / "manifest.json").read_text())["studies"].values()
                 if e["patient_id"] == "DEMO003")
        d = (out / e["result"]).parent
        before = json.loads((d / "result.json").read_text())
        old_sr = pydicom.dcmread(d / before["outputs"]["sr"])
        old_seg = pydicom.dcmread(d / before["outputs"]["seg"], stop_before_pixels=True)
        assert old_sr.VerificationFlag == "UNVERIFIED"
        victim = max(before["lesions"], key=lambda x: x["agatston"])
        doc = {"schema": "cacpipe.corrections/1", "reader": "Reader^Anna", "time": "2026-12-01T10:00:00Z",
               "study_uid": e["study_uid"], "changes": [{"op": "delete", "lesion": victim["name"]}]}
        (tmp_path / "c.json").write_text(json.dumps(doc))
        r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(tmp_path / "c.json"),
                                     "--organization", "Test Hospital"])
        assert r.exit_code == 0, r.output
        assert "VERIFIED SR rebuilt" in r.output and "review send" in r.output

        after = json.loads((d / "result.json").read_text())
        total = after["total"]["agatston"]
        assert total < before["total"]["agatston"]
        # the page a second reader opens shows the corrected numbers
        review = json.loads((d / "review.json").read_text())
        assert review["total"]["agatston"] == total
        assert victim["name"] not in {les["name"] for les in review["lesions"]} or len(review["lesions"]) < len(
            before["lesions"])
        assert f"{total:.1f}" in (d / "review.html").read_text()
        # a new SR: verified by the reader, final, the predecessor referenced, the corrected total in it
        sr = pydicom.dcmread(d / after["outputs"]["sr"])
        assert sr.SOPInstanceUID != old_sr.SOPInstanceUID
        assert sr.VerificationFlag == "VERIFIED" and sr.CompletionFlag == "COMPLETE"
        assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Reader^Anna"
        assert sr.VerifyingObserverSequence[0].VerifyingOrganization == "Test Hospital"
        pred = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert pred.ReferencedSOPInstanceUID == old_sr.SOPInstanceUID
        assert round(total, 1) in _numbers(sr) and round(before["total"]["agatston"], 1) not in _numbers(sr)
        seg = pydicom.dcmread(d / after["outputs"]["seg"], stop_before_pixels=True)
        assert seg.SOPInstanceUID != old_seg.SOPInstanceUID
        assert sr.CurrentRequestedProcedureEvidenceSequence  # evidence names the new SEG
        # the new objects are pending for the PACS the study went to; review send OUT sends only them
        assert after["pipeline"]["send"]["state"] == "pending"
        n_before = len(received)
        r = CliRunner().invoke(cli, ["review", "send", str(out)])
        assert r.exit_code == 0 and "1 study sent" in r.output, r.output
        new = received[n_before:]
        files = [after["outputs"]["seg"], after["outputs"]["sr"], *after["outputs"]["sc"]]
        assert len(new) == len(files) and sr.SOPInstanceUID in new and old_sr.SOPInstanceUID not in new
    finally:
        server.shutdown()
    # A second reader corrects on the rebuilt page (its lesion names are the corrected record's): applied on top.
    second = max(after["lesions"], key=lambda x: x["agatston"])
    doc2 = {"schema": "cacpipe.corrections/1", "reader": "Reader^Ben", "time": "2026-12-02T09:00:00Z",
            "study_uid": e["study_uid"], "changes": [{"op": "delete", "lesion": second["name"],
                                                     "centre_zyx": second["centre_zyx"]}]}
    (tmp_path / "c2.json").write_text(json.dumps(doc2))
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(tmp_path / "c2.json")])
    assert r.exit_code == 0, r.output
    again = json.loads((d / "result.json").read_text())
    assert again["total"]["agatston"] == pytest.approx(total - second["agatston"], abs=0.05)
    assert [a["reader"] for a in again["corrections"]["audit"]] == ["Reader^Anna", "Reader^Ben"]
    assert again["original"]["total"]["agatston"] == before["total"]["agatston"]
    sr2 = pydicom.dcmread(d / again["outputs"]["sr"])
    assert str(sr2.VerifyingObserverSequence[0].VerifyingObserverName) == "Reader^Ben"
    assert sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID == sr.SOPInstanceUID
