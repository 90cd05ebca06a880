"""DICOM outputs a PACS can show, written with highdicom.

- SEG: six binary segments (label ids 1-6 = segment numbers 1-6), referencing the source series;
  calcium segments hold exactly the counted calcium (HU >= 130 inside a calcium label).
- SR: Comprehensive 3D SR, TID 1500 measurement report: per artery calcium volume (mm3, 0.1),
  Agatston score (0.1), lesion count and the lesions with the PACS image they are largest on,
  each group pointing at its calcium segment in the SEG; totals with Agatston category and
  CAC-DRS (or why they are not given); a severity grade only from a model fitted on local grades;
  with a prior study (``cacpipe progression``: cacpipe.review.prior), per artery and in total the
  prior values and the change, the prior's SR as other evidence.
- SC: secondary capture (RGB) of each overlay PNG.

All three copy patient and study identifiers from the source CT, so they file under the same
study in the PACS; all three state the result's provenance (research use only, demo model, ...)
in their series description and a text item, and name the model and cacpipe version. Re-runs
differ in SeriesDate/SeriesTime and their description's run time. Codes: SNOMED CT for anatomy
and findings, DCM 112058 "Calcium score" with method DCM 112055 "Agatston scoring method", SCT
246206008 "Number of lesions"; what has no standard code is a TEXT "Finding" that names itself.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .. import __version__
from ..errors import GeometryError, InputDataError
from ..files import make_private_dir, protect
from ..flags import LOSSY_COMPRESSION
from ..labels import ARTERIES, CALCIUM_ID, LABEL_CLASSES
from ..record import RESEARCH_USE, Provenance, StudyResult
from ..volume import Volume

MANUFACTURER = "cacpipe"
ARTERY_CODES: dict[str, Code] = {
    "RCA": codes.SCT.RightCoronaryArtery,
    "LAD": codes.SCT.LeftAnteriorDescendingCoronaryArtery,
    "LCX": codes.SCT.CircumflexCoronaryArtery,
}
CALCIFICATION = Code("18115005", "SCT", "Pathologic calcification")
CT_CHEST = Code("169069000", "SCT", "Computed tomography of chest")
GRADE_CODES: dict[str, Code] = {
    "mild": codes.SCT.Mild, "moderate": codes.SCT.Moderate, "severe": codes.SCT.Severe,
    "none": codes.SCT.Absent,
}
NUMBER_OF_LESIONS = Code("246206008", "SCT", "Number of lesions")
LESIONS_UNIT = Code("{lesions}", "UCUM", "lesions")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12
# Category, CAC-DRS, lesions and "not assessed" have no standard concept: they are text findings
# that say what they are ("Agatston category 11-100"); statement and flags are comments.
FINDING = codes.DCM.Finding
COMMENT = codes.DCM.Comment
DESCRIPTION_MAX = 64  # LO


def series_description(prov: Provenance, kind: str, stamp: _dt.datetime) -> str:
    """A series description that cannot be mistaken and tells re-runs apart, at most 64 characters:
    'DEMO NOT CLINICAL CAC SEG model e60903488e65 cacpipe 0.1.0 10:15:02' (the model's dataset name
    is added when it fits)."""
    parts = [prov.tag(), f"CAC {kind}", prov.model_short.split("_", 1)[-1], f"model {prov.model_id[:8] or '?'}",
             f"cacpipe {prov.cacpipe_version or '?'}", stamp.strftime("%H:%M:%S")]
    text = " ".join(parts)
    if len(text) > DESCRIPTION_MAX:  # the dataset name goes first; the id and version stay
        text = " ".join(parts[:2] + parts[3:])
    return text[:DESCRIPTION_MAX]


def short_statement(prov: Provenance) -> str:
    """The statement in 64 characters (LO attributes such as a SEG's ContentDescription)."""
    return ("DEMO MODEL - NOT FOR CLINICAL USE" if prov.model_is_demo else RESEARCH_USE)[:DESCRIPTION_MAX]


def _stamp(ds: pydicom.Dataset, stamp: _dt.datetime) -> None:
    ds.SeriesDate = stamp.strftime("%Y%m%d")
    ds.SeriesTime = stamp.strftime("%H%M%S")


def _algorithm(prov: Provenance):
    import highdicom as hd

    return hd.AlgorithmIdentificationSequence(name=_algorithm_name(prov), family=codes.cid7162.ArtificialIntelligence,
                                              version=_algorithm_version(prov))


def _algorithm_name(prov: Provenance) -> str:
    return f"cacpipe {prov.model_short}"[:DESCRIPTION_MAX]


def _algorithm_version(prov: Provenance) -> str:
    card = f"; card {prov.model_card_id}" if prov.model_card_id else ""
    return f"model {prov.model_id or '?'}{card}; cacpipe {prov.cacpipe_version or __version__}"[:DESCRIPTION_MAX]


def check_sources(labels: Volume, sources: list[pydicom.Dataset]) -> None:
    """The source slices must be the labels' grid, in volume order (slice k = array[k])."""
    nz, ny, nx = labels.shape
    if len(sources) != nz:
        raise GeometryError(f"{len(sources)} source DICOM slices but the label map has {nz} slices")
    for k, ds in enumerate(sources):
        if int(ds.Rows) != ny or int(ds.Columns) != nx:
            raise GeometryError(f"source slice {k} is {ds.Rows}x{ds.Columns}, labels are {ny}x{nx}")
    z = labels.index_to_physical(np.array([[0, 0, 0], [nz - 1, 0, 0]]))
    first = np.asarray([float(v) for v in sources[0].ImagePositionPatient])
    last = np.asarray([float(v) for v in sources[-1].ImagePositionPatient])
    if not (np.allclose(first, z[0], atol=0.05) and np.allclose(last, z[-1], atol=0.05)):
        raise GeometryError("source DICOM slices are not in the label map's order or position "
                            f"(first slice at {first.round(2).tolist()}, label grid starts at {z[0].round(2).tolist()}); "
                            "pass them sorted like the volume")


def make_seg(labels: Volume, sources: list[pydicom.Dataset], series_number: int, result: StudyResult,
             stamp: _dt.datetime | None = None):
    """A binary DICOM SEG with the six label classes as segments (``labels`` as drawn: calcium segments
    hold the counted calcium), stating the result's provenance."""
    import highdicom as hd

    prov = result.provenance()
    stamp = stamp or _dt.datetime.now()
    segs = []
    for c in LABEL_CLASSES:
        artery_code = ARTERY_CODES[c.artery]
        label = f"{c.artery} calcium" if c.is_calcium else ("LAD (incl. left main)" if c.artery == "LAD" else c.artery)
        segs.append(hd.seg.SegmentDescription(
            segment_number=c.id, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure if c.is_calcium
            else codes.SCT.AnatomicalStructure,
            segmented_property_type=CALCIFICATION if c.is_calcium else artery_code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(prov),
            tracking_uid=hd.UID(), tracking_id=f"cacpipe {c.name}",
            anatomic_regions=[artery_code] if c.is_calcium else None,
            display_color=hd.color.CIELabColor.from_rgb(*c.colour) if hasattr(hd.color.CIELabColor, "from_rgb")
            else None,
        ))
    # The label map itself, not a one-hot stack: highdicom reads a 3D unsigned map as "pixel value =
    # segment number" (segments cannot overlap, so it skips the overlap check); same frames, and
    # no (z, y, x, 6) boolean copy (~20 s and 600 MB less on a 512x512x400 scan, docs/performance.md).
    label_map = np.asarray(labels.array)
    lo, hi = int(label_map.min(initial=0)), int(label_map.max(initial=0))
    if lo < 0 or hi > max(c.id for c in LABEL_CLASSES):
        raise InputDataError(f"label map holds values {lo}..{hi}; the label classes are "
                             f"{[c.id for c in LABEL_CLASSES]}")
    if label_map.dtype != np.uint8:
        label_map = label_map.astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=label_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segs, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=_algorithm_name(prov), software_versions=_algorithm_version(prov),
        device_serial_number="0", series_description=series_description(prov, "SEG", stamp),
        content_label="CORONARY", content_description=short_statement(prov), omit_empty_frames=True,
    )
    _stamp(seg, stamp)
    seg.ImageComments = prov.line()
    return seg


