"""PACS export -> studies -> selected series -> HU ``Volume`` (see docs/scan.md).

``discover`` reads headers only; ``group_studies`` groups them; ``select_series`` applies the
documented selection rules; ``load_series`` assembles the chosen series.
"""

from .assemble import AssemblyOptions, load_series
from .discover import Discovery, FileHeader, Problem, discover
from .select import Selection, SelectionRules, select_series
from .series import Series, Study, StudyInfo, group_studies

__all__ = [
    "AssemblyOptions", "Discovery", "FileHeader", "Problem", "Selection", "SelectionRules", "Series", "Study",
    "StudyInfo", "discover", "group_studies", "load_series", "select_series",
]
