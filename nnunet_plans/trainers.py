"""cacpipe's nnU-Net trainer classes.

nnU-Net finds trainers by name only inside its own package (or ``nnUNet_extTrainer``); cacpipe
does not rely on that lookup: ``nnunet_plans.train`` instantiates the class directly, and
``cacpipe.segment`` builds the network from plans.json (our trainers keep nnU-Net's architecture
builder), so a model trained with these classes needs no nnU-Net patching to run.

Every cacpipe trainer is **lateral-safe**: it never mirrors the patient's left-right axis in data
augmentation, and its checkpoints exclude that axis from ``inference_allowed_mirroring_axes``. A
network shown left-right flipped hearts cannot tell the right coronary artery from the left
circumflex (their atrioventricular grooves are near mirror images), and test-time mirroring along
that axis would average the two. Mirroring along the other axes stays (a flip along one of them
keeps the RCA on the patient's right).

Import this module only after ``cacpipe.torchvision_fix.apply()``.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from cacpipe.segment.models import AXIAL_DIRECTION, left_right_array_axis

log = logging.getLogger(__name__)


def training_left_right_axes(preprocessed_folder: str | Path, transpose_forward) -> set[int]:
    """Network axes that run along the patient's left-right axis in any training case.

    Read from the direction cosines nnU-Net keeps with each preprocessed case (``.pkl``,
    ``sitk_stuff.direction``), mapped through the plans' ``transpose_forward``. A case without
    them counts as cacpipe's axial orientation (array axis 2 = left-right).
    """
    axes = set()
    files = sorted(Path(preprocessed_folder).glob("*.pkl"))
    for f in files:
        with open(f, "rb") as fh:
            props = pickle.load(fh)
        direction = (props.get("sitk_stuff") or {}).get("direction", AXIAL_DIRECTION)
        axes.add(list(transpose_forward).index(left_right_array_axis(direction)))
    if not files:
        axes.add(list(transpose_forward).index(left_right_array_axis(AXIAL_DIRECTION)))
    return axes


class LateralSafeMixin:
    """Drop the patient's left-right axis from mirroring (training augmentation and test time)."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
        rotation, dummy_2d, initial_patch, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        lr = training_left_right_axes(self.preprocessed_dataset_folder, self.plans_manager.transpose_forward)
        mirror_axes = tuple(a for a in (mirror_axes or ()) if a not in lr)
        self.print_to_log_file(f"lateral-safe: never mirroring network axes {sorted(lr)} (patient left-right); "
                               f"mirroring axes {mirror_axes}")
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, dummy_2d, initial_patch, mirror_axes


class nnUNetTrainer_cacpipe(LateralSafeMixin, nnUNetTrainer):  # noqa: N801 (nnU-Net naming convention)
    """nnU-Net's default trainer (1000 epochs), lateral-safe."""


class nnUNetTrainer_cacpipe250(LateralSafeMixin, nnUNetTrainer):  # noqa: N801
    """The paper's run: nnU-Net's trainer for 250 epochs (as ``nnUNetTrainer_250epochs``), lateral-safe."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=None):
        import torch

        super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cuda"))
        self.num_epochs = 250


class nnUNetTrainer_cacpipeShort(LateralSafeMixin, nnUNetTrainer):  # noqa: N801
    """A short run whose length comes from the plans configuration (``cacpipe_num_epochs``,
    ``cacpipe_iterations_per_epoch``, ``cacpipe_val_iterations_per_epoch``, ``cacpipe_initial_lr``,
    ``cacpipe_oversample_foreground_percent``, ``cacpipe_optimizer``: sgd | adam).

    Used for the phantom demo model and the tests; otherwise plain nnU-Net (region-based Dice + BCE
    loss, deep supervision, nnU-Net augmentation, poly LR schedule).
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=None):
        import torch

        super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cpu"))
        c = self.configuration_manager.configuration
        self.num_epochs = int(c.get("cacpipe_num_epochs", 5))
        self.num_iterations_per_epoch = int(c.get("cacpipe_iterations_per_epoch", 20))
        self.num_val_iterations_per_epoch = int(c.get("cacpipe_val_iterations_per_epoch", 2))
        self.initial_lr = float(c.get("cacpipe_initial_lr", self.initial_lr))
        # Short runs see few patches: sample more of them around labelled structures (calcium is rare).
        self.oversample_foreground_percent = float(c.get("cacpipe_oversample_foreground_percent",
                                                         self.oversample_foreground_percent))
        self.optimizer_name = str(c.get("cacpipe_optimizer", "sgd")).lower()
        self.save_every = 1  # short runs: checkpoint each epoch, so an interrupted run resumes cheaply


    def perform_actual_validation(self, save_probabilities: bool = False):
        # CPU short runs: validate without test-time mirroring (8x cheaper). The checkpoint, saved
        # before validation, keeps the mirroring axes for inference.
        axes = self.inference_allowed_mirroring_axes
        self.inference_allowed_mirroring_axes = None
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.inference_allowed_mirroring_axes = axes

    def configure_optimizers(self):
        # Short runs: Adam reaches a usable phantom model in a few hundred steps, where nnU-Net's
        # SGD (momentum 0.99, built for 250k steps) is still predicting background.
        if self.optimizer_name != "adam":
            return super().configure_optimizers()
        import torch
        from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


TRAINERS = {c.__name__: c for c in (nnUNetTrainer_cacpipe, nnUNetTrainer_cacpipe250, nnUNetTrainer_cacpipeShort)}


def trainer_class(name: str):
    """Our trainers by name, else nnU-Net's own lookup (with a warning: nnU-Net's trainers mirror left-right)."""
    if name in TRAINERS:
        return TRAINERS[name]
    log.warning("trainer %s is not one of cacpipe's lateral-safe trainers (%s): unless it disables mirroring, it "
                "mirrors the left-right axis and the model may confuse the RCA with the LCX", name, ", ".join(TRAINERS))
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(name)
