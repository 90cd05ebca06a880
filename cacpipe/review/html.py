"""Self-contained HTML review pages: one per study (slice viewer + rating form) and a cohort index.

Offline by construction: images are data: URIs, CSS and JS are inline, no fonts or scripts are
fetched. Every string that comes from DICOM or the result is escaped with ``html.escape`` in
Python, and data handed to the script is JSON with ``<``, ``>`` and ``&`` written as ``\\u003c``
etc., read with ``JSON.parse`` and only ever put into the page with ``textContent``.

Ratings: the page cannot write files, so ratings live in the browser's localStorage (key
``cacpipe.ratings|<study_uid>``) and leave as a CSV download (Blob) with the columns
``RATING_COLUMNS``, which ``cacpipe evaluate`` reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import ReviewSettings
from ..labels import ARTERIES, ARTERY_COLOURS, ARTERY_LONG_NAMES, CALCIUM_COLOUR
from ..record import StudyResult
from ..volume import Volume
from .options import display_items
from .overlays import OverlaySet, _orient, label_rgba, to_grey

RATING_COLUMNS: tuple[str, ...] = ("rater", "patient_id", "study_uid", "artery", "rating", "comment", "timestamp")
RATINGS: tuple[str, ...] = ("excellent", "minor error", "major error")
STORAGE_PREFIX = "cacpipe.ratings|"
E = html.escape


def png_data_uri(img: Image.Image | np.ndarray) -> str:
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def script_json(obj) -> str:
    """JSON safe inside <script>: no '</script>', no '<!--', no HTML-significant characters."""
    s = json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _rgb(c) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


def _num(v, nd: int = 1) -> str:
    return "n/a" if v is None else f"{float(v):.{nd}f}"


def viewer_slices(ct: Volume, labels: Volume, ovs: OverlaySet, options: ReviewSettings) -> list[dict]:
    """The slices the page can scroll: the labelled z range plus 3 slices each side, superior first."""
    zs = np.nonzero(labels.array.any(axis=(1, 2)))[0]
    nz = ct.shape[0]
    k0, k1 = (max(0, int(zs.min()) - 3), min(nz, int(zs.max()) + 4)) if len(zs) else (0, nz)
    ks = list(range(k0, k1))
    if len(ks) > options.html_max_slices:  # keep the slices around the lesions when capping
        centre = int(np.median([les.best_slice for les in ovs.lesions])) if ovs.lesions else (k0 + k1) // 2
        start = min(max(k0, centre - options.html_max_slices // 2), k1 - options.html_max_slices)
        ks = list(range(start, start + options.html_max_slices))
    y0, y1, x0, x1 = ovs.box
    flips = ovs.flips
    out = []
    for k in ks:
        grey = to_grey(_orient(ct.array[k, y0:y1, x0:x1], flips), options.window)
        rgba = label_rgba(_orient(labels.array[k, y0:y1, x0:x1], flips))
        marks = []
        for les in ovs.lesions:
            if k not in les.slices:
                continue
            cy, cx = les.centre_yx[0] - y0, les.centre_yx[1] - x0
            if flips[0]:
                cy = (y1 - y0 - 1) - cy
            if flips[1]:
                cx = (x1 - x0 - 1) - cx
            marks.append({"name": les.name, "artery": les.artery, "cx": round(cx + 0.5, 2), "cy": round(cy + 0.5, 2),
                          "r": round(les.radius_px + 3, 2), "best": les.best_slice == k})
        z = float(ct.index_to_physical(np.array([[k, 0, 0]]))[0, 2])
        out.append({"k": k, "label": f"{k + 1}/{nz}", "z": round(z, 1), "grey": png_data_uri(grey),
                    "ov": png_data_uri(Image.fromarray(rgba, "RGBA")) if rgba[..., 3].any() else "", "marks": marks})
    return sorted(out, key=lambda s: -s["z"])


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;background:#16161a;color:#e6e6e6;margin:0}
header{background:#202028;padding:10px 16px;display:flex;flex-wrap:wrap;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0}
main{padding:12px 16px;display:grid;grid-template-columns:minmax(300px,600px) minmax(380px,1fr);gap:18px}
.viewer{position:relative;width:100%;background:#000;aspect-ratio:var(--aspect)}
.viewer img,.viewer svg{position:absolute;left:0;top:0;width:100%;height:100%}
#img-ov{image-rendering:pixelated}
.orient{position:absolute;color:#ff0;font-size:13px;font-weight:bold;pointer-events:none}
.controls{display:flex;gap:8px;align-items:center;margin:8px 0;flex-wrap:wrap}
input[type=range]{flex:1;min-width:180px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #333;padding:4px 6px;text-align:left;vertical-align:top;font-size:14px;overflow-wrap:anywhere}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #fff;margin-right:6px;vertical-align:middle}
.flag{padding:4px 8px;margin:3px 0;border-left:4px solid #888;background:#22222a}
.flag.warning{border-color:#e0a000}.flag.invalid{border-color:#e03030}.flag.info{border-color:#4a90e2}
.status{font-weight:bold}.banner{background:#5a1d1d;padding:8px 16px}
button{background:#2e6bd6;color:#fff;border:0;padding:6px 10px;border-radius:4px;cursor:pointer}
button.secondary{background:#444}
input[type=text]{background:#111;color:#eee;border:1px solid #555;padding:3px 5px}
.muted{color:#999;font-size:13px}
img.summary{max-width:100%;margin-top:12px}
label.rate{white-space:nowrap;margin-right:12px}
tr.rate-row td{border-bottom:2px solid #444;padding-bottom:8px}
tr[id^=row-] td{border-bottom:0}
"""

