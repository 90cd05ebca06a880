"""Ordered grades: linear-weighted kappa of per-artery grades and of the score category, and the
ordinal regression of the reference grade on predicted calcium volume (the source paper's B)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..labels import ARTERIES
from ..quant.categories import CATEGORIES
from ..quant.ordinal import GRADES, fit_ordinal, normalise_grade
from ..tables import numbers, texts
from ..units import MM3_PER_ML
from .categories import levels_of
from .stats import cohen_kappa, confusion


def _kappa_row(measure: str, p: list, r: list, levels: tuple[str, ...]) -> dict | None:
    pairs = [(x, y) for x, y in zip(p, r, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    t = confusion([x for x, _ in pairs], [y for _, y in pairs], levels)
    return {"measure": measure, "weights": "linear", **cohen_kappa(t, "linear"),
            "agreement": float(np.trace(t) / t.sum())}


def agreement_table(m: pd.DataFrame) -> list[dict]:
    """Linear-weighted kappa (weights over every level of the scale) of each artery's grade and the category."""
    rows = []
    for a in ARTERIES:
        if f"pred:{a}_grade" in m.columns and f"ref:{a}_grade" in m.columns:
            p = [normalise_grade(v) for v in texts(m, f"pred:{a}_grade")]
            r = [normalise_grade(v) for v in texts(m, f"ref:{a}_grade")]
            rows.append(_kappa_row(f"{a}_grade", p, r, GRADES))
    p, r = levels_of(m, "pred", "agatston_category"), levels_of(m, "ref", "agatston_category")
    if p is not None and r is not None:
        rows.append(_kappa_row("category", p, r, CATEGORIES))
    return [x for x in rows if x is not None]


def ordinal_table(m: pd.DataFrame) -> list[dict]:
    """Per artery with reference grades: logit OrderedModel of grade on predicted volume (mL)."""
    rows = []
    for a in ARTERIES:
        if f"ref:{a}_grade" not in m.columns:
            continue
        vol = numbers(m, f"pred:{a}_calcium_volume_mm3") / MM3_PER_ML
        try:
            r = fit_ordinal(vol, texts(m, f"ref:{a}_grade"), name=a)
        except InputDataError as exc:
            rows.append({"artery": a, "error": str(exc)})
            continue
        rows.append({"artery": a, "predictor": "calcium_volume_ml", **{k: v for k, v in r.items() if k != "levels"},
                     "levels": "/".join(r["levels"])})
    return rows
