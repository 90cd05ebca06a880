"""Write a phantom to a folder: NIfTI images, ground truth JSON and (optionally) a DICOM study."""

from __future__ import annotations

import json
from pathlib import Path

from .anatomy import Phantom, PhantomConfig, generate
from .dicom_study import PatientInfo, write_study
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
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ph = generate(config)
    ph.ct.write(out / "ct.nii.gz")
    ph.labels.write(out / "labels.nii.gz")
    ph.heart.write(out / "heart.nii.gz")
    truth = ground_truth(ph)
    truth["config"] = config.to_json()
    truth["distractors"] = ph.distractors
    if dicom:
        study = write_study(config, out / "dicom", patient, contrast_series, thin_series, phantom=ph)
        truth["dicom"] = study
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return ph, truth
