"""Per-artery severity grade (none / mild / moderate / severe) from calcium volume.

A logit ordinal model per artery, P(grade <= k) = logistic(cut_k - B * volume_ml), fitted with
statsmodels' OrderedModel on radiologist grades (``SeverityModel.fit``; CLI ``cacpipe severity
fit``). An assessed artery with no calcium (volume 0) is graded ``none`` by rule.

The default model (cacpipe/data/severity_default.json) is NOT fitted on radiologist data; its
``provenance`` text says what it is built from. Refit it on local grades before relying on it.
``SeverityModel.fitted_on_grades`` says which kind a model is: results record it, and the DICOM SR
carries a grade only from a fitted model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputDataError
from ..labels import ARTERIES
from ..units import MM3_PER_ML
from .ordinal import GRADES, fit_ordinal, normalise_grade, ordinal_probabilities

SCHEMA = "cacpipe.severity/1"
DEFAULT_RESOURCE = "severity_default.json"


@dataclass
class ArteryModel:
    """Parameters of one artery's ordinal model (plus fit statistics when it was fitted)."""

    levels: list[str]
    coef: float  # B, per mL of calcium volume
    cutpoints: list[float]
    stats: dict = field(default_factory=dict)  # se, ci_low, ci_high, wald, p, n, converged

    def to_dict(self) -> dict:
        return {"levels": self.levels, "coef": self.coef, "cutpoints": self.cutpoints, **self.stats}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> ArteryModel:
        try:
            levels = [str(v) for v in d["levels"]]
            coef = float(d["coef"])
            cuts = [float(c) for c in d["cutpoints"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: needs levels, coef and cutpoints ({exc})") from exc
        if any(v not in GRADES for v in levels) or levels != [g for g in GRADES if g in levels]:
            raise ConfigError(f"{where}: levels {levels} must be an ordered subset of {list(GRADES)}")
        if len(cuts) != len(levels) - 1 or any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
            raise ConfigError(f"{where}: needs {len(levels) - 1} increasing cutpoints, got {cuts}")
        stats = {k: v for k, v in d.items() if k not in ("levels", "coef", "cutpoints")}
        return cls(levels, coef, cuts, stats)


@dataclass
class SeverityModel:
    """Per-artery ordinal severity models with their provenance."""

    arteries: dict[str, ArteryModel]
    provenance: str
    source: str = ""  # where it was loaded from
    fitted_on_grades: bool = False  # True only for a model fitted on radiologist grades (``fit``)

    # --- I/O -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, source: str = "") -> SeverityModel:
        where = source or "severity model"
        if d.get("schema") != SCHEMA:
            raise ConfigError(f"{where}: schema must be {SCHEMA!r}, got {d.get('schema')!r}")
        if d.get("predictor", "calcium_volume_ml") != "calcium_volume_ml":
            raise ConfigError(f"{where}: only predictor 'calcium_volume_ml' is supported")
        arts = d.get("arteries") or {}
        missing = [a for a in ARTERIES if a not in arts]
        if missing:
            raise ConfigError(f"{where}: no model for {missing}; every artery {list(ARTERIES)} needs one")
        models = {a: ArteryModel.from_dict(arts[a], f"{where} [{a}]") for a in ARTERIES}
        # Files written by `cacpipe severity fit` before the key existed carry per-artery fit statistics.
        fitted = d.get("fitted_on_grades", all("n" in m.stats and "converged" in m.stats for m in models.values()))
        if not isinstance(fitted, bool):
            raise ConfigError(f"{where}: fitted_on_grades must be true or false, got {fitted!r}")
        return cls(models, str(d.get("provenance", "")), source, fitted)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "predictor": "calcium_volume_ml",
            "distribution": "logit",
            "formula": "P(grade <= k) = logistic(cut_k - coef * calcium_volume_ml); volume 0 -> 'none'",
            "provenance": self.provenance,
            "fitted_on_grades": self.fitted_on_grades,
            "arteries": {a: m.to_dict() for a, m in self.arteries.items()},
        }

    @classmethod
    def load(cls, path: str | Path) -> SeverityModel:
        from ..jsonfile import read_json

        return cls.from_dict(read_json(path, "severity model file", ConfigError), str(path))

    @classmethod
    def load_default(cls) -> SeverityModel:
        """The packaged default (literature coefficients + assumed cut points; see its provenance)."""
        path = Path(__file__).resolve().parent.parent / "data" / DEFAULT_RESOURCE
        return cls.from_dict(json.loads(path.read_text()), f"cacpipe/data/{DEFAULT_RESOURCE}")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    # --- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, df, provenance: str = "") -> SeverityModel:
        """Fit one logit OrderedModel per artery on radiologist grades.

        ``df`` (pandas DataFrame) in long form — columns ``artery``, ``grade`` and one of
        ``volume_ml``, ``calcium_volume_ml``, ``volume_mm3``, ``calcium_volume_mm3`` — or wide
        form — ``<ARTERY>_grade`` plus ``<ARTERY>_calcium_volume_mm3`` (or ``_ml``) per artery.
        """
        long = severity_table(df)
        models: dict[str, ArteryModel] = {}
        for artery in ARTERIES:
            sub = long[long["artery"] == artery]
            if sub.empty:
                raise InputDataError(f"no graded rows for {artery}; the fit needs rows for {list(ARTERIES)}")
            r = fit_ordinal(sub["volume_ml"].to_numpy(), sub["grade"].tolist(), name=artery)
            stats = {k: r[k] for k in ("se", "ci_low", "ci_high", "wald", "p", "n", "converged")}
            models[artery] = ArteryModel(r["levels"], r["coef"], r["cutpoints"], stats)
        text = provenance or f"fitted with statsmodels OrderedModel (logit) on {len(long)} graded arteries"
        return cls(models, text, fitted_on_grades=True)

    def describe(self) -> dict:
        """What a result records about the severity model: where it came from and whether it was
        fitted on local radiologist grades."""
        return {"source": self.source, "fitted_on_grades": self.fitted_on_grades,
                "provenance": self.provenance.split(". ")[0][:200]}

    # --- prediction ----------------------------------------------------------------------
    def predict(self, artery: str, volume_ml: float | None) -> tuple[str | None, dict[str, float] | None]:
        """(grade, probabilities per grade) for one artery; (None, None) when volume is None."""
        if artery not in self.arteries:
            raise ConfigError(f"severity model has no artery {artery!r}; known: {list(self.arteries)}")
        if volume_ml is None:
            return None, None
        v = float(volume_ml)
        if not np.isfinite(v) or v < 0:
            raise InputDataError(f"calcium volume must be a finite number >= 0 mL, got {volume_ml!r}")
        if v == 0:
            return "none", {g: (1.0 if g == "none" else 0.0) for g in GRADES}
        m = self.arteries[artery]
        p = ordinal_probabilities(m.coef, m.cutpoints, v)
        probs = {g: 0.0 for g in GRADES}
        probs.update({lv: float(pv) for lv, pv in zip(m.levels, p, strict=True)})
        return m.levels[int(np.argmax(p))], probs

    def boundaries_ml(self, artery: str) -> list[float]:
        """Volumes (mL) where P(grade <= k) = 0.5, i.e. cut_k / B (the 'typical' grade boundaries)."""
        m = self.arteries[artery]
        return [c / m.coef for c in m.cutpoints]


def severity_table(df) -> pd.DataFrame:  # noqa: F821 (pandas imported lazily)
    """Normalise a grades CSV (long or wide) to columns artery, grade, volume_ml."""
    import pandas as pd

    cols = set(df.columns)
    if "artery" in cols and "grade" in cols:
        vol = None
        for name, scale in (("volume_ml", 1.0), ("calcium_volume_ml", 1.0),
                            ("volume_mm3", 1 / MM3_PER_ML), ("calcium_volume_mm3", 1 / MM3_PER_ML)):
            if name in cols:
                vol = pd.to_numeric(df[name], errors="coerce") * scale
                break
        if vol is None:
            raise InputDataError("grades table has artery and grade but no volume column; add one of "
                                 "volume_ml, calcium_volume_ml, volume_mm3, calcium_volume_mm3")
        out = pd.DataFrame({"artery": df["artery"].astype(str).str.strip().str.upper(),
                            "grade": [normalise_grade(g) for g in df["grade"]], "volume_ml": vol})
    else:
        parts = []
        for a in ARTERIES:
            gcol = f"{a}_grade"
            if gcol not in cols:
                continue
            if f"{a}_calcium_volume_ml" in cols:
                vol = pd.to_numeric(df[f"{a}_calcium_volume_ml"], errors="coerce")
            elif f"{a}_calcium_volume_mm3" in cols:
                vol = pd.to_numeric(df[f"{a}_calcium_volume_mm3"], errors="coerce") / MM3_PER_ML
            else:
                raise InputDataError(f"grades table has {gcol} but no {a}_calcium_volume_mm3 or "
                                     f"{a}_calcium_volume_ml column")
            parts.append(pd.DataFrame({"artery": a, "grade": [normalise_grade(g) for g in df[gcol]],
                                       "volume_ml": vol.to_numpy()}))
        if not parts:
            raise InputDataError(
                "grades table needs either columns artery, grade, volume_ml (long form) or "
                "<ARTERY>_grade with <ARTERY>_calcium_volume_mm3 per artery (wide form); found "
                f"columns {sorted(cols)}")
        out = pd.concat(parts, ignore_index=True)
    bad = sorted(set(out["artery"]) - set(ARTERIES))
    if bad:
        raise InputDataError(f"unknown artery names {bad}; expected {list(ARTERIES)}")
    out = out[out["grade"].notna() & out["volume_ml"].notna()]
    if (out["volume_ml"] < 0).any():
        raise InputDataError("grades table has negative calcium volumes")
    return out.reset_index(drop=True)
