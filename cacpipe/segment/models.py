"""Installed stage-2 models: install an exported nnU-Net zip, list, find, validate against the label scheme.

Layout (as nnU-Net's own results folder, so ``nnUNetv2_export_model_to_zip`` zips install as-is):
``<model dir>/DatasetXXX_name/<trainer>__<plans>__<configuration>/{dataset.json, plans.json, fold_K/}``.
The model dir is ``--model-dir``, else ``$CACPIPE_MODEL_DIR``, else ``~/.cacpipe/models``.
The shipped demo model (phantom-trained, NOT FOR CLINICAL USE) is unpacked on first use into
``$CACPIPE_CACHE_DIR`` (default ``~/.cache/cacpipe``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .. import env
from ..errors import ConfigError, InputDataError, ModelMismatchError, ModelNotInstalledError
from ..labels import REGIONS_CLASS_ORDER, nnunet_labels
from .card import CHECKPOINT, read_card, verify_card, weak_points

log = logging.getLogger(__name__)

DEMO_ZIP = Path(__file__).resolve().parent.parent / "data" / "demo_model.zip"
FINGERPRINT_FILE = "cacpipe_model_id.json"  # cache of model_fingerprint, next to dataset.json
INSTALL_HELP = ("install a trained model with `cacpipe models install MODEL.zip` "
                "(a zip from `make train` or nnUNetv2_export_model_to_zip)")


@dataclass(frozen=True)
class InstalledModel:
    """One trained configuration with its folds, ready for :func:`cacpipe.segment.segment`."""

    path: Path  # the <trainer>__<plans>__<configuration> folder
    name: str  # DatasetXXX_name
    configuration: str
    trainer: str
    plans: str
    folds: tuple[int, ...]
    spacing_zyx: tuple[float, float, float]  # the pipeline resamples the heart crop to this
    is_demo: bool = False
    card_id: str | None = None  # its model card's id (cacpipe.segment.card), None without a card
    warnings: tuple[str, ...] = ()  # found at install (e.g. trained with left-right mirroring)

    @property
    def full_name(self) -> str:
        return f"{self.name}/{self.path.name}"

    @property
    def model_id(self) -> str:
        """The model's version as every output names it: a fingerprint of its files (12 hex digits)."""
        return model_fingerprint(self.path)

    def to_dict(self) -> dict:
        """The ``pipeline.model`` entry of the result JSON."""
        return {"name": self.full_name, "id": self.model_id, "path": str(self.path), "is_demo": self.is_demo,
                "folds": list(self.folds), "trainer": self.trainer, "configuration": self.configuration,
                "spacing_zyx": list(self.spacing_zyx), "card_id": self.card_id}

    def card(self) -> dict | None:
        """The model card (cacpipe.segment.card), None when the model has none."""
        return read_card(self.path)


# cacpipe's inputs are axial CT assembled by cacpipe.ingest: the array's x axis (columns, axis 2)
# follows the DICOM row direction, which runs along the patient's left-right axis.
AXIAL_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def left_right_array_axis(direction) -> int:
    """The array axis (of a (z, y, x) array) that runs along the patient's left-right (LPS x) axis.

    ``direction`` is ITK's row-major 3 x 3 matrix whose columns are the patient directions of the
    index axes (x, y, z); array axis ``2 - k`` is index axis ``k``.
    """
    d = [float(v) for v in direction]
    k = max(range(3), key=lambda j: abs(d[j]))  # row 0 = the L component of each index axis
    return 2 - k


def left_right_network_axis(transpose_forward, direction=AXIAL_DIRECTION) -> int:
    """The network's spatial axis that is the patient's left-right axis: nnU-Net transposes the
    (z, y, x) array by ``transpose_forward`` (network axis j = array axis transpose_forward[j])."""
    return list(transpose_forward).index(left_right_array_axis(direction))


def checkpoint_mirror_axes(model: InstalledModel) -> dict[int, tuple[int, ...] | None]:
    """Per fold, the test-time mirroring axes its checkpoint allows (= the axes it was trained mirrored on);
    folds whose checkpoint cannot be read are left out."""
    import torch

    out: dict[int, tuple[int, ...] | None] = {}
    for f in model.folds:
        path = model.path / f"fold_{f}" / CHECKPOINT
        try:  # mmap: the axes without reading every weight (zip-format checkpoints)
            ck = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # noqa: BLE001 - legacy format: read it whole; unreadable: unknown
            try:
                ck = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:  # noqa: BLE001
                log.debug("cannot read %s (%s)", path, exc)
                continue
        axes = ck.get("inference_allowed_mirroring_axes") if isinstance(ck, dict) else None
        out[f] = None if axes is None else tuple(int(a) for a in axes)
    return out


