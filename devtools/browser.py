"""Headless Chromium for the review-page tests and the bench: a minimal Chrome DevTools Protocol
client over --remote-debugging-pipe (fd 3 in, fd 4 out), so no websocket library or chromedriver
is needed; and helpers to look at screenshots."""

from __future__ import annotations

import base64
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
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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

    def open(self, path: Path, suffix: str = "", timeout: float = 60) -> None:
        """Navigate to a file (``suffix``: e.g. '#viewer=basic') and wait until its script set body.dataset.ready."""
        self.call("Page.navigate", url=path.resolve().as_uri() + suffix)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.js("document.body && document.body.dataset.ready === '1'"):
                    return
            except TimeoutError:  # the page's script is busy (decoding the CT); ask again
                pass
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


def tinted_pixels(img: np.ndarray, rgb, strength: float = 30.0) -> int:
    """Pixels tinted towards the colour ``rgb`` (a label drawn half transparent over grey CT):
    their deviation from grey points the way ``rgb`` deviates from grey, by at least ``strength``."""
    p = img.astype(float)
    dev = p - p.mean(axis=-1, keepdims=True)
    d = np.asarray(rgb, dtype=float)
    d = d - d.mean()
    d /= np.linalg.norm(d)
    along = dev @ d
    cos = along / (np.linalg.norm(dev, axis=-1) + 1e-9)
    return int(((along > strength) & (cos > 0.9)).sum())
