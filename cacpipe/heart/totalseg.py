"""Heart segmentation with TotalSegmentator, offline only, without telemetry.

How TotalSegmentator 2.18 finds its weights (``totalsegmentator/config.py``, ``libs.py``):
``$TOTALSEG_WEIGHTS_PATH`` if set, else ``$TOTALSEG_HOME_DIR/nnunet/results`` (default
``~/.totalsegmentator/nnunet/results``). Each model is a folder
``Dataset<ID>_<name>/<trainer>__nnUNetPlans__3d_fullres/`` holding ``dataset.json``,
``plans.json`` and ``fold_0/checkpoint_final.pth``. When a folder is missing it downloads it.

``task="total", roi_subset=["heart"]`` runs the 6 mm model (Dataset298) to find the heart's
neighbourhood, then only the part model that contains the heart: Dataset293 (cardiac part,
1.5 mm) in normal mode, Dataset297 (all classes, 3 mm) with ``fast=True``. In normal mode it
still *checks* the other four part folders (291, 292, 294, 295) and would download them; it
never runs them for the heart.

So that nothing is ever downloaded, :func:`segment_heart` checks the folders itself first and,
during the call, replaces TotalSegmentator's downloader by a guard that raises
:class:`~cacpipe.errors.ModelNotInstalledError` for a needed model and does nothing for the
part models the heart does not need. Usage statistics are switched off in its ``config.json``
(and its sender is disabled for the call). The ``nnUNet_*`` environment variables, which
TotalSegmentator overwrites, are restored afterwards so that our own nnU-Net stage still finds
its models.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import env
from ..errors import InputDataError, ModelNotInstalledError
from ..volume import Volume

log = logging.getLogger(__name__)

# Model folders (TotalSegmentator 2.18 names) and trainers they are stored under.
CROP_MODEL = ("Dataset298_TotalSegmentator_total_6mm_1559subj", "nnUNetTrainer_4000epochs_NoMirroring")
HEART_MODEL_NORMAL = ("Dataset293_TotalSegmentator_part3_cardiac_1559subj", "nnUNetTrainerNoMirroring")
HEART_MODEL_FAST = ("Dataset297_TotalSegmentator_total_3mm_1559subj", "nnUNetTrainer_4000epochs_NoMirroring")
PLANS_CONFIG = "nnUNetPlans__3d_fullres"
MODEL_IDS = {298: CROP_MODEL, 293: HEART_MODEL_NORMAL, 297: HEART_MODEL_FAST}
# Part models that task "total" (normal mode) checks for but never runs for roi_subset=["heart"].
UNUSED_PART_IDS = (291, 292, 294, 295)
HEART_CLASS_NAME = "heart"


def needed_model_ids(fast: bool) -> tuple[int, int]:
    """Dataset ids TotalSegmentator runs for the heart: (crop model, heart model)."""
    return (298, 297 if fast else 293)


def resolve_home(home: Path | str | None) -> Path:
    """TotalSegmentator's home folder: ``home`` if given, else as TotalSegmentator resolves it."""
    return env.totalseg_home(home)


def resolve_weights_dir(home: Path | str | None) -> Path:
    """Folder holding the ``Dataset*`` model folders (see :func:`cacpipe.env.totalseg_weights_dir`)."""
    return env.totalseg_weights_dir(home)


def model_dir(weights_dir: Path, dataset_id: int) -> Path:
    folder, trainer = MODEL_IDS[dataset_id]
    return weights_dir / folder / f"{trainer}__{PLANS_CONFIG}"


def _model_complete(d: Path) -> bool:
    return (d / "dataset.json").is_file() and (d / "plans.json").is_file() and \
        (d / "fold_0" / "checkpoint_final.pth").is_file()


