"""Fine-tuning per site: start a training from an existing model's weights (``make train INIT=MODEL.zip``).

The parent model (an exported zip, a model folder, or an installed model's name) fixes the plan:
its ``plans.json`` becomes the new dataset's plans (nnU-Net's "move plans between datasets"), so
the spacing, patch, network and intensity normalisation are the parent's and its weights fit the
new network exactly. Each new fold k starts from the parent's fold k (or, when the parent has no
fold k, its fold k mod n) through nnU-Net's pretrained-weights path
(``nnunetv2.run.load_pretrained_weights``, which checks every tensor's shape); nnU-Net leaves the
final 1x1x1 segmentation layers out, and since the parent has the same six regions they are
copied too. The new model card records the parent's card id and its lineage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cacpipe.errors import ConfigError
from cacpipe.segment.card import CHECKPOINT, file_sha256


@dataclass
class InitModel:
    """The model a training starts from."""

    model: object  # cacpipe.segment.InstalledModel
    source: str  # what INIT named (zip path, folder, installed name)
    zip_sha256: str | None
    card: dict | None

    def fold_map(self, folds) -> dict[int, int]:
        """New fold -> the parent fold whose weights start it."""
        parent = list(self.model.folds)
        return {int(f): (int(f) if f in parent else parent[int(f) % len(parent)]) for f in folds}

    def lineage(self) -> list[dict]:
        """The parent's entry followed by the parent's own lineage (nearest first)."""
        card = self.card or {}
        data = card.get("training_data") or {}
        entry = {"card_id": card.get("id"), "model_name": self.model.full_name, "created": card.get("created"),
                 "source": Path(self.source).name if Path(self.source).exists() else self.source,
                 "zip_sha256": self.zip_sha256, "cases": data.get("cases_used"), "patients": data.get("patients")}
        return [entry, *(card.get("lineage") or [])]


def resolve_init(init: str, work: str | Path) -> InitModel:
    """The parent model: a zip is checked and unpacked (as ``cacpipe models install`` would) into
    ``WORK/init/``; a model folder is read in place; anything else is an installed model's name."""
    from cacpipe.segment.models import find_model, install_model, read_model

    p = Path(init).expanduser()
    if p.is_file():
        digest = file_sha256(p)
        model = install_model(p, Path(work) / "init" / digest[:12], force=True, accept_weak=True)
        return InitModel(model, str(p), digest, model.card())
    if p.is_dir():
        model = read_model(p)
        return InitModel(model, str(p), None, model.card())
    model = find_model(init, allow_demo=True)
    return InitModel(model, init, None, model.card())


def transfer_plans(init: InitModel, pre_dir: Path, plans_id: str, dataset_name: str) -> dict:
    """The parent's plans.json as the new dataset's plans (``pre_dir/<plans_id>.json``); returns it."""
    plans = json.loads((init.model.path / "plans.json").read_text())
    plans["dataset_name"] = dataset_name
    plans["plans_name"] = plans_id
    pre_dir.mkdir(parents=True, exist_ok=True)
    (pre_dir / f"{plans_id}.json").write_text(json.dumps(plans, indent=2, sort_keys=False))
    return plans


def parent_configuration(init: InitModel) -> dict:
    """The parent's configuration, resolved (``inherits_from`` followed); axes in the network's order."""
    from cacpipe.segment.models import resolved_configuration

    plans = json.loads((init.model.path / "plans.json").read_text())
    return resolved_configuration(plans, init.model.configuration)


def weights_file(init: InitModel, parent_fold: int, out_dir: str | Path) -> Path:
    """The parent fold's network weights alone, on the CPU (a small file nnU-Net's loader reads
    on any device; the checkpoint's optimizer state is not carried over)."""
    import torch

    out = Path(out_dir) / f"init_weights_fold_{parent_fold}.pth"
    if not out.exists():
        src = init.model.path / f"fold_{parent_fold}" / CHECKPOINT
        ck = torch.load(src, map_location="cpu", weights_only=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"network_weights": ck["network_weights"], "source": str(src)}, out)
    return out


def load_weights(trainer, weights: str | Path) -> None:
    """Start ``trainer``'s network from ``weights``: nnU-Net's pretrained-weights path for every
    layer but the segmentation heads, then the heads, which nnU-Net leaves out and which fit here
    because parent and child segment the same regions."""
    import torch
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    if not trainer.was_initialized:
        trainer.initialize()
    load_pretrained_weights(trainer.network, str(weights), verbose=False)
    net = trainer.network.module if hasattr(trainer.network, "module") else trainer.network
    net = getattr(net, "_orig_mod", net)
    own = net.state_dict()
    saved = torch.load(weights, map_location="cpu", weights_only=False)["network_weights"]
    heads = {k: v for k, v in saved.items() if ".seg_layers." in k}
    bad = [k for k, v in heads.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ConfigError(f"the initial model's segmentation heads do not fit this network ({bad[:3]}); "
                          "fine-tune from a cacpipe coronary model with the same plan")
    own.update(heads)
    net.load_state_dict(own)
