"""Write a v2 phantom as a PACS-like DICOM study, and as NIfTI + truth files.

Series: a localizer, the axial series the phantom was acquired as (ORIGINAL/PRIMARY/AXIAL, the
one to score), and on request extra series a pipeline must skip or rank lower: ``thick`` (5 mm
slabs averaged from the axial series: spacing too large), ``lung`` (the same data through a
sharp kernel: not preferred), ``derived`` (a DERIVED/SECONDARY reformat), ``contrast`` (a
post-contrast acquisition labelled with its agent). An undeclared contrast phase of the main
series (``acquisition.contrast_phase``) is *not* labelled: the pipeline must detect it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from ...volume import Volume
from ..dicom_study import ROOT_UID, PatientInfo, uid, write_axial_series, write_localizer
from ..fastio import write_nifti
from .acquisition import F50
from .config import ChestConfig
from .generate import ChestPhantom, generate

EXTRA_SERIES = ("thick", "lung", "derived", "contrast")

KERNEL_NAMES = {  # (soft, standard, sharp) reconstruction kernel names by vendor
    "GE MEDICAL SYSTEMS": ("SOFT", "STANDARD", "LUNG"),
    "SIEMENS": ("B26f", "B31f", "B70f"),
    "CANON_MEC": ("FC03", "FC13", "FC52"),
    "Philips": ("A", "B", "YC"),
}


def kernel_name(cfg: ChestConfig, kernel: str | None = None) -> str:
    names = KERNEL_NAMES.get(cfg.acquisition.manufacturer, ("SOFT", "STANDARD", "LUNG"))
    return names[("soft", "standard", "sharp").index(kernel or cfg.acquisition.kernel)]


def patient_of(cfg: ChestConfig, patient_id: str | None = None) -> PatientInfo:
    """Synthetic identifiers for a v2 phantom (deterministic in its seed)."""
    pid = patient_id or f"PV2{cfg.seed:07d}"
    day = int(cfg.seed) % 300
    date = np.datetime64("2026-01-05") + np.timedelta64(day, "D")
    study_date = str(date).replace("-", "")
    birth_year = int(study_date[:4]) - int(cfg.habitus.age)
    return PatientInfo(patient_id=pid, patient_name=f"PHANTOM^V2^{cfg.seed}", birth_date=f"{birth_year}0615",
                       sex=cfg.habitus.sex, study_date=study_date, accession=f"A{cfg.seed:09d}",
                       manufacturer=cfg.acquisition.manufacturer, model=cfg.acquisition.model)


def resharpen(ct: Volume, cfg: ChestConfig, kernel: str = "sharp", cap: float = 25.0) -> Volume:
    """The same acquisition through another kernel: the image x MTF_new / MTF_old, per slice.

    Image and noise both take the new kernel's transfer (the noise texture follows: NPS ~ MTF^2).
    """
    acq = cfg.acquisition
    ny, nx = ct.shape[1:]
    fy = sfft.fftfreq(ny, d=acq.pixel_mm)[:, None]
    fx = sfft.rfftfreq(nx, d=acq.pixel_mm)[None, :]
    f2 = fx * fx + fy * fy
    ratio = np.exp(-np.log(2.0) * f2 * (1 / F50[kernel] ** 2 - 1 / F50[acq.kernel] ** 2))
    ratio = np.minimum(ratio, cap).astype(np.float32)
    out = np.empty(ct.shape, np.int16)
    for k0 in range(0, ct.shape[0], 64):
        a = ct.array[k0:k0 + 64].astype(np.float32) + 1000.0
        img = sfft.irfft2(sfft.rfft2(a, workers=-1) * ratio, s=(ny, nx), workers=-1) - 1000.0
        out[k0:k0 + 64] = np.clip(np.rint(img), -1024, 3071)
    return ct.with_array(out)


def thick_slabs(ct: Volume, slab_mm: float = 5.0) -> Volume | None:
    """Contiguous slabs of ``slab_mm`` averaged from the axial series (None when it is already that thick)."""
    dz = ct.spacing_zyx[0]
    n = int(round(slab_mm / dz))
    if n < 2:
        return None
    m = ct.shape[0] // n
    a = ct.array[: m * n].astype(np.float32).reshape(m, n, *ct.shape[1:]).mean(axis=1)
    oz = ct.origin_xyz[2] + (n - 1) * dz / 2
    return Volume(np.rint(a).astype(np.int16), (n * dz, *ct.spacing_zyx[1:]), (*ct.origin_xyz[:2], oz))


def write_study_v2(ph: ChestPhantom, out_dir: str | Path, patient: PatientInfo | None = None,
                   extra_series: tuple[str, ...] = ()) -> dict:
    """Write the DICOM study under ``out_dir/PatientID/StudyDate_Accession``; returns its description."""
    cfg = ph.config
    acq = cfg.acquisition
    patient = patient or patient_of(cfg)
    bad = set(extra_series) - set(EXTRA_SERIES)
    if bad:
        raise ValueError(f"unknown extra series {sorted(bad)}; choose from {EXTRA_SERIES}")
    digest = hashlib.sha1(json.dumps(cfg.to_json(), sort_keys=True).encode()).hexdigest()
    study_uid = uid(ROOT_UID, patient.patient_id, patient.accession, digest)
    study_dir = Path(out_dir) / patient.patient_id / f"{patient.study_date}_{patient.accession}"
    tags = {"KVP": str(acq.kvp)}
    series: dict[str, dict] = {}

    def add(name: str, number: int, vol: Volume, desc: str, **kw) -> None:
        d = study_dir / f"{number:03d}_{name}"
        files = write_axial_series(vol, d, patient, study_uid, number, desc, extra=tags, **kw)
        series[name] = {"uid": uid(study_uid, "series", number, desc), "dir": str(d), "files": len(files),
                        "slice_thickness_mm": float(kw.get("thickness_mm") or vol.spacing_zyx[0]),
                        "spacing_mm": float(vol.spacing_zyx[0])}

    loc = write_localizer(ph.ct, study_dir / "001_localizer", patient, study_uid, 1)
    series["localizer"] = {"uid": uid(study_uid, "series", 1, "localizer"), "dir": str(loc.parent), "files": 1}
    t = acq.slice_thickness_mm
    kname = kernel_name(cfg)
    add("axial", 2, ph.ct, f"Thorax {t:g}mm {kname}", kernel=kname, thickness_mm=t)
    if "thick" in extra_series:
        slabs = thick_slabs(ph.ct)
        if slabs is not None:
            add("thick", 3, slabs, f"Thorax 5mm {kname}", kernel=kname, thickness_mm=5.0)
    if "lung" in extra_series and acq.kernel != "sharp":
        sharp = kernel_name(cfg, "sharp")
        add("lung", 4, resharpen(ph.ct, cfg), f"Thorax {t:g}mm {sharp}", kernel=sharp, thickness_mm=t)
    if "derived" in extra_series:
        sub = ph.ct.array[::2]
        vol = Volume(sub, (2 * ph.ct.spacing_zyx[0], *ph.ct.spacing_zyx[1:]), ph.ct.origin_xyz)
        add("derived", 5, vol, "Thorax MPR 3D", kernel=kname, image_type=("DERIVED", "SECONDARY", "AXIAL"))
    if "contrast" in extra_series:
        enhanced = generate(replace(cfg, acquisition=replace(acq, contrast_phase="venous")))
        add("contrast", 6, enhanced.ct, f"Thorax C+ {t:g}mm {kname}", kernel=kname, thickness_mm=t,
            contrast_agent="IOPAMIDOL 370")
    return {"study_uid": study_uid, "study_dir": str(study_dir), "patient_id": patient.patient_id, "series": series}


def write_truth_files(ph: ChestPhantom, out: str | Path, ct: bool = True) -> None:
    """NIfTI images and truth.json of a phantom in ``out`` (ct.nii.gz only with ``ct``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ct:
        write_nifti(ph.ct, out / "ct.nii.gz")
    write_nifti(ph.labels, out / "labels.nii.gz")
    write_nifti(ph.heart, out / "heart.nii.gz")
    write_nifti(ph.lesions, out / "truth_lesions.nii.gz")


def write_phantom_v2(cfg: ChestConfig, out_dir: str | Path, patient: PatientInfo | None = None, dicom: bool = True,
                     extra_series: tuple[str, ...] = ()) -> tuple[ChestPhantom, dict]:
    """Generate and write: ct.nii.gz, labels.nii.gz, heart.nii.gz, truth_lesions.nii.gz, truth.json, dicom/."""
    out = Path(out_dir)
    ph = generate(cfg)
    write_truth_files(ph, out)
    truth = dict(ph.truth)
    if dicom:
        truth["dicom"] = write_study_v2(ph, out / "dicom", patient, extra_series)
    (out / "truth.json").write_text(json.dumps(truth, indent=1, default=_json_default))
    return ph, truth


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
