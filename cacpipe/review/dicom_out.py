"""DICOM outputs a PACS can show, written with highdicom.

- SEG: six binary segments (label ids 1-6 = segment numbers 1-6), referencing the source series.
- SR: Comprehensive 3D SR, TID 1500 measurement report: per artery calcium volume (mm3),
  Agatston score and severity grade, each group pointing at its calcium segment in the SEG.
- SC: secondary capture (RGB) of each overlay PNG.

All three copy patient and study identifiers from the source CT, so they file under the same
study in the PACS. Codes: SNOMED CT for anatomy and findings, DCM 112058 "Calcium score" with
method DCM 112055 "Agatston scoring method".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from .. import __version__
from ..errors import GeometryError, InputDataError
from ..labels import ARTERIES, CALCIUM_ID, LABEL_CLASSES
from ..record import StudyResult
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


def _algorithm():
    import highdicom as hd

    return hd.AlgorithmIdentificationSequence(name="cacpipe", family=codes.cid7162.ArtificialIntelligence,
                                              version=__version__)


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


def make_seg(labels: Volume, sources: list[pydicom.Dataset], series_number: int):
    """A binary DICOM SEG with the six label classes as segments."""
    import highdicom as hd

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
            algorithm_identification=_algorithm(),
            tracking_uid=hd.UID(), tracking_id=f"cacpipe {c.name}",
            anatomic_regions=[artery_code] if c.is_calcium else None,
            display_color=hd.color.CIELabColor.from_rgb(*c.colour) if hasattr(hd.color.CIELabColor, "from_rgb")
            else None,
        ))
    onehot = np.stack([labels.array == c.id for c in LABEL_CLASSES], axis=-1)
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=onehot, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segs, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="cacpipe coronary calcium", software_versions=__version__,
        device_serial_number="0", series_description="cacpipe coronary arteries + calcium",
        content_label="CORONARY", omit_empty_frames=True,
    )


def make_sr(result: StudyResult, seg, sources: list[pydicom.Dataset], series_number: int):
    """A Comprehensive 3D SR (TID 1500) with per-artery volume, Agatston and grade."""
    import highdicom as hd

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="cacpipe", manufacturer_name=MANUFACTURER, model_name=f"cacpipe {__version__}"))
    context = hd.sr.ObservationContext(observer_device_context=observer)
    source_series = hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID))
    groups = []
    for a in ARTERIES:
        r = result.arteries[a]
        measurements, evaluations = [], []
        if r.assessed:
            if r.calcium_volume_mm3 is not None:
                measurements.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(r.calcium_volume_mm3),
                                                      unit=codes.UCUM.CubicMillimeter))
            if r.agatston is not None:
                measurements.append(hd.sr.Measurement(name=codes.DCM.CalciumScore, value=float(r.agatston),
                                                      unit=codes.UCUM.NoUnits, method=codes.DCM.AgatstonScoringMethod))
            grade = str(r.grade or "").lower()
            if grade in GRADE_CODES:
                evaluations.append(hd.sr.QualitativeEvaluation(codes.SCT.Severity, GRADE_CODES[grade]))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{a} calcium"),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                segment_number=CALCIUM_ID[a], source_series=source_series),
            finding_type=CALCIFICATION, finding_sites=[hd.sr.FindingSite(ARTERY_CODES[a])],
            algorithm_id=hd.sr.AlgorithmIdentification(name="cacpipe", version=__version__),
            measurements=measurements or None, qualitative_evaluations=evaluations or None))
    tot = result.total
    tm = []
    if tot.calcium_volume_mm3 is not None:
        tm.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(tot.calcium_volume_mm3),
                                    unit=codes.UCUM.CubicMillimeter))
    if tot.agatston is not None:
        tm.append(hd.sr.Measurement(name=codes.DCM.CalciumScore, value=float(tot.agatston), unit=codes.UCUM.NoUnits,
                                    method=codes.DCM.AgatstonScoringMethod))
    if tm:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="total coronary calcium"),
            finding_type=CALCIFICATION, finding_sites=[hd.sr.FindingSite(codes.SCT.CoronaryArtery)], measurements=tm))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=CT_CHEST,
                                     imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="cacpipe coronary calcium report", is_complete=True, is_final=False, is_verified=False)


def make_sc(images: list[np.ndarray], ref: pydicom.Dataset, series_number: int, descriptions: list[str]):
    """Secondary capture RGB images of the overlays, one instance each, in one series."""
    import highdicom as hd

    series_uid = hd.UID()
    out = []
    for i, (rgb, desc) in enumerate(zip(images, descriptions, strict=True), start=1):
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref, pixel_array=np.ascontiguousarray(rgb[..., :3], dtype=np.uint8),
            photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
            series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=i, manufacturer=MANUFACTURER, patient_orientation=("L", "P"),
            transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian)
        sc.SeriesDescription = "cacpipe calcium overlays"
        sc.ImageComments = desc
        sc.BurnedInAnnotation = "YES"
        out.append(sc)
    return out


def write_dicom_outputs(out_dir: Path, labels: Volume, result: StudyResult, sources: list[pydicom.Dataset],
                        overlay_images: list[np.ndarray], overlay_names: list[str], series_base: int = 9100
                        ) -> dict[str, str | list[str]]:
    """Write seg.dcm, sr.dcm and sc_NNN.dcm into ``out_dir``; returns their paths (strings)."""
    if not sources:
        raise InputDataError("no source DICOM slices given: SEG/SR/SC need the source CT series")
    check_sources(labels, sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = make_seg(labels, sources, series_base + 1)
    seg.save_as(out_dir / "seg.dcm")
    sr = make_sr(result, seg, sources, series_base + 2)
    sr.save_as(out_dir / "sr.dcm")
    scs = make_sc(overlay_images, sources[0], series_base + 3, overlay_names)
    sc_paths = []
    for i, sc in enumerate(scs):
        p = out_dir / f"sc_{i:03d}.dcm"
        sc.save_as(p)
        sc_paths.append(str(p))
    return {"seg": str(out_dir / "seg.dcm"), "sr": str(out_dir / "sr.dcm"), "sc": sc_paths}
