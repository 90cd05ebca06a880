"""The benchmark's headline figures, taken from a ``cacpipe.evaluation.evaluate`` result.

One flat row per figure: ``metric`` (e.g. ``LAD_agatston_icc``), ``value``, ``ci_low``/``ci_high``
(95 %), ``n`` and a readable ``label``. Per-artery category kappa (not an evaluation table) is
computed here from the paired per-artery Agatston scores with the evaluation's reclassification
(linear weights over the five categories).
"""

from __future__ import annotations

from ..evaluation.categories import reclassification
from ..labels import ARTERIES
from ..quant.categories import CATEGORIES, category

SCOPES = (*ARTERIES, "total")


def _row(metric: str, label: str, value, lo=None, hi=None, n=None) -> dict:
    return {"metric": metric, "label": label, "value": value, "ci_low": lo, "ci_high": hi, "n": n}


def headline(res: dict) -> list[dict]:
    """Headline figures of an evaluation result (rows that cannot be computed are left out)."""
    rows: list[dict] = []
    for c in res.get("continuous") or []:
        meas = "agatston" if c["measure"] == "agatston" else "volume"
        scope, what = c["artery"], "Agatston" if meas == "agatston" else "calcium volume"
        rows.append(_row(f"{scope}_{meas}_icc", f"{scope} {what}: ICC(A,1)", c.get("icc"), c.get("icc_ci_low"),
                         c.get("icc_ci_high"), c.get("n")))
        rows.append(_row(f"{scope}_{meas}_ba_bias", f"{scope} {what}: Bland-Altman bias (pred - ref)",
                         c.get("ba_bias"), c.get("ba_bias_ci_low"), c.get("ba_bias_ci_high"), c.get("n")))
        rows.append(_row(f"{scope}_{meas}_ba_loa", f"{scope} {what}: 95 % limits of agreement", None,
                         c.get("ba_loa_low"), c.get("ba_loa_high"), c.get("n")))
    for p in res.get("presence") or []:
        if p.get("subgroup") != "all":
            continue
        a = p["artery"]
        for k, name in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("kappa", "Cohen's kappa")):
            rows.append(_row(f"{a}_presence_{k}", f"{a} calcium presence: {name}", p.get(k), p.get(f"{k}_ci_low"),
                             p.get(f"{k}_ci_high"), p.get("n") or _n(p)))
    for r in res.get("lesions") or []:
        a = r["artery"]
        sens, ppv = r.get("sensitivity"), r.get("ppv")
        f1 = 2 * sens * ppv / (sens + ppv) if sens is not None and ppv is not None and sens + ppv > 0 else None
        rows.append(_row(f"{a}_lesion_sensitivity", f"{a} lesions: sensitivity", sens, r.get("sensitivity_ci_low"),
                         r.get("sensitivity_ci_high"), r.get("ref_lesions")))
        rows.append(_row(f"{a}_lesion_ppv", f"{a} lesions: PPV", ppv, r.get("ppv_ci_low"), r.get("ppv_ci_high"),
                         r.get("pred_lesions")))
        rows.append(_row(f"{a}_lesion_f1", f"{a} lesions: F1", f1, n=r.get("ref_lesions")))
        rows.append(_row(f"{a}_lesion_fp_per_scan", f"{a} lesions: false positives per scan", r.get("fp_per_scan"),
                         n=r.get("scans")))
    for c in res.get("categories") or []:
        key = "category" if c["scale"] == "agatston_category" else "cac_drs"
        name = "risk category (0/1-10/11-100/101-400/>400)" if key == "category" else "CAC-DRS A0-A3"
        rows.append(_row(f"{key}_exact_agreement", f"{name}: exact agreement", c.get("exact_agreement"),
                         c.get("exact_agreement_ci_low"), c.get("exact_agreement_ci_high"), c.get("n")))
        for w in ("linear", "quadratic"):
            rows.append(_row(f"{key}_kappa_{w}", f"{name}: {w}{'ly' if w == 'linear' else 'ally'} weighted kappa", c.get(f"kappa_{w}"),
                             c.get(f"kappa_{w}_ci_low"), c.get(f"kappa_{w}_ci_high"), c.get("n")))
    rows += artery_category_kappa(res.get("points") or [])
    return rows


def _n(p: dict):
    return sum(int(p.get(k) or 0) for k in ("tp", "fp", "fn", "tn")) or None


def artery_category_kappa(points: list[dict]) -> list[dict]:
    """Per-artery risk-category agreement (categories of each artery's own Agatston score)."""
    rows = []
    for a in ARTERIES:
        pr = [(p["pred"], p["ref"]) for p in points if p["measure"] == "agatston" and p["artery"] == a]
        if len(pr) < 2:
            continue
        r = reclassification([category(x) for x, _ in pr], [category(y) for _, y in pr], CATEGORIES)
        rows.append(_row(f"{a}_category_kappa", f"{a} per-artery category: linearly weighted kappa",
                         r.get("kappa_linear"), r.get("kappa_linear_ci_low"), r.get("kappa_linear_ci_high"), r["n"]))
    return rows
