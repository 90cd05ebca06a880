"""Stage 1: heart mask (TotalSegmentator, offline, or a weights-free fallback), QC, resampling,
crop to the heart box and the exact way back. See docs/stage1.md."""

from .crop import CropRecord, apply_crop, make_record, uncrop_labels
from .qc import detect_contrast
from .resample import resample_to_spacing
from .stage1 import Stage1Result, crop_case, heart_crop
from .totalseg import require_weights, totalseg_status

__all__ = [
    "CropRecord", "crop_case", "Stage1Result", "apply_crop", "detect_contrast", "heart_crop",
    "make_record", "require_weights", "resample_to_spacing", "totalseg_status", "uncrop_labels",
]
