"""Score categories: the classic Agatston bands and CAC-DRS.

Boundaries are applied to the unrounded Agatston score:

- category: ``"0"`` (score == 0), ``"1-10"`` (0 < s <= 10), ``"11-100"`` (10 < s <= 100),
  ``"101-400"`` (100 < s <= 400), ``">400"`` (s > 400);
- CAC-DRS: A0 (s == 0), A1 (0 < s < 100), A2 (100 <= s < 300), A3 (s >= 300), with
  N = number of vessels (RCA, LAD incl. left main, LCX; so N <= 3) whose Agatston score is > 0.
  Written ``"A0"`` for zero (CAC-DRS gives no N modifier there), else e.g. ``"A2/N3"``.
"""

from __future__ import annotations

from collections.abc import Iterable

CATEGORIES: tuple[str, ...] = ("0", "1-10", "11-100", "101-400", ">400")
"""Agatston categories in increasing order (their index is the ordinal used by weighted kappa)."""

CATEGORY_UPPER: tuple[float, ...] = (0.0, 10.0, 100.0, 400.0)


def category(agatston: float | None) -> str | None:
    """Agatston category string, or None when the score is None (not assessed / not valid)."""
    if agatston is None:
        return None
    s = float(agatston)
    if s < 0:
        raise ValueError(f"an Agatston score cannot be negative: {s}")
    for name, upper in zip(CATEGORIES, CATEGORY_UPPER, strict=False):
        if s <= upper:
            return name
    return CATEGORIES[-1]


def category_index(name: str) -> int:
    """Ordinal position of a category string (0..4); accepts the score value spelled as text."""
    key = str(name).strip()
    if key in CATEGORIES:
        return CATEGORIES.index(key)
    raise ValueError(f"unknown Agatston category {name!r}; expected one of {list(CATEGORIES)}")


def cac_drs_a(agatston: float) -> int:
    """CAC-DRS A grade (0-3) of a total Agatston score."""
    s = float(agatston)
    if s <= 0:
        return 0
    if s < 100:
        return 1
    if s < 300:
        return 2
    return 3


def cac_drs(agatston: float | None, vessel_scores: Iterable[float | None]) -> str | None:
    """CAC-DRS string such as ``"A2/N3"`` (``"A0"`` for zero); None when the score is None."""
    if agatston is None:
        return None
    a = cac_drs_a(agatston)
    if a == 0:
        return "A0"
    n = sum(1 for v in vessel_scores if v is not None and v > 0)
    return f"A{a}/N{n}"
