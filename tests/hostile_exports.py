"""A hostile and broken PACS export: one study (or file) per fault, and what a scan must say about each.

Built from one tiny phantom study (64 x 64 pixels, 24 slices; scans use ``min_slices=20``) cloned
under new identifiers and edited per fault, so the whole corpus takes seconds to write. Issue 15
lists the faults; each is a regression case here:

| case | fault | expected |
|---|---|---|
| CONTROL | nothing wrong | done |
| COLLIDE (2 studies) | StudyInstanceUIDs of 70 characters sharing the first 64 | both done, own folders and results |
| DOT (2 studies) | ``X`` and ``X.`` as StudyInstanceUIDs | both done, own folders and results |
| cohort.csv, index.html, manifest.json, CON, NUL.txt | PatientID equal to a run file or a Windows device | done, folder renamed |
| SMITH\\JOHN, A/B, =HYPERLINK(..), @SUM(1) | backslash, slash, spreadsheet formulas in the PatientID | done, key keeps the text, CSV cell neutralised |
| MIXA + MIXB | one StudyInstanceUID under two PatientIDs | both failed, reason names both |
| DUPDIFF | same SOPInstanceUIDs twice, different pixels | failed, reason names both files |
| DUPSAME | same SOPInstanceUIDs twice, identical | done, flag duplicate_instances |
| DEFLATED | a series in the Deflated transfer syntax | done |
| ZIPOK | a study in a zip that also holds a 1 GiB zip bomb member (1 MB) | done; the bomb is a problem |
| (file) deflate_bomb.dcm | deflated DICOM inflating to 1 GiB | problem: compression bomb |
| (file) pipe.dcm | a named pipe | problem: named pipe |
| (file) outside.dcm | symbolic link to a DICOM file outside the export | problem: not followed |
| MUELLER | in a folder whose name is cp1252 ``Müller`` (not UTF-8) | done; a corrupt file there is named with ``\\xfc`` |
| SLOPENAN, SLOPEINF, SLOPENEG, SLOPE0, ICPTNAN | RescaleSlope NaN / inf / -1 / 0, RescaleIntercept NaN | failed: RescaleSlope / RescaleIntercept |
| PX25, PXNAN, PX0, PXNEG | PixelSpacing 25 mm (1.6 m field of view), NaN, 0, -0.5 | failed: PixelSpacing |
| SIGNED | signed pixels declared unsigned (air reads +64536) | failed: HU values implausible |
| OBLIQUE | ImageOrientationPatient not orthonormal | failed: orthonormal |
| (72 more) | issue 27's items and more: tests/hostile_probes.py lists them | see there |

``pytest tests/test_hostile_exports.py -k tally -s`` prints the corpus' size and how many probes are
clean, weak (accepted, not ideal: ``HostileExport.weak`` says why) and failing.
"""

from __future__ import annotations

import copy
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from export_faults import MIN_SLICES, tiny_config
from hostile_probes import add_probes
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cacpipe.phantom import PatientInfo, generate, write_study
from cacpipe.phantom.dicom_study import ROOT_UID, uid

__all__ = ["MIN_SLICES", "HostileExport", "build_hostile_export"]

BOMB_BYTES = 1 << 30
LONG_PREFIX = "1.2.826.0.1.3680043.10.1437.77777777777777777777777777777777777777"  # 64 characters


@dataclass
class HostileExport:
    root: Path  # the export folder
    outside: Path  # a folder next to the export (the symlink target lives here)
    expected: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (pid, uid) -> (status, part)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (source part, reason part)
    control: tuple[str, str] = ("", "")
    flags: dict[tuple[str, str], str] = field(default_factory=dict)  # (pid, uid) -> a flag code it must carry
    not_flags: dict[tuple[str, str], str] = field(default_factory=dict)  # (pid, uid) -> a flag code it must not
    folder_links: list[str] = field(default_factory=list)  # links to folders (relative to root): counted
    weak: dict = field(default_factory=dict)  # probe -> why its accepted outcome is not ideal

    @property
    def n_probes(self) -> int:
        """Studies, unreadable files and folder links whose outcome the scan is checked against."""
        return len(self.expected) + len(self.problems) + len(self.folder_links)


