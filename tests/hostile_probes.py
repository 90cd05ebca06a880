"""More probes for the hostile export (tests/hostile_exports.py): issue 27's items and the faults a real
PACS export or a hostile one can hold beyond issue 15's.

Each probe is a study (expected status and a part of its reason, and optionally a flag it must carry),
an unreadable-file problem (source part, reason part), or a folder link the scan must count. A probe
whose outcome is accepted but not ideal is listed in ``HostileExport.weak`` with why.

| probes | fault | expected |
|---|---|---|
| LOSSY01, LOSSYJLS | LossyImageCompression 01; JPEG-LS near-lossless pixels | done, flag lossy_compression |
| JLSLOSSLESS, RLE | JPEG-LS lossless, RLE lossless pixels | done, no lossy flag |
| IMPLICIT | Implicit VR Little Endian files | done |
| RAWDS | preamble-less datasets (no DICM), as old exports hold | done |
| TRAILING | bytes after the pixel data of every file | done |
| NOTHICK, BADTHICK, NOINST, DUPINST, REVINST | SliceThickness missing / 'abc'; InstanceNumber missing, all 1, reversed | done |
| BADDATE, LONGNAME, BADCHARSET | StudyDate '20261345'; a 10,000-character PatientName; SpecificCharacterSet 'ISO_IR 999' | done |
| INTERCEPTS | RescaleIntercept alternating -1024 / -1000 (pixels adjusted) | done, same HU |
| NORESCALE | no RescaleSlope/Intercept, signed pixels already in HU | done |
| TILT10 | GantryDetectorTilt 10 deg | done, flag gantry_tilt |
| TILT45 | GantryDetectorTilt 45 deg | failed: gantry tilt |
| DEEP | 40 nested folders | done |
| SPLIT | half the files in a zip, half in a folder | done |
| (names) | PatientIDs '.tmp', '.cacpipe-scan.lock', 'aux', 'COM1.dcm', 'LPT9', '..', '.', '', ' ', 200 chars, 'Müller^Jörg', '../../etc', 'A:B*C?<D>|' (a bar), 'X.', 'ABC'/'abc' | done, own safe folder |
| (uids) | StudyInstanceUIDs '../../evil', 'a/b', 200 characters | done, own folder |
| MISSIPP, NOPX, SIZEMIX, ORIENTMIX, PXMIX, IPPNAN, NOIOP | an ImagePositionPatient missing; PixelSpacing missing; one image 32x32; one orientation rotated; one pixel spacing 7 mm; a NaN position; no orientation | failed or skipped with the reason |
| SAMEPOS | two images with different pixels at one position | failed: same slice position |
| SAGITTAL, SPACING5, FEWSLICES, LOCALONLY, CONTRAST, DERIVED, MODALITYMR, MULTIFRAME | selection rules | skipped with the reason |
| TWOPIDS | one series whose files name two PatientIDs | failed: used by 2 PatientIDs |
| (files) | empty .dcm, a dangling link, a truncated zip, an encrypted zip member, a header declaring a 1 GiB element, a DICOMDIR naming missing files | problems with reasons |
| (links) | a folder link to a study outside, a link loop to the export's top | counted, not followed |
"""

from __future__ import annotations

import copy
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ImplicitVRLittleEndian, JPEGLSLossless, JPEGLSNearLossless, RLELossless

__all__ = ["add_probes"]


def _compress(ts, **kw):
    def edit(ds, k):
        ds.compress(ts, **kw)
    return edit


def _raw(ds, tag: int, vr: str, value: bytes) -> None:
    """Put ``value`` into the dataset as it is (pydicom would refuse to convert it)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _rewrite(paths: list[Path], fn) -> None:
    """Apply ``fn(path, bytes) -> bytes`` to written files."""
    for p in paths:
        p.write_bytes(fn(p, p.read_bytes()))


def _raw_dataset(path: Path, data: bytes) -> bytes:
    """The file as a preamble-less dataset (no 128-byte preamble, no DICM, no file meta), implicit VR."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    pydicom.filewriter.write_dataset(buf, ds)
    return buf.getvalue()


