"""nnU-Net stage-2 inference timings with the paper's real 3d_fullres architecture (random weights).

A model folder in nnU-Net's layout is written with the architecture that nnunet_plans/paper.json
defines (spacing 0.8 x 0.73 x 0.73 mm, patch 112 x 128 x 160, 6 stages 32..320 features) and
random weights: timings are real, predictions meaningless. Inference goes through cacpipe's own
``cacpipe.segment.segment`` (nnU-Net's sliding-window predictor).

--quick: the input is one patch-sized block of the heart crop (one network pass per fold and
mirror), and the full-crop time is extrapolated by the number of sliding-window tiles (stated
in the notes). Without --quick the real heart crop of the benchmark CT is segmented.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from .measure import measure
from .stages import Context, heart_crop_for_bench


def write_random_paper_model(root: Path, folds: int) -> Path:
    """A 5-fold-capable model folder with the paper architecture and random weights."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from cacpipe.labels import nnunet_dataset_json
    from devtools.standin import plans_dict
    from nnunet_plans.plans import configuration_from_spec, load_spec

    spec = load_spec("paper")
    conf = configuration_from_spec(spec)
    name = spec["configuration"]
    plans = plans_dict("Dataset990_cacpipe_bench", conf["spacing"], conf["architecture"], conf["patch_size"], name)
    folder = root / "Dataset990_cacpipe_bench" / f"nnUNetTrainer__nnUNetPlans__{name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(nnunet_dataset_json(1)))
    cm = PlansManager(plans).get_configuration(name)
    torch.manual_seed(0)
    for k in range(folds):
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1, 6, deep_supervision=False)
        (folder / f"fold_{k}").mkdir(exist_ok=True)
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": name}, "inference_allowed_mirroring_axes": (0, 1, 2)},
                   folder / f"fold_{k}" / "checkpoint_final.pth")
    return folder


def _tiles(shape, patch, step=0.5) -> int:
    n = 1
    for s, p in zip(shape, patch, strict=True):
        n *= 1 if s <= p else math.ceil((s - p) / (p * step)) + 1
    return n


def _variant(folds: int, mirroring: bool, bf16: bool):
    def stage(ctx: Context):
        from cacpipe import torchvision_fix

        torchvision_fix.apply()
        from cacpipe.config import SegmentSettings
        from cacpipe.segment import read_model, segment
        from cacpipe.volume import Volume

        root = Path(tempfile.mkdtemp())
        model = read_model(write_random_paper_model(root, folds))
        crop = heart_crop_for_bench(ctx, model.spacing_zyx)
        patch = json.loads((model.path / "plans.json").read_text())["configurations"][model.configuration]["patch_size"]
        full_tiles = _tiles(crop.shape, patch)
        ct = crop
        if ctx.quick:  # one patch-sized block from the middle of the crop
            sl = tuple(slice(max(0, (s - p) // 2), max(0, (s - p) // 2) + p) for s, p in zip(crop.shape, patch, strict=True))
            block = np.ascontiguousarray(crop.array[sl])
            ct = Volume(block, crop.spacing_zyx, crop.origin_xyz, crop.direction)
        cfg = SegmentSettings(folds=tuple(range(folds)), mirroring=mirroring, bf16=bf16 and ctx.device == "cpu")
        m = measure(lambda: {"input_zyx": list(ct.shape), "device": segment(ct, model, cfg, ctx.device).device})
        tiles = _tiles(ct.shape, patch)
        m.details.update(folds=folds, mirroring=mirroring, precision="bf16" if bf16 else "fp32",
                         tiles=tiles, crop_zyx=list(crop.shape), crop_tiles=full_tiles)
        if ctx.quick:
            m.details["extrapolated_full_crop_s"] = round(m.seconds * full_tiles / tiles, 1)
        return m

    return stage


NNUNET_STAGES: dict[str, tuple] = {
    "nnunet_1fold_fp32": (_variant(1, False, False), "nnU-Net paper architecture, 1 fold, no mirroring, fp32"),
    "nnunet_1fold_bf16": (_variant(1, False, True), "same, bf16 autocast (CPU) / fp16 (CUDA)"),
    "nnunet_5fold_fp32": (_variant(5, False, False), "5-fold ensemble, no mirroring"),
    "nnunet_5fold_bf16": (_variant(5, False, True), "5-fold ensemble, no mirroring, bf16 autocast (CPU)"),
    "nnunet_1fold_mirror": (_variant(1, True, False), "1 fold with 8-way test-time mirroring"),
}
