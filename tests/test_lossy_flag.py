"""Lossy-compressed CT is scored but flagged ``lossy_compression`` (issue 27, item 9): from the tag
LossyImageCompression 01 (images once compressed, stored uncompressed again) or from a lossy transfer
syntax (JPEG-LS near-lossless here, encoded by pydicom's own encoder). The flag reaches result.json,
cohort.csv, the review page's flag list and the SR."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES, tiny_config
from pydicom.uid import JPEGLSNearLossless

from cacpipe import flags as F
from cacpipe.cli import cli
from cacpipe.ingest.lossy import lossy_flag
from cacpipe.phantom import PatientInfo, generate, write_study


def _study(export: Path, pid: str, seed: int, edit=None) -> None:
    cfg = tiny_config(seed=seed)
    info = write_study(cfg, export / pid, PatientInfo(patient_id=pid), phantom=generate(cfg))
    if edit is None:
        return
    for f in sorted(Path(info["series"]["axial"]["dir"]).iterdir()):
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f, enforce_file_format=True)


def _texts(ds) -> list[str]:
    """Every TextValue of an SR content tree."""
    out = []
    for item in getattr(ds, "ContentSequence", []):
        out += [str(item.TextValue)] if "TextValue" in item else []
        out += _texts(item)
    return out


def _tagged(ds):  # compressed once, stored uncompressed again: only the tag tells
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "8.5"
    ds.LossyImageCompressionMethod = "ISO_15444_1"


def _jpeg_ls(ds):
    ds.compress(JPEGLSNearLossless, jls_error=4)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("lossy")
    export, out = root / "export", root / "out"
    _study(export, "PLAIN", 51)
    _study(export, "TAGGED", 52, _tagged)
    _study(export, "JPEGLS", 53, _jpeg_ls)
    r = CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:review_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    entries = {e["patient_id"]: e for e in json.loads((out / "manifest.json").read_text())["studies"].values()}
    return out, entries


@pytest.mark.parametrize("pid, part", [("TAGGED", "LossyImageCompression 01, ratio 8.5:1, method ISO_15444_1"),
                                       ("JPEGLS", "transfer syntax JPEG-LS near-lossless")])
def test_lossy_series_scored_and_flagged_everywhere(scanned, pid, part):
    out, entries = scanned
    e = entries[pid]
    assert e["status"] == "done"
    d = (out / e["result"]).parent
    res = json.loads((d / "result.json").read_text())
    (flag,) = [f for f in res["flags"] if f["code"] == F.LOSSY_COMPRESSION]
    assert flag["severity"] == "warning" and part in flag["message"] and "24 of 24 images" in flag["message"]
    assert res["total"]["agatston"] is not None  # scored, not refused
    rows = {r["patient_id"]: r for r in csv.DictReader((out / "cohort.csv").open(encoding="utf-8"))}
    assert F.LOSSY_COMPRESSION in rows[pid]["flags"].split(";")
    page = (d / "review.html").read_text(encoding="utf-8")
    assert f"{F.LOSSY_COMPRESSION}</b>" not in page and f"</b> {F.LOSSY_COMPRESSION}:" in page  # the flag list
    sr = pydicom.dcmread(d / res["outputs"]["sr"])
    assert any(F.LOSSY_COMPRESSION in t for t in _texts(sr))
    for sc in res["outputs"]["sc"]:  # images derived from lossy ones say so (PS3.3 C.7.6.1.1.5)
        assert pydicom.dcmread(d / sc, stop_before_pixels=True).LossyImageCompression == "01"


def test_lossless_series_not_flagged(scanned):
    out, entries = scanned
    d = (out / entries["PLAIN"]["result"]).parent
    res = json.loads((d / "result.json").read_text())
    assert F.LOSSY_COMPRESSION not in {f["code"] for f in res["flags"]}
    assert "LossyImageCompression" not in pydicom.dcmread(d / res["outputs"]["sc"][0], stop_before_pixels=True)


def test_rules_on_headers():
    def ds(ts: str, tag: str | None = None) -> pydicom.Dataset:
        d = pydicom.Dataset()
        d.file_meta = pydicom.dataset.FileMetaDataset()
        d.file_meta.TransferSyntaxUID = ts
        if tag is not None:
            d.LossyImageCompression = tag
        return d

    assert lossy_flag([ds("1.2.840.10008.1.2.1")]) is None  # explicit VR little endian, no tag
    assert lossy_flag([ds("1.2.840.10008.1.2.4.70")]) is None  # JPEG lossless
    assert lossy_flag([ds("1.2.840.10008.1.2.4.90")]) is None  # JPEG 2000 lossless only
    assert lossy_flag([ds("1.2.840.10008.1.2.4.91", "00")]) is None  # JPEG 2000 declared lossless
    assert "JPEG 2000 (LossyImageCompression not set)" in lossy_flag([ds("1.2.840.10008.1.2.4.91")]).message
    assert "JPEG Baseline" in lossy_flag([ds("1.2.840.10008.1.2.4.50")]).message
    assert "1 of 2 images" in lossy_flag([ds("1.2.840.10008.1.2.1", "01"), ds("1.2.840.10008.1.2.1")]).message
