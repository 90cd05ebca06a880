"""One self-contained HTML report of an evaluation: tables plus matplotlib plots as inline PNGs.

Plots: predicted vs reference scatter with the Agatston category boundaries (10, 100, 400),
Bland-Altman (linear and ln(score + 1)), the reclassification heat maps and the lesion
artery-attribution matrix. No scripts, no external files: the page opens from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .report_text import ci, fmt

BOUNDARIES = (10.0, 100.0, 400.0)
SCOPE_ORDER = ("total", "RCA", "LAD", "LCX")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _points(res: dict, measure: str, scope: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    key = res.get("matching", {}).get("key", "study_uid")
    sel = [p for p in res.get("points", []) if p["measure"] == measure and p["artery"] == scope]
    return (np.array([p["pred"] for p in sel]), np.array([p["ref"] for p in sel]), [str(p.get(key)) for p in sel])


def _label(ax, xs, ys, names) -> None:
    if len(names) <= 20:  # small cohorts: name each point
        for x, y, n in zip(xs, ys, names, strict=True):
            ax.annotate(n[-12:], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")


def scatter_figure(res: dict, measure: str = "agatston") -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = [s for s in SCOPE_ORDER if len(_points(res, measure, s)[0])]
    if not scopes:
        return None
    fig, axes = plt.subplots(1, len(scopes), figsize=(3.6 * len(scopes), 3.6), squeeze=False,
                             layout="constrained")
    for ax, scope in zip(axes[0], scopes, strict=True):
        p, r, names = _points(res, measure, scope)
        top = max(1.0, float(max(p.max(), r.max()))) * 1.5
        ax.plot([0, top], [0, top], color="0.6", lw=1, label="identity")
        if measure == "agatston":
            for b in BOUNDARIES:
                if b < top:
                    ax.axvline(b, color="tab:orange", lw=0.8, ls="--")
                    ax.axhline(b, color="tab:orange", lw=0.8, ls="--")
        ax.scatter(r, p, s=18, color="tab:blue", zorder=3)
        _label(ax, r, p, names)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"reference {measure}")
        ax.set_ylabel(f"predicted {measure}")
        ax.set_title(scope)
    fig.suptitle(f"Predicted vs reference {measure} (symlog axes; dashed: category boundaries 10/100/400)"
                 if measure == "agatston" else f"Predicted vs reference {measure} (symlog axes)", fontsize=9)
    return _png(fig)


def bland_altman_figure(res: dict, measure: str = "agatston", scope: str = "total") -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, r, names = _points(res, measure, scope)
    row = next((x for x in res.get("continuous", []) if x["measure"] == measure and x["artery"] == scope), None)
    if len(p) < 2 or row is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), layout="constrained")
    for ax, log in zip(axes, (False, True), strict=True):
        a, b = (np.log1p(p), np.log1p(r)) if log else (p, r)
        pre = "ba_log" if log else "ba"
        ax.scatter((a + b) / 2, a - b, s=18, color="tab:blue", zorder=3)
        _label(ax, (a + b) / 2, a - b, names)
        for k, style in (("bias", "-"), ("loa_low", "--"), ("loa_high", "--")):
            v = row[f"{pre}_{k}"]
            if v is not None:
                ax.axhline(v, color="tab:red" if k == "bias" else "0.4", ls=style, lw=1)
                ax.annotate(f"{k.replace('_', ' ')} {v:.2f}", (1.0, v), xycoords=("axes fraction", "data"),
                            fontsize=7, ha="right", va="bottom")
        ax.axhline(0, color="0.8", lw=0.8)
        unit = "ln(score+1)" if log else measure
        ax.set_xlabel(f"mean of pred and ref, {unit}")
        ax.set_ylabel(f"pred - ref, {unit}")
        ax.set_title("log scale" if log else "linear scale", fontsize=9)
    fig.suptitle(f"Bland-Altman, {scope} {measure} (n={len(p)})", fontsize=9)
    return _png(fig)


def heatmap_figure(tables: list[tuple[str, list[str], list[str], list[list[int]], str, str]]) -> str | None:
    """Count matrices side by side: (title, row labels, column labels, table, row axis, column axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not tables:
        return None
    fig, axes = plt.subplots(1, len(tables), figsize=(3.9 * len(tables), 3.6), squeeze=False,
                             layout="constrained")
    for ax, (title, rows, cols, t, ylab, xlab) in zip(axes[0], tables, strict=True):
        arr = np.asarray(t, dtype=float)
        ax.imshow(arr, cmap="Blues", vmin=0, vmax=max(1.0, arr.max()))
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                v = int(arr[i, j])
                ax.text(j, i, str(v), ha="center", va="center", fontsize=9,
                        color="white" if v > arr.max() / 2 else ("black" if v else "0.7"),
                        fontweight="bold" if i == j and v else "normal")
        ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel(xlab)
        ax.set_ylabel(ylab)
        ax.set_title(title, fontsize=9)
    return _png(fig)


# --- tables --------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _presence_html(res: dict) -> str:
    rows = [[r["artery"], r["n"], r["not_assessed"], ci(r, "sensitivity"), ci(r, "specificity"), ci(r, "ppv"),
             ci(r, "npv"), ci(r, "auc"), ci(r, "kappa")] for r in res["presence"] if r["subgroup"] == "all"]
    return _table(["artery", "n", "not assessed", "sensitivity", "specificity", "PPV", "NPV", "AUC (volume)",
                   "kappa"], rows)


def _continuous_html(res: dict) -> str:
    rows = []
    for r in res["continuous"]:
        loa = "-" if r["ba_loa_low"] is None else f"{r['ba_loa_low']:.1f} to {r['ba_loa_high']:.1f}"
        lr = "-" if r["ba_log_loa_low_ratio"] is None else \
            f"{r['ba_log_bias_ratio']:.2f} ({r['ba_log_loa_low_ratio']:.2f}-{r['ba_log_loa_high_ratio']:.2f})"
        rel = "-" if r["median_abs_rel_error"] is None else f"{100 * r['median_abs_rel_error']:.0f} %"
        rows.append([r["measure"], r["artery"], r["n"], ci(r, "icc"), fmt(r["ba_bias"], 1), loa, lr,
                     fmt(r["spearman_rho"], 2), fmt(r["mae"], 1), rel])
    return _table(["measure", "artery", "n", "ICC(A,1) (95% CI)", "bias", "limits of agreement",
                   "log: ratio (limits)", "Spearman rho", "MAE", "median rel. error"], rows)


def _categories_html(res: dict) -> str:
    rows = [[r["scale"], r["n"], ci(r, "exact_agreement"), ci(r, "kappa_linear"), ci(r, "kappa_quadratic"),
             fmt(r["pred_higher"], 2), fmt(r["pred_lower"], 2)] for r in res["categories"]]
    return _table(["scale", "n", "exact agreement", "kappa linear", "kappa quadratic", "pred higher", "pred lower"],
                  rows)


def _lesions_html(res: dict) -> str:
    rows = [[r["artery"], r["ref_lesions"], r["pred_lesions"], r["tp_ref"], r["fn"], r["fp"], ci(r, "sensitivity"),
             ci(r, "ppv"), fmt(r["fp_per_scan"], 2), fmt(r["dice"], 2)] for r in res["lesions"]]
    out = _table(["artery", "reference lesions", "predicted lesions", "TP", "FN", "FP", "sensitivity", "PPV",
                  "FP per scan", "Dice (voxels)"], rows)
    key = res.get("matching", {}).get("key", "study_uid")
    odd = [p for p in res.get("lesion_pairs", []) if p["pred_artery"] != p["ref_artery"]]
    if odd:
        out += "<h3>Lesions not found under their own artery, and false positives</h3>" + _table(
            [key, "reference artery", "reference lesion", "reference volume mm3", "predicted artery",
             "predicted volume mm3", "overlap voxels"],
            [[p.get(key), p["ref_artery"], fmt(p["ref_lesion"]), fmt(p["ref_volume_mm3"], 1), p["pred_artery"],
              fmt(p["pred_volume_mm3"], 1), p["overlap_voxels"]] for p in odd])
    return out


CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.warn{background:#fff3cd;border:1px solid #e0c060;
padding:.6em;margin:.6em 0}.note{color:#555;font-size:13px}img{max-width:100%}h2{border-bottom:1px solid #ddd}"""


def render(res: dict) -> str:
    """The report page as a string."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>cacpipe evaluation</title>",
             f"<style>{CSS}</style></head><body><h1>cacpipe evaluation</h1>"]
    if res.get("demo_model"):
        parts.append("<div class='warn'>Predictions made by the phantom-trained demo model: NOT FOR CLINICAL USE.</div>")
    for line in res.get("provenance", []):
        parts.append(f"<p class='note'>Prediction: {html.escape(line)}</p>")
    if "matching" in res:
        mt = res["matching"]
        parts.append(f"<p>Matched <b>{mt['matched']}</b> studies on {html.escape(mt['key'])} (prediction "
                     f"{mt['pred_rows']} rows, reference {mt['ref_rows']} rows).</p>")
        for side in ("pred", "ref"):
            if mt.get(f"unmatched_{side}"):
                parts.append(f"<div class='warn'>Not evaluated, only in {side.upper()}: "
                             f"{html.escape(', '.join(mt[f'unmatched_{side}']))}</div>")
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in res.get("notes", [])]
    if res.get("presence"):
        parts += ["<h2>Calcium presence</h2>", "<p class='note'>Prediction positive = calcium volume &gt; 0; "
                  "95% Wilson intervals; subgroups in evaluation_presence.csv.</p>", _presence_html(res)]
    if res.get("continuous"):
        parts += ["<h2>Continuous agreement</h2>", _continuous_html(res)]
        for fig in (scatter_figure(res, "agatston"), bland_altman_figure(res, "agatston", "total"),
                    bland_altman_figure(res, "calcium_volume_mm3", "total")):
            if fig:
                parts.append(fig)
    if res.get("categories"):
        parts += ["<h2>Risk categories</h2>", _categories_html(res)]
        parts.append(heatmap_figure([(f"{r['scale']} (n={r['n']})", r["levels"], r["levels"], r["table"],
                                      "reference", "prediction") for r in res["categories"]]) or "")
    if res.get("lesions"):
        a = res["lesion_attribution"]
        parts += ["<h2>Lesion level</h2>", "<p class='note'>A predicted and a reference lesion match when they "
                  "share a voxel; per artery a reference lesion counts as found only under its own artery; "
                  "'any' ignores the artery.</p>", _lesions_html(res),
                  heatmap_figure([("artery attribution of reference lesions", a["ref"], a["pred"], a["table"],
                                   "reference artery", "predicted artery")]) or ""]
    for s in res.get("lesion_skipped", []):
        parts.append(f"<p class='note'>Lesion level skipped for {html.escape(str(next(iter(s.values()))))}: "
                     f"{html.escape(s['reason'])}</p>")
    if res.get("agreement"):
        parts += ["<h2>Ordered grades (linear-weighted kappa)</h2>", _table(
            ["measure", "n", "kappa (95% CI)", "exact agreement"],
            [[r["measure"], r["n"], ci(r, "kappa"), fmt(r["agreement"], 2)] for r in res["agreement"]])]
    if res.get("review"):
        parts += ["<h2>Review ratings (free-marginal kappa)</h2>", _table(
            ["artery", "items", "raters", "agreement", "kappa (95% CI)"],
            [[r["artery"], r["n"], r["raters"], fmt(r["po"], 2), ci(r, "kappa")] for r in res["review"]])]
    parts.append("<p class='note'>Written by cacpipe evaluate; numbers in evaluation.json and the CSV files beside "
                 "this page.</p></body></html>")
    return "\n".join(parts)


def write_html(res: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(res), encoding="utf-8")
    return path
