"""The review pages' package data: CSS and JavaScript files (cacpipe/review/static/) and the
NiiVue viewer bundle that the install step puts in static/vendor/ (``make viewer``; not in git).

Pages inline all of it: they open from a file:// path with no network, and their
Content-Security-Policy forbids fetching anything.
"""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
NIIVUE_JS = VENDOR / "niivue.umd.js"
NIIVUE_INFO = VENDOR / "niivue.json"  # {"version", "license", "source"} written by the install step

CSP = ("default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "worker-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'")

E = html.escape


@lru_cache(maxsize=16)
def static_text(name: str) -> str:
    """One file of cacpipe/review/static/ as text."""
    return (STATIC / name).read_text(encoding="utf-8")


def inline_script(text: str, what: str) -> str:
    """A <script> element with ``text``; refuses text that would end the element early."""
    if re.search(r"</script|<!--", text, flags=re.IGNORECASE):
        raise ValueError(f"{what} contains '</script' or '<!--' and cannot be inlined safely")
    return f"<script>{text}</script>"


@lru_cache(maxsize=1)
def niivue_bundle() -> tuple[str | None, dict]:
    """(the NiiVue UMD bundle's text, its info) or (None, {"reason": why not})."""
    if not NIIVUE_JS.exists():
        return None, {"reason": "the NiiVue bundle was not installed when this page was built (run `make viewer`)"}
    text = NIIVUE_JS.read_text(encoding="utf-8")
    try:
        info = json.loads(NIIVUE_INFO.read_text()) if NIIVUE_INFO.exists() else {}
    except (OSError, json.JSONDecodeError):
        info = {}
    try:
        inline_script(text, "the NiiVue bundle")
    except ValueError as exc:
        return None, {"reason": str(exc)}
    return text, info


def script_json(obj) -> str:
    """JSON safe inside <script>: no '</script>', no '<!--', no HTML-significant characters."""
    s = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def rgb(c) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"
