"""The only door to DICOM (and to CT image files): export -> studies -> selected series -> ``LoadedSeries``.

``discover`` reads headers only; ``group_studies`` groups them; ``select_series`` applies the
documented selection rules; ``load_series`` assembles the chosen series (one read per file) into
a ``LoadedSeries`` (HU volume, identity, ingest flags, source headers); ``read_ct`` does all of
that for one CT given as a path (or reads an image file). See docs/scan.md.
"""

from .assemble import load_series
from .discover import Discovery, FileHeader, Problem, discover
from .loaded import LoadedSeries, is_image_file, read_ct
from .select import Selection, select_series
from .series import Series, Study, group_studies

__all__ = [
    "Discovery", "FileHeader", "LoadedSeries", "Problem", "Selection", "Series", "Study", "discover",
    "group_studies", "is_image_file", "load_series", "read_ct", "select_series",
]
