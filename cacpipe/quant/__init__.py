"""Quantification: Agatston, volume, lesions, mass, categories, severity, quality flags, evaluation.

Entry points: :func:`quantify` (one scan -> per-artery and total numbers), :func:`agatston_scores`,
:class:`SeverityModel`, :func:`quality_flags` and :func:`finalise` (flags that change meaning).
"""

from .agatston import CalciumStats, agatston_scores, calcium_stats, calcium_stats_by_artery
from .categories import CATEGORIES, cac_drs, category
from .flags import finalise, quality_flags
from .ordinal import GRADES
from .quantify import quantify, total_of
from .severity import SeverityModel
from .table import COHORT_COLUMNS, cohort_row

__all__ = [
    "CATEGORIES", "COHORT_COLUMNS", "GRADES", "CalciumStats", "SeverityModel", "agatston_scores", "cac_drs",
    "calcium_stats", "calcium_stats_by_artery", "category", "cohort_row", "finalise", "quality_flags", "quantify",
    "total_of",
]
