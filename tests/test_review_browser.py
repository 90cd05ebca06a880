"""The review pages in real headless Chromium, looked at as a reader would: the hostile PatientName
stays text, the mouse wheel and the arrow keys scroll, a window preset changes the pixels, the HU
under the cursor is the CT's, a correction (reassign, a missed lesion clicked in the image) changes
the score on the page and `cacpipe review apply` gives the same numbers; ratings and corrections
leave as files; the cohort index names flags, lists failed and skipped studies, sorts and has
readable contrast. NiiVue (bundled by `make viewer`) is checked in its own test.

Chromium is driven over the DevTools protocol on a pipe (tests/browser_cdp.py). Skipped only when
/usr/bin/chromium is missing (`make test` installs it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_review_common import HOSTILE_NAME, mislabelled, scored_result

from cacpipe.flags import Flag
from cacpipe.labels import ARTERY_COLOURS, CALCIUM_COLOUR
from cacpipe.review.page import RATING_COLUMNS
from devtools.browser import CHROMIUM, Browser, Page, colour_pixels, tinted_pixels

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (make test installs it)")]
BASIC = "#viewer=basic"


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A scan-like results folder: study A (model errors: an RCA lesion called LCX, an LCX lesion
    missed; hostile PatientName), study B (correct), a failed and a skipped study; the index."""
    from cacpipe.config import ReviewSettings
    from cacpipe.phantom import PhantomConfig, generate
    from cacpipe.review import build_index, build_review
    from cacpipe.scan.layout import study_folder

    root = tmp_path_factory.mktemp("review_browser")
    results = root / "results"
    manifest = {"schema": "cacpipe.manifest/1", "studies": {}, "problems": []}
    studies = {}
    valve = Flag("valve_calcium_suspected", "Aortic valve calcium near the LAD ostium", "warning", "LAD")
    for name, seed, pid, pname, uid in [("A", 3, "PAT<1>", HOSTILE_NAME, "1.2.3.4"), ("B", 1, "PAT2", "DOE^JANE", "1.2.3.5")]:
        ph = generate(PhantomConfig.preset("small", seed=seed))
        lab, info = mislabelled(ph.ct, ph.labels) if name == "A" else (ph.labels, {})
        res = scored_result(ph.ct, lab, pid, pname, uid, uid + ".1", flags=[valve])
        rel = study_folder(pid, uid)
        sd = results / rel
        build_review(sd, ph.ct, lab, res, None, ReviewSettings(fields=("anon_id", "study_date", "patient_name"),
                                                               dicom=False))
        lab.write(sd / "labels.nii.gz")
        res.outputs.update(labels="labels.nii.gz", result="result.json")
        res.save(sd / "result.json")
        ph.ct.write(root / f"ct_{name}.nii.gz")
        manifest["studies"][f"{pid}/{uid}"] = {"patient_id": pid, "study_uid": uid, "study_date": "20260105",
                                               "status": "done", "reason": "", "result": f"{rel}/result.json",
                                               "series_uid": uid + ".1"}
        studies[name] = {"dir": sd, "result": res, "ct": ph.ct, "truth": ph.labels, "info": info}
    manifest["studies"]["PAT3/9.9.1"] = {"patient_id": "PAT3", "study_uid": "9.9.1", "study_date": "20260106",
                                         "status": "failed", "reason": "no usable series: <b>broken</b> slices"}
    manifest["studies"]["PAT4/9.9.2"] = {"patient_id": "PAT4", "study_uid": "9.9.2", "study_date": "20260107",
                                         "status": "skipped", "reason": "only a contrast-enhanced series"}
    (results / "manifest.json").write_text(json.dumps(manifest))
    build_index(results)
    browser = Browser(root / "profile")
    downloads = root / "downloads"
    downloads.mkdir()
    browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    yield {"root": root, "results": results, "studies": studies, "browser": browser, "downloads": downloads}
    browser.close()


