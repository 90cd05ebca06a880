"""Agreement and diagnostic-accuracy statistics, on maintained libraries.

Each function wraps a library call and puts the answer into the flat dict the evaluation tables
use; only what no library provides is written here, and says so:

- 2x2 table: sensitivity, specificity, PPV, NPV, accuracy with Wilson 95 % intervals
  (statsmodels ``proportion_confint``); AUC of a binary test = (sensitivity + specificity) / 2;
- AUC of a continuous score: scikit-learn ``roc_auc_score``, with the Hanley-McNeil (1982)
  standard error for a 95 % interval (no maintained library gives it: written here);
- Cohen's kappa, unweighted or linear/quadratic weighted, with the Fleiss-Cohen-Everitt (1969)
  large-sample standard error and 95 % interval (statsmodels ``cohens_kappa``), clipped to [-1, 1];
- free-marginal (Randolph 2005) multirater kappa (statsmodels ``fleiss_kappa(method="randolph")``);
  its binomial 95 % interval is written here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))

KAPPA_WEIGHTS: dict[str | None, str] = {None: "", "linear": "linear", "quadratic": "quadratic"}


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def wilson_ci(k: int, n: int) -> tuple[float | None, float | None]:
    """Wilson score 95 % interval of a proportion k/n ((None, None) when n == 0)."""
    if n == 0:
        return None, None
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def binary_table(pred: Sequence[bool], ref: Sequence[bool]) -> dict[str, int]:
    """Counts tp, fp, fn, tn of a binary prediction against a binary reference."""
    p = np.asarray(pred, dtype=bool)
    r = np.asarray(ref, dtype=bool)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref lengths differ: {p.shape} vs {r.shape}")
    return {"tp": int(np.sum(p & r)), "fp": int(np.sum(p & ~r)), "fn": int(np.sum(~p & r)),
            "tn": int(np.sum(~p & ~r))}


def diagnostic_metrics(t: dict[str, int]) -> dict[str, float | None]:
    """Sensitivity, specificity, PPV, NPV, accuracy (+ Wilson CIs) and binary AUC of a 2x2 table."""
    tp, fp, fn, tn = t["tp"], t["fp"], t["fn"], t["tn"]
    n = tp + fp + fn + tn
    out: dict[str, float | None] = {"n": n, **t}
    for name, k, m in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp),
                       ("npv", tn, tn + fn), ("accuracy", tp + tn, n)):
        out[name] = _ratio(k, m)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = wilson_ci(k, m)
    sens, spec = out["sensitivity"], out["specificity"]
    out["auc_binary"] = None if sens is None or spec is None else (sens + spec) / 2
    return out


def auc_continuous(score: Sequence[float], ref: Sequence[bool]) -> dict[str, float | None]:
    """ROC AUC of a continuous score (scikit-learn), Hanley-McNeil SE and 95 % interval."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(score, dtype=float)
    r = np.asarray(ref, dtype=bool)
    n1, n0 = int(r.sum()), int((~r).sum())
    if n1 == 0 or n0 == 0:
        return {"auc": None, "auc_se": None, "auc_ci_low": None, "auc_ci_high": None}
    auc = float(roc_auc_score(r, s))
    # Hanley & McNeil (1982), eq. 2 with Q1 = A/(2-A), Q2 = 2A^2/(1+A).
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = float(np.sqrt(max(0.0, (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0))))
    return {"auc": auc, "auc_se": se, "auc_ci_low": max(0.0, auc - Z95 * se), "auc_ci_high": min(1.0, auc + Z95 * se)}


def confusion(a: Sequence, b: Sequence, categories: Sequence) -> np.ndarray:
    """k x k count table, rows = first rater (a), columns = second (b), in ``categories`` order."""
    from sklearn.metrics import confusion_matrix

    cats = list(categories)
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"the two ratings differ in length: {len(a)} vs {len(b)}")
    known = set(cats)
    for x in (*a, *b):
        if x not in known:
            raise ValueError(f"value {x!r} is not one of the categories {cats}")
    if not a:
        return np.zeros((len(cats), len(cats)), dtype=np.int64)
    idx = {c: i for i, c in enumerate(cats)}  # sklearn sorts mixed labels; index them ourselves
    return confusion_matrix([idx[x] for x in a], [idx[y] for y in b], labels=range(len(cats))).astype(np.int64)


def cohen_kappa(table: np.ndarray, weights: str | None = None) -> dict[str, float | None]:
    """Cohen's kappa of a k x k count table with Fleiss-Cohen-Everitt SE and 95 % CI (statsmodels).

    ``weights``: None (unweighted), ``"linear"`` (1 - |i-j|/(k-1)) or ``"quadratic"``
    (1 - ((i-j)/(k-1))^2), over every level of the scale, observed or not.
    """
    from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

    if weights not in KAPPA_WEIGHTS:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    t = np.asarray(table, dtype=float)
    k = t.shape[0]
    n = t.sum()
    empty = {"kappa": None, "kappa_se": None, "kappa_ci_low": None, "kappa_ci_high": None, "n": int(n)}
    if n == 0 or k < 2:
        return empty
    i, j = np.indices((k, k))
    w = {None: (i == j).astype(float), "linear": 1 - np.abs(i - j) / (k - 1),
         "quadratic": 1 - ((i - j) / (k - 1)) ** 2}[weights]
    p = t / n
    po = float((w * p).sum())
    pe = float((w * np.outer(p.sum(axis=1), p.sum(axis=0))).sum())
    if pe >= 1.0 - 1e-12:  # one category only on both sides: kappa is undefined
        return {**empty, "po": po, "pe": pe}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = sm_kappa(t, wt=KAPPA_WEIGHTS[weights] or None)
    kappa, se = float(r.kappa), float(r.std_kappa)
    if not np.isfinite(se):
        se = 0.0
    return {"kappa": kappa, "kappa_se": se, "kappa_ci_low": float(max(-1.0, kappa - Z95 * se)),
            "kappa_ci_high": float(min(1.0, kappa + Z95 * se)), "n": int(n), "po": po, "pe": pe}


def free_marginal_kappa(ratings: np.ndarray, k: int) -> dict[str, float | None]:
    """Randolph's free-marginal multirater kappa (statsmodels), with a binomial 95 % interval.

    ``ratings``: items x raters array of category indices (0..k-1), every item rated by every
    rater. With two raters kappa = (P_o - 1/k) / (1 - 1/k), P_o = proportion of agreement; the
    95 % interval uses SE = sqrt(P_o (1 - P_o) / N) / (1 - 1/k).
    """
    from statsmodels.stats.inter_rater import fleiss_kappa

    r = np.asarray(ratings, dtype=int)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError("free-marginal kappa needs an items x raters array with at least two raters")
    n_items, m = r.shape
    if n_items == 0:
        return {"kappa": None, "kappa_ci_low": None, "kappa_ci_high": None, "n": 0, "po": None}
    counts = np.stack([(r == c).sum(axis=1) for c in range(k)], axis=1)
    kappa = float(fleiss_kappa(counts, method="randolph"))
    pe = 1.0 / k
    po = kappa * (1 - pe) + pe
    se = float(np.sqrt(max(po * (1 - po), 0.0) / n_items) / (1 - pe))
    return {"kappa": kappa, "kappa_ci_low": max(-1.0, kappa - Z95 * se), "kappa_ci_high": min(1.0, kappa + Z95 * se),
            "n": int(n_items), "po": po, "raters": int(m), "categories": int(k)}
