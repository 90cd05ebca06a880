"""The one lesion model (cacpipe.quant.lesions): lesions add up to the artery scores."""

from __future__ import annotations

import numpy as np
import pytest

from cacpipe.labels import ARTERIES, CALCIUM_ID
from cacpipe.quant.agatston import calcium_stats_by_artery
from cacpipe.quant.lesions import Lesion, find_lesions


def test_lesions_add_up_to_artery_scores(small_phantom):
    ct, lab = small_phantom.ct, small_phantom.labels
    lesions, lmap = find_lesions(ct.array, lab.array, ct.spacing_zyx, with_map=True)
    stats = calcium_stats_by_artery(ct.array, lab.array, ct.spacing_zyx)
    assert lesions, "the small phantom has calcified plaques"
    for a in ARTERIES:
        mine = [les for les in lesions if les.artery == a]
        assert len(mine) == stats[a].lesions
        assert sum(les.agatston for les in mine) == pytest.approx(stats[a].agatston, rel=1e-9, abs=1e-9)
        assert sum(les.voxels for les in mine) == stats[a].voxels
        assert [les.number for les in mine] == list(range(1, len(mine) + 1))
        assert all(x.voxels >= y.voxels for x, y in zip(mine, mine[1:], strict=False))
    # The lesion-id map paints exactly the calcium voxels >= 130 HU, one id per lesion.
    calc = np.isin(lab.array, list(CALCIUM_ID.values())) & (ct.array >= 130)
    assert np.array_equal(lmap > 0, calc)
    for i, les in enumerate(lesions, start=1):
        assert int((lmap == i).sum()) == les.voxels
        assert les.best_slice in les.slices
        assert Lesion.from_dict(les.to_dict()) == les


def test_two_touching_plaques_one_lesion_and_area_threshold():
    hu = np.full((4, 20, 20), 0.0)
    lab = np.zeros((4, 20, 20), np.uint8)
    lab[1, 5:8, 5:8] = CALCIUM_ID["LAD"]
    hu[1, 5:8, 5:8] = 450.0  # 9 px at 0.5 mm: 2.25 mm2, weight 4
    lab[2, 8, 8] = CALCIUM_ID["LAD"]  # diagonal neighbour in 3D: same lesion; 0.25 mm2 < 1 mm2: no score
    hu[2, 8, 8] = 300.0
    lesions, _ = find_lesions(hu, lab, (3.0, 0.5, 0.5))
    assert len(lesions) == 1
    (les,) = lesions
    assert les.voxels == 10 and les.slices == (1, 2) and les.peak_hu == 450.0
    assert les.agatston == pytest.approx(2.25 * 4 * 3.0 / 3.0)

