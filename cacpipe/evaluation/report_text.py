"""The plain-text report of an evaluation result (what ``cacpipe evaluate`` prints)."""

from __future__ import annotations

import numpy as np


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ci(row: dict, name: str, value_key: str | None = None, digits: int = 2) -> str:
    """``value (low-high)`` or ``-``."""
    v = row.get(value_key or name)
    lo, hi = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return fmt(v, digits)
    return f"{v:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})" if min(lo, v) < 0 else \
        f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def matrix_lines(rows: list[str], cols: list[str], table: list[list[int]], corner: str = "") -> list[str]:
    w = max(8, *(len(c) + 2 for c in cols))
    first = max(10, *(len(r) + 2 for r in rows), len(corner) + 2)
    out = [f"    {corner:<{first}}" + "".join(f"{c:>{w}}" for c in cols)]
    for r, vals in zip(rows, table, strict=True):
        out.append(f"    {r:<{first}}" + "".join(f"{v:>{w}}" for v in vals))
    return out


def _matching(res: dict) -> list[str]:
    mt = res["matching"]
    lines = [f"Matched {mt['matched']} studies on {mt['key']} (pred {mt['pred_rows']}, ref {mt['ref_rows']})."]
    for side in ("pred", "ref"):
        ids = mt.get(f"unmatched_{side}") or []
        if ids:
            lines.append(f"  NOT evaluated, only in {side.upper()} ({len(ids)}): {', '.join(ids)}")
    return lines


def _presence(res: dict) -> list[str]:
    gw = max(12, *(len(str(r["group"])) + 2 for r in res["presence"]))
    lines = ["", "Calcium presence (pred positive = calcium volume > 0; 95% CI)",
             f"{'subgroup':<16}{'group':<{gw}}{'artery':<7}{'n':>5}{'NA':>4}  {'sensitivity':<18}{'specificity':<18}"
             f"{'PPV':<18}{'NPV':<18}{'accuracy':<18}{'AUC bin':>8}  {'AUC vol':<18}{'kappa':<20}"]
    for r in res["presence"]:
        lines.append(
            f"{r['subgroup']:<16}{r['group']:<{gw}}{r['artery']:<7}{r['n']:>5}{r['not_assessed']:>4}  "
            f"{ci(r, 'sensitivity'):<18}{ci(r, 'specificity'):<18}{ci(r, 'ppv'):<18}{ci(r, 'npv'):<18}"
            f"{ci(r, 'accuracy'):<18}{fmt(r['auc_binary'], 2):>8}  {ci(r, 'auc'):<18}{ci(r, 'kappa'):<20}")
    return lines


def _continuous(res: dict) -> list[str]:
    lines = ["", "Continuous agreement (pred vs ref): ICC(A,1) with 95% CI; Bland-Altman bias and 95% limits of "
                 "agreement;", "  log scale: bias and limits of ln(score+1) shown as ratios; Spearman rho; mean "
                 "absolute error; median |pred-ref|/ref",
             f"  {'measure':<20}{'artery':<7}{'n':>4}  {'ICC':<22}{'bias':>9}  {'limits of agreement':<22}"
             f"{'log ratio (limits)':<24}{'rho':>6}{'MAE':>9}{'rel.err':>9}"]
    for r in res["continuous"]:
        loa = "-" if r["ba_loa_low"] is None else f"{r['ba_loa_low']:.1f} to {r['ba_loa_high']:.1f}"
        lr = "-" if r["ba_log_loa_low_ratio"] is None else \
            f"{r['ba_log_bias_ratio']:.2f} ({r['ba_log_loa_low_ratio']:.2f}-{r['ba_log_loa_high_ratio']:.2f})"
        rel = "-" if r["median_abs_rel_error"] is None else f"{100 * r['median_abs_rel_error']:.0f}%"
        lines.append(f"  {r['measure']:<20}{r['artery']:<7}{r['n']:>4}  {ci(r, 'icc'):<22}{fmt(r['ba_bias'], 1):>9}  "
                     f"{loa:<22}{lr:<24}{fmt(r['spearman_rho'], 2):>6}{fmt(r['mae'], 1):>9}{rel:>9}")
    return lines


