"""Retrain the stage-2 model: dataset -> plan -> preprocess -> k folds -> best config -> model zip.

    python -m nnunet_plans.train --data DIR [--plan paper|demo|FILE] [--folds 0 1 2 3 4] [--gpus 0 1] \
        [--work WORKDIR] [--out model.zip]
    python -m nnunet_plans.train --phantoms 16 --plan demo --out cacpipe/data/demo_model.zip

Every step is resumable: a finished step is skipped when its output exists, and an interrupted
fold continues from its latest checkpoint. With several GPUs each fold runs in its own process
on its own GPU (``CUDA_VISIBLE_DEVICES``), in parallel; otherwise folds run one after another.
nnU-Net workers (data augmentation, export) re-import the main module: the entry point below
is guarded, and so must be any script that calls these functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cacpipe import env

from . import data as data_mod
from .plans import add_configuration, load_spec

PLANS_ID = "nnUNetPlans"


def set_nnunet_env(work: str | Path) -> dict[str, Path]:
    """Point nnU-Net's three folders into ``work`` (for this process and its children)."""
    work = Path(work).resolve()
    dirs = {"nnUNet_raw": work / "raw", "nnUNet_preprocessed": work / "preprocessed", "nnUNet_results": work / "results"}
    for k, v in dirs.items():
        v.mkdir(parents=True, exist_ok=True)
        env.set_value(k, str(v))
    env.set_default("nnUNet_def_n_proc", "2")
    return dirs


def dataset_name(dataset_id: int, name: str) -> str:
    return f"Dataset{int(dataset_id):03d}_{name}"


