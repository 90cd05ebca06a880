"""Risk categories: reclassification tables and weighted kappa.

Two scales, each from its own column when present, else from ``total_agatston``:

- Agatston category 0 / 1-10 / 11-100 / 101-400 / >400 (column ``category``);
- CAC-DRS A0-A3 (column ``cac_drs``, e.g. ``A2/N3``: the A grade is compared; the N modifier,
  the number of vessels, is left to the per-artery tables).

Per scale: the reclassification table (rows = reference, columns = prediction, every level of
the scale), exact agreement (Wilson 95 % CI), the share placed in a higher / lower category, and
linearly and quadratically weighted Cohen's kappa with 95 % CI (statsmodels).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..quant.categories import CATEGORIES, cac_drs_a, category
from ..tables import LINE, numbers, texts
from .stats import cohen_kappa, confusion, wilson_ci

CAC_DRS: tuple[str, ...] = ("A0", "A1", "A2", "A3")
SCALES: dict[str, tuple[str, ...]] = {"agatston_category": CATEGORIES, "cac_drs": CAC_DRS}
_DRS = re.compile(r"^\s*(A[0-3])\s*(/\s*N[0-3])?\s*$", re.IGNORECASE)


def _from_score(m: pd.DataFrame, side: str, scale: str) -> list[str | None] | None:
    col = f"{side}:total_agatston"
    if col not in m.columns:
        return None
    vals = numbers(m, col)
    if scale == "agatston_category":
        return [None if np.isnan(v) else category(v) for v in vals]
    return [None if np.isnan(v) else f"A{cac_drs_a(v)}" for v in vals]


def levels_of(m: pd.DataFrame, side: str, scale: str) -> list[str | None] | None:
    """Per row: the level on ``scale`` (None = not assessed); None when the side has no source column."""
    col = f"{side}:{'category' if scale == 'agatston_category' else 'cac_drs'}"
    if col not in m.columns:
        return _from_score(m, side, scale)
    out, bad = [], []
    for v, row in zip(texts(m, col), m[f"{side}:{LINE}"], strict=True):
        if v is None:
            out.append(None)
        elif scale == "agatston_category" and v in CATEGORIES:
            out.append(v)
        elif scale == "cac_drs" and _DRS.match(v):
            out.append(_DRS.match(v).group(1).upper())
        else:
            out.append(None)
            bad.append(f"row {row}: {v!r}")
    if bad:
        want = list(CATEGORIES) if scale == "agatston_category" else "A0-A3 (optionally /N0-N3)"
        raise InputDataError(f"{m.attrs.get(f'{side}:path')} column {col.split(':', 1)[1]}: not one of {want}: "
                             f"{'; '.join(bad[:8])}")
    return out


def reclassification(pred: list[str], ref: list[str], levels: tuple[str, ...]) -> dict:
    """Table (rows = ref, columns = pred), exact agreement, up/down shares, weighted kappas."""
    t = confusion(ref, pred, levels)
    n = int(t.sum())
    agree = int(np.trace(t))
    up = int(np.triu(t, 1).sum())  # prediction in a higher category than the reference
    lo, hi = wilson_ci(agree, n)
    out: dict = {"n": n, "levels": list(levels), "table": t.tolist(), "exact_agreement": agree / n if n else None,
                 "exact_agreement_ci_low": lo, "exact_agreement_ci_high": hi,
                 "pred_higher": up / n if n else None, "pred_lower": (n - agree - up) / n if n else None}
    for w in ("linear", "quadratic"):
        k = cohen_kappa(t, w)
        out.update({f"kappa_{w}{key[5:]}": k[key] for key in ("kappa", "kappa_se", "kappa_ci_low", "kappa_ci_high")})
    return out


def category_table(m: pd.DataFrame) -> list[dict]:
    """One row per scale both sides can place studies on."""
    rows = []
    for scale, levels in SCALES.items():
        p, r = levels_of(m, "pred", scale), levels_of(m, "ref", scale)
        if p is None or r is None:
            continue
        pairs = [(x, y) for x, y in zip(p, r, strict=True) if x is not None and y is not None]
        row = {"scale": scale, **reclassification([x for x, _ in pairs], [y for _, y in pairs], levels),
               "not_assessed": sum(1 for x, y in zip(p, r, strict=True) if x is None and y is not None)}
        rows.append(row)
    return rows
