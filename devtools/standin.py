"""Tiny stand-in TotalSegmentator models in its real folder layout, for tests and benchmarks.

The stand-in networks have TotalSegmentator's model folders, plans, trainers and label maps
but 2-4 features and zeroed output weights with a bias towards "heart", so they predict heart
everywhere: they exercise the mechanics (weight lookup, no download, no telemetry, environment
isolation, mask back on the CT grid) fast on CPU. They are useless for real images.
"""

from __future__ import annotations

import json
from pathlib import Path

from cacpipe.heart import totalseg as ts


def plans_dict(name: str, spacing: list[float], arch: dict | None = None, patch: list[int] | None = None,
           configuration: str = "3d_fullres") -> dict:
    """A complete nnU-Net plans dict (tiny 2-stage U-Net unless ``arch`` is given)."""
    arch = arch or {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 2, "features_per_stage": [2, 4], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]],
            "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    seg_kw = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing, "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "NibabelIOWithReorient", "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {configuration: {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": patch or [32, 32, 32], "median_image_size_in_voxels": [64, 64, 64],
            "spacing": spacing, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": seg_kw,
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**seg_kw, "is_seg": False},
            "architecture": arch, "batch_dice": False,
        }},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 3000.0, "mean": 0.0, "median": 0.0, "min": -1024.0, "percentile_00_5": -1000.0,
            "percentile_99_5": 1000.0, "std": 300.0}},
    }


def write_standin_model(weights_dir, dataset_id: int, class_names: dict, spacing: list[float], winner: int):
    """A model folder in TotalSegmentator's layout whose network predicts class ``winner`` everywhere."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder, trainer = ts.MODEL_IDS[dataset_id]
    d = ts.model_dir(weights_dir, dataset_id)
    (d / "fold_0").mkdir(parents=True)
    plans = plans_dict(folder, spacing)
    labels = {"background": 0, **{n: i for i, n in class_names.items()}}
    (d / "plans.json").write_text(json.dumps(plans))
    (d / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels,
                                                "numTraining": 1, "file_ending": ".nii.gz"}))
    cm = PlansManager(plans).get_configuration("3d_fullres")
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(labels), deep_supervision=False)
    with torch.no_grad():
        head = net.decoder.seg_layers[-1]
        head.weight.zero_()
        head.bias.zero_()
        head.bias[winner] = 5.0
    torch.save({"network_weights": net.state_dict(), "trainer_name": trainer,
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
               d / "fold_0" / "checkpoint_final.pth")



def write_standin_home(home: str | Path, fast: bool = False) -> Path:
    """A TotalSegmentator home folder with stand-in models for the heart (298 + 293, or 297 if fast)."""
    from cacpipe import torchvision_fix

    torchvision_fix.apply()
    from totalsegmentator.map_to_binary import class_map, class_map_5_parts

    home = Path(home)
    w = home / "nnunet" / "results"
    total = class_map["total"]
    cardiac = class_map_5_parts["class_map_part_cardiac"]
    heart_total = {v: k for k, v in total.items()}["heart"]
    write_standin_model(w, 298, total, [6.0, 6.0, 6.0], heart_total)
    if fast:
        write_standin_model(w, 297, total, [3.0, 3.0, 3.0], heart_total)
    else:
        write_standin_model(w, 293, cardiac, [1.5, 1.5, 1.5], {v: k for k, v in cardiac.items()}["heart"])
    return home
