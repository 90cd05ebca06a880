"""Stage-2 mechanics end to end: tiny training through the real nnU-Net trainer (non-default trainer
class), resume, validation, nnU-Net export, install, and a 2-fold ensemble.

Mechanics only (a few iterations cannot learn much); what the shipped demo model learns is
tested in test_segment_demo.py.
"""

import os

import numpy as np
import pytest
import torch

from cacpipe.config import SegmentSettings
from cacpipe.labels import LABEL_BY_ID
from cacpipe.segment import find_model, install_model, segment
from nnunet_plans import train as T
from nnunet_plans.data import build_phantom_dataset, phantom_case, phantom_cohort_configs

TINY = {
    "configuration": "3d_fullres_tiny", "inherits_from": "3d_fullres", "spacing_zyx": [3.0, 3.0, 3.0],
    "patch_size_zyx": [16, 24, 24], "batch_size": 2, "features_base": 4, "features_max": 8, "max_stages": 3,
    "trainer": "nnUNetTrainer_cacpipeShort", "num_epochs": 2, "iterations_per_epoch": 3,
    "val_iterations_per_epoch": 1, "oversample_foreground_percent": 1.0,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("nnunet_work")
    old = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_def_n_proc")}
    T.set_nnunet_env(work)
    os.environ["nnUNet_def_n_proc"] = "1"
    try:
        ds = build_phantom_dataset(os.environ["nnUNet_raw"], 951, "tiny", n_cases=4, n_folds=2,
                                   spacing_zyx=TINY["spacing_zyx"])
        cfg = T.plan_and_preprocess(951, TINY, num_processes=1)
        (work / "preprocessed" / ds.name / "splits_final.json").write_text((ds / "splits_final.json").read_text())
        outs = [T.train_fold(951, cfg, f, TINY["trainer"], "cpu", validate=True) for f in (0, 1)]
        zip_path = T.export_zip(951, cfg, TINY["trainer"], [0, 1], work / "tiny_model.zip")
        yield {"work": work, "cfg": cfg, "outs": outs, "zip": zip_path}
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_training_ran_through_the_custom_trainer(trained):
    ck = torch.load(trained["outs"][0] / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ck["trainer_name"] == "nnUNetTrainer_cacpipeShort"
    assert ck["current_epoch"] == 2
    assert ck["init_args"]["configuration"] == "3d_fullres_tiny"
    losses = ck["logging"]["train_losses"]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert (trained["outs"][1] / "validation" / "summary.json").exists()


def test_interrupted_fold_resumes(trained):
    fold = trained["outs"][0]
    (fold / "checkpoint_final.pth").rename(fold / "final.bak")  # as if stopped after epoch 0
    try:
        out = T.train_fold(951, trained["cfg"], 0, TINY["trainer"], "cpu", validate=False)
        ck = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert ck["current_epoch"] == 2 and len(ck["logging"]["train_losses"]) == 2
    finally:
        (fold / "final.bak").replace(fold / "checkpoint_final.pth")


def test_export_install_and_two_fold_ensemble(trained, tmp_path):
    m = install_model(trained["zip"], tmp_path / "models")
    assert m.folds == (0, 1) and m.is_demo and m.spacing_zyx == (3.0, 3.0, 3.0)
    assert find_model(None, tmp_path / "models", allow_demo=False).path == m.path
    ct, _ = phantom_case(phantom_cohort_configs(1, seed0=4242)[0], m.spacing_zyx)
    r = segment(ct, m, SegmentSettings(agreement=True), device="auto")
    assert r.folds == (0, 1) and r.device == "cpu" and r.mirroring is False  # CPU default: no mirroring
    assert r.labels.same_grid(ct) and r.labels.array.dtype == np.uint8
    assert set(np.unique(r.labels.array)) <= {0, *LABEL_BY_ID}
    agree = r.agreement.array
    assert agree.shape == ct.shape and set(np.unique(agree)) <= {0.0, 0.5, 1.0}
    one = segment(ct, m, SegmentSettings(folds=(1,), tile_step_size=0.75))
    assert one.folds == (1,) and one.labels.same_grid(ct) and one.agreement is None