def plan_and_preprocess(dataset_id: int, spec: dict, num_processes: int = 2) -> str:
    """Fingerprint, nnU-Net's default planning, our configuration added, preprocessing. Returns its name."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    pre = env.nnunet_path("nnUNet_preprocessed") / _ds_name(dataset_id)
    config = spec["configuration"]
    if not (pre / f"{PLANS_ID}_{config}").exists() or not (pre / f"{PLANS_ID}.json").exists():
        # The planner sizes torch threads from nnUNet_n_proc_DA and fails on 0.
        with env.scoped({"nnUNet_n_proc_DA": str(max(1, int(env.get("nnUNet_n_proc_DA") or 1)))}):
            extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=True)
            plan_experiments([dataset_id])
        add_configuration(pre / f"{PLANS_ID}.json", spec)
        preprocess([dataset_id], PLANS_ID, [config], [num_processes])
    return config


def _ds_name(dataset_id: int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    return maybe_convert_to_dataset_name(dataset_id)


def train_fold(dataset_id: int, config: str, fold: int, trainer_name: str, device: str = "auto",
               validate: bool = True, max_epochs: int | None = None, init_weights: str | None = None) -> Path:
    """Train one fold in this process (resuming from its latest checkpoint), then validate it.

    Returns the fold's output folder. ``max_epochs`` overrides the run length (tests).
    ``init_weights``: a checkpoint whose weights start a fresh run (nnU-Net's
    ``load_pretrained_weights``: every layer but the final segmentation layers, which start anew).
    """
    from cacpipe.torchvision_fix import apply

    apply()
    import torch
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from .trainers import trainer_class

    pre = env.nnunet_path("nnUNet_preprocessed") / _ds_name(dataset_id)
    plans = json.loads((pre / f"{PLANS_ID}.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cls = trainer_class(trainer_name)
    out = env.nnunet_path("nnUNet_results") / _ds_name(dataset_id) / f"{trainer_name}__{PLANS_ID}__{config}" / f"fold_{fold}"
    resume = (out / "checkpoint_latest.pth").exists() or (out / "checkpoint_final.pth").exists()
    plans["continue_training"] = resume
    trainer = cls(plans=plans, configuration=config, fold=fold, dataset_json=dataset_json,
                  device=torch.device(device))
    if max_epochs is not None:
        trainer.num_epochs = int(max_epochs)
    if (out / "checkpoint_final.pth").exists() and (out / "validation" / "summary.json").exists():
        print(f"fold {fold}: already trained and validated ({out})")
        return out
    maybe_load_checkpoint(trainer, resume, False, None)
    if init_weights and not resume:
        from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

        trainer.initialize()
        load_pretrained_weights(trainer.network, str(init_weights), verbose=False)
        trainer.print_to_log_file(f"initialised from {init_weights} (segmentation layers anew)")
    if not (out / "checkpoint_final.pth").exists():
        trainer.run_training()
    if validate:
        trainer.perform_actual_validation(False)
    return out


def train_folds(dataset_id: int, config: str, folds: list[int], trainer_name: str, gpus: list[str],
                init_weights: str | None = None) -> None:
    """All folds: one process per fold; in parallel with one GPU each when several GPUs are given."""
    def cmd(f: int) -> list[str]:
        return [sys.executable, "-m", "nnunet_plans.train", "--fold-only", str(f), "--dataset-id", str(dataset_id),
                "--configuration", config, "--trainer", trainer_name,
                *(["--init-weights", str(Path(init_weights).resolve())] if init_weights else [])]

    root = str(Path(__file__).resolve().parent.parent)
    env_base = env.child_environment({"PYTHONPATH": root + os.pathsep + (env.get("PYTHONPATH") or "")})
    if len(gpus) <= 1:
        for f in folds:
            child = dict(env_base)
            if gpus:
                child["CUDA_VISIBLE_DEVICES"] = gpus[0]
            subprocess.run(cmd(f), check=True, env=child)
        return
    pending, running = list(folds), []
    free = list(gpus)
    while pending or running:
        while pending and free:
            g, f = free.pop(0), pending.pop(0)
            running.append((subprocess.Popen(cmd(f), env={**env_base, "CUDA_VISIBLE_DEVICES": g}), g, f))
        time.sleep(5)
        for item in list(running):
            p, g, f = item
            if p.poll() is not None:
                running.remove(item)
                free.append(g)
                if p.returncode != 0:
                    raise RuntimeError(f"fold {f} failed on GPU {g} (exit {p.returncode}); rerun to resume it")


def best_configuration(dataset_id: int, config: str, trainer_name: str, folds: list[int]) -> None:
    """nnU-Net's find_best_configuration over our one configuration (writes crossval results + postprocessing)."""
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration

    find_best_configuration(dataset_id, ({"plans": PLANS_ID, "configuration": config, "trainer": trainer_name},),
                            allow_ensembling=False, num_processes=int(env.get("nnUNet_def_n_proc") or 2),
                            overwrite=True, folds=tuple(folds), strict=True)


def export_zip(dataset_id: int, config: str, trainer_name: str, folds: list[int], out: str | Path) -> Path:
    """nnU-Net's export (the zip ``cacpipe models install`` and ``nnUNetv2_install_pretrained_model_from_zip`` take)."""
    from nnunetv2.model_sharing.model_export import export_pretrained_model

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    export_pretrained_model(dataset_id, str(out), (config,), trainer_name, PLANS_ID, tuple(folds), strict=True)
    return out


def build_raw_dataset(data: str | Path | None, phantoms: int | None, dataset_id: int, name: str, n_folds: int,
                      spacing_zyx, demo: bool = False, phantoms_v2: int = 0) -> Path:
    """The nnU-Net raw dataset under $nnUNet_raw from one of three sources, every case cropped by
    stage 1 at the plan's ``spacing_zyx`` exactly as inference crops it.

    ``phantoms`` / ``phantoms_v2``: N v1 / v2 synthetic phantoms (the demo model; training seeds).
    ``data`` holding ``cases.csv``: MASS
    annotations (label_tools converts the .con contours and splits calcium per artery). Otherwise
    ``data`` is a folder of NIfTI case folders.
    """
    raw = env.nnunet_path("nnUNet_raw")
    if phantoms or phantoms_v2:
        return data_mod.build_phantom_dataset(raw, dataset_id, name, phantoms or 0, n_folds, spacing_zyx, demo=demo,
                                              v2_cases=phantoms_v2)
    if data is not None and (Path(data) / "cases.csv").exists():
        from label_tools.nnunet_dataset import build_dataset, stage1_heart_crop

        summary = build_dataset(data, raw, dataset_id, name, crop=stage1_heart_crop(spacing_zyx), n_folds=n_folds)
        print(f"annotations converted: {summary.get('written')} cases written, {summary.get('failed')} failed "
              "(see build_report.csv in the dataset folder)")
        return Path(raw) / dataset_name(dataset_id, name)
    return data_mod.build_dataset_from_dir(data, raw, dataset_id, name, spacing_zyx, n_folds)


