"""One loaded CT series in, one study result out: the glue of stage 1, stage 2 and quantification.

Data flow (arrays (z, y, x) throughout):
    LoadedSeries (HU volume on its original grid, identity, ingest flags, source headers)
      -> heart.heart_crop: resample to the model's spacing, crop to the heart (+ QC flags)
      -> segment.segment: nnU-Net ensemble on the crop -> six-class map on the crop grid
      -> heart.uncrop_labels: back to the original CT grid (same shape/spacing/origin/direction)
      -> segment.refine: lesion completion (>= 130 HU), attribution to artery trees, plausibility flags
      -> quant.devices.screen_devices: devices/grafts found, calcium touching them out of the count (flagged)
      -> quant.quantify on the ORIGINAL grid (Agatston is defined on the acquired slices)
      -> every flag (ingestion, stage 1, model, quality) -> quant.validity.finalise, once
      -> StudyResult (result.json, docs/ARCHITECTURE.md) + labels, crop record, review outputs
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import Settings
from .files import make_private_dir, protect
from .flags import CONTRAST_SUSPECTED, DEMO_MODEL, MODEL_MIRRORED_LEFT_RIGHT, SEVERITY_NOT_FITTED, Flag
from .ingest import LoadedSeries
from .legend import write_legends
from .record import StudyResult

if TYPE_CHECKING:
    from .heart.stage1 import Stage1Result
    from .segment import InstalledModel, SegmentResult

log = logging.getLogger(__name__)


class Laps:
    """Seconds per named step, measured between calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 3)
        self._t = now


@dataclass
class Prepared:
    """One study between the pipeline's three steps (``analyse_series.stages``): stage 1 done
    (``st1``), then the network's output (``seg``); ``seconds`` collects each step's laps."""

    series: LoadedSeries
    settings: Settings
    model: InstalledModel
    st1: Stage1Result
    seg: SegmentResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def prepare_series(series: LoadedSeries, settings: Settings | None = None) -> Prepared:
    """Step 1 (CPU, or TotalSegmentator on the device): find the model, resample and crop to the heart."""
    from .heart import heart_crop
    from .segment import find_model

    s = settings or Settings()
    lap = Laps()
    model = find_model(s.segment.model, s.segment.model_dir, allow_demo=s.segment.allow_demo_model)
    st1 = heart_crop(series.volume, s.heart, target_spacing_zyx=model.spacing_zyx, device=s.device,
                     min_slices=s.selection.min_slices)
    lap("heart_crop")
    return Prepared(series, s, model, st1, seconds=dict(lap.seconds))


def segment_prepared(prep: Prepared) -> Prepared:
    """Step 2 (the accelerator when there is one): the nnU-Net ensemble on the heart crop."""
    from .segment import segment

    lap = Laps()
    cfg = prep.settings.segment
    prep.seg = segment(prep.st1.cropped_ct, prep.model, cfg, device=prep.settings.device,
                       calcium_prob=cfg.postprocess or cfg.save_calcium_probability)
    lap("segmentation")
    prep.seconds.update(lap.seconds)
    return prep


def analyse_series(series: LoadedSeries, out_dir: Path, settings: Settings | None = None) -> StudyResult:
    """Analyse one assembled CT series and write its outputs into ``out_dir``.

    The signature is the one ``cacpipe.scan.run_scan`` calls. Writes labels.nii.gz (six-class
    map on the original CT grid), ct.nii.gz (the scored CT, same grid) with label legends for
    ITK-SNAP and 3D Slicer (cacpipe.legend), heart_mask.nii.gz, crop.json and, unless switched off, the
    review page, overlays and DICOM SEG/SR/SC. Returns the finalised result; the runner adds what
    it knows about the input files and writes result.json.
    """
    return finish_series(segment_prepared(prepare_series(series, settings)), out_dir)


