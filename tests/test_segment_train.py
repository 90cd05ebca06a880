"""Stage-2 mechanics end to end: tiny training through the real nnU-Net trainer (non-default trainer
class), resume, validation, nnU-Net export, install, and a 2-fold ensemble.

Mechanics only (a few iterations cannot learn much); what the shipped demo model learns is
tested in test_segment_demo.py.
"""

import os
import shutil

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

pytestmark = pytest.mark.train  # real nnU-Net training steps


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


def test_fold_starts_from_given_weights(trained):
    """A fold started from a checkpoint (fine-tuning, --init) holds its weights.

    One epoch of 3 Adam steps moves each weight by about 3 learning rates at most; two independently
    initialised folds differ far more than that.
    """
    fold = trained["outs"][0]
    src = trained["outs"][1] / "checkpoint_final.pth"
    want = torch.load(src, map_location="cpu", weights_only=False)["network_weights"]
    other = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    convs = [k for k in want if ".seg_layers." not in k and want[k].ndim == 5]
    fold.rename(fold.with_name("fold_0.bak"))
    try:
        out = T.train_fold(951, trained["cfg"], 0, TINY["trainer"], "cpu", validate=False, max_epochs=1,
                           pretrained=str(src))
        got = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]

        def dist(a: dict) -> float:
            return max(float((a[k] - want[k]).abs().max()) for k in convs)

        assert convs and dist(got) < 0.1 < dist(other), (dist(got), dist(other))
    finally:
        shutil.rmtree(fold, ignore_errors=True)
        fold.with_name("fold_0.bak").rename(fold)


def test_export_install_and_two_fold_ensemble(trained, tmp_path):
    m = install_model(trained["zip"], tmp_path / "models", accept_weak=True)
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


def test_training_never_mirrors_left_right(trained):
    """Lateral safety: a model trained by cacpipe's trainers is never mirrored left-right, in training or
    at test time (the RCA and LCX grooves are near mirror images)."""
    import json
    import pickle

    from cacpipe.segment.models import checkpoint_mirror_axes, left_right_mirroring, left_right_network_axis
    from nnunet_plans.trainers import trainer_class, training_left_right_axes

    pre = trained["work"] / "preprocessed" / "Dataset951_tiny"
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    lr = left_right_network_axis(plans["transpose_forward"])
    # The axis is derived from the cases' own direction cosines, not assumed.
    cases = sorted((pre / f"nnUNetPlans_{trained['cfg']}").glob("*.pkl"))
    with open(cases[0], "rb") as fh:
        assert pickle.load(fh)["sitk_stuff"]["direction"] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert training_left_right_axes(cases[0].parent, plans["transpose_forward"]) == {lr}
    # Training augmentation: the trainer's mirror axes leave out the left-right axis, keep the others.
    trainer = trainer_class(TINY["trainer"])(plans={**plans, "continue_training": False}, configuration=trained["cfg"], fold=0,
                                            dataset_json=json.loads((pre / "dataset.json").read_text()),
                                            device=torch.device("cpu"))
    *_, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert lr not in mirror_axes and set(mirror_axes) == {0, 1, 2} - {lr}
    # Checkpoints: the allowed test-time mirroring axes exclude it too.
    m = install_model(trained["zip"], trained["work"] / "lr_models", accept_weak=True)
    axes = checkpoint_mirror_axes(m)
    assert axes and all(a is not None and lr not in a and len(a) == 2 for a in axes.values())
    assert left_right_mirroring(m) is None and m.warnings == ()
    log_file = next((trained["outs"][0]).glob("training_log_*.txt")).read_text()
    assert f"never mirroring network axes [{lr}]" in log_file


def test_model_mirrored_left_right_is_never_mirrored_left_right_at_test_time(trained, tmp_path):
    """A model a user brings, trained with left-right mirroring (nnU-Net's default): the axis is left out
    of test-time mirroring, re-derived from each image's direction cosines, and the result says so."""
    import shutil
    import zipfile

    from cacpipe.segment.predict import load_predictor
    from cacpipe.volume import Volume

    src = tmp_path / "src"
    with zipfile.ZipFile(trained["zip"]) as zf:
        zf.extractall(src)
    for ck_path in src.rglob("checkpoint_final.pth"):
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        ck["inference_allowed_mirroring_axes"] = (0, 1, 2)
        torch.save(ck, ck_path)
    bad_zip = tmp_path / "mirrored.zip"
    shutil.make_archive(str(bad_zip.with_suffix("")), "zip", src)
    m = install_model(bad_zip, tmp_path / "models", accept_weak=True)
    assert m.warnings and "left-right mirroring" in m.warnings[0]

    ct, _ = phantom_case(phantom_cohort_configs(1, seed0=4242)[0], m.spacing_zyx)
    cfg = SegmentSettings(mirroring=True, folds=(0,))
    res = segment(ct, m, cfg)
    assert res.mirroring is True and res.left_right_mirrored_model is True
    predictor, *_ = load_predictor(m, cfg, "cpu")
    assert set(predictor.allowed_mirroring_axes) == {0, 1}  # axial image: array axis 2 is left-right
    # Columns running head-feet and slices left-right (a sagittal stack): the left-right axis is array axis 0.
    sagittal = Volume(ct.array, ct.spacing_zyx, ct.origin_xyz, direction=(0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0))
    segment(sagittal, m, cfg)
    assert set(predictor.allowed_mirroring_axes) == {1, 2}
