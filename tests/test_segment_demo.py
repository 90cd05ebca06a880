"""The shipped demo model (phantom-trained, NOT FOR CLINICAL USE) finds phantom calcium.

Held-out phantoms (cohort seeds 5000-5003, training used 100-115). Metrics (nnunet_plans.evaluate):
whole-artery Dice per artery, per (case, artery) calcium detection, calcium Dice. Measured for the
shipped model (cacpipe/data/DEMO_MODEL.md): artery Dice 0.46/0.55/0.68, calcium TP 1 FN 7 FP 0 TN 4,
calcium Dice 0.03. Thresholds sit below those: the model finds the arteries, finds some calcium,
and puts no calcium on calcium-free arteries; an untrained network fails all three.
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
    r = evaluate(m, n_cases=4, seed0=5000, cfg=SegmentConfig(device="cpu"))
    assert min(r["artery_dice"].values()) >= 0.35, r
    assert r["detection"]["tp"] >= 1 and r["calcium_dice"] > 0.0, r
    assert r["detection"]["fp"] == 0, r
