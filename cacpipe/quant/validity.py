"""What flags mean for the numbers, decided once per study (:func:`finalise`).

- ``not_assessable`` for the study (severity invalid) -> every artery not assessed;
  for one artery -> that artery not assessed (numbers None, never 0);
- an artery the segmentation did not find -> a ``not_assessable`` flag naming it;
- ``contrast_suspected`` (from DICOM tags or the blood pool) -> no artery's Agatston is valid;
- ``stent_suspected`` (severity invalid) in an artery -> that artery's Agatston is not valid (and the
  total's: metal). A stent the device check found (:mod:`cacpipe.quant.devices`) is a warning: its
  metal was taken out of the count (``device_calcium_excluded`` says what), so the numbers stay valid;
- an ``invalid`` attribution flag (``artery_implausible_position`` for an artery,
  ``dextrocardia_suspected`` for every artery) -> that artery's Agatston is not valid, the total
  stays valid: the calcium is coronary, only which artery holds it is in doubt;
- totals are sums over the assessed arteries; the Agatston category and CAC-DRS are given only
  when every artery was assessed and no invalidating flag applies (a possibly-too-low or
  contrast-inflated score never gets a risk category);
- status: ``not_assessable`` when no artery is left, else ``done`` (``failed`` stays failed).

Numbers are never hidden silently: each change comes with its flag.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import flags as F
from ..flags import Flag, Severity
from ..labels import ARTERIES
from ..record import ArteryResult, Status, StudyResult, TotalResult
from ..units import mm3_to_ml
from .categories import cac_drs, category

# Flags that put an artery's attribution in doubt (its own numbers), not the study's total.
ATTRIBUTION_CODES = frozenset({F.ARTERY_IMPLAUSIBLE_POSITION, F.DEXTROCARDIA_SUSPECTED})


def total_of(arteries: Mapping[str, ArteryResult]) -> TotalResult:
    """Sums over the assessed arteries. Incomplete (some artery not assessed): sums are lower
    bounds, ``complete`` is False and category / CAC-DRS are None rather than possibly too low."""
    done = [a for a in ARTERIES if a in arteries and arteries[a].assessed]
    if not done:
        return TotalResult()
    complete = len(done) == len(ARTERIES)
    vol = float(sum(arteries[a].calcium_volume_mm3 or 0.0 for a in done))
    aga = float(sum(arteries[a].agatston or 0.0 for a in done))
    masses = [arteries[a].mass_mg for a in done]
    peaks = [arteries[a].peak_hu for a in done if arteries[a].peak_hu is not None]
    return TotalResult(
        calcium_volume_mm3=vol,
        calcium_volume_ml=mm3_to_ml(vol),
        agatston=aga,
        lesions=int(sum(arteries[a].lesions or 0 for a in done)),
        category=category(aga) if complete else None,
        cac_drs=cac_drs(aga, [arteries[a].agatston or 0.0 for a in done]) if complete else None,
        vessels_with_calcium=sum(1 for a in done if (arteries[a].agatston or 0.0) > 0),
        mass_mg=None if any(m is None for m in masses) else float(sum(masses)),  # type: ignore[arg-type]
        peak_hu=max(peaks) if peaks else None,
        assessed_arteries=done,
        complete=complete,
    )


def finalise(result: StudyResult) -> StudyResult:
    """Apply what ``result.flags`` mean to its numbers, totals and status (in place; returns it).

    Call it once, after every flag of the study (ingestion, stage 1, segmentation,
    quantification) is in ``result.flags``. Duplicate flags are merged.
    """
    merged: list[Flag] = []
    for f in result.flags:
        if f not in merged:
            merged.append(f)
    arteries = {a: result.arteries.get(a) or ArteryResult.not_assessed() for a in ARTERIES}
    study_na = [f for f in merged if f.code == F.NOT_ASSESSABLE and f.artery is None and f.severity == Severity.INVALID]
    if study_na and result.status != "failed" and not result.reason:
        result.reason = study_na[0].message  # what the CLI line and the manifest say
    for a in ARTERIES:
        artery_na = any(f.code == F.NOT_ASSESSABLE and f.artery == a for f in merged)
        if study_na or artery_na:
            arteries[a] = ArteryResult.not_assessed()
        if not arteries[a].assessed and not artery_na:
            why = "the whole study is not assessable" if study_na else "the artery was not found by the segmentation"
            merged.append(Flag(F.NOT_ASSESSABLE, f"{a} not assessed ({why}): its numbers are null, not 0",
                               "invalid", a))

    contrast = any(f.code == F.CONTRAST_SUSPECTED for f in merged)
    stents = {f.artery for f in merged if f.code == F.STENT_SUSPECTED and f.artery and f.severity == Severity.INVALID}
    misplaced = {a for f in merged if f.code in ATTRIBUTION_CODES and f.severity == Severity.INVALID
                 for a in ([f.artery] if f.artery else ARTERIES)}
    for a in ARTERIES:
        arteries[a].agatston_valid = arteries[a].assessed and not contrast and a not in (stents | misplaced)
    total = total_of(arteries)
    total.agatston_valid = total.complete and not contrast and not stents
    if not total.agatston_valid:
        total.category = None
        total.cac_drs = None
    reasons = (["contrast suspected: Agatston is defined on non-contrast CT only"] if contrast else []) + \
        [f"stent suspected in {a}" for a in sorted(stents)] + \
        ([f"per-artery numbers not valid for {', '.join(a for a in ARTERIES if a in misplaced)} (artery "
          "attribution implausible); the total is"] if misplaced and total.agatston_valid else []) + \
        ([] if total.complete else ["not every artery was assessed: totals are lower bounds"])
    total.agatston_note = "; ".join(reasons) or None

    result.arteries = arteries
    result.total = total
    result.flags = merged
    result.lesions = [les for les in result.lesions if arteries[les.artery].assessed]
    if result.status != "failed":
        result.status = Status.DONE if total.assessed_arteries else Status.NOT_ASSESSABLE
    return result
