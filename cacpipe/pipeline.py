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

import numpy as np

from . import __version__
from .config import Settings
from .files import make_private_dir, protect
from .flags import CONTRAST_SUSPECTED, DEMO_MODEL, MODEL_MIRRORED_LEFT_RIGHT, SEVERITY_NOT_FITTED, Flag
from .ingest import LoadedSeries
from .legend import write_legends
from .niftiout import write_nifti_gz
from .record import StudyResult

if TYPE_CHECKING:
    from .heart.stage1 import Stage1Result
    from .segment import InstalledModel, SegmentResult

log = logging.getLogger(__name__)

WORK_MARGIN_MM = 40.0
"""Margin around the labels and the crop box that post-processing and quantification work in: more
than the farthest any step looks from a label (post-processing 21 mm, the valve-calcium search 33 mm)."""
CT_NIFTI_LEVEL = 0
"""zlib level of ct.nii.gz: 0 stores the voxels in gzip framing (docs/performance.md: writing a
512 x 512 x 550 CT took ~20 s at SimpleITK's level, ~2 s stored, for 1.6x the bytes of the phantom)."""


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
    """One study between the pipeline's three steps (``analyse_series.stages``, the runner's
    cacpipe.scan.worker.StudySteps): stage 1 done (``st1``), then the network's output (``seg``);
    ``seconds`` collects each step's laps."""

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
    from .quant.quality import fov_flags, quality_flags
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
    # Everything after the network works on the heart's slices and box, not the whole scan (a
    # 0.625 mm chest CT has 3-4 times the slices the heart spans; docs/performance.md). Post-
    # processing sees slices [0, z_stop) at full width: the same origin, so every voxel index,
    # slice number and position it reports is the whole scan's, and each slice is whole (its
    # body-midline check reads the trunk's extent). Quantification and the quality flags see the
    # box from voxel (0, 0, 0) to the far corner of the labels and the heart plus WORK_MARGIN_MM:
    # the same origin again, so their lesions' indices and centres are the whole scan's, bit for
    # bit. tests/test_box_path.py checks both against the whole-grid path.
    # The network's maps are resampled onto the original voxels [0, stop) per axis only, stop = the
    # crop box's far corner (same origin, same sample points: nothing is labelled beyond it), and
    # the label maps widened with zeros to whole slices [0, z_stop). The calcium probability stays
    # that size: post-processing reads it as zero beyond (docs/performance.md).
    stop = _crop_stop(st1.record, volume.shape)
    z_stop = _labelled_z_stop(st1.record, volume.shape[0])

    def back(v):
        return None if v is None else uncrop_labels(v, st1.record, stop_zyx=stop)

    labels, agreement, calcium_prob = back(seg.labels), back(seg.agreement), back(seg.calcium_prob)
    labels = _widened(labels, volume, z_stop)
    agreement = None if agreement is None else _widened(agreement, volume, z_stop)
    if not labels.array.any():  # nothing labelled: post-processing looks at the middle slice; give it the scan
        z_stop = volume.shape[0]
        labels = _widened(labels, volume, z_stop)
    ct_z, heart_z = _slices(volume, z_stop), _slices(st1.heart_mask, z_stop)
    lap("uncrop")

    flags: list[Flag] = [*series.flags, *st1.flags]
    contrast = any(f.code == CONTRAST_SUSPECTED for f in flags)  # an enhanced lumen is >= 130 HU: no growth
    post = (refine(ct_z, labels, heart=heart_z, complete=not contrast, density_rule=s.segment.density_rule,
                   calcium_prob=calcium_prob)
            if s.segment.postprocess else None)
    if post is not None:  # the map written to disk and the numbers both come from the refined map
        labels = post.labels
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
    box = _work_box(labels.array, st1.record)
    ct_b, labels_b, heart_b = (_boxed(v, box) for v in (volume, labels, st1.heart_mask))
    # Devices and grafts: their metal (and calcium touching it) is never native coronary calcium (flagged).
    # Found in the work box (the heart, the labels and 40 mm round them: leads, valves, clips, stents).
    devices, labels_b, device_flags = screen_devices(ct_b, labels_b, heart_b, series.instance_numbers)
    labels = _pasted(labels, labels_b, box, volume)
    if post is not None:
        if devices.findings:
            post.explain_metal()
        flags += post.flags
    flags += device_flags
    numbers = quantify(ct_b, labels_b, calibration_factor=s.quant.calibration_factor,
                       assessed=post.assessed if post else None, severity=severity)
    # The heart lies inside the crop box, hence inside the work box: its blood pool there is stage 1's.
    flags += quality_flags(ct_b, labels_b, heart=heart_b, devices=devices, contrast=not contrast, fov=False,
                           heart_interior_hu=st1.info.get("blood_pool_hu"))
    # The field-of-view check needs whole slices (lungs enclosed by the body): the slab, not the box.
    flags += fov_flags(ct_z, heart_z)
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
    # The whole-scan grid again (labels.nii.gz, the review, DICOM SEG): slices past z_stop hold no label.
    labels = _widened(labels, volume, volume.shape[0])
    if agreement is not None:
        agreement = _widened(agreement, volume, volume.shape[0])
    lap("quantification")

    make_private_dir(out_dir)
    outputs = result.outputs
    labels.write(out_dir / "labels.nii.gz")
    if s.review.ct_nifti:  # the scored CT as the pipeline read it, on the labels' grid: any viewer opens the pair
        # Stored, not deflated (the export holds the CT already): ~20x faster to write, ~1.6x the bytes.
        write_nifti_gz(volume, out_dir / "ct.nii.gz", level=CT_NIFTI_LEVEL)
        outputs["ct"] = "ct.nii.gz"
    st1.heart_mask.write(out_dir / "heart_mask.nii.gz")
    st1.record.save(out_dir / "crop.json")
    outputs.update(labels="labels.nii.gz", heart_mask="heart_mask.nii.gz", crop_record="crop.json",
                   **write_legends(out_dir))
    if agreement is not None:
        agreement.write(out_dir / "agreement.nii.gz")
        outputs["agreement"] = "agreement.nii.gz"
    if calcium_prob is not None and s.segment.save_calcium_probability:
        _widened(calcium_prob, volume, volume.shape[0]).write(out_dir / "calcium_prob.nii.gz")
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


