"""Ingestion: discovery, selection rules and volume assembly on phantom DICOM with known voxels."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from export_faults import tiny_config

from cacpipe.config import AssemblySettings, SelectionSettings
from cacpipe.errors import InputDataError
from cacpipe.ingest import (
    FileHeader,
    Series,
    Study,
    discover,
    group_studies,
    load_series,
    select_series,
)
from cacpipe.ingest.discover import unsafe_member_name
from cacpipe.phantom import generate, write_study


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny phantom and its DICOM study (localizer, axial, thin lung-kernel series)."""
    cfg = tiny_config()
    ph = generate(cfg)
    info = write_study(cfg, tmp_path_factory.mktemp("tiny"), phantom=ph, thin_series=True)
    return ph, info


def _axial(tmp_path: Path, tiny, edit=None) -> Series:
    """The axial series, copied to tmp_path and edited per file by ``edit(ds, k)`` (k = file index)."""
    _, info = tiny
    out = tmp_path / "axial"
    out.mkdir(parents=True)
    for k, f in enumerate(sorted(Path(info["series"]["axial"]["dir"]).iterdir())):
        ds = pydicom.dcmread(f)
        if edit is None or edit(ds, k) is not False:
            ds.save_as(out / f.name)
    studies, _ = group_studies(discover(out, tmp_path / "work").headers)
    return studies[0].series[0]


def test_assembly_matches_phantom_voxels_and_geometry(tiny, tmp_path):
    ph, info = tiny
    studies, problems = group_studies(discover(Path(info["study_dir"]), tmp_path).headers)
    assert not problems and len(studies) == 1 and len(studies[0].series) == 3
    sel = select_series(studies[0], SelectionSettings(min_slices=20))
    assert sel.selected.series_description.endswith("STANDARD")  # soft kernel preferred over LUNG
    loaded = load_series(sel.selected)
    vol = loaded.volume
    assert np.array_equal(vol.array, ph.ct.array) and vol.array.dtype == np.int16
    assert vol.same_grid(ph.ct)
    assert loaded.identity.study_uid == info["study_uid"] and loaded.flags == []
    # One source header per slice, in volume order, without pixel data (SEG/SR reference them).
    assert len(loaded.sources) == vol.shape[0] and all("PixelData" not in ds for ds in loaded.sources)
    z = [float(ds.ImagePositionPatient[2]) for ds in loaded.sources]
    assert z == sorted(z) and loaded.instance_numbers[0] is not None


def test_rescale_per_slice_and_file_order_do_not_matter(tiny, tmp_path):
    ph, _ = tiny

    def edit(ds, k):
        # Stored = (HU + 1000) / 0.5 on even slices, the original coding on odd ones; scrambled numbers.
        if k % 2 == 0:
            hu = ds.pixel_array.astype(np.int32) - 1024
            ds.PixelData = np.clip((hu + 1000) * 2, 0, 65535).astype("<u2").tobytes()
            ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1000"
        ds.InstanceNumber = (k * 7) % 24 + 1

    loaded = load_series(_axial(tmp_path, tiny, edit))
    vol = loaded.volume
    expected = np.maximum(ph.ct.array, -1000)  # the even slices cannot code below -1000 HU
    assert vol.array.dtype == np.float32
    odd = np.arange(vol.shape[0]) % 2 == (ph.ct.shape[0] - 1) % 2  # file k=0 is the top slice
    assert np.array_equal(vol.array[~odd], ph.ct.array[~odd].astype(np.float32))
    assert np.array_equal(vol.array[odd], expected[odd].astype(np.float32))


def test_missing_slice_refused_or_interpolated(tiny, tmp_path):
    ph, _ = tiny
    series = _axial(tmp_path, tiny, lambda ds, k: k != 10)  # file 10 = array slice 13
    with pytest.raises(InputDataError, match="1 slice\\(s\\) missing: gap of 4.00 mm"):
        load_series(series)
    loaded = load_series(series, AssemblySettings(max_missing_slices=1))
    vol = loaded.volume
    assert vol.shape == ph.ct.shape and vol.same_grid(ph.ct)
    a = ph.ct.array.astype(np.float32)
    assert np.allclose(vol.array[13], np.maximum((a[12] + a[14]) / 2, -1024))
    assert np.array_equal(vol.array[12], a[12])
    assert [f.code for f in loaded.flags] == ["missing_slices_interpolated"]


def test_uneven_spacing_resampled_and_flagged(tiny, tmp_path):
    def edit(ds, k):
        z = float(ds.ImagePositionPatient[2])
        if k == 5:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], f"{z + 0.6:.4f}"]

    loaded = load_series(_axial(tmp_path, tiny, edit))
    vol = loaded.volume
    assert "uneven_slice_spacing" in [f.code for f in loaded.flags]
    assert vol.spacing_zyx[0] == pytest.approx(2.0) and vol.shape[0] == 24


