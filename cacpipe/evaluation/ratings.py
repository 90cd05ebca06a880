"""Agreement of two (or more) raters' review ratings: Randolph's free-marginal kappa.

Ratings CSV (written by the review page): ``rater, patient_id, study_uid, artery, rating, comment,
timestamp``; rating one of excellent / minor error / major error. A later rating of the same
rater / study / artery replaces the earlier one; items not rated by every rater are left out and
counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..errors import InputDataError
from ..tables import LINE, require_filled, texts, where
from .stats import free_marginal_kappa

RATINGS: tuple[str, ...] = ("excellent", "minor error", "major error")
RATINGS_COLUMNS: tuple[str, ...] = ("rater", "artery", "rating")


def _check(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in RATINGS_COLUMNS if c not in df.columns]
    if missing:
        raise InputDataError(f"{where(df)} lacks columns {missing}; expected rater, patient_id, study_uid, artery, "
                             "rating, comment, timestamp")
    item_key = "study_uid" if "study_uid" in df.columns and all(texts(df, "study_uid")) else "patient_id"
    if item_key not in df.columns:
        raise InputDataError(f"{where(df)} needs study_uid or patient_id to know which study a rating is for")
    require_filled(df, [*RATINGS_COLUMNS, item_key])
    out = df.copy()
    for c in (*RATINGS_COLUMNS, item_key):
        out[c] = texts(df, c)
    out["rating"] = out["rating"].str.lower().str.replace("_", " ")
    bad = [(r, v) for r, v in zip(out[LINE], out["rating"], strict=True) if v not in RATINGS]
    if bad:
        raise InputDataError(f"{where(df)} column rating: not one of {list(RATINGS)}: "
                             + "; ".join(f"row {r}: {v!r}" for r, v in bad[:8]))
    out.attrs["item_key"] = item_key
    return out


def ratings_agreement(ratings: Sequence[pd.DataFrame]) -> list[dict]:
    """Free-marginal kappa of the raters' review ratings, overall and per artery."""
    checked = [_check(df) for df in ratings]
    keys = {df.attrs["item_key"] for df in checked}
    item_key = "study_uid" if keys == {"study_uid"} else "patient_id"
    df = pd.concat(checked, ignore_index=True)
    if "timestamp" in df.columns:
        df = df.sort_values("timestamp", kind="stable", na_position="first")
    df = df.drop_duplicates(subset=["rater", item_key, "artery"], keep="last")  # a re-rating replaces the first
    raters = sorted(df["rater"].unique())
    if len(raters) < 2:
        raise InputDataError(f"free-marginal kappa needs ratings from two raters; found {raters}")
    wide = df.pivot(index=[item_key, "artery"], columns="rater", values="rating")
    complete = wide.dropna()
    code = {r: i for i, r in enumerate(RATINGS)}
    rows = []
    for scope in ["all", *sorted(complete.index.get_level_values("artery").unique())]:
        sub = complete if scope == "all" else complete.xs(scope, level="artery", drop_level=False)
        arr = sub.apply(lambda col: col.map(code)).to_numpy(dtype=int)
        k = free_marginal_kappa(arr, len(RATINGS))
        rows.append({"artery": scope, "raters": "+".join(map(str, raters)), **k,
                     "items_not_rated_by_all": int(len(wide) - len(complete)) if scope == "all" else None})
    return rows
