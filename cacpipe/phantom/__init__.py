"""Synthetic chest CT phantoms with exact coronary calcium ground truth (tests, demo, benchmarks).

v1 (``PhantomConfig``, presets full/small/thin): one fixed layout, the shipped demo model's data.
v2 (``cacpipe.phantom.v2``: ``random_config(seed)``, presets v2/v2-small/v2-bench): varied anatomy,
realistic calcium, confounders and a scanner model. Seed ranges: ``cacpipe.phantom.seeds``.
See docs/phantom.md.
"""

from .anatomy import DEFAULT_PLAQUES, Phantom, PhantomConfig, Plaque
from .anatomy import generate as _generate_v1
from .dicom_study import PatientInfo
from .dicom_study import write_study as _write_study_v1
from .truth import agatston_reference
from .truth import ground_truth as _ground_truth_v1


def generate(config):
    """Build the phantom of a v1 ``PhantomConfig`` or a v2 ``ChestConfig``."""
    from .v2 import ChestConfig
    from .v2 import generate as generate_v2

    return generate_v2(config) if isinstance(config, ChestConfig) else _generate_v1(config)


def ground_truth(phantom) -> dict:
    """Calcium truth of a phantom (v2 phantoms carry theirs, computed on generation)."""
    from .v2 import ChestPhantom

    return phantom.truth if isinstance(phantom, ChestPhantom) else _ground_truth_v1(phantom)


def write_study(config, out_dir, patient=None, contrast_series=False, thin_series=False, phantom=None) -> dict:
    """Write the DICOM study of a v1 or v2 phantom (see ``dicom_study.write_study``, ``v2.study``)."""
    from .v2 import ChestConfig

    if isinstance(config, ChestConfig):
        from .v2.study import write_study_v2

        if thin_series:
            raise ValueError("thin_series is a v1 option; v2 extra series: thick, lung, derived, contrast")
        return write_study_v2(phantom or generate(config), out_dir, patient, ("contrast",) if contrast_series else ())
    return _write_study_v1(config, out_dir, patient, contrast_series, thin_series, phantom)


__all__ = [
    "DEFAULT_PLAQUES", "PatientInfo", "Phantom", "PhantomConfig", "Plaque",
    "agatston_reference", "generate", "ground_truth", "write_study",
]