def _box(page: Page, element_id: str) -> dict:
    return page.js(f"(() => {{ const r = document.getElementById('{element_id}').getBoundingClientRect();"
                   " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")


def _key(page: Page, key: str, code: int) -> None:
    for kind in ("keyDown", "keyUp"):
        page.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)


def _mouse(page: Page, kind: str, x: float, y: float, **extra) -> None:
    page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)


def _type(page: Page, element_id: str, text: str) -> None:
    page.js(f"(() => {{ const r = document.getElementById('{element_id}'); r.value = {json.dumps(text)};"
            " r.dispatchEvent(new Event('input')); })()")


def _wait_file(folder: Path, pattern: str, before: set) -> Path:
    deadline = time.time() + 15
    while time.time() < deadline:
        new = [p for p in folder.glob(pattern) if p not in before]
        if new:
            time.sleep(0.2)
            return new[0]
        time.sleep(0.1)
    raise TimeoutError(f"no {pattern} was downloaded")


def test_viewer_scrolls_windows_reads_hu_and_escapes(reviewed):
    a = reviewed["studies"]["A"]
    page = Page(reviewed["browser"])
    page.open(a["dir"] / "review.html", BASIC)
    assert page.js("document.body.dataset.viewer") == "basic"
    # the hostile PatientName is text: no <b> element, no dialog
    assert page.js("document.querySelector('header b b, header script') === null")
    assert HOSTILE_NAME in page.js("document.querySelector('header').textContent")
    assert not any(e.get("method") == "Page.javascriptDialogOpening" for e in list(page.b.events.queue))
    # before any correction the page shows the record's own numbers
    res = a["result"]
    assert page.js("document.getElementById('score-total-agatston').textContent") == f"{res.total.agatston:.1f}"
    assert page.js("document.getElementById('score-cacdrs').textContent") == res.total.cac_drs
    view = _box(page, "viewport")
    shot0 = page.screenshot(view)
    Image.fromarray(page.screenshot()).save(reviewed["root"] / "study_page.png")
    assert colour_pixels(shot0, CALCIUM_COLOUR) > 3  # the largest lesion's slice is shown
    assert all(tinted_pixels(shot0, c) > 5 for c in ARTERY_COLOURS.values())
    page.js("document.getElementById('overlay-toggle').click()")
    assert colour_pixels(page.screenshot(view), CALCIUM_COLOUR) == 0
    page.js("document.getElementById('overlay-toggle').click()")
    # scrolling: the arrow key and the mouse wheel move through the slices (named as in PACS)
    info0 = page.js("document.getElementById('slice-info').textContent")
    assert info0.startswith("image 10")
    cx, cy = view["x"] + view["width"] / 2, view["y"] + view["height"] / 2
    _mouse(page, "mouseMoved", cx, cy)
    _key(page, "ArrowDown", 40)
    info1 = page.js("document.getElementById('slice-info').textContent")
    assert info1 != info0
    k0 = int(info0.split()[1]) - 1000
    assert int(info1.split()[1]) - 1000 == k0 - 1  # down = towards the feet (volume order is inferior first)
    _mouse(page, "mouseWheel", cx, cy, deltaX=0, deltaY=120)
    assert int(page.js("document.getElementById('slice-info').textContent").split()[1]) - 1000 == k0 - 2
    shot_scrolled = page.screenshot(view)
    assert np.abs(shot_scrolled.astype(int) - shot0.astype(int)).mean() > 1
    # HU under the cursor is the CT's value at the voxel the read-out names
    _mouse(page, "mouseMoved", cx + 7, cy - 5)
    line = page.js("document.getElementById('readout').textContent").splitlines()[0]
    z, y, x = (int(v) for v in line.split("voxel z ")[1].split(" \u00b7 ")[0].replace("y ", "").replace("x ", "").split())
    assert f"{int(a['ct'].array[z, y, x])} HU" in line and f"image {1000 + z}" in line
    # a window preset changes the pixels (lung window: soft tissue goes bright) and the W/L fields
    page.js("document.querySelector('button[data-window=lung]').click()")
    assert (page.js("document.getElementById('win-width').value"), page.js("document.getElementById('win-level').value")) \
        == ("1500", "-600")
    lung = page.screenshot(view)
    assert lung.mean() > shot_scrolled.mean() + 10
    # the whole scan and a coronal reformat
    page.js("window.cacpipeReview.setSeries('scan').then(() => window.cacpipeReview.setView('coronal'))")
    time.sleep(0.3)
    assert "whole scan" in page.js("document.getElementById('slice-info').textContent")
    assert np.abs(page.screenshot(view).astype(int) - lung.astype(int)).mean() > 5


