"""One CT series in, one study result out: the glue of stage 1, stage 2 and quantification.

Data flow (arrays (z, y, x) throughout):
    CT on its original grid
      -> heart.heart_crop: resample to the model's spacing, crop to the heart (+ QC flags)
      -> segment.segment: nnU-Net ensemble on the crop -> six-class map on the crop grid
      -> heart.uncrop_labels: back to the original CT grid (same shape/spacing/origin/direction)
      -> quant.quantify on the ORIGINAL grid (Agatston is defined on the acquired slices)
      -> severity grades, quality flags, finalise -> result dict (docs/ARCHITECTURE.md)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .flags import DEMO_MODEL, Flag
from .volume import Volume

log = logging.getLogger(__name__)
RESULT_SCHEMA = "cacpipe.result/1"


@dataclass
class PipelineSettings:
    """Every setting that changes a result; recorded in each result.json."""

    heart_method: str = "auto"  # auto | totalsegmentator | fallback
    heart_fast: bool = False
    device: str = "auto"  # auto | cpu | cuda
    model: str | None = None  # installed model name; None = the only one, else the demo model
    model_dir: str | None = None
    allow_demo_model: bool = True
    folds: tuple[int, ...] | None = None
    mirroring: bool | None = None  # None: off on CPU, on on GPU
    tile_step_size: float = 0.5
    agreement: bool = False
    min_slices: int = 100  # for the stage-1 QC flag; `cacpipe scan --min-slices` sets it
    padding_voxels: tuple[int, int, int] = (0, 10, 10)  # (z, y, x) voxels at the model spacing
    calibration_factor: float | None = None
    severity_model: str | None = None
    review: bool = True
    dicom_outputs: bool = True
    send: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_json(cls, d: dict | None) -> PipelineSettings:
        d = dict(d or {})
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("folds", "padding_voxels"):
            if known.get(k) is not None:
                known[k] = tuple(known[k])
        return cls(**known)


def sorted_sources(study_info, volume: Volume) -> list | None:
    """Source slice headers in the volume's slice order, for DICOM SEG/SR references.

    The order is the one the assembler recorded (``volume.meta["source_files"]``), not sorted
    again here. Returns None (DICOM outputs skipped) when the files do not match the slices one
    to one, e.g. after duplicate removal or interpolated missing slices.
    """
    order = volume.meta.get("source_files")
    if study_info is None or not hasattr(study_info, "read_datasets") or not order:
        return None
    if len(study_info.files) != volume.shape[0] or len(order) != volume.shape[0]:
        return None
    by_source = dict(zip(study_info.files, study_info.read_datasets(stop_before_pixels=True), strict=True))
    return [by_source[s] for s in order]


def analyse_series(volume: Volume, study_info, out_dir: Path, settings: dict | None = None) -> dict:
    """Analyse one assembled CT series and write its outputs into ``out_dir``.

    The signature is the one ``cacpipe.scan.run_scan`` calls. Writes labels.nii.gz (six-class
    map on the original CT grid), heart_mask.nii.gz, crop.json and, unless switched off, the
    review page, overlays and DICOM SEG/SR/SC. Returns the result dict (docs/ARCHITECTURE.md);
    the runner adds identifiers and writes result.json.
    """
    from .heart import Stage1Config, heart_crop, uncrop_labels
    from .quant import SeverityModel, finalise, quality_flags, quantify
    from .segment import SegmentConfig, find_model, segment

    out_dir = Path(out_dir)
    s = PipelineSettings.from_json(settings)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 3)
        t = now

    model = find_model(s.model, s.model_dir, allow_demo=s.allow_demo_model)
    st1 = heart_crop(volume, Stage1Config(
        method=s.heart_method, fast=s.heart_fast, device=s.device, target_spacing_zyx=model.spacing_zyx,
        padding_voxels=tuple(s.padding_voxels), min_slices=s.min_slices))
    lap("heart_crop")
    seg = segment(st1.cropped_ct, model, SegmentConfig(
        device=s.device, folds=s.folds, mirroring=s.mirroring, tile_step_size=s.tile_step_size,
        agreement=s.agreement))
    lap("segmentation")
    labels = uncrop_labels(seg.labels, st1.record)
    agreement = None
    if seg.agreement is not None:
        agreement = uncrop_labels(seg.agreement, st1.record)
    lap("uncrop")

    flags: list[Flag] = list(st1.flags)
    if model.is_demo:
        flags.append(Flag(DEMO_MODEL, "segmented with the phantom-trained demo model: NOT FOR CLINICAL USE; "
                          "install a trained model with `cacpipe models install MODEL.zip`", "warning"))
    severity = SeverityModel.load(s.severity_model) if s.severity_model else None
    numbers = quantify(volume, labels, calibration_factor=s.calibration_factor, severity=severity)
    flags += quality_flags(volume, labels, heart=st1.heart_mask)
    lap("quantification")

    study = study_info.to_dict() if hasattr(study_info, "to_dict") else dict(volume.meta.get("study", {}))
    study.pop("file_refs", None)
    study.update(spacing_zyx=list(volume.spacing_zyx), shape_zyx=list(volume.shape))
    result = {
        "schema": RESULT_SCHEMA,
        "status": "done",
        "study": study,
        "pipeline": {
            "version": __version__,
            "heart_method": st1.method,
            "heart_warnings": list(st1.warnings),
            "model": model.to_dict(),
            "segmentation": seg.settings(),
            "device": seg.device,
            "settings": s.to_json(),
            "stage1": dict(st1.info),
        },
        "flags": [],
        **numbers,
        "outputs": {},
    }
    result = finalise(result, flags)

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = result["outputs"]
    labels.write(out_dir / "labels.nii.gz")
    st1.heart_mask.write(out_dir / "heart_mask.nii.gz")
    st1.record.save(out_dir / "crop.json")
    outputs.update(labels="labels.nii.gz", heart_mask="heart_mask.nii.gz", crop_record="crop.json")
    if agreement is not None:
        agreement.write(out_dir / "agreement.nii.gz")
        outputs["agreement"] = "agreement.nii.gz"
    lap("write")

    if s.review:
        from .review import ReviewOptions, build_review

        sources = sorted_sources(study_info, volume) if s.dicom_outputs else None
        if s.dicom_outputs and sources is None:
            result["pipeline"]["dicom_outputs"] = "skipped: source slices do not match the volume one-to-one"
        written = build_review(out_dir, volume, labels, result,
                               sources, ReviewOptions(dicom=s.dicom_outputs, agreement=agreement))
        outputs.update({k: v for k, v in written.items() if k != "dicom_skipped"})
        lap("review")
        if s.send and "seg" in written:
            from .review import send_outputs

            files = [out_dir / written[k] for k in ("seg", "sr") if k in written]
            files += [out_dir / p for p in written.get("sc", [])]
            result["pipeline"]["send"] = send_outputs(files, s.send)
            lap("send")
    result["pipeline"]["seconds"] = timings
    log.info("analysed %s in %.1f s", study.get("study_uid", "?"), sum(timings.values()))
    return result
