"""Make ``import torchvision`` work on the pinned CPU torch.

With torch pinned to the local 2.13.0 CPU wheel, pip resolves torchvision 0.28.0, a CUDA build
whose compiled operators do not load. Its Python side then fails at import with
"operator torchvision::nms does not exist" while registering fake kernels. timm imports
torchvision, and nnU-Net imports timm when it looks up any trainer class other than the
default, so without this every non-default trainer and TotalSegmentator's models break.

Declaring the schemas of the missing operators (no kernels) lets the import finish. Calling
those operators still fails, which is fine: nothing in nnU-Net's or TotalSegmentator's
segmentation paths uses detection ops. See shared README section 6.
"""

from __future__ import annotations

import importlib.util

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keep the torch.library.Library alive for the life of the process


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        return False
    return True


def apply() -> bool:
    """Declare missing torchvision op schemas if needed. Returns True if a fix was applied.

    Idempotent and cheap after the first call. Does nothing when torchvision is absent or
    already importable (e.g. a matching CUDA torch on a GPU machine).
    """
    global _library
    if _library is not None or importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    missing = [n for n in _SCHEMAS if not _op_exists(torch, n)]
    if not missing:
        return False
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _library.define(_SCHEMAS[name])
    return True


def _op_exists(torch_mod, name: str) -> bool:
    try:
        torch_mod._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True
