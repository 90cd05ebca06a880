"""progression.json, progression.csv (one row per patient, pair and artery) and progression.html.

The page shows, per patient, a trend line of per-artery Agatston over time (inline SVG, no
scripts, no downloads), the per-artery change of each pair and its lesion events with match ids.
Outputs carry patient identifiers: they are written private (cacpipe.files, docs/privacy.md).
"""

from __future__ import annotations

import html
from pathlib import Path

from ..csvout import write_csv
from ..files import make_private_dir, protect
from ..jsonfile import write_json
from ..labels import ARTERIES

CSV_COLUMNS: tuple[str, ...] = (
    "patient", "prior_study_uid", "current_study_uid", "prior_date", "current_date", "years", "artery",
    "agatston_prior", "agatston", "agatston_change", "agatston_change_per_year", "agatston_percent_per_year",
    "volume_prior_mm3", "volume_mm3", "volume_change_mm3", "volume_change_per_year_mm3", "sqrt_volume_change",
    "exceeds_repeatability", "progression", "fast", "new_lesions", "grown_lesions", "stable_lesions",
    "gone_lesions", "registration_seconds", "same_method", "prior_made_by", "current_made_by",
)
COLOURS = {"RCA": "#d62728", "LAD": "#1f77b4", "LCX": "#2ca02c", "total": "#444444"}


def csv_rows(doc: dict) -> list[dict]:
    rows = []
    for patient, p in doc["patients"].items():
        dates = {s["study_uid"]: s["study_date"] for s in p["studies"]}
        made = {s["study_uid"]: s.get("made_by") for s in p["studies"]}
        for pair in p["pairs"]:
            for a in (*ARTERIES, "total"):
                ch = pair["arteries"].get(a, {})
                evs = [e for e in pair["lesions"] if a == "total" or e["artery"] == a]
                row = {"patient": patient, "prior_study_uid": pair["prior"], "current_study_uid": pair["current"],
                       "prior_date": dates.get(pair["prior"]), "current_date": dates.get(pair["current"]),
                       "years": pair["years"], "artery": a,
                       "registration_seconds": pair["registration"].get("seconds"),
                       "same_method": pair.get("same_method"), "prior_made_by": made.get(pair["prior"]),
                       "current_made_by": made.get(pair["current"])}
                row.update({k: ch.get(k) for k in CSV_COLUMNS if k in ch})
                for s in ("new", "grown", "stable", "gone"):
                    row[f"{s}_lesions"] = sum(1 for e in evs if e["status"] == s)
                rows.append(row)
    return rows


def _trend_svg(p: dict, width: int = 420, height: int = 180) -> str:
    """Per-artery Agatston against years since the first study, as an inline SVG line chart."""
    studies = p["studies"]
    from .group import parse_date

    t0 = parse_date(studies[0]["study_date"])
    xs = [(parse_date(s["study_date"]) - t0).days / 365.25 for s in studies]
    series = {a: [s["arteries"][a]["agatston"] for s in studies] for a in ARTERIES}
    series["total"] = [s["total_agatston"] for s in studies]
    top = max([v for vs in series.values() for v in vs if v is not None] + [1.0])
    span = max(xs[-1], 1e-6)
    pad = 34

    def pt(x: float, y: float) -> str:
        return f"{pad + x / span * (width - 2 * pad):.1f},{height - pad - y / top * (height - 2 * pad):.1f}"

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="Agatston over time">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
             f'<text x="{pad}" y="{pad - 8}" font-size="11">Agatston (max {top:.0f})</text>',
             f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">years ({span:.1f})</text>']
    for name, vs in series.items():
        pts = [pt(x, v) for x, v in zip(xs, vs, strict=True) if v is not None]
        if len(pts) > 1:
            parts.append(f'<polyline fill="none" stroke="{COLOURS[name]}" stroke-width="2" points="{" ".join(pts)}"/>')
        parts += [f'<circle cx="{q.split(",")[0]}" cy="{q.split(",")[1]}" r="3" fill="{COLOURS[name]}"/>' for q in pts]
    legend = " ".join(f'<tspan fill="{c}">{n}</tspan>' for n, c in COLOURS.items())
    parts.append(f'<text x="{width - pad}" y="{pad - 8}" font-size="11" text-anchor="end">{legend}</text></svg>')
    return "".join(parts)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.1f}"
    return html.escape(str(v))


