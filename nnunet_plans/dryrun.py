"""Before training: check every case, summarise the data, estimate disk and time (``make train DRY_RUN=1``).

:func:`preflight` checks every case (``label_tools.checks``) and writes ``WORK/preflight.json``
and ``.csv``; ``make train`` runs it first and refuses to train on a dataset with a failing case
unless told to leave such cases out (``SKIP_FAILED=1``). :func:`estimate` adds what the run will
cost on this machine:

- **time**: one training step of the plan's own network (nnU-Net's builder, batch and patch of
  the plan, nnU-Net's Dice + BCE deep-supervision loss, SGD, mixed precision on CUDA) is timed
  here, on the device training would use, and multiplied out to epochs x iterations x folds, plus
  nnU-Net's per-epoch validation iterations (forward only, taken as 1/3 of a step). Data loading
  and augmentation are not in the measured step: nnU-Net's augmentation can be the bottleneck
  with few CPU cores per GPU.
- **disk**: each case's heart crop is estimated from the bounding box of its labelled arteries
  widened by ``CROP_MARGIN_MM`` on every side (the heart box holds the coronary tree), at the
  plan's spacing; nnU-Net's preprocessed arrays counted uncompressed (float32 image + int8
  labels: an upper bound; nnU-Net stores them blosc2-compressed), checkpoints from the network's
  parameter count.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

from cacpipe.csvout import write_csv
from label_tools.checks import CaseCheck, check_case

CROP_MARGIN_MM = 20.0
# Bytes per voxel (compressed NIfTI): measured on phantom crops of this project, rounded up.
NIFTI_CT_BYTES = 2.0  # float32 CT, gzip
NIFTI_LABEL_BYTES = 0.05  # uint8 sparse labels, gzip
CKPT_FACTOR = 3  # a checkpoint holds the weights and the optimizer state (SGD momentum; Adam: two buffers)
PAPER_REFERENCE = "the source paper: about 6 h per fold on one H100 (250 epochs x 250 iterations, batch 2)"


# --- checks ---------------------------------------------------------------------------------
def preflight(cases, mapping=None, options=None, out_dir: str | Path | None = None,
              progress: bool = True) -> list[CaseCheck]:
    """Check every case; with ``out_dir`` write ``preflight.json`` and ``preflight.csv`` there."""
    checks = []
    for i, case in enumerate(cases, 1):
        chk, _ = check_case(case, mapping, options)
        checks.append(chk)
        if progress:
            print(f"  [{i}/{len(cases)}] {case.case}: {'ok' if chk.ok else 'FAILED'}", flush=True)
    if out_dir is not None:
        write_preflight(checks, out_dir)
    return checks


CSV_COLUMNS = ["case", "patient_id", "status", "problems", "warnings", "source", "input_kind", "scanner", "kernel",
               "slice_thickness_mm", "spacing_zyx", "shape_zyx", "contrast", "contrast_reason",
               "calcium_fraction_ge_130"]


def write_preflight(checks: list[CaseCheck], out_dir: str | Path, extra: dict | None = None) -> Path:
    """``preflight.json`` (summary + every check) and ``preflight.csv`` (one row a case) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**c.to_dict(), "problems": " | ".join(c.problems), "warnings": " | ".join(c.warnings),
             "spacing_zyx": " x ".join(f"{s:g}" for s in c.spacing_zyx or []),
             "shape_zyx": " x ".join(map(str, c.shape_zyx or []))} for c in checks]
    write_csv(out / "preflight.csv", rows, CSV_COLUMNS)
    path = out / "preflight.json"
    path.write_text(json.dumps({"summary": summarise(checks), **(extra or {}),
                                "cases": [c.to_dict() for c in checks]}, indent=2))
    return path


def read_preflight(path: str | Path) -> tuple[list[CaseCheck], dict]:
    """The checks and extra keys of a ``preflight.json``."""
    d = json.loads(Path(path).read_text())
    return [CaseCheck.from_dict(c) for c in d.get("cases", [])], d