def test_corrections_change_scores_and_apply_gives_the_same(reviewed):
    from cacpipe.cli import cli
    from cacpipe.quant.quantify import quantify

    a = reviewed["studies"]["A"]
    res, info = a["result"], a["info"]
    page = Page(reviewed["browser"])
    page.open(a["dir"] / "review.html", BASIC)
    _type(page, "rater", "R1")
    # the RCA plaque the model called LCX: reassign it in the lesion table
    called = next(les for les in res.lesions if les.bbox_zyx == info["moved"].bbox_zyx)
    assert called.artery == "LCX"
    before = page.js("document.getElementById('score-RCA-agatston').textContent")
    row = [les.name for les in res.lesions].index(called.name)
    page.js(f"(() => {{ const s = document.querySelectorAll('select.reassign')[{row}]; s.value = 'RCA';"
            " s.dispatchEvent(new Event('change')); })()")
    after = page.js("document.getElementById('score-RCA-agatston').textContent")
    assert before.startswith("0.0") and after.startswith(f"{info['moved'].agatston:.1f}") and "was 0.0" in after
    # the missed LCX lesion: press "LCX", then click on it in the image
    missed = info["missed"]
    seed = [missed.best_slice, int(round(missed.centre_yx[0])), int(round(missed.centre_yx[1]))]
    page.js(f"window.cacpipeReview.viewer().goto({seed})")
    scores = _box(page, "score-total-agatston")
    shot_before = page.screenshot(scores)
    page.js("document.getElementById('add-LCX').click()")
    x, y = page.js(f"window.cacpipeReview.viewer().screenOf({seed})")
    _mouse(page, "mousePressed", x, y, button="left", clickCount=1)
    _mouse(page, "mouseReleased", x, y, button="left", clickCount=1)
    assert page.js("window.cacpipeReview.st.adds.length") == 1, page.js("document.getElementById('pick-status').textContent")
    assert np.abs(page.screenshot(scores).astype(int) - shot_before.astype(int)).sum() > 0  # the total redrawn
    live = page.js("window.cacpipeReview.scores()")
    truth = quantify(a["ct"], a["truth"])
    for art in ("RCA", "LAD", "LCX"):
        assert live["arteries"][art]["agatston"] == pytest.approx(truth.arteries[art].agatston, abs=1e-6)
    # the download, then `cacpipe review apply` recomputes the same numbers with the pipeline's code
    before_files = set(reviewed["downloads"].glob("*.json"))
    page.js("document.getElementById('download-corrections').click()")
    doc_path = _wait_file(reviewed["downloads"], "corrections_*.json", before_files)
    doc = json.loads(doc_path.read_text())
    assert doc["schema"] == "cacpipe.corrections/1" and doc["reader"] == "R1" and doc["study_uid"] == res.study.study_uid
    assert {c["op"] for c in doc["changes"]} == {"reassign", "add"}
    results = reviewed["results"]
    r = CliRunner().invoke(cli, ["review", "apply", str(results), "-c", str(doc_path),
                                 "--ct", str(reviewed["root"] / "ct_A.nii.gz")])
    assert r.exit_code == 0, r.output
    out = json.loads((a["dir"] / "result.json").read_text())
    for art in ("RCA", "LAD", "LCX"):
        assert out["arteries"][art]["agatston"] == pytest.approx(live["arteries"][art]["agatston"], abs=1e-6)
        assert out["original"]["arteries"][art]["agatston"] == pytest.approx(res.arteries[art].agatston)
    assert out["total"]["cac_drs"] == live["total"]["cac_drs"] and out["total"]["category"] == live["total"]["category"]
    assert [f["reader"] for f in out["corrections"]["files"]] == ["R1"]
    assert "reader_corrected" in {f["code"] for f in out["flags"]}
    row = next(r for r in csv.DictReader((results / "cohort.csv").open()) if r["study_uid"] == res.study.study_uid)
    assert row["corrected"].startswith("R1 ") and float(row["total_agatston"]) == pytest.approx(out["total"]["agatston"])
    assert float(row["original_total_agatston"]) == pytest.approx(res.total.agatston)
    assert "reader_corrected" in row["flags"]
    # the index now says so
    page.open(results / "index.html")
    status = page.js(f"document.querySelector('tr[data-study=\"{res.study.study_uid}\"] td.review').textContent")
    assert "corrected (applied by R1)" in status


