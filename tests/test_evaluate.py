"""Evaluation statistics against textbook values, sklearn and statsmodels; the evaluate CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.evaluation.stats import (
    auc_continuous,
    binary_table,
    cohen_kappa,
    confusion,
    diagnostic_metrics,
    free_marginal_kappa,
    wilson_ci,
)


# --- statistics against independent values ---------------------------------------------------
def test_kappa_textbook_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> po 0.7, pe 0.5, kappa 0.4.
    t = np.array([[20, 5], [10, 15]])
    k = cohen_kappa(t)
    assert k["po"] == pytest.approx(0.7) and k["pe"] == pytest.approx(0.5)
    assert k["kappa"] == pytest.approx(0.4)
    # Fleiss-Cohen-Everitt SE of this table, worked by hand: sqrt(0.0168) / ... -> statsmodels agrees.
    from statsmodels.stats.inter_rater import cohens_kappa

    sm = cohens_kappa(t)
    assert k["kappa_se"] == pytest.approx(sm.std_kappa, rel=1e-10)
    assert k["kappa_ci_low"] == pytest.approx(sm.kappa_low, rel=1e-10)
    assert k["kappa_ci_high"] == pytest.approx(sm.kappa_upp, rel=1e-10)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_weighted_kappa_matches_sklearn_and_statsmodels(weights):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(4)
    a = rng.integers(0, 5, 120)
    b = np.clip(a + rng.integers(-1, 2, 120), 0, 4)
    k = cohen_kappa(confusion(a.tolist(), b.tolist(), range(5)), weights)
    assert k["kappa"] == pytest.approx(cohen_kappa_score(a, b, weights=weights), rel=1e-10)
    sm = cohens_kappa(confusion(a.tolist(), b.tolist(), range(5)), wt=weights)
    assert k["kappa_se"] == pytest.approx(sm.std_kappa, rel=1e-8)


def test_free_marginal_kappa_hand_and_statsmodels():
    from statsmodels.stats.inter_rater import fleiss_kappa

    # 10 items, 3 categories, raters agree on 8: (0.8 - 1/3) / (2/3) = 0.7.
    a = np.array([0, 0, 1, 2, 2, 1, 0, 0, 1, 2])
    b = a.copy()
    b[[2, 5]] = [0, 2]
    fm = free_marginal_kappa(np.stack([a, b], 1), 3)
    assert fm["po"] == pytest.approx(0.8) and fm["kappa"] == pytest.approx(0.7)
    table = np.stack([np.bincount([x, y], minlength=3) for x, y in zip(a, b, strict=True)])
    assert fm["kappa"] == pytest.approx(fleiss_kappa(table, method="randolph"))
    assert fm["kappa_ci_low"] < 0.7 < fm["kappa_ci_high"]


def test_diagnostic_metrics_wilson_and_auc():
    from sklearn.metrics import roc_auc_score
    from statsmodels.stats.proportion import proportion_confint

    t = binary_table([1, 1, 1, 0, 0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1, 1, 0, 0, 0])
    assert t == {"tp": 3, "fp": 1, "fn": 1, "tn": 5}
    m = diagnostic_metrics(t)
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"], m["accuracy"]) == pytest.approx(
        (0.75, 5 / 6, 0.75, 5 / 6, 0.8))
    assert m["auc_binary"] == pytest.approx((0.75 + 5 / 6) / 2)
    lo, hi = proportion_confint(3, 4, method="wilson")
    assert (m["sensitivity_ci_low"], m["sensitivity_ci_high"]) == pytest.approx((lo, hi))
    assert wilson_ci(0, 0) == (None, None)
    rng = np.random.default_rng(1)
    y = rng.random(60) < 0.4
    s = np.where(y, rng.gamma(2, 50, 60), rng.gamma(1, 20, 60))
    s[:10] = 0  # ties at zero, as with calcium volumes
    assert auc_continuous(s, y)["auc"] == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    assert auc_continuous(s, np.zeros(60, bool))["auc"] is None


# --- CLI end to end --------------------------------------------------------------------------
def _cohort(tmp_path, n=40, seed=0):
    """PRED and REF CSVs with a known relation: pred detects calcium by volume > 0."""
    rng = np.random.default_rng(seed)
    pred, ref = {"patient_id": [f"P{i:03d}" for i in range(n)], "study_uid": [f"1.2.{i}" for i in range(n)]}, {}
    ref["study_uid"] = list(pred["study_uid"])
    for a in ("RCA", "LAD", "LCX"):
        present = rng.random(n) < 0.5
        vol = np.where(present, rng.gamma(2.0, 60.0, n), 0.0)
        vol[rng.random(n) < 0.1] = 0.0  # misses
        vol[(~present) & (rng.random(n) < 0.1)] = 5.0  # false positives
        grade = np.where(vol == 0, "none", np.where(vol < 80, "mild", np.where(vol < 200, "moderate", "severe")))
        pred[f"{a}_calcium_volume_mm3"] = [f"{v:.3f}" for v in vol]
        pred[f"{a}_agatston"] = [f"{1.1 * v:.2f}" for v in vol]
        pred[f"{a}_grade"] = grade
        ref[f"{a}_present"] = present.astype(int)
        noisy = np.where(present, np.where(vol + rng.normal(0, 40, n) < 100, "mild", "moderate"), "none")
        noisy[present & (vol > 250)] = "severe"
        ref[f"{a}_grade"] = noisy
    pred["LCX_calcium_volume_mm3"][0] = ""  # not assessed by the pipeline
    ref["sex"] = rng.choice(["F", "M"], n)
    ref["age"] = rng.integers(40, 90, n)
    ref["vendor"] = rng.choice(["GE", "Siemens"], n)
    tot = sum(np.nan_to_num(pd.to_numeric(pd.Series(pred[f"{a}_agatston"]), errors="coerce")) for a in ("RCA", "LAD", "LCX"))
    ref["total_agatston"] = np.round(tot * rng.uniform(0.8, 1.2, n), 1)
    pred["total_agatston"] = tot
    from cacpipe.quant.categories import category

    pred["category"] = [category(v) for v in tot]
    pp, rp = tmp_path / "pred.csv", tmp_path / "ref.csv"
    pd.DataFrame(pred).to_csv(pp, index=False)
    pd.DataFrame(ref).to_csv(rp, index=False)
    return pp, rp, pd.DataFrame(pred), pd.DataFrame(ref)


def test_evaluate_cli_numbers_match_hand_count(tmp_path):
    pp, rp, pred, ref = _cohort(tmp_path)
    out = tmp_path / "eval"
    r = CliRunner().invoke(cli, ["evaluate", str(pp), str(rp), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Calcium presence" in r.output and "Ordinal regression" in r.output
    res = json.loads((out / "evaluation.json").read_text())
    assert res["matching"] == {"key": "study_uid", "pred_rows": 40, "ref_rows": 40, "matched": 40,
                               "unmatched_pred": [], "unmatched_ref": []}
    rows = {(x["subgroup"], x["group"], x["artery"]): x for x in res["presence"]}
    # LAD by hand.
    p = pd.to_numeric(pred["LAD_calcium_volume_mm3"]) > 0
    t = ref["LAD_present"] == 1
    lad = rows[("all", "all", "LAD")]
    assert (lad["tp"], lad["fp"], lad["fn"], lad["tn"]) == (int((p & t).sum()), int((p & ~t).sum()),
                                                            int((~p & t).sum()), int((~p & ~t).sum()))
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    assert lad["kappa"] == pytest.approx(cohen_kappa_score(p, t))
    assert lad["auc"] == pytest.approx(roc_auc_score(t, pd.to_numeric(pred["LAD_calcium_volume_mm3"])))
    # LCX: the not-assessed study is left out and counted.
    lcx = rows[("all", "all", "LCX")]
    assert lcx["n"] == 39 and lcx["not_assessed"] == 1
    # Subgroups present in REF appear; absent ones (site) do not.
    subgroups = {x["subgroup"] for x in res["presence"]}
    assert subgroups == {"all", "sex", "age_band", "vendor"}
    assert sum(rows[("sex", g, "RCA")]["n"] for g in ("F", "M")) == 40
    # Linear-weighted kappa of categories equals sklearn's over all five categories (weights |i-j|/4).
    from cacpipe.quant.categories import CATEGORIES, category

    agr = {x["measure"]: x for x in res["agreement"]}
    pc = [CATEGORIES.index(c) for c in pred["category"]]
    rc = [CATEGORIES.index(category(v)) for v in ref["total_agatston"]]
    assert agr["category"]["kappa"] == pytest.approx(cohen_kappa_score(pc, rc, labels=range(5), weights="linear"))
    assert {"RCA_grade", "LAD_grade", "LCX_grade"} <= set(agr)
    ordr = {x["artery"]: x for x in res["ordinal_regression"]}
    assert ordr["LAD"]["coef"] > 0 and ordr["LAD"]["p"] < 0.05 and ordr["LAD"]["ci_low"] < ordr["LAD"]["coef"]
    assert (out / "evaluation_presence.csv").exists() and (out / "evaluation_ordinal_regression.csv").exists()


def test_evaluate_ratings_two_files_and_errors(tmp_path):
    rows = []
    ratings = ["excellent", "minor error", "major error"]
    for i in range(12):
        for a in ("RCA", "LAD", "LCX"):
            ra = ratings[(i + len(a)) % 3]
            rb = ra if (i % 4) else ratings[(i + 1) % 3]
            rows.append(("A", f"P{i}", f"1.2.{i}", a, ra))
            rows.append(("B", f"P{i}", f"1.2.{i}", a, rb))
    df = pd.DataFrame(rows, columns=["rater", "patient_id", "study_uid", "artery", "rating"])
    df["comment"], df["timestamp"] = "", "2026-01-01T00:00:00"
    df[df.rater == "A"].to_csv(tmp_path / "a.csv", index=False)
    df[df.rater == "B"].to_csv(tmp_path / "b.csv", index=False)
    r = CliRunner().invoke(cli, ["evaluate", "--ratings", str(tmp_path / "a.csv"), "--ratings", str(tmp_path / "b.csv"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    allrow = res["review"][0]
    agree = np.mean([ra == rb for (_, _, _, _, ra), (_, _, _, _, rb) in zip(rows[::2], rows[1::2], strict=True)])
    assert allrow["n"] == 36 and allrow["po"] == pytest.approx(agree)
    assert allrow["kappa"] == pytest.approx((agree - 1 / 3) / (2 / 3))
    # One file with both raters gives the same answer.
    df.to_csv(tmp_path / "both.csv", index=False)
    r2 = CliRunner().invoke(cli, ["evaluate", "--ratings", str(tmp_path / "both.csv"), "--json"])
    assert json.loads(r2.output)["review"][0]["kappa"] == pytest.approx(allrow["kappa"])
    # Clear errors.
    r3 = CliRunner().invoke(cli, ["evaluate", "--ratings", str(tmp_path / "a.csv")])
    assert r3.exit_code != 0 and "two raters" in r3.output
    pd.DataFrame({"patient_id": ["P1"], "RCA_agatston": [1]}).to_csv(tmp_path / "badpred.csv", index=False)
    pd.DataFrame({"patient_id": ["P1"], "RCA_present": [1]}).to_csv(tmp_path / "badref.csv", index=False)
    r4 = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "badpred.csv"), str(tmp_path / "badref.csv")])
    assert r4.exit_code != 0 and "RCA_calcium_volume_mm3" in r4.output
    r5 = CliRunner().invoke(cli, ["evaluate"])
    assert r5.exit_code != 0 and "nothing to evaluate" in r5.output


def test_severity_fit_cli(tmp_path):
    from test_quant import _synthetic_grades

    _synthetic_grades(n=120, seed=5).to_csv(tmp_path / "grades.csv", index=False)
    r = CliRunner().invoke(cli, ["severity", "fit", str(tmp_path / "grades.csv"), "-o", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert "Wald" in r.output
    r2 = CliRunner().invoke(cli, ["severity", "show", "--model", str(tmp_path / "m.json"), "--volume", "0.2"])
    assert r2.exit_code == 0 and "LAD at 0.2 mL" in r2.output
    r3 = CliRunner().invoke(cli, ["severity", "show"])
    assert "NOT fitted on radiologist data" in r3.output
    pd.DataFrame({"artery": ["LAD"], "grade": ["mild"]}).to_csv(tmp_path / "nov.csv", index=False)
    r4 = CliRunner().invoke(cli, ["severity", "fit", str(tmp_path / "nov.csv"), "-o", str(tmp_path / "x.json")])
    assert r4.exit_code != 0 and "volume" in r4.output


def test_cohort_rows_from_results_feed_evaluate(small_phantom, tmp_path):
    from cacpipe.evaluation import evaluate, read_csv
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyIdentity, StudyResult, cohort_row

    base = quantify(small_phantom.ct, small_phantom.labels)
    part = quantify(small_phantom.ct, small_phantom.labels, assessed={"LCX": False})
    rows = [cohort_row(finalise(StudyResult(StudyIdentity(patient_id=f"P{i}", study_uid=f"1.{i}"),
                                            arteries=q.arteries, lesions=q.lesions)))
            for i, q in enumerate([base, part])]
    pd.DataFrame(rows).to_csv(tmp_path / "pred.csv", index=False)
    pd.DataFrame({"study_uid": ["1.0", "1.1"], "RCA_present": [1, 0], "LAD_present": [1, 1],
                  "LCX_present": [1, 1]}).to_csv(tmp_path / "ref.csv", index=False)
    res = evaluate(read_csv(tmp_path / "pred.csv", "pred"), read_csv(tmp_path / "ref.csv", "ref"))
    rows = {x["artery"]: x for x in res["presence"]}
    assert (rows["RCA"]["tp"], rows["RCA"]["fp"]) == (1, 1)
    assert rows["LCX"]["n"] == 1 and rows["LCX"]["not_assessed"] == 1
    assert rows["any"]["tp"] == 2  # the partial study is positive already (RCA, LAD calcium)
