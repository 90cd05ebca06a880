"""Quantification: hand-computed Agatston, the per-slice reference, phantom truth, flags, severity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cacpipe import flags as F
from cacpipe.errors import ConfigError, GeometryError, InputDataError
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from cacpipe.phantom import PhantomConfig, agatston_reference, generate, ground_truth
from cacpipe.quant import validity
from cacpipe.quant.agatston import agatston_scores, calcium_stats
from cacpipe.quant.categories import cac_drs, category
from cacpipe.quant.quality import quality_flags
from cacpipe.quant.quantify import quantify as _quantify
from cacpipe.quant.severity import SeverityModel
from cacpipe.record import StudyResult
from cacpipe.volume import Volume


# The tests below read numbers in their result.json form (the schema users and evaluate read).
def quantify(ct, labels, **kw) -> dict:
    """The ``arteries`` and ``total`` parts of result.json for ``ct`` and ``labels``."""
    from dataclasses import asdict

    q = _quantify(ct, labels, **kw)
    return {"arteries": {a: asdict(r) for a, r in q.arteries.items()}, "total": asdict(validity.total_of(q.arteries))}


def finalise(res: dict, flags) -> dict:
    """result.json after every flag (those of ``res`` and ``flags``) was applied once."""
    r = StudyResult.from_json({"status": res.get("status", "done"), "study": res.get("study"),
                               "arteries": res["arteries"],
                               "flags": [*res.get("flags", []), *(f.to_dict() for f in flags)]})
    return validity.finalise(r).to_json()


def _lesion(hu_value: float, pixels: int, spacing=(3.0, 1.0, 1.0), slices: int = 1):
    """A (slices+2) x 8 x 8 volume with one row of ``pixels`` calcium pixels on each middle slice."""
    hu = np.full((slices + 2, 8, 8), 40, dtype=np.int16)
    hu[1:1 + slices, 3, 1:1 + pixels] = hu_value
    return hu, hu >= 130, spacing


# --- hand-computed Agatston -------------------------------------------------------------------
@pytest.mark.parametrize("peak,weight", [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3),
                                         (399, 3), (400, 4), (1200, 4)])
def test_each_weight_band(peak, weight):
    # 4 pixels of 1 mm^2 on one 3 mm slice: score = area 4 x weight.
    hu, _, sp = _lesion(peak, 4)
    mask = np.ones_like(hu, dtype=bool)  # the label covers everything; HU decides
    s = calcium_stats(hu, mask, sp)
    assert s.agatston == 4.0 * weight
    assert s.voxels == (4 if weight else 0)


def test_weight_comes_from_peak_not_mean():
    hu, mask, sp = _lesion(150, 4)
    hu[1, 3, 1] = 410  # one bright pixel makes the whole 4 mm^2 lesion weight 4
    assert calcium_stats(hu, mask, sp).agatston == 16.0


@pytest.mark.parametrize("pixels,expected", [(3, 0.0), (4, 1.0 * 4), (5, 1.25 * 4)])
def test_minimum_area_edge(pixels, expected):
    # 0.5 x 0.5 mm pixels: 3 pixels = 0.75 mm^2 (< 1, ignored), 4 pixels = exactly 1 mm^2 (counts).
    hu, mask, _ = _lesion(450, pixels)
    s = calcium_stats(hu, mask, (3.0, 0.5, 0.5))
    assert s.agatston == pytest.approx(expected, abs=1e-12)
    assert s.volume_mm3 == pytest.approx(pixels * 0.75)  # volume keeps sub-threshold voxels
    assert s.lesions == 1


@pytest.mark.parametrize("dz,expected", [(1.0, 32 / 3), (2.5, 32 * 2.5 / 3), (3.0, 32.0), (5.0, 32 * 5 / 3)])
def test_slice_spacing_scaling(dz, expected):
    # 4 mm^2, weight 4, on two slices: 2 x 16 = 32 area-weight units, scaled by spacing / 3 mm.
    hu, mask, _ = _lesion(500, 4, slices=2)
    s = calcium_stats(hu, mask, (dz, 1.0, 1.0))
    assert s.agatston == pytest.approx(expected, rel=1e-12)
    assert s.lesions == 1  # the two slices touch: one 3D lesion
    assert s.volume_mm3 == pytest.approx(8 * dz)


def test_connectivity_8_in_plane_none_across_slices():
    hu = np.full((3, 6, 6), 0, dtype=np.int16)
    hu[1, 1, 1] = hu[1, 2, 2] = 250  # diagonal neighbours: one 2D component of 2 mm^2
    hu[1, 4, 4] = 250  # isolated single pixel: 1 mm^2, its own component
    s = calcium_stats(hu, np.ones(hu.shape, bool), (3.0, 1.0, 1.0))
    assert s.agatston == (2 + 1) * 2.0
    assert s.lesions == 2
    # Pixel area 0.7 mm^2: the single pixel drops out, the diagonal pair (1.4 mm^2) stays.
    s2 = calcium_stats(hu, np.ones(hu.shape, bool), (3.0, 0.7, 1.0))
    assert s2.agatston == pytest.approx(1.4 * 2)


def test_touching_arteries_are_scored_separately_and_mass():
    lab = np.zeros((3, 6, 8), np.uint8)
    hu = np.zeros((3, 6, 8), np.int16)
    hu[1, 2, 1:5] = 450
    lab[1, 2, 1:3] = CALCIUM_ID["LAD"]  # 2 mm^2, weight 4
    lab[1, 2, 3:5] = CALCIUM_ID["LCX"]
    hu[1, 2, 3:5] = 250  # LCX: 2 mm^2, weight 2 (its own peak, not the LAD's)
    scores = agatston_scores(hu, lab, (3.0, 1.0, 1.0))
    assert scores == {"RCA": 0.0, "LAD": 8.0, "LCX": 4.0, "total": 12.0}
    s = calcium_stats(hu, lab == CALCIUM_ID["LAD"], (3.0, 1.0, 1.0))
    # mass = factor * voxel volume (mL) * sum HU = 0.8 * 0.003 * 900
    assert s.mass_mg(0.8, (3.0, 1.0, 1.0)) == pytest.approx(0.8 * 0.003 * 900)
    assert s.mass_mg(None, (3.0, 1.0, 1.0)) is None


@settings(max_examples=40, deadline=None)
@given(
    hu=arrays(np.int16, (4, 9, 10), elements=st.sampled_from([0, 100, 129, 130, 180, 199, 200, 260, 300, 399, 400, 900])),
    mask=arrays(bool, (4, 9, 10)),
    spacing=st.tuples(st.sampled_from([0.5, 1.0, 2.5, 3.0, 5.0]), st.sampled_from([0.39, 0.7, 0.78125, 1.0]),
                      st.sampled_from([0.39, 0.7, 0.78125, 1.0])),
)
def test_vectorised_equals_per_slice_reference_exactly(hu, mask, spacing):
    assert calcium_stats(hu, mask, spacing).agatston == agatston_reference(hu, mask, spacing)


# --- phantom ground truth --------------------------------------------------------------------
def test_quantify_matches_phantom_truth_exactly(small_phantom):
    gt = ground_truth(small_phantom)
    res = quantify(small_phantom.ct_clean, small_phantom.labels, calibration_factor=0.75)
    for a in ARTERIES:
        r, t = res["arteries"][a], gt["arteries"][a]
        assert r["assessed"] is True
        assert r["agatston"] == t["agatston"]
        assert r["calcium_volume_mm3"] == t["calcium_volume_mm3"]
        assert r["calcium_volume_ml"] == pytest.approx(t["calcium_volume_mm3"] / 1000)
        assert r["lesions"] == t["lesions"]
        assert r["peak_hu"] == t["peak_hu"]
        assert r["mass_mg"] > 0 and r["grade"] in ("mild", "moderate", "severe")
        assert sum(r["grade_probabilities"].values()) == pytest.approx(1.0)
    tot = res["total"]
    assert tot["agatston"] == gt["total"]["agatston"]
    assert tot["lesions"] == gt["total"]["lesions"]
    assert tot["category"] == category(gt["total"]["agatston"])
    assert tot["vessels_with_calcium"] == 3 and tot["complete"] is True
    assert tot["cac_drs"] == cac_drs(gt["total"]["agatston"], [1, 1, 1])


def test_noisy_scan_close_to_truth_and_no_calcium_is_zero_not_null(small_phantom):
    gt = ground_truth(small_phantom)
    res = quantify(small_phantom.ct, small_phantom.labels)
    assert res["total"]["agatston"] == pytest.approx(gt["total"]["agatston"], rel=0.15)
    lab = small_phantom.labels.array.copy()
    lab[lab == CALCIUM_ID["RCA"]] = ARTERY_ID["RCA"]  # artery found, no calcium
    r = quantify(small_phantom.ct, small_phantom.labels.with_array(lab))["arteries"]["RCA"]
    assert r["assessed"] is True and r["agatston"] == 0.0 and r["calcium_volume_mm3"] == 0.0
    assert r["grade"] == "none" and r["peak_hu"] is None


def test_artery_not_found_is_null_never_zero(small_phantom):
    lab = small_phantom.labels.array.copy()
    lab[np.isin(lab, [ARTERY_ID["LCX"], CALCIUM_ID["LCX"]])] = 0
    res = quantify(small_phantom.ct, small_phantom.labels.with_array(lab))
    lcx = res["arteries"]["LCX"]
    assert lcx["assessed"] is False
    assert all(lcx[k] is None for k in ("calcium_volume_mm3", "agatston", "lesions", "grade"))
    assert res["total"]["complete"] is False and res["total"]["category"] is None
    assert res["total"]["assessed_arteries"] == ["RCA", "LAD"]
    # An explicit override wins, and finalise turns it into a flag and a status.
    res2 = quantify(small_phantom.ct, small_phantom.labels, assessed={"RCA": False})
    assert res2["arteries"]["RCA"]["agatston"] is None and res2["arteries"]["LAD"]["agatston"] > 0
    fin = finalise({"status": "done", **res2}, [])
    assert any(f["code"] == F.NOT_ASSESSABLE and f["artery"] == "RCA" for f in fin["flags"])
    assert fin["status"] == "done"
    none = quantify(small_phantom.ct, small_phantom.labels.with_array(np.zeros_like(lab)))
    fin = finalise({"status": "done", **none}, [])
    assert fin["status"] == "not_assessable" and fin["total"]["agatston"] is None


def test_grid_mismatch_is_refused(small_phantom):
    lab = Volume(small_phantom.labels.array[:, :, :-1], small_phantom.labels.spacing_zyx)
    with pytest.raises(GeometryError):
        quantify(small_phantom.ct, lab)
    shifted = Volume(small_phantom.labels.array, (3.0, 1.0, 1.0))
    with pytest.raises(GeometryError):
        quantify(small_phantom.ct, shifted)
    with pytest.raises(InputDataError):
        quantify(small_phantom.ct, small_phantom.labels, calibration_factor=-1)


# --- categories ------------------------------------------------------------------------------
@pytest.mark.parametrize("score,cat,drs", [(0, "0", "A0"), (0.4, "1-10", "A1/N1"), (10, "1-10", "A1/N1"),
                                           (10.01, "11-100", "A1/N1"), (99.9, "11-100", "A1/N1"),
                                           (100, "11-100", "A2/N1"), (100.5, "101-400", "A2/N1"),
                                           (299.9, "101-400", "A2/N1"), (300, "101-400", "A3/N1"),
                                           (400, "101-400", "A3/N1"), (400.1, ">400", "A3/N1")])
def test_categories_and_cac_drs(score, cat, drs):
    assert category(score) == cat
    assert cac_drs(score, [score, 0.0, None]) == drs
    assert category(None) is None and cac_drs(None, []) is None
    assert cac_drs(150, [50, 60, 40]) == "A2/N3"


# --- flags -----------------------------------------------------------------------------------
def test_flags_on_phantoms():
    plain = generate(PhantomConfig.preset("small", aortic_valve_calcium=False, mitral_annulus_calcium=False))
    assert quality_flags(plain.ct, plain.labels, heart=plain.heart) == []
    valve = generate(PhantomConfig.preset("small", mitral_annulus_calcium=False))
    codes = [f.code for f in quality_flags(valve.ct, valve.labels)]
    assert codes == [F.VALVE_CALCIUM_SUSPECTED]
    noisy = generate(PhantomConfig.preset("small", noise_hu=50, aortic_valve_calcium=False))
    assert [f.code for f in quality_flags(noisy.ct, noisy.labels, heart=noisy.heart)] == [F.HIGH_NOISE]
    contrast = generate(PhantomConfig.preset("small", contrast=True))
    # bright root: no valve claim; the enhanced blood itself is recognised (no DICOM tag needed)
    assert [f.code for f in quality_flags(contrast.ct, contrast.labels, heart=contrast.heart)] == [F.CONTRAST_SUSPECTED]


def test_stent_flag_marks_agatston_invalid(small_phantom):
    from cacpipe.phantom import shapes

    ct = small_phantom.ct.array.copy()
    pts = small_phantom.centrelines["LAD"]
    n = len(pts)
    shapes.tube(small_phantom.config.grid(), pts[int(n * 0.6):int(n * 0.7)], 0.8, ct, 2500)
    ctv = small_phantom.ct.with_array(ct)
    fl = quality_flags(ctv, small_phantom.labels, heart=small_phantom.heart)
    stents = [f for f in fl if f.code == F.STENT_SUSPECTED]
    assert [f.artery for f in stents] == ["LAD"] and stents[0].severity == "invalid"
    fin = finalise({"status": "done", **quantify(ctv, small_phantom.labels)}, fl)
    assert fin["arteries"]["LAD"]["agatston_valid"] is False and fin["arteries"]["RCA"]["agatston_valid"] is True
    assert fin["total"]["agatston_valid"] is False and fin["total"]["category"] is None
    assert fin["arteries"]["LAD"]["agatston"] is not None  # the number stays; its meaning changes


def test_contrast_flag_invalidates_agatston_but_keeps_numbers(small_phantom):
    res = {"status": "done", "flags": [], **quantify(small_phantom.ct, small_phantom.labels)}
    fin = finalise(res, [F.Flag(F.CONTRAST_SUSPECTED, "aortic blood pool 320 HU", "invalid")])
    assert fin["total"]["agatston_valid"] is False
    assert fin["total"]["category"] is None and fin["total"]["cac_drs"] is None
    assert fin["total"]["agatston"] == res["total"]["agatston"]
    assert "contrast" in fin["total"]["agatston_note"]
    assert all(not a["agatston_valid"] for a in fin["arteries"].values())
    assert [f["code"] for f in fin["flags"]] == [F.CONTRAST_SUSPECTED]
    assert res["total"]["category"] is not None  # input not modified
    ok = finalise(res, [])
    assert ok["total"]["agatston_valid"] is True and ok["total"]["category"] == res["total"]["category"]
    na = finalise(res, [F.Flag(F.NOT_ASSESSABLE, "noise 90 HU", "invalid")])
    assert na["status"] == "not_assessable" and all(a["agatston"] is None for a in na["arteries"].values())


# --- severity --------------------------------------------------------------------------------
def test_default_severity_model_is_documented_and_monotone():
    m = SeverityModel.load_default()
    assert "NOT fitted on radiologist data" in m.provenance and "28.31" in m.provenance
    assert {a: m.arteries[a].coef for a in ARTERIES} == {"RCA": 28.31, "LAD": 28.65, "LCX": 77.52}
    assert m.boundaries_ml("LAD") == pytest.approx([0.1, 0.3])
    assert m.predict("LAD", 0.0)[0] == "none"
    assert m.predict("LAD", None) == (None, None)
    order = ["none", "mild", "moderate", "severe"]
    grades = [order.index(m.predict("RCA", v)[0]) for v in (0, 0.01, 0.05, 0.15, 0.25, 0.4, 1.0)]
    assert grades == sorted(grades) and grades[-1] == 3
    assert m.predict("LCX", 0.05)[0] == "moderate" and m.predict("LAD", 0.05)[0] == "mild"
    with pytest.raises(InputDataError):
        m.predict("LAD", -1)


def _synthetic_grades(n=400, coef=30.0, cuts=(3.0, 9.0), seed=0):
    """Grades drawn from a known logit ordinal model of volume (mL)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for a in ARTERIES:
        v = rng.uniform(0.005, 0.6, n)
        u = rng.logistic(size=n)
        latent = coef * v + u
        g = np.array(["mild", "moderate", "severe"])[np.searchsorted(cuts, latent)]
        rows.append(pd.DataFrame({"artery": a, "grade": g, "calcium_volume_mm3": v * 1000}))
    return pd.concat(rows, ignore_index=True)