def left_right_mirroring(model: InstalledModel) -> str | None:
    """A warning when any fold's checkpoint allows mirroring along the patient's left-right axis, else None.

    Such a network was shown left-right flipped hearts in training, so it cannot tell the RCA from
    the LCX (their grooves are near mirror images). cacpipe never mirrors that axis at test time,
    but the training cannot be undone: retrain with cacpipe's trainers (nnunet_plans/README.md).
    """
    plans = json.loads((model.path / "plans.json").read_text())
    lr = left_right_network_axis(plans.get("transpose_forward", [0, 1, 2]))
    bad = [f for f, axes in checkpoint_mirror_axes(model).items() if axes and lr in axes]
    if not bad:
        return None
    return (f"model {model.full_name} was trained with left-right mirroring (folds {', '.join(map(str, bad))} allow "
            f"mirroring along network axis {lr}, the patient's left-right axis): it may confuse the RCA with the "
            "LCX. cacpipe will not mirror that axis at test time, but per-artery numbers from this model need "
            "review; retrain with `make train` (lateral-safe trainers)")
def _model_files(path: Path) -> list[Path]:
    return [path / "dataset.json", path / "plans.json", *sorted(path.glob(f"fold_*/{CHECKPOINT}"))]


@functools.lru_cache(maxsize=16)
def _fingerprint(path: Path, stamp: tuple) -> str:
    h = hashlib.sha256()
    for rel, *_ in stamp:
        h.update(rel.encode() + b"\0")
        with open(path / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:12]


