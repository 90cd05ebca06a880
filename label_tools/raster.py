"""Contours <-> voxel masks on the CT grid.

Conventions (all explicit options, documented in docs/label_tools.md):

- Pixel coordinates: x = column, y = row of an axial slice; Volume arrays are (z, y, x).
- ``pixel_origin="centre"`` (default): pixel (row r, column c) has its centre at (x=c, y=r), so a
  slice covers x in [-0.5, nx-0.5]. ``"corner"``: the centre is at (c+0.5, r+0.5).
- A pixel belongs to a contour when its **centre** lies inside the closed polygon
  (``skimage.draw.polygon``). Contours with 1-2 points mark the pixels on their points/segment.
- Several contours of one class on one slice are united (no holes: MASS contours are filled
  regions). The writer traces region outlines through pixel-edge midpoints (marching squares at
  level 0.5), which keeps every pixel centre >= 0.35 px from the outline, so writing then reading
  a hole-free mask reproduces it exactly.
- ``slice_order="forward"`` (default): .con slice s is array index z = s (0 = first slice of the
  sorted stack: the NIfTI's first slice, or the DICOM series sorted by position along the
  slice normal). ``"reversed"``: z = n_slices - 1 - s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cacpipe.labels import MASS_CLASSES

from .con_format import ConFile, Contour
from .errors import ConFormatError
from .mapping import ContourMapping

SLICE_ORDERS = ("forward", "reversed")
PIXEL_ORIGINS = ("centre", "corner")
# Header keys read as the number of slices (cacpipe writes the first; the CT variant's own key,
# if any, is not documented).
SLICE_COUNT_KEYS = ("Number_of_slices", "Slices", "Image_slices", "Num_slices")
_OUTSIDE_TOL = 1e-3  # px: points this far beyond the slice edge are still accepted
MAX_RASTER_WORK = 2_000_000_000
"""Most point-in-polygon tests (vertices x bounding-box pixels, what ``skimage.draw.polygon`` does)
one file may ask for: about 15 s on one core. A real annotation needs well under 1 % of it; a
hostile one (50 contours of 100 000 points over the whole slice) would need hours."""


@dataclass(frozen=True)
class GridOptions:
    """How .con coordinates map onto the CT grid."""

    slice_order: str = "forward"
    pixel_origin: str = "centre"
    frame: int | None = 0  # the only frame index accepted (None: any); a CT has one frame
    check_header: bool = True  # compare Image_resolution / slice count with the CT

    def __post_init__(self) -> None:
        from cacpipe.errors import ConfigError

        if self.slice_order not in SLICE_ORDERS:
            raise ConfigError(f"slice_order {self.slice_order!r}: choose from {SLICE_ORDERS}")
        if self.pixel_origin not in PIXEL_ORIGINS:
            raise ConfigError(f"pixel_origin {self.pixel_origin!r}: choose from {PIXEL_ORIGINS}")

    @property
    def offset(self) -> float:
        """Subtract from .con coordinates to get array coordinates of pixel centres."""
        return 0.5 if self.pixel_origin == "corner" else 0.0

    def z_of(self, con_slice: int, n_slices: int) -> int:
        return con_slice if self.slice_order == "forward" else n_slices - 1 - con_slice


def _header_get(con: ConFile, keys: tuple[str, ...]) -> tuple[str, str] | None:
    lower = {k.lower(): k for k in con.header}
    for k in keys:
        if k.lower() in lower:
            real = lower[k.lower()]
            return real, con.header[real]
    return None


def check_header(con: ConFile, shape_zyx: tuple[int, int, int]) -> dict:
    """Check Image_resolution (columns x rows) and a slice count, if present, against the CT.

    Returns what was checked; raises ConFormatError on a mismatch.
    """
    nz, ny, nx = shape_zyx
    checked: dict = {}
    hit = _header_get(con, ("Image_resolution",))
    if hit:
        key, val = hit
        m = re.fullmatch(r"\s*(\d+)\s*[xX*,;\s]\s*(\d+)\s*", val)
        if not m:
            raise ConFormatError(f"cannot read {key}={val!r} (expected e.g. 512x512)", con.path,
                                 con.header_lines.get(key))
        cols, rows = int(m.group(1)), int(m.group(2))
        if (cols, rows) != (nx, ny):
            hint = " (rows and columns swapped?)" if (rows, cols) == (nx, ny) else ""
            raise ConFormatError(f"{key}={val} but the CT slices are {nx}x{ny} (columns x rows){hint}: "
                                 "wrong CT for this annotation?", con.path, con.header_lines.get(key))
        checked["image_resolution"] = [cols, rows]
    hit = _header_get(con, SLICE_COUNT_KEYS)
    if hit:
        key, val = hit
        try:
            n = int(val.strip())
        except ValueError:
            raise ConFormatError(f"cannot read {key}={val!r} as a slice count", con.path,
                                 con.header_lines.get(key)) from None
        if n != nz:
            raise ConFormatError(f"{key}={n} but the CT has {nz} slices: wrong CT, or a different series",
                                 con.path, con.header_lines.get(key))
        checked["slices"] = n
    return checked


def polygon_pixels(points_xy: np.ndarray, shape_yx: tuple[int, int], offset: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels whose centres lie inside the polygon (x = column, y = row)."""
    from skimage.draw import line, polygon

    r = points_xy[:, 1] - offset
    c = points_xy[:, 0] - offset
    if len(points_xy) >= 3:
        return polygon(r, c, shape=shape_yx)
    # Degenerate contour (1-2 points): the pixels on the points / the segment between them.
    ri = np.clip(np.rint(r).astype(int), 0, shape_yx[0] - 1)
    ci = np.clip(np.rint(c).astype(int), 0, shape_yx[1] - 1)
    if len(ri) == 1:
        return ri, ci
    return line(ri[0], ci[0], ri[1], ci[1])