def test_severity_fit_recovers_known_model_and_round_trips(tmp_path):
    df = _synthetic_grades()
    m = SeverityModel.fit(df, provenance="synthetic test data")
    for a in ARTERIES:
        am = m.arteries[a]
        assert am.stats["ci_low"] < 30.0 < am.stats["ci_high"]
        assert am.cutpoints[0] == pytest.approx(3.0, abs=1.2) and am.cutpoints[1] == pytest.approx(9.0, abs=2.5)
        assert am.stats["p"] < 1e-6 and am.stats["converged"]
    path = m.save(tmp_path / "sev.json")
    again = SeverityModel.load(path)
    assert again.predict("LAD", 0.2) == m.predict("LAD", 0.2)
    assert again.provenance == "synthetic test data"
    bad = json.loads(path.read_text())
    bad["arteries"]["LAD"]["cutpoints"] = [5.0, 1.0]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="increasing"):
        SeverityModel.load(tmp_path / "bad.json")


def test_ordinal_fit_matches_independent_mle():
    """B from statsmodels' OrderedModel equals a direct scipy maximisation of the likelihood."""
    from scipy import optimize
    from scipy.special import expit

    from cacpipe.quant.ordinal import fit_ordinal

    df = _synthetic_grades(n=150, seed=3)
    sub = df[df["artery"] == "RCA"]
    x = sub["calcium_volume_mm3"].to_numpy() / 1000
    y = np.searchsorted(["mild", "moderate", "severe"], sub["grade"].to_numpy())

    def nll(th):
        b, c1, c2 = th
        cum = np.stack([np.zeros_like(x), expit(c1 - b * x), expit(c2 - b * x), np.ones_like(x)], axis=1)
        p = cum[np.arange(len(x)), y + 1] - cum[np.arange(len(x)), y]
        return -np.sum(np.log(np.clip(p, 1e-300, None)))

    ref = optimize.minimize(nll, [10.0, 1.0, 5.0], method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000})
    r = fit_ordinal(x, sub["grade"].tolist())
    assert r["coef"] == pytest.approx(ref.x[0], rel=1e-3)
    assert r["cutpoints"] == pytest.approx(list(ref.x[1:]), rel=1e-3)
    assert r["wald"] == pytest.approx((r["coef"] / r["se"]) ** 2)


