"""Model install / list / find and the refusal of models that do not match the label scheme."""

import json
import zipfile

import pytest
from click.testing import CliRunner

from cacpipe.cli import cli
from cacpipe.errors import ConfigError, InputDataError, ModelMismatchError, ModelNotInstalledError
from cacpipe.labels import nnunet_dataset_json
from cacpipe.segment import find_model, install_model, list_models

FOLDER = "Dataset777_test/nnUNetTrainer_cacpipeShort__nnUNetPlans__3d_fullres_x"


def _zip(path, dataset_json=None, folds=(0, 1), extra=None):
    """An nnU-Net export-shaped zip (weights are placeholders: install never loads them)."""
    plans = {"transpose_backward": [0, 1, 2], "configurations": {
        "3d_fullres": {"spacing": [9.0, 9.0, 9.0], "patch_size": [8, 8, 8]},
        "3d_fullres_x": {"inherits_from": "3d_fullres", "spacing": [2.0, 1.5, 1.25]}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{FOLDER}/dataset.json", json.dumps(dataset_json or nnunet_dataset_json(5)))
        zf.writestr(f"{FOLDER}/plans.json", json.dumps(plans))
        for f in folds:
            zf.writestr(f"{FOLDER}/fold_{f}/checkpoint_final.pth", b"weights")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def test_install_list_find(tmp_path):
    m = install_model(_zip(tmp_path / "m.zip"), tmp_path / "models")
    assert m.full_name == FOLDER and m.folds == (0, 1) and not m.is_demo
    assert m.spacing_zyx == (2.0, 1.5, 1.25)  # from the inheriting configuration, z y x
    assert m.configuration == "3d_fullres_x" and m.trainer == "nnUNetTrainer_cacpipeShort"
    assert [x.full_name for x in list_models(tmp_path / "models")] == [FOLDER]
    assert find_model(None, tmp_path / "models", allow_demo=False).path == m.path
    assert find_model("Dataset777_test", tmp_path / "models").path == m.path
    with pytest.raises(ConfigError, match="already installed"):
        install_model(tmp_path / "m.zip", tmp_path / "models")
    assert install_model(tmp_path / "m.zip", tmp_path / "models", force=True).path == m.path
    with pytest.raises(ConfigError, match="not installed"):
        find_model("Dataset001_other", tmp_path / "models")


def test_mismatched_models_are_refused(tmp_path):
    bad = nnunet_dataset_json(5)
    bad["labels"] = {"background": 0, "calcium": 1}
    del bad["regions_class_order"]
    with pytest.raises(ModelMismatchError, match="not a cacpipe coronary model.*labels"):
        install_model(_zip(tmp_path / "bad.zip", bad), tmp_path / "models")
    mr = nnunet_dataset_json(5)
    mr["channel_names"] = {"0": "T1"}
    with pytest.raises(ModelMismatchError, match="one CT channel"):
        install_model(_zip(tmp_path / "mr.zip", mr), tmp_path / "models")
    with pytest.raises(ModelMismatchError, match="no fold_K"):
        install_model(_zip(tmp_path / "nofold.zip", folds=()), tmp_path / "models")
    with pytest.raises(InputDataError, match="unsafe path"):
        install_model(_zip(tmp_path / "evil.zip", extra={"../evil.txt": "x"}), tmp_path / "models")
    assert list_models(tmp_path / "models") == []
    assert not (tmp_path / "evil.txt").exists()


def test_no_model_says_how_to_install(tmp_path):
    with pytest.raises(ModelNotInstalledError, match="cacpipe models install"):
        find_model(None, tmp_path / "empty", allow_demo=False)


def test_cli_install_and_list_with_env_model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_MODEL_DIR", str(tmp_path / "envmodels"))
    r = CliRunner().invoke(cli, ["models", "install", str(_zip(tmp_path / "m.zip"))])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "envmodels" / FOLDER / "fold_1" / "checkpoint_final.pth").exists()
    r = CliRunner().invoke(cli, ["models", "list"])
    assert r.exit_code == 0 and FOLDER in r.output and f"in use: {FOLDER}" in r.output
    bad = nnunet_dataset_json(5)
    bad["regions_class_order"] = [6, 5, 4, 3, 2, 1]
    r = CliRunner().invoke(cli, ["models", "install", "--model-dir", str(tmp_path / "flag"),
                                 str(_zip(tmp_path / "bad.zip", bad))])
    assert r.exit_code != 0 and "regions_class_order" in r.output
    assert not (tmp_path / "flag" / FOLDER).exists()
