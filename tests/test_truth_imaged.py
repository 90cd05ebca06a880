"""Truth that matches the image (issue 26): with cardiac motion, the phantom's numbers as imaged are
what a perfect reader sees on the scan; truth.csv and `cacpipe evaluate` score against them and keep
the heart-still figure beside them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_phantom_v2 import NO_FINDINGS, small

from cacpipe.evaluation.sources import truth_record
from cacpipe.labels import ARTERIES
from cacpipe.phantom.cohort import truth_row
from cacpipe.phantom.truth import imaged_numbers
from cacpipe.phantom.v2 import generate
from cacpipe.phantom.v2.config import PlaqueSpec

PLAQUES = (PlaqueSpec(1, "RCA", "RCA", "focal", t=0.35, length_mm=6.0, thickness_mm=2.0, density_hu=700.0, n_lobes=3),
           PlaqueSpec(2, "LAD", "LAD", "focal", t=0.2, length_mm=5.0, thickness_mm=2.0, density_hu=600.0, n_lobes=3))


@pytest.fixture(scope="module")
def moving_truth():
    ph = generate(small(1031, plaques=PLAQUES, findings=NO_FINDINGS, acquisition={"motion_scale": 1.6}))
    return ph.truth


def test_truth_csv_and_evaluate_score_the_imaged_numbers_with_the_still_ones_beside(moving_truth):
    t = moving_truth
    moved = [a for a in ARTERIES if t["arteries"][a]["imaged"]["agatston"] != t["arteries"][a]["agatston"]]
    assert moved, "the motion should change at least one artery's imaged score"
    num = imaged_numbers(t)
    row = truth_row(t, "P1", "1.2.3")
    rec = truth_record(t | {"patient_id": "P1"}, Path("P1.json"))
    for a in ARTERIES:
        img, still = t["arteries"][a]["imaged"]["agatston"], t["arteries"][a]["agatston"]
        assert num["arteries"][a]["agatston"] == img and num["arteries"][a]["agatston_still"] == still
        assert row[f"{a}_agatston"] == pytest.approx(img, abs=1e-4)
        assert row[f"{a}_agatston_still"] == pytest.approx(still, abs=1e-4)
        assert rec[f"{a}_agatston"] == img and rec[f"{a}_agatston_still"] == still
    assert row["total_agatston"] == pytest.approx(sum(t["arteries"][a]["imaged"]["agatston"] for a in ARTERIES), abs=1e-3)
    assert row["total_agatston_still"] == pytest.approx(t["total"]["agatston"], abs=1e-3)
