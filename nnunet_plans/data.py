"""Build the nnU-Net raw training dataset: from case folders or from a synthetic phantom cohort.

Every case is cropped with the stage-1 heart crop of inference (``cacpipe.heart.crop_case``:
the same heart locator, margins and padding) at the plan's spacing, so a model is trained on the
crops it will segment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cacpipe.errors import InputDataError
from cacpipe.labels import ARTERIES, LABEL_BY_ID
from cacpipe.phantom import seeds
from cacpipe.volume import Volume
from label_tools.nnunet_dataset import dataset_dir, patient_folds, write_case, write_dataset_json

# Seed ranges come from the one registry, cacpipe.phantom.seeds: the demo model trains on v1_training
# and training (v2) seeds; accuracy is measured only on heldout seeds (nnunet_plans.accuracy).
# v2 training phantoms: non-contrast (calcium scoring's input) and normal situs (a mirrored heart is
# something the pipeline flags, not something to learn).
V2_TRAINING_OVERRIDES = {"acquisition": {"contrast_phase": "none"}, "heart": {"situs_inversus": False}}


def phantom_cohort_configs(n: int, seed0: int = 100, preset: str = "small"):
    """``n`` varied phantom configs: heart position, plaque sites/sizes/densities, noise, no-calcium cases.

    Deterministic in (n, seed0). Plaque radii 1.5-2.8 mm and 160-700 HU, 2-7 plaques per case,
    heart shifted by up to +-8 mm, noise 15-35 HU; every fifth case without coronary calcium.
    """
    from cacpipe.phantom import PhantomConfig, Plaque

    cfgs = []
    for i in range(n):
        rng = np.random.default_rng(seed0 + i)
        n_pl = 0 if i % 5 == 4 else int(rng.integers(2, 8))
        plaques = tuple(
            Plaque(str(rng.choice(ARTERIES)), float(rng.uniform(0.05, 0.85)), float(rng.uniform(1.5, 2.8)),
                   float(rng.uniform(160, 700)))
            for _ in range(n_pl)
        )
        cfgs.append(PhantomConfig.preset(
            preset, seed=seed0 + i, plaques=plaques, noise_hu=float(rng.uniform(15, 35)),
            heart_shift_mm=tuple(float(s) for s in rng.uniform(-8, 8, 3)),
            aortic_valve_calcium=bool(rng.random() < 0.8), mitral_annulus_calcium=bool(rng.random() < 0.6),
        ))
    return cfgs


def phantom_case(cfg, spacing_zyx) -> tuple[Volume, Volume]:
    """One phantom, cropped by stage 1 at ``spacing_zyx`` (the plan's): (ct, labels)."""
    from cacpipe.heart import crop_case
    from cacpipe.phantom import generate

    ph = generate(cfg)
    ct, lab, _ = crop_case(ph.ct, ph.labels, target_spacing_zyx=tuple(spacing_zyx))
    return ct, lab


def _finish(ds: Path, case_patient: dict[str, str], n_folds: int, extra: dict | None) -> Path:
    write_dataset_json(ds, len(case_patient), name=ds.name.split("_", 1)[1])
    if extra:
        p = ds / "dataset.json"
        d = json.loads(p.read_text())
        d.update(extra)
        p.write_text(json.dumps(d, indent=2, sort_keys=False))
    splits = patient_folds(sorted(case_patient), case_patient, n_folds)
    (ds / "splits_final.json").write_text(json.dumps(splits, indent=2))
    return ds


def v2_training_configs(n: int, preset: str = "v2-small", offset: int = 0) -> list:
    """``n`` v2 phantom configs from the registry's ``training`` seeds (:data:`V2_TRAINING_OVERRIDES`)."""
    from cacpipe.phantom.cohort import cohort_configs

    return cohort_configs("training", n, preset=preset, offset=offset, **V2_TRAINING_OVERRIDES)


def build_phantom_dataset(raw_root: str | Path, dataset_id: int, name: str, n_cases: int, n_folds: int,
                          spacing_zyx, seed0: int = seeds.V1_TRAINING.start, demo: bool = True,
                          v2_cases: int = 0, v2_preset: str = "v2-small") -> Path:
    """Write a heart-cropped phantom cohort as nnU-Net raw dataset ``DatasetXXX_name`` (+ splits):
    ``n_cases`` v1 phantoms (seeds from ``seed0``, which must lie in ``v1_training``) and ``v2_cases``
    v2 phantoms (``training`` seeds)."""
    v1 = phantom_cohort_configs(n_cases, seed0)
    seeds.require([c.seed for c in v1], "v1_training")
    cfgs = [(f"phantom_{i:03d}", c) for i, c in enumerate(v1)]
    cfgs += [(f"phantomv2_{i:03d}", c) for i, c in enumerate(v2_training_configs(v2_cases, v2_preset))]
    ds = dataset_dir(raw_root, dataset_id, name)
    case_patient = {}
    for case, cfg in cfgs:
        ct, lab = phantom_case(cfg, spacing_zyx)
        write_case(ds, case, ct, lab)
        case_patient[case] = case
    extra = {"cacpipe_demo": True,
             "cacpipe_note": "trained on synthetic phantoms only; NOT FOR CLINICAL USE"} if demo else None
    return _finish(ds, case_patient, n_folds, extra)


def build_dataset_from_dir(data: str | Path, raw_root: str | Path, dataset_id: int, name: str, spacing_zyx,
                           n_folds: int = 5) -> Path:
    """Write the raw dataset from ``data``: one folder per case holding ``ct.nii.gz`` and ``labels.nii.gz``
    (six-class map, cacpipe.labels) and optionally ``patient.txt`` (patient id: cases of one patient
    stay in one fold). Each case gets the stage-1 heart crop of inference at ``spacing_zyx``.

    This is the layout ``cacpipe phantom`` and label_tools write.
    """
    from label_tools.nnunet_dataset import stage1_heart_crop

    stage1_crop = stage1_heart_crop(spacing_zyx)
    data = Path(data)
    cases = sorted(p for p in data.iterdir() if (p / "ct.nii.gz").exists()) if data.is_dir() else []
    if not cases:
        raise InputDataError(f"no training cases under {data}: expected folders with ct.nii.gz and labels.nii.gz")
    ds = dataset_dir(raw_root, dataset_id, name)
    case_patient = {}
    for c in cases:
        if not (c / "labels.nii.gz").exists():
            raise InputDataError(f"case {c} has ct.nii.gz but no labels.nii.gz")
        ct, lab = Volume.read(c / "ct.nii.gz"), Volume.read(c / "labels.nii.gz")
        bad = sorted(set(np.unique(lab.array).tolist()) - {0, *LABEL_BY_ID})
        if bad:
            raise InputDataError(f"{c / 'labels.nii.gz'}: label ids {bad} are not in the six-class scheme (0-6)")
        ct, lab = stage1_crop(ct, lab)
        write_case(ds, c.name, ct, lab)
        pf = c / "patient.txt"
        case_patient[c.name] = pf.read_text().strip() if pf.exists() else c.name
    return _finish(ds, case_patient, n_folds, None)