def _counts(values) -> dict[str, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def _mm(v: float | None) -> str:
    return "unknown" if v is None else f"{v:g} mm"


def summarise(checks: list[CaseCheck]) -> dict:
    """What the training data is: cases, patients, scanners, slice thicknesses, contrast (ok cases)."""
    ok = [c for c in checks if c.ok]
    return {
        "cases": len(checks),
        "cases_ok": len(ok),
        "cases_failed": [c.case for c in checks if not c.ok],
        "patients": len({c.patient_id for c in ok}),
        "sources": _counts(c.source for c in ok),
        "input_kinds": _counts(c.input_kind or "unknown" for c in ok),
        "scanners": _counts(c.scanner or "unknown (no DICOM header)" for c in ok),
        "slice_thickness_mm": _counts(_mm(c.slice_thickness_mm) for c in ok),
        "slice_spacing_mm": _counts(_mm(round(c.spacing_zyx[0], 2)) if c.spacing_zyx else "unknown" for c in ok),
        "contrast": {"contrast": sum(c.contrast is True for c in ok),
                     "non_contrast": sum(c.contrast is False for c in ok),
                     "unknown": sum(c.contrast is None for c in ok)},
        "calcium_free_cases": sum(not any(v for k, v in c.voxels_by_class.items() if k.endswith("_calcium"))
                                  for c in ok),
    }


# --- the network and one training step -------------------------------------------------------
def build_network(cfg: dict, n_out: int = 6, deep_supervision: bool = True):
    """The plan configuration's network (nnU-Net's builder): ``cfg`` holds ``architecture``."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = cfg["architecture"]
    return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                  1, n_out, allow_init=True, deep_supervision=deep_supervision)


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def measure_step(cfg: dict, device: str = "auto", steps: int = 2, n_out: int = 6) -> dict:
    """Seconds per training step of ``cfg``'s network on ``device`` (median of ``steps`` after one warm-up).

    The step is nnU-Net's: a batch of ``batch_size`` random patches of ``patch_size``, forward with
    deep supervision, Dice + BCE loss over the regions, backward, gradient clipping, SGD with
    momentum 0.99; autocast and a gradient scaler on CUDA.
    """
    import numpy as np
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    net = build_network(cfg, n_out).to(dev)
    params = sum(p.numel() for p in net.parameters())
    batch, patch = int(cfg["batch_size"]), [int(s) for s in cfg["patch_size"]]
    x = torch.randn(batch, 1, *patch, device=dev)
    with torch.no_grad():
        shapes = [o.shape[2:] for o in net(x[:1])]
    targets = [(torch.rand(batch, n_out, *s, device=dev) > 0.9).float() for s in shapes]
    w = np.array([1 / 2**i for i in range(len(shapes))])
    w[-1] = 0
    loss_fn = DeepSupervisionWrapper(
        DC_and_BCE_loss({}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False},
                        dice_class=MemoryEfficientSoftDiceLoss), w / w.sum())
    opt = torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    scaler = torch.amp.GradScaler("cuda") if dev.type == "cuda" else None

    def step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            with torch.autocast("cuda"):
                loss = loss_fn(net(x), targets)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            scaler.step(opt)
            scaler.update()
            torch.cuda.synchronize(dev)
        else:
            loss = loss_fn(net(x), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            opt.step()
        return time.perf_counter() - t

    net.train()
    step()  # warm-up: allocation, cuDNN autotuning
    times = [step() for _ in range(max(1, steps))]
    return {"device": device, "device_name": device_name(device), "seconds_per_step": round(statistics.median(times), 4),
            "steps_timed": len(times), "parameters": int(params), "batch_size": batch, "patch_size": patch}


def run_length(spec: dict, trainer: str, epochs: int | None = None) -> tuple[int, int, int]:
    """(epochs, iterations per epoch, validation iterations per epoch) of a run.

    ``epochs`` given > the spec's ``num_epochs`` > a number in the trainer name (``..._250epochs``,
    ``..._cacpipe250``) > nnU-Net's default 1000; iterations: the spec's, else nnU-Net's 250 and 50.
    """
    import re

    if epochs is None:
        epochs = spec.get("num_epochs")
    if epochs is None:
        m = re.search(r"(\d+)(?:epochs)?$", trainer)
        epochs = int(m.group(1)) if m else 1000
    return (int(epochs), int(spec.get("iterations_per_epoch", 250)), int(spec.get("val_iterations_per_epoch", 50)))


def time_estimate(step: dict, epochs: int, iterations: int, val_iterations: int, folds: int, gpus: int) -> dict:
    """Training time from a measured step: per fold, and for all folds (in parallel with several GPUs)."""
    s = step["seconds_per_step"]
    fold_s = epochs * (iterations * s + val_iterations * s / 3)
    parallel = max(1, min(gpus, folds))
    return {"seconds_per_step": s, "epochs": epochs, "iterations_per_epoch": iterations,
            "val_iterations_per_epoch": val_iterations, "hours_per_fold": round(fold_s / 3600, 3),
            "folds": folds, "parallel_folds": parallel,
            "hours_total": round(math.ceil(folds / parallel) * fold_s / 3600, 3)}


# --- disk -------------------------------------------------------------------------------------
def crop_voxels(chk: CaseCheck, spacing_zyx) -> int:
    """Estimated voxels of the case's heart crop at ``spacing_zyx`` (see module docstring)."""
    if not chk.shape_zyx or not chk.spacing_zyx:
        return 0
    full = [n * s for n, s in zip(chk.shape_zyx, chk.spacing_zyx, strict=True)]
    ext = chk.labelled_extent_mm_zyx or full
    return int(math.prod(math.ceil(min(e + 2 * CROP_MARGIN_MM, f) / t)
                         for e, f, t in zip(ext, full, spacing_zyx, strict=True)))


