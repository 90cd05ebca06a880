"""Evaluate a cohort's predictions against radiologist references (and two raters' review ratings).

Inputs (formats documented in docs/quantification.md):
- PRED: the cohort CSV of ``cacpipe scan``: ``patient_id``, ``study_uid``, per artery
  ``<ARTERY>_calcium_volume_mm3`` (empty = not assessed), optionally ``<ARTERY>_grade``,
  ``total_calcium_volume_mm3``, ``total_agatston``, ``category``;
- REF: radiologist table: ``patient_id`` and/or ``study_uid``, per artery ``<ARTERY>_present``
  (0/1) and/or ``<ARTERY>_grade``, optionally ``category`` or ``total_agatston``, and subgroup
  columns ``sex``, ``age``, ``vendor``, ``site``, ``slice_thickness``;
- ratings: the review page's CSV(s): ``rater, patient_id, study_uid, artery, rating, comment,
  timestamp`` with rating in excellent / minor error / major error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..labels import ARTERIES
from ..units import MM3_PER_ML
from .categories import CATEGORIES, category
from .ordinal import GRADES, fit_ordinal, normalise_grade
from .stats import (
    auc_continuous,
    binary_table,
    cohen_kappa,
    confusion,
    diagnostic_metrics,
    free_marginal_kappa,
)

RATINGS: tuple[str, ...] = ("excellent", "minor error", "major error")
RATINGS_COLUMNS: tuple[str, ...] = ("rater", "artery", "rating")
SUBGROUPS: dict[str, tuple[str, ...]] = {
    "sex": ("sex",),
    "age_band": ("age_band", "age"),
    "vendor": ("vendor", "manufacturer"),
    "site": ("site",),
    "slice_thickness": ("slice_thickness", "slice_thickness_mm"),
}
SCOPES: tuple[str, ...] = (*ARTERIES, "any")


def read_csv(path: str | Path, what: str):
    """Read a CSV with all columns as text (ids keep their leading zeros)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what} file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read {what} CSV {path}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    df.attrs["path"] = str(path)
    return df


def _where(df) -> str:
    return df.attrs.get("path", "table")


