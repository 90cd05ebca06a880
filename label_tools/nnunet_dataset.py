"""Write an nnU-Net v2 raw dataset (imagesTr/labelsTr, dataset.json, splits_final.json).

dataset.json comes from the label scheme (cacpipe.labels), never written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from cacpipe.errors import GeometryError, InputDataError
from cacpipe.labels import nnunet_dataset_json
from cacpipe.volume import Volume


def dataset_dir(raw_root: str | Path, dataset_id: int, name: str) -> Path:
    """``<raw_root>/DatasetXXX_name`` as nnU-Net names it."""
    return Path(raw_root) / f"Dataset{int(dataset_id):03d}_{name}"


def write_case(ds_dir: str | Path, case_id: str, ct: Volume, labels: Volume) -> None:
    """Write one training case: imagesTr/<case>_0000.nii.gz and labelsTr/<case>.nii.gz."""
    if not ct.same_grid(labels):
        raise GeometryError(f"case {case_id}: label map grid differs from the CT grid")
    ds_dir = Path(ds_dir)
    ct.write(ds_dir / "imagesTr" / f"{case_id}_0000.nii.gz")
    labels.with_array(labels.array.astype("uint8")).write(ds_dir / "labelsTr" / f"{case_id}.nii.gz")


def write_dataset_json(ds_dir: str | Path, num_training: int, name: str = "cacpipe_coronary") -> Path:
    """dataset.json with the regions and regions_class_order of the label scheme (key order kept)."""
    p = Path(ds_dir) / "dataset.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(nnunet_dataset_json(num_training, name), indent=2, sort_keys=False))
    return p


def patient_folds(case_ids: Sequence[str], patient_of: Mapping[str, str], n_folds: int = 5) -> list[dict]:
    """A fixed k-fold split that keeps every patient's cases in the same fold.

    Patients are assigned round-robin in sorted order (deterministic); needs >= n_folds patients.
    Returns nnU-Net's splits_final.json content: [{"train": [...], "val": [...]}, ...].
    """
    patients = sorted({patient_of[c] for c in case_ids})
    if len(patients) < n_folds:
        raise InputDataError(f"{n_folds}-fold split needs at least {n_folds} patients, got {len(patients)}")
    fold_of = {p: i % n_folds for i, p in enumerate(patients)}
    splits = []
    for k in range(n_folds):
        val = sorted(c for c in case_ids if fold_of[patient_of[c]] == k)
        train = sorted(c for c in case_ids if fold_of[patient_of[c]] != k)
        splits.append({"train": train, "val": val})
    return splits
