"""label_tools: mapping file, phantom round trip, calcium rules, batch conversion, nnU-Net dataset, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cacpipe.errors import ConfigError, GeometryError, InputDataError
from cacpipe.labels import ARTERY_ID, CALCIUM_ID, LABEL_CLASSES
from cacpipe.volume import Volume
from label_tools.calcium import CalciumRules, six_to_mass, split_calcium
from label_tools.cli import cli
from label_tools.con_format import parse_con, write_con
from label_tools.convert import ConvertOptions, convert_batch, convert_case, export_con
from label_tools.errors import ConFormatError, MappingError
from label_tools.mapping import DEFAULT_MAPPING, default_mapping_text, load_mapping, mapping_from_dict
from label_tools.nnunet_dataset import build_dataset
from label_tools.raster import GridOptions, con_to_masks, masks_to_con

# --- mapping file -------------------------------------------------------------------------


def test_default_mapping_is_valid_and_printed_text_loads_back(tmp_path):
    m = load_mapping()
    assert m.types == {0: "RCA", 1: "LAD", 2: "LCX", 3: "calcium"}
    p = tmp_path / "m.json"
    p.write_text(default_mapping_text())
    assert load_mapping(p).types == m.types


@pytest.mark.parametrize("text,fragment", [
    ('{"types": {"0": "RCA", "1": "LAD", "2": "LCX", "3": "Calcium"}}', "unknown class 'Calcium'"),
    ('{"types": {"0": "RCA", "0": "LAD", "2": "LCX", "3": "calcium"}}', "duplicate key '0'"),
    ('{"types": {"0": "RCA", "00": "LAD", "2": "LCX", "3": "calcium"}}', "listed twice"),
    ('{"types": {"0": "RCA", "1": "LAD", "3": "calcium"}}', "no contour type maps to ['LCX']"),
    ('{"types": {"0": "RCA", "1": "LAD", "2": "LCX", "x": "calcium"}}', "not an integer"),
    ('{"types": {"0": "RCA", "1": "LAD", "2": "LCX", "3": "calcium"}, "ignore_types": [3]}', "both mapped and ignored"),
    ('{"types": {"0": "RCA", "1": "LAD", "2": "LCX", "3": "calcium"}, "colour": 1}', "unknown keys"),
    ('{"types": {"0": "RCA",\n "1": "LAD"', "m.json:2: not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
])
def test_mapping_errors_are_loud(tmp_path, text, fragment):
    p = tmp_path / "m.json"
    p.write_text(text)
    with pytest.raises(MappingError) as ei:
        load_mapping(p)
    assert fragment in str(ei.value) and isinstance(ei.value, ConfigError)


# --- round trip on the phantom ----------------------------------------------------------

def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


@pytest.mark.parametrize("slice_order,pixel_origin,whole_vessel", [
    ("forward", "centre", True), ("reversed", "corner", True), ("forward", "centre", False)])
def test_phantom_labels_to_con_and_back_reproduce_ground_truth(small_phantom, tmp_path, slice_order, pixel_origin,
                                                               whole_vessel):
    """Six classes -> four MASS classes -> .con file -> rasterise -> calcium split -> six classes.

    Stated tolerance: exact (0 voxels differ; Dice 1.0 per class). The writer traces outlines
    through pixel-edge midpoints, so every pixel centre is >= 0.35 px from an outline and the
    centre-in-polygon fill recovers hole-free masks exactly; holes would be filled and counted.
    Artery contours drawn around the whole vessel or around the non-calcified part only: same result.
    """
    lab = small_phantom.labels.array
    m = load_mapping()
    grid = GridOptions(slice_order=slice_order, pixel_origin=pixel_origin)
    con, stats = masks_to_con(six_to_mass(lab, artery_includes_calcium=whole_vessel), m, grid)
    # a plaque inside a non-calcified artery outline is a hole: filled (harmless, calcium wins)
    assert (stats["hole_pixels_filled"] == 0) == whole_vessel and stats["contours"] > 50
    p = write_con(con, tmp_path / "phantom.con")
    masks = con_to_masks(parse_con(p), lab.shape, m, grid)
    out, report = split_calcium(masks, small_phantom.labels.spacing_zyx)
    for c in LABEL_CLASSES:
        assert (lab == c.id).sum() > 0
        assert _dice(out == c.id, lab == c.id) == 1.0, c.name
    assert int((out != lab).sum()) == 0
    assert report["components"]["single"] == report["calcium_components"] == 4
    assert report["components"]["ambiguous"] == report["components"]["orphan_dropped"] == 0


def test_wrong_slice_order_is_flagged_by_calcium_hu(small_phantom, tmp_path):
    p = tmp_path / "a.con"
    export_con(small_phantom.labels, p)
    _, ok = convert_case(p, small_phantom.ct_clean)
    assert ok["slice_order_check"]["fraction_ge_130"] == 1.0 and not ok["slice_order_check"]["suspect"]
    flipped, bad = convert_case(p, small_phantom.ct_clean, options=ConvertOptions(grid=GridOptions("reversed")))
    assert bad["slice_order_check"]["suspect"]
    assert np.array_equal(flipped.array[::-1], small_phantom.labels.array)


# --- calcium rules ------------------------------------------------------------------------

def _scene(shape=(6, 40, 40)):
    m = {k: np.zeros(shape, dtype=bool) for k in ("RCA", "LAD", "LCX", "calcium")}
    m["LAD"][:, 10, 5:35] = True
    m["LCX"][:, 20, 5:35] = True
    m["RCA"][:, 35, 5:15] = True
    return m


def test_ambiguous_calcium_is_split_by_nearest_artery_and_reported():
    m = _scene()
    m["calcium"][2, 10:21, 20] = True  # a bridge from LAD (y=10) to LCX (y=20)
    out, rep = split_calcium(m, (1.0, 1.0, 1.0))
    assert rep["components"] == {"single": 0, "ambiguous": 1, "orphan_assigned": 0, "orphan_dropped": 0}
    col = out[2, 10:21, 20]
    # y 10..15 nearer LAD (15 is a tie: report order puts LAD first), 16..20 nearer LCX
    assert col.tolist() == [CALCIUM_ID["LAD"]] * 6 + [CALCIUM_ID["LCX"]] * 5
    (issue,) = rep["issues"]
    assert issue["resolution"] == "ambiguous_split_by_nearest" and issue["voxels_by_artery"] == {"LAD": 6, "LCX": 5}
    assert issue["centroid_zyx"] == [2.0, 15.0, 20.0]


def test_orphan_calcium_assigned_within_reach_else_dropped():
    m = _scene()
    m["calcium"][1, 24:26, 30] = True  # 4 mm below LCX: touches nothing (dilation 2 mm)
    m["calcium"][4, 28, 30] = True  # 7 mm from RCA and 8 mm from LCX: beyond orphan_max_mm 5
    out, rep = split_calcium(m, (1.0, 1.0, 1.0), CalciumRules(dilation_mm=2.0, orphan="nearest", orphan_max_mm=5.0))
    assert rep["components"]["orphan_assigned"] == 1 and rep["components"]["orphan_dropped"] == 1
    assert (out[1, 24:26, 30] == CALCIUM_ID["LCX"]).all() and out[4, 28, 30] == 0
    assert rep["calcium_voxels"]["dropped"] == 1
    out2, rep2 = split_calcium(m, (1.0, 1.0, 1.0), CalciumRules(orphan="drop"))
    assert rep2["components"]["orphan_dropped"] == 2 and not np.isin(out2, list(CALCIUM_ID.values())).any()


def test_dilation_is_in_mm_and_configurable():
    m = _scene()
    m["LAD"][:] = False
    m["LAD"][2, 10, 5:35] = True
    m["calcium"][3, 10, 20] = True  # one slice above the LAD: 2 mm at 2 mm slices
    _, rep = split_calcium(m, (2.0, 0.7, 0.7), CalciumRules(dilation_mm=2.0))
    assert rep["components"]["single"] == 1
    _, rep = split_calcium(m, (2.0, 0.7, 0.7), CalciumRules(dilation_mm=1.0, orphan="drop"))
    assert rep["components"]["orphan_dropped"] == 1
    with pytest.raises(ConfigError):
        CalciumRules(orphan="keep")


def test_artery_labels_exclude_calcium_and_overlaps_are_resolved():
    m = _scene()
    m["LAD"][:, 10:13, 5:35] = True
    m["RCA"][:, 12, 5:35] = True  # overlaps the LAD on row 12
    m["calcium"][3, 10:12, 8:10] = True  # inside the LAD
    out, rep = split_calcium(m, (1.0, 1.0, 1.0))
    assert rep["artery_overlap_voxels"] == 6 * 30
    assert (out[:, 12, 5:35] == ARTERY_ID["RCA"]).all()  # report order: RCA first
    assert (out[3, 10:12, 8:10] == CALCIUM_ID["LAD"]).all()
    assert ((out == ARTERY_ID["LAD"]) | (out == CALCIUM_ID["LAD"])).sum() == (m["LAD"] & ~m["RCA"]).sum()


def test_export_rejects_foreign_ids_and_reports_filled_holes(tmp_path):
    lab = np.zeros((2, 12, 12), dtype=np.uint8)
    lab[0, 2:9, 2:9] = ARTERY_ID["LAD"]
    lab[0, 5, 5] = 0  # a hole MASS cannot draw
    st = export_con(lab, tmp_path / "h.con")
    assert st["hole_pixels_filled"] == 1
    lab[1, 0, 0] = 9
    with pytest.raises(GeometryError, match=r"\[9\]"):
        export_con(lab, tmp_path / "x.con")


# --- ANNOTATIONS: batch conversion and the nnU-Net dataset -----------------------------------

def _sub(vol: Volume, box) -> Volume:
    starts = [s.start for s in box]
    origin = tuple(vol.index_to_physical(np.array([starts]))[0])
    return Volume(np.ascontiguousarray(vol.array[box]), vol.spacing_zyx, origin, vol.direction)


@pytest.fixture(scope="module")
def annotated(small_phantom, tmp_path_factory):
    """ANNOTATIONS with 7 good cases (6 patients) and 3 broken ones, on a heart-sized CT."""
    from scipy import ndimage

    box = ndimage.find_objects((small_phantom.heart.array > 0).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
    ct, lab, heart = (_sub(v, box) for v in (small_phantom.ct, small_phantom.labels, small_phantom.heart))
    root = tmp_path_factory.mktemp("annotations")
    rows = []
    for i in range(7):
        case = f"case{i:02d}"
        ct.write(root / "images" / f"{case}.nii.gz")
        export_con(lab, root / "contours" / f"{case}.con", header={"Patient_name": f"P{i}"})
        rows.append((case, f"pat{min(i, 5)}"))  # case05 and case06: the same patient
    # broken cases
    good = (root / "contours" / "case00.con").read_bytes()
    (root / "contours" / "trunc.con").write_bytes(good[: len(good) // 2])
    (root / "contours" / "badtype.con").write_bytes(good.replace(b"[XYCONTOUR]\r\n", b"[XYCONTOUR]\r\n", 1)
                                                    .replace(b" 0 3 1.0", b" 0 8 1.0", 1))
    for c in ("trunc", "badtype"):
        ct.write(root / "images" / f"{c}.nii.gz")
    rows += [("trunc", "pat9"), ("badtype", "pat9"), ("noimage", "pat8")]
    (root / "contours" / "noimage.con").write_bytes(good)
    with open(root / "cases.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case", "patient_id"])
        w.writerows(rows)
    return root, ct, lab, heart


def test_batch_conversion_records_failures_and_goes_on(annotated, tmp_path):
    root, ct, lab, _ = annotated
    s = convert_batch(root, tmp_path / "out")
    assert (s["cases"], s["done"], s["failed"]) == (10, 7, 3)
    rows = {r["case"]: r for r in csv.DictReader(open(s["report_csv"]))}
    assert rows["trunc"]["status"] == "failed" and "trunc.con" in rows["trunc"]["file"]
    assert int(rows["trunc"]["line"]) > 0
    assert "unknown contour type 8" in rows["badtype"]["error"]
    assert "image not found" in rows["noimage"]["error"]
    back = Volume.read(tmp_path / "out" / "case03.nii.gz")
    assert back.same_grid(ct) and np.array_equal(back.array, lab.array)
    assert rows["case03"]["LAD_calcium"] == str(int((lab.array == CALCIUM_ID["LAD"]).sum()))
    details = json.loads(open(s["report_json"]).read())["details"]
    assert details["case03"]["calcium"]["components"]["single"] == 4


def test_build_dataset_with_crop_passes_nnunet_checks(annotated, tmp_path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import check_cases, verify_labels
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    root, ct, lab, heart = annotated
    calls = []

    def heart_box_crop(c: Volume, labels: Volume) -> tuple[Volume, Volume]:
        # test crop: the phantom's ground-truth heart box + 1 voxel (stands in for the stage-1 crop)
        from scipy import ndimage

        box = ndimage.find_objects(heart.array.astype(np.uint8))[0]
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        calls.append(box)
        return _sub(c, box), _sub(labels, box)

    s = build_dataset(root, tmp_path / "raw", 777, "cactest", crop=heart_box_crop,
                      preprocessed_root=tmp_path / "pre")
    ds = tmp_path / "raw" / "Dataset777_cactest"
    assert (s["written"], s["failed"]) == (7, 3) and len(calls) == 7
    dj = json.loads((ds / "dataset.json").read_text())
    assert dj["numTraining"] == 7 and dj["channel_names"] == {"0": "CT"}
    assert dj["labels"]["whole_RCA"] == [1, 4] and dj["regions_class_order"] == [1, 2, 3, 4, 5, 6]
    # nnU-Net's own readers accept the dataset
    files = get_filenames_of_train_images_and_targets(str(ds), dj)
    assert sorted(files) == [f"case{i:02d}" for i in range(7)]
    lm = LabelManager(dj["labels"], regions_class_order=dj["regions_class_order"])
    assert lm.has_regions and lm.num_segmentation_heads == 6 and lm.all_labels == list(range(7))
    rw = determine_reader_writer_from_dataset_json(dj, files["case00"]["images"][0])
    for case in ("case00", "case06"):  # nnU-Net's own per-case checks (labels, geometry)
        assert verify_labels(files[case]["label"], rw, lm.all_labels)
        assert check_cases(files[case]["images"], files[case]["label"], 1, rw)
    img = Volume.read(ds / "imagesTr" / "case00_0000.nii.gz")
    seg = Volume.read(ds / "labelsTr" / "case00.nii.gz")
    assert img.same_grid(seg) and img.shape == tuple(s.stop - s.start for s in calls[0])
    # a tight heart box cuts a few artery voxels on the heart surface: the report counts them exactly
    lost = json.loads(open(ds / "build_report.json").read())["details"]["case00"]["crop"]["labelled_voxels_lost"]
    assert lost == int((lab.array > 0).sum()) - int((seg.array > 0).sum())
    assert 0 <= lost < 0.01 * int((lab.array > 0).sum())
    assert int((seg.array >= 4).sum()) == int((lab.array >= 4).sum())  # every calcium voxel kept
    splits = json.loads((ds / "splits_final.json").read_text())
    assert splits == json.loads((tmp_path / "pre" / "Dataset777_cactest" / "splits_final.json").read_text())
    assert len(splits) == 5
    for sp in splits:
        assert not set(sp["train"]) & set(sp["val"])
        assert ("case05" in sp["val"]) == ("case06" in sp["val"])  # one patient, one fold
    with pytest.raises(InputDataError, match="not empty"):
        build_dataset(root, tmp_path / "raw", 777, "cactest")


def test_dicom_series_folder_as_ct_uses_the_sorted_stack(small_phantom_dir, tmp_path):
    """A DICOM folder reads as the position-sorted stack: .con slice 0 = the NIfTI's first slice."""
    from label_tools.annotations import read_image

    truth = json.loads((small_phantom_dir / "truth.json").read_text())
    series = small_phantom_dir / truth["dicom"]["series"]["axial"]["dir"]
    lab = Volume.read(small_phantom_dir / "labels.nii.gz")
    export_con(lab, tmp_path / "d.con")
    out, rep = convert_case(tmp_path / "d.con", series)
    assert out.same_grid(lab, tol=1e-3) and np.array_equal(out.array, lab.array)
    assert rep["slice_order_check"]["fraction_ge_130"] == 1.0
    # The whole study folder (axial + localizer) reads as the series `cacpipe scan` would score.
    whole = read_image(series.parent)
    assert whole.same_grid(lab, tol=1e-3)
    with pytest.raises(InputDataError, match="no DICOM study"):
        read_image(tmp_path)


