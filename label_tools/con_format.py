"""Read and write MASS ``.con`` contour files (text; the layout of MASS cardiac exports).

Layout understood (see docs/label_tools.md)::

    key=value                  header lines (Image_resolution=512x512, Field_of_view=..., ...)
    [XYCONTOUR]                one block per contour
    slice frame type 1.0       0-based slice and frame, integer contour type, optional float
    N                          number of points
    x y                        N lines, float pixel units: x = column, y = row
    [POINT] ...                any other section is skipped safely

Text is decoded as latin-1 (never fails), CRLF / CR / LF line ends and any whitespace are
accepted. The reader streams the file line by line with bounded line length, point count and
total points, so a corrupt or hostile file cannot exhaust memory; binary content (a NIfTI or
gzip file given by mistake) is refused on its first line. Every problem raises
:class:`ConFormatError` naming the file and the 1-based line.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import ConFormatError

MAX_LINE_CHARS = 4096
"""Longer lines are rejected (no valid .con line comes near this)."""
MAX_POINTS_PER_CONTOUR = 20_000
"""A coronary contour has tens to hundreds of points; an outline of a whole 1024 x 1024 slice ~4000."""
MAX_TOTAL_POINTS = 2_000_000
"""About 20 s of parsing; a full annotation (400 slices, every class) holds well under 500 000."""
MAX_TRAILING_LINES = 2
"""Non-blank lines tolerated after a block's N points (some writers add two); more 'x y' lines
after them are a point-count mismatch; other text there (e.g. key=value) is skipped."""
MAX_ABS_COORD = 1e7
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x19\x1b-\x1f\x7f]")
"""Control bytes no text file holds (tab, form feed and a DOS end-of-file mark are allowed): a
NIfTI, gzip or DICOM file given by mistake is refused on its first line instead of printed."""


@dataclass
class Contour:
    """One [XYCONTOUR] block. ``points`` is (N, 2) float, columns (x, y) = (column, row)."""

    slice: int
    frame: int
    type: int
    points: np.ndarray
    extra: float = 1.0  # the 4th number of the block header (meaning undocumented; kept as-is)
    line: int | None = None  # line of the [XYCONTOUR] marker
    point_lines: np.ndarray | None = None  # (N,) line number of each point, for error messages


@dataclass
class ConFile:
    """A parsed .con file: header key=value pairs (first occurrence wins) and contours."""

    header: dict[str, str] = field(default_factory=dict)
    contours: list[Contour] = field(default_factory=list)
    path: str | None = None
    header_lines: dict[str, int] = field(default_factory=dict)  # key -> line number
    skipped_sections: dict[str, int] = field(default_factory=dict)  # section name -> times seen

    def types(self) -> dict[int, int]:
        """Contour type -> number of contours."""
        out: dict[int, int] = {}
        for c in self.contours:
            out[c.type] = out.get(c.type, 0) + 1
        return dict(sorted(out.items()))


class _Lines:
    """Latin-1 lines of a binary stream with 1-based numbers, bounded length, one-line pushback."""

    def __init__(self, stream: BinaryIO, path: str) -> None:
        self.stream = stream
        self.path = path
        self.lineno = 0
        self._pushed: tuple[int, str] | None = None
        self._buf = b""
        self._pos = 0
        self._eof = False

    def _fill(self) -> bool:
        """Read more bytes; False at end of file."""
        if self._eof:
            return False
        chunk = self.stream.read(1 << 16)
        if not chunk:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def _raw(self) -> bytes | None:
        """Next line without its end (CRLF, LF or a lone CR); over-long lines come back whole-ish."""
        while True:
            buf, pos = self._buf, self._pos
            i_n = buf.find(b"\n", pos)
            i_r = buf.find(b"\r", pos)
            ends = [i for i in (i_n, i_r) if i >= 0]
            if ends:
                i = min(ends)
                if buf[i] == 13 and i + 1 == len(buf) and self._fill():  # CR at buffer end: is LF next?
                    continue
                buf, pos = self._buf, self._pos
                line = buf[pos:i]
                step = 2 if buf[i] == 13 and buf[i + 1 : i + 2] == b"\n" else 1
                self._pos = i + step
                return line
            if len(buf) - pos > MAX_LINE_CHARS:
                line = buf[pos : pos + MAX_LINE_CHARS + 1]
                self._pos = pos + MAX_LINE_CHARS + 1
                return line
            if not self._fill():
                if pos < len(buf):
                    self._pos = len(buf)
                    return buf[pos:]
                return None

    def next(self) -> tuple[int, str] | None:
        if self._pushed is not None:
            item, self._pushed = self._pushed, None
            return item
        raw = self._raw()
        if raw is None:
            return None
        self.lineno += 1
        bad = _BINARY.search(raw)
        if bad:
            what = "gzip-compressed data (a .nii.gz image?)" if raw.startswith(b"\x1f\x8b") else "binary data"
            raise ConFormatError(f"{what}: byte 0x{bad.group()[0]:02x} in a line, not a MASS .con text file",
                                 self.path, self.lineno)
        if len(raw) > MAX_LINE_CHARS:
            raise ConFormatError(f"line longer than {MAX_LINE_CHARS} characters: not a .con file?", self.path,
                                 self.lineno)
        return self.lineno, raw.decode("latin-1")

    def next_nonblank(self) -> tuple[int, str] | None:
        while (item := self.next()) is not None:
            if item[1].strip():
                return item
        return None

    def push(self, item: tuple[int, str]) -> None:
        self._pushed = item


def _is_section(s: str) -> bool:
    s = s.strip()
    return len(s) >= 2 and s[0] == "[" and s[-1] == "]"


def _looks_like_point(s: str) -> bool:
    toks = s.split()
    if len(toks) != 2 or any(len(t) > 40 for t in toks):
        return False
    try:
        float(toks[0]), float(toks[1])
    except ValueError:
        return False
    return True


def _int(tok: str, what: str, path: str, line: int) -> int:
    if len(tok) > 12 and tok.lstrip("+-").isdigit() and tok.isascii():
        raise ConFormatError(f"{what} {tok[:20]}... exceeds the limit of 12 digits", path, line)
    try:
        if len(tok) > 12 or "_" in tok:
            raise ValueError
        return int(tok)
    except ValueError:
        raise ConFormatError(f"{what} must be an integer, got {tok[:40]!r}", path, line) from None


def _float(tok: str, what: str, path: str, line: int) -> float:
    try:
        if len(tok) > 40 or "_" in tok:
            raise ValueError
        v = float(tok)
    except ValueError:
        raise ConFormatError(f"{what} must be a number, got {tok[:40]!r}", path, line) from None
    if not math.isfinite(v) or abs(v) > MAX_ABS_COORD:
        raise ConFormatError(f"{what} {tok[:40]!r} is not a finite pixel coordinate", path, line)
    return v


def _read_block(lines: _Lines, path: str, marker_line: int, total: int) -> Contour:
    item = lines.next_nonblank()
    if item is None or _is_section(item[1]):
        raise ConFormatError("truncated [XYCONTOUR] block: missing the 'slice frame type' line", path,
                             marker_line)
    ln, s = item
    toks = s.split()
    if len(toks) not in (3, 4):
        raise ConFormatError(f"expected 'slice frame type [1.0]' after [XYCONTOUR], got {s.strip()[:60]!r}",
                             path, ln)
    sl = _int(toks[0], "slice index", path, ln)
    fr = _int(toks[1], "frame index", path, ln)
    ty = _int(toks[2], "contour type", path, ln)
    extra = _float(toks[3], "4th block-header value", path, ln) if len(toks) == 4 else 1.0
    if sl < 0 or fr < 0:
        raise ConFormatError(f"negative slice or frame index ({sl}, {fr})", path, ln)
    item = lines.next_nonblank()
    if item is None or _is_section(item[1]):
        raise ConFormatError("truncated [XYCONTOUR] block: missing the point count", path, ln)
    ln, s = item
    toks = s.split()
    if len(toks) != 1:
        raise ConFormatError(f"expected the point count (one integer), got {s.strip()[:60]!r}", path, ln)
    n = _int(toks[0], "point count", path, ln)
    if n < 1:
        raise ConFormatError(f"point count {n} must be at least 1", path, ln)
    if n > MAX_POINTS_PER_CONTOUR:
        raise ConFormatError(f"point count {n} exceeds the limit of {MAX_POINTS_PER_CONTOUR} per contour", path, ln)
    if total + n > MAX_TOTAL_POINTS:
        raise ConFormatError(f"more than {MAX_TOTAL_POINTS} points in the file", path, ln)
    count_line = ln
    pts = np.empty((n, 2), dtype=np.float64)
    plines = np.empty(n, dtype=np.int64)
    for i in range(n):
        item = lines.next_nonblank()
        if item is None or _is_section(item[1]):
            where = "end of file" if item is None else f"section {item[1].strip()[:40]} at line {item[0]}"
            raise ConFormatError(f"point count mismatch / truncated block: line {count_line} says {n} points, "
                                 f"found {i} before {where}", path, count_line)
        ln, s = item
        toks = s.split()
        if len(toks) != 2:
            raise ConFormatError(f"point {i + 1} of {n}: expected 'x y', got {s.strip()[:60]!r}"
                                 + (" (point count mismatch?)" if len(toks) != 2 else ""), path, ln)
        pts[i, 0] = _float(toks[0], "x", path, ln)
        pts[i, 1] = _float(toks[1], "y", path, ln)
        plines[i] = ln
    return Contour(sl, fr, ty, pts, extra, marker_line, plines)


def parse_con(source: str | Path | bytes | BinaryIO, name: str | None = None,
              require_contours: bool = True) -> ConFile:
    """Parse a .con file (path, bytes or binary stream). Raises only :class:`ConFormatError`.

    ``require_contours``: a file without any [XYCONTOUR] block is an error (it is almost always
    a wrong or empty export); pass False to accept it.
    """
    if isinstance(source, (str, Path)):
        path = str(source)
        try:
            fh: BinaryIO = open(source, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConFormatError(f"cannot open: {exc.strerror}", path) from exc
    elif isinstance(source, (bytes, bytearray)):
        path = name or "<bytes>"
        fh = io.BytesIO(bytes(source))
    else:
        path = name or getattr(source, "name", "<stream>")
        fh = source
    try:
        return _parse(_Lines(fh, path), path, require_contours)
    finally:
        if isinstance(source, (str, Path)):
            fh.close()


def _parse(lines: _Lines, path: str, require_contours: bool) -> ConFile:
    con = ConFile(path=path)
    section: str | None = None  # None: the header before any section
    trailing = 0
    total = 0
    nonblank = 0
    block_end_line = 0
    while (item := lines.next()) is not None:
        ln, s = item
        st = s.strip()
        if not st:
            continue
        nonblank += 1
        if _is_section(st):
            name = st[1:-1].strip().upper()
            if name == "XYCONTOUR":
                c = _read_block(lines, path, ln, total)
                total += len(c.points)
                con.contours.append(c)
                section, trailing, block_end_line = "_after_block", 0, lines.lineno
            else:
                section = name
                con.skipped_sections[name] = con.skipped_sections.get(name, 0) + 1
            continue
        if section == "_after_block":
            trailing += 1
            if trailing > MAX_TRAILING_LINES and _looks_like_point(st):
                n = len(con.contours[-1].points)
                raise ConFormatError(
                    f"point count mismatch: the block ending at line {block_end_line} declared {n} points "
                    f"but more point lines follow ({st[:40]!r}; up to {MAX_TRAILING_LINES} trailing lines "
                    "are tolerated)", path, ln)
            continue
        if section is None and "=" in st:
            key, _, value = st.partition("=")
            key = key.strip()
            if key and key not in con.header:
                con.header[key] = value.strip()
                con.header_lines[key] = ln
        # Other header lines and other sections' content are skipped on purpose.
    if nonblank == 0:
        raise ConFormatError("empty file (no text): re-export the annotation from MASS", path)
    if require_contours and not con.contours:
        raise ConFormatError("no [XYCONTOUR] block found: not a MASS contour export, or nothing annotated", path)
    return con


# --- writing -------------------------------------------------------------------------------

def _fmt(v: float) -> str:
    s = f"{v:.4f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def iter_con_lines(con: ConFile) -> Iterator[str]:
    """The text lines of a .con file (without line ends)."""
    for k, v in con.header.items():
        yield f"{k}={v}"
    for c in con.contours:
        yield "[XYCONTOUR]"
        yield f"{c.slice} {c.frame} {c.type} {_fmt(c.extra)}"
        yield str(len(c.points))
        for x, y in c.points:
            yield f"{_fmt(float(x))} {_fmt(float(y))}"


def _check_writable(con: ConFile, path: Path) -> None:
    for k, v in con.header.items():
        text = f"{k}={v}"
        if "=" in k or not k.strip() or k.strip().startswith("[") or any(ch in text for ch in "\r\n"):
            raise ConFormatError(f"header {k!r}={v!r} cannot be written as one key=value line", str(path))
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            raise ConFormatError(f"header {k!r}={v!r} has characters outside latin-1", str(path)) from None


def write_con(con: ConFile, path: str | Path, newline: str = "\r\n") -> Path:
    """Write ``con`` as a latin-1 text file (CRLF line ends by default, as Windows MASS writes)."""
    path = Path(path)
    _check_writable(con, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="latin-1", newline="") as fh:
        for line in iter_con_lines(con):
            fh.write(line + newline)
    return path