def _num(name: Code, value: float, unit: Code, method: Code | None = None):
    import highdicom as hd

    return hd.sr.Measurement(name=name, value=value, unit=unit, method=method)


def _text(name: Code, value: str):
    import highdicom as hd

    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _round1(v: float) -> float:
    return float(round(float(v), 1))


def _calcium_measurements(volume_mm3: float | None, agatston: float | None, lesions: int | None) -> list:
    """Volume (mm3, 0.1), Agatston (0.1) and lesion count, as a reader would write them."""
    out = []
    if volume_mm3 is not None:
        out.append(_num(codes.SCT.Volume, _round1(volume_mm3), codes.UCUM.CubicMillimeter))
    if agatston is not None:
        out.append(_num(codes.DCM.CalciumScore, _round1(agatston), codes.UCUM.NoUnits, codes.DCM.AgatstonScoringMethod))
    if lesions is not None:
        out.append(_num(NUMBER_OF_LESIONS, int(lesions), LESIONS_UNIT))
    return out


def _lesion_text(result: StudyResult, les) -> str:
    return (f"{les.name}: {les.volume_mm3:.1f} mm3, Agatston {les.agatston:.1f}, peak {les.peak_hu:.0f} HU; "
            f"largest on {result.slice_reference(les.best_slice)}"
            + ("; found by the density rule (the network's calcium channel missed it)"
               if getattr(les, "found_by", "network") == "density_rule" else ""))