def test_cases_csv_is_validated(tmp_path):
    from label_tools.annotations import read_cases

    with pytest.raises(InputDataError, match="cases.csv"):
        read_cases(tmp_path)
    (tmp_path / "cases.csv").write_text("case,patient_id\na,p1\na,p2\n")
    with pytest.raises(InputDataError, match="already listed on line 2"):
        read_cases(tmp_path)
    (tmp_path / "cases.csv").write_text("case,patient\na,p1\n")
    with pytest.raises(InputDataError, match="missing column"):
        read_cases(tmp_path)
    (tmp_path / "cases.csv").write_text("case,patient_id,image\nb c,p1,\n")
    with pytest.raises(InputDataError, match="letters, digits"):
        read_cases(tmp_path)


# --- CLI --------------------------------------------------------------------------------

def test_cli_export_convert_round_trip_and_errors(small_phantom, tmp_path):
    r = CliRunner()
    res = r.invoke(cli, ["default-mapping"])
    assert res.exit_code == 0 and json.loads(res.output) == DEFAULT_MAPPING
    small_phantom.labels.write(tmp_path / "labels.nii.gz")
    small_phantom.ct.write(tmp_path / "ct.nii.gz")
    res = r.invoke(cli, ["export-con", str(tmp_path / "labels.nii.gz"), str(tmp_path / "p.con"),
                         "--header", "Patient_name=PHANTOM"])
    assert res.exit_code == 0, res.output
    assert parse_con(tmp_path / "p.con").header["Patient_name"] == "PHANTOM"
    res = r.invoke(cli, ["inspect", str(tmp_path / "p.con")])
    assert "type 3:" in res.output and "-> calcium" in res.output
    res = r.invoke(cli, ["convert", str(tmp_path / "p.con"), str(tmp_path / "back.nii.gz"), "--ct",
                         str(tmp_path / "ct.nii.gz")])
    assert res.exit_code == 0, res.output
    assert np.array_equal(Volume.read(tmp_path / "back.nii.gz").array, small_phantom.labels.array)
    assert json.loads((tmp_path / "back.report.json").read_text())["calcium"]["calcium_components"] == 4
    # a CT of another size: one line naming the file and the header line, exit code 2
    Volume(np.zeros((10, 20, 20), np.int16), (1, 1, 1)).write(tmp_path / "other.nii.gz")
    res = r.invoke(cli, ["convert", str(tmp_path / "p.con"), str(tmp_path / "x.nii.gz"), "--ct",
                         str(tmp_path / "other.nii.gz")])
    assert res.exit_code == 2 and f"{tmp_path / 'p.con'}:1:" in res.output and "Image_resolution" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"types": {"0": "RCA"}}')
    res = r.invoke(cli, ["convert", str(tmp_path / "p.con"), str(tmp_path / "x.nii.gz"), "--ct",
                         str(tmp_path / "ct.nii.gz"), "--mapping", str(bad)])
    assert res.exit_code == 2 and "no contour type maps to" in res.output


