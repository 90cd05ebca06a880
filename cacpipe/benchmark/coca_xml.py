"""Stanford COCA calcium annotations: OsiriX ROI exports (XML property lists) -> voxels on the CT grid.

One file per gated case, ``calcium_xml/<case>.xml``: a plist whose ``Images`` list holds, per
annotated image, ``ImageIndex``, ``NumberOfROIs`` and ``ROIs``; each ROI has a ``Name`` (the
artery), ``Point_px`` (strings ``"(x, y)"``: x = column, y = row, pixel units, pixel centres at
integers) and ``Point_mm`` (strings ``"(x, y, z)"``, patient coordinates, mm), plus OsiriX
statistics (Area, Mean, Max, ...). Layout learnt from public readers of the dataset (the ``amid``
package and others); no code of theirs is used.

Which slice a contour lies on: the ``z`` of its ``Point_mm`` matched to the CT's slice positions
(within half a slice spacing). ``ImageIndex`` is only a fallback, for ROIs without ``Point_mm``,
counted in instance-number order (OsiriX's default order); the conversion report says how
``ImageIndex`` relates to the matched slices, so a different convention shows.

Each contour is filled (pixel centres inside the polygon) on its slice with the calcium class of
its artery (``labels.CALCIUM_ID``; the left main counts as LAD). Where contours of two arteries
overlap, the later one wins and the report counts the voxels.
"""

from __future__ import annotations

import plistlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..labels import CALCIUM_ID
from ..volume import Volume

# ROI name (lower case) -> cacpipe artery. The left main is part of "LAD" in cacpipe's label scheme.
ARTERY_NAMES: dict[str, str] = {
    "right coronary artery": "RCA", "rca": "RCA",
    "left anterior descending artery": "LAD", "lad": "LAD",
    "left coronary artery": "LAD", "left main coronary artery": "LAD", "left main": "LAD", "lm": "LAD",
    "lca": "LAD",
    "left circumflex artery": "LCX", "lcx": "LCX", "circumflex": "LCX",
}
LEFT_MAIN_NAMES = ("left coronary artery", "left main coronary artery", "left main", "lm", "lca")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Roi:
    """One contour as exported."""

    name: str
    image_index: int
    points_px: np.ndarray  # (n, 2) x (column), y (row)
    points_mm: np.ndarray | None  # (n, 3) patient x, y, z; None when absent

    @property
    def artery(self) -> str | None:
        return ARTERY_NAMES.get(self.name.strip().lower())

    @property
    def is_left_main(self) -> bool:
        return self.name.strip().lower() in LEFT_MAIN_NAMES


def _points(values, dims: int, where: str) -> np.ndarray:
    pts = []
    for v in values or []:
        nums = [float(t) for t in _NUM.findall(str(v))]
        if len(nums) != dims:
            raise InputDataError(f"{where}: point {v!r} does not hold {dims} numbers")
        pts.append(nums)
    return np.asarray(pts, dtype=float).reshape(-1, dims)


def read_rois(path: str | Path) -> list[Roi]:
    """Every ROI of a COCA annotation file (InputDataError naming the file on a malformed one)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = plistlib.load(f)
    except (plistlib.InvalidFileException, ValueError, OSError) as exc:
        raise InputDataError(f"{path}: not a readable plist (OsiriX ROI export): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Images"), list):
        raise InputDataError(f"{path}: no 'Images' list at the top of the plist")
    rois = []
    for i, img in enumerate(data["Images"]):
        if not isinstance(img, dict) or "ROIs" not in img:
            raise InputDataError(f"{path}: Images[{i}] has no ROIs list")
        idx = int(img.get("ImageIndex", -1))
        for j, roi in enumerate(img["ROIs"]):
            where = f"{path.name} Images[{i}] ROIs[{j}]"
            px = _points(roi.get("Point_px"), 2, where)
            mm = _points(roi.get("Point_mm"), 3, where) if roi.get("Point_mm") else None
            rois.append(Roi(str(roi.get("Name", "")), idx, px, mm if mm is not None and len(mm) else None))
    return rois


def _fill_polygon(xy: np.ndarray, shape_yx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels whose centres lie inside the polygon (skimage's even-odd rule)."""
    from skimage.draw import polygon

    if len(xy) == 1:  # a one-point ROI marks that pixel
        r, c = int(round(xy[0, 1])), int(round(xy[0, 0]))
        ok = 0 <= r < shape_yx[0] and 0 <= c < shape_yx[1]
        return np.array([r] if ok else [], int), np.array([c] if ok else [], int)
    return polygon(xy[:, 1], xy[:, 0], shape=shape_yx)


