"""The accuracy benchmark's cohort: held-out seeds only (cacpipe.phantom.seeds), disjoint from the
demo model's training seeds, and plaques reshaped to each pattern."""

from __future__ import annotations

import pytest

from cacpipe.phantom import seeds
from nnunet_plans.accuracy import PATTERNS, accuracy_cohort
from nnunet_plans.data import phantom_cohort_configs, v2_training_configs


def test_benchmark_refuses_seeds_outside_heldout() -> None:
    with pytest.raises(seeds.SeedOverlapError, match="heldout"):
        accuracy_cohort(2, seed0=seeds.TRAINING.start)
    with pytest.raises(seeds.SeedOverlapError):
        accuracy_cohort(3, seed0=seeds.HELDOUT.stop - 2)  # runs off the end of the range


def test_benchmark_and_training_seeds_are_disjoint() -> None:
    bench = [c.seed for _, c in accuracy_cohort(12)]
    train = [c.seed for c in v2_training_configs(40)] + [c.seed for c in phantom_cohort_configs(8)]
    seeds.check_disjoint(training=train, heldout=bench)
    assert all(s in seeds.HELDOUT for s in bench)
    assert all(seeds.purpose_of(s) in ("training", "v1_training") for s in train)


def test_v2_patterns() -> None:
    cohort = accuracy_cohort(len(PATTERNS))
    by = {p: c for p, c in cohort}
    assert [p for p, _ in cohort] == list(PATTERNS)
    assert {p.artery for p in by["rca_only"].plaques} == {"RCA"}
    assert by["none"].plaques == ()
    assert "RCA" not in {p.artery for p in by["left_only"].plaques} and by["left_only"].plaques
    assert sorted(p.artery for p in by["all_small"].plaques) == ["LAD", "LCX", "RCA"]
    assert {p.artery for p in by["rca_lad"].plaques} <= {"RCA", "LAD"}
    for _, c in cohort:  # non-contrast, normal situs, still heart, issue 14's noise, unique plaque ids
        assert c.acquisition.contrast_phase == "none" and not c.heart.situs_inversus
        assert c.acquisition.motion_scale == 0.0 and 20.0 <= c.acquisition.noise_hu <= 45.0
        assert [p.id for p in c.plaques] == list(range(1, len(c.plaques) + 1))
    for p in by["all_small"].plaques + by["rca_only"].plaques[:1]:  # the small plaque: "radius" 1.5 mm
        assert (p.length_mm, p.thickness_mm, p.density_hu) == (3.0, 1.5, 500.0)
    sized = [p for pat in ("rca_only", "left_only", "rca_lad") for p in by[pat].plaques]
    assert all(1.5 <= p.thickness_mm <= 2.8 and p.length_mm == 2 * p.thickness_mm for p in sized)
    assert any(c.acquisition.motion_scale > 0 for _, c in accuracy_cohort(len(PATTERNS), motion=True))


def test_v2_training_configs_are_non_contrast_normal_situs() -> None:
    cfgs = v2_training_configs(10)
    assert [c.seed for c in cfgs] == seeds.seeds_for("training", 10)
    assert all(c.acquisition.contrast_phase == "none" and not c.heart.situs_inversus for c in cfgs)
