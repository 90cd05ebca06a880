"""Read the source CT series back from a DICOM folder (for SEG/SR/SC references and the CLI).

A deliberately small reader: the full ingest (mixed exports, uneven spacing, gantry tilt) lives in
``cacpipe.ingest``; here the folder must hold one axial series (localizers are ignored) or the user
names one with ``series_uid``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from ..errors import InputDataError
from ..volume import Volume


def _is_image(ds: pydicom.Dataset) -> bool:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "PixelData" in ds and "ImageOrientationPatient" in ds and "LOCALIZER" not in image_type


def load_series(folder: str | Path, series_uid: str | None = None) -> tuple[Volume, list[pydicom.Dataset]]:
    """(CT volume in HU, its slices sorted like the volume) from the DICOM files under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"DICOM folder not found: {folder}")
    series: dict[str, list[pydicom.Dataset]] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(p))
        except Exception:  # noqa: BLE001 - not a DICOM file: skip it
            continue
        if _is_image(ds):
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if not series:
        raise InputDataError(f"no axial DICOM image series under {folder}")
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({len(v)} files, {v[0].get('SeriesDescription', '')!s})"
                                for uid, v in series.items())
            raise InputDataError(f"{folder} holds {len(series)} image series; choose one with --series-uid: {listing}")
        series_uid = next(iter(series))
    if series_uid not in series:
        raise InputDataError(f"series {series_uid} not found under {folder}; found {sorted(series)}")
    slices = series[series_uid]
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    slices.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
    dz = float(np.median(np.diff(pos @ normal))) if len(slices) > 1 else float(slices[0].get("SliceThickness", 1.0))
    if dz <= 0:
        raise InputDataError(f"series {series_uid} has duplicate slice positions; cannot build a volume")
    arr = np.stack([d.pixel_array.astype(np.float32) * float(d.get("RescaleSlope", 1))
                    + float(d.get("RescaleIntercept", 0)) for d in slices]).round().astype(np.int16)
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    direction = tuple(np.column_stack([row, col, normal]).reshape(-1).tolist())
    vol = Volume(arr, (dz, dy, dx), tuple(pos[0].tolist()), direction, meta={"series_uid": series_uid})
    return vol, slices
