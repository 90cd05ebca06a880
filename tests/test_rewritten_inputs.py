"""A file rewritten in place with the same size and modification time (``rsync -a`` or ``cp -p`` of a
re-export) is seen as changed on rescan: the study is redone, not kept as up to date (issue 27,
item 9). Size and time alone used to decide."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
from click.testing import CliRunner
from export_faults import MIN_SLICES, tiny_config

from cacpipe.cli import cli
from cacpipe.ingest.content_sample import BLOCK_BYTES, HEAD_BYTES, content_sample, sample_offsets
from cacpipe.phantom import PatientInfo, generate, write_study


def _scan(inp: Path, out: Path):
    r = CliRunner().invoke(cli, ["scan", str(inp), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                 "--analyse", "export_faults:threshold_analyse", "--no-progress"])
    assert r.exit_code == 0, r.output
    return r.output


def _only_entry(out: Path) -> dict:
    (e,) = json.loads((out / "manifest.json").read_text())["studies"].values()
    return e


def _rewrite_keeping_size_and_time(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` as ``cp -p`` / ``rsync -a`` leave it: same size, same times."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_dicom_slice_rewritten_in_place_is_redone(tmp_path):
    cfg = tiny_config(seed=41)
    info = write_study(cfg, tmp_path / "export", PatientInfo(patient_id="REWRITE"), phantom=generate(cfg))
    out = tmp_path / "out"
    _scan(tmp_path / "export", out)
    before = json.loads((out / _only_entry(out)["result"]).read_text())
    assert "0 done now, 1 already done" in _scan(tmp_path / "export", out)  # unchanged: not redone

    # The re-export: one image gains a dense spot (a corrected reconstruction), same UIDs, same size.
    f = sorted(Path(info["series"]["axial"]["dir"]).iterdir())[12]
    ds = pydicom.dcmread(f)
    a = ds.pixel_array.copy()
    a[30:34, 30:34] = 1024 + 900
    ds.PixelData = a.astype(a.dtype).tobytes()
    buf = Path(tmp_path / "re.dcm")
    ds.save_as(buf, enforce_file_format=True)
    _rewrite_keeping_size_and_time(f, buf.read_bytes())

    text = _scan(tmp_path / "export", out)
    assert "1 done now, 0 already done" in text, text
    after = json.loads((out / _only_entry(out)["result"]).read_text())
    assert after["total"]["agatston"] > before["total"]["agatston"]


def test_nifti_rewritten_in_place_is_redone(tmp_path):
    import SimpleITK as sitk

    ph = generate(tiny_config(seed=42))
    path = tmp_path / "images" / "NIFTI01.nii"  # uncompressed: an edit keeps the size
    path.parent.mkdir()
    ph.ct.write(path)
    out = tmp_path / "out"
    _scan(path.parent, out)
    before = json.loads((out / _only_entry(out)["result"]).read_text())
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    arr[12, 30:34, 30:34] = 900
    edited = sitk.GetImageFromArray(arr)
    edited.CopyInformation(img)
    tmp = tmp_path / "edited.nii"
    sitk.WriteImage(edited, str(tmp))
    _rewrite_keeping_size_and_time(path, tmp.read_bytes())
    assert "1 done now" in _scan(path.parent, out)
    after = json.loads((out / _only_entry(out)["result"]).read_text())
    assert after["total"]["agatston"] > before["total"]["agatston"]


def test_sample_reads_head_spread_blocks_and_tail(tmp_path):
    size = 512 * 512 * 2 + 1500  # a 512 x 512 CT image with its header
    parts = sample_offsets(size)
    assert parts[0] == (0, HEAD_BYTES) and parts[-1] == (size - BLOCK_BYTES, BLOCK_BYTES)
    assert sum(n for _, n in parts) < size / 4  # cheap: a fraction of the file
    assert sample_offsets(1000) == [(0, 1000)]  # a small file is read whole
    data = bytearray(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    p = tmp_path / "f"
    p.write_bytes(bytes(data))
    with open(p, "rb") as f:
        base = content_sample(f, size)
        assert f.tell() == 0
    for offset in (100, HEAD_BYTES - 1, size - 1, parts[3][0] + 7):  # header, head end, tail, a sample
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        p.write_bytes(bytes(changed))
        with open(p, "rb") as f:
            assert content_sample(f, size) != base, offset
