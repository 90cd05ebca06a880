"""The shipped demo model (phantom-trained, NOT FOR CLINICAL USE) finds phantom calcium.

Held-out phantoms (cohort seeds 5000-5003, training used 100-123). Metrics (nnunet_plans.evaluate):
whole-artery Dice per artery, per (case, artery) calcium detection, calcium Dice. The phantoms are
cropped by stage 1 exactly as at inference (fallback locator, resampled to the model's spacing).
Measured for the shipped model (lateral-safe retrain of 2026-11-29 on stage-1 crops, DEMO_MODEL.md)
on these inference crops: artery Dice 0.84/0.67/0.88, calcium TP 9 FN 0 FP 1 TN 2, calcium Dice
0.74, artery-specific calcium Dice 0.74 (the previous model: 0.45/0.52/0.64, TP 6 FN 3, 0.77, 0.39).
Thresholds sit below the measurement: an untrained network, or one that swaps arteries, fails them.
"""

import pytest

from cacpipe.config import SegmentSettings
from cacpipe.segment import find_model
from nnunet_plans.evaluate import evaluate


def test_demo_model_is_found_when_nothing_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    assert m.is_demo and len(m.folds) >= 2 and m.spacing_zyx == (2.0, 1.5, 1.5)
    assert m.to_dict()["is_demo"] is True


@pytest.mark.slow  # four held-out phantoms through the two-fold demo model
def test_demo_model_finds_phantom_calcium(tmp_path, monkeypatch):
    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    r = evaluate(m, n_cases=4, seed0=5000, cfg=SegmentSettings())
    assert min(r["artery_dice"].values()) >= 0.55, r
    assert r["sensitivity"] >= 0.85 and r["calcium_dice"] >= 0.6, r
    assert r["calcium_dice_artery_specific"] >= 0.6, r
    assert r["detection"]["fp"] <= 1, r


def test_calcium_probability_is_the_networks_own_and_leaves_the_labels_unchanged(tmp_path, monkeypatch):
    """segment(calcium_prob=True) returns the ensemble's calcium sigmoid on the crop grid: the same
    labels as the plain path, and > 0.5 exactly where a calcium label was painted (regions are
    thresholded at 0.5 and the calcium regions painted last)."""
    import numpy as np

    from cacpipe.heart import heart_crop
    from cacpipe.labels import CALCIUM_IDS
    from cacpipe.phantom import PhantomConfig, Plaque, generate
    from cacpipe.segment import segment

    monkeypatch.setenv("CACPIPE_CACHE_DIR", str(tmp_path / "cache"))
    m = find_model(None, tmp_path / "no_models", allow_demo=True)
    ph = generate(PhantomConfig.preset("small", seed=1421, noise_hu=15.0,
                                       plaques=(Plaque("RCA", 0.3, 2.5, 500.0), Plaque("LAD", 0.3, 2.2, 450.0))))
    crop = heart_crop(ph.ct, target_spacing_zyx=m.spacing_zyx).cropped_ct
    cfg = SegmentSettings(bf16=False, folds=(0,))  # one fold: the property holds for any ensemble, at half the cost
    plain = segment(crop, m, cfg)
    withp = segment(crop, m, cfg, calcium_prob=True)
    assert plain.calcium_prob is None and withp.calcium_prob is not None
    lab, prob = np.asarray(withp.labels.array), np.asarray(withp.calcium_prob.array)
    assert np.array_equal(lab, np.asarray(plain.labels.array)) and prob.shape == lab.shape
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    calc = np.isin(lab, CALCIUM_IDS)
    assert calc.any() and np.array_equal(prob > 0.5, calc)
