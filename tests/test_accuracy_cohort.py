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


def test_clinical_cohort_keeps_the_generators_confounders() -> None:
    from nnunet_plans.accuracy import CLINICAL_SEED0

    cohort = accuracy_cohort(12, CLINICAL_SEED0, clinical=True)
    small = {c.seed for _, c in accuracy_cohort(12)}
    assert all(c.seed in seeds.HELDOUT and c.seed not in small for _, c in cohort)
    cfgs = [c for _, c in cohort]
    assert all(c.preset == "v2" and c.acquisition.contrast_phase == "none" and not c.heart.situs_inversus
               for c in cfgs)
    assert any(c.acquisition.motion_scale > 0 for c in cfgs)  # the generator's motion is kept
    assert any(c.findings.device != "none" or c.findings.cabg or c.findings.stents for c in cfgs)
    assert len({c.acquisition.slice_spacing_mm for c in cfgs}) > 1 and all(c.acquisition.pixel_mm < 1.0 for c in cfgs)
    assert [p for p, _ in cohort][:len(PATTERNS)] == list(PATTERNS)
    with pytest.raises(seeds.SeedOverlapError, match="training"):  # fitting draws training seeds only
        accuracy_cohort(2, CLINICAL_SEED0, purpose="training")


def test_flag_rates_and_lesion_tables() -> None:
    from nnunet_plans.accuracy import _lesion_tables, flag_rates

    patients = [{"expected_flags": ["motion", "metal_device"], "flag_codes": ["motion_suspected", "artery_outside_heart"]},
                {"expected_flags": ["motion"], "flag_codes": []},
                {"expected_flags": [], "flag_codes": ["metal_device", "artery_outside_heart"]},
                {"expected_flags": [], "flag_codes": []}]
    r = flag_rates(patients)
    assert r["expected"]["motion"] == {"tp": 1, "fn": 1, "fp": 0, "tn": 2, "sensitivity": 0.5, "false_alarm_rate": 0.0}
    assert r["expected"]["metal_device"]["fn"] == 1 and r["expected"]["metal_device"]["false_alarm_rate"] == 1 / 3
    assert "cabg" not in r["expected"] and r["watched_raised"]["artery_outside_heart"] == 2
    row = {"ref_artery": "RCA", "pred_artery": "RCA", "pred_volume_mm3": 9.0, "max_area_mm2": 3.0, "image": 7,
           "patient_id": "P"}
    pairs = [{**row, "ref_lesion": 1, "pred_lesion": 1, "ref_volume_mm3": 3.0, "peak_hu": 450, "countable": True},
             {**row, "ref_lesion": 2, "pred_lesion": None, "ref_volume_mm3": 30.0, "peak_hu": 180, "countable": True},
             {**row, "ref_lesion": 3, "pred_lesion": None, "ref_volume_mm3": 1.0, "peak_hu": 120, "countable": False},
             {**row, "ref_lesion": None, "pred_lesion": 2, "ref_artery": "none", "ref_volume_mm3": None,
              "peak_hu": 300, "countable": True}]
    t = _lesion_tables(pairs, n_scans=2)
    assert t["countable"] == {"true": 2, "found": 1, "sensitivity": 0.5}
    assert t["by_size"]["< 5 mm3"]["found"] == 1 and t["by_size"][">= 20 mm3"] == {"true": 1, "found": 0,
                                                                                    "sensitivity": 0.0}
    assert t["by_peak"]["peak < 200 HU"]["true"] == 1 and t["false_lesions_per_scan"] == 0.5
    assert [m["ref_volume_mm3"] for m in t["missed"]] == [30.0] and len(t["false"]) == 1