def test_gantry_tilt_flagged_with_spacing_along_normal(tiny, tmp_path):
    t = np.radians(12.0)

    def edit(ds, k):
        ds.ImageOrientationPatient = ["1", "0", "0", "0", f"{np.cos(t):.6f}", f"{-np.sin(t):.6f}"]
        ds.GantryDetectorTilt = "12"

    loaded = load_series(_axial(tmp_path, tiny, edit))
    vol = loaded.volume
    flags = {f.code: f.to_dict() for f in loaded.flags}
    assert "gantry_tilt" in flags and "12.0 deg" in flags["gantry_tilt"]["message"]
    assert vol.spacing_zyx[0] == pytest.approx(2.0 * np.cos(t), rel=1e-4)
    d = np.asarray(vol.direction).reshape(3, 3)
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-5)  # orthonormal direction from the IOP


def test_mixed_sizes_and_conflicting_duplicates_refused(tiny, tmp_path):
    def small(ds, k):
        if k == 3:
            ds.Rows = ds.Columns = 32
            ds.PixelData = np.zeros((32, 32), "<u2").tobytes()

    with pytest.raises(InputDataError, match="mixed image sizes.*32x32 in 1 file"):
        load_series(_axial(tmp_path / "a", tiny, small))

    third = sorted(Path(tiny[1]["series"]["axial"]["dir"]).iterdir())[3]
    pos3 = list(pydicom.dcmread(third, stop_before_pixels=True).ImagePositionPatient)

    def dup(ds, k):
        if k == 4:  # same position as file 3, other pixels
            ds.ImagePositionPatient = pos3

    with pytest.raises(InputDataError, match="two different images at the same slice position"):
        load_series(_axial(tmp_path / "b", tiny, dup))


def _hdr(**kw) -> FileHeader:
    base = dict(path="x", source="x", fingerprint="f", modality="CT", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                image_type=("ORIGINAL", "PRIMARY", "AXIAL"), orientation=(1, 0, 0, 0, 1, 0), series_description="s",
                study_uid="st", patient_id="p")
    return FileHeader(**{**base, **kw})


def _series(uid: str, n: int, dz: float = 2.0, **kw) -> Series:
    return Series(uid, [_hdr(series_uid=uid, position=(0.0, 0.0, i * dz), sop_instance_uid=f"{uid}.{i}", **kw)
                        for i in range(n)])


@pytest.mark.parametrize("kw, n, dz, reason", [
    ({"modality": "MR"}, 120, 2.0, "modality MR is not CT"),
    ({"image_type": ("DERIVED", "SECONDARY", "AXIAL")}, 120, 2.0, "not ORIGINAL/PRIMARY"),
    ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, 1, 2.0, "localizer"),
    ({"series_description": "Scout 0.6"}, 120, 2.0, "localizer"),
    ({"orientation": (0, 1, 0, 0, 0, -1)}, 120, 2.0, "not axial"),
    ({"contrast_agent": "IOMEPROL"}, 120, 2.0, "contrast agent"),
    ({}, 99, 2.0, "too few slices (99 < 100)"),
    ({}, 120, 5.0, "slice spacing 5.00 mm outside 0.5-3 mm"),
    ({"number_of_frames": 200}, 1, 2.0, "multi-frame"),
    ({"has_pixel_data": False, "modality": "SR"}, 1, 2.0, "not an image object"),
])
def test_selection_rule_reasons(kw, n, dz, reason):
    sel = select_series(Study("p", "n", "st", "d", "a", [_series("bad", n, dz, **kw)]))
    assert sel.selected is None and reason in sel.skipped[0][1] and reason in sel.reason


def test_selection_preference_and_configurable_thresholds():
    sharp = _series("sharp", 150, 2.0, kernel="B70f")
    soft_thin = _series("soft1", 300, 1.0, kernel="B30f")
    soft_3mm = _series("soft3", 100, 3.0, kernel="B30f")
    study = Study("p", "n", "st", "d", "a", [sharp, soft_thin, soft_3mm])
    sel = select_series(study)
    assert sel.selected is soft_3mm  # soft kernel, spacing closest to 3 mm
    assert all("another series preferred" in r for _, r in sel.skipped)
    assert select_series(study, SelectionSettings(preferred_spacing_mm=1.0)).selected is soft_thin
    assert select_series(study, SelectionSettings(preferred_kernel="B70")).selected is sharp
    assert select_series(study, SelectionSettings(min_slices=200)).selected is soft_thin
    assert select_series(study, SelectionSettings(max_spacing_mm=2.5)).selected is soft_thin


@pytest.mark.parametrize("name, bad", [
    ("a/b/IM1", False), ("IM1", False), ("../x.dcm", True), ("a/../../x", True), ("/etc/passwd", True),
    ("C:\\x.dcm", True), ("..\\..\\x", True), ("a\\..\\..\\x", True),
])
def test_zip_member_names(name, bad):
    assert (unsafe_member_name(name) is not None) == bad


