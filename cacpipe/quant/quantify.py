"""One CT + its six-class label map -> per-artery calcium numbers and the lesion list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import GeometryError, InputDataError
from ..labels import ARTERIES, ARTERY_ID, CALCIUM_ID
from ..record import ArteryResult
from ..units import mm3_to_ml
from ..volume import Volume
from .agatston import _as_label_array, calcium_stats_by_artery, label_boxes
from .lesions import Lesion, find_lesions
from .severity import SeverityModel


@dataclass
class Quantities:
    """What quantification measured: per artery (report order) and every lesion."""

    arteries: dict[str, ArteryResult]
    lesions: list[Lesion]


def quantify(
    ct: Volume,
    labels: Volume,
    calibration_factor: float | None = None,
    assessed: Mapping[str, bool] | None = None,
    severity: SeverityModel | None = None,
) -> Quantities:
    """Per-artery calcium numbers and lesions of one scan (see docs/quantification.md).

    ``labels`` is the six-class map on the same (original) grid as ``ct``. ``assessed`` overrides
    per artery whether it was assessed; by default an artery is assessed when the map holds any
    voxel of it (artery or its calcium): an artery the segmentation did not find is "not
    assessed" (null numbers), not "no calcium". ``calibration_factor`` (mg per mL per HU) enables
    the mass score. ``severity`` defaults to the packaged model (see its provenance). Validity
    (``agatston_valid``) and totals are decided later, once, by :func:`cacpipe.quant.validity.finalise`.
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
    lesions, _ = find_lesions(ct.array, lab, ct.spacing_zyx)
    model = severity or SeverityModel.load_default()

    arteries: dict[str, ArteryResult] = {}
    for a in ARTERIES:
        found = boxes[ARTERY_ID[a]] is not None or boxes[CALCIUM_ID[a]] is not None
        if not (assessed.get(a, found) if assessed is not None else found):
            arteries[a] = ArteryResult.not_assessed()
            continue
        s = stats[a]
        grade, probs = model.predict(a, s.volume_ml)
        arteries[a] = ArteryResult(
            assessed=True,
            calcium_volume_mm3=s.volume_mm3,
            calcium_volume_ml=mm3_to_ml(s.volume_mm3),
            agatston=s.agatston,
            lesions=s.lesions,
            peak_hu=s.peak_hu,
            mass_mg=s.mass_mg(calibration_factor, ct.spacing_zyx),
            grade=grade,
            grade_probabilities=probs,
        )
    return Quantities(arteries, [les for les in lesions if arteries[les.artery].assessed])
