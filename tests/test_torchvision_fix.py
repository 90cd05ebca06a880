"""nnU-Net looks up non-default trainers through timm -> torchvision; that must work on CPU torch."""

import os

from cacpipe import torchvision_fix


def test_non_default_trainer_and_totalsegmentator_import():
    torchvision_fix.apply()
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                      "nnUNetTrainer_250epochs", "nnunetv2.training.nnUNetTrainer")
    assert cls is not None and cls.__name__ == "nnUNetTrainer_250epochs"
    import totalsegmentator.python_api  # noqa: F401  (imports torchvision-dependent code)
    assert torchvision_fix.apply() is False  # idempotent
