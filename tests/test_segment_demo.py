"""The shipped demo model (phantom-trained, NOT FOR CLINICAL USE) finds phantom calcium.

Held-out phantoms (cohort seeds 5000-5003, training used 100-123). Metrics (nnunet_plans.evaluate):
whole-artery Dice per artery, per (case, artery) calcium detection, calcium Dice. Measured for the
shipped model (cacpipe/data/DEMO_MODEL.md): artery Dice 0.78/0.58/0.66, calcium TP 9 FN 0 FP 1 TN 2,
calcium Dice 0.69. Thresholds sit below those: the model finds the arteries, finds most calcium
and rarely puts calcium on calcium-free arteries; an untrained network fails all of them.
"""


from cacpipe.segment import SegmentConfig, find_model
from nnunet_plans.evaluate import evaluate


def test_demo_model_is_found_when_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    assert m.is_demo and len(m.folds) >= 2 and m.spacing_zyx == (2.0, 1.5, 1.5)
    assert m.to_dict()["is_demo"] is True


def test_demo_model_finds_phantom_calcium(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    r = evaluate(m, n_cases=4, seed0=5000, cfg=SegmentConfig(device="cpu"))
    assert min(r["artery_dice"].values()) >= 0.45, r
    assert r["sensitivity"] >= 0.75 and r["calcium_dice"] >= 0.5, r
    assert r["detection"]["fp"] <= 1, r
