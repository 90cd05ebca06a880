"""Retrain the stage-2 model: from annotated CTs to an installable model zip with a model card.

    python -m nnunet_plans.train --data ANNOTATIONS [CASES ...] [--plan paper|demo|FILE] [--dry-run]
        [--skip-failed] [--init MODEL.zip] [--folds 0 1 2 3 4] [--gpus 0 1] [--work WORK] [--out model.zip]
    python -m nnunet_plans.train --phantoms 8 --phantoms-v2 40 --plan demo --out cacpipe/data/demo_model.zip

Steps (nnunet_plans/README.md): (1) check every case (``WORK/preflight.json/.csv``; a failing case
stops the run unless ``--skip-failed``; ``--dry-run`` stops here and adds disk and time estimates
measured on this machine); (2) the raw dataset: MASS contours converted (report:
``build_report.csv``), every case cropped by stage 1 as inference crops it, at the plan's spacing,
patient-grouped folds; (3) nnU-Net planning with the plan's configuration (or the parent's plans
with ``--init``) and preprocessing; (4) the folds (one process per fold; with several GPUs one
fold per GPU in parallel), fine-tuned from ``--init``'s weights when given, each validated by
nnU-Net (per-region Dice); (5) cross-validation through cacpipe's scan pipeline
(``nnunet_plans.crossval``, ``WORK/crossval/report.txt``); (6) the model card; (7) the export zip
with the card inside. nnU-Net's find_best_configuration is not run: it chooses between
configurations (there is one) and an nnU-Net post-processing that cacpipe's inference never
applies.

Every step is resumable: a finished step is skipped when its output exists, and an interrupted
fold continues from its latest checkpoint. nnU-Net workers (data augmentation, export) re-import
the main module: the entry point below is guarded, and so must be any script that calls these
functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from cacpipe import env
from cacpipe.errors import CacpipeError, ConfigError, InputDataError

from . import data as data_mod
from .plans import add_configuration, configuration_from_spec, load_spec

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


def _ds_name(dataset_id: int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    return maybe_convert_to_dataset_name(dataset_id)


def _planner_threads():
    # The planner sizes torch threads from nnUNet_n_proc_DA and fails on 0.
    return env.scoped({"nnUNet_n_proc_DA": str(max(1, int(env.get("nnUNet_n_proc_DA") or 1)))})


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
        with _planner_threads():
            extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=True)
            plan_experiments([dataset_id])
        add_configuration(pre / f"{PLANS_ID}.json", spec)
        preprocess([dataset_id], PLANS_ID, [config], [num_processes])
    return config


def preprocess_with_parent_plans(dataset_id: int, init, num_processes: int = 2) -> str:
    """Fine-tuning: fingerprint the new data, take the parent's plans as they are, preprocess. Returns the configuration."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    from .finetune import transfer_plans

    ds = _ds_name(dataset_id)
    pre = env.nnunet_path("nnUNet_preprocessed") / ds
    config = init.model.configuration
    if not (pre / f"{PLANS_ID}_{config}").exists() or not (pre / f"{PLANS_ID}.json").exists():
        with _planner_threads():
            extract_fingerprints([dataset_id], num_processes=num_processes, check_dataset_integrity=True)
        transfer_plans(init, pre, PLANS_ID, ds)
        shutil.copy(env.nnunet_path("nnUNet_raw") / ds / "dataset.json", pre / "dataset.json")  # planning would copy it
        preprocess([dataset_id], PLANS_ID, [config], [num_processes])
    return config


