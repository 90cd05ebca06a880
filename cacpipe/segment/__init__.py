"""Stage 2: region-based nnU-Net fold ensemble (inference) and model installation.

Public API: :func:`segment`, :class:`SegmentResult`, :func:`find_model`,
:func:`install_model`, :func:`list_models`, :class:`InstalledModel`, and :func:`refine` (lesion
completion, attribution and plausibility flags on the original grid).
"""

from .models import InstalledModel, demo_model, find_model, install_model, list_models, model_dir, read_model
from .postprocess import Refinement, refine
from .predict import SegmentResult, segment

__all__ = [
    "InstalledModel", "SegmentResult", "demo_model", "find_model", "install_model",
    "Refinement", "list_models", "model_dir", "read_model", "refine", "segment",
]