def disk_estimate(checks: list[CaseCheck], spacing_zyx, parameters: int, folds: int) -> dict:
    """Bytes each part of the run needs (ok cases only); see the module docstring for the assumptions."""
    ok = [c for c in checks if c.ok]
    crop = sum(crop_voxels(c, spacing_zyx) for c in ok)
    original = sum(math.prod(c.shape_zyx) for c in ok if c.shape_zyx)
    ckpt = parameters * 4 * CKPT_FACTOR
    parts = {
        "raw dataset (cropped CT + labels, NIfTI)": crop * (NIFTI_CT_BYTES + NIFTI_LABEL_BYTES),
        "nnU-Net preprocessed (float32 + int8, uncompressed bound)": crop * (4 + 1 + NIFTI_LABEL_BYTES),
        "nnU-Net results (3 checkpoints per fold, validation maps)": folds * 3 * ckpt + crop * NIFTI_LABEL_BYTES,
        "cross-validation (original-grid CT int16 + label maps)": original * (2 + 2 * NIFTI_LABEL_BYTES),
        "model zip (final checkpoints)": folds * ckpt,
    }
    parts = {k: int(v) for k, v in parts.items()}
    return {"parts_bytes": parts, "total_bytes": sum(parts.values()), "crop_voxels": crop,
            "crop_margin_mm": CROP_MARGIN_MM}


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _listing(counts: dict) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.1f} min" if h * 60 >= 1 else f"{h * 3600:.0f} s"


def format_report(checks: list[CaseCheck], plan: dict | None = None, disk: dict | None = None,
                  timing: dict | None = None, step: dict | None = None, parameters: int | None = None) -> str:
    """The dry run's printed report."""
    s = summarise(checks)
    lines = [f"cases: {s['cases']} ({s['cases_ok']} ok, {len(s['cases_failed'])} failed) from "
             f"{_listing(s['sources'])}"]
    for c in checks:
        for p in c.problems:
            lines.append(f"  FAILED {c.case} (patient {c.patient_id}): {p}")
    for c in checks:
        for w in c.warnings:
            lines.append(f"  warning {c.case}: {w}")
    lines += [
        f"patients: {s['patients']}",
        f"scanners: {_listing(s['scanners'])}",
        f"slice thickness (DICOM tag): {_listing(s['slice_thickness_mm'])}",
        f"slice spacing: {_listing(s['slice_spacing_mm'])}",
        f"contrast: {s['contrast']['non_contrast']} non-contrast, {s['contrast']['contrast']} contrast"
        + (f", {s['contrast']['unknown']} unknown" if s["contrast"]["unknown"] else "")
        + f"; {s['calcium_free_cases']} case(s) without calcium",
    ]
    if plan:
        lines.append(f"plan: {plan.get('name')} ({plan.get('configuration')}), spacing "
                     f"{' x '.join(f'{v:g}' for v in plan['spacing_zyx'])} mm, patch "
                     f"{' x '.join(map(str, plan['patch_size']))}, batch {plan['batch_size']}, trainer "
                     f"{plan['trainer']}, {plan['folds']} folds" + (f", initialised from {plan['init']}"
                                                                     if plan.get("init") else ""))
        if plan.get("fold_patients"):
            lines.append(f"folds: {plan['fold_patients']} patients per validation fold")
    if step:
        lines.append(f"network: {step['parameters']:,} parameters; one training step "
                     f"{step['seconds_per_step']:.3f} s on {step['device']} ({step['device_name']}), "
                     f"median of {step['steps_timed']} after a warm-up")
    elif parameters:
        lines.append(f"network: {parameters:,} parameters (step not timed)")
    if timing:
        par = (f"{timing['parallel_folds']} folds at a time" if timing["parallel_folds"] > 1
               else "one fold after another")
        lines.append(f"time: about {_hours(timing['hours_per_fold'])} per fold ({timing['epochs']} epochs x "
                     f"{timing['iterations_per_epoch']} iterations + {timing['val_iterations_per_epoch']} validation "
                     f"iterations per epoch), {_hours(timing['hours_total'])} for {timing['folds']} fold(s), {par}")
        lines.append("  assumptions: the measured step (network, loss, optimizer) only: data loading/augmentation, "
                     "torch.compile, validation export and cross-validation not included; reference: "
                     + PAPER_REFERENCE)
    if disk:
        lines.append(f"disk: about {_gb(disk['total_bytes'])} in WORK")
        for k, v in disk["parts_bytes"].items():
            lines.append(f"  {k}: {_gb(v)}")
        lines.append(f"  assumptions: heart crop = labelled bounding box + {disk['crop_margin_mm']:g} mm on every side "
                     "at the plan's spacing; checkpoints = parameters x 4 bytes x 3 (weights + optimizer state)")
    return "\n".join(lines)