def _not_assessed_reason(result: StudyResult, artery: str) -> str:
    for f in result.flags:
        if f.code == "not_assessable" and f.artery == artery:
            return f.message
    return f"{artery} not assessed"


def _add_items(template, items: list) -> None:
    """Append content items to the first (container) item of a highdicom template."""
    if items:
        template[0].ContentSequence.extend(items)


def _prior_texts(prior: dict | None, what: str) -> list:
    """Text findings with the prior study's values and the change of one artery (or ``total``)
    (``prior``: the study's prior.json, cacpipe.review.prior); none without a prior."""
    if not prior:
        return []
    ch = (prior.get("arteries") or {}).get(what) or {}
    p = prior.get("prior") or {}
    d = str(p.get("study_date") or "")
    when = (f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else d or "date unknown") + \
        f", {float(prior.get('years') or 0):.2f} years before"
    if not ch.get("assessed"):
        return [_text(FINDING, f"Prior study ({when}): change not given (not assessed on both studies)")]

    def f(v, unit="", sign=False) -> str:
        return "n/a" if v is None else (f"{float(v):+.1f}" if sign else f"{float(v):.1f}") + unit

    rep = (prior.get("repeatability") or {}).get("sqrt_volume_threshold")
    verdict = ("progression: beyond the interscan repeatability" if ch.get("progression") else
               "decrease beyond the interscan repeatability" if ch.get("exceeds_repeatability") else
               "within the interscan repeatability") + (f" (square-root volume change {rep:g})" if rep else "")
    pct = ch.get("agatston_percent_per_year")
    per_year = (f" ({f(ch.get('agatston_change_per_year'), sign=True)} per year"
                + (f", {f(pct, ' %', sign=True)} per year" if pct is not None else "") + ")"
                if ch.get("agatston_change_per_year") is not None else "")
    return [
        _text(FINDING, f"Prior study ({when}): Agatston {f(ch.get('agatston_prior'))}, "
                       f"volume {f(ch.get('volume_prior_mm3'), ' mm3')}"),
        _text(FINDING, f"Change since the prior study: Agatston {f(ch.get('agatston_change'), sign=True)}{per_year}, "
                       f"volume {f(ch.get('volume_change_mm3'), ' mm3', sign=True)}, square-root volume "
                       f"{float(ch.get('sqrt_volume_change') or 0):+.2f}: {verdict}"
                       + ("; FAST (more than 15 % a year)" if ch.get("fast") else "")),
    ]


def prior_evidence(prior: dict | None) -> list[pydicom.Dataset]:
    """The prior study's SR (when progression recorded it) as evidence: it lands in the Pertinent
    Other Evidence Sequence (another study)."""
    ref = ((prior or {}).get("prior") or {}).get("sr")
    if not ref:
        return []
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ref["study_uid"], ref["series_uid"]
    ds.SOPClassUID, ds.SOPInstanceUID = ref["sop_class_uid"], ref["sop_instance_uid"]
    return [ds]