def totalseg_status(home: Path | None = None, fast: bool = False) -> dict:
    """What TotalSegmentator needs for the heart and whether it is installed.

    Returns ``{"installed": bool, "weights_dir": str, "home": str, "fast": bool,
    "models": {id: {"folder", "path", "installed"}}, "missing": [ids], "instructions": str}``.
    Reads the file system only; imports nothing heavy.
    """
    weights = resolve_weights_dir(home)
    models = {}
    missing = []
    for did in needed_model_ids(fast):
        d = model_dir(weights, did)
        ok = _model_complete(d)
        models[did] = {"folder": MODEL_IDS[did][0], "path": str(d), "installed": ok}
        if not ok:
            missing.append(did)
    return {
        "installed": not missing,
        "weights_dir": str(weights),
        "home": str(resolve_home(home)),
        "fast": fast,
        "models": models,
        "missing": missing,
        "instructions": install_instructions(missing, weights) if missing else "",
    }


def install_instructions(missing: list[int], weights_dir: Path) -> str:
    """Exact offline install steps for the missing model ids."""
    names = ", ".join(f"Dataset{i} ({MODEL_IDS[i][0]})" for i in missing)
    zips = " ".join(f"{MODEL_IDS[i][0]}.zip" for i in missing)
    task = "total_fast" if 297 in missing else "total"
    return (
        f"TotalSegmentator weights for the heart are not installed: missing {names} under {weights_dir}. "
        f"To install offline: (1) on a machine with internet run `totalseg_download_weights -t {task}` "
        f"(or fetch {zips} from TotalSegmentator's GitHub release assets) and zip/copy the Dataset folders "
        f"from its ~/.totalsegmentator/nnunet/results; (2) here, for each zip run "
        f"`TOTALSEG_WEIGHTS_PATH={weights_dir} totalseg_import_weights -i <ZIP>` "
        f"(or unzip it into {weights_dir} so that {weights_dir}/<Dataset folder>/<trainer>__{PLANS_CONFIG}/"
        f"fold_0/checkpoint_final.pth exists); (3) check with `cacpipe heart --status`. "
        f"Without weights use --method fallback (a coarse classical heart locator)."
    )


def require_weights(home: Path | None, fast: bool) -> dict:
    """Raise ModelNotInstalledError (with install steps) unless the heart models are installed."""
    st = totalseg_status(home, fast)
    if not st["installed"]:
        raise ModelNotInstalledError(st["instructions"])
    return st


def disable_usage_stats(home: Path) -> Path:
    """Write/patch TotalSegmentator's ``config.json`` in ``home`` with ``send_usage_stats: false``."""
    home.mkdir(parents=True, exist_ok=True)
    cfg_file = home / "config.json"
    cfg: dict = {}
    if cfg_file.exists():
        try:
            cfg = json.loads(cfg_file.read_text())
        except (OSError, json.JSONDecodeError):
            cfg = {}
    changed = cfg.get("send_usage_stats") is not False or "totalseg_id" not in cfg
    cfg.setdefault("totalseg_id", "totalseg_cacpipe_offline")
    cfg.setdefault("prediction_counter", 0)
    cfg["send_usage_stats"] = False
    cfg["statistics_disclaimer_shown"] = True
    if changed or not cfg_file.exists():
        cfg_file.write_text(json.dumps(cfg, indent=4))
    return cfg_file


def _isolated_env(home: Path, weights_dir: Path):
    """Point TotalSegmentator at ``home``/``weights_dir`` and restore every variable it touches."""
    return env.scoped({env.TOTALSEG_HOME: str(home), env.TOTALSEG_WEIGHTS: str(weights_dir)},
                      restore=env.NNUNET_PATHS)


