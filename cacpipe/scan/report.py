"""The lines a user reads: one per finished study, and the listing of a dry run.

Per study (as each finishes; also in OUT/cacpipe.log)::

    done    P01GOOD 20260101  Agatston 245.3  101-400  CAC-DRS A2/N3  [demo model, fallback heart locator]  12.4 s
    n/a     P07 20260107      not assessable: no heart found  [...]
    FAILED  P04MISS/1.2.3...: 1 slice(s) missing: gap of 4.00 mm after ...

Flags shown are those of severity warning or invalid; the demo model and the fallback heart
locator are always named, since they change what a number is worth.
"""

from __future__ import annotations

from ..flags import DEMO_MODEL, FALLBACK_HEART_LOCATOR

# Shown as words: they change what the number is worth more than any other flag.
_NAMED = {DEMO_MODEL: "DEMO MODEL (not for clinical use)", FALLBACK_HEART_LOCATOR: "fallback heart locator"}


def _number(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def study_line(key: str, outcome: dict, study_date: str = "") -> str:
    """The console line of one finished study (``outcome`` from ``worker.process_study``)."""
    seconds = (outcome.get("seconds") or {}).get("total")
    took = f"  {seconds:.1f} s" if seconds else ""
    if outcome["status"] != "done":
        return f"FAILED  {key}: {outcome['reason']}{took}"
    b = outcome.get("brief") or {}
    patient = key.split("/", 1)[0]
    who = f"{patient} {b.get('study_date') or study_date}".strip()
    flags = [c for c in b.get("flags", []) if c not in _NAMED]
    named = []
    if b.get("is_demo"):
        named.append(_NAMED[DEMO_MODEL])
    if b.get("fallback_heart"):
        named.append(_NAMED[FALLBACK_HEART_LOCATOR])
    tags = f"  [{', '.join(named + flags)}]" if named or flags else ""
    if b.get("status") == "not_assessable":
        return f"n/a     {who}  not assessable: {b.get('reason') or b.get('agatston_note') or 'see result.json'}{tags}{took}"
    if not b:  # a custom analysis that returned no numbers
        return f"done    {who}{took}"
    score = f"Agatston {_number(b.get('agatston'))}"
    if b.get("category"):
        score += f"  {b['category']}"
    if b.get("cac_drs"):
        score += f"  CAC-DRS {b['cac_drs']}"
    if b.get("agatston") is not None and not b.get("agatston_valid"):
        score += f"  (not valid: {b.get('agatston_note') or 'see flags'})"
    return f"done    {who}  {score}{tags}{took}"


def preview_lines(preview: dict) -> list[str]:
    """The dry-run listing (see ``preview.preview``): per study the series chosen and every skipped one."""
    out = [f"input: {preview['input_description']}"]
    for st in preview["studies"]:
        head = f"{st['key']}  ({st.get('study_date') or 'no date'})"
        if st.get("last_status"):
            head += f"  [last run: {st['last_status']}]"
        out.append(head)
        sel = st.get("selected")
        if sel:
            out.append(f"  SCORE  {_series_text(sel)}")
        else:
            out.append(f"  NOTHING TO SCORE: {st.get('reason') or 'no series meets the selection rules'}")
        for fb in st.get("fallbacks", []):
            out.append(f"  fallback  {_series_text(fb)}: {fb['reason']}")
        for sk in st.get("skipped", []):
            out.append(f"  skip   {_series_text(sk)}: {sk['reason']}")
    for p in preview.get("problems", []):
        out.append(f"unreadable: {p['source']}: {p['reason']}")
    out += [f"link not followed: {link}" for link in preview.get("folder_links", [])]
    n = preview["counts"]
    links = n.get("folder_links", 0)
    out.append(f"{n['studies']} studies: {n['scorable']} would be scored, {n['studies'] - n['scorable']} have "
               f"nothing to score; {n['problems']} unreadable files, {n['ignored_files']} non-DICOM files ignored"
               + (f", {links} folder link{'' if links == 1 else 's'} not followed" if links else "")
               + f" ({preview['seconds']:.1f} s, nothing was analysed)")
    return out


def _series_text(s: dict) -> str:
    parts = [f"#{s['series_number']}" if s.get("series_number") is not None else "",
             repr(s.get("series_description") or "") if s.get("series_description") is not None else "",
             f"{s['files']} image{'s' if s['files'] != 1 else ''}" if s.get("files") is not None else "",
             f"{s['spacing_mm']:g} mm" if s.get("spacing_mm") else "",
             f"kernel {s['kernel']}" if s.get("kernel") else "",
             f"({s['shape']})" if s.get("shape") else ""]
    return " ".join(p for p in parts if p)
