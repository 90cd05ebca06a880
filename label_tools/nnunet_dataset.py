"""Write an nnU-Net v2 raw dataset (imagesTr/labelsTr, dataset.json, splits_final.json).

``build_dataset`` turns labelled cases (an ANNOTATIONS folder, case folders, or a list of cases)
into one.

dataset.json comes from the label scheme (cacpipe.labels), never written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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


# --- building a dataset from ANNOTATIONS ---------------------------------------------------

CropFn = Callable[[Volume, Volume], tuple]
"""(ct, labels) -> (cropped ct, cropped labels[, info dict]), both on the same grid; the optional
info (e.g. the heart locator used) goes into the case's report under ``crop``."""


def write_splits(ds_dir: str | Path, splits: list[dict]) -> Path:
    """``splits_final.json`` (nnU-Net reads it from nnUNet_preprocessed/DatasetXXX_name/)."""
    p = Path(ds_dir) / "splits_final.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(splits, indent=2))
    return p


def stage1_heart_crop(spacing_zyx, settings=None) -> CropFn:
    """The stage-1 heart crop of inference (``cacpipe.heart.crop_case``) at the plan's spacing (mm, z y x).

    ``settings`` is a ``cacpipe.config.Settings`` (default: the defaults, as ``cacpipe scan``).
    The crop function returns (ct, labels, info) with the heart locator used and its warnings.
    """
    from cacpipe.config import Settings
    from cacpipe.heart import crop_case

    s = settings or Settings()

    def crop(ct: Volume, labels: Volume) -> tuple[Volume, Volume, dict]:
        ct_c, lab_c, res = crop_case(ct, labels, s.heart, target_spacing_zyx=tuple(spacing_zyx), device=s.device)
        return ct_c, lab_c, {"heart_method": res.method, "heart_warnings": list(res.warnings)}

    return crop


def build_dataset(source, raw_root: str | Path, dataset_id: int, name: str = "cacpipe_coronary",
                  mapping=None, options=None, crop: CropFn | None = None, n_folds: int = 5,
                  preprocessed_root: str | Path | None = None, overwrite: bool = False,
                  extra_json: Mapping | None = None) -> dict:
    """Labelled cases -> nnU-Net v2 raw dataset.

    ``source``: an ANNOTATIONS folder (cases.csv, images/, contours/), a folder of case folders,
    or a list of cases (:class:`label_tools.annotations.Case` or any object with ``case``,
    ``patient_id`` and ``load(mapping, options)``). Writes
    ``<raw_root>/DatasetXXX_name/{imagesTr,labelsTr,dataset.json,splits_final.json}`` and
    ``build_report.{csv,json}``; the split is also written to
    ``<preprocessed_root>/DatasetXXX_name/splits_final.json`` when given. Cases that fail are
    recorded and left out; labelled voxels a crop removes are counted per case. ``extra_json``
    adds keys to dataset.json (e.g. the demo-model marker).
    """
    from .annotations import read_training_cases
    from .convert import case_row, write_reports

    ds = dataset_dir(raw_root, dataset_id, name)
    if ds.exists() and any(ds.iterdir()):
        if not overwrite:
            raise InputDataError(f"{ds} exists and is not empty; choose another dataset id or overwrite it")
        for sub in ("imagesTr", "labelsTr"):
            for f in (ds / sub).glob("*.nii.gz"):
                f.unlink()
    cases = list(source) if isinstance(source, (list, tuple)) else read_training_cases([source])
    rows, details, ok = [], {}, []
    for case in cases:
        try:
            loaded = case.load(mapping, options)
            ct, labels, rep = loaded.ct, loaded.labels, loaded.report
            if crop is not None:
                before = int((labels.array > 0).sum())
                out = crop(ct, labels)
                ct, labels = out[0], out[1]
                rep["crop"] = {"shape_zyx": list(ct.shape),
                               "labelled_voxels_lost": before - int((labels.array > 0).sum()),
                               **(out[2] if len(out) > 2 else {})}
            write_case(ds, case.case, ct, labels)
            rows.append(case_row(case, rep, None))
            details[case.case] = rep
            ok.append(case.case)
        except Exception as exc:  # noqa: BLE001 - record and go on
            rows.append(case_row(case, None, exc))
    write_reports(rows, details, ds / "build_report")
    if not ok:
        raise InputDataError(f"no case could be converted; see {ds / 'build_report.csv'}")
    write_dataset_json(ds, len(ok), name)
    if extra_json:
        p = ds / "dataset.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), **dict(extra_json)}, indent=2, sort_keys=False))
    patient_of = {c.case: c.patient_id for c in cases}
    splits = patient_folds(ok, patient_of, n_folds)
    paths = [str(write_splits(ds, splits))]
    if preprocessed_root is not None:
        paths.append(str(write_splits(dataset_dir(preprocessed_root, dataset_id, name), splits)))
    return {"dataset_dir": str(ds), "cases": len(cases), "written": len(ok), "failed": len(cases) - len(ok),
            "splits": paths, "report": str(ds / "build_report.csv"), "cases_written": ok}
