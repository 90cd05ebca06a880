"""A small phantom PACS export for ``cacpipe demo``: several patients, mixed layouts, series to skip."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from .anatomy import PhantomConfig, Plaque, generate
from .dicom_study import PatientInfo, write_study
from .truth import ground_truth

DEMO_PATIENTS: tuple[tuple[PatientInfo, dict, dict], ...] = (
    # (identifiers, PhantomConfig overrides, write_study options)
    (PatientInfo(patient_id="DEMO001", patient_name="PHANTOM^ALPHA", accession="ACC1001", study_date="20260105"),
     {}, {"contrast_series": True}),
    (PatientInfo(patient_id="DEMO002", patient_name="PHANTOM^BRAVO", accession="ACC1002", study_date="20260112",
                 sex="F", birth_date="19620304", manufacturer="SIEMENS", model="Phantom Definition AS"),
     {"plaques": (), "seed": 1, "heart_shift_mm": (5.0, -3.0, 0.0)}, {}),
    (PatientInfo(patient_id="DEMO003", patient_name="PHANTOM^CHARLIE", accession="ACC1003", study_date="20260119",
                 birth_date="19480711", manufacturer="CANON", model="Phantom Aquilion"),
     {"seed": 2, "noise_hu": 35.0, "heart_shift_mm": (-4.0, 2.0, 4.0),
      "plaques": (Plaque("LAD", 0.3, 2.6, 600.0), Plaque("RCA", 0.5, 1.6, 260.0))}, {"thin_series": True}),
)
ZIPPED = "DEMO003"  # this patient's study is exported as a zip file


def write_demo_export(export: str | Path, preset: str = "small", truth_dir: str | Path | None = None,
                      **overrides) -> list[dict]:
    """Write the demo export; returns write_study's description of each study.

    DEMO001: calcium in three arteries, plus a localizer and a contrast series (skipped);
    DEMO002: no coronary calcium (CAC = 0); DEMO003: two dense plaques, noisier, with a thin
    lung-kernel series (not preferred), exported as ``DEMO003.zip``. A README.txt is ignored.
    ``overrides`` change every patient's PhantomConfig (e.g. a smaller grid for tests).
    With ``truth_dir``, each patient's ground truth goes to ``truth_dir/<PatientID>.json``.
    """
    export = Path(export)
    export.mkdir(parents=True, exist_ok=True)
    studies = []
    for patient, overrides_for_patient, options in DEMO_PATIENTS:
        cfg = PhantomConfig.preset(preset, **{**overrides_for_patient, **overrides})
        ph = generate(cfg)
        if truth_dir is not None:
            truth = ground_truth(ph) | {"patient_id": patient.patient_id, "config": cfg.to_json()}
            Path(truth_dir).mkdir(parents=True, exist_ok=True)
            (Path(truth_dir) / f"{patient.patient_id}.json").write_text(json.dumps(truth, indent=2))
        if patient.patient_id == ZIPPED:
            staging = export / f".{ZIPPED}-staging"
            info = write_study(cfg, staging, patient, phantom=ph, **options)
            with zipfile.ZipFile(export / f"{ZIPPED}.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(staging.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(staging).as_posix())
            shutil.rmtree(staging)
        else:
            info = write_study(cfg, export, patient, phantom=ph, **options)
        studies.append(info)
    (export / "README.txt").write_text("Synthetic phantom PACS export written by 'cacpipe demo'. No real patient.\n")
    return studies
