"""One CT + its six-class label map -> the ``arteries`` and ``total`` parts of the result JSON."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import GeometryError, InputDataError
from ..labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from ..units import mm3_to_ml
from ..volume import Volume
from .agatston import _as_label_array, calcium_stats_by_artery, label_boxes
from .categories import cac_drs, category
from .severity import SeverityModel

ARTERY_KEYS: tuple[str, ...] = (
    "assessed", "calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "peak_hu", "mass_mg",
    "grade", "grade_probabilities",
)
TOTAL_KEYS: tuple[str, ...] = (
    "calcium_volume_mm3", "calcium_volume_ml", "agatston", "lesions", "category", "cac_drs",
    "vessels_with_calcium", "mass_mg", "peak_hu", "assessed_arteries", "complete",
)


def not_assessed_artery() -> dict:
    """The entry of an artery that was not assessed: every number null, never 0."""
    return {k: None for k in ARTERY_KEYS} | {"assessed": False}


def quantify(
    ct: Volume,
    labels: Volume,
    calibration_factor: float | None = None,
    assessed: Mapping[str, bool] | None = None,
    severity: SeverityModel | None = None,
) -> dict:
    """Per-artery and total calcium numbers of one scan (see docs/quantification.md).

    ``labels`` is the six-class map on the same (original) grid as ``ct``. ``assessed`` overrides
    per artery whether it was assessed; by default an artery is assessed when the map holds any
    voxel of it (artery or its calcium): an artery the segmentation did not find is "not
    assessed" (null numbers), not "no calcium". ``calibration_factor`` (mg per mL per HU) enables
    the mass score. ``severity`` defaults to the packaged model (see its provenance).
    Returns ``{"arteries": {artery: {...}}, "total": {...}}``.
    """
    if ct.shape != labels.shape:
        raise GeometryError(f"CT shape {ct.shape} and label map shape {labels.shape} differ; quantification "
                            "needs the labels on the original CT grid (uncrop/resample them first)")
    if not ct.same_grid(labels, tol=1e-3):
        raise GeometryError("CT and label map have the same shape but different spacing/origin/direction "
                            f"(CT spacing {ct.spacing_zyx}, labels {labels.spacing_zyx})")
    if calibration_factor is not None and not calibration_factor > 0:
        raise InputDataError(f"calibration factor must be > 0 mg/(mL*HU), got {calibration_factor}")
    if assessed is not None:
        unknown = set(assessed) - set(ARTERIES)
        if unknown:
            raise InputDataError(f"assessed names unknown arteries {sorted(unknown)}; expected {list(ARTERIES)}")
    lab = _as_label_array(labels.array)
    boxes = label_boxes(lab)
    stats = calcium_stats_by_artery(ct.array, lab, ct.spacing_zyx, boxes=boxes)
    model = severity or SeverityModel.load_default()

    arteries: dict[str, dict] = {}
    for a in ARTERIES:
        found = boxes[ARTERY_ID[a]] is not None or boxes[CALCIUM_ID[a]] is not None
        if not (assessed.get(a, found) if assessed is not None else found):
            arteries[a] = not_assessed_artery()
            continue
        s = stats[a]
        grade, probs = model.predict(a, s.volume_ml)
        arteries[a] = {
            "assessed": True,
            "calcium_volume_mm3": s.volume_mm3,
            "calcium_volume_ml": s.volume_ml,
            "agatston": s.agatston,
            "lesions": s.lesions,
            "peak_hu": s.peak_hu,
            "mass_mg": s.mass_mg(calibration_factor, ct.spacing_zyx),
            "grade": grade,
            "grade_probabilities": probs,
        }
    return {"arteries": arteries, "total": total_of(arteries)}


def total_of(arteries: Mapping[str, dict]) -> dict:
    """Totals over the assessed arteries. Incomplete (some artery not assessed): sums are lower
    bounds, ``complete`` is False and category / CAC-DRS are null rather than possibly too low."""
    done = [a for a in ARTERIES if a in arteries and arteries[a].get("assessed")]
    if not done:
        return {k: None for k in TOTAL_KEYS} | {"assessed_arteries": [], "complete": False}
    complete = len(done) == len(ARTERIES)
    vol = sum(arteries[a]["calcium_volume_mm3"] for a in done)
    aga = float(sum(arteries[a]["agatston"] for a in done))
    masses = [arteries[a]["mass_mg"] for a in done]
    peaks = [arteries[a]["peak_hu"] for a in done if arteries[a]["peak_hu"] is not None]
    return {
        "calcium_volume_mm3": vol,
        "calcium_volume_ml": mm3_to_ml(vol),
        "agatston": aga,
        "lesions": int(sum(arteries[a]["lesions"] for a in done)),
        "category": category(aga) if complete else None,
        "cac_drs": cac_drs(aga, [arteries[a]["agatston"] for a in done]) if complete else None,
        "vessels_with_calcium": sum(1 for a in done if arteries[a]["agatston"] > 0),
        "mass_mg": None if any(m is None for m in masses) else float(sum(masses)),
        "peak_hu": max(peaks) if peaks else None,
        "assessed_arteries": done,
        "complete": complete,
    }
