"""Write a phantom as a realistic multi-series CT study (pydicom), the way a PACS exports it.

Series: the axial series to score (ORIGINAL/PRIMARY/AXIAL), a localizer (scout), and on
request a contrast-enhanced axial series and a thin-slice axial series. All carry the same
patient and study identifiers. Pixel data are stored as unsigned HU + 1024 with
RescaleIntercept -1024, as most scanners do, so readers must apply the rescale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..volume import Volume
from .fastio import SeriesTemplate, hu_to_stored, write_files

ROOT_UID = "1.2.826.0.1.3680043.10.1437."  # prefix for phantom UIDs; deterministic per seed


@dataclass(frozen=True)
class PatientInfo:
    """Identifiers written into every file of the study (synthetic, never real people)."""

    patient_id: str = "PHANTOM0001"
    patient_name: str = "PHANTOM^ALPHA"
    birth_date: str = "19550101"
    sex: str = "M"
    study_date: str = "20260105"
    study_time: str = "101500"
    accession: str = "ACC0001"
    institution: str = "Synthetic General Hospital"
    manufacturer: str = "GE MEDICAL SYSTEMS"
    model: str = "Phantom CT 64"

    @property
    def age(self) -> str:
        years = int(self.study_date[:4]) - int(self.birth_date[:4])
        return f"{years:03d}Y"


def uid(*parts: object) -> str:
    """A deterministic DICOM UID from the given parts (same inputs -> same UID)."""
    return generate_uid(prefix=ROOT_UID, entropy_srcs=[str(p) for p in parts])


def _base_dataset(path: Path, sop_uid: str, patient: PatientInfo, study_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = ROOT_UID + "1"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = patient.study_date
    ds.StudyTime = patient.study_time
    ds.StudyID = "1"
    ds.AccessionNumber = patient.accession
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT THORAX WITHOUT CONTRAST"
    ds.Modality = "CT"
    ds.Manufacturer = patient.manufacturer
    ds.ManufacturerModelName = patient.model
    ds.InstitutionName = patient.institution
    ds.KVP = "120"
    ds.PatientPosition = "FFS"
    ds.FrameOfReferenceUID = uid(study_uid, "frame")
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return ds


def _pixels(hu: np.ndarray) -> bytes:
    return np.clip(hu.astype(np.int32) + 1024, 0, 65535).astype("<u2").tobytes()


def write_axial_series(
    vol: Volume,
    out_dir: Path,
    patient: PatientInfo,
    study_uid: str,
    series_number: int,
    description: str,
    kernel: str = "STANDARD",
    contrast_agent: str | None = None,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    thickness_mm: float | None = None,
    extra: dict | None = None,
) -> list[Path]:
    """Write ``vol`` (HU, identity direction) as one axial CT series, one file per slice.

    Instance 1 is the most superior slice (head-first order, as scanners number them).
    ``thickness_mm`` is the SliceThickness tag (default: the slice spacing); ``extra`` sets more
    header fields (e.g. KVP, Manufacturer) on every file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, "series", series_number, description)
    nz, ny, nx = vol.shape
    dz, dy, dx = vol.spacing_zyx
    ox, oy, oz = vol.origin_xyz
    # One template dataset; each file splices in its own UID, number, position and pixels (fastio).
    ds = _base_dataset(out_dir / "template", uid(series_uid, "template"), patient, study_uid)
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.ImageType = list(image_type)
    ds.ConvolutionKernel = kernel
    ds.SliceThickness = f"{thickness_mm if thickness_mm is not None else dz:g}"
    ds.SpacingBetweenSlices = f"{dz:g}"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
    ds.Rows, ds.Columns = ny, nx
    if contrast_agent:
        ds.ContrastBolusAgent = contrast_agent
        ds.StudyDescription = "CT THORAX WITH CONTRAST"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    template = SeriesTemplate(ds, ds.file_meta)
    paths, blobs = [], []
    for inst, k in enumerate(range(nz - 1, -1, -1), start=1):
        z = oz + k * dz
        path = out_dir / f"IM{inst:05d}.dcm"
        blobs.append((path, template.file_bytes(uid(series_uid, k), inst, (f"{ox:.4f}", f"{oy:.4f}", f"{z:.4f}"),
                                                f"{z:.4f}", hu_to_stored(vol.array[k]).tobytes())))
        paths.append(path)
        if len(blobs) >= 32:
            write_files(blobs)
            blobs = []
    write_files(blobs)
    return paths