def _check_contour(c: Contour, con: ConFile, shape_zyx, mapping: ContourMapping, opts: GridOptions) -> str | None:
    nz, ny, nx = shape_zyx
    block_line = (c.line + 1) if c.line is not None else None
    if opts.frame is not None and c.frame != opts.frame:
        raise ConFormatError(f"frame {c.frame}: a CT annotation has frame {opts.frame} only "
                             "(use frame=None to accept any)", con.path, block_line)
    if c.slice >= nz:
        raise ConFormatError(f"slice index {c.slice} out of range: the CT has {nz} slices (0..{nz - 1})",
                             con.path, block_line)
    try:
        cls = mapping.class_of(c.type)
    except KeyError:
        raise ConFormatError(f"unknown contour type {c.type}: the mapping ({mapping.source}) knows "
                             f"{sorted(mapping.types)}; edit the mapping file or add it to ignore_types",
                             con.path, block_line) from None
    lo = -0.5 + opts.offset - _OUTSIDE_TOL
    bad = ((c.points[:, 0] < lo) | (c.points[:, 0] > nx - 0.5 + opts.offset + _OUTSIDE_TOL)
           | (c.points[:, 1] < lo) | (c.points[:, 1] > ny - 0.5 + opts.offset + _OUTSIDE_TOL))
    if bad.any():
        i = int(np.argmax(bad))
        x, y = c.points[i]
        line = int(c.point_lines[i]) if c.point_lines is not None else block_line
        raise ConFormatError(f"point ({x:g}, {y:g}) lies outside the {nx}x{ny} image "
                             f"(pixel_origin={opts.pixel_origin})", con.path, line)
    return cls


def con_to_masks(con: ConFile, shape_zyx: tuple[int, int, int], mapping: ContourMapping,
                 opts: GridOptions | None = None) -> dict[str, np.ndarray]:
    """Rasterise every contour into one boolean (z, y, x) mask per MASS class (RCA, LAD, LCX, calcium).

    Validates each contour first (frame, slice range, type, points inside the image) and the
    header against the grid when ``opts.check_header``.
    """
    opts = opts or GridOptions()
    shape_zyx = tuple(int(s) for s in shape_zyx)
    if opts.check_header:
        check_header(con, shape_zyx)
    todo = [(c, cls) for c in con.contours if (cls := _check_contour(c, con, shape_zyx, mapping, opts)) is not None]
    _check_work([c for c, _ in todo], con, opts.offset)
    masks = {k: np.zeros(shape_zyx, dtype=bool) for k in MASS_CLASSES}
    for c, cls in todo:
        z = opts.z_of(c.slice, shape_zyx[0])
        rr, cc = polygon_pixels(c.points, shape_zyx[1:], opts.offset)
        masks[cls][z, rr, cc] = True
    return masks