def add_probes(exp, t, study, export: Path, outside: Path, scratch: Path, study_uid) -> None:
    """Write the probes into ``export`` (``study``, ``t``: hostile_exports' helpers) and record them in ``exp``."""

    def flagged(pid: str, tag: str, code: str, **kw) -> None:
        exp.flags[(pid, study(pid, tag, **kw))] = code

    # Issue 27: lossy compression, seen from the tag or the transfer syntax; lossless syntaxes are not flagged.
    def tagged(ds, k):
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = "10"
    flagged("LOSSY01", "lossy01", "lossy_compression", edit=tagged)
    flagged("LOSSYJLS", "lossyjls", "lossy_compression", edit=_compress(JPEGLSNearLossless, jls_error=3))
    exp.not_flags[("JLSLOSSLESS", study("JLSLOSSLESS", "jlslossless", edit=_compress(JPEGLSLossless)))] = \
        "lossy_compression"
    exp.not_flags[("RLE", study("RLE", "rle", edit=_compress(RLELossless)))] = "lossy_compression"

    # Encodings and file layouts.
    study("IMPLICIT", "implicit", transfer_syntax=ImplicitVRLittleEndian)
    suid = study_uid("rawds")
    _rewrite(t.clone(export / "studies" / "rawds", "RAWDS", suid), _raw_dataset)
    exp.expected[("RAWDS", suid)] = ("done", "")
    suid = study_uid("trailing")
    _rewrite(t.clone(export / "studies" / "trailing", "TRAILING", suid), lambda p, b: b + b"\x00GARBAGE" * 64)
    exp.expected[("TRAILING", suid)] = ("done", "")
    exp.weak[("TRAILING", suid)] = "bytes after the pixel data are ignored without a note"

    # Header fields that are odd but not needed for the score.
    study("NOTHICK", "nothick", edit=lambda ds, k: delattr(ds, "SliceThickness"))
    study("BADTHICK", "badthick", edit=lambda ds, k: _raw(ds, 0x00180050, "DS", b"abc "))
    study("NOINST", "noinst", edit=lambda ds, k: delattr(ds, "InstanceNumber"))
    exp.weak[("DUPINST", study("DUPINST", "dupinst", edit=lambda ds, k: setattr(ds, "InstanceNumber", 1)))] = \
        "every image is InstanceNumber 1: flags and pages name 'image 1' throughout (the z position beside it tells)"
    study("REVINST", "revinst", edit=lambda ds, k: setattr(ds, "InstanceNumber", 1000 - k))
    exp.weak[("BADDATE", study("BADDATE", "baddate", edit=lambda ds, k: setattr(ds, "StudyDate", "20261345")))] = \
        "an impossible StudyDate is kept as written (pages show 2026-13-45), not flagged"
    study("LONGNAME", "longname", edit=lambda ds, k: setattr(ds, "PatientName", "X" * 10000))
    study("BADCHARSET", "badcharset", edit=lambda ds, k: setattr(ds, "SpecificCharacterSet", "ISO_IR 999"))

    def intercepts(ds, k):
        if k % 2:
            a = ds.pixel_array.astype(np.int32) - 24  # the same HU under intercept -1000
            ds.PixelData = np.clip(a, 0, 65535).astype("<u2").tobytes()
            ds.RescaleIntercept = "-1000"
    study("INTERCEPTS", "intercepts", edit=intercepts)

    def no_rescale(ds, k):
        hu = ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ds.PixelData = hu.astype("<i2").tobytes()
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
        del ds.RescaleSlope, ds.RescaleIntercept
    study("NORESCALE", "norescale", edit=no_rescale)
    flagged("TILT10", "tilt10", "gantry_tilt", edit=lambda ds, k: setattr(ds, "GantryDetectorTilt", "10"))
    study("TILT45", "tilt45", "failed", "gantry tilt", edit=lambda ds, k: setattr(ds, "GantryDetectorTilt", "45"))

    # Layouts: deep folders; one series half in a zip, half in a folder.
    study("DEEP", "deep", folder=export.joinpath(*[f"d{i}" for i in range(40)]))
    suid = study_uid("split")
    files = t.clone(scratch / "split", "SPLIT", suid)
    (export / "split").mkdir()
    with zipfile.ZipFile(export / "split.zip", "w") as zf:
        for i, p in enumerate(files):
            if i % 2:
                zf.write(p, f"SPLIT/{p.name}")
            else:
                shutil.copy(p, export / "split" / p.name)
    exp.expected[("SPLIT", suid)] = ("done", "")

    # PatientIDs that are reserved, empty, dots, long, non-ASCII, path-like, Windows-illegal, or differ by case.
    names = (".tmp", ".cacpipe-scan.lock", "aux", "COM1.dcm", "LPT9", "..", ".", "", " ", "P" * 200, "Müller^Jörg",
             "../../etc", "A:B*C?<D>|", "X.", "ABC", "abc")
    for i, pid in enumerate(names):
        edit = (lambda ds, k: setattr(ds, "SpecificCharacterSet", "ISO_IR 192")) if not pid.isascii() else None
        study(pid, f"pid-{i}", edit=edit)
    for i, uid_ in enumerate(("../../evil", "a/b", "1.2." + "9" * 196)):
        study("UIDS", f"uid-{i}", uid_=uid_)

    # Geometry that cannot be assembled: refused with the reason.
    def only(k0, fn):
        def edit(ds, k):
            if k == k0:
                fn(ds)
        return edit
    study("MISSIPP", "missipp", "failed", "ImagePositionPatient", edit=only(5, lambda ds: delattr(ds, "ImagePositionPatient")))
    study("NOPX", "nopx", "failed", "PixelSpacing", edit=lambda ds, k: delattr(ds, "PixelSpacing"))

    def small(ds):
        a = ds.pixel_array[::2, ::2].copy()
        ds.Rows, ds.Columns = a.shape
        ds.PixelData = a.astype("<u2").tobytes()
    study("SIZEMIX", "sizemix", "failed", "mixed image sizes", edit=only(7, small))
    study("ORIENTMIX", "orientmix", "failed", "orientation",
          edit=only(7, lambda ds: setattr(ds, "ImageOrientationPatient", ["0.966", "0.259", "0", "-0.259", "0.966", "0"])))
    study("PXMIX", "pxmix", "failed", "spacing", edit=only(7, lambda ds: setattr(ds, "PixelSpacing", ["7", "7"])))
    study("IPPNAN", "ippnan", "failed", "ImagePositionPatient",
          edit=only(3, lambda ds: setattr(ds, "ImagePositionPatient", ["0", "0", "nan"])))
    study("NOIOP", "noiop", "skipped", "ImageOrientationPatient", edit=lambda ds, k: delattr(ds, "ImageOrientationPatient"))

    def samepos(ds, k):
        if k == 9:
            prev = t.files[8]
            ds.ImagePositionPatient = copy.deepcopy(prev.ImagePositionPatient)
    study("SAMEPOS", "samepos", "failed", "same slice position", edit=samepos)

    # Selection rules.
    study("SAGITTAL", "sagittal", "skipped", "not axial",
          edit=lambda ds, k: setattr(ds, "ImageOrientationPatient", ["0", "1", "0", "0", "0", "-1"]))

    def spacing5(ds, k):
        x, y, _ = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:g}", f"{y:g}", f"{-100 + 5 * k:g}"]
    study("SPACING5", "spacing5", "skipped", "slice spacing", edit=spacing5)
    suid = study_uid("fewslices")
    for p in t.clone(export / "studies" / "fewslices", "FEWSLICES", suid)[10:]:
        p.unlink()
    exp.expected[("FEWSLICES", suid)] = ("skipped", "too few slices")
    study("LOCALONLY", "localonly", "skipped", "localizer",
          edit=lambda ds, k: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    study("CONTRAST", "contrast", "skipped", "contrast agent",
          edit=lambda ds, k: setattr(ds, "ContrastBolusAgent", "IOPAMIDOL"))
    study("DERIVED", "derived", "skipped", "not ORIGINAL/PRIMARY",
          edit=lambda ds, k: setattr(ds, "ImageType", ["DERIVED", "SECONDARY", "AXIAL"]))
    study("MODALITYMR", "modalitymr", "skipped", "modality MR", edit=lambda ds, k: setattr(ds, "Modality", "MR"))
    study("MULTIFRAME", "multiframe", "skipped", "multi-frame",
          edit=lambda ds, k: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2.1"))  # Enhanced CT

    # One series whose files name two patients (an export tool mixed them): refused, naming both.
    suid = study_uid("twopids")
    t.clone(export / "studies" / "twopids", "TWOPIDA", suid,
            edit=lambda ds, k: setattr(ds, "PatientID", "TWOPIDA" if k % 2 else "TWOPIDB"))
    for pid in ("TWOPIDA", "TWOPIDB"):
        exp.expected[(pid, suid)] = ("failed", "used by 2 PatientIDs")

    # Files that cannot be read: each a problem with its reason.
    (export / "empty.dcm").write_bytes(b"")
    exp.problems.append(("empty.dcm", "not a DICOM file"))
    os.symlink(export / "no-such-file.dcm", export / "dangling.dcm")
    exp.problems.append(("dangling.dcm", "cannot read file"))
    good = t.clone(scratch / "zips", "ZIPTRUNC", study_uid("ziptrunc"))
    with zipfile.ZipFile(scratch / "full.zip", "w") as zf:
        for p in good:
            zf.write(p, p.name)
    data = (scratch / "full.zip").read_bytes()
    (export / "truncated.zip").write_bytes(data[: len(data) // 2])
    exp.problems.append(("truncated.zip", "unreadable zip"))
    enc = bytearray((scratch / "full.zip").read_bytes())
    k = 0
    while (k := enc.find(b"PK\x03\x04", k)) >= 0:  # set the 'encrypted' bit in every local and central header
        enc[k + 6] |= 1
        k += 4
    k = 0
    while (k := enc.find(b"PK\x01\x02", k)) >= 0:
        enc[k + 8] |= 1
        k += 4
    (export / "encrypted.zip").write_bytes(bytes(enc))
    exp.problems.append(("encrypted.zip!", "encrypted"))
    head = b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHI", 0x0008, 0x0016, b"UN", 0, 1 << 30)
    (export / "huge_element.dcm").write_bytes(head + b"\x00" * 64)
    exp.problems.append(("huge_element.dcm", "oversized"))
    from pydicom.fileset import FileSet

    fs = FileSet()
    for p in t.clone(scratch / "dicomdir", "DIRMISS", study_uid("dirmiss")):
        fs.add(p)
    fs.write(export / "dirmiss")
    victim = sorted(p for p in (export / "dirmiss").rglob("*") if p.is_file() and p.name != "DICOMDIR")[3]
    victim.unlink()
    exp.problems.append(("DICOMDIR", "missing from the export"))
    exp.expected[("DIRMISS", study_uid("dirmiss"))] = ("failed", "slice(s) missing")

    # Folder links: counted and named, not followed.
    study("LINKED", "linked", folder=outside / "linked" / "series", expect=False)
    os.symlink(outside / "linked", export / "linked_study")
    os.symlink(export, export / "studies" / "loop")
    exp.folder_links += ["linked_study", "studies/loop"]