def make_sr(result: StudyResult, seg, sources: list[pydicom.Dataset], series_number: int,
            stamp: _dt.datetime | None = None, verification: dict | None = None, prior: dict | None = None):
    """A Comprehensive 3D SR (TID 1500): per artery volume, Agatston, lesion count, lesions (with their
    PACS image) and, from a severity model fitted on local grades only, the grade; totals with category
    and CAC-DRS; the provenance statement and every quality flag as text.

    ``verification`` (a reader's corrections applied, ``cacpipe review apply``): {"observer": the
    reader, "organization": str, "previous": [the SR datasets this one replaces]}: the SR is then
    VERIFIED and final, names the reader as verifying observer and references its predecessors.

    ``prior`` (the study's prior.json, written by ``cacpipe progression``: cacpipe.review.prior): each
    artery's group and the total also carry the prior study's values and the change (text findings:
    no standard concept codes a change), and the prior's SR is referenced as other evidence."""
    import highdicom as hd

    prov = result.provenance()
    stamp = stamp or _dt.datetime.now()
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="cacpipe", manufacturer_name=MANUFACTURER, model_name=_algorithm_name(prov)))
    context = hd.sr.ObservationContext(observer_device_context=observer)
    source_series = hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID))
    algorithm = hd.sr.AlgorithmIdentification(name=_algorithm_name(prov), version=_algorithm_version(prov))
    grades = result.severity_fitted is True
    groups = []
    for a in ARTERIES:
        r = result.arteries[a]
        measurements, evaluations, texts = [], [], []
        if r.assessed:
            measurements = _calcium_measurements(r.calcium_volume_mm3, r.agatston, r.lesions)
            grade = str(r.grade or "").lower()
            if grades and grade in GRADE_CODES:
                evaluations.append(hd.sr.QualitativeEvaluation(codes.SCT.Severity, GRADE_CODES[grade]))
            texts = [_text(FINDING, _lesion_text(result, les)) for les in result.lesions if les.artery == a]
        else:
            texts = [_text(FINDING, f"NOT ASSESSED: {_not_assessed_reason(result, a)}")]
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{a} calcium"),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                segment_number=CALCIUM_ID[a], source_series=source_series),
            finding_type=CALCIFICATION, finding_sites=[hd.sr.FindingSite(ARTERY_CODES[a])],
            algorithm_id=algorithm, measurements=measurements or None, qualitative_evaluations=evaluations or None)
        _add_items(group, texts + _prior_texts(prior, a))
        groups.append(group)
    tot = result.total
    why_not = tot.agatston_note or "score not valid"
    total = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="total coronary calcium"),
        finding_type=CALCIFICATION, finding_sites=[hd.sr.FindingSite(codes.SCT.CoronaryArtery)],
        algorithm_id=algorithm, measurements=_calcium_measurements(tot.calcium_volume_mm3, tot.agatston, tot.lesions)
        or None)
    _add_items(total, [
        _text(FINDING, f"Agatston category {tot.category}" if tot.category is not None
              else f"Agatston category not given: {why_not}"),
        _text(FINDING, f"CAC-DRS {tot.cac_drs}" if tot.cac_drs is not None else f"CAC-DRS not given: {why_not}"),
        *_prior_texts(prior, "total"),
    ])
    groups.append(total)
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=CT_CHEST,
                                     imaging_measurements=groups)
    statements = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS,
                                            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    statements.ContentSequence = hd.sr.ContentSequence(
        [_text(COMMENT, prov.line())]
        + ([_text(COMMENT, f"compared with the prior study {prior['prior'].get('study_uid')} by cacpipe progression "
                           f"(lesions matched after registration; match ids on the review page)"
                           + ("" if prior.get("same_method", True) else "; the two studies were measured by "
                              "different models or heart locators: part of the change may be the method's"))]
           if prior else [])
        + [_text(COMMENT, f"quality flag {f.code} ({f.severity}{', ' + f.artery if f.artery else ''}): {f.message}")
           for f in result.flags])
    report[0].ContentSequence.append(statements)
    status = {"is_complete": True, "is_final": False, "is_verified": False}
    if verification:
        status |= {"is_final": True, "is_verified": True,
                    "verifying_observer_name": str(verification["observer"])[:64] or "reader",
                    "verifying_organization": str(verification.get("organization") or "not given")[:64],
                    "previous_versions": list(verification.get("previous") or []) or None}
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg, *prior_evidence(prior)], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        series_description=series_description(prov, "SR", stamp),
        **status)
    _stamp(sr, stamp)
    return sr