def train_fold(dataset_id: int, config: str, fold: int, trainer_name: str, device: str = "auto",
               validate: bool = True, max_epochs: int | None = None, pretrained: str | None = None) -> Path:
    """Train one fold in this process (resuming from its latest checkpoint), then validate it.

    Returns the fold's output folder. ``max_epochs`` overrides the run length; ``pretrained``
    (a weights file, see ``finetune.weights_file``) starts a new fold from those weights.
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
    if pretrained and not resume:  # a resumed fold's checkpoint already holds what it learnt from them
        from .finetune import load_weights

        load_weights(trainer, pretrained)
        print(f"fold {fold}: starting from {pretrained}")
    if not (out / "checkpoint_final.pth").exists():
        trainer.run_training()
    if validate:
        trainer.perform_actual_validation(False)
    return out


def train_folds(dataset_id: int, config: str, folds: list[int], trainer_name: str, gpus: list[str],
                pretrained: dict[int, str] | None = None, epochs: int | None = None) -> None:
    """All folds: one process per fold; in parallel with one GPU each when several GPUs are given."""
    def cmd(f: int) -> list[str]:
        c = [sys.executable, "-m", "nnunet_plans.train", "--fold-only", str(f), "--dataset-id", str(dataset_id),
             "--configuration", config, "--trainer", trainer_name]
        if pretrained and f in pretrained:
            c += ["--pretrained", str(pretrained[f])]
        if epochs is not None:
            c += ["--epochs", str(epochs)]
        return c

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


def model_folder(dataset_id: int, config: str, trainer_name: str) -> Path:
    """The trained ``<trainer>__<plans>__<configuration>`` folder under $nnUNet_results."""
    return env.nnunet_path("nnUNet_results") / _ds_name(dataset_id) / f"{trainer_name}__{PLANS_ID}__{config}"


def export_zip(dataset_id: int, config: str, trainer_name: str, folds: list[int], out: str | Path) -> Path:
    """nnU-Net's export (the zip ``cacpipe models install`` and ``nnUNetv2_install_pretrained_model_from_zip``
    take), plus the model card files, which nnU-Net's export does not know about; scrubbed of local
    paths and case ids (``zip_privacy``)."""
    from nnunetv2.model_sharing.model_export import export_pretrained_model

    from cacpipe.segment.card import CARD_JSON, CARD_MD

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    export_pretrained_model(dataset_id, str(out), (config,), trainer_name, PLANS_ID, tuple(folds), strict=True)
    folder = model_folder(dataset_id, config, trainer_name)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as zf:
        for name in (CARD_JSON, CARD_MD):
            if (folder / name).exists():
                zf.write(folder / name, (folder / name).relative_to(env.nnunet_path("nnUNet_results")).as_posix())
    # The zip travels: no local paths, no case ids (nnunet_plans.zip_privacy).
    from .zip_privacy import identifying_strings, scrub_model_zip

    scrub_model_zip(out)
    left = identifying_strings(out)
    if left:
        out.unlink()
        raise RuntimeError(f"the exported model would carry identifying strings ({'; '.join(left[:3])}); "
                           "not written")
    return out


def build_raw_dataset(data, dataset_id: int, name: str, n_folds: int,
                      spacing_zyx, demo: bool = False, cases=None, settings=None, mapping=None,
                      options=None) -> Path:
    """The nnU-Net raw dataset under $nnUNet_raw, every case cropped by stage 1 at the plan's
    ``spacing_zyx`` exactly as inference crops it (``settings``: the scan settings, default ones).

    ``cases``: the training cases, already checked (``_cases`` chooses them: DATA folders or
    phantoms); without them, ``data`` (DATA folders: ANNOTATIONS with cases.csv, or case folders). Writes
    ``build_report.csv/.json`` into the dataset folder (the MASS conversion report).
    """
    from label_tools.annotations import read_training_cases
    from label_tools.nnunet_dataset import build_dataset, stage1_heart_crop

    if cases is None:
        cases = read_training_cases([data] if isinstance(data, (str, Path)) else data)
    raw = env.nnunet_path("nnUNet_raw")
    s = build_dataset(list(cases), raw, dataset_id, name, mapping, options, crop=stage1_heart_crop(spacing_zyx, settings),
                      n_folds=n_folds, extra_json=data_mod.DEMO_JSON if demo else None)
    print(f"dataset: {s['written']} cases written, {s['failed']} failed (report: {s['report']})")
    if s["failed"]:
        print("  cases that passed the checks but failed while building are left out; see the report")
    return Path(s["dataset_dir"])


# --- the run ------------------------------------------------------------------------------------
class _Laps:
    """Prints the wall and CPU seconds of each step of a run."""

    def __init__(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def __call__(self, step: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        print(f"[{step}: {t - self._t:.0f} s ({c - self._c:.0f} s CPU in this process)]", flush=True)
        self._t, self._c = t, c


class Plan:
    """What a run trains: a plan spec (scratch) or the parent's plans (fine-tuning)."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.init = None
        if args.init:
            from .finetune import parent_configuration, resolve_init

            self.init = resolve_init(args.init, work)
            m = self.init.model
            self.cfg = parent_configuration(self.init)
            self.spec = {"configuration": m.configuration, "spacing_zyx": list(m.spacing_zyx),
                         "num_epochs": self.cfg.get("cacpipe_num_epochs"),
                         "iterations_per_epoch": self.cfg.get("cacpipe_iterations_per_epoch", 250),
                         "val_iterations_per_epoch": self.cfg.get("cacpipe_val_iterations_per_epoch", 50),
                         "folds": len(m.folds), "demo": m.is_demo}
            self.spec = {k: v for k, v in self.spec.items() if v is not None}
            self.trainer = args.trainer or m.trainer
            self.name = f"parent {m.full_name}"
        else:
            self.spec = load_spec(args.plan)
            self.cfg = configuration_from_spec(self.spec)
            self.trainer = args.trainer or self.spec["trainer"]
            self.name = str(args.plan)
        self.spacing_zyx = [float(s) for s in self.spec["spacing_zyx"]]
        self.n_splits = int(self.spec.get("folds", 5)) if args.n_splits is None else int(args.n_splits)
        self.folds = list(range(self.n_splits)) if args.folds is None else [int(f) for f in args.folds]
        if not self.folds or max(self.folds) >= self.n_splits or min(self.folds) < 0:
            raise ConfigError(f"folds {self.folds} do not exist with {self.n_splits} splits (0..{self.n_splits - 1})")
        self.demo = bool(self.spec.get("demo"))

    def describe(self, fold_patients: list[int] | None = None) -> dict:
        return {"name": self.name, "configuration": self.spec["configuration"], "spacing_zyx": self.spacing_zyx,
                "patch_size": self.cfg["patch_size"], "batch_size": self.cfg["batch_size"], "trainer": self.trainer,
                "folds": len(self.folds), "init": self.init.model.full_name if self.init else None,
                "fold_patients": fold_patients}


