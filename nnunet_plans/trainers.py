"""cacpipe's nnU-Net trainer classes.

nnU-Net finds trainers by name only inside its own package (or ``nnUNet_extTrainer``); cacpipe
does not rely on that lookup: ``nnunet_plans.train`` instantiates the class directly, and
``cacpipe.segment`` builds the network from plans.json (our trainers keep nnU-Net's architecture
builder), so a model trained with these classes needs no nnU-Net patching to run.

Import this module only after ``cacpipe.torchvision_fix.apply()``.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_cacpipeShort(nnUNetTrainer):  # noqa: N801 (nnU-Net naming convention)
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


TRAINERS = {c.__name__: c for c in (nnUNetTrainer_cacpipeShort,)}


def trainer_class(name: str):
    """Our trainers by name, else nnU-Net's own lookup (e.g. ``nnUNetTrainer_250epochs``)."""
    if name in TRAINERS:
        return TRAINERS[name]
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(name)