def write_localizer(vol: Volume, out_dir: Path, patient: PatientInfo, study_uid: str, series_number: int = 1) -> Path:
    """A frontal scout: the attenuation sum along y, as one LOCALIZER image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = uid(study_uid, "series", series_number, "localizer")
    # ~ attenuation: HU + 1000 clipped at 0, summed along y (integer sums: exact, as the float32 sum was)
    a = vol.array
    mu = np.empty((a.shape[0], a.shape[2]), np.int32)
    for k0 in range(0, a.shape[0], 32):  # in slabs: no full-size temporary
        sl = a[k0:k0 + 32]
        c = np.maximum(sl, -1000) if a.dtype.kind in "iu" else np.clip(sl, -1000, None)
        mu[k0:k0 + 32] = c.sum(axis=1, dtype=np.int32)
    proj = (mu + 1000 * a.shape[1]).astype(np.float32)[::-1]  # (z, x), superior at the top row
    img = (proj / max(float(proj.max()), 1.0) * 2000 - 1000).astype(np.int16)
    path = out_dir / "IM00001.dcm"
    ds = _base_dataset(path, uid(series_uid, 0), patient, study_uid)
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Topogram 0.6 T20f"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    nz, _, nx = vol.shape
    ox, oy, oz = vol.origin_xyz
    ds.ImagePositionPatient = [f"{ox:.4f}", "0", f"{oz + (nz - 1) * vol.spacing_zyx[0]:.4f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    ds.PixelSpacing = [f"{vol.spacing_zyx[0]:.6g}", f"{vol.spacing_zyx[2]:.6g}"]
    ds.SliceThickness = "0"
    ds.Rows, ds.Columns = img.shape
    ds.PixelData = _pixels(img)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_study(
    config,
    out_dir: str | Path,
    patient: PatientInfo | None = None,
    contrast_series: bool = False,
    thin_series: bool = False,
    phantom=None,
) -> dict:
    """Write the DICOM study of a phantom under ``out_dir/PatientID/StudyDate_Accession``.

    Returns {"study_uid", "study_dir", "series": {name: {"uid", "dir", "files"}}}.
    ``phantom`` may be passed when already generated from ``config``.
    """
    from .anatomy import generate

    patient = patient or PatientInfo()
    ph = phantom or generate(config)
    study_uid = uid(ROOT_UID, patient.patient_id, patient.accession, hashlib.sha1(repr(config).encode()).hexdigest())
    study_dir = Path(out_dir) / patient.patient_id / f"{patient.study_date}_{patient.accession}"
    series: dict[str, dict] = {}

    def add(name: str, number: int, vol: Volume, desc: str, **kw) -> None:
        d = study_dir / f"{number:03d}_{name}"
        files = write_axial_series(vol, d, patient, study_uid, number, desc, **kw)
        series[name] = {"uid": uid(study_uid, "series", number, desc), "dir": str(d), "files": len(files)}

    loc = write_localizer(ph.ct, study_dir / "001_localizer", patient, study_uid, 1)
    series["localizer"] = {"uid": uid(study_uid, "series", 1, "localizer"), "dir": str(loc.parent), "files": 1}
    dz = config.slice_mm
    add("axial", 2, ph.ct, f"Thorax {dz:g}mm STANDARD")
    if thin_series:
        thin_cfg = replace(config, slice_mm=dz / 2, n_slices=config.n_slices * 2 - 1)
        add("thin", 3, generate(thin_cfg).ct, f"Thorax {dz / 2:g}mm LUNG", kernel="LUNG")
    if contrast_series:
        add("contrast", 4, generate(replace(config, contrast=True)).ct, f"Thorax C+ {dz:g}mm", contrast_agent="IOPAMIDOL 370")
    return {"study_uid": study_uid, "study_dir": str(study_dir), "series": series}
