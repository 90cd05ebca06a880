"""The cohort index (RESULTS_DIR/index.html): one row per study of a scan, reviewed or not.

Rows come from the scan's manifest.json (every study with its status; failed and skipped ones
with their reasons), each done study's result.json (per-artery Agatston, category, CAC-DRS,
flags, applied corrections) and review.json (the page link and the allowed patient fields);
review pages found under the folder without a manifest entry (``cacpipe review build``) are
listed too. The page's script adds the review status from this browser's storage (rated /
corrected / pending), sorts the table, and gathers ratings and corrections for download.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..config import ReviewSettings
from ..errors import InputDataError
from ..labels import ARTERIES
from ..record import DEMO_MODEL_STATEMENT, RESEARCH_USE, StudyResult
from .assets import CSP, E, inline_script, script_json, static_text
from .corrections import SCHEMA as CORRECTIONS_SCHEMA
from .options import anonymised_id, display_items
from .page import RATING_COLUMNS, STORAGE, _num

log = logging.getLogger(__name__)

REVIEW_SCHEMA = "cacpipe.review/1"


def _read(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _row(results_dir: Path, study_dir: Path | None, entry: dict | None, fields, salt: str,
         anonymous: bool = False) -> dict:
    """One index row from whatever is known about a study (manifest entry, result.json, review.json).
    ``anonymous`` (``review.anonymous_names``): texts that would name the PatientID (a source folder in
    a reason or flag message, shown on hover) name the anonymised id instead."""
    entry = entry or {}
    res = _read(study_dir / "result.json") if study_dir else None
    rev = _read(study_dir / "review.json") if study_dir else None
    if rev is not None and rev.get("schema") != REVIEW_SCHEMA:
        rev = None
    study = (res or {}).get("study") or {k: entry.get(k, "") for k in ("patient_id", "study_uid", "study_date",
                                                                         "accession")}
    display = [tuple(x) for x in rev["display"]] if rev and rev.get("display") else display_items(study, fields, salt)
    arteries = (res or rev or {}).get("arteries") or {}
    total = (res or rev or {}).get("total") or {}
    flags = (res or rev or {}).get("flags") or []
    corr = (res or {}).get("corrections") or {}
    status = entry.get("status") or (res or rev or {}).get("status") or ""
    reason = entry.get("reason") or (res or {}).get("reason") or ""
    if status == "done" and res is not None and res.get("status") == "not_assessable":
        status = "not_assessable"
    made = ""
    demo = False
    if res is not None:
        try:
            prov = StudyResult.from_json(res).provenance()
            made, demo = " | ".join([*prov.warnings, prov.made_by()]), prov.model_is_demo
        except InputDataError:
            made = "result.json of another cacpipe version"
    href = None
    if rev is not None:
        href = (study_dir / rev.get("review_html", "review.html")).relative_to(results_dir).as_posix()
    if anonymous or (rev or {}).get("patient_pseudonym"):
        pid = str(study.get("patient_id") or entry.get("patient_id") or "")
        pseudonym = (rev or {}).get("patient_pseudonym") or anonymised_id(pid, salt)
        hide = (lambda t: t.replace(pid, pseudonym)) if len(pid) >= 3 else (lambda t: t)
        reason = hide(str(reason))
        flags = [{**f, "message": hide(str(f.get("message", "")))} for f in flags if isinstance(f, dict)]
    return {
        "study_uid": str(study.get("study_uid") or entry.get("study_uid") or ""),
        "display": display, "href": href, "status": str(status), "reason": str(reason),
        "arteries": {a: (arteries.get(a) or {}) for a in ARTERIES}, "total": total,
        "flags": [f for f in flags if isinstance(f, dict)],
        "applied": sorted({str(f.get("reader", "")) for f in corr.get("files") or []}),
        "made_by": made, "demo": demo,
    }


def index_rows(results_dir: Path, fields=None, salt: str = "") -> list[dict]:
    """Rows of the index: the manifest's studies (in its order by patient, date), then review
    pages found under ``results_dir`` that the manifest does not list."""
    fields = tuple(fields) if fields else ReviewSettings().fields
    rows, seen = [], set()
    manifest = _read(results_dir / "manifest.json")
    anonymous = bool((((manifest or {}).get("settings") or {}).get("review") or {}).get("anonymous_names"))
    if manifest and manifest.get("schema") == "cacpipe.manifest/1":
        entries = sorted((manifest.get("studies") or {}).values(),
                         key=lambda e: (e.get("patient_id", ""), e.get("study_date", ""), e.get("study_uid", "")))
        for e in entries:
            study_dir = None
            if e.get("status") == "done" and e.get("result"):
                study_dir = (results_dir / e["result"]).parent
                seen.add(study_dir.resolve())
            rows.append(_row(results_dir, study_dir, e, fields, salt, anonymous))
    superseded = (results_dir / "superseded").resolve()  # corrected versions a rescan replaced (cacpipe.scan.layout)
    for p in sorted(results_dir.rglob("review.json")):
        if p.parent.resolve() in seen or p.resolve().is_relative_to(superseded):
            continue
        rev = _read(p)
        if not rev or rev.get("schema") != REVIEW_SCHEMA:
            continue
        rows.append(_row(results_dir, p.parent, None, fields, salt, anonymous))
    return rows


def _agatston_cell(art: dict) -> tuple[str, str]:
    if not art or not art.get("assessed"):
        return ("not assessed" if art else "-"), ""
    v = art.get("agatston")
    return _num(v), "" if v is None else f"{float(v):.4f}"


def index_page(rows: list[dict]) -> str:
    """The HTML text of the cohort index."""
    body = []
    for r in rows:
        shown = " &middot; ".join(f"{E(str(k))}: {E(str(v))}" for k, v in r["display"]) or "study"
        link = f"<a href='{E(r['href'])}'>{shown}</a>" if r["href"] else shown
        tot = r["total"]
        cells = [f"<td data-sort='{E(' '.join(str(v) for _, v in r['display']))}'>{link}</td>",
                 f"<td class=status data-sort='{E(r['status'])}'>{E(r['status'])}</td>",
                 f"<td class=review data-applied='{E(', '.join(r['applied']))}'>"
                 + ("corrected (applied by " + E(", ".join(r["applied"])) + ")" if r["applied"] else "") + "</td>"]
        for a in ARTERIES:
            text, key = _agatston_cell(r["arteries"][a])
            cells.append(f"<td class=num data-sort='{key}'>{E(text)}</td>")
        t = tot.get("agatston")
        cells.append(f"<td class=num data-sort='{'' if t is None else f'{float(t):.4f}'}'>{_num(t)}</td>")
        cells.append(f"<td data-sort='{E(str(tot.get('category') or ''))}'>{E(str(tot.get('category') or '-'))}</td>")
        cells.append(f"<td data-sort='{E(str(tot.get('cac_drs') or ''))}'>{E(str(tot.get('cac_drs') or '-'))}</td>")
        flags = "".join(
            f"<li class='sev-{E(str(f.get('severity', '')))}' title='{E(str(f.get('message', '')))}'>"
            f"{E(str(f.get('code', ''))).replace('_', '_<wbr>')}" + (f" [{E(str(f['artery']))}]" if f.get("artery") else "") + "</li>"
            for f in r["flags"])
        codes = " ".join(str(f.get("code", "")) for f in r["flags"])
        cells.append(f"<td data-sort='{E(codes)}'>" + (f"<ul class=flags>{flags}</ul>" if flags else "-") + "</td>")
        cells.append(f"<td data-sort='{E(r['reason'])}'>{E(r['reason'])}</td>")
        cells.append(f"<td data-sort='{E(r['made_by'])}' class=small>{E(r['made_by'])}</td>")
        cls = E(r["status"])
        body.append(f"<tr class='{cls}' data-study='{E(r['study_uid'])}'>{''.join(cells)}</tr>")
    heads = ["study", "status", "review", *ARTERIES, "total Agatston", "category", "CAC-DRS", "flags", "reason",
             "made by"]
    numeric = {"RCA", "LAD", "LCX", "total Agatston"}
    th = "".join(f"<th scope=col aria-sort=none{' class=num' if h in numeric else ''} data-type="
                 f"{'num' if h in numeric else 'text'}><button type=button class=sort>{E(h)}</button></th>"
                 for h in heads)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {E(s or 'unknown')}" for s, n in sorted(counts.items()))
    n_demo = sum(1 for r in rows if r["demo"])
    banner = (f"<div class=banner>{n_demo} of {len(rows)} studies were segmented with the "
              f"{E(DEMO_MODEL_STATEMENT)}: their numbers are NOT FOR CLINICAL USE.</div>") if n_demo else ""
    data = {"columns": list(RATING_COLUMNS), "storage": STORAGE, "arteries": list(ARTERIES),
            "corrections_schema": CORRECTIONS_SCHEMA}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cacpipe review index</title><style>{static_text("review.css")}</style></head>
<body><header><h1>cacpipe review index</h1><span>{len(rows)} studies: {summary}</span>
<strong>{E(RESEARCH_USE)}</strong></header>
{banner}
<main class=index>
<div class=controls><label>Reader <input type=text id=rater size=16 placeholder="all readers" autocomplete=off></label>
<button type=button id=download-all>Download all ratings CSV</button>
<button type=button id=download-corrections>Download all corrections (JSON)</button>
<span class=muted>Gathers what was saved in this browser on every study page (for one reader, or all).</span></div>
<p class=muted>Click a column header to sort (again to reverse); <kbd>&uarr;</kbd>/<kbd>&darr;</kbd> move between studies, <kbd>Enter</kbd> opens one.
Review status: <span class=review-rated>rated</span>, <span class=review-corrected>corrected</span> (in this browser, or applied with
<code>cacpipe review apply</code>), <span class=review-pending>pending</span>.</p>
<table id=studies><thead><tr>{th}</tr></thead>
<tbody>{''.join(body)}</tbody></table></main>
<script type="application/json" id="index-data">{script_json(data)}</script>
{inline_script(static_text("common.js"), "common.js")}
{inline_script(static_text("index.js"), "index.js")}</body></html>
"""


def write_index(results_dir: Path, fields=None, salt: str = "") -> Path:
    """Write ``results_dir/index.html`` (see :func:`index_rows`)."""
    results_dir = Path(results_dir)
    out = results_dir / "index.html"
    out.write_text(index_page(index_rows(results_dir, fields, salt)), encoding="utf-8")
    return out
