"""Choose, per study, the one series to score; give every other series a one-line reason.

Rules (in this order; the first that fails is the reason a series is skipped):

1. image object: CT Image Storage with pixel data (SR, SEG, RT, secondary capture, other
   modalities are not CT images);
2. modality CT;
3. not a localizer (ImageType LOCALIZER, or a scout/topogram description);
4. ORIGINAL/PRIMARY (DERIVED, SECONDARY, reformats, MIPs are skipped);
5. single-frame images (enhanced multi-frame CT is not supported yet);
6. axial: slice normal within ``max_obliquity_deg`` of the patient's head-foot axis;
7. no contrast agent (ContrastBolusAgent empty; Agatston is not valid on contrast scans);
8. at least ``min_slices`` images;
9. slice spacing (from positions) within [``min_spacing_mm``, ``max_spacing_mm``].

Among the series that pass, the preferred one wins: a soft-tissue kernel over a sharp/lung
kernel, then slice spacing closest to ``preferred_spacing_mm``, then more slices, then the
lower series number. The others are skipped with "another series preferred"; they are the
fallbacks, in that order, when the preferred series turns out unreadable at assembly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from ..config import SelectionSettings
from .series import Series, Study

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LOCALIZER_WORDS = re.compile(r"\b(scout|topogram|localizer|localiser|surview|scanogram|pilot)\b", re.I)
# Sharp reconstruction kernels (lung, bone, high resolution) inflate calcium; soft kernels are preferred.
SHARP_KERNEL = re.compile(r"(lung|bone|sharp|detail|edge|b[4-9]\d|br[5-9]\d|bl\d|fc5\d|fc8\d|yc|yd|\bl\b)", re.I)


@dataclass
class Selection:
    """The series chosen for a study (or None) and the reason for every other series."""

    study: Study
    selected: Series | None
    skipped: list[tuple[Series, str]]
    candidates: list[Series] = field(default_factory=list)  # all qualifying series, best first

    def fingerprint(self) -> str:
        """Changes when any qualifying series changes (a fallback may be scored instead of the best)."""
        return hashlib.sha1("|".join(s.fingerprint() for s in self.candidates).encode()).hexdigest()

    @property
    def reason(self) -> str:
        """Why the study has nothing to score (empty when a series was selected)."""
        if self.selected is not None:
            return ""
        if not self.skipped:
            return "no image series in study"
        parts = [f"{s.series_description or s.series_uid} ({r})" for s, r in self.skipped]
        return "no series meets the selection rules: " + "; ".join(parts)

    def skipped_dicts(self) -> list[dict]:
        return [{**s.summary(), "reason": r} for s, r in self.skipped]


def rule_failure(series: Series, rules: SelectionSettings) -> str | None:
    """The first selection rule ``series`` fails, as a one-line reason (None: it qualifies)."""
    f = series.first
    if f.sop_class_uid == ENHANCED_CT_IMAGE_STORAGE or series.number_of_frames > 1:
        return "multi-frame (enhanced) CT is not supported"
    if not f.has_pixel_data:
        return f"not an image object (modality {f.modality or '?'}, SOP class {f.sop_class_uid or '?'})"
    if f.modality != "CT":
        return f"modality {f.modality or 'missing'} is not CT"
    if f.sop_class_uid and f.sop_class_uid != CT_IMAGE_STORAGE:
        return f"not a CT image object (SOP class {f.sop_class_uid})"
    if "LOCALIZER" in f.image_type or LOCALIZER_WORDS.search(f.series_description):
        return "localizer (scout) image"
    if len(f.image_type) >= 2 and (f.image_type[0] != "ORIGINAL" or f.image_type[1] != "PRIMARY"):
        return f"not ORIGINAL/PRIMARY (ImageType {'/'.join(f.image_type[:3])}: derived or secondary)"
    if series.slice_normal is None:
        return "no ImageOrientationPatient (cannot tell slice direction)"
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(series.slice_normal[2]))))))
    if tilt > rules.max_obliquity_deg:
        return f"not axial (slice normal {tilt:.0f} deg from head-foot axis > {rules.max_obliquity_deg:g})"
    if f.contrast_agent and not rules.allow_contrast:
        return f"contrast agent tag set ({f.contrast_agent}); Agatston needs a non-contrast scan"
    if series.n_files < rules.min_slices:
        return f"too few slices ({series.n_files} < {rules.min_slices})"
    sp = series.slice_spacing_mm()
    if sp is None:
        return "slice positions missing or identical (cannot tell slice spacing)"
    if not rules.min_spacing_mm <= sp <= rules.max_spacing_mm:
        return f"slice spacing {sp:.2f} mm outside {rules.min_spacing_mm:g}-{rules.max_spacing_mm:g} mm"
    return None


def _rank(series: Series, rules: SelectionSettings) -> tuple:
    kernel = series.kernel or ""
    if rules.preferred_kernel:
        kernel_rank = 0 if re.search(rules.preferred_kernel, kernel, re.I) else 1
    else:
        kernel_rank = 1 if SHARP_KERNEL.search(kernel) else 0
    sp = series.slice_spacing_mm() or 99.0
    return (kernel_rank, abs(sp - rules.preferred_spacing_mm), -series.n_files,
            series.series_number if series.series_number is not None else 1 << 30)


def select_series(study: Study, rules: SelectionSettings | None = None) -> Selection:
    """Apply the selection rules to every series of ``study``."""
    rules = rules or SelectionSettings()
    ok: list[Series] = []
    skipped: list[tuple[Series, str]] = []
    for s in study.series:
        why = rule_failure(s, rules)
        if why:
            skipped.append((s, why))
        else:
            ok.append(s)
    if not ok:
        return Selection(study, None, skipped)
    ok.sort(key=lambda s: _rank(s, rules))
    best = ok[0]
    for s in ok[1:]:
        skipped.append((s, f"another series preferred ({best.series_description or best.series_uid}: "
                           f"kernel {best.kernel or '?'}, spacing {best.slice_spacing_mm():.2f} mm); "
                           f"used if that one cannot be read"))
    return Selection(study, best, skipped, ok)
