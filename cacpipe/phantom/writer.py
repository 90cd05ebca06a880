"""Write a phantom to a folder: NIfTI images, ground truth JSON and (optionally) a DICOM study."""

from __future__ import annotations

import json
from pathlib import Path

from .anatomy import Phantom, PhantomConfig, generate
from .dicom_study import PatientInfo, write_study
from .fastio import write_nifti
from .truth import ground_truth


def write_phantom(
    config: PhantomConfig,
    out_dir: str | Path,
    patient: PatientInfo | None = None,
    dicom: bool = True,
    contrast_series: bool = False,
    thin_series: bool = False,
) -> tuple[Phantom, dict]:
    """Generate and write a phantom. Layout::

        out_dir/ct.nii.gz  labels.nii.gz  heart.nii.gz  truth.json  dicom/<PatientID>/<date_acc>/<NNN_series>/

    A v2 config (:class:`cacpipe.phantom.v2.ChestConfig`) also writes truth_lesions.nii.gz; its
    contrast series is a second acquisition, ``thin_series`` is not available.
    """
    from .v2 import ChestConfig

    if isinstance(config, ChestConfig):
        from .v2.study import write_phantom_v2

        if thin_series:
            raise ValueError("thin_series is a v1 option; v2 extra series: thick, lung, derived, contrast")
        return write_phantom_v2(config, out_dir, patient, dicom, ("contrast",) if contrast_series else ())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ph = generate(config)
    write_nifti(ph.ct, out / "ct.nii.gz")
    write_nifti(ph.labels, out / "labels.nii.gz")
    write_nifti(ph.heart, out / "heart.nii.gz")
    truth = ground_truth(ph)
    truth["config"] = config.to_json()
    truth["distractors"] = ph.distractors
    if dicom:
        study = write_study(config, out / "dicom", patient, contrast_series, thin_series, phantom=ph)
        truth["dicom"] = study
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return ph, truth