def model_fingerprint(path: str | Path) -> str:
    """SHA-256 (12 hex digits) over a model folder's dataset.json, plans.json and fold checkpoints.

    Two folders with the same files have the same id wherever they are installed, and any
    retraining changes it. Hashing a 5-fold model reads every checkpoint once, so the id is cached
    in the process and in ``FINGERPRINT_FILE`` next to dataset.json (keyed by file sizes and
    modification times; skipped when the folder is read-only).
    """
    path = Path(path)
    stamp = tuple((f.relative_to(path).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
                  for f in _model_files(path) if f.exists())
    cache = path / FINGERPRINT_FILE
    try:
        saved = json.loads(cache.read_text())
        if [tuple(x) for x in saved.get("files", [])] == list(stamp) and isinstance(saved.get("id"), str):
            return saved["id"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = _fingerprint(path, stamp)
    try:
        cache.write_text(json.dumps({"id": digest, "files": [list(x) for x in stamp]}))
    except OSError:
        pass
    return digest


def model_dir(path: str | Path | None = None) -> Path:
    """The model directory: ``path``, else $CACPIPE_MODEL_DIR, else ~/.cacpipe/models."""
    return env.model_dir(path)


_resolve_model_dir = model_dir  # find_model's ``model_dir`` argument shadows the function


def check_dataset_json(dataset_json: dict, where: str) -> None:
    """Raise ModelMismatchError unless the model's labels, regions and channels are cacpipe's scheme."""
    problems = []
    labels = dataset_json.get("labels")
    want = nnunet_labels()
    if not isinstance(labels, dict) or {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in labels.items()} != want:
        problems.append(f"labels are {labels!r}, cacpipe needs {want!r}")
    if list(dataset_json.get("regions_class_order") or []) != list(REGIONS_CLASS_ORDER):
        problems.append(f"regions_class_order is {dataset_json.get('regions_class_order')!r}, "
                        f"cacpipe needs {list(REGIONS_CLASS_ORDER)!r}")
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(channels, dict) or list(channels.values()) != ["CT"]:
        problems.append(f"input channels are {channels!r}, cacpipe needs one CT channel")
    if problems:
        raise ModelMismatchError(f"{where} is not a cacpipe coronary model: " + "; ".join(problems)
                                 + ". Use a model trained with `make train` (region-based six-class scheme).")


def read_model(path: str | Path, is_demo: bool | None = None) -> InstalledModel:
    """Read and validate a model folder (``<trainer>__<plans>__<configuration>``)."""
    path = Path(path)
    try:
        dataset_json = json.loads((path / "dataset.json").read_text())
        plans = json.loads((path / "plans.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotInstalledError(f"model folder {path} lacks a readable dataset.json/plans.json ({exc}); "
                                     f"{INSTALL_HELP}") from exc
    check_dataset_json(dataset_json, f"model {path}")
    parts = path.name.split("__")
    if len(parts) != 3:
        raise ModelMismatchError(f"model folder name {path.name!r} is not <trainer>__<plans>__<configuration>")
    trainer, plans_name, configuration = parts
    if configuration not in plans.get("configurations", {}):
        raise ModelMismatchError(f"model {path}: plans.json has no configuration {configuration!r}")
    folds = _trained_folds(path)
    if not folds:
        raise ModelNotInstalledError(f"model {path} has no fold_K/{CHECKPOINT}; {INSTALL_HELP}")
    cfg = resolved_configuration(plans, configuration)
    back = plans.get("transpose_backward", [0, 1, 2])
    spacing = tuple(float(cfg["spacing"][j]) for j in back)
    demo = bool(dataset_json.get("cacpipe_demo", False)) if is_demo is None else is_demo
    card = read_card(path)
    return InstalledModel(path, path.parent.name, configuration, trainer, plans_name, folds, spacing, demo,
                          card.get("id") if card else None)


def _trained_folds(path: Path) -> tuple[int, ...]:
    return tuple(sorted(int(p.name[5:]) for p in path.glob("fold_*")
                        if p.name[5:].isdigit() and (p / CHECKPOINT).exists()))


def check_card(path: Path, where: str) -> dict | None:
    """The model folder's card after checking that it belongs to these weights (ModelMismatchError if not)."""
    card = read_card(path)
    if card is not None:
        problems = verify_card(path, card, _trained_folds(path))
        if problems:
            raise ModelMismatchError(f"{where}: its model card does not belong to it: " + "; ".join(problems)
                                     + ". Re-export the model with `make train`, or remove the card file to "
                                     "install it without one.")
    return card


def resolved_configuration(plans: dict, name: str) -> dict:
    """A plans.json configuration with its ``inherits_from`` chain applied."""
    cfg = dict(plans["configurations"][name])
    seen = {name}
    while "inherits_from" in cfg:
        parent = cfg.pop("inherits_from")
        if parent in seen:
            raise ModelMismatchError(f"plans.json: configuration {name!r} inherits from itself")
        seen.add(parent)
        cfg = {**plans["configurations"][parent], **cfg}
    return cfg


def _model_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("Dataset*/*__*__*/dataset.json"))


def list_models(model_dir_: str | Path | None = None) -> list[InstalledModel]:
    """Every valid model installed in the model directory (invalid folders are skipped)."""
    out = []
    for p in _model_folders(model_dir(model_dir_)):
        try:
            out.append(read_model(p))
        except (ModelMismatchError, ModelNotInstalledError):
            continue
    return out


def _zip_models(zf: zipfile.ZipFile, zip_path: Path) -> list[str]:
    """Model folder prefixes (``DatasetX/T__P__C``) of an export zip, after checking member paths."""
    prefixes = []
    for n in zf.namelist():
        p = PurePosixPath(n)
        if p.is_absolute() or ".." in p.parts:
            raise InputDataError(f"{zip_path}: unsafe path {n!r} in the zip; refusing to install it")
        if len(p.parts) == 3 and p.name == "dataset.json" and p.parts[0].startswith("Dataset") \
                and p.parts[1].count("__") == 2:
            prefixes.append("/".join(p.parts[:2]))
    return prefixes


def install_model(zip_path: str | Path, model_dir_: str | Path | None = None, force: bool = False,
                  accept_weak: bool = False) -> InstalledModel:
    """Install an exported nnU-Net model zip into the model directory, after validating it.

    Refuses (ModelMismatchError) a model whose dataset.json does not match cacpipe's label scheme,
    one whose model card's cross-validation is below the floors (``card.weak_points``) unless
    ``accept_weak`` (then installed with a warning), and an already installed one unless ``force``.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputDataError(f"model zip not found: {zip_path}")
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise InputDataError(f"{zip_path} is not a zip file (expected an nnU-Net model export)") from exc
    root = model_dir(model_dir_)
    with zf:
        prefixes = _zip_models(zf, zip_path)
        if not prefixes:
            raise ModelMismatchError(f"{zip_path} holds no nnU-Net model (no DatasetXXX_name/<trainer>__<plans>__"
                                     "<configuration>/dataset.json); export one with `make train`")
        for pre in prefixes:
            check_dataset_json(json.loads(zf.read(f"{pre}/dataset.json")), f"{zip_path} ({pre})")
            if not any(n.startswith(f"{pre}/fold_") and n.endswith(f"/{CHECKPOINT}") for n in zf.namelist()):
                raise ModelMismatchError(f"{zip_path} ({pre}) contains no fold_K/{CHECKPOINT}")
            if (root / pre).exists() and not force:
                raise ConfigError(f"model {pre} is already installed in {root}; use --force to replace it")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".installing-") as tmp:
            zf.extractall(tmp)
            weak: list[str] = []
            for pre in prefixes:  # every card must belong to its model's weights before anything is installed
                weak += weak_points(check_card(Path(tmp) / pre, f"{zip_path} ({pre})"))
            if weak and not accept_weak:
                raise ModelMismatchError(f"{zip_path}: its cross-validation is below the floor for a scoring model "
                                         f"({'; '.join(weak)}); not installed. `cacpipe models install "
                                         "--accept-weak-model` installs it anyway (every scan then says so)")
            for pre in prefixes:
                dest = root / pre
                if dest.exists():
                    shutil.rmtree(dest)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(Path(tmp) / pre), str(dest))
    model = read_model(root / prefixes[0])
    warnings = [w for w in (left_right_mirroring(model),) if w]
    if weak:
        warnings.append("installed although its cross-validation is below the floor: " + "; ".join(weak))
    for w in warnings:
        log.warning(w)
    return replace(model, warnings=tuple(warnings)) if warnings else model


def demo_model() -> InstalledModel:
    """The shipped phantom-trained demo model (NOT FOR CLINICAL USE), unpacked on first use."""
    if not DEMO_ZIP.exists():
        raise ModelNotInstalledError(f"no model installed and the demo model {DEMO_ZIP} is missing; "
                                     f"{INSTALL_HELP}, or build the demo with `make demo-model`")
    digest = hashlib.sha256(DEMO_ZIP.read_bytes()).hexdigest()[:12]
    cache = env.cache_dir() / f"demo_model_{digest}"
    try:
        if not _model_folders(cache):
            install_model(DEMO_ZIP, cache, force=True, accept_weak=True)
    except OSError:  # read-only home: unpack into the temp dir instead
        cache = Path(tempfile.gettempdir()) / f"cacpipe_demo_model_{digest}"
        if not _model_folders(cache):
            install_model(DEMO_ZIP, cache, force=True, accept_weak=True)
    return read_model(_model_folders(cache)[0], is_demo=True)


def find_model(name: str | None = None, model_dir: str | Path | None = None,
               allow_demo: bool = True) -> InstalledModel:
    """The model to segment with.

    ``name`` may be a model folder path, ``DatasetXXX_name``, or ``DatasetXXX_name/<trainer>__<plans>__<cfg>``;
    without it, the only installed model; with none installed, the demo model if ``allow_demo``.
    Raises ModelNotInstalledError (saying how to install) or ConfigError (ambiguous / unknown name).
    """
    if name and Path(name).expanduser().is_dir() and (Path(name).expanduser() / "dataset.json").exists():
        return read_model(Path(name).expanduser())
    root = _resolve_model_dir(model_dir)
    models = list_models(root)
    if name:
        if name == "demo":
            return demo_model()
        hits = [m for m in models if name in (m.name, m.full_name, m.path.name)]
        if len(hits) == 1:
            return hits[0]
        known = ", ".join(m.full_name for m in models) or "none"
        raise ConfigError(f"model {name!r} is {'ambiguous' if hits else 'not installed'} in {root} "
                          f"(installed: {known}); {INSTALL_HELP}")
    if len(models) == 1:
        return models[0]
    if len(models) > 1:
        raise ConfigError(f"several models are installed in {root}: "
                          + ", ".join(m.full_name for m in models) + "; choose one with --model NAME")
    if allow_demo:
        return demo_model()
    raise ModelNotInstalledError(f"no segmentation model installed in {root}; {INSTALL_HELP}, "
                                 "or train one with `make train DATA=...`")