def finish_series(prep: Prepared, out_dir: Path) -> StudyResult:
    """Step 3 (CPU): back to the CT grid, refine, quantify, flag, write ``out_dir``, review outputs."""
    from .heart import uncrop_labels
    from .quant.devices import screen_devices
    from .quant.quality import quality_flags
    from .quant.quantify import quantify
    from .quant.severity import SeverityModel
    from .quant.validity import finalise
    from .segment import refine

    s, series, model, st1, seg = prep.settings, prep.series, prep.model, prep.st1, prep.seg
    if seg is None:
        raise ValueError("finish_series needs the segmentation (segment_prepared) first")
    out_dir = Path(out_dir)
    volume = series.volume
    lap = Laps()
    labels = uncrop_labels(seg.labels, st1.record)
    agreement = uncrop_labels(seg.agreement, st1.record) if seg.agreement is not None else None
    calcium_prob = uncrop_labels(seg.calcium_prob, st1.record) if seg.calcium_prob is not None else None
    lap("uncrop")

    flags: list[Flag] = [*series.flags, *st1.flags]
    contrast = any(f.code == CONTRAST_SUSPECTED for f in flags)  # an enhanced lumen is >= 130 HU: no growth
    post = (refine(volume, labels, heart=st1.heart_mask, complete=not contrast, density_rule=s.segment.density_rule,
                   instance_numbers=series.instance_numbers, calcium_prob=calcium_prob)
            if s.segment.postprocess else None)
    if post is not None:  # the map written to disk and the numbers both come from the refined map
        labels = post.labels
        flags += post.flags
        lap("postprocess")
    if seg.left_right_mirrored_model:
        flags.append(Flag(MODEL_MIRRORED_LEFT_RIGHT, "the segmentation model was trained with left-right mirroring: "
                          "it may confuse the RCA with the LCX; per-artery numbers need review", "warning"))
    if model.is_demo:
        flags.append(Flag(DEMO_MODEL, "segmented with the phantom-trained demo model: NOT FOR CLINICAL USE; "
                          "install a trained model with `cacpipe models install MODEL.zip`", "warning"))
    severity = SeverityModel.load(s.quant.severity_model) if s.quant.severity_model else SeverityModel.load_default()
    if not severity.fitted_on_grades:
        flags.append(Flag(SEVERITY_NOT_FITTED, f"severity grades from {severity.source or 'a model'}, which was not "
                          "fitted on radiologist grades: not validated, left out of the DICOM SR; fit one on "
                          "local grades with `cacpipe severity fit`", "info"))
    # Devices and grafts: their metal (and calcium touching it) is never native coronary calcium (flagged).
    devices, labels, device_flags = screen_devices(volume, labels, st1.heart_mask, series.instance_numbers)
    flags += device_flags
    numbers = quantify(volume, labels, calibration_factor=s.quant.calibration_factor, assessed=post.assessed if post else None,
                       severity=severity)
    flags += quality_flags(volume, labels, heart=st1.heart_mask, devices=devices, contrast=not contrast)
    result = StudyResult(
        study=series.identity,
        pipeline={
            "version": __version__,
            "heart_method": st1.method,
            "heart_warnings": list(st1.warnings),
            "model": model.to_dict(),
            "severity_model": severity.describe(),
            "segmentation": seg.settings(),
            "device": seg.device,
            "settings": s.to_record(),
            "stage1": dict(st1.info),
            "postprocess": post.to_dict() if post else None,
            "devices": devices.to_dict(),
        },
        flags=flags,
        arteries=numbers.arteries,
        lesions=post.mark_found_by(numbers.lesions) if post is not None else numbers.lesions,
    )
    result.set_grid(volume, series.instance_numbers, series.slice_positions_mm)
    finalise(result)
    lap("quantification")

    make_private_dir(out_dir)
    outputs = result.outputs
    labels.write(out_dir / "labels.nii.gz")
    if s.review.ct_nifti:  # the scored CT as the pipeline read it, on the labels' grid: any viewer opens the pair
        volume.write(out_dir / "ct.nii.gz")
        outputs["ct"] = "ct.nii.gz"
    st1.heart_mask.write(out_dir / "heart_mask.nii.gz")
    st1.record.save(out_dir / "crop.json")
    outputs.update(labels="labels.nii.gz", heart_mask="heart_mask.nii.gz", crop_record="crop.json",
                   **write_legends(out_dir))
    if agreement is not None:
        agreement.write(out_dir / "agreement.nii.gz")
        outputs["agreement"] = "agreement.nii.gz"
    if calcium_prob is not None and s.segment.save_calcium_probability:
        calcium_prob.write(out_dir / "calcium_prob.nii.gz")
        outputs["calcium_prob"] = "calcium_prob.nii.gz"
    protect(out_dir / rel for rel in outputs.values())
    lap("write")

    if s.review.enabled:
        from .review import build_review
        from .review.options import salt_id

        sources = series.sources if s.review.dicom else None
        if s.review.dicom and sources is None:
            result.pipeline["dicom_outputs"] = ("skipped: no source DICOM slice per volume slice (image input, or "
                                                "slices interpolated at assembly)")
        result.pipeline["anonymisation"] = {"secret": "given" if s.review.salt else "installation",
                                            "secret_id": salt_id(s.review.salt)}
        # Without source headers (image input) DICOM outputs cannot be made: said once, in the result.
        review = s.review if sources is not None else s.review.replace(dicom=False)
        written = build_review(out_dir, volume, labels, result, sources, review, salt=s.review.salt,
                               agreement=agreement)
        outputs.update({k: v for k, v in written.items() if k != "dicom_skipped"})
        lap("review")
        # review.send: the scan runner sends after the result is written (cacpipe.scan.delivery)
    seconds = {**prep.seconds, **lap.seconds}
    result.pipeline["seconds"] = seconds
    log.info("analysed %s in %.1f s", series.identity.study_uid, sum(seconds.values()))
    return result


# The runner's pipelined mode (cacpipe.scan.executors.run_pipelined) overlaps these steps across studies.
analyse_series.stages = (prepare_series, segment_prepared, finish_series)  # type: ignore[attr-defined]
