"""Phantom v2: varied anatomy, realistic calcium, confounders, scanner model and full truth.

Grids are small (v2-small, a scan of the heart only) so that the whole file runs in about a
minute; the 512 x 512 x 400 study is timed in `make bench`.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom import seeds
from cacpipe.phantom.truth import agatston_reference
from cacpipe.phantom.v2 import ChestConfig, PlaqueSpec, StentSpec, generate, random_config
from cacpipe.quant.categories import category
from cacpipe.volume import Volume

# A scan of the heart only (z from -10 mm, 2.5 mm slices): fast, and the heart is always inside.
HEART_ONLY = {"z_top_mm": -10.0, "n_slices": 56, "slice_spacing_mm": 2.5, "slice_thickness_mm": 2.5}
PLAQUES = (
    PlaqueSpec(1, "LAD", "LAD", "focal", t=0.15, length_mm=6.0, thickness_mm=2.2, density_hu=800.0, n_lobes=4),
    PlaqueSpec(2, "RCA", "RCA", "focal", t=0.3, length_mm=7.0, thickness_mm=2.4, density_hu=650.0, n_lobes=3),
    PlaqueSpec(3, "LCX", "LCX", "diffuse", t=0.1, length_mm=25.0, thickness_mm=1.6, density_hu=700.0),
    PlaqueSpec(4, "RCA", "RCA", "tiny", t=0.6, length_mm=0.7, thickness_mm=0.7, density_hu=400.0),
    PlaqueSpec(5, "LAD", "LM", "ostial", t=0.0, length_mm=3.0, thickness_mm=2.0, density_hu=900.0, n_lobes=3),
)
NO_FINDINGS = {"stents": (), "device": "none", "prosthetic_valve": "none", "cabg": False,
               "aortic_valve_calcium_mm3": 0.0, "mitral_annulus_calcium_deg": 0.0, "aortic_wall_plaques": 0}


def small(seed: int, **over) -> ChestConfig:
    acq = {**HEART_ONLY, "contrast_phase": "none", "motion_scale": 0.0, **over.pop("acquisition", {})}
    return random_config(seed, "v2-small", acquisition=acq, **over)


@pytest.fixture(scope="module")
def calcified():
    """A still, non-contrast phantom with five plaques of every kind, noise-free image kept."""
    return generate(small(1000, plaques=PLAQUES, findings=NO_FINDINGS), with_clean=True)


def test_seed_ranges_are_disjoint_and_guarded():
    names = list(seeds.RANGES.values())
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not a.overlaps(b), (a.name, b.name)
    train = seeds.seeds_for("training", 5)
    held = seeds.seeds_for("heldout", 5)
    assert all(s in seeds.TRAINING for s in train) and all(s in seeds.HELDOUT for s in held)
    assert seeds.require(held, "heldout") == held
    with pytest.raises(seeds.SeedOverlapError, match="training"):
        seeds.require([train[0]], "heldout")
    with pytest.raises(seeds.SeedOverlapError, match="share 1 seed"):
        seeds.check_disjoint(training=train, heldout=[*held, train[2]])
    assert seeds.purpose_of(110) == "v1_training" and seeds.purpose_of(5003) == "v1_heldout"
    with pytest.raises(Exception, match="cannot take"):
        seeds.seeds_for("demo", 101)
    from cacpipe.phantom.cohort import cohort_configs

    train_cfgs, eval_cfgs = cohort_configs("training", 3, "v2-small"), cohort_configs("heldout", 3, "v2-small")
    seeds.check_disjoint(training=[c.seed for c in train_cfgs], heldout=[c.seed for c in eval_cfgs])
    assert [c.seed for c in eval_cfgs] == held[:3] and train_cfgs[0] == random_config(train[0], "v2-small")


def test_random_config_is_deterministic_varied_and_round_trips():
    a, b = random_config(1000), random_config(1000)
    assert a == b and ChestConfig.from_json(json.loads(json.dumps(a.to_json()))) == a
    cfgs = [random_config(s) for s in range(1000, 1080)]
    az = [c.heart.azimuth_deg for c in cfgs]
    el = [c.heart.elevation_deg for c in cfgs]
    assert max(az) - min(az) > 20 and max(el) - min(el) > 15
    assert {c.heart.dominance for c in cfgs} == {"right", "left", "co"}
    assert {p.kind for c in cfgs for p in c.plaques} == {"focal", "tiny", "bifurcation", "ostial", "diffuse"}
    assert {c.acquisition.kernel for c in cfgs} == {"soft", "standard", "sharp"}
    assert len({c.acquisition.slice_thickness_mm for c in cfgs}) >= 5
    assert any(c.acquisition.contrast_phase != "none" for c in cfgs) and any(c.findings.stents for c in cfgs)
    assert any(not c.plaques for c in cfgs) and any(len(c.plaques) >= 4 for c in cfgs)
    # the heart sits between sternum and spine: the chest is deep enough for it
    assert all(200 <= c.habitus.body_depth_mm <= 360 for c in cfgs)
    with pytest.raises(Exception, match="unknown heart field"):
        random_config(1000, heart={"no_such_field": 1})


def test_young_patients_sample_without_error():
    """Seeds 900089, 900111 and 900315 drew 35-year-olds whose aortic-wall plaque rate went
    negative (numpy refuses a negative Poisson rate): every age must give a config."""
    for seed in (900089, 900111, 900315):
        cfg = random_config(seed)
        assert cfg.habitus.age < 40 and cfg.findings.aortic_wall_plaques >= 0


def test_same_config_same_voxels_other_seed_other_phantom():
    cfg = small(1001)
    p, q = generate(cfg), generate(cfg)
    for a, b in ((p.ct, q.ct), (p.labels, q.labels), (p.lesions, q.lesions), (p.heart, q.heart)):
        assert np.array_equal(a.array, b.array)
    r = generate(small(1002))
    assert not np.array_equal(p.heart.array, r.heart.array)
    assert p.ct.array.dtype == np.int16 and p.lesions.array.dtype == np.uint16 and p.labels.array.dtype == np.uint8


def _centroid_mm(ph, mask):
    idx = np.argwhere(mask)[:, ::-1].astype(float)  # x, y, z
    return np.asarray(ph.labels.origin_xyz) + idx.mean(axis=0) * np.asarray(ph.labels.spacing_zyx[::-1])


@pytest.mark.parametrize("mirror", [False, True])
def test_laterality_is_real_and_situs_inversus_mirrors_it(mirror):
    ph = generate(small(1003, heart={"situs_inversus": mirror}))
    lab = ph.labels.array
    rca, lad, lcx = (_centroid_mm(ph, np.isin(lab, (ARTERY_ID[a], CALCIUM_ID[a]))) for a in ARTERIES)
    heart = _centroid_mm(ph, ph.heart.array > 0)
    sign = -1 if mirror else 1
    # LPS: +x is the patient's left, -y anterior
    assert sign * (rca[0] - heart[0]) < 0 < sign * (lcx[0] - heart[0])
    assert lad[1] < heart[1] and sign * (heart[0] - ph.ct.origin_xyz[0] - ph.ct.shape[2] * ph.ct.spacing_zyx[2] / 2) > 0
    assert ("situs_inversus" in ph.expected_flags) == mirror
    assert ph.centrelines["RCA"][0][0] * sign < ph.centrelines["LAD"][0][0] * sign  # ostia: RCA right of the LM


def test_truth_is_consistent_with_the_images(calcified):
    ph = calcified
    t = ph.truth
    clean = ph.ct_clean.array
    lab, les = ph.labels.array, ph.lesions.array
    sp = ph.ct.spacing_zyx
    vox = float(np.prod(sp))
    assert set(np.unique(les)) - {0} <= {p.id for p in PLAQUES}
    # label map calcium == lesion map, with each plaque's artery
    assert np.array_equal(np.isin(lab, list(CALCIUM_ID.values())), les > 0)
    for p in t["plaques"]:
        m = les == p["id"]
        assert p["imaged"]["voxel_volume_mm3"] == pytest.approx(m.sum() * vox)
        assert p["voxel_volume_mm3"] == p["imaged"]["voxel_volume_mm3"]  # still heart: reference == imaged
        if m.any():
            assert set(np.unique(lab[m])) == {CALCIUM_ID[p["artery"]]}
            assert (clean[m] >= 130).all() and p["peak_hu"] == clean[m].max()
            assert p["agatston"] == pytest.approx(agatston_reference(clean, m, sp))
        assert p["analytic_volume_mm3"] > 0
    for a in ARTERIES:
        v = t["arteries"][a]
        m = np.isin(les, [p.id for p in PLAQUES if p.artery == a])
        assert v["calcium_volume_mm3"] == pytest.approx(m.sum() * vox)
        assert v["agatston"] == pytest.approx(agatston_reference(clean, m, sp))
        assert v["present"] == (m.sum() > 0) and [q["id"] for q in v["plaques"]] == [p.id for p in PLAQUES if p.artery == a]
    assert t["total"]["agatston"] == pytest.approx(sum(t["arteries"][a]["agatston"] for a in ARTERIES))
    assert t["total"]["category"] == category(t["total"]["agatston"])
    big = [p for p in t["plaques"] if p["id"] in (1, 2, 5)]
    assert all(p["voxel_volume_mm3"] > 0 and p["agatston"] > 0 for p in big)
    # partial volume: the image never shows a plaque denser than it is
    assert all(p["peak_hu"] is None or p["peak_hu"] <= p["density_hu"] + 60 for p in t["plaques"])
    # the tiny plaque at 1.6 mm pixels is below the detection limit: truth says so instead of inventing it
    tiny = next(p for p in t["plaques"] if p["kind"] == "tiny")
    assert tiny["detectable"] == (tiny["agatston"] > 0)


def test_motion_blurs_the_image_not_the_reference():
    still = generate(small(1004, plaques=PLAQUES[:3], findings=NO_FINDINGS))
    moving = generate(small(1004, plaques=PLAQUES[:3], findings=NO_FINDINGS,
                            acquisition={"motion_scale": 1.6, "heart_rate_bpm": 95.0, "rotation_s": 0.5}))
    ref = [p["agatston"] for p in still.truth["plaques"]]
    assert [p["agatston"] for p in moving.truth["plaques"]] == pytest.approx(ref)
    assert [p["imaged"]["agatston"] for p in moving.truth["plaques"]] != pytest.approx(ref)
    assert max(p["motion_mm"] for p in moving.truth["plaques"]) > 2.0
    assert "motion" in moving.expected_flags and "motion" not in still.expected_flags


def test_noise_level_texture_and_contrast():
    soft = generate(small(1005, acquisition={"noise_hu": 30.0, "kernel": "soft"}))
    sharp = generate(small(1005, acquisition={"noise_hu": 30.0, "kernel": "sharp"}))
    air = (slice(None), slice(0, 20), slice(0, 20))  # outside the body: only noise
    for ph in (soft, sharp):
        assert 22.0 < ph.ct.array[air].std() < 40.0
    # sharp kernels make grainier noise: neighbouring pixels correlate less
    def corr(ph):
        a = ph.ct.array[air].astype(float)
        return np.corrcoef(a[:, :, :-1].ravel(), a[:, :, 1:].ravel())[0, 1]
    assert corr(sharp) < corr(soft) - 0.1  # (at 1.56 mm pixels; more at 0.78 mm)
    enh = generate(small(1005, acquisition={"contrast_phase": "arterial"}))
    heart = soft.heart.array > 0
    assert np.median(soft.ct.array[heart]) < 80 < 200 < np.median(enh.ct.array[heart])
    assert "contrast_suspected" in enh.expected_flags and "contrast_suspected" not in soft.expected_flags


def test_stents_devices_and_valve_calcium_are_confounders_with_flags():
    ph = generate(small(1006, plaques=(), findings={"stents": (StentSpec("LAD", 0.1, 16.0),), "device": "icd",
                                                      "aortic_valve_calcium_mm3": 200.0}))
    lab = ph.labels.array
    near_lad = np.isin(lab, (ARTERY_ID["LAD"],))
    assert ph.ct.array[near_lad].max() >= 1000  # the stent's metal in the artery (at 1.56 mm pixels; ~2500 at 0.78)
    assert not np.isin(lab, list(CALCIUM_ID.values())).any()  # metal and valve calcium are not coronary calcium
    flags = ph.expected_flags
    assert {"stent_suspected", "metal_device", "valve_calcium_suspected"} <= set(flags)
    assert ph.truth["expected_flag_arteries"]["stent_suspected"] == ["LAD"]
    assert ph.truth["total"]["agatston"] == 0 and ph.truth["total"]["category"] == "0"


def test_fast_dicom_series_is_byte_identical_to_pydicom(tmp_path):
    from cacpipe.phantom.dicom_study import PatientInfo, _base_dataset, _pixels, uid, write_axial_series

    vol = Volume(np.random.default_rng(0).normal(0, 300, (3, 20, 24)).astype(np.int16), (2.5, 0.7, 0.7), (-5, 3, -40))
    pat, study = PatientInfo(), "1.2.3.4"
    new = write_axial_series(vol, tmp_path / "new", pat, study, 2, "Thorax")
    series = uid(study, "series", 2, "Thorax")
    for inst, k in enumerate(range(2, -1, -1), start=1):
        ds = _base_dataset(tmp_path / "x.dcm", uid(series, k), pat, study)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = series, 2, "Thorax", inst
        ds.ImageType, ds.ConvolutionKernel = ["ORIGINAL", "PRIMARY", "AXIAL"], "STANDARD"
        ds.SliceThickness = ds.SpacingBetweenSlices = "2.5"
        z = -40 + k * 2.5
        ds.ImagePositionPatient = ["-5.0000", "3.0000", f"{z:.4f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{z:.4f}"
        ds.PixelSpacing = ["0.7", "0.7"]
        ds.Rows, ds.Columns = 20, 24
        ds.PixelData = _pixels(vol.array[k])
        ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
        assert (tmp_path / "x.dcm").read_bytes() == new[inst - 1].read_bytes()


@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_fast_nifti_reads_back_as_simpleitk_writes_it(tmp_path, backend):
    import gzip
    import zlib

    import nibabel as nib

    from cacpipe.phantom import fastio

    mod = zlib if backend == "zlib" else fastio.gzip_backend()
    assert backend == "zlib" or mod is not zlib, "isal is a dependency: the fast gzip path must be the one in use"
    vol = Volume(np.arange(7 * 9 * 11, dtype=np.uint16).reshape(7, 9, 11), (2.5, 0.7, 0.8), (-10.5, 20.25, -30.0))
    vol.write(tmp_path / "ref.nii.gz")
    fastio.write_nifti(vol, tmp_path / "fast.nii.gz", backend=mod)
    a, b = sitk.ReadImage(str(tmp_path / "ref.nii.gz")), sitk.ReadImage(str(tmp_path / "fast.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetSpacing() == b.GetSpacing() and np.allclose(a.GetOrigin(), b.GetOrigin())
    assert np.allclose(a.GetDirection(), b.GetDirection()) and Volume.read(tmp_path / "fast.nii.gz").same_grid(vol)
    # several gzip members (small chunks), CT-like noise: SimpleITK, nibabel and Python's gzip read one stream
    ct = Volume(np.random.default_rng(3).normal(0, 400, (6, 40, 50)).astype(np.int16), (1.0, 0.7, 0.7), (0, 0, 0))
    hdr = fastio.nifti_header(ct)
    fastio.gzip_parallel([hdr, memoryview(ct.array).cast("B")], tmp_path / "m.nii.gz", chunk=4096, backend=mod)
    raw = gzip.decompress((tmp_path / "m.nii.gz").read_bytes())
    assert raw == hdr + ct.array.tobytes()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.nii.gz"))), ct.array)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "m.nii.gz").dataobj).transpose(2, 1, 0), ct.array)


def test_cohort_is_a_pacs_export_with_a_truth_table_evaluate_reads(tmp_path):
    from cacpipe.ingest import discover, group_studies, select_series
    from cacpipe.phantom.cohort import TRUTH_COLUMNS, write_cohort

    acq = {"z_top_mm": 0.0, "n_slices": 100, "slice_spacing_mm": 2.0, "slice_thickness_mm": 2.0}
    rows = write_cohort(2, tmp_path / "c", seeds=[1010, 1011], preset="v2-small", purpose="tests", acquisition=acq)
    with open(tmp_path / "c" / "truth.csv") as f:
        table = list(csv.DictReader(f))
    assert [tuple(r) for r in table][0] == TRUTH_COLUMNS and len(table) == 2
    for r, row in zip(table, rows, strict=True):
        truth = json.loads((tmp_path / "c" / "truth" / r["patient_id"] / "truth.json").read_text())
        assert truth["study_uid"] == r["study_uid"] and float(r["total_agatston"]) == row["total_agatston"]
        for f in ("labels.nii.gz", "truth_lesions.nii.gz", "heart.nii.gz"):
            assert (tmp_path / "c" / "truth" / r["patient_id"] / f).exists()
    disc = discover(tmp_path / "c" / "export", Path(tempfile.mkdtemp()))
    studies, _ = group_studies(disc.headers)
    assert len(studies) == 2
    for st in studies:
        sel = select_series(st)
        assert sel.selected is not None and sel.selected.series_description.startswith("Thorax")
        assert "Topogram" in " ".join(s.series_description or "" for s, _ in sel.skipped)
    # the truth table is a reference `cacpipe evaluate` reads (here scored against itself)
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "c" / "truth.csv"), str(tmp_path / "c" / "truth.csv"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    with pytest.raises(seeds.SeedOverlapError):
        write_cohort(1, tmp_path / "bad", seeds=[seeds.TRAINING.start], preset="v2-small", purpose="heldout")


def test_cli_writes_a_v2_phantom_and_a_cohort(tmp_path):
    res = CliRunner().invoke(cli, ["phantom", str(tmp_path / "p"), "--preset", "v2-small", "--seed", "1012",
                                   "--no-dicom", "--situs-inversus"])
    assert res.exit_code == 0, res.output
    assert "situs_inversus" in res.output
    truth = json.loads((tmp_path / "p" / "truth.json").read_text())
    assert truth["version"] == 2 and truth["config"]["heart"]["situs_inversus"]
    les = Volume.read(tmp_path / "p" / "truth_lesions.nii.gz")
    assert les.array.dtype == np.uint16 and les.same_grid(Volume.read(tmp_path / "p" / "ct.nii.gz"))
    bad = CliRunner().invoke(cli, ["phantom", str(tmp_path / "q"), "--preset", "v2-small", "--plaque", "LAD:0.3:1:400"])
    assert bad.exit_code == 2 and "v1 options" in bad.output
    res = CliRunner().invoke(cli, ["phantom", "cohort", "1", str(tmp_path / "c"), "--seed", "5", "--purpose", "tests",
                                   "--preset", "v2-small"])
    assert res.exit_code != 0 and "outside the 'tests' range" in res.output


def test_v2_demo_export_draws_from_the_demo_seeds(tmp_path):
    from cacpipe.phantom.demo_export import write_demo_export

    studies = write_demo_export(tmp_path / "e", "small", truth_dir=tmp_path / "t", version=2,
                                acquisition=HEART_ONLY | {"n_slices": 100, "slice_spacing_mm": 2.0,
                                                          "slice_thickness_mm": 2.0, "z_top_mm": 0.0})
    assert len(studies) == 3 and (tmp_path / "e" / "DEMOV203.zip").exists()
    truths = [json.loads(p.read_text()) for p in sorted((tmp_path / "t").glob("*/truth.json"))]
    assert all(t["seed"] in seeds.DEMO for t in truths) and truths[1]["total"]["agatston"] == 0
    assert truths[2]["total"]["lesions"] > 0  # the demo has a second calcified patient
    series = studies[0]["series"]
    assert {"axial", "localizer", "contrast", "thick"} <= set(series)
    ds = pydicom.dcmread(next(Path(series["contrast"]["dir"]).glob("*.dcm")), stop_before_pixels=True)
    assert ds.ContrastBolusAgent


def test_v1_presets_keep_their_voxels():
    """v1 keeps its voxels (the shipped demo model and its tests depend on them): digests from main."""
    import hashlib

    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom import generate as gen

    ph = gen(PhantomConfig.preset("small"))
    assert hashlib.sha1(ph.ct.array.tobytes()).hexdigest() == "0274bc6586e404812a39cc907f3ae71032bf6778"
    assert hashlib.sha1(ph.labels.array.tobytes()).hexdigest() == "84338a227e54d22050fef3d4115e82b8b28d4ef2"