def _labelled_z_stop(record, n_slices: int) -> int:
    """First original slice past the crop box plus WORK_MARGIN_MM: slices from here on hold no label
    and are farther than any post-processing step looks."""
    from .heart.crop import original_box

    return int(original_box(record, WORK_MARGIN_MM)[0].stop) if n_slices else 0


def _crop_stop(record, shape) -> tuple[int, int, int]:
    """Per axis, the first original voxel past the crop box: no label lies from there on."""
    from .heart.crop import original_box

    return tuple(max(1, int(b.stop)) for b in original_box(record))  # type: ignore[return-value]


def _widened(vol, like, n: int):
    """``vol`` (voxels [0, k) per axis of ``like``'s grid) on whole slices [0, n) of that grid, zero-filled
    (cut to n slices when it has more)."""
    from .volume import Volume

    shape = (n, *like.shape[1:])
    if vol.shape == shape:
        return vol
    out = np.zeros(shape, dtype=vol.array.dtype)
    k = tuple(min(a, b) for a, b in zip(vol.shape, shape, strict=True))
    out[:k[0], :k[1], :k[2]] = vol.array[:k[0], :k[1], :k[2]]
    return Volume(out, like.spacing_zyx, like.origin_xyz, like.direction, meta=dict(vol.meta))


def _slices(vol, z_stop: int):
    """``vol``'s slices [0, z_stop): same origin and geometry (a view, no copy)."""
    from .volume import Volume

    if z_stop >= vol.shape[0]:
        return vol
    return Volume(vol.array[:z_stop], vol.spacing_zyx, vol.origin_xyz, vol.direction, meta=dict(vol.meta))


def _work_box(labels: np.ndarray, record) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of the original grid that quantification and the quality flags work in: from
    voxel (0, 0, 0) (so that every index is the whole scan's) to the far corner of the labels' box
    and the crop box's (which holds the heart), plus WORK_MARGIN_MM, clipped."""
    from .heart.crop import mask_bbox, original_box

    crop = original_box(record, WORK_MARGIN_MM)
    found = mask_bbox(labels)
    out = []
    for ax, (c, s, n) in enumerate(zip(crop, record.original_spacing_zyx, record.original_shape_zyx, strict=True)):
        hi = c.stop if found is None else max(c.stop, found[1][ax] + int(np.ceil(WORK_MARGIN_MM / s)))
        out.append(slice(0, min(n, hi)))
    return tuple(out)  # type: ignore[return-value]


def _pasted(vol, sub, box: tuple[slice, ...], like):
    """``vol`` (slices [0, k) of ``like``'s grid) with ``sub`` written into ``box`` (which starts at voxel 0)."""
    from .volume import Volume

    full = _widened(vol, like, max(vol.shape[0], box[0].stop))
    arr = np.array(full.array, copy=True)
    arr[box] = sub.array
    return Volume(arr, full.spacing_zyx, full.origin_xyz, full.direction, meta=dict(vol.meta))


def _boxed(vol, box: tuple[slice, ...]):
    """The sub-volume ``vol.array[box]`` of a box starting at voxel (0, 0, 0): same origin and geometry."""
    from .volume import Volume

    arr = vol.array[box] if vol.shape[0] >= box[0].stop else _widened(vol, vol, box[0].stop).array[box]
    return Volume(arr, vol.spacing_zyx, vol.origin_xyz, vol.direction, meta=dict(vol.meta))


# The runner's pipelined mode (cacpipe.scan.executors.run_pipelined) overlaps these steps across studies:
# analyse_series offers them as its ``stages`` (the SplitAnalyse protocol of cacpipe.scan.worker, which
# this module may not import: scan sits above the pipeline). A function's attributes are its __dict__.
vars(analyse_series)["stages"] = (prepare_series, segment_prepared, finish_series)
