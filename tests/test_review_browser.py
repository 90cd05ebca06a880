"""The review pages in real headless Chromium: rendering, escaping, overlay toggle, slice scrolling,
the rating form (localStorage + CSV download) and the cohort index gathering ratings.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so no
websocket library or chromedriver is needed. Skipped only when /usr/bin/chromium is missing
(`make test` installs it).
"""

from __future__ import annotations

import base64
import csv
import fcntl
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_review_common import HOSTILE_NAME, axial_datasets, result_from_truth

from cacpipe.labels import ARTERY_COLOURS, CALCIUM_COLOUR
from cacpipe.review.html import RATING_COLUMNS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed (make test installs it)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Browser:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, profile: Path):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def child_fds():  # move the pipe ends to fds 3 and 4 without clobbering each other
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 100)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 100)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                                      "about:blank"], preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._id = 0
        self._replies: dict[int, dict] = {}
        self.events: queue.Queue = queue.Queue()
        self._cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_r, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._replies[msg["id"]] = msg
                        self._cv.notify_all()
                else:
                    self.events.put(msg)

    def call(self, method: str, session: str | None = None, timeout: float = 20.0, **params) -> dict:
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: mid in self._replies, timeout):
                raise TimeoutError(f"no reply to {method}")
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_w)


