"""Synthetic chest CT phantom with exact coronary calcium ground truth (tests, demo, benchmarks)."""

from .anatomy import DEFAULT_PLAQUES, Phantom, PhantomConfig, Plaque, generate
from .dicom_study import PatientInfo, write_study
from .truth import agatston_reference, ground_truth

__all__ = [
    "DEFAULT_PLAQUES", "PatientInfo", "Phantom", "PhantomConfig", "Plaque",
    "agatston_reference", "generate", "ground_truth", "write_study",
]
