"""Write the model card of a trained model (schema and reading: ``cacpipe.segment.card``).

The card is assembled from what the run knows: the case checks (counts only: no patient or case
ids leave the site with the model), the build report (heart locator per case), the plans and
every fold's checkpoint (network, run length, mirroring axes), the split, the cross-validation
summary, the software versions and the lineage of a fine-tuned model.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from cacpipe import __version__
from cacpipe.segment.card import CHECKPOINT, file_digests, read_card, write_card
from cacpipe.segment.models import resolved_configuration

INTENDED_USE = ("Research use: stage 2 of cacpipe (coronary arteries and their calcium, per artery) on "
                "non-contrast, non-ECG-gated chest CT like the training data above (scanners, slice thicknesses). "
                "Not a medical device and not for clinical decisions; validate on local data before relying on it.")
INTENDED_USE_DEMO = ("Demonstration and software tests on cacpipe's synthetic chest phantoms only. "
                     "Trained on no patient data. NOT FOR CLINICAL USE.")


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def software() -> dict:
    return {"cacpipe": __version__, "nnunetv2": _version("nnunetv2"), "torch": _version("torch"),
            "python": platform.python_version()}


def left_right_network_axis(transpose_forward) -> int:
    """The network axis along the patient's left-right axis for cacpipe's axial crops: the array's
    x axis (columns, axis 2 of (z, y, x)) after nnU-Net's ``transpose_forward``."""
    return list(transpose_forward).index(2)


def model_section(folder: Path, folds, spec: dict | None) -> dict:
    """Plan, trainer, network and what each fold's checkpoint says (epochs, mirroring axes)."""
    import torch

    trainer, plans_name, configuration = folder.name.split("__")
    plans = json.loads((folder / "plans.json").read_text())
    cfg = resolved_configuration(plans, configuration)
    back = plans.get("transpose_backward", [0, 1, 2])
    kwargs = cfg["architecture"]["arch_kwargs"]
    mirror, epochs, params = {}, {}, None
    for f in folds:
        ck = torch.load(folder / f"fold_{f}" / CHECKPOINT, map_location="cpu", weights_only=False)
        axes = ck.get("inference_allowed_mirroring_axes")
        mirror[str(f)] = None if axes is None else [int(a) for a in axes]
        epochs[str(f)] = int(ck.get("current_epoch", 0))
        if params is None:
            params = int(sum(v.numel() for v in ck["network_weights"].values()))
    lr = left_right_network_axis(plans.get("transpose_forward", [0, 1, 2]))
    return {
        "name": f"{folder.parent.name}/{folder.name}",
        "dataset": folder.parent.name,
        "trainer": trainer,
        "plans": plans_name,
        "configuration": configuration,
        "folds": sorted(int(f) for f in folds),
        "spacing_zyx": [float(cfg["spacing"][j]) for j in back],
        "patch_size_zyx": [int(cfg["patch_size"][j]) for j in back],
        "batch_size": int(cfg["batch_size"]),
        "network": {"class": cfg["architecture"]["network_class_name"].rsplit(".", 1)[-1],
                    "stages": kwargs.get("n_stages"), "features_per_stage": kwargs.get("features_per_stage"),
                    "parameters": params},
        "run": {"epochs_per_fold": epochs,
                "iterations_per_epoch": cfg.get("cacpipe_iterations_per_epoch", 250),
                "optimizer": cfg.get("cacpipe_optimizer", "sgd")},
        "mirroring_axes": mirror,
        "left_right_network_axis": lr,
        "left_right_mirrored": any(a is not None and lr in a for a in mirror.values()),
        "plan_spec": spec,
    }


def data_section(checks, build_report: Path | None) -> dict:
    """Training data summary from the case checks (counts only) and the dataset build report."""
    from .dryrun import summarise

    used = [c for c in checks if c.ok]
    s = summarise(used)
    heart: Counter = Counter()
    if build_report is not None and build_report.exists():
        details = json.loads(build_report.read_text()).get("details", {})
        heart.update((d.get("crop") or {}).get("heart_method", "none") for d in details.values())
    return {
        "cases_listed": len(checks),
        "cases_used": len(used),
        "cases_skipped": len(checks) - len(used),
        "patients": s["patients"],
        "input_kinds": s["input_kinds"],
        "scanners": s["scanners"],
        "slice_thickness_mm": s["slice_thickness_mm"],
        "slice_spacing_mm": s["slice_spacing_mm"],
        "contrast": s["contrast"],
        "calcium_free_cases": s["calcium_free_cases"],
        "heart_method": dict(heart),
    }


def folds_section(splits: list[dict], trained, patient_of: dict[str, str]) -> dict:
    return {"n_splits": len(splits), "grouping": "patient", "trained": sorted(int(f) for f in trained),
            "val_cases": [len(s["val"]) for s in splits],
            "val_patients": [len({patient_of.get(c, c) for c in s["val"]}) for s in splits]}


def build_card(folder: str | Path, *, folds, checks, splits: list[dict], patient_of: dict[str, str],
               spec: dict | None, crossval: dict | None, build_report: Path | None = None,
               lineage: list[dict] | None = None, init: dict | None = None, demo: bool = False,
               intended_use: str | None = None) -> dict:
    """Assemble and write the card into the model folder (JSON + MODEL_CARD.md); returns it."""
    folder = Path(folder)
    card = {
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "intended_use": intended_use or (INTENDED_USE_DEMO if demo else INTENDED_USE),
        "not_for_clinical_use": True,
        "demo": bool(demo),
        "model": model_section(folder, folds, spec),
        "training_data": data_section(checks, build_report),
        "folds": folds_section(splits, folds, patient_of),
        "cross_validation": crossval,
        "software": software(),
        "lineage": list(lineage or []),
        "init": init,
        "files": file_digests(folder, folds),
    }
    old = read_card(folder)
    if old is not None and _same(old, card):  # a resumed run that changed nothing keeps its card (and id)
        return old
    return write_card(folder, card)


def _same(old: dict, new: dict) -> bool:
    def body(c: dict) -> dict:
        return {k: v for k, v in c.items() if k not in ("schema", "id", "created")}

    return json.loads(json.dumps(body(old), default=str)) == json.loads(json.dumps(body(new), default=str))