def _categories(res: dict) -> list[str]:
    lines = ["", "Risk categories: reclassification (rows = reference, columns = prediction), weighted kappa (95% CI)"]
    for r in res["categories"]:
        lines.append(f"  {r['scale']}: n={r['n']}  exact agreement {ci(r, 'exact_agreement')}  kappa linear "
                     f"{ci(r, 'kappa_linear')}  quadratic {ci(r, 'kappa_quadratic')}  pred higher "
                     f"{fmt(r['pred_higher'], 2)}, lower {fmt(r['pred_lower'], 2)}")
        lines += matrix_lines(r["levels"], r["levels"], r["table"], "ref \\ pred")
    return lines


def _lesions(res: dict) -> list[str]:
    lines = []
    if res.get("lesions"):
        n = res["lesions"][0]["scans"]
        lines += ["", f"Lesion level ({n} scans; a lesion matches when it shares a voxel; per artery a reference "
                      "lesion counts as found only under its own artery; 'any' ignores the artery)",
                  f"  {'artery':<7}{'ref':>5}{'pred':>6}{'TP':>5}{'FN':>5}{'FP':>5}  {'sensitivity':<18}{'PPV':<18}"
                  f"{'FP/scan':>8}{'Dice':>7}"]
        for r in res["lesions"]:
            lines.append(f"  {r['artery']:<7}{r['ref_lesions']:>5}{r['pred_lesions']:>6}{r['tp_ref']:>5}{r['fn']:>5}"
                         f"{r['fp']:>5}  {ci(r, 'sensitivity'):<18}{ci(r, 'ppv'):<18}{fmt(r['fp_per_scan'], 2):>8}"
                         f"{fmt(r['dice'], 2):>7}")
        a = res["lesion_attribution"]
        lines.append("  Artery attribution (reference lesions by the artery of the predicted lesion overlapping them "
                     "most; row 'none' = predicted lesions overlapping no reference lesion)")
        lines += matrix_lines(a["ref"], a["pred"], a["table"], "ref \\ pred")
        wrong = [p for p in res.get("lesion_pairs", []) if p["ref_artery"] not in ("none",)
                 and p["pred_artery"] not in ("missed", p["ref_artery"])]
        key = next((k for k in ("study_uid", "patient_id") if wrong and k in wrong[0]), None)
        for p in wrong:
            lines.append(f"  {p.get(key)}: {p['ref_artery']} lesion {p['ref_lesion']} ({fmt(p['ref_volume_mm3'], 1)} "
                         f"mm3) reported as {p['pred_artery']}")
    for s in res.get("lesion_skipped", []):
        lines.append(f"  lesion level skipped for {next(iter(s.values()))}: {s['reason']}")
    return lines


def _rest(res: dict) -> list[str]:
    lines = []
    if res.get("agreement"):
        lines += ["", "Agreement across ordered categories (linear-weighted Cohen's kappa, 95% CI)"]
        for r in res["agreement"]:
            lines.append(f"  {r['measure']:<12} n={r['n']:<5} kappa {ci(r, 'kappa')}  exact agreement "
                         f"{fmt(r['agreement'], 2)}")
    if res.get("ordinal_regression"):
        lines += ["", "Ordinal regression (logit) of reference grade on predicted calcium volume (mL)"]
        for r in res["ordinal_regression"]:
            if "error" in r:
                lines.append(f"  {r['artery']:<4} not fitted: {r['error']}")
                continue
            lines.append(f"  {r['artery']:<4} n={r['n']:<5} B {r['coef']:.2f} (95% CI {r['ci_low']:.2f} to "
                         f"{r['ci_high']:.2f})  Wald {r['wald']:.2f}  p {r['p']:.3g}  levels {r['levels']}"
                         + ("" if r["converged"] else "  [did not converge]"))
    return lines


def format_text(res: dict) -> str:
    """A readable plain-text report of :func:`cacpipe.evaluation.run.evaluate`'s result."""
    lines: list[str] = []
    if "matching" in res:
        lines += _matching(res)
    lines += [f"note: {n}" for n in res.get("notes", [])]
    if res.get("presence"):
        lines += _presence(res)
    if res.get("continuous"):
        lines += _continuous(res)
    if res.get("categories"):
        lines += _categories(res)
    lines += _lesions(res)
    lines += _rest(res)
    if res.get("review"):
        lines += ["", "Review ratings: free-marginal kappa (excellent / minor error / major error)"]
        for r in res["review"]:
            lines.append(f"  {r['artery']:<4} items={r['n']:<5} raters {r['raters']}  agreement {fmt(r['po'], 2)}  "
                         f"kappa {ci(r, 'kappa')}")
    return "\n".join(lines).lstrip("\n")
