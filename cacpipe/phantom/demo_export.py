"""A small phantom PACS export for ``cacpipe demo``: several patients, mixed layouts, series to skip."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

from .anatomy import DEFAULT_PLAQUES, PhantomConfig, Plaque, generate
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

# DEMO001 comes back two years later (``follow_up=True``; `cacpipe demo` writes it and shows the trend).
# v1 phantoms have no follow-up generator (cacpipe.phantom.v2.followup is v2's), so this is the smallest
# honest one: the same anatomy and plaques, each grown in volume by its annual rate below (the radius by
# the cube root), one new small RCA plaque, and a new acquisition: another table position, the heart
# moved by another breath hold, other noise and another scanner. The rates are the demo's assumptions.
FOLLOW_UP_YEARS = 2.0
FOLLOW_UP_RATES = (0.25, 0.15, 0.0, 0.30)  # annual volume growth of DEFAULT_PLAQUES (RCA, LAD, LAD, LCX)
FOLLOW_UP_NEW = (Plaque("RCA", 0.62, 1.6, 330.0),)
FOLLOW_UP_PATIENT = replace(DEMO_PATIENTS[0][0], study_date="20280107", accession="ACC1001F1",
                            manufacturer="SIEMENS", model="Phantom Definition AS")
FOLLOW_UP_CONFIG = {"seed": 101, "noise_hu": 25.0, "z_centre_mm": -14.0, "heart_shift_mm": (3.0, -2.5, 4.0)}


def follow_up_plaques(years: float = FOLLOW_UP_YEARS) -> tuple[Plaque, ...]:
    """DEMO001's plaques ``years`` after its first study: grown, plus the new one."""
    grown = tuple(replace(p, radius_mm=round(p.radius_mm * ((1.0 + r) ** years) ** (1.0 / 3.0), 4))
                  for p, r in zip(DEFAULT_PLAQUES, FOLLOW_UP_RATES, strict=True))
    return grown + FOLLOW_UP_NEW


def write_demo_export(export: str | Path, preset: str = "small", truth_dir: str | Path | None = None,
                      version: int = 1, follow_up: bool = False, only_follow_up: bool = False,
                      **overrides) -> list[dict]:
    """Write the demo export; returns write_study's description of each study.

    DEMO001: calcium in three arteries, plus a localizer and a contrast series (skipped);
    DEMO002: no coronary calcium (CAC = 0); DEMO003: two dense plaques, noisier, with a thin
    lung-kernel series (not preferred), exported as ``DEMO003.zip``. A README.txt is ignored.
    ``overrides`` change every patient's PhantomConfig (e.g. a smaller grid for tests).
    With ``truth_dir``, each patient's ground truth goes to ``truth_dir/<PatientID>.json`` (with
    its study_uid). ``follow_up``: DEMO001's second study two years later (:data:`FOLLOW_UP_RATES`),
    its truth in ``truth_dir/DEMO001_<StudyDate>.json``; ``only_follow_up``: that study alone (an
    export written before the demo had it).
    ``version=2`` writes the v2 demo export instead (:func:`write_demo_export_v2`; no follow-up).
    """
    if version == 2:
        return write_demo_export_v2(export, preset, truth_dir, **overrides)
    if version != 1:
        raise ValueError(f"phantom version must be 1 or 2, got {version}")
    export = Path(export)
    export.mkdir(parents=True, exist_ok=True)
    studies = []
    patients = [] if only_follow_up else list(DEMO_PATIENTS)
    if follow_up or only_follow_up:
        patients.append((FOLLOW_UP_PATIENT, {**FOLLOW_UP_CONFIG, "plaques": follow_up_plaques()}, {}))
    for patient, overrides_for_patient, options in patients:
        cfg = PhantomConfig.preset(preset, **{**overrides_for_patient, **overrides})
        ph = generate(cfg)
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
        if truth_dir is not None:
            truth = ground_truth(ph) | {"patient_id": patient.patient_id, "study_uid": info["study_uid"],
                                        "study_date": patient.study_date, "config": cfg.to_json()}
            name = f"{patient.patient_id}_{patient.study_date}" if patient is FOLLOW_UP_PATIENT else patient.patient_id
            Path(truth_dir).mkdir(parents=True, exist_ok=True)
            (Path(truth_dir) / f"{name}.json").write_text(json.dumps(truth, indent=2))
        studies.append(info)
    (export / "README.txt").write_text("Synthetic phantom PACS export written by 'cacpipe demo'. No real patient.\n")
    return studies


# v2 demo: (seed offset in the demo seed range, random_config overrides, extra series); the third is zipped.
# Offsets chosen so that the first and third patients have coronary calcium above 130 HU after partial
# volume (offset 19: 5 plaques, 3 lesions, Agatston 27.7 on v2-small; offsets 2-6 draw no plaque).
DEMO_V2: tuple[tuple[int, dict, tuple[str, ...]], ...] = (
    (0, {"acquisition": {"contrast_phase": "none"}}, ("contrast", "thick")),
    (1, {"plaques": (), "acquisition": {"contrast_phase": "none"}}, ()),
    (19, {"acquisition": {"contrast_phase": "none"}}, ("lung", "derived")),
)
V2_PRESET = {"small": "v2-small", "full": "v2"}


def write_demo_export_v2(export: str | Path, preset: str = "small", truth_dir: str | Path | None = None,
                         **overrides) -> list[dict]:
    """The v2 demo export: three v2 phantoms from the ``demo`` seed range (one without coronary
    calcium, one with a labelled contrast series and a 5 mm series, one with a sharp-kernel and a
    derived series, exported as a zip file), a README to ignore. With ``truth_dir``, each patient's
    truth goes to ``truth_dir/<PatientID>/`` (truth.json, labels, lesion ids, heart).
    ``overrides`` go to every patient's :func:`cacpipe.phantom.v2.random_config`.
    """
    from . import seeds
    from .v2 import generate as generate_v2
    from .v2 import random_config
    from .v2.sampling import apply_overrides
    from .v2.study import _json_default, patient_of, write_study_v2, write_truth_files

    export = Path(export)
    export.mkdir(parents=True, exist_ok=True)
    studies = []
    for i, (offset, own, extras) in enumerate(DEMO_V2):
        seed = seeds.DEMO.start + offset
        cfg = apply_overrides(random_config(seed, V2_PRESET.get(preset, preset), **own), overrides)
        ph = generate_v2(cfg)
        patient = patient_of(cfg, f"DEMOV2{i + 1:02d}")
        zipped = i == len(DEMO_V2) - 1
        target = export / f".{patient.patient_id}-staging" if zipped else export
        info = write_study_v2(ph, target, patient, extras)
        if zipped:
            with zipfile.ZipFile(export / f"{patient.patient_id}.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(target.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(target).as_posix())
            shutil.rmtree(target)
        if truth_dir is not None:
            tdir = Path(truth_dir) / patient.patient_id
            write_truth_files(ph, tdir, ct=False)
            truth = ph.truth | {"patient_id": patient.patient_id, "study_uid": info["study_uid"]}
            (tdir / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
        studies.append(info)
    (export / "README.txt").write_text("Synthetic phantom (v2) PACS export written by cacpipe. No real patient.\n")
    return studies
