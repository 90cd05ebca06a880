"""Continuous agreement of predicted and reference scores, per artery and total.

For Agatston and calcium volume, on the studies where both sides have a number:

- ICC(A,1): two-way, absolute agreement, single measurement (McGraw & Wong 1996; Shrout &
  Fleiss ICC(2,1)) with its 95 % CI (McGraw & Wong's formulas, :func:`icc_a1`);
- Bland-Altman (1986): bias = mean(pred - ref), limits of agreement = bias +/- 1.96 SD, with the
  95 % CI of the bias (t) and of each limit (SE = sqrt(3 SD^2 / n), Bland & Altman 1999);
- the same on a log scale, d = ln(pred + 1) - ln(ref + 1) (CAC studies report it so, since the
  difference grows with the score); ``exp`` of bias and limits are ratios of (score + 1);
- Spearman's rho (scipy), mean absolute error (scikit-learn), and the mean / median absolute
  relative error |pred - ref| / ref over studies with ref > 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..labels import ARTERIES
from ..tables import numbers

MEASURES: tuple[str, ...] = ("agatston", "calcium_volume_mm3")
SCOPES: tuple[str, ...] = (*ARTERIES, "total")
Z95 = float(stats.norm.ppf(0.975))
MIN_ICC_N = 3  # fewer pairs give no usable ANOVA


def icc_a1(ratings: np.ndarray) -> dict:
    """ICC(A,1) of an n targets x k raters array, with 95 % CI, F test and p.

    Two-way ANOVA mean squares (rows = targets, columns = raters), ICC(A,1) and its CI as McGraw &
    Wong (1996, case 2A, Table 7) give them; F = MS rows / MS error on (n - 1, (n - 1)(k - 1)) df.
    Computed here rather than by a statistics package (the one used before, pingouin, is GPL-3.0)."""
    x = np.asarray(ratings, dtype=float)
    n, k = x.shape if x.ndim == 2 else (0, 0)
    out = {"icc": None, "icc_ci_low": None, "icc_ci_high": None, "icc_f": None, "icc_p": None}
    if n < MIN_ICC_N or k < 2 or np.ptp(x) == 0:
        return out
    gm = x.mean()
    ssr = k * float(np.sum((x.mean(axis=1) - gm) ** 2))
    ssc = n * float(np.sum((x.mean(axis=0) - gm) ** 2))
    sse = float(np.sum((x - gm) ** 2)) - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    with np.errstate(all="ignore"):
        icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        a, b = k * icc / (n * (1 - icc)), 1 + k * icc * (n - 1) / (n * (1 - icc))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        fs, fi = stats.f.ppf(0.975, n - 1, v), stats.f.ppf(0.975, v, n - 1)
        lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
        f = msr / mse
        pval = stats.f.sf(f, n - 1, (n - 1) * (k - 1))
    vals = {"icc": icc, "icc_ci_low": lo, "icc_ci_high": hi, "icc_f": f, "icc_p": pval}
    return {key: (float(v) if np.isfinite(v) else None) for key, v in vals.items()}


def bland_altman(pred: np.ndarray, ref: np.ndarray, prefix: str = "ba") -> dict:
    """Bias, SD and 95 % limits of agreement of pred - ref, with their 95 % CIs."""
    d = np.asarray(pred, float) - np.asarray(ref, float)
    n = len(d)
    keys = ("bias", "bias_ci_low", "bias_ci_high", "sd", "loa_low", "loa_high", "loa_low_ci_low",
            "loa_low_ci_high", "loa_high_ci_low", "loa_high_ci_high")
    if n < 2:
        return {f"{prefix}_{k}": (float(d.mean()) if k == "bias" and n else None) for k in keys}
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    t = float(stats.t.ppf(0.975, n - 1))
    se_bias, se_loa = sd / np.sqrt(n), np.sqrt(3 * sd * sd / n)
    lo, hi = bias - Z95 * sd, bias + Z95 * sd
    vals = (bias, bias - t * se_bias, bias + t * se_bias, sd, lo, hi, lo - t * se_loa, lo + t * se_loa,
            hi - t * se_loa, hi + t * se_loa)
    return {f"{prefix}_{k}": float(v) for k, v in zip(keys, vals, strict=True)}


def agreement_row(pred: np.ndarray, ref: np.ndarray) -> dict:
    """All continuous-agreement numbers of paired, finite scores."""
    from sklearn.metrics import mean_absolute_error

    pred, ref = np.asarray(pred, float), np.asarray(ref, float)
    n = len(pred)
    out: dict = {"n": n, "mean_pred": float(pred.mean()) if n else None, "mean_ref": float(ref.mean()) if n else None}
    out.update(icc_a1(np.column_stack([pred, ref])))
    out.update(bland_altman(pred, ref, "ba"))
    logd = bland_altman(np.log1p(pred), np.log1p(ref), "ba_log")
    out.update(logd)
    for k in ("bias", "loa_low", "loa_high"):
        v = logd[f"ba_log_{k}"]
        out[f"ba_log_{k}_ratio"] = None if v is None else float(np.exp(v))
    rho = p = None
    if n >= 3 and np.ptp(pred) > 0 and np.ptp(ref) > 0:
        r = stats.spearmanr(pred, ref)
        rho, p = float(r.statistic), float(r.pvalue)
    out.update(spearman_rho=rho, spearman_p=p)
    out["mae"] = float(mean_absolute_error(ref, pred)) if n else None
    pos = ref > 0
    rel = np.abs(pred[pos] - ref[pos]) / ref[pos]
    out.update(n_relative=int(pos.sum()), mean_abs_rel_error=float(rel.mean()) if pos.any() else None,
               median_abs_rel_error=float(np.median(rel)) if pos.any() else None)
    return out


def _column(m: pd.DataFrame, side: str, scope: str, measure: str) -> np.ndarray | None:
    col = f"{side}:{'total' if scope == 'total' else scope}_{measure}"
    if col in m.columns:
        return numbers(m, col)
    if scope == "total":  # sum of the arteries when every one has a number
        parts = [_column(m, side, a, measure) for a in ARTERIES]
        if all(p is not None for p in parts):
            return np.sum(np.stack(parts), axis=0)  # NaN when any artery is not assessed
    return None


def pairs(m: pd.DataFrame, scope: str, measure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(pred, ref, study ids) of the rows where both have a number; None when a side lacks the column."""
    p, r = _column(m, "pred", scope, measure), _column(m, "ref", scope, measure)
    if p is None or r is None:
        return None
    ok = np.isfinite(p) & np.isfinite(r)
    return p[ok], r[ok], m[m.attrs.get("key", "study_uid")].to_numpy()[ok]


def agreement_table(m: pd.DataFrame) -> list[dict]:
    """Rows per measure x scope (RCA, LAD, LCX, total) for the measures both sides carry."""
    rows = []
    for measure in MEASURES:
        for scope in SCOPES:
            pr = pairs(m, scope, measure)
            if pr is None:
                continue
            p_all, r_all = _column(m, "pred", scope, measure), _column(m, "ref", scope, measure)
            row = {"measure": measure, "artery": scope, **agreement_row(pr[0], pr[1]),
                   "not_assessed": int(np.sum(np.isnan(p_all) & np.isfinite(r_all))),
                   "reference_missing": int(np.sum(np.isnan(r_all)))}
            rows.append(row)
    return rows


def points_table(m: pd.DataFrame) -> list[dict]:
    """Every paired value (for plots and the points CSV): key, measure, artery, pred, ref."""
    key = m.attrs.get("key", "study_uid")
    rows = []
    for measure in MEASURES:
        for scope in SCOPES:
            pr = pairs(m, scope, measure)
            if pr is not None:
                rows += [{key: s, "measure": measure, "artery": scope, "pred": float(p), "ref": float(r)}
                         for p, r, s in zip(pr[0], pr[1], pr[2], strict=True)]
    return rows