def make_sc(images: list[np.ndarray], ref: pydicom.Dataset, series_number: int, descriptions: list[str],
            result: StudyResult, stamp: _dt.datetime | None = None):
    """Secondary capture RGB images of the overlays (the statement is burned in), one instance each, in one series."""
    import highdicom as hd

    prov = result.provenance()
    stamp = stamp or _dt.datetime.now()
    series_uid = hd.UID()
    out = []
    for i, (rgb, desc) in enumerate(zip(images, descriptions, strict=True), start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref, pixel_array=np.ascontiguousarray(rgb[..., :3], dtype=np.uint8),
            photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
            series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=i, manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
            transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian)
        sc.SeriesDescription = series_description(prov, "SC", stamp)
        sc.ImageComments = f"{desc} | {prov.line()}"
        sc.BurnedInAnnotation = "YES"
        sc.BodyPartExamined = "CHEST"  # unpaired: Laterality (type 2C) is then rightly absent
        if result.has_flag(LOSSY_COMPRESSION):  # derived from lossy-compressed images: PS3.3 C.7.6.1.1.5 says so
            sc.LossyImageCompression = "01"
        _stamp(sc, stamp)
        out.append(sc)
    return out


def declare_character_set(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Declare UTF-8 (``ISO_IR 192``) when any text of ``ds`` (sequences included) is not ASCII.

    highdicom declares no character set, so the default repertoire (ASCII) would apply, and a
    patient name like "Müller" copied from a Latin-1 or UTF-8 source, or a non-ASCII path in a flag
    message, would be written in a repertoire the header does not name. Pure-ASCII objects keep
    the default, which every PACS reads."""
    def non_ascii(d: pydicom.Dataset) -> bool:
        for elem in d:
            if elem.VR == "SQ":
                if any(non_ascii(item) for item in elem.value):
                    return True
            elif elem.VR in ("SH", "LO", "ST", "LT", "UT", "PN", "UC") and not elem.is_empty:
                values = elem.value if elem.VM > 1 else [elem.value]
                if any(not str(v).isascii() for v in values):
                    return True
        return False

    if non_ascii(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def write_dicom_outputs(out_dir: Path, labels: Volume, result: StudyResult, sources: list[pydicom.Dataset],
                        overlay_images: list[np.ndarray], overlay_names: list[str], series_base: int = 9100,
                        stamp: _dt.datetime | None = None, verification: dict | None = None,
                        prior: dict | None = None) -> dict[str, str | list[str]]:
    """Write seg.dcm, sr.dcm and sc_NNN.dcm (owner-only, cacpipe.files) into ``out_dir``; returns their
    paths (strings). ``labels`` as drawn (calcium = counted calcium); ``stamp``: the run's time
    (SeriesDate/SeriesTime and the descriptions' run time; default now); ``verification``: see
    :func:`make_sr`; ``prior``: the study's prior.json (:func:`make_sr`)."""
    if not sources:
        raise InputDataError("no source DICOM slices given: SEG/SR/SC need the source CT series")
    check_sources(labels, sources)
    stamp = stamp or _dt.datetime.now()
    make_private_dir(out_dir)
    seg = make_seg(labels, sources, series_base + 1, result, stamp)
    declare_character_set(seg).save_as(out_dir / "seg.dcm")
    sr = make_sr(result, seg, sources, series_base + 2, stamp, verification, prior)
    declare_character_set(sr).save_as(out_dir / "sr.dcm")
    scs = make_sc(overlay_images, sources[0], series_base + 3, overlay_names, result, stamp)
    sc_paths = []
    for i, sc in enumerate(scs):
        p = out_dir / f"sc_{i:03d}.dcm"
        declare_character_set(sc).save_as(p)
        sc_paths.append(str(p))
    protect([out_dir, out_dir / "seg.dcm", out_dir / "sr.dcm", *sc_paths])
    return {"seg": str(out_dir / "seg.dcm"), "sr": str(out_dir / "sr.dcm"), "sc": sc_paths}
