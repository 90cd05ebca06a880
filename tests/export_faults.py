"""A small PACS export with the ingestion faults cacpipe must survive, and what to expect of each.

Tiny phantoms (64 x 64 pixels, 24 slices) keep it fast; scans of it use ``min_slices=20``.

| patient | what is in it | expected |
|---|---|---|
| P01GOOD | axial + localizer + contrast series + SR object, plain folders | done (axial); others skipped with reasons |
| P02ZIP | axial in a zip, extension-less names, a zip-slip member, a corrupt (bad CRC) member | done |
| P03DIR | axial written as a DICOMDIR file set (extension-less files) | done |
| P04MISS | axial with one slice missing | failed: slice(s) missing |
| P05DUP | axial with one slice exported twice (new SOP UID, same position and pixels) | done, flag duplicate_slices |
| P06TRUNC | axial with truncated pixel data in one file | failed: truncated pixel data |
| P07TINY | a 5-slice series + localizer | skipped: too few slices |
| P08CON | contrast series + localizer only | skipped: contrast agent |
| P09FALL | preferred axial series truncated, a thin lung-kernel series intact | done (thin), flag series_fallback |

Plus export-level junk: a corrupt .dcm file, a text file, random bytes without extension.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from cacpipe.phantom import PatientInfo, PhantomConfig, generate, write_study
from cacpipe.phantom.dicom_study import ROOT_UID, uid

MIN_SLICES = 20
N_SLICES = 24
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def tiny_config(**kw) -> PhantomConfig:
    return PhantomConfig.preset("small", shape_yx=(64, 64), pixel_mm=400.0 / 64, n_slices=N_SLICES,
                                slice_mm=2.0, **kw)


@dataclass
class FaultyExport:
    root: Path
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # patient_id -> (status, reason part)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (source part, reason part)
    study_uids: dict[str, str] = field(default_factory=dict)
    phantoms: dict = field(default_factory=dict)  # patient_id -> Phantom (ground truth of the axial series)


def _patient(pid: str, n: int) -> PatientInfo:
    return PatientInfo(patient_id=pid, patient_name=f"PHANTOM^{pid}", accession=f"ACC{n:04d}",
                       study_date=f"202601{n:02d}", manufacturer="SIEMENS" if n % 2 else "GE MEDICAL SYSTEMS")


def _study(tmp: Path, pid: str, n: int, exp: FaultyExport, **kw) -> dict:
    cfg = tiny_config(seed=n, heart_shift_mm=(float(n), 0.0, 0.0), plaques=kw.pop("plaques", tiny_config().plaques))
    ph = generate(cfg)
    info = write_study(cfg, tmp, _patient(pid, n), phantom=ph, **kw)
    exp.study_uids[pid] = info["study_uid"]
    exp.phantoms[pid] = ph
    return info


def _axial_files(info: dict, name: str = "axial") -> list[Path]:
    return sorted(Path(info["series"][name]["dir"]).iterdir())


def _write_sr(study_dir: Path, any_file: Path) -> None:
    """A Basic Text SR document in the same study: a non-image, non-CT object."""
    src = pydicom.dcmread(any_file, stop_before_pixels=True)
    ds = pydicom.Dataset()
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber"):
        setattr(ds, kw, getattr(src, kw))
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = uid(src.StudyInstanceUID, "sr")
    ds.SeriesInstanceUID = uid(src.StudyInstanceUID, "sr-series")
    ds.SeriesNumber = 99
    ds.Modality = "SR"
    ds.SeriesDescription = "Dose report"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = ROOT_UID + "1"
    d = study_dir / "099_sr"
    d.mkdir(parents=True)
    ds.save_as(d / "SR00001.dcm", enforce_file_format=True)


def build_faulty_export(root: Path) -> FaultyExport:
    """Write the faulty export under ``root/export`` (scratch files under ``root/_scratch``)."""
    export = root / "export"
    scratch = root / "_scratch"
    export.mkdir(parents=True)
    exp = FaultyExport(export)

    # P01: a good study in plain folders, with series that must be skipped.
    info = _study(export, "P01GOOD", 1, exp, contrast_series=True)
    _write_sr(Path(info["study_dir"]), _axial_files(info)[0])
    exp.expected["P01GOOD"] = ("done", "")

    # P02: a good study inside a zip, with a zip-slip member and a corrupt member.
    info = _study(scratch / "p02", "P02ZIP", 2, exp)
    zpath = export / "P02ZIP.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, f in enumerate(_axial_files(info)):
            zf.write(f, f"P02/SER1/I{i:04d}")  # extension-less, as many PACS write them
        zf.write(_axial_files(info)[0], "../../evil.dcm")
        zf.writestr("P02/SER1/broken", b"CACPIPE-CORRUPT-MEMBER" * 50)
    data = bytearray(zpath.read_bytes())
    k = data.index(b"CACPIPE-CORRUPT-MEMBER")
    data[k + 3] ^= 0xFF  # damages the member's data, so its CRC check fails
    zpath.write_bytes(bytes(data))
    exp.expected["P02ZIP"] = ("done", "")
    exp.problems += [("evil.dcm", "zip-slip"), ("P02/SER1/broken", "unreadable zip member")]

    # P03: a DICOMDIR file set (PT000000/ST000000/SE000000/IM000000...).
    from pydicom.fileset import FileSet

    info = _study(scratch / "p03", "P03DIR", 3, exp)
    fs = FileSet()
    for f in _axial_files(info):
        fs.add(f)
    fs.write(export / "P03DIR_media")
    exp.expected["P03DIR"] = ("done", "")

    # P04: one slice missing.
    info = _study(export, "P04MISS", 4, exp)
    _axial_files(info)[N_SLICES // 2].unlink()
    exp.expected["P04MISS"] = ("failed", "slice(s) missing")

    # P05: a slice exported twice under a new SOP Instance UID.
    info = _study(export, "P05DUP", 5, exp)
    f = _axial_files(info)[7]
    ds = pydicom.dcmread(f)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid(ds.SOPInstanceUID, "copy")
    ds.save_as(f.with_name("IM_COPY.dcm"), enforce_file_format=True)
    exp.expected["P05DUP"] = ("done", "")

    # P06: truncated pixel data (a copy interrupted half way).
    info = _study(export, "P06TRUNC", 6, exp)
    f = _axial_files(info)[3]
    f.write_bytes(f.read_bytes()[:-1500])
    exp.expected["P06TRUNC"] = ("failed", "truncated pixel data")

    # P07: only a tiny series (5 slices) and a localizer.
    info = _study(export, "P07TINY", 7, exp)
    for f in _axial_files(info)[5:]:
        f.unlink()
    exp.expected["P07TINY"] = ("skipped", "too few slices")

    # P08: contrast series and localizer only.
    info = _study(export, "P08CON", 8, exp, contrast_series=True)
    shutil.rmtree(info["series"]["axial"]["dir"])
    exp.expected["P08CON"] = ("skipped", "contrast agent")

    # P09: the preferred series is unusable; the thin lung-kernel series is scored instead.
    info = _study(export, "P09FALL", 10, exp, thin_series=True)
    f = _axial_files(info)[3]
    f.write_bytes(f.read_bytes()[:-1500])
    cfg = exp.phantoms["P09FALL"].config
    exp.phantoms["P09FALL"] = generate(replace(cfg, slice_mm=cfg.slice_mm / 2, n_slices=cfg.n_slices * 2 - 1))
    exp.expected["P09FALL"] = ("done", "")

    # Export-level junk.
    good = _axial_files(_study(scratch / "junk", "PJUNK", 9, exp))[0].read_bytes()
    exp.study_uids.pop("PJUNK")
    exp.phantoms.pop("PJUNK")
    (export / "corrupt.dcm").write_bytes(good[:132] + bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8)))
    exp.problems.append(("corrupt.dcm", "corrupt"))
    (export / "README.txt").write_text("Exported by a PACS. Not DICOM.\n")
    (export / "THUMBS").write_bytes(bytes(range(256)) * 4)
    shutil.rmtree(scratch)
    return exp


__all__ = ["MIN_SLICES", "FaultyExport", "build_faulty_export", "review_analyse", "threshold_analyse", "tiny_config"]


# --- an analysis stand-in for runner tests -----------------------------------------------------
# The runner, ingestion and manifest are under test, not the analysis: this one thresholds HU at
# 130 (bone and valve calcium included), splits the calcium by image thirds into RCA/LAD/LCX,
# writes the label map and returns a result with the schema's fields. Environment hooks let
# tests make it slow (kill-and-resume), fail, or log its calls (across processes).

def threshold_analyse(series, out_dir, settings):
    import os
    import time

    from cacpipe.labels import CALCIUM_ID
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyResult
    from cacpipe.units import CALCIUM_THRESHOLD_HU

    volume, info = series.volume, series.identity
    if os.environ.get("CACPIPE_TEST_CALLS"):
        with open(os.environ["CACPIPE_TEST_CALLS"], "a") as f:
            f.write(info.patient_id + "\n")
    if info.patient_id == os.environ.get("CACPIPE_TEST_CRASH"):
        os._exit(3)  # a worker process dying (as when the OOM killer strikes)
    if info.patient_id == os.environ.get("CACPIPE_TEST_FAIL"):
        raise RuntimeError("synthetic analysis failure\nsecond line")
    hu = np.asarray(volume.array, dtype=np.float32)
    calcium = hu >= CALCIUM_THRESHOLD_HU
    labels = np.zeros(hu.shape, np.uint8)
    nx = hu.shape[2]
    thirds = {"RCA": slice(0, nx // 3), "LAD": slice(nx // 3, 2 * nx // 3), "LCX": slice(2 * nx // 3, nx)}
    for a, sl in thirds.items():
        labels[:, :, sl][calcium[:, :, sl]] = CALCIUM_ID[a]
    lab = volume.with_array(labels)
    lab.write(Path(out_dir) / "labels.nii.gz")
    if info.patient_id == os.environ.get("CACPIPE_TEST_SLOW"):
        Path(os.environ["CACPIPE_TEST_MARKER"]).write_text(str(out_dir))
        time.sleep(120)  # killed here by the test
    q = quantify(volume, lab)
    result = StudyResult(
        study=info, flags=list(series.flags), arteries=q.arteries, lesions=q.lesions,
        pipeline={"version": "test", "heart_method": "none", "model": {"name": "threshold-130", "is_demo": True},
                  "device": "cpu", "settings": settings.to_record()},
        outputs={"labels": "labels.nii.gz"})
    result.set_grid(volume)
    return finalise(result)


def review_analyse(series, out_dir, settings):
    """``threshold_analyse`` plus the real review outputs (page, overlays, DICOM SEG/SR/SC from the
    series' own headers): what ``--send``, ``review apply`` and rescans act on."""
    from cacpipe.review import build_review
    from cacpipe.volume import Volume

    result = threshold_analyse(series, out_dir, settings)
    labels = Volume.read(Path(out_dir) / "labels.nii.gz")
    written = build_review(out_dir, series.volume, labels, result, series.sources,
                           settings.review.replace(max_slices=1, dicom=series.sources is not None))
    result.outputs.update({k: v for k, v in written.items() if k != "dicom_skipped"})
    return result