def page(doc: dict, views: dict | None = None) -> str:
    """The HTML page; ``views``: (prior uid, current uid) -> match id -> [prior PNG, current PNG]."""
    rep = doc["repeatability"]
    out = ["<!doctype html><meta charset='utf-8'><title>cacpipe progression</title>",
           "<style>body{font:14px sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;margin:.5em 0}"
           "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
           ".prog{color:#b00;font-weight:bold}</style>",
           "<h1>Coronary calcium progression</h1>",
           "<p><b>RESEARCH USE ONLY. Not a medical device.</b> Change is judged against the interscan "
           f"repeatability: square-root volume change &ge; {rep['sqrt_volume_threshold']:g} "
           f"({html.escape(rep['source'])}).</p>"]
    if not doc["patients"]:
        out.append("<p>No patient has more than one done study.</p>")
    for patient, p in doc["patients"].items():
        out.append(f"<h2>{html.escape(patient)}</h2>{_trend_svg(p)}")
        out.append("<table><tr><th>date</th><th>scanner</th><th>slice mm</th>"
                   + "".join(f"<th>{a}</th>" for a in ARTERIES) + "<th>total</th><th>made by</th></tr>")
        for s in p["studies"]:
            out.append(f"<tr><td>{_fmt(s['study_date'])}</td><td>{_fmt(s['manufacturer'])}</td>"
                       f"<td>{_fmt(s['slice_thickness_mm'])}</td>"
                       + "".join(f"<td>{_fmt(s['arteries'][a]['agatston'])}</td>" for a in ARTERIES)
                       + f"<td>{_fmt(s['total_agatston'])}</td>"
                       f"<td style='text-align:left;font-size:11px'>{html.escape(s.get('made_by') or '-')}</td></tr>")
        out.append("</table>")
        for pair in p["pairs"]:
            reg = pair["registration"]
            regtxt = (f"registered in {reg['seconds']:.1f} s" if "seconds" in reg
                      else f"not registered: {html.escape(reg.get('error', ''))}")
            if pair.get("same_method") is False:
                out.append("<p class='prog'>These two studies were measured by different models or heart "
                           "locators (see 'made by'): part of the change may be the method's, not the patient's.</p>")
            out.append(f"<h3>{pair['years']:.2f} years later ({regtxt})</h3><table><tr><th>artery</th>"
                       "<th>Agatston</th><th>change</th><th>per year</th><th>% per year</th><th>volume mm&sup3;</th>"
                       "<th>&Delta;&radic;volume</th><th>beyond repeatability</th></tr>")
            for a in (*ARTERIES, "total"):
                ch = pair["arteries"].get(a, {})
                if not ch.get("assessed"):
                    out.append(f"<tr><td>{a}</td><td colspan='7'>not assessed</td></tr>")
                    continue
                cls = " class='prog'" if ch.get("progression") else ""
                out.append(f"<tr{cls}><td>{a}</td><td>{_fmt(ch['agatston_prior'])} &rarr; {_fmt(ch['agatston'])}</td>"
                           f"<td>{_fmt(ch['agatston_change'])}</td><td>{_fmt(ch.get('agatston_change_per_year'))}</td>"
                           f"<td>{_fmt(ch.get('agatston_percent_per_year'))}</td>"
                           f"<td>{_fmt(ch['volume_prior_mm3'])} &rarr; {_fmt(ch['volume_mm3'])}</td>"
                           f"<td>{_fmt(ch['sqrt_volume_change'])}</td><td>{_fmt(ch['exceeds_repeatability'])}</td></tr>")
            imgs = (views or {}).get((pair["prior"], pair["current"]), {})
            out.append("</table><table><tr><th>match id</th><th>artery</th><th>prior lesion</th><th>current lesion</th>"
                       "<th>status</th><th>volume mm&sup3;</th><th>distance mm</th>"
                       + ("<th>prior | current (same place, registered)</th>" if imgs else "") + "</tr>")
            shown: set[str] = set()
            for e in pair["lesions"]:
                mid = e.get("match_id")
                cell = ""
                if imgs:
                    pngs = imgs.get(mid) if mid not in shown else None
                    shown.add(mid)
                    cell = "<td>" + "".join(f"<img alt='{_fmt(mid)}' src='data:image/png;base64,{b}'> "
                                            for b in (pngs or [])) + "</td>"
                out.append(f"<tr><td>{_fmt(e.get('match_id'))}</td><td>{e['artery']}</td><td>{_fmt(e['prior_lesion'])}</td>"
                           f"<td>{_fmt(e['current_lesion'])}</td><td>{e['status']}</td>"
                           f"<td>{_fmt(e['prior_volume_mm3'])} &rarr; {_fmt(e['current_volume_mm3'])}</td>"
                           f"<td>{_fmt(e['distance_mm'])}</td>{cell}</tr>")
            out.append("</table>")
    return "\n".join(out)


def write_outputs(doc: dict, out: str | Path, views: dict | None = None) -> dict[str, Path]:
    """Write progression.json, progression.csv and progression.html into ``out`` (private files)."""
    out = make_private_dir(out)
    paths = {"json": write_json(out / "progression.json", doc),
             "csv": write_csv(out / "progression.csv", csv_rows(doc), CSV_COLUMNS),
             "html": out / "progression.html"}
    paths["html"].write_text(page(doc, views), encoding="utf-8")
    protect(paths.values())
    return paths
