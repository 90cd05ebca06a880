"""`make train DATA=ANNOTATIONS`: MASS .con annotations -> nnU-Net raw dataset, with the same stage-1
heart crop that inference uses (not a ground-truth crop)."""

from __future__ import annotations

import csv
import json

import numpy as np

from cacpipe.labels import CALCIUM_IDS
from cacpipe.phantom import PhantomConfig, generate
from cacpipe.volume import Volume
from label_tools.convert import export_con


def test_annotations_folder_builds_a_stage1_cropped_dataset(tmp_path, monkeypatch):
    from nnunet_plans.train import build_raw_dataset

    ann = tmp_path / "ann"
    rows = []
    phantoms = {}
    for i in range(2):  # two patients, full field of view: stage 1 must find the heart itself
        ph = generate(PhantomConfig.preset("small", seed=10 + i, heart_shift_mm=(3.0 * i, 0.0, -2.0 * i)))
        case = f"c{i}"
        ph.ct.write(ann / "images" / f"{case}.nii.gz")
        export_con(ph.labels, ann / "contours" / f"{case}.con")
        rows.append((case, f"p{i}"))
        phantoms[case] = ph
    with open(ann / "cases.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("case", "patient_id"), *rows])

    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    ds = build_raw_dataset(ann, 812, "anntest", n_folds=2, spacing_zyx=(0.8, 0.73, 0.73))

    assert json.loads((ds / "dataset.json").read_text())["numTraining"] == 2
    for case, ph in phantoms.items():
        img = Volume.read(ds / "imagesTr" / f"{case}_0000.nii.gz")
        seg = Volume.read(ds / "labelsTr" / f"{case}.nii.gz")
        assert img.same_grid(seg)
        assert np.allclose(img.spacing_zyx, (0.8, 0.73, 0.73))  # stage 1 resamples to the training spacing
        # cropped to the heart, not the whole chest: a small fraction of the scanned volume
        assert img.array.size * img.voxel_volume_mm3 < 0.25 * ph.ct.array.size * ph.ct.voxel_volume_mm3
        # every calcified plaque survives conversion + crop + resampling (volume within 35 %)
        vol_in = np.isin(ph.labels.array, CALCIUM_IDS).sum() * ph.ct.voxel_volume_mm3
        vol_out = np.isin(seg.array, CALCIUM_IDS).sum() * seg.voxel_volume_mm3
        assert abs(vol_out - vol_in) <= 0.35 * vol_in
    splits = json.loads((ds / "splits_final.json").read_text())
    assert [sorted(s["val"]) for s in splits] in (
        [["c0"], ["c1"]], [["c1"], ["c0"]])