_STUDY_JS = """
(function(){
'use strict';
const D = JSON.parse(document.getElementById('review-data').textContent);
const KEY = D.storage_prefix + D.study_uid;
const $ = (id) => document.getElementById(id);
let idx = 0;
function show(i){
  idx = Math.max(0, Math.min(D.slices.length - 1, i));
  const s = D.slices[idx];
  $('img-grey').src = s.grey;
  const ov = $('img-ov');
  if (s.ov) { ov.src = s.ov; ov.dataset.empty = '0'; } else { ov.removeAttribute('src'); ov.dataset.empty = '1'; }
  const svg = $('marks');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const NS = 'http://www.w3.org/2000/svg';
  for (const m of s.marks) {
    const c = document.createElementNS(NS, 'circle');
    c.setAttribute('cx', m.cx); c.setAttribute('cy', m.cy); c.setAttribute('r', m.r);
    c.setAttribute('fill', 'none'); c.setAttribute('stroke', D.colours[m.artery]);
    c.setAttribute('stroke-width', D.w / 300);
    svg.appendChild(c);
    const t = document.createElementNS(NS, 'text');
    t.setAttribute('x', m.cx + m.r + 1); t.setAttribute('y', m.cy - m.r);
    t.setAttribute('fill', D.colours[m.artery]); t.setAttribute('font-size', D.w / 28);
    t.setAttribute('stroke', '#000'); t.setAttribute('stroke-width', D.w / 600);
    t.textContent = m.name;
    svg.appendChild(t);
  }
  $('slice-range').value = String(idx);
  const names = s.marks.map(m => m.name).join(', ');
  $('slice-info').textContent = 'slice ' + s.label + '  z ' + s.z.toFixed(1) + ' mm' + (names ? '  lesions: ' + names : '');
  applyOverlay();
}
function applyOverlay(){
  const on = $('overlay-toggle').checked;
  $('img-ov').style.visibility = (on && $('img-ov').dataset.empty !== '1') ? 'visible' : 'hidden';
  $('marks').style.visibility = on ? 'visible' : 'hidden';
}
function load(){ try { return JSON.parse(localStorage.getItem(KEY) || '{}'); } catch (e) { return {}; } }
function save(obj){ localStorage.setItem(KEY, JSON.stringify(obj)); }
function rater(){ return $('rater').value.trim(); }
function fillForm(){
  const all = load(); const mine = ((all.byRater || {})[rater()]) || {};
  for (const a of D.arteries) {
    const r = mine[a] || {};
    for (const el of document.querySelectorAll('input[name="rating-' + a + '"]')) el.checked = (el.value === r.rating);
    $('comment-' + a).value = r.comment || '';
  }
  updateStatus();
}
function record(a){
  const who = rater();
  if (!who) { $('rate-status').textContent = 'Enter your rater name first: ratings are stored per rater.'; fillForm(); return; }
  const sel = document.querySelector('input[name="rating-' + a + '"]:checked');
  const all = load(); all.study_uid = D.study_uid; all.patient_id = D.patient_id;
  all.byRater = all.byRater || {}; all.byRater[who] = all.byRater[who] || {};
  all.byRater[who][a] = {rating: sel ? sel.value : '', comment: $('comment-' + a).value, timestamp: new Date().toISOString()};
  save(all); updateStatus();
}
function updateStatus(){
  const who = rater(); const mine = ((load().byRater || {})[who]) || {};
  const n = D.arteries.filter(a => mine[a] && mine[a].rating).length;
  $('rate-status').textContent = who ? (who + ': ' + n + '/' + D.arteries.length + ' arteries rated (saved in this browser)') : 'Enter your rater name to rate.';
}
function csvCell(v){ v = String(v == null ? '' : v); return /[",\\r\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
function csvRows(records){
  const lines = [D.columns.join(',')];
  for (const r of records) lines.push(D.columns.map(c => csvCell(r[c])).join(','));
  return lines.join('\\r\\n') + '\\r\\n';
}
function studyRecords(){
  const all = load(); const out = [];
  for (const [who, arts] of Object.entries(all.byRater || {}))
    for (const a of D.arteries) { const r = arts[a]; if (r && r.rating) out.push({rater: who, patient_id: D.patient_id, study_uid: D.study_uid, artery: a, rating: r.rating, comment: r.comment, timestamp: r.timestamp}); }
  return out;
}
function download(name, text){
  const blob = new Blob([text], {type: 'text/csv'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = name;
  document.body.appendChild(a); a.click(); setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
window.cacpipeReview = {show, studyRecords, csv: () => csvRows(studyRecords())};
$('slice-range').max = String(D.slices.length - 1);
$('slice-range').addEventListener('input', e => show(parseInt(e.target.value, 10)));
$('prev').addEventListener('click', () => show(idx - 1));
$('next').addEventListener('click', () => show(idx + 1));
$('overlay-toggle').addEventListener('change', applyOverlay);
document.addEventListener('keydown', e => {
  if (e.target.tagName === 'INPUT' && e.target.type === 'text') return;
  if (e.key === 'ArrowUp' || e.key === 'k') { show(idx - 1); e.preventDefault(); }
  else if (e.key === 'ArrowDown' || e.key === 'j') { show(idx + 1); e.preventDefault(); }
  else if (e.key === 'o') { $('overlay-toggle').checked = !$('overlay-toggle').checked; applyOverlay(); }
});
for (const b of document.querySelectorAll('button[data-slice]')) b.addEventListener('click', () => {
  const k = parseInt(b.dataset.slice, 10); const i = D.slices.findIndex(s => s.k === k); if (i >= 0) show(i);
});
$('rater').value = localStorage.getItem('cacpipe.rater') || '';
$('rater').addEventListener('input', () => { localStorage.setItem('cacpipe.rater', rater()); fillForm(); });
for (const a of D.arteries) {
  for (const el of document.querySelectorAll('input[name="rating-' + a + '"]')) el.addEventListener('change', () => record(a));
  $('comment-' + a).addEventListener('input', () => record(a));
}
$('download-csv').addEventListener('click', () => {
  const recs = studyRecords();
  if (!recs.length) { $('rate-status').textContent = 'No ratings to download yet.'; return; }
  download('ratings_' + D.file_stem + '.csv', csvRows(recs));
});
const first = D.slices.findIndex(s => s.marks.some(m => m.best));
show(first >= 0 ? first : Math.floor(D.slices.length / 2));
fillForm();
document.body.dataset.ready = '1';
})();
"""


