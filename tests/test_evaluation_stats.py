"""The new evaluation statistics against published worked examples and the libraries' own answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cacpipe.evaluation.agreement import agreement_row, bland_altman, icc_a1
from cacpipe.evaluation.categories import reclassification
from cacpipe.quant.categories import CATEGORIES

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges. Published: ICC(2,1) = .29.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])

# Bland & Altman (1986), Lancet, Table 1: PEFR (l/min), first reading of the Wright and the mini
# Wright meter, 17 subjects. Published: mean difference -2.1, SD 38.8, limits (mean +/- 2 SD)
# -79.7 to 75.5.
WRIGHT = np.array([494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427])
MINI = np.array([512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451])


def _mcgraw_wong_a1(x: np.ndarray) -> tuple[float, float, float]:
    """ICC(A,1) and its 95 % CI from the mean squares of a statsmodels two-way ANOVA
    (McGraw & Wong 1996, case 2A, Table 7): an independent route (statsmodels' ANOVA) to icc_a1's answer."""
    import statsmodels.formula.api as smf
    from scipy.stats import f
    from statsmodels.stats.anova import anova_lm

    n, k = x.shape
    df = pd.DataFrame({"y": x.ravel(), "t": np.repeat(np.arange(n), k).astype(str),
                       "r": np.tile(np.arange(k), n).astype(str)})
    aov = anova_lm(smf.ols("y ~ C(t) + C(r)", df).fit())
    msr, msc, mse = (aov.loc[c, "sum_sq"] / aov.loc[c, "df"] for c in ("C(t)", "C(r)", "Residual"))
    icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    a, b = k * icc / (n * (1 - icc)), 1 + k * icc * (n - 1) / (n * (1 - icc))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    fs, fi = f.ppf(0.975, n - 1, v), f.ppf(0.975, v, n - 1)
    lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    hi = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
    return float(icc), float(lo), float(hi)


def test_icc_a1_shrout_fleiss_worked_example():
    r = icc_a1(SHROUT_FLEISS)
    assert round(r["icc"], 2) == 0.29  # Shrout & Fleiss (1979): ICC(2,1) = .29
    icc, lo, hi = _mcgraw_wong_a1(SHROUT_FLEISS)
    assert r["icc"] == pytest.approx(icc, rel=1e-9)
    assert (r["icc_ci_low"], r["icc_ci_high"]) == pytest.approx((lo, hi), rel=1e-6)
    assert round(r["icc_ci_low"], 2) != r["icc_ci_low"]  # unrounded
    assert r["icc_p"] < 0.001  # F(5, 15) = 11.03


def test_icc_a1_penalises_a_systematic_bias_unlike_consistency():
    rng = np.random.default_rng(3)
    ref = rng.gamma(2, 100, 40)
    same = icc_a1(np.column_stack([ref + rng.normal(0, 5, 40), ref]))["icc"]
    halved = icc_a1(np.column_stack([ref * 0.5, ref]))["icc"]
    assert same > 0.99
    assert halved < 0.8  # absolute agreement: a model that halves every score does not agree
    assert icc_a1(np.column_stack([ref[:2], ref[:2]]))["icc"] is None  # too few studies


def test_bland_altman_lancet_1986_example():
    ba = bland_altman(WRIGHT, MINI)
    assert round(ba["ba_bias"], 1) == -2.1 and round(ba["ba_sd"], 1) == 38.8
    assert ba["ba_bias"] - 2 * ba["ba_sd"] == pytest.approx(-79.7, abs=0.1)
    assert ba["ba_bias"] + 2 * ba["ba_sd"] == pytest.approx(75.5, abs=0.1)
    assert ba["ba_loa_low"] == pytest.approx(ba["ba_bias"] - 1.959964 * ba["ba_sd"])
    # CI of the bias: the one-sample t interval of the differences (scipy).
    from scipy import stats

    ci = stats.ttest_1samp(WRIGHT - MINI, 0).confidence_interval()
    assert (ba["ba_bias_ci_low"], ba["ba_bias_ci_high"]) == pytest.approx((ci.low, ci.high))
    # CI of a limit: +/- t(n-1) * sqrt(3 s^2 / n) (Bland & Altman 1999).
    half = stats.t.ppf(0.975, 16) * np.sqrt(3 * ba["ba_sd"] ** 2 / 17)
    assert ba["ba_loa_high_ci_high"] - ba["ba_loa_high"] == pytest.approx(half)


def test_agreement_row_log_scale_spearman_and_errors():
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error

    # Spearman's worked example (IQ vs hours of TV a week): rho = -29/165.
    iq = np.array([106, 100, 86, 101, 99, 103, 97, 113, 112, 110], float)
    tv = np.array([7, 27, 2, 50, 28, 29, 20, 12, 6, 17], float)
    row = agreement_row(tv, iq)
    assert row["spearman_rho"] == pytest.approx(-29 / 165)
    assert row["spearman_p"] == pytest.approx(spearmanr(tv, iq).pvalue)
    assert row["mae"] == pytest.approx(mean_absolute_error(iq, tv))
    # A model that scores everything at half: log-scale bias is ln((x/2 + 1)/(x + 1)), the ratio
    # about 0.5 for large scores; relative error exactly 50 %.
    ref = np.array([0.0, 20, 150, 400, 900, 1500])
    r = agreement_row(ref / 2, ref)
    assert r["ba_log_bias"] == pytest.approx(np.mean(np.log1p(ref / 2) - np.log1p(ref)))
    assert r["ba_log_bias_ratio"] == pytest.approx(np.exp(r["ba_log_bias"]))
    assert r["n_relative"] == 5 and r["median_abs_rel_error"] == pytest.approx(0.5)
    assert r["ba_bias"] == pytest.approx(-np.mean(ref) / 2)


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_reclassification_table_and_weighted_kappa_match_sklearn(weights):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(9)
    ref = rng.integers(0, 5, 80)
    pred = np.clip(ref + rng.choice([-1, 0, 0, 0, 1, 2], 80), 0, 4)
    r = reclassification([CATEGORIES[i] for i in pred], [CATEGORIES[i] for i in ref], CATEGORIES)
    t = np.array(r["table"])
    assert t.shape == (5, 5) and t.sum() == 80
    assert t[2, 3] == int(np.sum((ref == 2) & (pred == 3)))  # rows = reference, columns = prediction
    assert r["exact_agreement"] == pytest.approx(np.mean(pred == ref))
    assert r["pred_higher"] == pytest.approx(np.mean(pred > ref)) and r["pred_lower"] == pytest.approx(np.mean(pred < ref))
    assert r[f"kappa_{weights}"] == pytest.approx(cohen_kappa_score(ref, pred, labels=range(5), weights=weights))
    sm = cohens_kappa(t, wt=weights)
    assert r[f"kappa_{weights}_se"] == pytest.approx(sm.std_kappa)
    assert r[f"kappa_{weights}_ci_low"] == pytest.approx(max(-1, sm.kappa_low))


def test_reclassification_keeps_unobserved_levels_and_flags_one_sided_errors():
    # Every study placed one category too low: exact agreement 0, weighted kappa well below 1.
    ref = ["11-100", "101-400", "101-400", ">400"]
    pred = ["1-10", "11-100", "11-100", "101-400"]
    r = reclassification(pred, ref, CATEGORIES)
    assert r["exact_agreement"] == 0 and r["pred_lower"] == 1 and r["pred_higher"] == 0
    assert r["levels"] == list(CATEGORIES) and np.array(r["table"])[0].sum() == 0
    assert r["kappa_quadratic"] > r["kappa_linear"]  # near misses weigh less under quadratic weights