def test_label_map_checks_and_mask_dict(small_phantom):
    ct, lab = small_phantom.ct, small_phantom.labels
    as_float = quantify(ct, lab.with_array(lab.array.astype(np.float32)))
    assert as_float["total"]["agatston"] == quantify(ct, lab)["total"]["agatston"]
    with pytest.raises(InputDataError, match="0-6"):
        quantify(ct, lab.with_array(lab.array.astype(np.int16) * 3))
    with pytest.raises(InputDataError, match="non-integer"):
        quantify(ct, lab.with_array(lab.array.astype(np.float32) * 0.5))
    masks = {a: lab.array == CALCIUM_ID[a] for a in ARTERIES}
    assert agatston_scores(ct.array, masks, ct.spacing_zyx) == agatston_scores(ct.array, lab.array, ct.spacing_zyx)


def test_cohort_row_keeps_nulls(small_phantom):
    from cacpipe.record import COHORT_COLUMNS, cohort_row

    res = finalise({"status": "done", "study": {"patient_id": "P1", "study_uid": "1.2"},
                    **quantify(small_phantom.ct, small_phantom.labels, assessed={"LCX": False})}, [])
    row = cohort_row(StudyResult.from_json(res))
    assert list(row) == list(COHORT_COLUMNS)
    assert row["LCX_agatston"] is None and row["RCA_agatston"] > 0 and row["category"] is None
    assert row["flags"] == F.NOT_ASSESSABLE


def test_severity_table_wide_form_and_errors():
    import pandas as pd

    from cacpipe.quant.severity import severity_table

    wide = pd.DataFrame({"RCA_grade": ["mild", "2", ""], "RCA_calcium_volume_mm3": ["50", "150", "3"],
                         "LAD_grade": ["none", "severe", "mild"], "LAD_calcium_volume_ml": [0, 0.5, 0.01]})
    t = severity_table(wide)
    assert t.to_dict("list") == {"artery": ["RCA", "RCA", "LAD", "LAD", "LAD"],
                                 "grade": ["mild", "moderate", "none", "severe", "mild"],
                                 "volume_ml": [0.05, 0.15, 0.0, 0.5, 0.01]}
    with pytest.raises(InputDataError, match="unknown severity grade"):
        severity_table(pd.DataFrame({"RCA_grade": ["bad"], "RCA_calcium_volume_mm3": [1]}))
    with pytest.raises(InputDataError, match="long form"):
        severity_table(pd.DataFrame({"x": [1]}))
