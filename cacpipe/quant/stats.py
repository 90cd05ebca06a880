"""Agreement and diagnostic-accuracy statistics, written out plainly (numpy + scipy only).

- 2x2 table: sensitivity, specificity, PPV, NPV, accuracy with Wilson 95 % intervals;
  AUC of a binary test = (sensitivity + specificity) / 2;
- AUC of a continuous score: Mann-Whitney U / (n_pos * n_neg) (ties count 1/2), with the
  Hanley-McNeil (1982) standard error for a 95 % interval;
- Cohen's kappa, unweighted or linear/quadratic weighted, with the Fleiss-Cohen-Everitt (1969)
  large-sample standard error and a 95 % normal interval;
- free-marginal (Randolph 2005) multirater kappa: (P_o - 1/k) / (1 - 1/k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score 95 % interval of a proportion k/n ((None, None) when n == 0)."""
    if n == 0:
        return None, None
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(mid - half), float(mid + half)


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
    """ROC AUC of a continuous score (Mann-Whitney), Hanley-McNeil SE and 95 % interval."""
    s = np.asarray(score, dtype=float)
    r = np.asarray(ref, dtype=bool)
    n1, n0 = int(r.sum()), int((~r).sum())
    if n1 == 0 or n0 == 0:
        return {"auc": None, "auc_se": None, "auc_ci_low": None, "auc_ci_high": None}
    ranks = stats.rankdata(s)
    u = ranks[r].sum() - n1 * (n1 + 1) / 2
    auc = float(u / (n1 * n0))
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = float(np.sqrt(max(0.0, (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0))))
    return {"auc": auc, "auc_se": se, "auc_ci_low": max(0.0, auc - Z95 * se), "auc_ci_high": min(1.0, auc + Z95 * se)}


def confusion(a: Sequence, b: Sequence, categories: Sequence) -> np.ndarray:
    """k x k count table, rows = first rater (a), columns = second (b), in ``categories`` order."""
    idx = {c: i for i, c in enumerate(categories)}
    t = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        if x not in idx or y not in idx:
            raise ValueError(f"value {x if x not in idx else y!r} is not one of the categories {list(categories)}")
        t[idx[x], idx[y]] += 1
    return t


def cohen_kappa(table: np.ndarray, weights: str | None = None) -> dict[str, float | None]:
    """Cohen's kappa of a k x k count table with Fleiss-Cohen-Everitt SE and 95 % CI.

    ``weights``: None (unweighted), ``"linear"`` (1 - |i-j|/(k-1)) or ``"quadratic"``.
    """
    t = np.asarray(table, dtype=float)
    k = t.shape[0]
    n = t.sum()
    if n == 0 or k < 2:
        return {"kappa": None, "kappa_se": None, "kappa_ci_low": None, "kappa_ci_high": None, "n": int(n)}
    i, j = np.indices((k, k))
    if weights is None:
        w = (i == j).astype(float)
    elif weights == "linear":
        w = 1 - np.abs(i - j) / (k - 1)
    elif weights == "quadratic":
        w = 1 - ((i - j) / (k - 1)) ** 2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    p = t / n
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(pr, pc)).sum())
    if pe >= 1.0:
        return {"kappa": None, "kappa_se": None, "kappa_ci_low": None, "kappa_ci_high": None, "n": int(n),
                "po": po, "pe": pe}
    kappa = (po - pe) / (1 - pe)
    wr = w @ pc  # w-bar_i. = sum_j p_.j w_ij
    wc = pr @ w  # w-bar_.j = sum_i p_i. w_ij
    term = (p * (w - (wr[:, None] + wc[None, :]) * (1 - kappa)) ** 2).sum()
    var = (term - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    se = float(np.sqrt(max(var, 0.0)))
    # Normal interval, clipped to kappa's range [-1, 1].
    return {"kappa": float(kappa), "kappa_se": se, "kappa_ci_low": float(max(-1.0, kappa - Z95 * se)),
            "kappa_ci_high": float(min(1.0, kappa + Z95 * se)), "n": int(n), "po": po, "pe": pe}


def free_marginal_kappa(ratings: np.ndarray, k: int) -> dict[str, float | None]:
    """Randolph's free-marginal multirater kappa.

    ``ratings``: items x raters array of category indices (0..k-1), every item rated by every
    rater. With two raters this is (P_o - 1/k) / (1 - 1/k), P_o = proportion of agreement; the
    95 % interval uses SE = sqrt(P_o (1 - P_o) / N) / (1 - 1/k) (two raters: binomial P_o).
    """
    r = np.asarray(ratings, dtype=int)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError("free-marginal kappa needs an items x raters array with at least two raters")
    n_items, m = r.shape
    if n_items == 0:
        return {"kappa": None, "kappa_ci_low": None, "kappa_ci_high": None, "n": 0, "po": None}
    counts = np.stack([(r == c).sum(axis=1) for c in range(k)], axis=1)
    po = float(((counts * (counts - 1)).sum(axis=1) / (m * (m - 1))).mean())
    pe = 1.0 / k
    kappa = (po - pe) / (1 - pe)
    se = float(np.sqrt(po * (1 - po) / n_items) / (1 - pe))
    return {"kappa": kappa, "kappa_ci_low": max(-1.0, kappa - Z95 * se), "kappa_ci_high": min(1.0, kappa + Z95 * se),
            "n": int(n_items), "po": po, "raters": int(m), "categories": int(k)}
