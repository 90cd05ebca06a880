"""MASS .con reader/writer: well-formed variants, a generated corpus of malformed files, fuzzing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacpipe.errors import InputDataError
from label_tools.con_format import (
    MAX_POINTS_PER_CONTOUR,
    ConFile,
    Contour,
    iter_con_lines,
    parse_con,
    write_con,
)
from label_tools.errors import ConFormatError
from label_tools.mapping import load_mapping
from label_tools.raster import GridOptions, con_to_masks

SQUARE = "[XYCONTOUR]\n{s} 0 {t} 1.0\n4\n2 2\n6 2\n6 6\n2 6\n"


def test_reads_header_blocks_and_skips_other_sections():
    text = (
        "Field_of_view=400x400\r\nImage_resolution = 16x12\r\nPatient_name=M\xfcller\r\n"
        "[XYCONTOUR]\r\n  3   0  1   1.0 \r\n3\r\n1.5\t2.5\r\n4 5\r\n\r\n6 7\r\n"
        "0\r\n0\r\n"  # two trailing lines, as some writers add
        "[POINT]\r\n1 2 3\r\nwhatever=1\r\n[DISTANCE LABELS]\r\n2\r\nfoo bar\r\n"
        "[XYCONTOUR]\r2 0 3\r1\r1e0 2.\r"  # lone CR line ends, 3-field block header, exponent
        "0\r0\rFooter=1\rtext after a block is skipped\r"
    )
    con = parse_con(text.encode("latin-1"), name="case.con")
    assert con.header["Image_resolution"] == "16x12" and con.header["Patient_name"] == "M\u00fcller"
    assert "whatever" not in con.header  # key=value inside other sections is not header
    assert [(c.slice, c.frame, c.type) for c in con.contours] == [(3, 0, 1), (2, 0, 3)]
    np.testing.assert_array_equal(con.contours[0].points, [[1.5, 2.5], [4, 5], [6, 7]])
    assert con.contours[0].point_lines.tolist() == [7, 8, 10]
    assert con.skipped_sections == {"POINT": 1, "DISTANCE LABELS": 1}
    assert con.types() == {1: 1, 3: 1}


def test_write_then_read_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    con = ConFile(header={"Image_resolution": "64x64", "Study": "x"})
    for k in range(5):
        pts = np.round(rng.uniform(0, 63, size=(7 + k, 2)), 4)
        con.contours.append(Contour(k, 0, k % 4, pts))
    for nl in ("\r\n", "\n"):
        p = write_con(con, tmp_path / "a.con", newline=nl)
        back = parse_con(p)
        assert back.header == con.header
        for a, b in zip(con.contours, back.contours, strict=True):
            assert (a.slice, a.frame, a.type) == (b.slice, b.frame, b.type)
            np.testing.assert_array_equal(a.points, b.points)
    assert list(iter_con_lines(con))[2] == "[XYCONTOUR]"


def _corpus() -> list[tuple[str, bytes, int | None, str]]:
    """(name, content, expected error line, message fragment) of malformed files."""
    ok_head = "Image_resolution=16x16\n"
    return [
        ("empty", b"", None, "empty file"),
        ("blank", b" \r\n\t\n", None, "empty file"),
        ("header_only", b"Image_resolution=16x16\n", None, "no [XYCONTOUR]"),
        ("truncated_after_marker", (ok_head + "[XYCONTOUR]\n").encode(), 2, "truncated"),
        ("truncated_no_count", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n").encode(), 3, "point count"),
        ("truncated_points", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n5\n1 1\n2 2\n").encode(), 4, "found 2"),
        ("count_too_small", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n2\n1 1\n2 2\n3 3\n4 4\n5 5\n").encode(), 9,
         "point count mismatch"),
        ("section_inside_points", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n3\n1 1\n[POINT]\n").encode(), 4, "found 1"),
        ("bad_block_header", (ok_head + "[XYCONTOUR]\n1 0\n3\n").encode(), 3, "slice frame type"),
        ("float_type", (ok_head + "[XYCONTOUR]\n1 0 2.5 1.0\n1\n1 1\n").encode(), 3, "contour type"),
        ("negative_slice", (ok_head + "[XYCONTOUR]\n-1 0 0 1.0\n1\n1 1\n").encode(), 3, "negative"),
        ("bad_count", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\nmany\n").encode(), 4, "point count"),
        ("zero_count", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n0\n").encode(), 4, "at least 1"),
        ("huge_count", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n99999999999999\n").encode(), 4, "exceeds the limit"),
        ("bad_point", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n2\n1 1\n1 x\n").encode(), 6, "must be a number"),
        ("three_coords", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n2\n1 1 1\n").encode(), 5, "expected 'x y'"),
        ("nan_point", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n1\nnan 1\n").encode(), 5, "finite"),
        ("inf_point", (ok_head + "[XYCONTOUR]\n1 0 0 1.0\n1\n1 inf\n").encode(), 5, "finite"),
        ("long_line", b"x" * 10_000, 1, "longer than"),
        ("binary_junk", bytes(range(256)) * 3, None, ""),
    ]


@pytest.mark.parametrize("name,data,line,fragment", _corpus(), ids=[c[0] for c in _corpus()])
def test_malformed_corpus_raises_con_format_error_with_file_and_line(tmp_path, name, data, line, fragment):
    p = tmp_path / f"{name}.con"
    p.write_bytes(data)
    with pytest.raises(ConFormatError) as ei:
        parse_con(p)
    err = ei.value
    assert isinstance(err, InputDataError)  # the CLI prints it as one line
    assert err.path == str(p) and str(p) in str(err)
    if line is not None:
        assert err.line == line and f"{p}:{line}:" in str(err)
    assert fragment in str(err)


# Errors that need the CT grid: checked on rasterisation, still with file and line.
GEOMETRY_CASES = [
    ("resolution_mismatch", "Image_resolution=32x16\n" + SQUARE.format(s=0, t=0), 1, "columns x rows"),
    ("resolution_swapped", "Image_resolution=8x16\n" + SQUARE.format(s=0, t=0), 1, "swapped"),
    ("resolution_garbage", "Image_resolution=big\n" + SQUARE.format(s=0, t=0), 1, "cannot read"),
    ("slice_count", "Number_of_slices=7\n" + SQUARE.format(s=0, t=0), 1, "CT has 4 slices"),
    ("slice_out_of_range", SQUARE.format(s=4, t=0), 2, "out of range"),
    ("unknown_type", SQUARE.format(s=1, t=9), 2, "unknown contour type 9"),
    ("frame", "[XYCONTOUR]\n0 2 0 1.0\n1\n1 1\n", 2, "frame 2"),
    ("point_outside", "[XYCONTOUR]\n0 0 0 1.0\n3\n1 1\n2 2\n16.6 3\n", 6, "outside the 16x8 image"),
    ("point_negative", "[XYCONTOUR]\n0 0 0 1.0\n3\n1 -0.6\n2 2\n3 3\n", 4, "outside"),
]


@pytest.mark.parametrize("name,text,line,fragment", GEOMETRY_CASES, ids=[c[0] for c in GEOMETRY_CASES])
def test_grid_errors_name_file_and_line(name, text, line, fragment):
    con = parse_con(text.encode(), name=f"{name}.con")
    if name.startswith("resolution_swapped"):
        shape = (4, 8, 16)  # 16 columns x 8 rows: the header says 8x16
    elif name.startswith("point"):
        shape = (4, 8, 16)
    else:
        shape = (4, 16, 16)
    with pytest.raises(ConFormatError) as ei:
        con_to_masks(con, shape, load_mapping())
    assert ei.value.line == line, str(ei.value)
    assert fragment in str(ei.value) and f"{name}.con:{line}:" in str(ei.value)


def test_edge_points_and_ignored_types_are_accepted(tmp_path):
    from label_tools.mapping import mapping_from_dict

    text = "[XYCONTOUR]\n0 0 0 1.0\n4\n-0.5 -0.5\n15.5 -0.5\n15.5 7.5\n-0.5 7.5\n" + SQUARE.format(s=1, t=7)
    con = parse_con(text.encode())
    m = mapping_from_dict({"types": {"0": "RCA", "1": "LAD", "2": "LCX", "3": "calcium"}, "ignore_types": [7]})
    masks = con_to_masks(con, (2, 8, 16), m)
    assert masks["RCA"][0].all() and not masks["RCA"][1].any()  # full slice; type 7 ignored
    assert sum(int(v.sum()) for v in masks.values()) == 8 * 16
    with pytest.raises(ConFormatError):  # same point, "corner" origin: -0.5 is outside [0, 16]
        con_to_masks(con, (2, 8, 16), m, GridOptions(pixel_origin="corner"))


def test_binary_file_refused_not_printed(tmp_path):
    """A NIfTI (or any binary file) given as a .con fails on its first line; `inspect` exits non-zero."""
    from click.testing import CliRunner

    from cacpipe.volume import Volume
    from label_tools.cli import cli

    vol = Volume(np.zeros((2, 4, 4), np.int16), (1.0, 1.0, 1.0))
    for name, what in (("img.nii.gz", "gzip-compressed data"), ("img.nii", "binary data")):
        vol.write(tmp_path / name)
        with pytest.raises(ConFormatError, match=what) as e:
            parse_con(tmp_path / name, require_contours=False)
        assert e.value.line == 1
        r = CliRunner().invoke(cli, ["inspect", str(tmp_path / name)])
        assert r.exit_code != 0 and what in r.output
        assert len(r.output.strip().splitlines()) == 1 and r.output.strip().isprintable()  # no binary printed


def test_rasterisation_work_bounded():
    """Contours within the point limits whose rasterisation would take minutes are refused up front."""
    from label_tools.raster import MAX_RASTER_WORK

    t = np.linspace(0, 2 * np.pi, MAX_POINTS_PER_CONTOUR, endpoint=False)
    ring = np.stack([255.5 + 255 * np.cos(t), 255.5 + 255 * np.sin(t)], axis=1)
    con = ConFile(contours=[Contour(s, 0, 0, ring, line=10 * s) for s in range(3)])
    assert 3 * MAX_POINTS_PER_CONTOUR * 512 * 512 > MAX_RASTER_WORK
    with pytest.raises(ConFormatError, match="point-in-polygon tests"):
        con_to_masks(con, (3, 512, 512), load_mapping(), GridOptions(check_header=False))
    small = ConFile(contours=[Contour(0, 0, 0, ring[::400], line=1)])  # 50 points: rasterised
    assert con_to_masks(small, (1, 512, 512), load_mapping(), GridOptions(check_header=False))["RCA"].sum() > 1e5


def test_huge_file_is_bounded(tmp_path):
    """A count just under the limit with the points missing fails fast without allocating per line."""
    data = f"[XYCONTOUR]\n0 0 0 1.0\n{MAX_POINTS_PER_CONTOUR}\n".encode() + b"1 1\n" * 1000
    with pytest.raises(ConFormatError, match="found 1000"):
        parse_con(data)


# --- property tests ---------------------------------------------------------------------

TOKENS = st.sampled_from([
    "[XYCONTOUR]", "[POINT]", "[xycontour]", "[", "]", "=", "Image_resolution=512x512", " ", "\t", "\r\n", "\n",
    "\r", "0", "1", "-1", "3", "1.0", "1e308", "nan", "-inf", "99999999999999999999", "0 0 0 1.0", "2", "1.5 2.5",
    "\x00", "\xff", "x",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_parser_raises_only_its_own_error_on_arbitrary_bytes(data):
    try:
        con = parse_con(data, require_contours=False)
    except ConFormatError:
        return
    assert isinstance(con, ConFile)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, max_size=120))
def test_parser_raises_only_its_own_error_on_con_like_text(tokens):
    data = "".join(tokens).encode("latin-1")
    try:
        con = parse_con(data)
    except ConFormatError:
        return
    for c in con.contours:  # what parses is well-formed
        assert c.points.ndim == 2 and c.points.shape[1] == 2 and np.isfinite(c.points).all()
        assert c.slice >= 0 and c.frame >= 0
    # ...and rasterising it on some grid either works or raises our error
    try:
        con_to_masks(con, (3, 8, 8), load_mapping())
    except ConFormatError:
        pass


def test_writer_refuses_headers_it_cannot_write(tmp_path):
    for hdr in ({"a=b": "1"}, {"Name": "two\nlines"}, {"Name": "\u6f22\u5b57"}, {"[XYCONTOUR]": "1"}):
        with pytest.raises(ConFormatError):
            write_con(ConFile(header=hdr), tmp_path / "h.con")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 999), st.integers(0, 3), st.integers(0, 50),
                          st.lists(st.tuples(st.integers(-5000, 5_000_000), st.integers(-5000, 5_000_000)),
                                   min_size=1, max_size=20)),
                min_size=1, max_size=8))
def test_write_read_round_trip_property(tmp_path_factory, blocks):
    con = ConFile(header={"Image_resolution": "512x512"})
    for s, f, t, pts in blocks:
        con.contours.append(Contour(s, f, t, np.asarray(pts, dtype=float) / 1e4))  # 4 decimals, as written
    p = write_con(con, tmp_path_factory.mktemp("rt") / "r.con")
    back = parse_con(p)
    assert [(c.slice, c.frame, c.type) for c in back.contours] == [(s, f, t) for s, f, t, _ in blocks]
    for a, b in zip(con.contours, back.contours, strict=True):
        np.testing.assert_array_equal(a.points, b.points)