def study_page(ct: Volume, labels: Volume, result: StudyResult, ovs: OverlaySet, options: ReviewSettings,
               salt: str = "") -> str:
    """The HTML text of one study's review page."""
    study = result.study.to_dict()
    shown = display_items(study, options.fields, salt)
    slices = viewer_slices(ct, labels, ovs, options)
    y0, y1, x0, x1 = ovs.box
    h, w = y1 - y0, x1 - x0
    aspect = (w * ct.spacing_zyx[2]) / (h * ct.spacing_zyx[1])
    flags = result.flags
    study_uid = str(study.get("study_uid") or "")
    data = {
        "study_uid": study_uid, "patient_id": str(study.get("patient_id") or ""),
        "file_stem": "".join(ch if ch.isalnum() else "_" for ch in (dict(shown).get("Anon ID") or study_uid))[:64],
        "arteries": list(ARTERIES), "columns": list(RATING_COLUMNS), "storage_prefix": STORAGE_PREFIX,
        "colours": {a: _rgb(ARTERY_COLOURS[a]) for a in ARTERIES}, "w": w, "h": h, "slices": slices,
    }
    head = "".join(f"<span><span class=muted>{E(k)}:</span> {E(v)}</span>" for k, v in shown)
    status = result.status or "unknown"
    banner = ""
    if result.is_demo:
        banner = "<div class=banner>Demo model: these numbers are not for clinical use.</div>"
    flag_html = "".join(
        f"<div class='flag {E(f.severity)}'><b>{E(f.severity)}</b> "
        f"{E(f.code)}{' [' + E(f.artery) + ']' if f.artery else ''}: "
        f"{E(f.message)}</div>" for f in flags) or "<div class=muted>No flags.</div>"
    rows = []
    for a in ARTERIES:
        r = result.arteries[a]
        nums = (f"<td>{_num(r.calcium_volume_mm3)}</td><td>{_num(r.agatston)}</td>"
                f"<td>{E(str(r.lesions if r.lesions is not None else 'n/a'))}</td><td>{E(str(r.grade or 'n/a'))}</td>"
                ) if r.assessed else "<td colspan=4><b>not assessed</b></td>"
        aflags = ", ".join(E(f.code) for f in flags if f.artery == a)
        radios = "".join(f"<label class=rate><input type=radio name='rating-{a}' value='{E(v)}'> {E(v)}</label>" for v in RATINGS)
        rows.append(f"<tr id='row-{a}'><td><span class=sw style='background:{_rgb(ARTERY_COLOURS[a])}'></span>"
                    f"<b>{a}</b><div class=muted>{E(ARTERY_LONG_NAMES[a])}</div></td>{nums}<td>{aflags}</td></tr>"
                    f"<tr class=rate-row id='rate-{a}'><td colspan=6><span class=muted>rate {a}:</span> {radios}"
                    f"<input type=text id='comment-{a}' size=34 placeholder='comment on {a}'></td></tr>")
    tot = result.total
    lesion_buttons = " ".join(
        f"<button class=secondary data-slice='{les.best_slice}' style='border-left:4px solid "
        f"{_rgb(ARTERY_COLOURS[les.artery])}'>{E(les.name)} ({les.volume_mm3:.1f} mm&sup3;)</button>" for les in ovs.lesions
    ) or "<span class=muted>No calcified lesions found.</span>"
    summary = f"<img class=summary alt='summary' src='{png_data_uri(ovs.summary)}'>" if ovs.summary is not None else ""
    legend = "".join(f"<span><span class=sw style='background:{_rgb(ARTERY_COLOURS[a])}'></span>{a}</span> " for a in ARTERIES)
    legend += f"<span><span class=sw style='background:{_rgb(CALCIUM_COLOUR)}'></span>calcium</span>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>cacpipe review</title><style>{_CSS}</style></head>
