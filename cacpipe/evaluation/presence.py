"""Calcium presence per artery and any artery: 2x2 tables, AUC of volume, kappa; per subgroup.

Pred positive = calcium volume > 0; an empty volume cell means "not assessed" (left out of the
table and counted). Reference presence: ``<A>_present`` (0/1, true/false, yes/no) or, failing
that, ``<A>_grade`` (present = grade other than none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..labels import ARTERIES
from ..quant.ordinal import normalise_grade
from ..tables import LINE, numbers, texts
from .stats import auc_continuous, binary_table, cohen_kappa, confusion, diagnostic_metrics

SCOPES: tuple[str, ...] = (*ARTERIES, "any")
SUBGROUPS: dict[str, tuple[str, ...]] = {
    "sex": ("sex",),
    "age_band": ("age_band", "age"),
    "vendor": ("vendor", "manufacturer"),
    "site": ("site",),
    "slice_thickness": ("slice_thickness", "slice_thickness_mm"),
}
_BOOL = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1.0": 1.0, "0.0": 0.0}


def bool01(m: pd.DataFrame, col: str) -> np.ndarray:
    """0/1/true/false/yes/no -> 1.0/0.0, blank -> NaN; other cells raise, naming file and row."""
    side = col.split(":", 1)[0]
    out, bad = [], []
    for v, row in zip(texts(m, col), m[f"{side}:{LINE}"], strict=True):
        if v is None:
            out.append(np.nan)
        elif v.lower() in _BOOL:
            out.append(_BOOL[v.lower()])
        else:
            out.append(np.nan)
            bad.append(f"row {row}: {v!r}")
    if bad:
        raise InputDataError(f"{m.attrs.get(f'{side}:path')} column {col.split(':', 1)[1]}: not 0/1 (or true/false, "
                             f"yes/no): {'; '.join(bad[:8])}")
    return np.asarray(out, dtype=float)


def check_columns(pred: pd.DataFrame, ref: pd.DataFrame) -> None:
    missing = [f"{a}_calcium_volume_mm3" for a in ARTERIES if f"{a}_calcium_volume_mm3" not in pred.columns]
    if missing:
        raise InputDataError(f"{pred.attrs.get('path')} lacks prediction columns {missing} (the cohort CSV of "
                             "cacpipe scan has <ARTERY>_calcium_volume_mm3 for RCA, LAD and LCX)")
    lacking = [a for a in ARTERIES if f"{a}_present" not in ref.columns and f"{a}_grade" not in ref.columns]
    if lacking:
        raise InputDataError(f"{ref.attrs.get('path')} needs <ARTERY>_present (0/1) or <ARTERY>_grade for every "
                             f"artery; missing for {lacking}")


def presence_arrays(m: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Per scope (artery or 'any'): pred volume (mm3, NaN = not assessed), ref presence (NaN = unknown)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for a in ARTERIES:
        vol = numbers(m, f"pred:{a}_calcium_volume_mm3")
        if f"ref:{a}_present" in m.columns:
            ref = bool01(m, f"ref:{a}_present")
        else:
            g = [normalise_grade(v) for v in texts(m, f"ref:{a}_grade")]
            ref = np.array([np.nan if v is None else float(v != "none") for v in g])
        out[a] = {"volume": vol, "ref": ref}
    vols = np.stack([out[a]["volume"] for a in ARTERIES], axis=1)
    refs = np.stack([out[a]["ref"] for a in ARTERIES], axis=1)
    # any: positive if any artery is; negative only when all three are assessed and zero.
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
    out = diagnostic_metrics(binary_table(pred_pos, ref_pos))
    out.update(auc_continuous(vol[use], ref_pos))
    k = cohen_kappa(confusion(pred_pos.tolist(), ref_pos.tolist(), [False, True]))
    out.update({key: k[key] for key in ("kappa", "kappa_se", "kappa_ci_low", "kappa_ci_high")})
    out["not_assessed"] = int(np.sum(~assessed & known))
    out["reference_missing"] = int(np.sum(~known))
    return out


def subgroup_values(m: pd.DataFrame) -> dict[str, np.ndarray]:
    """Subgroup name -> per-row group label ('missing' for blanks), for the columns present (REF first)."""
    out: dict[str, np.ndarray] = {}
    for name, aliases in SUBGROUPS.items():
        col = next((f"{side}:{a}" for a in aliases for side in ("ref", "pred") if f"{side}:{a}" in m.columns), None)
        if col is None:
            continue
        if col.endswith(":age"):
            age = numbers(m, col)
            bands = np.array(["<50", "50-59", "60-69", "70-79", ">=80"])
            idx = np.digitize(age, [50, 60, 70, 80])
            vals = np.where(np.isnan(age), "missing", bands[np.minimum(idx, 4)])
        elif name == "slice_thickness":
            st = numbers(m, col)
            vals = np.array(["missing" if np.isnan(v) else f"{v:g} mm" for v in st])
        else:
            vals = np.array(["missing" if v is None else v for v in texts(m, col)])
        out[name] = vals
    return out


def presence_table(m: pd.DataFrame) -> list[dict]:
    """Presence rows per subgroup x group x scope (subgroup 'all' first)."""
    arrays = presence_arrays(m)
    groups = {"all": np.array(["all"] * len(m)), **subgroup_values(m)}
    rows = []
    for gname, gvals in groups.items():
        for gv in sorted(set(gvals)):
            sel = gvals == gv
            for scope in SCOPES:
                met = presence_metrics(arrays[scope]["volume"][sel], arrays[scope]["ref"][sel])
                rows.append({"subgroup": gname, "group": gv, "artery": scope, **met})
    return rows
