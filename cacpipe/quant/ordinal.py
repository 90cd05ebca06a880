"""Ordinal (proportional-odds, logit) regression of a grade on calcium volume, via statsmodels.

Model: P(grade <= k | x) = logistic(cut_k - B * x), x = calcium volume in mL. ``B`` is the
number the source paper reports per artery (28.31 RCA, 28.65 LAD, 77.52 LCX).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import InputDataError

GRADES: tuple[str, ...] = ("none", "mild", "moderate", "severe")
"""Ordinal severity grades (SCCT/STR visual grading of non-gated CT), lowest first."""


def normalise_grade(value) -> str | None:
    """Grade text -> one of :data:`GRADES` (case/space-insensitive; 0-3 accepted); None for blank."""
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip().lower()
    if text in ("", "nan", "na", "n/a", "none_assessed"):
        return None
    if text in GRADES:
        return text
    if text in ("0", "1", "2", "3", "0.0", "1.0", "2.0", "3.0"):
        return GRADES[int(float(text))]
    raise InputDataError(f"unknown severity grade {value!r}; expected one of {list(GRADES)} (or 0-3)")


def fit_ordinal(volume_ml: Sequence[float], grades: Sequence[str], name: str = "") -> dict:
    """Fit the logit ordinal model of ``grades`` on ``volume_ml`` (statsmodels OrderedModel).

    Returns ``{levels, coef, se, ci_low, ci_high, wald, p, cutpoints, n, converged}``; ``wald`` is
    the Wald chi-square (1 df) of B, ``p`` its p-value, CI the 95 % Wald interval.
    """
    import pandas as pd
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    x = np.asarray(volume_ml, dtype=float)
    g = [normalise_grade(v) for v in grades]
    ok = np.isfinite(x) & np.array([v is not None for v in g])
    x = x[ok]
    g = [v for v, k in zip(g, ok, strict=True) if k]
    levels = [lv for lv in GRADES if lv in set(g)]
    where = f" for {name}" if name else ""
    if len(levels) < 2:
        raise InputDataError(f"ordinal regression{where} needs at least two different grades; got {levels}")
    if len(x) < len(levels) + 2:
        raise InputDataError(f"ordinal regression{where} needs more rows than parameters; got {len(x)} rows")
    if np.ptp(x) == 0:
        raise InputDataError(f"ordinal regression{where}: all volumes are equal ({x[0]} mL), nothing to fit")
    endog = pd.Series(pd.Categorical(g, categories=levels, ordered=True))
    exog = pd.DataFrame({"volume_ml": x})
    model = OrderedModel(endog, exog, distr="logit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow/convergence chatter; convergence is reported below
        res = model.fit(method="bfgs", disp=False, maxiter=2000)
        se = float(np.sqrt(res.cov_params().iloc[0, 0]))
    coef = float(res.params.iloc[0])
    cuts = model.transform_threshold_params(np.asarray(res.params))[1:-1]
    from scipy import stats

    z = coef / se if se > 0 else float("inf")
    return {
        "levels": levels,
        "coef": coef,
        "se": se,
        "ci_low": coef - 1.959963984540054 * se,
        "ci_high": coef + 1.959963984540054 * se,
        "wald": float(z * z),
        "p": float(2 * stats.norm.sf(abs(z))),
        "cutpoints": [float(c) for c in cuts],
        "n": int(len(x)),
        "converged": bool(res.mle_retvals.get("converged", True)),
    }


def ordinal_probabilities(coef: float, cutpoints: Sequence[float], x: float) -> np.ndarray:
    """Probabilities of each level at ``x`` under P(Y <= k) = logistic(cut_k - coef * x)."""
    from scipy.special import expit  # the logistic function without overflow for large volumes

    cum = expit(np.asarray(cutpoints, dtype=float) - coef * float(x))
    cum = np.concatenate([[0.0], cum, [1.0]])
    return np.clip(np.diff(cum), 0.0, 1.0)
