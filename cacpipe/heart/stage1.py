"""Stage 1 glue: heart mask (TotalSegmentator or fallback) -> QC -> resample + crop -> record."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import flags as F
from ..errors import ConfigError, ModelNotInstalledError
from ..flags import Flag
from ..units import PAPER_SPACING_ZYX
from ..volume import Volume
from . import qc
from .crop import CropRecord, apply_crop, make_record

log = logging.getLogger(__name__)

METHODS = ("auto", "totalsegmentator", "fallback")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Stage1Config:
    """Settings of stage 1.

    method: "auto" (TotalSegmentator when its weights are installed, else the fallback locator
        with a ``fallback_heart_locator`` flag), "totalsegmentator" (error if weights missing)
        or "fallback" (weights-free classical locator).
    fast: TotalSegmentator's fast mode (3 mm model, Dataset297) instead of 1.5 mm (Dataset293).
    device: "auto" (CUDA when available), "cpu" or "cuda".
    target_spacing_zyx: spacing (mm, z y x) of the cropped CT; the pipeline passes the installed
        nnU-Net model's spacing. Default: the source paper's (0.8, 0.73, 0.73).
    padding_voxels: crop padding in voxels of the target grid, ordered (z, y, x) like every
        tuple in cacpipe. The default (0, 10, 10) is the paper's "(10, 10, 0)" read as (x, y, z).
    min_slices: fewer slices than this raise the ``few_slices`` flag (the paper excluded < 100).
    totalseg_home: TotalSegmentator home (weights under ``<home>/nnunet/results``); None: as
        TotalSegmentator resolves it ($TOTALSEG_WEIGHTS_PATH, $TOTALSEG_HOME_DIR, ~/.totalsegmentator).
    margin_mm: extra margin (mm, all axes) added to the heart box before the voxel padding: coronary
        arteries run in the fat on the heart's surface (the PDA below its inferior wall), which a
        heart mask excludes and the paper's z padding of 0 would cut. 0 reproduces the paper.
    fallback_margin_mm: margin used instead when the coarse fallback locator found the heart.
    """

    method: str = "auto"
    fast: bool = False
    device: str = "auto"
    target_spacing_zyx: tuple[float, float, float] = PAPER_SPACING_ZYX
    padding_voxels: tuple[int, int, int] = (0, 10, 10)
    min_slices: int = 100
    totalseg_home: Path | None = None
    margin_mm: float = 5.0
    fallback_margin_mm: float = 10.0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"heart method must be one of {METHODS}, got {self.method!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if len(self.target_spacing_zyx) != 3 or any(float(s) <= 0 for s in self.target_spacing_zyx):
            raise ConfigError(f"target spacing must be three positive mm values (z, y, x), got {self.target_spacing_zyx}")
        if len(self.padding_voxels) != 3 or any(int(p) < 0 for p in self.padding_voxels):
            raise ConfigError(f"padding must be three voxel counts >= 0 (z, y, x), got {self.padding_voxels}")
        if self.margin_mm < 0 or self.fallback_margin_mm < 0:
            raise ConfigError(f"margins must be >= 0 mm, got {self.margin_mm} and {self.fallback_margin_mm}")

    def to_json(self) -> dict:
        return {"method": self.method, "fast": self.fast, "device": self.device,
                "target_spacing_zyx": [float(s) for s in self.target_spacing_zyx],
                "padding_voxels_zyx": [int(p) for p in self.padding_voxels], "min_slices": self.min_slices,
                "totalseg_home": None if self.totalseg_home is None else str(self.totalseg_home),
                "margin_mm": self.margin_mm, "fallback_margin_mm": self.fallback_margin_mm}


@dataclass
class Stage1Result:
    cropped_ct: Volume  # float32 HU, target spacing, cropped to the heart box
    record: CropRecord
    heart_mask: Volume  # uint8 0/1 on the ORIGINAL CT grid
    method: str  # "totalsegmentator" | "fallback"
    flags: list[Flag] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # heart volume, blood pool HU, carina, ...


def _choose_method(cfg: Stage1Config) -> tuple[str, str | None]:
    """(method, why-fallback) for ``cfg``; raises ModelNotInstalledError for an explicit TotalSegmentator."""
    from .totalseg import require_weights, totalseg_status

    if cfg.method == "fallback":
        return "fallback", "the fallback heart locator was requested (--method fallback)"
    if cfg.method == "totalsegmentator":
        require_weights(cfg.totalseg_home, cfg.fast)
        return "totalsegmentator", None
    st = totalseg_status(cfg.totalseg_home, cfg.fast)
    if st["installed"]:
        return "totalsegmentator", None
    missing = ", ".join(f"Dataset{i}" for i in st["missing"])
    return "fallback", (f"TotalSegmentator weights not installed ({missing} missing under {st['weights_dir']}); "
                        f"see `cacpipe heart --status` for how to install them")


def heart_crop(ct: Volume, cfg: Stage1Config | None = None) -> Stage1Result:
    """Find the heart, check it, resample the CT to the target spacing and crop it to the heart box."""
    cfg = cfg or Stage1Config()
    cfg.validate()
    flags: list[Flag] = []
    warnings: list[str] = []
    info: dict = {}
    f = qc.check_slices(ct, cfg.min_slices)
    if f:
        flags.append(f)

    method, why = _choose_method(cfg)
    mask: Volume | None = None
    if method == "totalsegmentator":
        from .totalseg import segment_heart

        try:
            mask = segment_heart(ct, fast=cfg.fast, device=cfg.device, home=cfg.totalseg_home)
        except ModelNotInstalledError:
            raise
        except Exception as exc:  # noqa: BLE001 - auto mode must still produce a result
            if cfg.method != "auto":
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
    info["heart_volume_ml"] = float(mask.array.sum()) * ct.voxel_volume_mm3 / 1000.0
    bp = qc.blood_pool_hu(ct, mask)
    info["blood_pool_hu"] = bp
    cf = qc.detect_contrast(ct, mask)
    if cf:
        flags.append(cf)

    margin = cfg.fallback_margin_mm if method == "fallback" else cfg.margin_mm
    record = make_record(ct, mask, cfg.target_spacing_zyx, cfg.padding_voxels, extra_margin_mm=margin, method=method)
    record.extra = {"flags": [fl.code for fl in flags], "margin_mm": margin, **info, "settings": cfg.to_json()}
    cropped = apply_crop(ct, record, is_label=False)
    for fl in flags:
        if fl.severity != "info" and fl.message not in warnings:
            warnings.append(fl.message)
    return Stage1Result(cropped_ct=cropped, record=record, heart_mask=mask, method=method, flags=flags,
                        warnings=warnings, info=info)