def _conversion(args: argparse.Namespace):
    from label_tools.convert import ConvertOptions
    from label_tools.mapping import load_mapping
    from label_tools.raster import GridOptions

    mapping = load_mapping(args.mapping) if args.mapping else None
    options = ConvertOptions(grid=GridOptions(slice_order=args.slice_order, pixel_origin=args.pixel_origin))
    return mapping, options


def _settings(args: argparse.Namespace):
    from cacpipe.config import Settings
    from cacpipe.jsonfile import read_json

    s = Settings()
    return s.merged(read_json(args.settings, "settings file", ConfigError)) if args.settings else s


def _sources(args: argparse.Namespace) -> dict:
    """What the work folder is built from (a later run with other data must use another WORK)."""
    return {"data": [str(Path(d).resolve()) for d in (args.data or [])], "phantoms": args.phantoms,
            "phantoms_v2": args.phantoms_v2, "v2_preset": args.v2_preset,
            "mapping": str(Path(args.mapping).resolve()) if args.mapping else None,
            "slice_order": args.slice_order, "pixel_origin": args.pixel_origin}


def _cases(args: argparse.Namespace):
    from label_tools.annotations import read_training_cases

    if args.phantoms:  # v1 phantoms, then v2 ones (training seeds of cacpipe.phantom.seeds)
        return data_mod.phantom_cases(args.phantoms, v2_cases=args.phantoms_v2, v2_preset=args.v2_preset)
    return read_training_cases(args.data)


def _fold_patients(checks, n_splits: int) -> list[int]:
    from label_tools.nnunet_dataset import patient_folds

    ok = [c for c in checks if c.ok]
    patient_of = {c.case: c.patient_id for c in ok}
    return [len({patient_of[c] for c in s["val"]}) for s in patient_folds(sorted(patient_of), patient_of, n_splits)]


def dry_run(args: argparse.Namespace, plan: Plan, checks, work: Path) -> dict:
    """Print the dry-run report (checks, data summary, disk, time measured here); returns its numbers."""
    from .dryrun import (
        build_network,
        disk_estimate,
        format_report,
        measure_step,
        run_length,
        time_estimate,
        write_preflight,
    )

    try:
        fold_patients, fold_problem = _fold_patients(checks, plan.n_splits), None
    except InputDataError as exc:
        fold_patients, fold_problem = None, str(exc)
    step = None
    if not args.no_timing:
        print(f"timing {args.time_steps} training step(s) of the plan's network on this machine ...", flush=True)
        step = measure_step(plan.cfg, args.device, args.time_steps)
    epochs, iters, val_iters = run_length(plan.spec, plan.trainer, args.epochs)
    gpus = len(args.gpus) if args.gpus else 1
    timing = time_estimate(step, epochs, iters, val_iters, len(plan.folds), gpus) if step else None
    params = step["parameters"] if step else sum(p.numel() for p in build_network(plan.cfg).parameters())
    disk = disk_estimate(checks, plan.spacing_zyx, params, len(plan.folds))
    print(format_report(checks, plan.describe(fold_patients), disk, timing, step, int(params)))
    extra = {"plan": plan.describe(fold_patients), "parameters": int(params), "step": step, "time": timing, "disk": disk,
             "sources": _sources(args)}
    path = write_preflight(checks, work, extra)
    print(f"report: {path} and {path.with_suffix('.csv')}")
    if fold_problem:
        print(f"FOLDS: {fold_problem}")
    extra["fold_problem"] = fold_problem
    return extra


