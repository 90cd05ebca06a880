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
    ``cacpipe_oversample_foreground_percent``).

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
        self.save_every = 1  # short runs: checkpoint each epoch, so an interrupted run resumes cheaply


TRAINERS = {c.__name__: c for c in (nnUNetTrainer_cacpipeShort,)}


def trainer_class(name: str):
    """Our trainers by name, else nnU-Net's own lookup (e.g. ``nnUNetTrainer_250epochs``)."""
    if name in TRAINERS:
        return TRAINERS[name]
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    return recursive_find_trainer_class_by_name(name)
