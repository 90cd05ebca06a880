"""Review settings and the patient text each output may show (burned-in text, page headers)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import ConfigError

# Fields a user may allow on images and pages; each maps a result["study"] key or a derived value.
DISPLAY_FIELDS: dict[str, str] = {
    "anon_id": "Anon ID",
    "study_date": "Study date",
    "patient_id": "Patient ID",
    "patient_name": "Patient name",
    "accession": "Accession",
    "study_uid": "Study UID",
    "series_description": "Series",
}
DEFAULT_FIELDS: tuple[str, ...] = ("anon_id", "study_date")

# Calcium window: L 200 / W 800 shows -200..600 HU. Calcium at the 130 HU threshold sits at 41 %
# grey, dense calcium (>= 600 HU) is white, and fat (-100) stays darker than soft tissue (40), so
# the arteries in the epicardial fat remain visible. A mediastinal window (L 40 / W 400) saturates
# every plaque to white and hides its density, which drives the Agatston weight.
CALCIUM_WINDOW: tuple[float, float] = (200.0, 800.0)  # (level, width) in HU


@dataclass(frozen=True)
class ReviewOptions:
    """What ``build_review`` writes and shows.

    burned_in_fields: study fields allowed in image pixels and on the HTML pages
        (keys of DISPLAY_FIELDS). Default: anonymised id + study date.
    anon_salt: mixed into the anonymised id, so ids cannot be recomputed from a known patient id.
    window: (level, width) HU for slices; default CALCIUM_WINDOW.
    max_slices: at most this many lesion-slice PNGs (largest lesions first); the rest are listed.
    html_max_slices: at most this many scrollable slices on the review page.
    dicom: write DICOM SEG / SR / SC when source datasets are given.
    agreement: optional fold-agreement volume (0..1, same grid as the CT) for a heat map.
    zoom_to_heart: crop slices to the labelled region plus ``margin_mm`` (upscaled for reading).
    """

    burned_in_fields: tuple[str, ...] = DEFAULT_FIELDS
    anon_salt: str = ""
    window: tuple[float, float] = CALCIUM_WINDOW
    max_slices: int = 40
    html_max_slices: int = 160
    dicom: bool = True
    agreement: object | None = None  # cacpipe.volume.Volume or (z, y, x) ndarray
    zoom_to_heart: bool = True
    margin_mm: float = 35.0
    display_px: int = 512
    series_number_base: int = 9100

    def __post_init__(self) -> None:
        unknown = [f for f in self.burned_in_fields if f not in DISPLAY_FIELDS]
        if unknown:
            raise ConfigError(f"unknown display field(s) {unknown}; choose from {sorted(DISPLAY_FIELDS)}")
        if self.window[1] <= 0:
            raise ConfigError(f"window width must be > 0 HU, got {self.window[1]}")
        if self.max_slices < 1:
            raise ConfigError(f"max_slices must be >= 1, got {self.max_slices}")


def anonymised_id(patient_id: str | None, salt: str = "") -> str:
    """A short stable pseudonym for a patient id ("anon-" + 10 hex digits of SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x00{patient_id or ''}".encode()).hexdigest()
    return f"anon-{digest[:10]}"


def display_items(study: dict, options: ReviewOptions) -> list[tuple[str, str]]:
    """(label, value) pairs of the allowed fields, in the order the user gave them."""
    out = []
    for key in options.burned_in_fields:
        if key == "anon_id":
            value = anonymised_id(study.get("patient_id"), options.anon_salt)
        else:
            value = study.get(key)
        if key == "study_date" and value and len(str(value)) == 8 and str(value).isdigit():
            value = f"{str(value)[:4]}-{str(value)[4:6]}-{str(value)[6:]}"
        out.append((DISPLAY_FIELDS[key], "" if value is None else str(value)))
    return out