class Page:
    def __init__(self, browser: Browser, width: int = 1400, height: int = 1000):
        self.b = browser
        tid = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.s = browser.call("Target.attachToTarget", targetId=tid, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params) -> dict:
        return self.b.call(method, session=self.s, **params)

    def open(self, path: Path) -> None:
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.js("document.body && document.body.dataset.ready === '1'"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{path} did not finish loading (its script did not run)")

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, clip: dict | None = None) -> np.ndarray:
        params = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = self.call("Page.captureScreenshot", **params)["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def colour_pixels(img: np.ndarray, rgb, tol: int = 40) -> int:
    return int((np.abs(img.astype(int) - np.array(rgb)).max(axis=-1) <= tol).sum())


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """Two reviewed studies in one results folder (one with a hostile PatientName) and the index."""
    from cacpipe.config import ReviewSettings
    from cacpipe.phantom import PatientInfo, PhantomConfig
    from cacpipe.phantom.writer import write_phantom
    from cacpipe.review import build_index, build_review
    from cacpipe.volume import Volume

    root = tmp_path_factory.mktemp("review_browser")
    results = root / "results"
    studies = []
    for i, (pid, name) in enumerate([("PAT<1>", HOSTILE_NAME), ("PAT2", "DOE^JANE")]):
        cfg = PhantomConfig.preset("small", seed=i)
        _, truth = write_phantom(cfg, root / f"ph{i}", PatientInfo(patient_id=pid, patient_name=name), dicom=i == 0)
        if i:
            truth["dicom"] = {"study_uid": "1.2.3.4.5", "series": {"axial": {"uid": "1.2.3.4.5.6"}}}
        ct, lab = Volume.read(root / f"ph{i}" / "ct.nii.gz"), Volume.read(root / f"ph{i}" / "labels.nii.gz")
        res = result_from_truth(truth, pid, name, ct=ct, labels=lab)
        opts = ReviewSettings(fields=("anon_id", "study_date", "patient_name"), dicom=False)
        build_review(results / f"study{i}", ct, lab, res, axial_datasets(truth) if i == 0 else None, opts)
        studies.append(res)
    build_index(results)
    browser = Browser(root / "profile")
    downloads = root / "downloads"
    downloads.mkdir()
    browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    yield results, studies, browser, downloads
    browser.close()


def test_study_page_renders_escapes_and_toggles(reviewed):
    results, studies, browser, _ = reviewed
    page = Page(browser)
    page.open(results / "study0" / "review.html")
    # The hostile PatientName is shown as text: no extra script ran, no <b> element was created.
    assert page.js("document.querySelectorAll('script').length") == 2
    assert page.js("document.querySelector('header b') === null")
    assert HOSTILE_NAME in page.js("document.querySelector('header').textContent")
    assert page.js("typeof window.alert") == "function"
    assert not any(e.get("method") == "Page.javascriptDialogOpening" for e in list(page.b.events.queue))
    shot = page.screenshot()
    assert shot.std() > 20, "screenshot is blank"
    Image.fromarray(shot).save(results / "study0_screenshot.png")
    box = page.js("(() => { const r = document.getElementById('viewer').getBoundingClientRect();"
                  " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
    viewer_on = page.screenshot(box)
    # the first slice shown carries a lesion: calcium blue and its artery colour are on screen
    assert colour_pixels(viewer_on, CALCIUM_COLOUR) > 20
    assert sum(colour_pixels(viewer_on, ARTERY_COLOURS[a]) for a in ARTERY_COLOURS) > 50
    page.js("document.getElementById('overlay-toggle').click()")
    assert page.js("document.getElementById('img-ov').style.visibility") == "hidden"
    viewer_off = page.screenshot(box)
    assert colour_pixels(viewer_off, CALCIUM_COLOUR) == 0
    assert viewer_off.std() > 20  # the CT is still there
    page.js("document.getElementById('overlay-toggle').click()")
    # scrolling: the slider moves through slices; lesion buttons jump to the lesion's slice
    info0 = page.js("document.getElementById('slice-info').textContent")
    page.js("(() => { const r = document.getElementById('slice-range'); r.value = '0';"
            " r.dispatchEvent(new Event('input')); })()")
    assert page.js("document.getElementById('slice-info').textContent") != info0
    n = page.js("document.querySelectorAll('button[data-slice]').length")
    assert n == studies[0].total.lesions
    page.js("document.querySelectorAll('button[data-slice]')[1].click()")
    name = page.js("document.querySelectorAll('button[data-slice]')[1].textContent").split(" (")[0]
    assert name in page.js("document.getElementById('slice-info').textContent")


def _rate(page: Page, rater: str, ratings: dict, comments: dict) -> None:
    page.js(f"(() => {{ const r = document.getElementById('rater'); r.value = {json.dumps(rater)};"
            " r.dispatchEvent(new Event('input')); })()")
    for artery, value in ratings.items():
        page.js(f"document.querySelector('input[name=\"rating-{artery}\"][value=\"{value}\"]').click()")
    for artery, text in comments.items():
        page.js(f"(() => {{ const c = document.getElementById('comment-{artery}'); c.value = {json.dumps(text)};"
                " c.dispatchEvent(new Event('input')); })()")


def _wait_csv(folder: Path, before: set) -> Path:
    deadline = time.time() + 15
    while time.time() < deadline:
        new = [p for p in folder.glob("*.csv") if p not in before]
        if new:
            time.sleep(0.2)
            return new[0]
        time.sleep(0.1)
    raise TimeoutError("no CSV was downloaded")


def test_rating_form_downloads_csv_and_index_gathers(reviewed):
    results, studies, browser, downloads = reviewed
    page = Page(browser)
    page.open(results / "study0" / "review.html")
    ratings = {"RCA": "excellent", "LAD": "minor error", "LCX": "major error"}
    comments = {"LAD": 'missed, "small" lesion; <b>not bold</b>'}
    _rate(page, "R1", ratings, comments)
    assert "3/3" in page.js("document.getElementById('rate-status').textContent")
    before = set(downloads.glob("*.csv"))
    page.js("document.getElementById('download-csv').click()")
    path = _wait_csv(downloads, before)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    with path.open(newline="", encoding="utf-8") as fh:
        assert tuple(next(csv.reader(fh))) == RATING_COLUMNS
    assert {r["artery"]: r["rating"] for r in rows} == ratings
    study = studies[0].study.to_dict()
    assert all(r["rater"] == "R1" and r["patient_id"] == study["patient_id"] and r["study_uid"] == study["study_uid"]
               for r in rows)
    assert next(r for r in rows if r["artery"] == "LAD")["comment"] == comments["LAD"]  # CSV quoting round trip
    assert all(r["timestamp"].endswith("Z") for r in rows)
    # a reload restores the form from localStorage
    page.open(results / "study0" / "review.html")
    assert page.js("document.querySelector('input[name=\"rating-LCX\"]:checked').value") == "major error"
    # a second rater on the second study; the index gathers both studies for one rater
    page.open(results / "study1" / "review.html")
    _rate(page, "R2", {"RCA": "excellent"}, {})
    _rate(page, "R1", {"RCA": "minor error", "LAD": "excellent"}, {})
    page.open(results / "index.html")
    assert page.js("document.querySelectorAll('tr[data-study]').length") == 2
    assert HOSTILE_NAME in page.js("document.body.textContent")  # shown as text (allowed field)
    r1 = list(csv.DictReader(io.StringIO(page.js("window.cacpipeIndex.csv('R1')"))))
    assert len(r1) == 5 and {r["study_uid"] for r in r1} == {s.study.study_uid for s in studies}
    everyone = list(csv.DictReader(io.StringIO(page.js("window.cacpipeIndex.csv('')"))))
    assert {r["rater"] for r in everyone} == {"R1", "R2"} and len(everyone) == 6
