"""Stage 1 glue: heart mask (TotalSegmentator or fallback) -> QC -> resample + crop -> record."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .. import flags as F
from ..config import HeartMethod, HeartSettings
from ..errors import ModelNotInstalledError
from ..flags import Flag
from ..units import PAPER_SPACING_ZYX
from ..volume import Volume
from . import qc
from .crop import CropRecord, apply_crop, make_record

log = logging.getLogger(__name__)


@dataclass
class Stage1Result:
    cropped_ct: Volume  # float32 HU, target spacing, cropped to the heart box
    record: CropRecord
    heart_mask: Volume  # uint8 0/1 on the ORIGINAL CT grid
    method: str  # "totalsegmentator" | "fallback"
    flags: list[Flag] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # heart volume, blood pool HU, carina, ...


def _choose_method(cfg: HeartSettings) -> tuple[str, str | None]:
    """(method, why-fallback) for ``cfg``; raises ModelNotInstalledError for an explicit TotalSegmentator."""
    from .totalseg import require_weights, totalseg_status

    if cfg.method == HeartMethod.FALLBACK:
        return "fallback", "the fallback heart locator was requested (heart.method fallback)"
    if cfg.method == HeartMethod.TOTALSEGMENTATOR:
        require_weights(cfg.totalseg_home, cfg.fast)
        return "totalsegmentator", None
    st = totalseg_status(cfg.totalseg_home, cfg.fast)
    if st["installed"]:
        return "totalsegmentator", None
    missing = ", ".join(f"Dataset{i}" for i in st["missing"])
    return "fallback", (f"TotalSegmentator weights not installed ({missing} missing under {st['weights_dir']}); "
                        f"see `cacpipe heart --status` for how to install them")


def heart_crop(ct: Volume, cfg: HeartSettings | None = None, *, target_spacing_zyx=PAPER_SPACING_ZYX,
               device: str = "auto", min_slices: int = 100) -> Stage1Result:
    """Find the heart, check it, resample the CT to ``target_spacing_zyx`` (the model's, mm, z y x)
    and crop it to the heart box (padding and margins from ``cfg``).

    ``device`` is where TotalSegmentator runs; ``min_slices`` raises the ``few_slices`` flag.
    """
    cfg = cfg or HeartSettings()
    flags: list[Flag] = []
    warnings: list[str] = []
    info: dict = {}
    f = qc.check_slices(ct, min_slices)
    if f:
        flags.append(f)

    method, why = _choose_method(cfg)
    mask: Volume | None = None
    if method == "totalsegmentator":
        from .totalseg import segment_heart

        try:
            mask = segment_heart(ct, fast=cfg.fast, device=device, home=cfg.totalseg_home)
        except ModelNotInstalledError:
            raise
        except Exception as exc:  # noqa: BLE001 - auto mode must still produce a result
            if cfg.method != HeartMethod.AUTO:
                raise
            method, why = "fallback", f"TotalSegmentator failed ({type(exc).__name__}: {exc})"
            log.warning("%s; using the fallback heart locator", why)
    if method == "fallback":
        from .fallback import locate_heart

        fb = locate_heart(ct)
        mask = fb.mask
        warnings.extend(fb.warnings)
        info["fallback"] = fb.info
        msg = f"heart located by the coarse weights-free fallback, not TotalSegmentator: {why}"
        flags.append(Flag(F.FALLBACK_HEART_LOCATOR, msg, "warning"))
        warnings.append(msg)
    assert mask is not None
    mask = ct.with_array(np.asarray(mask.array, dtype=np.uint8))

    flags.extend(qc.check_heart_mask(mask))
    info["heart_volume_ml"] = float(np.count_nonzero(mask.array)) * ct.voxel_volume_mm3 / 1000.0
    bp = qc.blood_pool_hu(ct, mask)
    info["blood_pool_hu"] = bp
    cf = qc.contrast_flag(bp)  # the blood pool once: its distance map is the costliest QC step
    if cf:
        flags.append(cf)

    margin = cfg.fallback_margin_mm if method == "fallback" else cfg.margin_mm
    record = make_record(ct, mask, target_spacing_zyx, cfg.padding_voxels_zyx, extra_margin_mm=margin, method=method)
    record.extra = {"flags": [fl.code for fl in flags], "margin_mm": margin, **info, "settings": cfg.to_dict()}
    cropped = apply_crop(ct, record, is_label=False)
    for fl in flags:
        if fl.severity != "info" and fl.message not in warnings:
            warnings.append(fl.message)
    return Stage1Result(cropped_ct=cropped, record=record, heart_mask=mask, method=method, flags=flags,
                        warnings=warnings, info=info)


def crop_case(ct: Volume, labels: Volume, cfg: HeartSettings | None = None, *, target_spacing_zyx=PAPER_SPACING_ZYX,
              device: str = "auto") -> tuple[Volume, Volume, Stage1Result]:
    """A training case cropped exactly as inference crops it: (cropped CT, cropped labels, stage-1 result).

    The labels (on the CT's grid) follow the CT's crop by nearest neighbour; both end on the
    target spacing (the plan's). The dataset builders of label_tools and nnunet_plans use this,
    so a model is trained on the crops it will be asked to segment.
    """
    res = heart_crop(ct, cfg, target_spacing_zyx=target_spacing_zyx, device=device)
    return res.cropped_ct, apply_crop(labels, res.record, is_label=True), res
