"""The benchmark report: cacpipe's figures beside published ones (HTML with plots, JSON, CSV).

Every figure of cacpipe comes from ``cacpipe.evaluation.evaluate`` on the scan's results and
the converted reference; every published figure names its source and data (``published.py``).
The page and the JSON state which model and heart locator produced the results.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
from pathlib import Path

from .. import __version__
from ..csvout import write_csv
from ..scan.layout import write_atomic
from .metrics import headline
from .published import PROTOCOLS, published_for

HTML = "benchmark_report.html"
JSON = "benchmark.json"
METRICS_CSV = "benchmark_metrics.csv"
PUBLISHED_CSV = "benchmark_published.csv"
CASES_CSV = "benchmark_cases.csv"
SCHEMA = "cacpipe.benchmark/1"
DATASET_NAMES = {"coca": "Stanford COCA", "orcascore": "orCaScore"}


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(res: dict, head: list[dict], published: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = []
    pts = [p for p in res.get("points") or [] if p["measure"] == "agatston"]
    scopes = [s for s in ("RCA", "LAD", "LCX", "total") if any(p["artery"] == s for p in pts)]
    if scopes:
        fig, axes = plt.subplots(1, len(scopes), figsize=(3.2 * len(scopes), 3.2), squeeze=False)
        for ax, s in zip(axes[0], scopes, strict=True):
            x = np.array([p["ref"] for p in pts if p["artery"] == s])
            y = np.array([p["pred"] for p in pts if p["artery"] == s])
            ax.scatter(np.log10(x + 1), np.log10(y + 1), s=14, alpha=0.7)
            hi = max(float(np.log10(max(x.max(), y.max()) + 1)), 1.0) * 1.05
            ax.plot([0, hi], [0, hi], "k--", lw=0.8)
            for b in (10, 100, 400):
                ax.axvline(np.log10(b + 1), color="0.85", lw=0.6)
                ax.axhline(np.log10(b + 1), color="0.85", lw=0.6)
            ax.set_title(f"{s} Agatston (n={len(x)})")
            ax.set_xlabel("reference, log10(score + 1)")
            ax.set_ylabel("cacpipe, log10(score + 1)")
        out.append(("Predicted vs reference Agatston (category boundaries 10 / 100 / 400 in grey)", _png(fig)))
        tot = [p for p in pts if p["artery"] == "total"]
        if len(tot) >= 2:
            r = np.array([p["ref"] for p in tot])
            q = np.array([p["pred"] for p in tot])
            d, m = np.log(q + 1) - np.log(r + 1), (np.log(q + 1) + np.log(r + 1)) / 2
            fig, ax = plt.subplots(figsize=(4.8, 3.2))
            ax.scatter(m, d, s=14, alpha=0.7)
            bias, sd = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0
            for v, style in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
                ax.axhline(v, color="k", ls=style, lw=0.8)
            ax.set_xlabel("mean of ln(score + 1)")
            ax.set_ylabel("ln(cacpipe + 1) - ln(reference + 1)")
            ax.set_title("Bland-Altman, total Agatston (log scale)")
            out.append(("Bland-Altman of total Agatston on the log scale (bias and 95 % limits)", _png(fig)))
    ours = {h["metric"]: h["value"] for h in head if h["value"] is not None}
    shared = [p for p in published if p["metric"] in ours]
    if shared:
        fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(shared) + 1.2))
        ys = np.arange(len(shared))
        ax.barh(ys + 0.2, [ours[p["metric"]] for p in shared], height=0.4, label="cacpipe (this run)")
        ax.barh(ys - 0.2, [p["value"] for p in shared], height=0.4, label="published", color="0.6")
        ax.set_yticks(ys, [f"{p['metric']} [{p['ct']}]" for p in shared], fontsize=7)
        ax.set_xlim(min(0.0, min(ours[p["metric"]] for p in shared)), 1.0)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("cacpipe beside published figures (sources in the table below)", fontsize=9)
        out.append(("cacpipe beside published figures (different data unless the table says otherwise)", _png(fig)))
    return out


def _case_rows(records: list[dict], res: dict, times: dict) -> list[dict]:
    pts = {}
    for p in res.get("points") or []:
        if p["measure"] == "agatston" and p["artery"] == "total":
            key = next((v for k, v in p.items() if k in ("study_uid", "patient_id")), None)
            pts[key] = p["pred"]
    rows = []
    for r in records:
        ref = (r.get("row") or {}).get("total_agatston")
        conv = r.get("conversion") or {}
        rows.append({"case": r["case"], "patient_id": r.get("patient_id", ""), "study_uid": r.get("study_uid", ""),
                     "conversion": r["status"], "conversion_reason": r.get("reason", ""),
                     "rois": conv.get("rois", ""), "unplaced_rois": len(conv.get("unplaced", []) or []),
                     "overlap_voxels": conv.get("overlap_voxels", ""),
                     "reference_total_agatston": ref,
                     "cacpipe_total_agatston": pts.get(r.get("study_uid"), pts.get(r.get("patient_id"))),
                     "seconds": times.get(r["case"])})
    return rows


def evaluate_and_report(dataset: str, subset: str, out: Path, records: list[dict], times: dict, summary,
                        html: bool = True) -> Path:
    """Evaluate the scan against the reference and write the report files; returns the HTML (or JSON) path."""
    from ..evaluation import evaluate, load_prediction, load_reference, write_outputs
    from .run import EVALUATION, REFERENCE_CSV, SCAN

    pred = load_prediction(out / SCAN)
    ref = load_reference(out / REFERENCE_CSV)
    res = evaluate(pred, ref, allow_partial=True, ref_labels=out / "reference", lesion_level=subset == "gated")
    write_outputs(res, out / EVALUATION, html=html)
    head = headline(res)
    published = [p.to_dict() for p in published_for(dataset, subset)]
    secs = sorted(float(v) for v in times.values())
    timing = {"cases_timed": len(secs), "median_seconds_per_case": statistics.median(secs) if secs else None,
              "total_cases_in_dataset_folder": getattr(summary, "dataset_cases", summary.cases)}
    if secs:
        timing["extrapolated_full_run_hours"] = timing["median_seconds_per_case"] * timing[
            "total_cases_in_dataset_folder"] / 3600.0
    cases = _case_rows(records, res, times)
    doc = {"schema": SCHEMA, "cacpipe_version": __version__, "dataset": dataset, "subset": subset,
           "dataset_name": DATASET_NAMES[dataset], "cases": summary.cases, "converted": summary.converted,
           "scanned": summary.scanned, "provenance": res.get("provenance") or [],
           "demo_model": bool(res.get("demo_model")), "protocol": PROTOCOLS[f"{dataset}-{subset}"],
           "matching": res.get("matching"), "metrics": head, "published": published, "timing": timing,
           "case_table": cases, "notes": summary.notes + res.get("notes", []),
           "failures": {"conversion": summary.conversion_failed, "scan": summary.scan_failed}}
    write_atomic(out / JSON, json.dumps(doc, indent=1, default=str))
    write_csv(out / METRICS_CSV, head, ["metric", "label", "value", "ci_low", "ci_high", "n"])
    write_csv(out / PUBLISHED_CSV, published, ["metric", "value", "what", "dataset", "source", "short", "ct"])
    write_csv(out / CASES_CSV, cases, list(cases[0]) if cases else ["case"])
    if not html:
        return out / JSON
    write_atomic(out / HTML, render_html(doc, _plots(res, head, published)))
    return out / HTML


def render_html(doc: dict, plots: list[tuple[str, str]]) -> str:
    """One self-contained page (inline PNGs, no scripts)."""
    e = html.escape
    by_metric: dict[str, list[dict]] = {}
    for p in doc["published"]:
        by_metric.setdefault(p["metric"], []).append(p)
    prov = doc["provenance"] or ["(no provenance found in the scan results)"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cacpipe benchmark: "
        f"{e(doc['dataset_name'])}</title><style>body{{font-family:sans-serif;margin:24px;max-width:1100px}}"
        "table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;"
        "vertical-align:top}th{background:#eee}.warn{background:#fff3cd;border:1px solid #e0c060;padding:8px}"
        ".num{text-align:right}.src{font-size:11px;color:#555}</style></head><body>",
        f"<h1>cacpipe benchmark: {e(doc['dataset_name'])} ({e(doc['subset'])})</h1>",
        f"<p>cacpipe {e(doc['cacpipe_version'])}; {doc['cases']} case(s), {doc['converted']} converted, "
        f"{doc['scanned']} scanned. RESEARCH USE ONLY.</p>",
        "<h2>Which model and heart locator produced these results</h2><ul>"
        + "".join(f"<li>{e(str(x))}</li>" for x in prov) + "</ul>",
    ]
    if doc["demo_model"]:
        parts.append("<p class='warn'>The phantom-trained demo model produced (some of) these results: NOT FOR "
                     "CLINICAL USE, and its figures say nothing about a trained model's accuracy.</p>")
    parts.append(f"<h2>Protocol</h2><p>{e(doc['protocol'])}</p>")
    parts.append("<h2>cacpipe's figures, with published ones beside them</h2><table><tr><th>figure</th>"
                 "<th>cacpipe</th><th>95 % CI</th><th>n</th><th>published (source below)</th></tr>")
    for h in doc["metrics"]:
        pub = "; ".join(f"{p['value']:g} [{p['ct']}, {p['dataset']}] ({p['short']})"
                        for p in by_metric.get(h["metric"], []))
        ci = "" if h["ci_low"] is None and h["ci_high"] is None else f"{_fmt(h['ci_low'])} – {_fmt(h['ci_high'])}"
        parts.append(f"<tr><td>{e(h['label'])}</td><td class='num'>{_fmt(h['value'])}</td><td class='num'>{e(ci)}"
                     f"</td><td class='num'>{_fmt(h['n'])}</td><td class='src'>{e(pub)}</td></tr>")
    parts.append("</table>")
    for title, png in plots:
        parts.append(f"<h3>{e(title)}</h3><img alt='{e(title)}' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Published figures and their sources</h2><p>Measured on other data unless the dataset column "
                 "names this one: a side-by-side view, not a head-to-head comparison.</p><table><tr><th>figure</th>"
                 "<th>value</th><th>what</th><th>data</th><th>CT</th><th>source</th></tr>")
    for p in doc["published"]:
        parts.append(f"<tr><td>{e(p['metric'])}</td><td class='num'>{p['value']:g}</td><td>{e(p['what'])}</td>"
                     f"<td>{e(p['dataset'])}</td><td>{e(p['ct'])}</td><td class='src'>{e(p['source'])}</td></tr>")
    parts.append("</table>")
    t = doc["timing"]
    if t.get("median_seconds_per_case") is not None:
        parts.append(f"<h2>Time</h2><p>Median {t['median_seconds_per_case']:.1f} s per case over {t['cases_timed']} "
                     f"case(s) analysed in this run; the {t['total_cases_in_dataset_folder']} cases of the dataset "
                     f"folder would take about {t['extrapolated_full_run_hours']:.1f} h on this machine "
                     "(extrapolated, not measured).</p>")
    parts.append("<h2>Cases</h2><table><tr>" + "".join(f"<th>{e(k)}</th>" for k in (doc["case_table"][0] if
                 doc["case_table"] else [])) + "</tr>")
    for r in doc["case_table"]:
        parts.append("<tr>" + "".join(f"<td>{e(_fmt(v, 1))}</td>" for v in r.values()) + "</tr>")
    parts.append("</table>")
    fails = doc["failures"]["conversion"] + doc["failures"]["scan"]
    if fails or doc["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(str(n))}</li>" for n in doc["notes"])
                     + "".join(f"<li>FAILED {e(c)}: {e(r)}</li>" for c, r in fails) + "</ul>")
    parts.append("<p>Every table of the evaluation (presence, agreement, categories, lesions, attribution) with its "
                 "own plots: <a href='evaluation/report.html'>evaluation/report.html</a>; per-case conversion reports: "
                 "reference/by_case/.</p></body></html>")
    return "\n".join(parts)

