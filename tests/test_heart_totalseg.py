"""TotalSegmentator run for real on tiny stand-in models written in its folder layout.

The stand-in networks have TotalSegmentator's real model folders, plans, trainers and label
maps but 2-4 features and zeroed output weights with a bias towards "heart", so they predict
heart everywhere: enough to exercise the mechanics (weight lookup, no download, no telemetry,
environment isolation, mask back on the CT grid), fast on CPU.
"""

import json
import os
import socket

import numpy as np
import pytest

from cacpipe import flags as F
from cacpipe.errors import ModelNotInstalledError
from cacpipe.heart import Stage1Config, heart_crop, totalseg_status
from cacpipe.heart import totalseg as ts
from cacpipe.volume import Volume


def _plans(name: str, spacing: list[float]) -> dict:
    arch = {
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
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [32, 32, 32], "median_image_size_in_voxels": [64, 64, 64],
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
    plans = _plans(folder, spacing)
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


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory):
    from cacpipe import torchvision_fix

    torchvision_fix.apply()
    from totalsegmentator.map_to_binary import class_map, class_map_5_parts

    home = tmp_path_factory.mktemp("totalseg_home")
    w = home / "nnunet" / "results"
    total = class_map["total"]
    cardiac = class_map_5_parts["class_map_part_cardiac"]
    write_standin_model(w, 298, total, [6.0, 6.0, 6.0], {v: k for k, v in total.items()}["heart"])
    write_standin_model(w, 293, cardiac, [1.5, 1.5, 1.5], {v: k for k, v in cardiac.items()}["heart"])
    # Usage statistics were switched on by an earlier TotalSegmentator run: we must switch them off.
    (home / "config.json").write_text(json.dumps({"totalseg_id": "totalseg_KEEPME", "send_usage_stats": True,
                                                  "prediction_counter": 3}))
    return home


def _small_ct(ph) -> Volume:
    """A 60 x 128 x 128 piece of the small phantom around the heart (keeps TotalSegmentator quick)."""
    ct = ph.ct
    sl = (slice(10, 70), slice(64, 192), slice(70, 198))
    origin = ct.index_to_physical(np.array([[10, 64, 70]]))[0]
    return Volume(np.ascontiguousarray(ct.array[sl]), ct.spacing_zyx, tuple(origin), ct.direction)


def test_status_reports_what_is_installed(standin_home, tmp_path):
    st = totalseg_status(standin_home, fast=False)
    assert st["installed"] and st["missing"] == [] and set(st["models"]) == {298, 293}
    st_fast = totalseg_status(standin_home, fast=True)
    assert not st_fast["installed"] and st_fast["missing"] == [297]
    assert "Dataset297_TotalSegmentator_total_3mm_1559subj" in st_fast["instructions"]
    # An incomplete folder (no checkpoint) is not installed.
    d = ts.model_dir(tmp_path / "nnunet" / "results", 298)
    d.mkdir(parents=True)
    (d / "plans.json").write_text("{}")
    assert totalseg_status(tmp_path)["missing"] == [298, 293]


def test_totalsegmentator_runs_offline_without_stats_and_restores_env(standin_home, small_phantom, monkeypatch):
    real_connect = socket.socket.connect

    def no_network(sock, address):  # local (AF_UNIX) sockets are multiprocessing's, allowed
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("nnUNet_results", "/our/stage2/results")
    monkeypatch.setenv("nnUNet_raw", "/our/stage2/raw")
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", "/somewhere/else")  # an explicit home must win
    before = {k: os.environ.get(k) for k in (*ts.NNUNET_ENV, *ts.TOTALSEG_ENV)}

    from cacpipe.heart.stage1 import _choose_method

    assert _choose_method(Stage1Config(totalseg_home=standin_home))[0] == "totalsegmentator"  # auto picks it
    ct = _small_ct(small_phantom)
    res = heart_crop(ct, Stage1Config(method="totalsegmentator", device="cpu", totalseg_home=standin_home,
                                      min_slices=50))

    assert res.method == "totalsegmentator" and res.record.method == "totalsegmentator"
    codes = [f.code for f in res.flags]
    assert F.FALLBACK_HEART_LOCATOR not in codes
    # The stand-in says "heart" everywhere: the mask fills the CT grid, and QC says so.
    assert res.heart_mask.same_grid(ct) and res.heart_mask.array.dtype == np.uint8
    assert res.heart_mask.array.all()
    assert F.HEART_AT_EDGE in codes
    assert res.record.bbox_lo_zyx == (0, 0, 0) and res.record.bbox_hi_zyx == res.record.resampled_shape_zyx
    # Environment restored, telemetry off, unused part models not fetched.
    assert {k: os.environ.get(k) for k in before} == before
    cfg = json.loads((standin_home / "config.json").read_text())
    assert cfg["send_usage_stats"] is False and cfg["totalseg_id"] == "totalseg_KEEPME"
    assert not list((standin_home / "nnunet" / "results").glob("Dataset291*"))


def test_download_guard_refuses_missing_models(tmp_path):
    import totalsegmentator.python_api as api

    original = api.download_pretrained_weights
    with ts._no_download_no_stats(tmp_path, fast=False):
        assert api.download_pretrained_weights is not original
        with pytest.raises(ModelNotInstalledError, match="Dataset293"):
            api.download_pretrained_weights(293)
        api.download_pretrained_weights(291)  # checked by TotalSegmentator, not needed for the heart
        with pytest.raises(ModelNotInstalledError):
            api.download_pretrained_weights(300)
    assert api.download_pretrained_weights is original


def test_auto_falls_back_when_weights_are_missing(small_phantom, tmp_path):
    res = heart_crop(small_phantom.ct, Stage1Config(totalseg_home=tmp_path))
    flag = next(f for f in res.flags if f.code == F.FALLBACK_HEART_LOCATOR)
    assert "Dataset298" in flag.message and "Dataset293" in flag.message
