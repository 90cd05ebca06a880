"""Quality flags attached to results. A flag changes how a number may be read; it never hides it.

Severity: ``info`` (worth knowing), ``warning`` (check the images), ``invalid`` (the number
must not be used as a score: e.g. Agatston on a contrast scan, or an artery not assessed).
Every flag code cacpipe raises is defined here, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum


class Severity(str, Enum):
    """How a flag changes the reading of a number; a ``str`` (``Severity.INVALID == "invalid"``), so JSON is unchanged."""

    INFO = "info"
    WARNING = "warning"
    INVALID = "invalid"

    def __str__(self) -> str:  # "invalid", not "Severity.INVALID", in messages and f-strings
        return self.value

    __format__ = str.__format__


# Known codes (stable strings: they go into CSVs and JSON).
CONTRAST_SUSPECTED = "contrast_suspected"
NOT_ASSESSABLE = "not_assessable"
FEW_SLICES = "few_slices"
HEART_EMPTY = "heart_mask_empty"
HEART_TOO_SMALL = "heart_mask_too_small"
HEART_TOO_LARGE = "heart_mask_too_large"
HEART_AT_EDGE = "heart_touches_scan_edge"
FALLBACK_HEART_LOCATOR = "fallback_heart_locator"
DEMO_MODEL = "demo_model_not_for_clinical_use"
SEVERITY_NOT_FITTED = "severity_model_not_fitted"
STENT_SUSPECTED = "stent_suspected"
VALVE_CALCIUM_SUSPECTED = "valve_calcium_suspected"
HIGH_NOISE = "high_noise"
# Devices and grafts seen in the image (cacpipe.quant.devices); motion (no detector yet: issue 26).
METAL_DEVICE = "metal_device"  # pacemaker / ICD (can, leads), prosthetic or transcatheter valve, annuloplasty ring
CABG_SUSPECTED = "cabg_suspected"  # sternal wires, graft clips: bypass surgery
DEVICE_CALCIUM_EXCLUDED = "device_calcium_excluded"  # calcium-labelled voxels a device explains: not counted
MOTION_SUSPECTED = "motion_suspected"  # cardiac motion doubles, smears or hides calcium (reserved: not raised yet)
HEART_NOT_IN_FOV = "heart_not_in_field_of_view"  # the scan does not show a heart: not assessable
# Stage-2 post-processing (cacpipe.segment.postprocess) and the model's lateral safety.
CALCIUM_ATTRIBUTION_AMBIGUOUS = "calcium_attribution_ambiguous"
ARTERY_IMPLAUSIBLE_POSITION = "artery_implausible_position"
ARTERY_TREE_MISSING = "artery_tree_missing"
ARTERY_OUTSIDE_HEART = "artery_outside_heart"
DEXTROCARDIA_SUSPECTED = "dextrocardia_suspected"
MODEL_MIRRORED_LEFT_RIGHT = "model_trained_mirrored_left_right"
CALCIUM_UNCOUNTED = "calcium_uncounted"  # dense spots on a predicted artery the density rule did not count
READER_CORRECTED = "reader_corrected"  # a reader's corrections were applied (cacpipe review apply)
# ingestion (cacpipe.ingest.assemble) and the batch runner (cacpipe.scan.worker)
DUPLICATE_SLICES = "duplicate_slices"
DUPLICATE_INSTANCES = "duplicate_instances"
MISSING_SLICES = "missing_slices_interpolated"
UNEVEN_SPACING = "uneven_slice_spacing"
GANTRY_TILT = "gantry_tilt"
SERIES_FALLBACK = "series_fallback"
UIDS_MISSING = "uids_missing"  # the files had blank Study/Series/SOP Instance UIDs: grouped by folder and geometry
LOSSY_COMPRESSION = "lossy_compression"  # the images were lossy-compressed (LossyImageCompression 01 or a lossy syntax)


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    severity: Severity = Severity.WARNING
    artery: str | None = None  # None: the whole study

    def __post_init__(self) -> None:  # a plain "warning" becomes Severity.WARNING (unknown levels raise ValueError)
        object.__setattr__(self, "severity", Severity(self.severity))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["severity"] = self.severity.value  # JSON and CSV carry the plain string
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Flag:
        return cls(d["code"], d["message"], Severity(d.get("severity", "warning")), d.get("artery"))


def worst(flags: list[Flag]) -> Severity | None:
    """The most severe level among ``flags`` (None when there are none)."""
    order = list(Severity)
    return max((f.severity for f in flags), key=order.index, default=None)
