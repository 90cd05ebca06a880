"""Add a cacpipe configuration (spacing, patch, batch, network size) to nnU-Net's plans file.

nnU-Net plans first (fingerprint + ExperimentPlanner) so that intensity normalisation and
resampling come from the data; our spec then adds a configuration that ``inherits_from`` the
planned 3d_fullres and overrides spacing, patch size, batch size and the U-Net topology (pooling
and kernels recomputed for the patch with nnU-Net's own ``get_pool_and_conv_props``). Run-length
settings for our trainer (epochs, iterations) ride in the same configuration under ``cacpipe_*``
keys, which nnU-Net ignores.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = {"paper": HERE / "paper.json", "demo": HERE / "demo.json", "demo_clinical": HERE / "demo_clinical.json"}


def load_spec(name_or_path: str | Path) -> dict:
    """A plan spec by name (``paper``, ``demo``) or a JSON file path."""
    p = SPECS.get(str(name_or_path), Path(name_or_path))
    if not p.exists():
        raise FileNotFoundError(f"plan spec {name_or_path!r} not found; use 'paper', 'demo' or a JSON file")
    return json.loads(p.read_text())


def configuration_from_spec(spec: dict) -> dict:
    """The plans.json configuration entry (relative to ``inherits_from``) for ``spec``."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    spacing = [float(s) for s in spec["spacing_zyx"]]
    patch = [int(s) for s in spec["patch_size_zyx"]]
    n_pool, pool_kernels, conv_kernels, patch_out, _ = get_pool_and_conv_props(spacing, patch, 4, 999999)
    n_stages = min(len(pool_kernels), int(spec.get("max_stages", 99)))
    pool_kernels, conv_kernels = pool_kernels[:n_stages], conv_kernels[:n_stages]
    feats = [min(int(spec["features_base"]) * 2**i, int(spec["features_max"])) for i in range(n_stages)]
    cfg = {
        "inherits_from": spec.get("inherits_from", "3d_fullres"),
        "data_identifier": f"nnUNetPlans_{spec['configuration']}",
        "spacing": spacing,
        "patch_size": [int(s) for s in patch_out],
        "batch_size": int(spec["batch_size"]),
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n_stages,
                "features_per_stage": feats,
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [list(k) for k in conv_kernels],
                "strides": [list(k) for k in pool_kernels],
                "n_conv_per_stage": [2] * n_stages,
                "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None,
                "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU",
                "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
    }
    if "batch_dice" in spec:
        cfg["batch_dice"] = bool(spec["batch_dice"])
    for k in ("num_epochs", "iterations_per_epoch", "val_iterations_per_epoch", "initial_lr",
              "oversample_foreground_percent", "optimizer"):
        if k in spec:
            cfg[f"cacpipe_{k}"] = spec[k]
    return cfg


def add_configuration(plans_file: str | Path, spec: dict) -> str:
    """Write the spec's configuration into ``plans_file`` (in place); returns the configuration name."""
    plans_file = Path(plans_file)
    plans = json.loads(plans_file.read_text())
    plans["configurations"][spec["configuration"]] = configuration_from_spec(spec)
    plans_file.write_text(json.dumps(plans, indent=2, sort_keys=False))
    return spec["configuration"]
