"""Stage-2 inference: the nnU-Net fold ensemble on a heart-cropped CT, in memory.

The network is built from the model's plans.json (nnU-Net's own builder) and the fold weights
are loaded by explicit path (``nnUNetPredictor.manual_initialization``), so no nnU-Net path
variables and no trainer-class lookup are needed. Folds are averaged on the logits as nnU-Net
does, regions are thresholded at sigmoid 0.5 and painted in ``regions_class_order``: the output
is the six-class map of cacpipe.labels on the input grid.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import SegmentSettings, parse_device
from ..errors import ConfigError, GeometryError, ModelNotInstalledError
from ..volume import Volume
from .models import CHECKPOINT, InstalledModel, left_right_network_axis

log = logging.getLogger(__name__)


@dataclass
class SegmentResult:
    labels: Volume  # uint8 six-class map, same grid as the input CT
    agreement: Volume | None  # float32 0..1 fold agreement with the ensemble label, or None
    device: str
    folds: tuple[int, ...]
    mirroring: bool
    seconds: float
    left_right_mirrored_model: bool = False  # a fold was trained with left-right mirroring (not used at test time)
    precision: str = "fp32"  # "bf16" under CPU bfloat16 autocast; CUDA: nnU-Net's own float16 autocast
    tile_batch: int = 1
    calcium_prob: Volume | None = None  # float32 0..1: the ensemble's highest calcium-region probability

    def settings(self) -> dict:
        return {"device": self.device, "folds": list(self.folds), "mirroring": self.mirroring,
                "precision": self.precision, "tile_batch": self.tile_batch, "seconds": round(self.seconds, 2)}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX; Linux /proc/cpuinfo). Without it,
    bfloat16 autocast is emulated and slower than float32."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def bf16_for(cfg: SegmentSettings, device: str) -> bool:
    """bfloat16 autocast for this run: only on CPU; the setting, or (null) when the CPU has native bfloat16."""
    if device != "cpu":
        return False
    return cpu_has_native_bf16() if cfg.bf16 is None else bool(cfg.bf16)


def resolve_device(device: str) -> str:
    """A torch device name for a cacpipe device: ``auto`` -> ``cuda`` when available, else ``cpu``;
    ``cuda`` / ``cuda:N`` checked to exist (a list ``cuda:0,1`` is for the runner: pass one device)."""
    import torch

    device = parse_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if "," in device:
        raise ConfigError(f"device {device!r} names several GPUs; one study runs on one (the runner spreads studies)")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
    if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s) (cuda:0..)")
    return device


def _network_builder(trainer_name: str):
    """The trainer class whose build_network_architecture made this model's network.

    cacpipe's trainers and nnU-Net's run-length variants keep the plans-based builder; other
    names are looked up in nnU-Net (a custom architecture needs its class importable).
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if trainer_name == "nnUNetTrainer" or trainer_name.startswith("nnUNetTrainer_cacpipe"):
        return nnUNetTrainer
    from ..torchvision_fix import apply

    apply()
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        return recursive_find_trainer_class_by_name(trainer_name)
    except RuntimeError:
        log.warning("trainer %s not found; building the network from plans.json", trainer_name)
        return nnUNetTrainer


TILE_BATCH_VOXELS = 1 << 20  # CPU: tiles per forward pass up to this many input voxels (at most 8)


