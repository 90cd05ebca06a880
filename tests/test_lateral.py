"""Lateral safety of models: which axis is the patient's left-right, and the loud warning when an
installed model was trained mirrored along it (the RCA and LCX grooves are near mirror images).

The trainer side (a model trained by the test path is never mirrored left-right) and test-time
mirroring are tested on a really trained tiny model in test_segment_train.py.
"""

import json
import logging
import zipfile

import pytest
import torch
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.labels import nnunet_dataset_json
from cacpipe.segment import install_model
from cacpipe.segment.models import (
    checkpoint_mirror_axes,
    left_right_array_axis,
    left_right_mirroring,
    left_right_network_axis,
)

FOLDER = "Dataset778_lateral/nnUNetTrainer__nnUNetPlans__3d_fullres"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(("direction", "axis"), [
    (AXIAL, 2),  # axial, columns to the patient's left
    ((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0), 2),  # axial, rotated 180 degrees (feet-first prone)
    ((0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 0),  # slices stacked left-right (sagittal)
    ((0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0), 1),  # rows run left-right (coronal-like)
    ((0.98, 0.17, 0.0, -0.17, 0.98, 0.0, 0.0, 0.0, 1.0), 2),  # axial with a 10 degree in-plane tilt
])
def test_left_right_array_axis_from_direction_cosines(direction, axis):
    assert left_right_array_axis(direction) == axis


def test_left_right_network_axis_follows_the_plans_transpose():
    assert left_right_network_axis([0, 1, 2]) == 2
    assert left_right_network_axis([2, 0, 1]) == 0  # network axis 0 = array axis 2
    assert left_right_network_axis([1, 2, 0]) == 1
    assert left_right_network_axis([0, 1, 2], (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)) == 0


def _zip(path, axes_per_fold, transpose=(0, 1, 2)):
    """An export-shaped zip whose checkpoints hold only their mirroring axes (enough to install)."""
    plans = {"transpose_forward": list(transpose), "transpose_backward": list(transpose),
             "configurations": {"3d_fullres": {"spacing": [2.0, 1.5, 1.5], "patch_size": [8, 8, 8]}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{FOLDER}/dataset.json", json.dumps(nnunet_dataset_json(5)))
        zf.writestr(f"{FOLDER}/plans.json", json.dumps(plans))
        for f, axes in enumerate(axes_per_fold):
            ck = path.parent / f"ck{f}.pth"
            torch.save({"inference_allowed_mirroring_axes": axes, "trainer_name": "nnUNetTrainer"}, ck)
            zf.write(ck, f"{FOLDER}/fold_{f}/checkpoint_final.pth")
    return path


def test_installing_a_left_right_mirrored_model_warns_loudly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cacpipe.segment.models"):
        m = install_model(_zip(tmp_path / "m.zip", [(0, 1, 2), (0, 1)]), tmp_path / "models")
    assert checkpoint_mirror_axes(m) == {0: (0, 1, 2), 1: (0, 1)}
    assert len(m.warnings) == 1 and "folds 0 allow mirroring along network axis 2" in m.warnings[0]
    assert "RCA" in m.warnings[0] and "retrain" in m.warnings[0]
    assert any("left-right mirroring" in r.getMessage() for r in caplog.records)
    r = CliRunner().invoke(cli, ["models", "install", str(tmp_path / "m.zip"), "--model-dir",
                                 str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "WARNING: model Dataset778_lateral" in r.output and "left-right mirroring" in r.output


def test_transposed_plans_move_the_left_right_axis(tmp_path):
    # With transpose_forward [2, 0, 1] the left-right array axis (2) is network axis 0: mirroring on
    # axes (1, 2) is safe, mirroring on axis 0 is not.
    safe = install_model(_zip(tmp_path / "a.zip", [(1, 2)], transpose=(2, 0, 1)), tmp_path / "a")
    assert safe.warnings == () and left_right_mirroring(safe) is None
    bad = install_model(_zip(tmp_path / "b.zip", [(0,)], transpose=(2, 0, 1)), tmp_path / "b")
    assert "network axis 0" in bad.warnings[0]


def test_lateral_safe_and_unreadable_checkpoints_install_quietly(tmp_path):
    m = install_model(_zip(tmp_path / "m.zip", [(0, 1), None]), tmp_path / "models")
    assert m.warnings == ()
    with zipfile.ZipFile(tmp_path / "junk.zip", "w") as zf:  # placeholder weights: axes unknown, no crash
        zf.writestr(f"{FOLDER}/dataset.json", json.dumps(nnunet_dataset_json(5)))
        zf.writestr(f"{FOLDER}/plans.json", json.dumps({"configurations": {"3d_fullres": {"spacing": [1, 1, 1]}}}))
        zf.writestr(f"{FOLDER}/fold_0/checkpoint_final.pth", b"weights")
    assert install_model(tmp_path / "junk.zip", tmp_path / "junk").warnings == ()
