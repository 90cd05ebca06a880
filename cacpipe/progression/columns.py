"""Progression columns of cohort.csv: each study against the same patient's previous done study.

Added by ``cacpipe scan`` only when some patient has more than one done study. Numbers only (no
registration, no lesion matching: ``cacpipe progression`` does those); a change counts as
progression with the same rule as ``cacpipe progression`` (square-root volume change >= the
repeatability threshold, :mod:`cacpipe.progression.match`).
"""

from __future__ import annotations

import math

from ..labels import ARTERIES
from .match import SQRT_VOLUME_THRESHOLD

PROGRESSION_COLUMNS: tuple[str, ...] = (
    "prior_study_uid", "years_since_prior", "total_agatston_prior", "total_agatston_change_per_year",
    *(f"{a}_agatston_change_per_year" for a in ARTERIES), "progression_arteries",
)


def _num(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _years(d1: str, d2: str) -> float | None:
    from .group import parse_date

    try:
        return (parse_date(d2) - parse_date(d1)).days / 365.25
    except Exception:  # an undated study cannot be placed in time: no columns for it
        return None


def _fmt(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".")


def add_progression_columns(rows: list[dict]) -> bool:
    """Fill PROGRESSION_COLUMNS in cohort rows (sorted by patient, date); False when no patient has
    two done studies (then the rows are left as they are)."""
    done = [r for r in rows if r.get("status") == "done" and r.get("study_date")]
    by_patient: dict[str, list[dict]] = {}
    for r in done:
        by_patient.setdefault(r.get("patient_id", ""), []).append(r)
    if not any(len(v) > 1 for v in by_patient.values()):
        return False
    for r in rows:
        for c in PROGRESSION_COLUMNS:
            r.setdefault(c, "")
    for studies in by_patient.values():
        studies.sort(key=lambda r: r["study_date"])
        for prev, cur in zip(studies, studies[1:], strict=False):
            years = _years(prev["study_date"], cur["study_date"])
            if years is None:
                continue
            cur["prior_study_uid"] = prev.get("study_uid", "")
            cur["years_since_prior"] = _fmt(years)
            g0, g1 = _num(prev.get("total_agatston")), _num(cur.get("total_agatston"))
            cur["total_agatston_prior"] = "" if g0 is None else _fmt(g0)
            if years > 0 and None not in (g0, g1):
                cur["total_agatston_change_per_year"] = _fmt((g1 - g0) / years)
            prog = []
            for a in ARTERIES:
                a0, a1 = _num(prev.get(f"{a}_agatston")), _num(cur.get(f"{a}_agatston"))
                if years > 0 and None not in (a0, a1):
                    cur[f"{a}_agatston_change_per_year"] = _fmt((a1 - a0) / years)
                v0, v1 = _num(prev.get(f"{a}_calcium_volume_mm3")), _num(cur.get(f"{a}_calcium_volume_mm3"))
                if None not in (v0, v1) and math.sqrt(max(v1, 0)) - math.sqrt(max(v0, 0)) >= SQRT_VOLUME_THRESHOLD:
                    prog.append(a)
            cur["progression_arteries"] = ";".join(prog)
    return True