def test_cli_batch_and_build_dataset(annotated, tmp_path):
    root = annotated[0]
    r = CliRunner()
    res = r.invoke(cli, ["convert", str(root), str(tmp_path / "conv")])
    assert res.exit_code == 1 and "7/10 cases converted, 3 failed" in res.output
    res = r.invoke(cli, ["build-dataset", str(root), str(tmp_path / "raw"), "--dataset-id", "12", "--folds", "3"])
    assert res.exit_code == 0, res.output
    assert len(json.loads((tmp_path / "raw" / "Dataset012_cacpipe_coronary" / "splits_final.json").read_text())) == 3
    try:
        import cacpipe.heart  # noqa: F401
    except ImportError:
        res = r.invoke(cli, ["build-dataset", str(root), str(tmp_path / "raw2"), "--heart-crop"])
        assert res.exit_code == 2 and "cacpipe.heart" in res.output


def test_mapping_with_several_types_per_class_round_trips(tmp_path):
    m = mapping_from_dict({"types": {"7": "RCA", "4": "RCA", "1": "LAD", "2": "LCX", "3": "calcium"}})
    assert m.write_type("RCA") == 4
    masks = {k: np.zeros((2, 8, 8), bool) for k in ("RCA", "LAD", "LCX", "calcium")}
    masks["RCA"][1, 2:5, 2:6] = True
    con, _ = masks_to_con(masks, m)
    assert {c.type for c in con.contours} == {4}
    con.contours[0].type = 7  # the other RCA type reads as RCA too
    assert np.array_equal(con_to_masks(con, (2, 8, 8), m)["RCA"], masks["RCA"])
    with pytest.raises(ConFormatError, match="unknown contour type 0"):
        con.contours[0].type = 0
        con_to_masks(con, (2, 8, 8), m)