def test_ratings_and_index(reviewed):
    results, downloads = reviewed["results"], reviewed["downloads"]
    a, b = reviewed["studies"]["A"], reviewed["studies"]["B"]
    page = Page(reviewed["browser"])
    page.open(b["dir"] / "review.html", BASIC)
    _type(page, "rater", "=cmd|' /C calc'!A0")  # a reader name that a spreadsheet would run
    for artery, value in {"RCA": "excellent", "LAD": "minor error", "LCX": "major error"}.items():
        page.js(f"document.querySelector('input[name=\"rating-{artery}\"][value=\"{value}\"]').click()")
    _type(page, "comment-LAD", '+SUM(A1) missed, "small" lesion; <b>not bold</b>')
    assert "3/3" in page.js("document.getElementById('rate-status').textContent")
    before = set(downloads.glob("*.csv"))
    page.js("document.getElementById('download-csv').click()")
    path = _wait_file(downloads, "*.csv", before)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RATING_COLUMNS
    recs = [dict(zip(RATING_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert {r["artery"]: r["rating"] for r in recs} == {"RCA": "excellent", "LAD": "minor error", "LCX": "major error"}
    assert all(r["rater"] == "'=cmd|' /C calc'!A0" for r in recs)  # neutralised like cacpipe/csvout.py
    assert next(r for r in recs if r["artery"] == "LAD")["comment"] == "'+SUM(A1) missed, \"small\" lesion; <b>not bold</b>"
    # a reload restores the form from localStorage
    page.open(b["dir"] / "review.html", BASIC)
    assert page.js("document.querySelector('input[name=\"rating-LCX\"]:checked').value") == "major error"
    # a second reader rates study A
    page.open(a["dir"] / "review.html", BASIC)
    _type(page, "rater", "R2")
    page.js("document.querySelector('input[name=\"rating-RCA\"][value=\"excellent\"]').click()")
    # the index: every study of the manifest, flags by name, failed/skipped with reasons, review status
    page.open(results / "index.html")
    Image.fromarray(page.screenshot()).save(reviewed["root"] / "index.png")
    assert page.js("document.querySelectorAll('#studies tbody tr').length") == 4
    text = page.js("document.getElementById('studies').textContent")
    assert "valve_calcium_suspected" in text and "no usable series: <b>broken</b> slices" in text
    assert "only a contrast-enhanced series" in text and page.js("document.querySelector('#studies b') === null")
    assert page.js("document.getElementById('rater').value") == "R2"  # the last reader: their own status
    assert page.js(f"document.querySelector('tr[data-study=\"{b['result'].study.study_uid}\"] td.review').textContent"
                   ) == "pending"
    _type(page, "rater", "")  # every reader
    assert page.js(f"document.querySelector('tr[data-study=\"{b['result'].study.study_uid}\"] td.review').textContent"
                   ).startswith("rated")
    everyone = list(csv.DictReader(io.StringIO(page.js("window.cacpipeIndex.csv('')"))))
    assert {r["rater"] for r in everyone} >= {"R2", "'=cmd|' /C calc'!A0"}
    assert {r["study_uid"] for r in everyone if r["rater"] == "R2"} == {a["result"].study.study_uid}
    # sorting by total Agatston, both ways; keyboard: Down moves to the next study's link
    uids = lambda: page.js("[...document.querySelectorAll('#studies tbody tr')].map(r => r.dataset.study)")  # noqa: E731
    heads = page.js("[...document.querySelectorAll('#studies th')].map(h => h.textContent)")
    col = heads.index("total Agatston")
    page.js(f"document.querySelectorAll('#studies th button')[{col}].click()")
    asc = uids()
    page.js(f"document.querySelectorAll('#studies th button')[{col}].click()")
    assert uids()[:2] == asc[:2][::-1] and uids()[2:] == asc[2:] and page.js(f"document.querySelectorAll('#studies th')[{col}].getAttribute('aria-sort')") \
        == "descending"
    page.js("document.querySelector('#studies tbody a').focus()")
    first = page.js("document.activeElement.closest('tr').dataset.study")
    _key(page, "ArrowDown", 40)
    second = page.js("document.activeElement.closest('tr').dataset.study")
    assert first != second and page.js("document.activeElement.tagName") == "A"
    # WCAG AA contrast (>= 4.5:1) of links, text and muted text on the page background
    ratios = page.js("""(() => {
      const lum = (c) => { const v = c.match(/\\d+/g).slice(0, 3).map(Number).map(x => x / 255)
        .map(x => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
      const bg = lum(getComputedStyle(document.body).backgroundColor);
      const ratio = (el) => { const l = lum(getComputedStyle(el).color); return (Math.max(l, bg) + 0.05) / (Math.min(l, bg) + 0.05); };
      return [document.querySelector('#studies a'), document.querySelector('#studies td'), document.querySelector('.muted')].map(ratio);
    })()""")
    assert min(ratios) >= 4.5, ratios


def test_niivue_viewer_shows_scrolls_and_windows(reviewed):
    from cacpipe.review.assets import niivue_bundle

    if niivue_bundle()[0] is None:
        pytest.skip("the NiiVue bundle is not installed (make viewer needs npm)")
    b = reviewed["studies"]["B"]
    page = Page(reviewed["browser"])
    page.open(b["dir"] / "review.html", "#viewer=niivue", timeout=120)
    assert page.js("document.body.dataset.viewer") == "NiiVue", page.js("document.getElementById('viewer-note').textContent")
    time.sleep(1.0)
    view = _box(page, "viewport")
    shot = page.screenshot(view)
    Image.fromarray(shot).save(reviewed["root"] / "niivue.png")
    assert colour_pixels(shot, CALCIUM_COLOUR) > 3 and all(tinted_pixels(shot, c) > 5 for c in ARTERY_COLOURS.values())
    # the image under the mouse is the voxel the read-out names: the centre of the selected lesion's ring
    ring = np.argwhere(np.abs(shot.astype(int) - [255, 0, 255]).max(axis=-1) < 60)
    assert len(ring) > 4
    cy, cx = ring.mean(axis=0)
    _mouse(page, "mouseMoved", view["x"] + cx, view["y"] + cy)
    selected = page.js("window.cacpipeReview.st.selected")
    name = b["result"].lesions[selected - 1].name
    line = page.js("document.getElementById('readout').textContent").splitlines()[0]
    assert name in line and "calcium" in line, line
    info0 = page.js("document.getElementById('slice-info').textContent")
    page.js("window.cacpipeReview.viewer().step(3)")
    time.sleep(0.5)
    assert page.js("document.getElementById('slice-info').textContent") != info0
    before = page.screenshot(view)
    page.js("document.querySelector('button[data-window=lung]').click()")
    time.sleep(1.0)
    assert page.screenshot(view).mean() > before.mean() + 10
