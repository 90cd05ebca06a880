"""Assemble one DICOM series into a HU ``Volume`` and say what was odd about it.

- slices are sorted by their position along the slice normal (not by InstanceNumber);
- HU = stored value x RescaleSlope + RescaleIntercept, per slice; values below -1024 HU
  (padding outside the reconstruction circle) are set to -1024;
- spacing along z comes from the slice positions, never from SliceThickness;
- ``direction`` columns are the row, column and normal cosines of ImageOrientationPatient,
  ``origin_xyz`` is the position of the first (most inferior along the normal) slice;
- duplicate positions with identical pixels are dropped (flag ``duplicate_slices``); with
  different pixels the series is refused (it mixes acquisitions);
- missing slices (a gap of >= 1.5 spacings) refuse the series unless ``max_missing_slices``
  allows them, in which case the stack is resampled onto a regular grid by linear interpolation
  (flag ``missing_slices_interpolated``); so is uneven spacing beyond ``uneven_tolerance``;
- gantry tilt (slice stack not along the normal) is flagged ``gantry_tilt``: voxels stay as
  acquired, so per-slice scores are valid, but patient-space positions are approximate.

- copies of one SOP instance (same SOPInstanceUID found twice) are compared: identical copies
  are read once (flag ``duplicate_instances``), different ones refuse the series, naming both files;
- lossy-compressed images (LossyImageCompression 01, a lossy transfer syntax) are scored and
  flagged ``lossy_compression`` (``lossy``);
- the plausibility rules (``plausibility``: field of view, matrix, rescale, orientation, HU
  range) refuse a series before it is scored.

Unusable series raise ``InputDataError`` with a one-line reason naming the file or positions.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter

import numpy as np
import pydicom

from ..config import AssemblySettings
from ..errors import InputDataError
from ..flags import (
    CONTRAST_SUSPECTED,
    DUPLICATE_INSTANCES,
    DUPLICATE_SLICES,
    GANTRY_TILT,
    MISSING_SLICES,
    UIDS_MISSING,
    UNEVEN_SPACING,
    Flag,
)
from ..volume import Volume
from . import plausibility as rules
from .discover import DEFLATED_TS, FileHeader, deflated_problem, size_problem
from .loaded import LoadedSeries
from .lossy import lossy_flag
from .series import Series

HU_FLOOR = -1024.0


def _read(header: FileHeader, zips: dict[str, zipfile.ZipFile]) -> pydicom.Dataset:
    """Full read of one file, or of one zip member (zip files are opened once per series).

    Sizes are checked again before anything is read whole (the export may have changed since
    discovery): a zip member above ``discover.MAX_FILE_BYTES``, or deflated data inflating beyond
    it, is refused.
    """
    try:
        if header.zip_member:
            zf = zips.get(header.path)
            if zf is None:
                zf = zips[header.path] = zipfile.ZipFile(header.path)
            info = zf.getinfo(header.zip_member)
            why = size_problem("zip member", info.file_size)
            if why:
                raise InputDataError(f"{header.source}: {why}")
            fp = io.BytesIO(zf.read(info))
        else:
            fp = open(header.path, "rb")  # noqa: SIM115 - closed below
        with fp:
            if header.transfer_syntax == DEFLATED_TS:
                why = deflated_problem(fp)
                if why:
                    raise InputDataError(f"{header.source}: {why}")
                fp.seek(0)
            return pydicom.dcmread(fp, force=True)  # force: preamble-less files found by discovery
    except InputDataError:
        raise
    except Exception as exc:  # any read failure of one file makes the series unusable
        raise InputDataError(f"cannot read {header.source}: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}") from exc


def _compare_copies(series: Series, datasets: list[tuple[pydicom.Dataset, str]],
                    zips: dict[str, zipfile.ZipFile]) -> None:
    """Refuse the series when two copies of one SOP instance differ (pixels or position)."""
    kept = {f.source: ds for f, (ds, _) in zip(series.files, datasets, strict=True)}
    for first, copy in series.copies:
        a, b = kept[first.source], _read(copy, zips)
        same = (a.get("PixelData") == b.get("PixelData")
                and str(a.get("ImagePositionPatient", "")) == str(b.get("ImagePositionPatient", ""))
                and str(a.get("RescaleSlope", "")) == str(b.get("RescaleSlope", ""))
                and str(a.get("RescaleIntercept", "")) == str(b.get("RescaleIntercept", "")))
        if not same:
            raise InputDataError(
                f"SOP Instance UID found twice with different content: {first.source} and {copy.source} "
                f"(two versions of one image; remove one), UID {first.sop_instance_uid}")


def _rescale(ds: pydicom.Dataset, source: str) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept (1 and 0 when absent; a present 0 slope is refused, not read as 1)."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope = 1.0 if slope in (None, "") else slope
    intercept = 0.0 if intercept in (None, "") else intercept
    why = rules.rescale_problem(slope, intercept)
    if why:
        raise InputDataError(f"implausible header in {source}: {why}")
    return float(slope), float(intercept)


def _pixels(ds: pydicom.Dataset, source: str) -> np.ndarray:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputDataError(f"missing or invalid Rows / Columns in {source}") from exc
    if "PixelData" not in ds:
        raise InputDataError(f"no pixel data in {source}")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None:  # raw dataset without file meta: pydicom needs to be told how it is encoded
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts = (pydicom.uid.ImplicitVRLittleEndian if ds.is_implicit_VR
                                               else pydicom.uid.ExplicitVRLittleEndian)
    if not ts.is_compressed:
        try:
            bits, frames = int(ds.BitsAllocated), int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputDataError(f"missing or invalid BitsAllocated / NumberOfFrames in {source}") from exc
        expected = rows * cols * bits // 8 * frames
        got = len(ds.PixelData)
        if got < expected:
            raise InputDataError(f"truncated pixel data in {source}: {got} of {expected} bytes")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise InputDataError(f"cannot decode pixel data of {source}: {' '.join(str(exc).split())[:160]}") from exc
    if arr.shape != (rows, cols):
        raise InputDataError(f"unexpected pixel array shape {arr.shape} in {source} (Rows x Columns {rows}x{cols})")
    return arr


def _most_common(values) -> str:
    return ", ".join(f"{v} in {n} file(s)" for v, n in Counter(values).most_common(3))


def load_series(series: Series, options: AssemblySettings | None = None) -> LoadedSeries:
    """Read, check and assemble ``series`` into a HU volume (z, y, x) with its source headers.

    Every file is read once here (pixels decoded, then dropped from the kept header datasets);
    the headers serve DICOM SEG/SR/SC without a second read.
    """
    opt = options or AssemblySettings()
    flags: list[Flag] = []
    if not series.files:
        raise InputDataError(f"series {series.series_uid} has no files")
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        datasets = [(_read(f, zips), f.source) for f in series.files]
        _compare_copies(series, datasets, zips)
    finally:
        for zf in zips.values():
            zf.close()

    # Consistent geometry across slices.
    sizes = [(int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) for ds, _ in datasets]
    if len(set(sizes)) > 1:
        raise InputDataError(f"mixed image sizes in series {series.series_description or series.series_uid}: "
                             f"{_most_common(f'{r}x{c}' for r, c in sizes)}")
    try:
        iops = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds, _ in datasets])
        ipps = np.array([[float(v) for v in ds.ImagePositionPatient] for ds, _ in datasets])
        pxs = np.array([[float(v) for v in ds.PixelSpacing] for ds, _ in datasets])
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputDataError(f"series {series.series_uid}: missing or invalid ImageOrientationPatient / "
                             f"ImagePositionPatient / PixelSpacing ({exc})") from exc
    for k, (_, source) in enumerate(datasets):
        why = (rules.matrix_problem(*sizes[k]) or rules.orientation_problem(iops[k])
               or rules.pixel_spacing_problem(pxs[k], *sizes[k])
               or (None if np.all(np.isfinite(ipps[k])) else "ImagePositionPatient holds non-finite values"))
        if why:
            raise InputDataError(f"implausible header in {source}: {why}")
    if np.abs(iops - iops[0]).max() > 1e-3:
        raise InputDataError(f"series {series.series_uid}: slices have different orientations")
    if np.abs(pxs - pxs[0]).max() > 1e-3:
        raise InputDataError(f"series {series.series_uid}: mixed pixel spacings "
                             f"{_most_common(f'{a:g}x{b:g}' for a, b in pxs)}")
    row, col = iops[0, :3], iops[0, 3:]
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)

    # Sort along the normal; find duplicate positions.
    dist = ipps @ normal
    order = np.argsort(dist, kind="stable")
    slices: list[tuple[float, np.ndarray, str, pydicom.Dataset]] = []  # (dist, ipp, source, header)
    # The rescaled slices go straight into one preallocated array (slice k of the volume = planes[k]):
    # no list of slices stacked afterwards, which held the float32 volume twice (1.2 GB at 512 x 512 x 550).
    planes: np.ndarray | None = None
    integral = True
    duplicates = 0
    counts = np.zeros(4, dtype=np.int64)  # the HU plausibility counts, slice by slice (rules.hu_counts)
    for i in order:
        ds, source = datasets[i]
        raw = _pixels(ds, source)
        slope, intercept = _rescale(ds, source)
        integral &= slope.is_integer() and intercept.is_integer()
        hu = raw.astype(np.float32) * slope + intercept
        if slices and abs(dist[i] - slices[-1][0]) < opt.position_tolerance_mm:
            if np.array_equal(hu, planes[len(slices) - 1]):
                duplicates += 1
                continue
            raise InputDataError(
                f"two different images at the same slice position {dist[i]:.2f} mm ({slices[-1][2]} and {source}): "
                f"the series mixes acquisitions; export them as separate series")
        if "PixelData" in ds:
            del ds.PixelData  # keep the header only: SEG/SR/SC reference it
        if planes is None:
            planes = np.empty((len(order), *hu.shape), dtype=np.float32)
        planes[len(slices)] = hu
        counts += rules.hu_counts(hu)
        slices.append((float(dist[i]), ipps[i], source, ds))
    if series.duplicates_dropped:
        flags.append(Flag(DUPLICATE_INSTANCES, f"{series.duplicates_dropped} file(s) were copies of an instance "
                                                 f"already found (same SOP Instance UID) and were read once", "info"))
    if duplicates:
        flags.append(Flag(DUPLICATE_SLICES, f"{duplicates} duplicate slice(s) at the same position with identical "
                                            f"pixels were dropped", "info"))
    blanked = sorted({f.uids_missing for f in series.files if f.uids_missing})
    if blanked:
        flags.append(Flag(UIDS_MISSING, f"the files have blank UIDs ({'; '.join(blanked)}), as some anonymisers leave "
                                        "them: the series was grouped by folder, frame of reference, orientation and "
                                        "pixel spacing; no DICOM SEG/SR/SC (they would reference UIDs no PACS holds)",
                          "warning"))
    lossy = lossy_flag([ds for ds, _ in datasets])
    if lossy is not None:
        flags.append(lossy)
    agent = str(datasets[0][0].get("ContrastBolusAgent", "") or "").strip()
    if agent:
        flags.append(Flag(CONTRAST_SUSPECTED, f"contrast agent tag set ({agent}): Agatston is not valid on "
                                              f"contrast-enhanced CT", "invalid"))
    if len(slices) < 2:
        raise InputDataError(f"series {series.series_uid} has fewer than 2 distinct slice positions")

    d = np.array([s[0] for s in slices])
    pos = np.array([s[1] for s in slices])
    gaps = np.diff(d)
    spacing = float(np.median(gaps))
    if spacing <= 0:
        raise InputDataError(f"series {series.series_uid}: cannot derive slice spacing from positions")

    # Gantry tilt: the stack runs along pos[-1] - pos[0], which is not the normal when tilted.
    stack = pos[-1] - pos[0]
    tilt = float(np.degrees(np.arccos(np.clip(abs(stack @ normal) / np.linalg.norm(stack), 0, 1))))
    tag_tilt = abs(float(datasets[0][0].get("GantryDetectorTilt", 0) or 0))
    tilt = max(tilt, tag_tilt)
    if tilt > opt.max_gantry_tilt_deg:
        raise InputDataError(f"gantry tilt {tilt:.1f} deg exceeds {opt.max_gantry_tilt_deg:g} deg")
    if tilt > opt.tilt_tolerance_deg:
        flags.append(Flag(GANTRY_TILT, f"gantry tilt {tilt:.1f} deg: slices kept as acquired; per-slice scores are "
                                       f"valid, patient-space positions are approximate", "warning"))

    # Missing slices and uneven spacing.
    steps = np.rint(gaps / spacing).astype(int)
    missing = int(np.sum(np.maximum(steps - 1, 0)[gaps >= 1.5 * spacing]))
    regular = gaps[gaps < 1.5 * spacing]
    uneven = bool(len(regular) and np.max(np.abs(regular - spacing)) / spacing > opt.uneven_tolerance)
    hu = planes[:len(slices)]
    why = rules.hu_problem(hu, counts)
    if why:
        raise InputDataError(f"series {series.series_description or series.series_uid}: {why}")
    if missing:
        k = int(np.argmax(gaps))
        where = f"gap of {gaps[k]:.2f} mm after {slices[k][2]} (spacing {spacing:.2f} mm)"
        if missing > opt.max_missing_slices:
            raise InputDataError(f"{missing} slice(s) missing: {where}; allowed: {opt.max_missing_slices} "
                                 f"(raise --max-missing-slices to interpolate them)")
        flags.append(Flag(MISSING_SLICES, f"{missing} missing slice(s) filled by linear interpolation: {where}",
                          "warning"))
    if uneven:
        flags.append(Flag(UNEVEN_SPACING, f"uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm, median "
                                          f"{spacing:.2f} mm): resampled to a regular grid", "warning"))
    if missing or uneven:
        n = int(round((d[-1] - d[0]) / spacing)) + 1
        target = d[0] + spacing * np.arange(n)
        j = np.clip(np.searchsorted(d, target, side="right") - 1, 0, len(d) - 2)
        w = ((target - d[j]) / (d[j + 1] - d[j])).astype(np.float32)[:, None, None]
        hu = hu[j] * (1 - w) + hu[j + 1] * w
    else:
        spacing = float((d[-1] - d[0]) / (len(d) - 1))  # exact mean when spacing is even

    hu = np.maximum(hu, HU_FLOOR, out=hu)  # in place: the planes are this function's own
    if integral and not (missing or uneven) and hu.min() >= -32768 and hu.max() <= 32767:
        hu = hu.astype(np.int16)
    else:
        hu = hu.astype(np.float32)

    direction = np.stack([row, col, normal], axis=1)  # columns: x, y, z axes in patient space
    volume = Volume(
        array=hu,
        spacing_zyx=(spacing, float(pxs[0, 0]), float(pxs[0, 1])),  # PixelSpacing = (row spacing, column spacing)
        origin_xyz=tuple(float(v) for v in pos[0]),
        direction=tuple(float(v) for v in direction.ravel()),
    )
    on_grid = not (missing or uneven)
    if blanked:
        on_grid = False  # no source headers: SEG/SR/SC would reference UIDs that no PACS holds
    return LoadedSeries(
        volume=volume,
        identity=series.identity(),
        flags=flags,
        # One header per volume slice, in volume order; None when slices were interpolated.
        sources=[s[3] for s in slices] if on_grid else None,
        source_files=[s[2] for s in slices],
        files=len(series.files),
        info={"gantry_tilt_deg": round(tilt, 3)},
    )