def _check_work(contours: list[Contour], con: ConFile, offset: float) -> None:
    """Refuse a file whose rasterisation would exceed ``MAX_RASTER_WORK`` (points are inside the image)."""
    def cost(c: Contour) -> int:
        if len(c.points) < 3:
            return 0
        lo, hi = np.floor(c.points.min(axis=0) - offset), np.ceil(c.points.max(axis=0) - offset)
        return int(len(c.points) * np.prod(hi - lo + 1))

    costs = [cost(c) for c in contours]
    if sum(costs) > MAX_RASTER_WORK:
        worst = contours[int(np.argmax(costs))]
        raise ConFormatError(f"the contours would need {sum(costs):.2g} point-in-polygon tests to rasterise (limit "
                             f"{MAX_RASTER_WORK:.0e}); the largest, {len(worst.points)} points, starts here: not a "
                             "real annotation?", con.path, (worst.line + 1) if worst.line is not None else None)


def _drop_collinear(pts: np.ndarray) -> np.ndarray:
    """Remove vertices lying on the straight line through their neighbours (closed polygon)."""
    if len(pts) < 4:
        return pts
    prev = np.roll(pts, 1, axis=0)
    nxt = np.roll(pts, -1, axis=0)
    cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
    keep = np.abs(cross) > 1e-9
    return pts[keep] if keep.sum() >= 3 else pts


def mask_to_polygons(mask_yx: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Outlines (x, y pixel-centre coordinates, (N, 2)) of the regions of a 2D mask.

    Holes cannot be written as MASS contours (they would be filled on reading): they are filled
    here, and the number of hole pixels filled is returned alongside the polygons.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    mask = mask_yx.astype(bool)
    if not mask.any():
        return [], 0
    filled = ndimage.binary_fill_holes(mask)
    holes = int(filled.sum() - mask.sum())
    rows = np.nonzero(filled.any(axis=1))[0]
    cols = np.nonzero(filled.any(axis=0))[0]
    r0, c0 = rows[0] - 1, cols[0] - 1
    sub = np.pad(filled[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1).astype(np.float32)
    polys = []
    for cont in find_contours(sub, 0.5):
        if len(cont) > 1 and np.allclose(cont[0], cont[-1]):
            cont = cont[:-1]
        xy = np.column_stack([cont[:, 1] + c0, cont[:, 0] + r0])
        polys.append(_drop_collinear(xy))
    return polys, holes


def masks_to_con(masks: dict[str, np.ndarray], mapping: ContourMapping, opts: GridOptions | None = None,
                 header: dict[str, str] | None = None) -> tuple[ConFile, dict]:
    """Contours of per-class (z, y, x) masks as a ConFile (+ stats: contours, filled hole pixels).

    Writes ``Image_resolution`` (columns x rows) and ``Number_of_slices`` so the reader can check
    the grid; ``header`` adds or overrides header lines.
    """
    opts = opts or GridOptions()
    shape = next(iter(masks.values())).shape
    nz, ny, nx = shape
    hdr = {"Image_resolution": f"{nx}x{ny}", "Number_of_slices": str(nz)}
    hdr.update(header or {})
    con = ConFile(header=hdr)
    stats = {"contours": 0, "hole_pixels_filled": 0}
    frame = opts.frame if opts.frame is not None else 0
    for cls in MASS_CLASSES:
        m = masks.get(cls)
        if m is None:
            continue
        ctype = mapping.write_type(cls)
        for z in np.nonzero(m.reshape(nz, -1).any(axis=1))[0]:
            polys, holes = mask_to_polygons(m[z])
            stats["hole_pixels_filled"] += holes
            s = int(z) if opts.slice_order == "forward" else nz - 1 - int(z)
            for p in polys:
                con.contours.append(Contour(s, frame, ctype, p + opts.offset))
                stats["contours"] += 1
    return con, stats
