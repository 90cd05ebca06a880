"""``scan --anonymous-names`` (setting review.anonymous_names): study folders, index links and hover
texts, and what the review pages download (ratings CSV rows, corrections files) carry the anonymised id,
never the PatientID (issue 27, item 9). ``review apply`` takes such corrections and keeps the page
anonymous."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES, N_SLICES, tiny_config

from cacpipe.cli import cli
from cacpipe.phantom import PatientInfo, generate, write_study
from cacpipe.phantom.demo_export import write_demo_export
from cacpipe.review import build_index
from cacpipe.review.options import anonymised_id
from cacpipe.scan.layout import RUN_FILES
from devtools.browser import CHROMIUM

PIDS = ("DEMO001", "DEMO002", "DEMO003", "GAPPY77")


def _page_data(html: str) -> dict:
    return json.loads(html.split('id="review-data">', 1)[1].split("</script>", 1)[0])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("anon")
    export, out = root / "export", root / "out"
    write_demo_export(export, shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=N_SLICES)
    # A study that fails: its reason names a source file, in a folder named by the PatientID.
    cfg = tiny_config(seed=77)
    info = write_study(cfg, export, PatientInfo(patient_id="GAPPY77"), phantom=generate(cfg))
    sorted(Path(info["series"]["axial"]["dir"]).iterdir())[N_SLICES // 2].unlink()
    r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:review_analyse", "--no-progress", "--anonymous-names"])
    assert r.exit_code == 1, r.output  # GAPPY77 failed, on purpose
    manifest = json.loads((out / "manifest.json").read_text())
    assert "GAPPY77" in next(e["reason"] for e in manifest["studies"].values() if e["status"] == "failed")
    return out, {e["patient_id"]: e for e in manifest["studies"].values()}


def test_folders_are_pseudonyms(scanned):
    out, entries = scanned
    for pid in PIDS[:3]:
        rel = entries[pid]["result"]
        assert re.fullmatch(rf"{anonymised_id(pid)}/study-[0-9a-f]{{10}}/result\.json", rel), rel
    names = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.name not in RUN_FILES]
    assert not [n for n in names if any(pid in n for pid in PIDS)]
    assert not [n for n in names if any(e["study_uid"] in n for e in entries.values())]


def test_page_and_its_downloads_carry_the_anonymised_id(scanned):
    out, entries = scanned
    for pid in PIDS[:3]:
        html = (out / entries[pid]["result"]).with_name("review.html").read_text(encoding="utf-8")
        data = _page_data(html)
        # the ratings CSV and corrections files the page downloads take patient_id from here (common.js)
        assert data["patient_id"] == anonymised_id(pid) and data["study_uid"] == entries[pid]["study_uid"]
        assert pid not in html


def test_index_links_and_hover_texts_name_no_patient(scanned):
    out, _ = scanned
    html = build_index(out).read_text(encoding="utf-8")
    assert not [pid for pid in PIDS if pid in html]
    hrefs = re.findall(r"href='([^']*)'", html)
    assert len(hrefs) == 3 and all(h.startswith("anon-") for h in hrefs)
    assert anonymised_id("GAPPY77") in html  # the failed study's reason, shown with the pseudonym


def test_corrections_with_the_anonymised_id_are_applied(scanned, tmp_path):
    out, entries = scanned
    e = entries["DEMO003"]
    d = (out / e["result"]).parent
    data = _page_data((d / "review.html").read_text(encoding="utf-8"))
    res = json.loads((d / "result.json").read_text())
    doc = {"schema": "cacpipe.corrections/1", "reader": "dr_anon", "time": "2026-12-01T10:00:00Z",
           "study_uid": data["study_uid"], "patient_id": data["patient_id"], "series_uid": data["series_uid"],
           "changes": [{"op": "delete", "lesion": res["lesions"][0]["name"]}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    after = json.loads((d / "result.json").read_text())
    assert after["total"]["agatston"] < res["total"]["agatston"]
    html = (d / "review.html").read_text(encoding="utf-8")
    assert "DEMO003" not in html and _page_data(html)["patient_id"] == anonymised_id("DEMO003")
    assert "DEMO003" not in (out / "index.html").read_text(encoding="utf-8")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (make test installs it)")
def test_downloads_from_the_page_carry_the_anonymised_id(scanned, tmp_path):
    """In Chromium, as a reader: the ratings CSV and the corrections file the page downloads name the
    anonymised id, never the PatientID, and `review apply` takes the corrections."""
    from devtools.browser import Browser, Page

    out, entries = scanned
    e = entries["DEMO001"]
    d = (out / e["result"]).parent
    res = json.loads((d / "result.json").read_text())
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        page = Page(browser)
        page.open(d / "review.html", "#viewer=basic")
        page.js("(() => { const r = document.getElementById('rater'); r.value = 'R9';"
                " r.dispatchEvent(new Event('input')); })()")
        page.js("document.querySelector('input[name=\"rating-RCA\"][value=\"excellent\"]').click()")
        page.js("document.getElementById('download-csv').click()")
        ratings = _wait_file(downloads, "*.csv")
        rows = list(csv.DictReader(ratings.open(newline="", encoding="utf-8")))
        assert rows and {r["patient_id"] for r in rows} == {anonymised_id("DEMO001")}
        assert {r["study_uid"] for r in rows} == {e["study_uid"]} and "DEMO001" not in ratings.read_text()
        to = next(a for a in ("RCA", "LAD", "LCX") if a != res["lesions"][0]["artery"])
        page.js(f"(() => {{ const s = document.querySelectorAll('select.reassign')[0]; s.value = '{to}';"
                " s.dispatchEvent(new Event('change')); })()")
        page.js("document.getElementById('download-corrections').click()")
        corrections = _wait_file(downloads, "corrections_*.json")
    finally:
        browser.close()
    doc = json.loads(corrections.read_text())
    assert doc["patient_id"] == anonymised_id("DEMO001") and "DEMO001" not in corrections.read_text()
    assert [c["op"] for c in doc["changes"]] == ["reassign"]
    r = CliRunner().invoke(cli, ["review", "apply", str(out), "-c", str(corrections)])
    assert r.exit_code == 0, r.output
    assert json.loads((d / "result.json").read_text())["corrections"]["files"][0]["reader"] == "R9"


def _wait_file(folder: Path, pattern: str) -> Path:
    deadline = time.time() + 15
    while time.time() < deadline:
        found = sorted(folder.glob(pattern))
        if found:
            time.sleep(0.2)  # let the download finish writing
            return found[0]
        time.sleep(0.1)
    raise TimeoutError(f"no {pattern} was downloaded")


def test_a_second_run_finds_the_same_folders(scanned):
    out, entries = scanned
    r = CliRunner().invoke(cli, ["scan", str(Path(json.loads((out / "manifest.json").read_text())["export"])),
                                 "--out", str(out), "--min-slices", str(MIN_SLICES), "--analyse",
                                 "export_faults:review_analyse", "--no-progress", "--anonymous-names"])
    assert "0 done now, 3 already done" in r.output, r.output