class _Template:
    """The axial series of one tiny phantom, cloned under new identifiers."""

    def __init__(self, scratch: Path):
        cfg = tiny_config(seed=3)
        info = write_study(cfg, scratch, PatientInfo(patient_id="TEMPLATE"), phantom=generate(cfg))
        self.files = [pydicom.dcmread(f) for f in sorted(Path(info["series"]["axial"]["dir"]).iterdir())]

    def clone(self, folder: Path, pid: str, study_uid: str, series_tag: str = "", edit=None,
              sop_tag: str | None = None, transfer_syntax=None) -> list[Path]:
        """Write the series as patient ``pid``, study ``study_uid`` into ``folder``; ``edit(ds, k)``
        changes file k. SOP Instance UIDs derive from ``sop_tag`` (default: the study and series)."""
        folder.mkdir(parents=True, exist_ok=True)
        series_uid = uid(ROOT_UID, "hostile-series", pid, study_uid, series_tag)
        paths = []
        for k, src in enumerate(self.files):
            ds = copy.deepcopy(src)
            ds.PatientID, ds.PatientName = pid, "HOSTILE^TEST"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = uid(ROOT_UID, "hostile-sop", sop_tag or (pid + study_uid + series_tag), k)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if transfer_syntax is not None:
                ds.file_meta.TransferSyntaxUID = transfer_syntax
            if edit is not None:
                edit(ds, k)
            p = folder / f"IM{k:05d}.dcm"
            ds.save_as(p, enforce_file_format=True)
            paths.append(p)
        return paths


def _study_uid(tag: str) -> str:
    return uid(ROOT_UID, "hostile-study", tag)


def _zeros_deflate(n_mib: int, prefix: bytes = b"") -> bytes:
    """A raw deflate stream of ``prefix`` + ``n_mib`` MiB of zeros, built in milliseconds: after a
    full flush the compressor restarts, so every MiB of zeros compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH) if prefix else b""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + piece * n_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def _zeros_crc(n_mib: int, prefix: bytes = b"") -> int:
    crc = zlib.crc32(prefix)
    block = bytes(1 << 20)
    for _ in range(n_mib):
        crc = zlib.crc32(block, crc)
    return crc


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip file from (name, data, crc, uncompressed size, method) members; ``data`` is stored
    (method 0) or raw deflate (method 8). Written by hand so that a bomb needs no gigabyte in memory."""
    local, central, offset = [], [], 0
    for name, data, crc, size, method in members:
        n = name.encode()
        hdr = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(n), 0) + n
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                                   len(n), 0, 0, 0, 0, 0, offset) + n)
        local.append(hdr + data)
        offset += len(hdr) + len(data)
    cd = b"".join(central)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), offset, 0)
    path.write_bytes(b"".join(local) + cd + end)


def _deflate_bomb(path: Path, template: pydicom.Dataset) -> None:
    """A Part 10 file in the Deflated transfer syntax whose dataset inflates to over 1 GiB."""
    ds = copy.deepcopy(template)
    del ds.PixelData
    ds.PatientID = "DEFLBOMB"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, BOMB_BYTES)
    meta = copy.deepcopy(template.file_meta)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    path.write_bytes(out.getvalue() + _zeros_deflate(BOMB_BYTES >> 20, buf.getvalue() + pixel_header))