def run(args: argparse.Namespace) -> Path:
    spec = load_spec(args.plan)
    folds = args.folds if args.folds is not None else list(range(int(spec.get("folds", 5))))
    n_folds = int(spec.get("folds", 5)) if args.n_splits is None else args.n_splits
    if max(folds) >= n_folds:
        raise SystemExit(f"fold {max(folds)} does not exist with {n_folds} splits")
    set_nnunet_env(args.work)
    ds = env.nnunet_path("nnUNet_raw") / dataset_name(args.dataset_id, args.name)
    if not (ds / "dataset.json").exists():
        t = time.time()
        build_raw_dataset(args.data, args.phantoms, args.dataset_id, args.name, n_folds, spec["spacing_zyx"],
                          bool(spec.get("demo")), args.phantoms_v2)
        print(f"dataset written: {ds} ({time.time() - t:.0f} s)")
    config = plan_and_preprocess(args.dataset_id, spec, args.num_processes)
    pre = env.nnunet_path("nnUNet_preprocessed") / ds.name
    shutil.copy(ds / "splits_final.json", pre / "splits_final.json")
    trainer = args.trainer or spec["trainer"]
    train_folds(args.dataset_id, config, folds, trainer, args.gpus, args.init_weights)
    best_configuration(args.dataset_id, config, trainer, folds)
    out = export_zip(args.dataset_id, config, trainer, folds, args.out)
    print(f"model exported: {out}\ninstall it with: cacpipe models install {out}")
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="ANNOTATIONS folder (cases.csv, images/, contours/*.con; see data_README.md) "
                     "or a folder of cases (CASE/ct.nii.gz, labels.nii.gz[, heart.nii.gz, patient.txt])")
    src.add_argument("--phantoms", type=int, help="train on N synthetic v1 phantoms instead (demo model)")
    p.add_argument("--phantoms-v2", type=int, default=0,
                   help="and on N v2 phantoms (training seeds of cacpipe.phantom.seeds; demo model)")
    p.add_argument("--plan", default="paper", help="paper (default), demo, or a plan-spec JSON file")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="folds to train (default: all of the spec)")
    p.add_argument("--n-splits", type=int, default=None, help="number of CV splits (default: the spec's folds)")
    p.add_argument("--gpus", nargs="*", default=[], help="GPU ids; several: one fold per GPU in parallel")
    p.add_argument("--work", default="nnunet_work", help="nnU-Net raw/preprocessed/results root")
    p.add_argument("--dataset-id", type=int, default=501)
    p.add_argument("--name", default="cacpipe_coronary")
    p.add_argument("--trainer", default=None, help="trainer class (default: the spec's)")
    p.add_argument("--num-processes", type=int, default=2, help="processes for fingerprint/preprocessing")
    p.add_argument("--out", default="cacpipe_model.zip", help="exported model zip")
    p.add_argument("--init-weights", default=None,
                   help="checkpoint (.pth) whose weights start each fold (all but the segmentation layers)")
    p.add_argument("--fold-only", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--configuration", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.fold_only is not None:  # child process of train_folds
        train_fold(args.dataset_id, args.configuration, args.fold_only, args.trainer, init_weights=args.init_weights)
        return
    if args.data and args.phantoms_v2:
        parser().error("--phantoms-v2 goes with --phantoms, not --data")
    if not args.data and not args.phantoms and not args.phantoms_v2:
        parser().error("give --data DIR or --phantoms N")
    run(args)


if __name__ == "__main__":
    main()