def rois_to_labels(rois: list[Roi], ct: Volume, instance_numbers: list[int | None] | None = None,
                   ) -> tuple[np.ndarray, dict]:
    """The six-class label map (calcium classes only, (z, y, x) on ``ct``'s grid) and a conversion report."""
    nz, ny, nx = ct.shape
    z_mm = ct.index_to_physical(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], axis=1))[:, 2]
    dz = float(ct.spacing_zyx[0])
    # ImageIndex fallback: position of each slice in instance-number order (0-based).
    order = list(range(nz))
    if instance_numbers and all(n is not None for n in instance_numbers):
        order = sorted(range(nz), key=lambda k: instance_numbers[k])
    labels = np.zeros(ct.shape, np.uint8)
    rep: dict = {"rois": len(rois), "by_name": dict(Counter(r.name for r in rois)), "unknown_names": [],
                 "slice_by": Counter(), "unplaced": [], "empty": 0, "overlap_voxels": 0, "left_main_rois": 0,
                 "outside_image_points": 0, "image_index_vs_slice": Counter()}
    for r in rois:
        artery = r.artery
        if artery is None:
            rep["unknown_names"].append(r.name)
            continue
        if len(r.points_px) == 0:
            rep["empty"] += 1
            continue
        if r.points_mm is not None:
            zc = float(np.mean(r.points_mm[:, 2]))
            k = int(np.argmin(np.abs(z_mm - zc)))
            if abs(z_mm[k] - zc) > 0.5 * dz + 1e-3:
                rep["unplaced"].append(f"{r.name} at z {zc:.2f} mm (nearest slice {z_mm[k]:.2f} mm)")
                continue
            rep["slice_by"]["Point_mm z"] += 1
            if 0 <= r.image_index < nz:
                rep["image_index_vs_slice"]["instance order" if order[r.image_index] == k else
                                            "reversed instance order" if order[nz - 1 - r.image_index] == k
                                            else "other"] += 1
        elif 0 <= r.image_index < nz:
            k = order[r.image_index]
            rep["slice_by"]["ImageIndex"] += 1
        else:
            rep["unplaced"].append(f"{r.name}: ImageIndex {r.image_index} outside 0..{nz - 1} and no Point_mm")
            continue
        outside = ((r.points_px[:, 0] < -0.5) | (r.points_px[:, 0] > nx - 0.5) | (r.points_px[:, 1] < -0.5)
                   | (r.points_px[:, 1] > ny - 0.5))
        rep["outside_image_points"] += int(outside.sum())
        rr, cc = _fill_polygon(r.points_px, (ny, nx))
        cid = CALCIUM_ID[artery]
        prev = labels[k, rr, cc]
        rep["overlap_voxels"] += int(np.count_nonzero((prev > 0) & (prev != cid)))
        labels[k, rr, cc] = cid
        rep["left_main_rois"] += int(r.is_left_main)
    rep["slice_by"] = dict(rep["slice_by"])
    rep["image_index_vs_slice"] = dict(rep["image_index_vs_slice"])
    if rep["unknown_names"]:
        names = sorted(set(rep["unknown_names"]))
        raise InputDataError(f"unknown artery name(s) {names} in the contours; known: "
                             f"{sorted({k for k in ARTERY_NAMES if ' ' in k})}")
    return labels, rep