def test_zip_members_never_leave_the_workdir(tiny, tmp_path):
    _, info = tiny
    files = sorted(Path(info["series"]["axial"]["dir"]).iterdir())
    z = tmp_path / "export" / "a.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        for f in files:
            zf.write(f, f"S/{f.stem}")
        zf.writestr("/abs.dcm", files[0].read_bytes())
        zf.writestr("notes.txt", "hello")
        inner = tmp_path / "inner.zip"
        with zipfile.ZipFile(inner, "w") as zi:
            zi.write(files[0], "../../inner-evil.dcm")
        zf.write(inner, "nested/inner.zip")
    work = tmp_path / "work"
    d = discover(tmp_path / "export", work)
    assert len(d.headers) == len(files) and {h.path for h in d.headers} == {str(z)}  # read in place
    assert not work.exists() or {p.name[:7] for p in work.iterdir()} == {"nested-"}  # nothing but the inner zip
    loaded = load_series(group_studies(d.headers)[0][0].series[0])
    vol = loaded.volume
    assert np.array_equal(vol.array, tiny[0].ct.array)
    assert {p.reason.split(" (")[0] for p in d.problems} == {"zip-slip member name rejected"}
    assert any("nested/inner.zip!../../inner-evil.dcm" in p.source for p in d.problems)
    assert d.ignored == [f"{z}!notes.txt"]
    assert not (tmp_path / "abs.dcm").exists() and not list(tmp_path.parent.glob("*evil*"))


def test_dicomdir_with_missing_referenced_file(tiny, tmp_path):
    from pydicom.fileset import FileSet

    _, info = tiny
    fs = FileSet()
    for f in sorted(Path(info["series"]["axial"]["dir"]).iterdir()):
        fs.add(f)
    fs.write(tmp_path / "media")
    victim = sorted(p for p in (tmp_path / "media").rglob("IM*"))[0]
    victim.unlink()
    d = discover(tmp_path / "media", tmp_path / "work")
    assert len(d.headers) == 23 and len(d.dicomdirs) == 1
    assert any("DICOMDIR references 1 file(s) missing" in p.reason for p in d.problems)


def test_preamble_less_files_and_repeated_instances(tiny, tmp_path):
    """Old exports: raw datasets without the 128-byte preamble; the same instance exported twice."""
    ph, info = tiny
    raw = tmp_path / "export" / "raw"
    raw.mkdir(parents=True)
    files = sorted(Path(info["series"]["axial"]["dir"]).iterdir())
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.preamble = None
        del ds.file_meta
        pydicom.dcmwrite(raw / f"{i:04d}", ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    (tmp_path / "export" / "copy").mkdir()
    (tmp_path / "export" / "copy" / "again.dcm").write_bytes(files[2].read_bytes())
    assert (raw / "0000").read_bytes()[128:132] != b"DICM"
    d = discover(tmp_path / "export", tmp_path / "work")
    assert len(d.headers) == 25 and not d.problems
    series = group_studies(d.headers)[0][0].series[0]
    assert series.n_files == 24 and series.duplicates_dropped == 1
    loaded = load_series(series)
    vol = loaded.volume
    assert np.array_equal(vol.array, ph.ct.array) and vol.same_grid(ph.ct)
    assert [f.code for f in loaded.flags] == ["duplicate_instances"]


def test_sources_read_once_from_zip_and_read_ct_is_the_scan_door(tiny, tmp_path):
    from cacpipe.ingest import read_ct

    ph, info = tiny
    files = sorted(Path(info["series"]["axial"]["dir"]).iterdir())
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        for f in files:
            zf.write(f, f"x/{f.name}")
    series = group_studies(discover(tmp_path / "s.zip", tmp_path / "w").headers)[0][0].series[0]
    loaded = load_series(series)
    assert len(loaded.sources) == 24 and {d.SOPInstanceUID for d in loaded.sources} == {h.sop_instance_uid for h in series.files}
    assert loaded.source_files[0].startswith(f"{tmp_path / 's.zip'}!x/")
    # read_ct: the same voxels from the zip, the folder, and a NIfTI copy.
    from cacpipe.config import Settings

    rules = Settings().merged({"selection": {"min_slices": 20}})
    for src in (tmp_path / "s.zip", Path(info["series"]["axial"]["dir"])):
        got = read_ct(src, rules)
        assert np.array_equal(got.volume.array, ph.ct.array) and got.identity.study_uid == info["study_uid"]
    nii = ph.ct.write(tmp_path / "P1_0000.nii.gz")
    img = read_ct(nii, patient_id=None)
    assert np.array_equal(img.volume.array, ph.ct.array) and img.identity.patient_id == "P1"
    assert img.sources is None and img.identity.input_kind == "image"
    with pytest.raises(InputDataError, match="no scorable CT series"):
        read_ct(src)  # 24 slices < the default 100