@contextlib.contextmanager
def _no_download_no_stats(weights_dir: Path, fast: bool) -> Iterator[None]:
    """Replace TotalSegmentator's downloader by a guard and its stats sender by a no-op."""
    import totalsegmentator.python_api as api

    needed = set(needed_model_ids(fast))

    def guard(task_id):  # same signature as totalsegmentator.libs.download_pretrained_weights
        if task_id in needed:
            if not _model_complete(model_dir(weights_dir, task_id)):
                raise ModelNotInstalledError(install_instructions([task_id], weights_dir))
            return
        if task_id in UNUSED_PART_IDS:
            return  # checked by task "total", never run for roi_subset=["heart"]
        raise ModelNotInstalledError(
            f"TotalSegmentator asked for model {task_id}, which cacpipe does not install or allow to download")

    saved = (api.download_pretrained_weights, api.send_usage_stats)
    api.download_pretrained_weights = guard
    api.send_usage_stats = lambda *a, **k: None
    try:
        yield
    finally:
        api.download_pretrained_weights, api.send_usage_stats = saved


def _device_arg(device: str) -> str:
    """TotalSegmentator's device name for a cacpipe device (``cuda:N`` -> ``gpu:N``; a list: its first)."""
    if device == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        return "gpu:" + device.split(":", 1)[1].split(",")[0]
    return {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu"}[device]


def _run_totalsegmentator(src: str, out: str, ts_home: str, weights_dir: str, fast: bool, dev: str,
                          quiet: bool) -> int:
    """Run TotalSegmentator on ``src`` and save its label map to ``out``; returns the heart's label id.

    Runs in a child process (see segment_heart): importing TotalSegmentator patches nnU-Net's
    predictor and export functions process-wide, which must not leak into our own stage 2.
    """
    from .. import torchvision_fix

    torchvision_fix.apply()
    with _isolated_env(Path(ts_home), Path(weights_dir)):
        from totalsegmentator.map_to_binary import class_map
        from totalsegmentator.python_api import totalsegmentator

        # quiet: also what nnU-Net prints inside TotalSegmentator (e.g. its CPU-device notice).
        printed = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
        with _no_download_no_stats(Path(weights_dir), fast), printed:
            seg = totalsegmentator(src, None, ml=True, task="total", roi_subset=[HEART_CLASS_NAME],
                                   fast=fast, device=dev, quiet=quiet, nr_thr_saving=1)
    import nibabel as nib

    nib.save(seg, out)
    return {v: k for k, v in class_map["total"].items()}[HEART_CLASS_NAME]


def segment_heart(ct: Volume, fast: bool = False, device: str = "auto", home: Path | None = None,
                  quiet: bool | None = None) -> Volume:
    """Heart mask (uint8 0/1 on the CT's grid) from TotalSegmentator ``task=total, roi_subset=[heart]``.

    Raises ModelNotInstalledError (before importing anything heavy) when the weights are missing.
    TotalSegmentator runs in a fresh (spawned) process: its import patches nnU-Net globally, and
    its peak memory (several GB) is returned to the system when it ends.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    st = require_weights(home, fast)
    weights_dir = Path(st["weights_dir"])
    ts_home = Path(st["home"])
    try:
        disable_usage_stats(ts_home)
    except OSError as exc:  # read-only home: the sender is still disabled for the call below
        log.warning("cannot write TotalSegmentator's config.json in %s (%s)", ts_home, exc)

    dev = _device_arg(device)
    if quiet is None:  # TotalSegmentator's own output only with -v
        from .. import logs

        quiet = logs.verbosity() < 1
    with tempfile.TemporaryDirectory(prefix="cacpipe_ts_") as tmp:
        src = ct.write(Path(tmp) / "ct.nii.gz")
        out = Path(tmp) / "seg.nii.gz"
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            heart_id = pool.submit(_run_totalsegmentator, str(src), str(out), str(ts_home), str(weights_dir),
                                   fast, dev, quiet).result()
        seg_vol = Volume.read(out)
    if seg_vol.shape != ct.shape:
        raise InputDataError(f"TotalSegmentator returned a mask of shape {seg_vol.shape} for a CT of "
                             f"shape {ct.shape}; cannot use it")
    mask = (np.asarray(seg_vol.array) == heart_id).astype(np.uint8)
    return ct.with_array(mask)
