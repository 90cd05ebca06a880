"""Post-processing on the original grid (cacpipe.segment.postprocess): lesion completion to the full
>= 130 HU extent, attribution of each lesion to the tree it lies on, plausibility flags.

The "predictions" are the phantom's true label maps, damaged the way the networks damage them
(shrunk calcium, the wrong calcium channel, mirrored anatomy), so each outcome is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cacpipe import flags as F
from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID, CALCIUM_IDS
from cacpipe.phantom import PhantomConfig, Plaque, generate, ground_truth
from cacpipe.quant.quantify import quantify
from cacpipe.quant.validity import finalise
from cacpipe.record import StudyIdentity, StudyResult
from cacpipe.segment import refine
from cacpipe.segment.postprocess import _LEFT, COMPLETION_MM, REMOVED_CALCIUM_FLAG_MM3

PLAQUES = (Plaque("RCA", 0.3, 2.6, 450.0), Plaque("LAD", 0.25, 2.2, 320.0), Plaque("LCX", 0.4, 1.5, 210.0),
           Plaque("RCA", 0.7, 1.5, 180.0))


@pytest.fixture(scope="module")
def phantom():
    return generate(PhantomConfig.preset("small", seed=1401, noise_hu=0.0, plaques=PLAQUES,
                                         heart_shift_mm=(4.0, -3.0, 2.0)))


@pytest.fixture(scope="module")
def truth(phantom):
    return ground_truth(phantom)


def _numbers(ph, labels, assessed=None):
    q = quantify(ph.ct, labels, assessed=assessed)
    return {a: (q.arteries[a].agatston, q.arteries[a].calcium_volume_mm3) for a in ARTERIES}


def _finalised(ct, r):
    """The study result the pipeline would finalise from this refinement."""
    q = quantify(ct, r.labels, assessed=r.assessed)
    return finalise(StudyResult(StudyIdentity(), flags=r.flags, arteries=q.arteries, lesions=q.lesions))


def _shrunk(labels: np.ndarray, keep_radius_vox: int = 0) -> np.ndarray:
    """Each calcium region cut down to its centre voxel and neighbours; the rest labelled artery."""
    out = labels.copy()
    for cid in CALCIUM_IDS:
        m = labels == cid
        out[m] = cid - 3
        comp, n = ndimage.label(m, structure=np.ones((3, 3, 3)))
        for c in ndimage.center_of_mass(m, comp, range(1, n + 1)):
            z, y, x = (int(round(v)) for v in c)
            r = keep_radius_vox
            box = out[z - r:z + r + 1, y - r:y + r + 1, x - r:x + r + 1]
            box[m[z - r:z + r + 1, y - r:y + r + 1, x - r:x + r + 1]] = cid
    return out


def test_completion_restores_the_full_truth_volume_and_agatston(phantom, truth):
    shrunk = _shrunk(phantom.labels.array)
    before = _numbers(phantom, phantom.labels.with_array(shrunk))
    r = refine(phantom.ct, phantom.labels.with_array(shrunk), phantom.heart)
    after = _numbers(phantom, r.labels, r.assessed)
    assert sum(v[1] for v in before.values()) < 0.3 * truth["total"]["calcium_volume_mm3"]  # really shrunk
    for a in ARTERIES:
        t = truth["arteries"][a]
        assert after[a][0] == pytest.approx(t["agatston"]) and after[a][1] == pytest.approx(t["calcium_volume_mm3"])
    assert np.array_equal(r.labels.array, phantom.labels.array)  # every voxel back in its class
    assert r.info["added_voxels"] > 0 and not [f for f in r.flags if f.severity != "info"]
    # no growth on request (the pipeline asks so on contrast scans, where the lumen is >= 130 HU)
    kept = refine(phantom.ct, phantom.labels.with_array(shrunk), phantom.heart, complete=False)
    assert kept.info["added_voxels"] == 0 and _numbers(phantom, kept.labels, kept.assessed) == before


def test_calcium_below_130_hu_is_never_counted_or_drawn_as_calcium(phantom, truth):
    lab = phantom.labels.array.copy()
    # the network paints calcium over blood (40 HU) of each artery, e.g. a blurry halo
    for a in ARTERIES:
        idx = np.argwhere(lab == ARTERY_ID[a])[::7]
        lab[tuple(idx.T)] = CALCIUM_ID[a]
    r = refine(phantom.ct, phantom.labels.with_array(lab), phantom.heart)
    out = r.labels.array
    calcium = np.isin(out, CALCIUM_IDS)
    assert (phantom.ct.array[calcium] >= 130).all()
    assert r.info["below_threshold_relabelled"] > 0
    assert np.array_equal(out > 0, lab > 0)  # relabelled as artery, not dropped
    after = _numbers(phantom, r.labels, r.assessed)
    for a in ARTERIES:
        assert after[a][1] == pytest.approx(truth["arteries"][a]["calcium_volume_mm3"])


def test_completion_never_pulls_in_bone_beyond_its_bound(phantom):
    """A dense structure touching a plaque (bone, valve, aortic wall) is taken only within the
    documented distance of the coronary labels, never as a whole."""
    ct = phantom.ct.array.copy()
    lab = phantom.labels.array
    z, y, x = np.argwhere(lab == CALCIUM_ID["LAD"]).mean(axis=0).astype(int)
    ct[z - 4:z + 5, y - 4:y + 5, x:x + 40] = 700  # a 60 mm bar of bone running away from the plaque
    ctv = phantom.ct.with_array(ct)
    r = refine(ctv, phantom.labels.with_array(_shrunk(lab)), phantom.heart)
    calc = np.isin(r.labels.array, CALCIUM_IDS)
    dist = ndimage.distance_transform_edt(lab == 0, sampling=phantom.ct.spacing_zyx)
    assert calc[z, y, x + 30:x + 40].sum() == 0  # far end of the bar: never calcium
    assert dist[calc].max() <= COMPLETION_MM + 1e-6
    bar = np.zeros(ct.shape, bool)
    bar[z - 4:z + 5, y - 4:y + 5, x:x + 40] = True
    assert (calc & bar & (lab == 0)).sum() < 0.1 * (bar & (lab == 0)).sum()


def test_rca_plaque_goes_to_the_rca_even_when_the_lcx_channel_fires(phantom, truth):
    lab = phantom.labels.array.copy()
    rca_calc = lab == CALCIUM_ID["RCA"]
    lab[rca_calc] = CALCIUM_ID["LCX"]  # the LCX calcium channel fired on the RCA plaques (painted last)
    half = rca_calc & (np.indices(lab.shape)[2] % 2 == 0)
    lab[half] = CALCIUM_ID["RCA"]  # ... and on part of it the RCA channel too: one lesion, two channels
    r = refine(phantom.ct, phantom.labels.with_array(lab), phantom.heart)
    after = _numbers(phantom, r.labels, r.assessed)
    for a in ARTERIES:
        assert after[a][0] == pytest.approx(truth["arteries"][a]["agatston"])
    rca = [les for les in r.lesions if les.artery == "RCA"]
    assert len(rca) == 2 and all(les.channels["LCX"] > 0 for les in rca) and r.info["reattributed_lesions"] >= 1
    assert all(les.tree_votes["RCA"] > 10 * les.tree_votes["LCX"] for les in rca)
    assert not any(f.code == F.CALCIUM_ATTRIBUTION_AMBIGUOUS and f.artery == "RCA" for f in r.flags)


def test_a_stray_label_bridging_the_trees_does_not_move_a_lesion(phantom, truth):
    """Attribution follows the labels along the tree (geodesic), so one stray line of LCX label
    joining the RCA plaque to the left tree leaves the plaque with the RCA."""
    lab = phantom.labels.array.copy()
    rz, ry, rx = np.argwhere(lab == CALCIUM_ID["RCA"])[0]
    lz, ly, lx = np.argwhere(lab == ARTERY_ID["LCX"])[0]
    for t in np.linspace(0.0, 1.0, 400):
        p = tuple(np.round([rz + t * (lz - rz), ry + t * (ly - ry), rx + t * (lx - rx)]).astype(int))
        if lab[p] == 0:
            lab[p] = ARTERY_ID["LCX"]
    r = refine(phantom.ct, phantom.labels.with_array(lab), phantom.heart)
    after = _numbers(phantom, r.labels, r.assessed)
    for a in ARTERIES:
        assert after[a][0] == pytest.approx(truth["arteries"][a]["agatston"])


def test_left_lesions_go_to_the_branch_beyond_them_not_to_the_labels_next_to_them():
    """The demo model's failure: the first centimetres of one left branch painted as the other
    (with the plaque's calcium channel). The branch beyond each plaque decides; a plaque on the
    left main (before the bifurcation) counts with the LAD (LM + LAD), with an info-level reason."""
    ph = generate(PhantomConfig.preset("small", seed=1402, noise_hu=0.0, heart_shift_mm=(-3.0, 2.0, 0.0),
                                       plaques=(Plaque("LAD", 0.45, 2.0, 400.0), Plaque("LCX", 0.3, 2.0, 350.0),
                                                Plaque("LAD", 0.2, 1.8, 300.0))))
    truth = ground_truth(ph)
    lab = ph.labels.array.copy()
    dist = {a: ndimage.distance_transform_edt(lab != CALCIUM_ID[a], sampling=ph.ct.spacing_zyx) for a in _LEFT}
    near_lad, near_lcx = dist["LAD"] <= 10.0, dist["LCX"] <= 10.0
    lab[near_lad & (ph.labels.array == ARTERY_ID["LAD"])] = ARTERY_ID["LCX"]  # LAD around its plaques: "LCX"
    lab[near_lad & (ph.labels.array == CALCIUM_ID["LAD"])] = CALCIUM_ID["LCX"]
    lab[near_lcx & (ph.labels.array == ARTERY_ID["LCX"])] = ARTERY_ID["LAD"]  # and the other way round
    lab[near_lcx & (ph.labels.array == CALCIUM_ID["LCX"])] = CALCIUM_ID["LAD"]
    # the left-main plaque (the LAD plaque nearest the ostium, top of the scan) keeps its LAD channel:
    # at the bifurcation a clear LCX channel would win (next test)
    comp, n = ndimage.label(ph.labels.array == CALCIUM_ID["LAD"], structure=np.ones((3, 3, 3)))
    top = 1 + int(np.argmax([c[0] for c in ndimage.center_of_mass(comp > 0, comp, range(1, n + 1))]))
    lab[comp == top] = CALCIUM_ID["LAD"]
    before = _numbers(ph, ph.labels.with_array(lab))
    for a in _LEFT:  # really swapped
        assert before[a][0] != pytest.approx(truth["arteries"][a]["agatston"], abs=1.0)
    r = refine(ph.ct, ph.labels.with_array(lab), ph.heart)
    after = _numbers(ph, r.labels, r.assessed)
    for a in ARTERIES:
        assert after[a][0] == pytest.approx(truth["arteries"][a]["agatston"])
    left = sorted((les for les in r.lesions if les.artery in _LEFT), key=lambda les: les.centre_zyx[0])
    assert len(left) == 3 and all(les.beyond_votes for les in left)
    lm = [les for les in left if les.reason]
    assert len(lm) == 1 and lm[0].artery == "LAD" and "left main" in lm[0].reason
    assert all(f.severity == "info" for f in r.flags if f.code == F.CALCIUM_ATTRIBUTION_AMBIGUOUS)
    # at the bifurcation, a calcium channel that clearly says LCX gives the lesion to the LCX
    lab[comp == top] = CALCIUM_ID["LCX"]
    r = refine(ph.ct, ph.labels.with_array(lab), ph.heart)
    (lm,) = [les for les in r.lesions if les.reason]
    assert lm.artery == "LCX" and "left main" in lm.reason and "calcium channel" in lm.reason
    # a fragment of the tree (nothing beyond the plaque to go by): the calcium channel decides
    mid = comp == 1 + int(np.argmin([c[0] for c in ndimage.center_of_mass(comp > 0, comp, range(1, n + 1))]))
    frag = lab.copy()
    frag[np.isin(frag, (ARTERY_ID["LAD"], ARTERY_ID["LCX"]))
         & (ndimage.distance_transform_edt(~mid, sampling=ph.ct.spacing_zyx) > 4.0)] = 0
    frag[mid] = CALCIUM_ID["LAD"]
    r = refine(ph.ct, ph.labels.with_array(frag), ph.heart)
    (les,) = [les for les in r.lesions if les.centre_zyx[0] == pytest.approx(np.argwhere(mid)[:, 0].mean(), abs=1)]
    assert les.artery == "LAD" and "labels next to it are mostly LCX" in les.reason


def test_ambiguous_lesions_are_flagged_with_a_reason(phantom):
    lab = phantom.labels.array.copy()
    ct = phantom.ct.array.copy()
    # calcium on no tree, far from every artery (here: inside the ventricle)
    cz, cy, cx = np.argwhere(phantom.heart.array > 0).mean(axis=0).astype(int)
    ct[cz - 1:cz + 2, cy - 1:cy + 2, cx - 1:cx + 2] = 500
    lab[cz - 1:cz + 2, cy - 1:cy + 2, cx - 1:cx + 2] = CALCIUM_ID["LAD"]
    # the RCA tube on one side of the large RCA plaque labelled LCX: both sides alike along its tree
    rca_plaque = np.argwhere(lab == CALCIUM_ID["RCA"])
    z0 = rca_plaque[:, 0].max()
    tube = (lab == ARTERY_ID["RCA"]) & (np.indices(lab.shape)[0] > z0)
    lab[tube] = ARTERY_ID["LCX"]
    numbered = phantom.ct.with_array(ct)  # InstanceNumbers running backwards, as assembly records them
    numbered.meta.update(instance_numbers=[500 - k for k in range(ct.shape[0])],
                         slice_positions_mm=[-100.0 + 2 * k for k in range(ct.shape[0])])
    r = refine(numbered, phantom.labels.with_array(lab), phantom.heart)
    amb = [f for f in r.flags if f.code == F.CALCIUM_ATTRIBUTION_AMBIGUOUS]
    assert any("on no artery tree" in f.message and f.artery == "LAD" and f.severity == "warning" for f in amb)
    # flags name the image as PACS shows it (issue 27): "image 500-k (z ...)", never the internal index
    assert any(f"at image {500 - cz} (z {-100.0 + 2 * cz:.1f} mm)" in f.message for f in amb), [f.message for f in amb]
    far = [les for les in r.lesions if les.reason and "on no artery tree" in les.reason]
    assert far and far[0].tree_votes == dict.fromkeys(ARTERIES, 0)
    mixed = [les for les in r.lesions if les.reason and "labels alike" in les.reason]
    assert mixed and mixed[0].artery == "RCA" and "by its position" in mixed[0].reason
    assert any("labels alike" in f.message and f.artery == "RCA" and f.severity == "warning" for f in amb)


def test_missing_tree_and_fragments_outside_the_heart_are_flagged(phantom):
    lab = phantom.labels.array.copy()
    lcx = np.argwhere(np.isin(lab, (ARTERY_ID["LCX"], CALCIUM_ID["LCX"])))
    lab[tuple(lcx[3:].T)] = 0  # only three LCX voxels left
    # a LAD label running on from the LAD's end 60 mm away from the heart: part of the tree, kept, flagged
    end = np.argwhere(lab == ARTERY_ID["LAD"])
    z, y, x = end[np.argmin(end[:, 0])]
    lab[z, y - 4:y + 5, x:x + 40] = ARTERY_ID["LAD"]  # > OUTSIDE_FRACTION of the LAD, > 20 mm out
    lab[5:9, 20:24, 20:24] = ARTERY_ID["LAD"]  # a LAD fragment in the corner of the scan: removed
    lab[10:12, 20:22, 30:32] = CALCIUM_ID["RCA"]  # ... and calcium far outside the heart: not counted
    ct = phantom.ct.array.copy()
    ct[10:12, 20:22, 30:32] = 600
    r = refine(phantom.ct.with_array(ct), phantom.labels.with_array(lab), phantom.heart)
    assert r.assessed == {"RCA": True, "LAD": True, "LCX": False}
    assert any(f.code == F.ARTERY_TREE_MISSING and f.artery == "LCX" and f.severity == "invalid" for f in r.flags)
    out = r.labels.array
    assert not out[5:9, 20:24, 20:24].any() and not out[10:12, 20:22, 30:32].any()
    # routine stray labels are removed and recorded, not flagged (a flag on every study is noise);
    # only removed pieces holding >= REMOVED_CALCIUM_FLAG_MM3 of calcium label earn an info flag
    assert not [f for f in r.flags if f.code == F.ARTERY_OUTSIDE_HEART and f.severity == "info"]
    lab2 = lab.copy()
    lab2[10:13, 20:24, 30:34] = CALCIUM_ID["RCA"]
    ct2 = ct.copy()
    ct2[10:13, 20:24, 30:34] = 600
    big = 48 * phantom.ct.voxel_volume_mm3
    r2 = refine(phantom.ct.with_array(ct2), phantom.labels.with_array(lab2), phantom.heart)
    gone = [f for f in r2.flags if f.code == F.ARTERY_OUTSIDE_HEART and f.severity == "info"]
    assert bool(gone) == (big >= REMOVED_CALCIUM_FLAG_MM3)
    assert not gone or ("removed 2 piece(s)" in gone[0].message and "not counted" in gone[0].message)
    assert r.info["removed_outside_heart_mm3"] == pytest.approx((64 + 8) * phantom.ct.voxel_volume_mm3, abs=0.1)
    assert (out[z, y - 4:y + 5, x:x + 40] == ARTERY_ID["LAD"]).all()
    assert any(f.code == F.ARTERY_OUTSIDE_HEART and f.artery == "LAD" and f.severity == "warning" for f in r.flags)
    res = _finalised(phantom.ct, r)
    assert not res.arteries["LCX"].assessed and res.arteries["LCX"].agatston is None and res.total.category is None
    empty = refine(phantom.ct, phantom.labels.with_array(np.zeros_like(lab)), phantom.heart)
    assert empty.assessed == dict.fromkeys(ARTERIES, False) and not empty.labels.array.any()
    assert sorted(f.artery for f in empty.flags if f.code == F.ARTERY_TREE_MISSING) == sorted(ARTERIES)


def _mirrored(ph):
    """Situs inversus: the phantom's anatomy mirrored left-right in patient space (grid unchanged),
    the labels still naming each artery by its anatomy."""
    def flip(v):
        return v.with_array(np.ascontiguousarray(v.array[:, :, ::-1]))
    return flip(ph.ct), flip(ph.labels), flip(ph.heart)


def test_situs_inversus_is_flagged_not_swapped(phantom, truth):
    ct, lab, heart = _mirrored(phantom)
    assert np.isclose(np.asarray(phantom.ct.direction).reshape(3, 3)[0, 0], 1.0)  # x runs to the patient's left
    r = refine(ct, lab, heart)
    codes = {(f.code, f.artery, f.severity) for f in r.flags}
    assert (F.DEXTROCARDIA_SUSPECTED, None, "invalid") in codes
    for a in ARTERIES:
        assert (F.ARTERY_IMPLAUSIBLE_POSITION, a, "invalid") in codes
    assert np.array_equal(r.labels.array, lab.array)  # nothing swapped to "fix" the anatomy
    res = _finalised(ct, r)
    assert not any(res.arteries[a].agatston_valid for a in ARTERIES)
    assert res.total.agatston_valid and res.total.agatston == pytest.approx(truth["total"]["agatston"])
    assert res.total.category is not None and "attribution implausible" in res.total.agatston_note
    # the same anatomy the right way round raises none of these
    plain = refine(phantom.ct, phantom.labels, phantom.heart)
    assert not {f.code for f in plain.flags} & {F.DEXTROCARDIA_SUSPECTED, F.ARTERY_IMPLAUSIBLE_POSITION}


def test_left_labels_on_the_right_are_flagged(phantom):
    """The failure of mirrored models: the RCA's plaque and part of its tree labelled LCX."""
    lab = phantom.labels.array.copy()
    rca = np.isin(lab, (ARTERY_ID["RCA"], CALCIUM_ID["RCA"]))
    z0 = np.argwhere(rca)[:, 0]
    lower = rca & (np.indices(lab.shape)[0] < np.median(z0))
    lab[lower & (lab == ARTERY_ID["RCA"])] = ARTERY_ID["LCX"]
    lab[lower & (lab == CALCIUM_ID["RCA"])] = CALCIUM_ID["LCX"]
    r = refine(phantom.ct, phantom.labels.with_array(lab), phantom.heart)
    lcx = [f for f in r.flags if f.code == F.ARTERY_IMPLAUSIBLE_POSITION and f.artery == "LCX"]
    assert lcx and any("right of the aortic root" in f.message for f in lcx)
    res = _finalised(phantom.ct, r)
    # the LCX holds calcium where the RCA runs: both are in doubt; the LAD is not, nor the total
    assert [res.arteries[a].agatston_valid for a in ARTERIES] == [False, True, False]
    assert res.total.agatston_valid and res.total.category is not None
