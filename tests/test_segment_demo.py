"""The shipped demo model (phantom-trained, NOT FOR CLINICAL USE) finds phantom calcium.

Held-out phantoms (cohort seeds 5000+, training used 100-115). Metrics (nnunet_plans.evaluate):
per (case, artery) calcium detection sensitivity, and calcium Dice over all calcium voxels.
"""

import pytest

from cacpipe.segment import SegmentConfig, find_model
from cacpipe.segment.models import DEMO_ZIP
from nnunet_plans.evaluate import evaluate

pytestmark = pytest.mark.skipif(not DEMO_ZIP.exists(), reason="demo model not built (make demo-model)")


def test_demo_model_is_found_when_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    assert m.is_demo and len(m.folds) >= 2 and m.spacing_zyx == (2.0, 1.5, 1.5)
    assert m.to_dict()["is_demo"] is True


def test_demo_model_finds_phantom_calcium(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    r = evaluate(m, n_cases=3, seed0=5000, cfg=SegmentConfig(device="cpu"))
    assert r["sensitivity"] >= SENSITIVITY_MIN, r
    assert r["calcium_dice"] >= CALCIUM_DICE_MIN, r
