"""Build the nnU-Net raw training dataset: from case folders or from a synthetic phantom cohort.

Every case is cropped with the stage-1 heart crop of inference (``cacpipe.heart.crop_case``:
the same heart locator, margins and padding) at the plan's spacing, so a model is trained on the
crops it will segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cacpipe.errors import InputDataError
from cacpipe.labels import ARTERIES
from cacpipe.phantom import seeds
from cacpipe.volume import Volume
from label_tools.convert import LoadedCase

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


@dataclass(frozen=True)
class PhantomCase:
    """A synthetic training case: generated (deterministically) whenever it is loaded."""

    case: str
    patient_id: str
    config: object  # cacpipe.phantom.PhantomConfig
    source: str = "phantoms"

    def load(self, mapping=None, options=None) -> LoadedCase:
        """The phantom's CT and exact six-class labels (``mapping``/``options`` unused: no contours)."""
        from cacpipe.ingest import LoadedSeries
        from cacpipe.phantom import generate
        from cacpipe.record import StudyIdentity
        from label_tools.convert import labels_report

        ph = generate(self.config)
        ident = StudyIdentity(patient_id=self.patient_id, study_uid=self.case, series_uid=self.case,
                              series_description="synthetic phantom", input_kind="phantom")
        lab = ph.labels.array.astype(np.uint8)
        return LoadedCase(LoadedSeries(volume=ph.ct, identity=ident), ph.labels.with_array(lab),
                          labels_report(f"phantom seed {self.config.seed}", ph.ct, lab))


def phantom_cases(n_cases: int, seed0: int = seeds.V1_TRAINING.start, v2_cases: int = 0,
                  v2_preset: str = "v2-small") -> list[PhantomCase]:
    """The phantom cohort of :func:`phantom_cohort_configs` as training cases ``phantom_000``... (one patient
    each), then ``v2_cases`` v2 phantoms from the ``training`` seeds as ``phantomv2_000``..."""
    cases = [PhantomCase(f"phantom_{i:03d}", f"phantom_{i:03d}", cfg)
             for i, cfg in enumerate(phantom_cohort_configs(n_cases, seed0))]
    return cases + [PhantomCase(f"phantomv2_{i:03d}", f"phantomv2_{i:03d}", cfg)
                    for i, cfg in enumerate(v2_training_configs(v2_cases, v2_preset))]


DEMO_JSON = {"cacpipe_demo": True, "cacpipe_note": "trained on synthetic phantoms only; NOT FOR CLINICAL USE"}


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
    from label_tools.nnunet_dataset import build_dataset, stage1_heart_crop

    cases = phantom_cases(n_cases, seed0, v2_cases=v2_cases, v2_preset=v2_preset)
    seeds.require([c.config.seed for c in cases[:n_cases]], "v1_training")
    s = build_dataset(cases, raw_root, dataset_id, name, crop=stage1_heart_crop(spacing_zyx),
                      n_folds=n_folds, extra_json=DEMO_JSON if demo else None)
    return Path(s["dataset_dir"])


def build_dataset_from_dir(data: str | Path, raw_root: str | Path, dataset_id: int, name: str, spacing_zyx,
                           n_folds: int = 5) -> Path:
    """Write the raw dataset from ``data``: one folder per case holding ``ct.nii.gz`` and ``labels.nii.gz``
    (six-class map, cacpipe.labels) and optionally ``patient.txt`` (patient id: cases of one patient
    stay in one fold). Each case gets the stage-1 heart crop of inference at ``spacing_zyx``.

    This is the layout ``cacpipe phantom``, ``cacpipe review apply --training-cases`` and label_tools write.
    A case that cannot be read is an error (``make train`` checks every case first).
    """
    from label_tools.annotations import read_case_folders
    from label_tools.nnunet_dataset import build_dataset, stage1_heart_crop

    cases = read_case_folders(data)
    if not cases:
        raise InputDataError(f"no training cases under {data}: expected folders with ct.nii.gz and labels.nii.gz")
    s = build_dataset(cases, raw_root, dataset_id, name, crop=stage1_heart_crop(spacing_zyx), n_folds=n_folds)
    if s["failed"]:
        report = json.loads((Path(s["dataset_dir"]) / "build_report.json").read_text())
        bad = [f"{r['case']}: {r['error']}" for r in report["cases"] if r["status"] == "failed"]
        raise InputDataError(f"{s['failed']} case(s) of {data} could not be used: " + "; ".join(bad))
    return Path(s["dataset_dir"])