<body style="--aspect:{aspect:.4f}">
<header><h1>cacpipe review</h1>{head}<span class=status>status: {E(status)}</span>
<span>Total Agatston {_num(tot.agatston)} &middot; {_num(tot.calcium_volume_mm3)} mm&sup3; &middot; {E(str(tot.category or ''))} {E(str(tot.cac_drs or ''))}</span></header>
{banner}
<main>
<section>
<div class=viewer id=viewer><img id=img-grey alt="CT slice"><img id=img-ov alt=""><svg id=marks viewBox="0 0 {w} {h}" preserveAspectRatio="none"></svg><span class="orient" style="left:6px;top:48%">R</span><span class="orient" style="right:6px;top:48%">L</span><span class="orient" style="left:49%;top:4px">A</span></div>
<div class=controls><button id=prev class=secondary title="previous (ArrowUp / k)">&#9650;</button>
<input type=range id=slice-range min=0 value=0><button id=next class=secondary title="next (ArrowDown / j)">&#9660;</button>
<label><input type=checkbox id=overlay-toggle checked> overlay (o)</label></div>
<div id=slice-info class=muted></div>
<div class=muted>Window W {options.window[1]:g} / L {options.window[0]:g} HU. Superior slices first; patient right on the image left. {legend}</div>
<div class=controls>Lesions: {lesion_buttons}</div>
{summary}
</section>
<section>
<h2>Arteries</h2>
<div class=controls><label>Rater <input type=text id=rater size=16 placeholder="your initials"></label>
<button id=download-csv>Download ratings CSV</button></div>
<div id=rate-status class=muted></div>
<table><thead><tr><th>artery</th><th>calcium mm&sup3;</th><th>Agatston</th><th>lesions</th><th>grade</th><th>flags</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Flags</h2>{flag_html}
<p class=muted>Ratings are kept in this browser (localStorage) until you download them; the CSV columns are {', '.join(RATING_COLUMNS)}.</p>
</section></main>
<script type="application/json" id="review-data">{script_json(data)}</script>
<script>{_STUDY_JS}</script>
</body></html>
"""


_INDEX_JS = """
(function(){
'use strict';
const D = JSON.parse(document.getElementById('index-data').textContent);
const $ = (id) => document.getElementById(id);
function csvCell(v){ v = String(v == null ? '' : v); return /[",\\r\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
function records(onlyRater){
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key.startsWith(D.storage_prefix)) continue;
    let all; try { all = JSON.parse(localStorage.getItem(key)); } catch (e) { continue; }
    for (const [who, arts] of Object.entries(all.byRater || {})) {
      if (onlyRater && who !== onlyRater) continue;
      for (const [a, r] of Object.entries(arts)) if (r && r.rating)
        out.push({rater: who, patient_id: all.patient_id, study_uid: all.study_uid, artery: a, rating: r.rating, comment: r.comment, timestamp: r.timestamp});
    }
  }
  return out;
}
function csv(onlyRater){
  const lines = [D.columns.join(',')];
  for (const r of records(onlyRater)) lines.push(D.columns.map(c => csvCell(r[c])).join(','));
  return lines.join('\\r\\n') + '\\r\\n';
}
function refresh(){
  const who = $('rater').value.trim();
  for (const row of document.querySelectorAll('tr[data-study]')) {
    let all = {}; try { all = JSON.parse(localStorage.getItem(D.storage_prefix + row.dataset.study) || '{}'); } catch (e) {}
    const raters = Object.entries(all.byRater || {}).filter(([w]) => !who || w === who);
    const n = raters.reduce((s, [, arts]) => s + Object.values(arts).filter(r => r && r.rating).length, 0);
    row.querySelector('.rated').textContent = n ? (n + ' rating(s)') : '-';
  }
}
window.cacpipeIndex = {records, csv};
$('rater').value = localStorage.getItem('cacpipe.rater') || '';
$('rater').addEventListener('input', refresh);
$('download-all').addEventListener('click', () => {
  const who = $('rater').value.trim();
  const blob = new Blob([csv(who)], {type: 'text/csv'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob);
  a.download = 'ratings_' + (who || 'all').replace(/[^A-Za-z0-9_-]/g, '_') + '.csv';
  document.body.appendChild(a); a.click(); setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
});
refresh();
document.body.dataset.ready = '1';
})();
"""


def index_page(entries: list[dict]) -> str:
    """The HTML text of the cohort index (entries: review.json dicts with a 'href' key)."""
    rows = []
    for e in entries:
        shown = " &middot; ".join(f"{E(str(k))}: {E(str(v))}" for k, v in e.get("display", []))
        tot = e.get("total") or {}
        flags = e.get("flags") or []
        worst = next((s for s in ("invalid", "warning", "info") if any(f.get("severity") == s for f in flags)), "")
        rows.append(f"<tr data-study='{E(str(e.get('study_uid', '')))}'><td><a href='{E(e['href'])}'>{shown or 'study'}</a></td>"
                    f"<td>{E(str(e.get('status', '')))}</td><td>{_num(tot.get('agatston'))}</td>"
                    f"<td>{_num(tot.get('calcium_volume_mm3'))}</td><td>{E(str(tot.get('category') or ''))}</td>"
                    f"<td class='flag {E(worst)}'>{len(flags)} {E(worst)}</td><td class=rated>-</td></tr>")
    data = {"columns": list(RATING_COLUMNS), "storage_prefix": STORAGE_PREFIX}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>cacpipe review index</title><style>{_CSS} main{{display:block}}</style></head>
<body><header><h1>cacpipe review index</h1><span>{len(entries)} studies</span></header>
<main><div class=controls><label>Rater <input type=text id=rater size=16 placeholder="all raters"></label>
<button id=download-all>Download all ratings CSV</button>
<span class=muted>Gathers the ratings saved in this browser from every study page.</span></div>
<table><thead><tr><th>study</th><th>status</th><th>Agatston</th><th>calcium mm&sup3;</th><th>category</th><th>flags</th><th>rated</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table></main>
<script type="application/json" id="index-data">{script_json(data)}</script>
<script>{_INDEX_JS}</script></body></html>
"""


def write_index(results_dir: Path) -> Path:
    """Find every ``review.json`` under ``results_dir`` and write ``results_dir/index.html``."""
    results_dir = Path(results_dir)
    entries = []
    for p in sorted(results_dir.rglob("review.json")):
        try:
            e = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if e.get("schema") != "cacpipe.review/1":
            continue
        e["href"] = (p.parent / e.get("review_html", "review.html")).relative_to(results_dir).as_posix()
        entries.append(e)
    out = results_dir / "index.html"
    out.write_text(index_page(entries), encoding="utf-8")
    return out