def tile_batch_for(cfg: SegmentSettings, device: str, patch_size=None) -> int:
    """Sliding-window tiles per forward pass: the setting, or (null) on CPU as many tiles as fit in
    ``TILE_BATCH_VOXELS`` (8 for the demo model's 32 x 48 x 48 patch, 1 for the paper's 112 x 128 x 160),
    on CUDA 1 (nnU-Net's loop; not measured here).

    On CPU a batch of small tiles is what makes PyTorch use oneDNN convolutions (with one small
    contiguous tile it falls back to its slow reference 3D convolution); a batch of large tiles only
    costs memory (docs/performance.md has the figures).
    """
    if cfg.tile_batch is not None:
        return int(cfg.tile_batch)
    if device.startswith("cuda") or not patch_size:
        return 1
    return max(1, min(8, TILE_BATCH_VOXELS // int(np.prod(patch_size))))


def _batched_predictor_class():
    """nnUNetPredictor with several sliding-window tiles per forward pass (``tile_batch``) and, optionally,
    channels-last 3D input. Tiles, Gaussian weighting, mirroring and the averaging are nnU-Net's own; the
    batching differs, and the sums are kept in float32 on CPU (nnU-Net: float16), so the result equals
    nnU-Net's up to floating-point rounding (tests/test_segment_tiles.py). One tile, contiguous: nnU-Net's loop."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    class BatchedPredictor(nnUNetPredictor):
        tile_batch: int = 1
        channels_last: bool = False

        @torch.inference_mode()
        def _internal_predict_sliding_window_return_logits(self, data, slicers, do_on_device: bool = True):
            if self.tile_batch <= 1 and not self.channels_last:  # exactly nnU-Net's loop
                return super()._internal_predict_sliding_window_return_logits(data, slicers, do_on_device)
            results_device = self.device if do_on_device else torch.device("cpu")
            data = data.to(results_device)
            heads = self.label_manager.num_segmentation_heads
            # nnU-Net accumulates in half precision to spare GPU memory; on CPU float32 costs little and rounds less.
            acc = torch.half if results_device.type == "cuda" else torch.float32
            logits = torch.zeros((heads, *data.shape[1:]), dtype=acc, device=results_device)
            weights = torch.zeros(data.shape[1:], dtype=acc, device=results_device)
            gaussian = compute_gaussian(tuple(self.configuration_manager.patch_size), sigma_scale=1. / 8,
                                        value_scaling_factor=10, device=results_device, dtype=acc) \
                if self.use_gaussian else 1
            step = max(1, int(self.tile_batch))
            for i in range(0, len(slicers), step):
                group = slicers[i:i + step]
                x = torch.stack([data[sl] for sl in group])
                fmt = torch.channels_last_3d if (self.channels_last and x.ndim == 5) else torch.contiguous_format
                x = x.to(self.device, memory_format=fmt)
                pred = self._internal_maybe_mirror_and_predict(x).to(results_device)
                for sl, p in zip(group, pred, strict=True):
                    logits[sl] += p * gaussian if self.use_gaussian else p
                    weights[sl[1:]] += gaussian
            torch.div(logits, weights, out=logits)
            if torch.any(torch.isinf(logits)):
                raise RuntimeError("infinite logits in the sliding-window prediction")
            return logits

    return BatchedPredictor


_CACHE: dict[tuple, object] = {}


def load_predictor(model: InstalledModel, cfg: SegmentSettings, device: str = "auto"):
    """An initialised nnUNetPredictor for ``model`` and ``cfg`` (cached per process). Returns (predictor, folds, device, mirroring)."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    device = resolve_device(device)
    folds = tuple(model.folds if cfg.folds is None else cfg.folds)
    missing = sorted(set(folds) - set(model.folds))
    if missing or not folds:
        raise ModelNotInstalledError(f"model {model.full_name} has folds {list(model.folds)}; "
                                     f"requested {list(folds)} (missing {missing})")
    mirroring = device.startswith("cuda") if cfg.mirroring is None else bool(cfg.mirroring)
    key = (str(model.path), folds, device, mirroring, float(cfg.tile_step_size), cfg.tile_batch,
           bool(cfg.channels_last))
    if key in _CACHE:
        return _CACHE[key], folds, device, mirroring

    dataset_json = json.loads((model.path / "dataset.json").read_text())
    plans_manager = PlansManager(json.loads((model.path / "plans.json").read_text()))
    params, mirror_axes, lr_trained = [], None, False
    lr = left_right_network_axis(plans_manager.transpose_forward)
    for f in folds:
        ckpt = torch.load(model.path / f"fold_{f}" / CHECKPOINT, map_location="cpu", weights_only=False)
        params.append(ckpt["network_weights"])
        mirror_axes = ckpt.get("inference_allowed_mirroring_axes", mirror_axes)
        lr_trained |= bool(mirror_axes) and lr in mirror_axes
    # Never mirror left-right at test time: a flipped heart puts the RCA where the LCX runs.
    # segment() drops the axis again per image (its own direction cosines), from the checkpoint's axes.
    ckpt_axes = mirror_axes
    mirror_axes = tuple(a for a in mirror_axes if a != lr) if mirror_axes else mirror_axes
    cm = plans_manager.get_configuration(model.configuration)
    n_in = determine_num_input_channels(plans_manager, cm, dataset_json)
    n_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = _network_builder(model.trainer).build_network_architecture(
        plans_manager, cm, n_in, n_out, enable_deep_supervision=False)
    # nnU-Net prints "perform_everything_on_device=True is only supported for cuda devices!" for any
    # non-CUDA device, whatever the flag says (it is False here on CPU): that print is swallowed.
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = _batched_predictor_class()(tile_step_size=cfg.tile_step_size, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=device.startswith("cuda"),
                                    device=torch.device(device), verbose=False, verbose_preprocessing=False,
                                    allow_tqdm=False)
    if cfg.channels_last and len(cm.patch_size) == 3:  # weights loaded per fold (load_state_dict) keep this layout
        network = network.to(memory_format=torch.channels_last_3d)
    predictor.manual_initialization(network, plans_manager, cm, params, dataset_json, model.trainer, mirror_axes)
    predictor.tile_batch = tile_batch_for(cfg, device, cm.patch_size)
    predictor.channels_last = bool(cfg.channels_last)
    predictor.cacpipe_left_right_trained = lr_trained
    predictor.cacpipe_mirror_axes = ckpt_axes
    _CACHE.clear()  # one model in memory at a time
    _CACHE[key] = predictor
    return predictor, folds, device, mirroring


def _calcium_channels(label_manager) -> list[int]:
    """Indices of the calcium regions (one calcium label each) among the network's output regions."""
    from ..labels import CALCIUM_IDS

    regions = label_manager.foreground_regions if label_manager.has_regions else label_manager.foreground_labels
    out = []
    for i, r in enumerate(regions):
        ids = (r,) if isinstance(r, int | np.integer) else tuple(r)
        if len(ids) == 1 and int(ids[0]) in CALCIUM_IDS:
            out.append(i)
    return out


def segment(ct: Volume, model: InstalledModel, cfg: SegmentSettings | None = None,
            device: str = "auto", calcium_prob: bool = False) -> SegmentResult:
    """Segment coronary arteries and their calcium in a heart-cropped CT (ideally at ``model.spacing_zyx``).

    nnU-Net resamples to the model spacing itself and back, so the labels are always on ``ct``'s grid.
    ``calcium_prob``: also return the ensemble's calcium probability (the highest of the calcium
    regions' sigmoids, same grid): the density rule weighs what the network saw below its 0.5 threshold.
    """
    import torch
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.export_prediction import (
        convert_predicted_logits_to_segmentation_with_correct_shape,
    )

    cfg = cfg or SegmentSettings()
    t0 = time.perf_counter()
    if min(ct.shape) < 2:
        raise GeometryError(f"CT crop of shape {ct.shape} is too small to segment")
    predictor, folds, device, mirroring = load_predictor(model, cfg, device)
    lr = left_right_network_axis(predictor.plans_manager.transpose_forward, ct.direction)
    axes = predictor.cacpipe_mirror_axes
    predictor.allowed_mirroring_axes = tuple(a for a in axes if a != lr) if axes else axes
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        # nnU-Net's SimpleITK reader gives (z, y, x) arrays with spacing reversed to (z, y, x): same as Volume.
        image = ct.array.astype(np.float32)[None]
        ppa = PreprocessAdapterFromNpy([image], [None], [{"spacing": list(ct.spacing_zyx)}], [None],
                                       predictor.plans_manager, predictor.dataset_json,
                                       predictor.configuration_manager, num_threads_in_multithreaded=1, verbose=False)
        dct = next(ppa)
        data, props = dct["data"], dct["data_properties"]

        def to_seg(logits):
            return convert_predicted_logits_to_segmentation_with_correct_shape(
                logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, props,
                return_probabilities=False)

        all_params = predictor.list_of_parameters
        per_fold = []
        total = None
        bf16 = bf16_for(cfg, device)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else None
        with torch.inference_mode():
            for p in all_params:
                predictor.list_of_parameters = [p]
                if autocast is not None:
                    with autocast:
                        logits = predictor.predict_logits_from_preprocessed_data(data).float().cpu()
                else:
                    logits = predictor.predict_logits_from_preprocessed_data(data).float().cpu()
                total = logits if total is None else total + logits
                if cfg.agreement:
                    per_fold.append(np.asarray(to_seg(logits)))
        predictor.list_of_parameters = all_params
        prob = None
        if calcium_prob:
            seg_, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
                total / len(all_params), predictor.plans_manager, predictor.configuration_manager,
                predictor.label_manager, props, return_probabilities=True)
            labels = np.asarray(seg_).astype(np.uint8)
            ch = _calcium_channels(predictor.label_manager)
            # region-based: channels are the regions (no background); softmax models: background first
            off = 0 if predictor.label_manager.has_regions else 1
            prob = (np.max(np.asarray(probs)[[c + off for c in ch]], axis=0).astype(np.float32) if ch
                    else np.zeros(labels.shape, np.float32))
        else:
            labels = np.asarray(to_seg(total / len(all_params))).astype(np.uint8)
    finally:
        torch.set_num_threads(old_threads)
    if labels.shape != ct.shape:
        raise GeometryError(f"nnU-Net returned shape {labels.shape} for input {ct.shape}")
    agreement = None
    if cfg.agreement:
        agree = np.mean([f == labels for f in per_fold], axis=0).astype(np.float32)
        agreement = ct.with_array(agree)
    return SegmentResult(ct.with_array(labels), agreement, device, folds, mirroring, time.perf_counter() - t0,
                         bool(getattr(predictor, "cacpipe_left_right_trained", False)),
                         "bf16" if bf16 else ("fp16-autocast" if device.startswith("cuda") else "fp32"),
                         int(predictor.tile_batch), None if prob is None else ct.with_array(prob))