def _check_cases(args: argparse.Namespace, work: Path, raw_ds: Path):
    """The case checks: read back when the dataset is already built from the same sources, else run."""
    from .dryrun import format_report, preflight, read_preflight, write_preflight

    pf = work / "preflight.json"
    if (raw_ds / "dataset.json").exists() and pf.exists():
        checks, saved = read_preflight(pf)
        if saved.get("sources") != _sources(args):
            raise ConfigError(f"{work} was built from {saved.get('sources')}, not from {_sources(args)}: use another "
                              "WORK folder (or delete this one) for other data")
        print(f"cases: checked before, dataset built ({pf})")
        return checks
    print("checking every case ...", flush=True)
    mapping, options = _conversion(args)
    checks = preflight(_cases(args), mapping, options)
    write_preflight(checks, work, {"sources": _sources(args)})
    print(format_report(checks))
    return checks


def run(args: argparse.Namespace) -> Path | None:
    """The whole run (see module docstring); returns the model zip, or None after a dry run."""
    from label_tools.nnunet_dataset import dataset_dir

    work = Path(args.work).resolve()
    set_nnunet_env(work)
    plan = Plan(args, work)
    raw_ds = dataset_dir(env.nnunet_path("nnUNet_raw"), args.dataset_id, args.name)
    if args.dry_run:
        from .dryrun import preflight

        print("checking every case ...", flush=True)
        mapping, options = _conversion(args)
        checks = preflight(_cases(args), mapping, options)
        report = dry_run(args, plan, checks, work)
        failed = [c.case for c in checks if not c.ok]
        if failed:
            raise InputDataError(f"{len(failed)} case(s) failed the checks ({', '.join(failed)}); training would "
                                 "refuse them: fix them, or leave them out with SKIP_FAILED=1 (--skip-failed)")
        if report["fold_problem"]:
            raise InputDataError(f"{report['fold_problem']}: add patients or use fewer splits (SPLITS=N)")
        return None
    lap = _Laps()
    checks = _check_cases(args, work, raw_ds)
    lap("checks")
    failed = [c.case for c in checks if not c.ok]
    if failed and not args.skip_failed:
        raise InputDataError(f"{len(failed)} case(s) failed the checks ({', '.join(failed)}; see "
                             f"{work / 'preflight.csv'}): fix them, or leave them out with SKIP_FAILED=1 "
                             "(--skip-failed). Nothing was trained.")
    ok_ids = {c.case for c in checks if c.ok}
    cases = [c for c in _cases(args) if c.case in ok_ids]
    if not cases:
        raise InputDataError("no case passed the checks; nothing to train on")
    if failed:
        print(f"leaving out {len(failed)} failed case(s): {', '.join(failed)}")
    try:
        _fold_patients(checks, plan.n_splits)
    except InputDataError as exc:
        raise InputDataError(f"{exc}: add patients or use fewer splits (SPLITS=N)") from None
    settings = _settings(args)
    mapping, options = _conversion(args)
    if not (raw_ds / "dataset.json").exists():
        build_raw_dataset(None, args.dataset_id, args.name, plan.n_splits, plan.spacing_zyx, plan.demo,
                          cases=cases, settings=settings, mapping=mapping, options=options)
        lap("dataset (conversion, stage-1 crop)")
    if plan.init:
        config = preprocess_with_parent_plans(args.dataset_id, plan.init, args.num_processes)
    else:
        config = plan_and_preprocess(args.dataset_id, plan.spec, args.num_processes)
    lap("planning and preprocessing")
    pre = env.nnunet_path("nnUNet_preprocessed") / raw_ds.name
    shutil.copy(raw_ds / "splits_final.json", pre / "splits_final.json")
    pretrained = None
    if plan.init:
        from .finetune import weights_file

        fmap = plan.init.fold_map(plan.folds)
        pretrained = {f: str(weights_file(plan.init, p, work / "init")) for f, p in fmap.items()}
    if args.in_process:  # tests: no child processes
        for f in plan.folds:
            train_fold(args.dataset_id, config, f, plan.trainer, args.device, max_epochs=args.epochs,
                       pretrained=(pretrained or {}).get(f))
    else:
        train_folds(args.dataset_id, config, plan.folds, plan.trainer, args.gpus, pretrained, args.epochs)
    lap("training")
    folder = model_folder(args.dataset_id, config, plan.trainer)
    splits = json.loads((raw_ds / "splits_final.json").read_text())
    cv = None
    if not args.no_crossval:
        from .crossval import cross_validate

        scanners = {c.case: c.scanner for c in checks if c.scanner}
        cv = cross_validate(cases, splits, plan.folds, folder, work / "crossval", settings, mapping, options,
                            scanners=scanners)
        print((work / "crossval" / "report.txt").read_text())
        lap("cross-validation")
    from .card import build_card

    card = build_card(folder, folds=plan.folds, checks=checks, splits=splits,
                      patient_of={c.case: c.patient_id for c in checks}, spec=None if plan.init else plan.spec,
                      crossval=cv, build_report=raw_ds / "build_report.json",
                      lineage=plan.init.lineage() if plan.init else None,
                      init={"fold_map": {str(k): v for k, v in plan.init.fold_map(plan.folds).items()},
                            "source": plan.init.lineage()[0]["source"]} if plan.init else None,
                      demo=plan.demo, intended_use=args.intended_use)
    out = export_zip(args.dataset_id, config, plan.trainer, plan.folds, args.out)
    lap("model card and export")
    print(f"model card {card['id']}: {folder / 'MODEL_CARD.md'}")
    print(f"model exported: {out}\ninstall it with: cacpipe models install {out}")
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", nargs="+", help="one or more DATA folders: ANNOTATIONS (cases.csv, images/, "
                     "contours/*.con; data_README.md) or case folders (CASE/ct.nii.gz, labels.nii.gz[, patient.txt])")
    src.add_argument("--phantoms", type=int, help="train on N synthetic phantoms instead (demo model)")
    p.add_argument("--phantoms-v2", type=int, default=0, help="with --phantoms: also N phantom-v2 patients "
                   "(training seeds; non-contrast, normal situs)")
    p.add_argument("--v2-preset", default="v2-small", help="with --phantoms-v2: the v2 preset (v2-small: 256 x 256; "
                   "v2: clinical 512 x 512, 0.625-3 mm slices, the generator's motion and devices)")
    p.add_argument("--plan", default="paper", help="paper (default), demo, or a plan-spec JSON file")
    p.add_argument("--init", default=None, help="fine-tune: start from this model (zip, model folder or installed "
                   "name); its plans replace --plan")
    p.add_argument("--dry-run", action="store_true", help="check every case, print the data summary, disk and time "
                   "estimates, train nothing")
    p.add_argument("--skip-failed", action="store_true", help="leave out cases that fail the checks (default: refuse)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="folds to train (default: all splits)")
    p.add_argument("--n-splits", type=int, default=None, help="number of CV splits (default: the plan's folds)")
    p.add_argument("--gpus", nargs="*", default=[], help="GPU ids; several: one fold per GPU in parallel")
    p.add_argument("--work", default="nnunet_work", help="work folder (nnU-Net raw/preprocessed/results, checks, "
                   "cross-validation)")
    p.add_argument("--dataset-id", type=int, default=501)
    p.add_argument("--name", default="cacpipe_coronary")
    p.add_argument("--trainer", default=None, help="trainer class (default: the plan's, or the parent's)")
    p.add_argument("--epochs", type=int, default=None, help="override the trainer's number of epochs")
    p.add_argument("--mapping", default=None, help="contour-type mapping JSON (cacpipe-labels default-mapping)")
    p.add_argument("--slice-order", default="forward", choices=("forward", "reversed"))
    p.add_argument("--pixel-origin", default="centre", choices=("centre", "corner"))
    p.add_argument("--settings", default=None, help="cacpipe settings JSON used by the scans (heart crop of "
                   "training cases, cross-validation)")
    p.add_argument("--no-crossval", action="store_true", help="skip the cross-validation through the scan pipeline "
                   "(the card then says: not cross-validated)")
    p.add_argument("--intended-use", default=None, help="the model card's intended-use text")
    p.add_argument("--device", default="auto", help="dry-run timing and in-process training device")
    p.add_argument("--time-steps", type=int, default=2, help="dry run: training steps timed after one warm-up")
    p.add_argument("--no-timing", action="store_true", help="dry run: skip the step timing")
    p.add_argument("--num-processes", type=int, default=2, help="processes for fingerprint/preprocessing")
    p.add_argument("--out", default="cacpipe_model.zip", help="exported model zip")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fold-only", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--configuration", default=None, help=argparse.SUPPRESS)
    p.add_argument("--pretrained", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.fold_only is not None:  # child process of train_folds
        train_fold(args.dataset_id, args.configuration, args.fold_only, args.trainer, max_epochs=args.epochs,
                   pretrained=args.pretrained)
        return
    if not args.data and not args.phantoms:
        parser().error("give --data DIR [DIR ...] or --phantoms N")
    try:
        run(args)
    except CacpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