def build_hostile_export(root: Path) -> HostileExport:
    """Write the hostile export under ``root/export`` (the symlink target under ``root/outside``)."""
    export, outside, scratch = root / "export", root / "outside", root / "_scratch"
    export.mkdir(parents=True)
    outside.mkdir()
    exp = HostileExport(export, outside)
    t = _Template(scratch)

    def study(pid: str, tag: str, status: str = "done", reason: str = "", folder: Path | None = None,
              uid_: str | None = None, expect: bool = True, **kw) -> str:
        study_uid = uid_ or _study_uid(tag)
        t.clone(folder or export / "studies" / tag, pid, study_uid, **kw)
        if expect:  # the PatientID as read (DICOM text values lose surrounding spaces)
            exp.expected[(pid.strip(), study_uid)] = (status, reason)
        return study_uid

    exp.control = ("CONTROL", study("CONTROL", "control"))

    # 1. Result folders that used to collide.
    study("COLLIDE", "long-a", uid_=LONG_PREFIX + ".111111")
    study("COLLIDE", "long-b", uid_=LONG_PREFIX + ".222222")
    study("DOT", "dot-a", uid_="1.2.840.99.7")
    study("DOT", "dot-b", uid_="1.2.840.99.7.")
    # 2. PatientIDs equal to the run's own files or to Windows devices; 12: backslash, slash; 11: formulas.
    for i, pid in enumerate(("cohort.csv", "index.html", "manifest.json", "CON", "NUL.txt", "SMITH\\JOHN", "A/B",
                             '=HYPERLINK("http://example.invalid","x")', "@SUM(1)",
                             "cacpipe.log", "dry_run.json", "corrections", "superseded")):
        study(pid, f"name-{i}")

    # 3. One StudyInstanceUID under two PatientIDs.
    mixed = _study_uid("mixed")
    for pid in ("MIXA", "MIXB"):
        study(pid, f"mixed-{pid}", "failed", "used by 2 PatientIDs", uid_=mixed, series_tag=pid)

    # 4. The same SOP instances exported twice: with different pixels (refused), identical (read once).
    for pid, change in (("DUPDIFF", True), ("DUPSAME", False)):
        suid = study(pid, f"dup-{pid}", "failed" if change else "done", "found twice with different content"
                     if change else "")

        def edit(ds, k, change=change):
            if change:
                a = ds.pixel_array.copy()
                a[:4, :4] = 3000
                ds.PixelData = a.astype("<u2").tobytes()

        t.clone(export / "studies" / f"dup-{pid}-copy", pid, suid, edit=edit, sop_tag=pid + suid)

    # Deflated transfer syntax: a legitimate series; and a deflate bomb (5).
    study("DEFLATED", "deflated", transfer_syntax=DeflatedExplicitVRLittleEndian)
    _deflate_bomb(export / "deflate_bomb.dcm", t.files[0])
    exp.problems.append(("deflate_bomb.dcm", "compression bomb"))

    # 5. A zip with a good study and a 1 GiB member of zeros in 1 MB.
    zdir = scratch / "zipok"
    zuid = _study_uid("zipok")
    members = []
    for p in t.clone(zdir, "ZIPOK", zuid):
        data = p.read_bytes()
        members.append((f"ZIPOK/{p.name}", data, zlib.crc32(data), len(data), 0))
    members.append(("ZIPOK/bomb", _zeros_deflate(BOMB_BYTES >> 20), _zeros_crc(BOMB_BYTES >> 20), BOMB_BYTES, 8))
    write_zip(export / "with_bomb.zip", members)
    exp.expected[("ZIPOK", zuid)] = ("done", "")
    exp.problems.append(("with_bomb.zip!ZIPOK/bomb", "zip bomb"))

    # 6. A named pipe: opening it would block forever.
    os.mkfifo(export / "pipe.dcm")
    exp.problems.append(("pipe.dcm", "named pipe"))

    # 12. A file symlink out of the export, to a DICOM file of a study that must not appear.
    target = t.clone(outside / "secret", "OUTSIDE", _study_uid("outside"))[0]
    os.symlink(target, export / "outside.dcm")
    exp.problems.append(("outside.dcm", "outside the export"))

    # 7. A folder name in cp1252 (not UTF-8), with a good study and a corrupt file.
    latin = Path(os.fsdecode(os.fsencode(str(export)) + b"/M\xfcller"))
    study("MUELLER", "mueller", folder=latin / "series")
    (latin / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    exp.problems.append(("M\\xfcller", "corrupt"))

    # 8. Rescale values that cannot give HU.
    for pid, key, value, part in (("SLOPENAN", "RescaleSlope", "nan", "RescaleSlope"),
                                  ("SLOPEINF", "RescaleSlope", "inf", "RescaleSlope"),
                                  ("SLOPENEG", "RescaleSlope", "-1", "RescaleSlope"),
                                  ("SLOPE0", "RescaleSlope", "0", "RescaleSlope"),
                                  ("ICPTNAN", "RescaleIntercept", "nan", "RescaleIntercept")):
        study(pid, pid, "failed", part, edit=lambda ds, k, key=key, value=value: setattr(ds, key, value))

    # 9. Pixel spacings that cannot be a CT.
    for pid, value in (("PX25", "25"), ("PXNAN", "nan"), ("PX0", "0"), ("PXNEG", "-0.5")):
        study(pid, pid, "failed", "PixelSpacing", edit=lambda ds, k, value=value: setattr(ds, "PixelSpacing",
                                                                                            [value, value]))

    # 12. Signed pixel data declared unsigned; a non-orthogonal orientation.
    def signed(ds, k):
        hu = ds.pixel_array.astype(np.int32) - 1024
        ds.PixelData = hu.astype("<i2").tobytes()
        ds.RescaleIntercept = "0"  # PixelRepresentation stays 0: -1000 HU reads as 64536

    study("SIGNED", "signed", "failed", "HU values implausible", edit=signed)
    study("OBLIQUE", "oblique", "failed", "orthonormal",
          edit=lambda ds, k: setattr(ds, "ImageOrientationPatient", ["1", "0", "0", "0.3", "0.954", "0"]))

    add_probes(exp, t, study, export, outside, scratch, _study_uid)  # issue 27 and more (tests/hostile_probes.py)
    shutil.rmtree(scratch)
    return exp
