"""Read the source CT series back from a DICOM folder (for SEG/SR/SC references and the CLI).

Uses the scan's own ingestion (cacpipe.ingest): the same discovery, series selection and volume
assembly as ``cacpipe scan``, so a review rebuilt from DICOM sees exactly the volume that was scored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pydicom

from ..errors import InputDataError
from ..volume import Volume


def load_series(folder: str | Path, series_uid: str | None = None) -> tuple[Volume, list[pydicom.Dataset]]:
    """(CT volume in HU, its slice headers sorted like the volume) from the DICOM files under ``folder``.

    Without ``series_uid`` the series ``cacpipe scan`` would score is used (the folder must hold
    one study then); with it, that series.
    """
    from ..ingest import discover, group_studies, select_series
    from ..ingest import load_series as assemble
    from ..ingest.series import StudyInfo
    from ..pipeline import sorted_sources

    folder = Path(folder)
    if not folder.exists():
        raise InputDataError(f"DICOM folder not found: {folder}")
    with tempfile.TemporaryDirectory(prefix="cacpipe_review_") as work:
        studies, _ = group_studies(discover(folder, Path(work)).headers)
        if series_uid is not None:
            found = [s for st in studies for s in st.series if s.series_uid == series_uid]
            if not found:
                known = [s.series_uid for st in studies for s in st.series]
                raise InputDataError(f"series {series_uid} not found under {folder}; found {known}")
            series = found[0]
        else:
            if len(studies) != 1:
                raise InputDataError(f"{folder} holds {len(studies)} studies; choose a series with --series-uid")
            sel = select_series(studies[0])
            if sel.selected is None:
                reasons = "; ".join(f"{s.series_description or s.series_uid}: {why}" for s, why in sel.skipped)
                raise InputDataError(f"no scorable CT series under {folder} ({reasons}); choose one with --series-uid")
            series = sel.selected
        vol = assemble(series)
        sources = sorted_sources(StudyInfo.from_series(series), vol)
    if sources is None:
        raise InputDataError(f"series {series.series_uid}: its files do not match the assembled slices one to one "
                             "(duplicates or interpolated slices); DICOM outputs need the original slices")
    return vol, sources