def _num(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def _bool01(series, name: str):
    """0/1/true/false/yes/no -> float 1.0/0.0, blank -> NaN."""
    m = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1.0": 1.0, "0.0": 0.0}
    out = []
    for v in series:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(np.nan)
            continue
        key = str(v).strip().lower()
        if key not in m:
            raise InputDataError(f"column {name}: value {v!r} is not 0/1 (or true/false, yes/no)")
        out.append(m[key])
    return np.asarray(out, dtype=float)


def join_key(pred, ref) -> str:
    """study_uid when both tables carry it (non-empty), else patient_id."""
    for key in ("study_uid", "patient_id"):
        if key in pred.columns and key in ref.columns and pred[key].notna().all() and ref[key].notna().all():
            return key
    raise InputDataError(
        f"cannot match {_where(pred)} to {_where(ref)}: both need a filled study_uid or patient_id column "
        f"(pred columns: {list(pred.columns)[:8]}..., ref columns: {list(ref.columns)[:8]}...)")


def merge(pred, ref):
    """Inner join of pred and ref on :func:`join_key`; columns prefixed ``pred:`` / ``ref:``."""
    key = join_key(pred, ref)
    for df in (pred, ref):
        dup = df[key][df[key].duplicated()].unique()
        if len(dup):
            raise InputDataError(f"{_where(df)}: {key} values occur more than once: {list(dup)[:5]}")
    p = pred.rename(columns={c: f"pred:{c}" for c in pred.columns if c != key})
    r = ref.rename(columns={c: f"ref:{c}" for c in ref.columns if c != key})
    m = p.merge(r, on=key, how="inner")
    if m.empty:
        raise InputDataError(f"no {key} is shared by {_where(pred)} and {_where(ref)}; nothing to evaluate")
    m.attrs["key"] = key
    return m


def _check_columns(pred, ref) -> None:
    missing = [f"{a}_calcium_volume_mm3" for a in ARTERIES if f"{a}_calcium_volume_mm3" not in pred.columns]
    if missing:
        raise InputDataError(f"{_where(pred)} lacks prediction columns {missing} (the cohort CSV of cacpipe scan "
                             "has <ARTERY>_calcium_volume_mm3 for RCA, LAD and LCX)")
    lacking = [a for a in ARTERIES if f"{a}_present" not in ref.columns and f"{a}_grade" not in ref.columns]
    if lacking:
        raise InputDataError(f"{_where(ref)} needs <ARTERY>_present (0/1) or <ARTERY>_grade for every artery; "
                             f"missing for {lacking}")


def presence_arrays(m) -> dict[str, dict[str, np.ndarray]]:
    """Per scope (artery or 'any'): pred volume (mm3, NaN = not assessed), ref presence (NaN = unknown)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for a in ARTERIES:
        vol = _num(m[f"pred:{a}_calcium_volume_mm3"]).to_numpy(dtype=float)
        if f"ref:{a}_present" in m.columns:
            ref = _bool01(m[f"ref:{a}_present"], f"{a}_present")
        else:
            g = [normalise_grade(v) for v in m[f"ref:{a}_grade"]]
            ref = np.array([np.nan if v is None else float(v != "none") for v in g])
        out[a] = {"volume": vol, "ref": ref}
    vols = np.stack([out[a]["volume"] for a in ARTERIES], axis=1)
    refs = np.stack([out[a]["ref"] for a in ARTERIES], axis=1)
    any_vol = np.where(np.isnan(vols).any(axis=1) & ~(np.nan_to_num(vols) > 0).any(axis=1), np.nan,
                       np.nansum(vols, axis=1))
    any_ref = np.where((refs == 1).any(axis=1), 1.0, np.where(np.isnan(refs).any(axis=1), np.nan, 0.0))
    out["any"] = {"volume": any_vol, "ref": any_ref}
    return out


def presence_metrics(vol: np.ndarray, ref: np.ndarray) -> dict:
    """Binary-table metrics, kappa and continuous AUC for one scope; pred positive = volume > 0."""
    assessed = ~np.isnan(vol)
    known = ~np.isnan(ref)
    use = assessed & known
    pred_pos = vol[use] > 0
    ref_pos = ref[use] == 1
    t = binary_table(pred_pos, ref_pos)
    out = diagnostic_metrics(t)
    out.update(auc_continuous(vol[use], ref_pos))
    k = cohen_kappa(confusion(pred_pos.tolist(), ref_pos.tolist(), [False, True]))
    out.update({key: k[key] for key in ("kappa", "kappa_se", "kappa_ci_low", "kappa_ci_high")})
    out["not_assessed"] = int(np.sum(~assessed & known))
    out["reference_missing"] = int(np.sum(~known))
    return out


def subgroup_values(m) -> dict[str, np.ndarray]:
    """Subgroup name -> per-row group label (strings; 'missing' for blanks), for columns present."""
    out: dict[str, np.ndarray] = {}
    for name, aliases in SUBGROUPS.items():
        col = next((f"{side}:{a}" for a in aliases for side in ("ref", "pred") if f"{side}:{a}" in m.columns), None)
        if col is None:
            continue
        raw = m[col]
        if col.endswith(":age"):
            age = _num(raw).to_numpy(dtype=float)
            bands = np.array(["<50", "50-59", "60-69", "70-79", ">=80"])
            idx = np.digitize(age, [50, 60, 70, 80])
            vals = np.where(np.isnan(age), "missing", bands[np.minimum(idx, 4)])
        elif name == "slice_thickness":
            st = _num(raw).to_numpy(dtype=float)
            vals = np.array(["missing" if np.isnan(v) else f"{v:g} mm" for v in st])
        else:
            vals = np.array(["missing" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
                             for v in raw])
        out[name] = vals
    return out


def _grade_kappa(m) -> list[dict]:
    rows = []
    for a in ARTERIES:
        if f"pred:{a}_grade" not in m.columns or f"ref:{a}_grade" not in m.columns:
            continue
        p = [normalise_grade(v) for v in m[f"pred:{a}_grade"]]
        r = [normalise_grade(v) for v in m[f"ref:{a}_grade"]]
        pairs = [(x, y) for x, y in zip(p, r, strict=True) if x is not None and y is not None]
        if not pairs:
            continue
        t = confusion([x for x, _ in pairs], [y for _, y in pairs], GRADES)
        k = cohen_kappa(t, "linear")
        rows.append({"measure": f"{a}_grade", "weights": "linear", **k, "agreement": float(np.trace(t) / t.sum())})
    return rows


def _category_kappa(m) -> list[dict]:
    def cats(side: str) -> list[str | None] | None:
        if f"{side}:category" in m.columns:
            return [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v).strip()
                    for v in m[f"{side}:category"]]
        if f"{side}:total_agatston" in m.columns:
            return [None if np.isnan(v) else category(v) for v in _num(m[f"{side}:total_agatston"]).to_numpy(float)]
        return None

    p, r = cats("pred"), cats("ref")
    if p is None or r is None:
        return []
    pairs = [(x, y) for x, y in zip(p, r, strict=True) if x is not None and y is not None]
    if not pairs:
        return []
    for v in {x for pair in pairs for x in pair}:
        if v not in CATEGORIES:
            raise InputDataError(f"category value {v!r} is not one of {list(CATEGORIES)}")
    t = confusion([x for x, _ in pairs], [y for _, y in pairs], CATEGORIES)
    k = cohen_kappa(t, "linear")
    return [{"measure": "category", "weights": "linear", **k, "agreement": float(np.trace(t) / t.sum())}]


def _ordinal(m) -> list[dict]:
    rows = []
    for a in ARTERIES:
        if f"ref:{a}_grade" not in m.columns:
            continue
        vol = _num(m[f"pred:{a}_calcium_volume_mm3"]).to_numpy(dtype=float) / MM3_PER_ML
        try:
            r = fit_ordinal(vol, list(m[f"ref:{a}_grade"]), name=a)
        except InputDataError as exc:
            rows.append({"artery": a, "error": str(exc)})
            continue
        rows.append({"artery": a, "predictor": "calcium_volume_ml", **{k: v for k, v in r.items() if k != "levels"},
                     "levels": "/".join(r["levels"])})
    return rows


def ratings_agreement(ratings) -> list[dict]:
    """Free-marginal kappa of the raters' review ratings, overall and per artery."""
    import pandas as pd

    df = pd.concat(list(ratings), ignore_index=True) if isinstance(ratings, (list, tuple)) else ratings
    missing = [c for c in RATINGS_COLUMNS if c not in df.columns]
    if missing:
        raise InputDataError(f"ratings CSV lacks columns {missing}; expected rater, patient_id, study_uid, artery, "
                             "rating, comment, timestamp")
    item_key = "study_uid" if "study_uid" in df.columns and df["study_uid"].notna().all() else "patient_id"
    if item_key not in df.columns:
        raise InputDataError("ratings CSV needs study_uid or patient_id to know which study a rating is for")
    df = df.copy()
    df["rating"] = df["rating"].astype(str).str.strip().str.lower().str.replace("_", " ")
    bad = sorted(set(df["rating"]) - set(RATINGS))
    if bad:
        raise InputDataError(f"ratings {bad} are not one of {list(RATINGS)}")
    if "timestamp" in df.columns:
        df = df.sort_values("timestamp", kind="stable")
    df = df.drop_duplicates(subset=["rater", item_key, "artery"], keep="last")  # a re-rating replaces the first
    raters = sorted(df["rater"].unique())
    if len(raters) < 2:
        raise InputDataError(f"free-marginal kappa needs ratings from two raters; found {raters}")
    wide = df.pivot(index=[item_key, "artery"], columns="rater", values="rating")
    complete = wide.dropna()
    rows = []
    code = {r: i for i, r in enumerate(RATINGS)}
    for scope in ["all", *sorted(complete.index.get_level_values("artery").unique())]:
        sub = complete if scope == "all" else complete.xs(scope, level="artery", drop_level=False)
        arr = sub.apply(lambda col: col.map(code)).to_numpy(dtype=int)
        k = free_marginal_kappa(arr, len(RATINGS))
        rows.append({"artery": scope, "raters": "+".join(map(str, raters)), **k,
                     "items_not_rated_by_all": int(len(wide) - len(complete)) if scope == "all" else None})
    return rows


def evaluate(pred=None, ref=None, ratings: Sequence | None = None) -> dict:
    """All evaluation tables as a dict of lists of rows (see module docstring for inputs)."""
    out: dict = {}
    if pred is not None and ref is not None:
        _check_columns(pred, ref)
        m = merge(pred, ref)
        out["matching"] = {"key": m.attrs["key"], "pred_rows": len(pred), "ref_rows": len(ref), "matched": len(m)}
        arrays = presence_arrays(m)
        groups = {"all": np.array(["all"] * len(m)), **subgroup_values(m)}
        rows = []
        for gname, gvals in groups.items():
            for gv in sorted(set(gvals)):
                sel = gvals == gv
                for scope in SCOPES:
                    met = presence_metrics(arrays[scope]["volume"][sel], arrays[scope]["ref"][sel])
                    rows.append({"subgroup": gname, "group": gv, "artery": scope, **met})
        out["presence"] = rows
        out["agreement"] = _grade_kappa(m) + _category_kappa(m)
        out["ordinal_regression"] = _ordinal(m)
    elif pred is not None or ref is not None:
        raise InputDataError("give both PRED.csv and REF.csv (or only --ratings)")
    if ratings:
        out["review"] = ratings_agreement(list(ratings))
    if not out:
        raise InputDataError("nothing to evaluate: give PRED.csv and REF.csv and/or --ratings FILE")
    return out


# --- output ------------------------------------------------------------------------------
def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(row: dict, name: str, value_key: str | None = None) -> str:
    v = row.get(value_key or name)
    lo, hi = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return _fmt(v, 2)
    return f"{v:.2f} ({lo:.2f}-{hi:.2f})"


def format_text(res: dict) -> str:
    """A readable plain-text report of :func:`evaluate`'s result."""
    lines: list[str] = []
    if "matching" in res:
        mt = res["matching"]
        lines.append(f"Matched {mt['matched']} studies on {mt['key']} (pred {mt['pred_rows']}, ref {mt['ref_rows']}).")
    if res.get("presence"):
        lines.append("\nCalcium presence (pred positive = calcium volume > 0; 95% CI)")
        hdr = f"{'subgroup':<16}{'group':<12}{'artery':<7}{'n':>5}{'NA':>4}  {'sensitivity':<18}{'specificity':<18}" \
              f"{'PPV':<18}{'NPV':<18}{'accuracy':<18}{'AUC bin':>8}  {'AUC vol':<18}{'kappa':<20}"
        lines.append(hdr)
        for r in res["presence"]:
            lines.append(
                f"{r['subgroup']:<16}{r['group']:<12}{r['artery']:<7}{r['n']:>5}{r['not_assessed']:>4}  "
                f"{_ci(r, 'sensitivity'):<18}{_ci(r, 'specificity'):<18}{_ci(r, 'ppv'):<18}{_ci(r, 'npv'):<18}"
                f"{_ci(r, 'accuracy'):<18}{_fmt(r['auc_binary'], 2):>8}  {_ci(r, 'auc'):<18}{_ci(r, 'kappa'):<20}")
    if res.get("agreement"):
        lines.append("\nAgreement across ordered categories (linear-weighted Cohen's kappa, 95% CI)")
        for r in res["agreement"]:
            lines.append(f"  {r['measure']:<12} n={r['n']:<5} kappa {_ci(r, 'kappa')}  exact agreement {_fmt(r['agreement'], 2)}")
    if res.get("ordinal_regression"):
        lines.append("\nOrdinal regression (logit) of reference grade on predicted calcium volume (mL)")
        for r in res["ordinal_regression"]:
            if "error" in r:
                lines.append(f"  {r['artery']:<4} not fitted: {r['error']}")
                continue
            lines.append(f"  {r['artery']:<4} n={r['n']:<5} B {r['coef']:.2f} (95% CI {r['ci_low']:.2f} to "
                         f"{r['ci_high']:.2f})  Wald {r['wald']:.2f}  p {r['p']:.3g}  levels {r['levels']}"
                         + ("" if r["converged"] else "  [did not converge]"))
    if res.get("review"):
        lines.append("\nReview ratings: free-marginal kappa (excellent / minor error / major error)")
        for r in res["review"]:
            lines.append(f"  {r['artery']:<4} items={r['n']:<5} raters {r['raters']}  agreement {_fmt(r['po'], 2)}  "
                         f"kappa {_ci(r, 'kappa')}")
    return "\n".join(lines).lstrip("\n")


def write_outputs(res: dict, out_dir: str | Path) -> list[Path]:
    """evaluation.json plus one CSV per table (presence, agreement, ordinal_regression, review)."""
    import json

    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "evaluation.json"]
    written[0].write_text(json.dumps(res, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    for name in ("presence", "agreement", "ordinal_regression", "review"):
        if res.get(name):
            p = out / f"evaluation_{name}.csv"
            pd.DataFrame(res[name]).to_csv(p, index=False)
            written.append(p)
    return written
