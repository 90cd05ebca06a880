"""Cross-validation the way the source paper reports it, through cacpipe's own scan pipeline.

After training, every case of validation fold k is analysed by :data:`ANALYSE` (the function
``cacpipe scan`` calls for every study: stage-1 heart crop at the model's spacing, fold k's
network, uncrop to the original grid, post-processing, quantification, flags) with a model made of
fold k alone, on its original CT (not the training crop). The reference is the case's annotation
on the same original grid, quantified by the same ``cacpipe.quant.quantify``. The evaluation
module (``cacpipe.evaluation``, docs/evaluation.md) then compares the two: per-artery detection
(sensitivity, specificity, PPV, NPV, Cohen's kappa), Agatston and volume agreement (ICC,
Bland-Altman), risk categories, lesion level; nnU-Net's own per-region validation Dice (crop grid)
is added from each fold's ``validation/summary.json``.

Layout under ``out_dir`` (``WORK/crossval``)::

    results/<case>/{result.json, labels.nii.gz, ...}   as a scan writes a study (study_uid = case id)
    results/{manifest.json, cohort.csv}                the scan's manifest and cohort table
    reference/<case>/{labels.nii.gz, ct.nii.gz}        annotation and CT (int16 HU) on the original grid
    reference.csv                                      the reference numbers (same columns as cohort.csv)
    evaluation/                                        `cacpipe evaluate` outputs (JSON, CSVs, report.html)
    report.txt, crossval.json                          the printed report; the summary in the model card

A case whose result is newer than its fold's checkpoint is not analysed again (resumable).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cacpipe.config import Settings
from cacpipe.errors import CacpipeError
from cacpipe.labels import ARTERIES, REGIONS
from cacpipe.record import StudyResult
from cacpipe.segment.card import CHECKPOINT

METHOD = ("Each validation fold's cases analysed on their original CT by cacpipe's scan pipeline (stage-1 heart "
          "crop, the fold's network, uncrop, post-processing, quantification, flags) and compared with the "
          "annotations quantified on the same grid; presence = calcium volume > 0.")


def analyse_series(series, out_dir: Path, settings: Settings) -> StudyResult:
    """The scan's per-study analysis (``cacpipe.pipeline.analyse_series``): cross-validation calls
    nothing else, so any post-processing the pipeline does is in the cross-validation numbers."""
    from cacpipe.pipeline import analyse_series as scan_analyse

    return scan_analyse(series, out_dir, settings)


# The one function cross-validation analyses a case with; tests may point it at known predictions.
ANALYSE: Callable = analyse_series


def fold_settings(base: Settings, model_folder: str | Path, fold: int) -> Settings:
    """``base`` (the scan settings) with the model set to one fold of ``model_folder`` and review outputs off."""
    return base.replace(segment=base.segment.replace(model=str(model_folder), folds=(int(fold),)),
                        review=base.review.replace(enabled=False))


def _is_current(result_path: Path, checkpoint: Path) -> bool:
    return result_path.exists() and checkpoint.exists() and result_path.stat().st_mtime > checkpoint.stat().st_mtime


def reference_row(case, loaded) -> dict:
    """The annotation's numbers (cohort.csv columns ``cacpipe evaluate`` reads as REF)."""
    from cacpipe.quant.quantify import quantify

    q = quantify(loaded.ct, loaded.labels)
    row: dict = {"patient_id": case.patient_id, "study_uid": case.case}
    for a in ARTERIES:
        r = q.arteries[a]
        vol = r.calcium_volume_mm3 or 0.0
        row.update({f"{a}_present": int(vol > 0), f"{a}_agatston": r.agatston or 0.0,
                    f"{a}_calcium_volume_mm3": vol, f"{a}_lesions": r.lesions or 0})
    row["total_agatston"] = sum(row[f"{a}_agatston"] for a in ARTERIES)
    row["total_calcium_volume_mm3"] = sum(row[f"{a}_calcium_volume_mm3"] for a in ARTERIES)
    ident = loaded.series.identity
    row["vendor"] = ident.manufacturer or "unknown"
    row["slice_thickness_mm"] = ident.slice_thickness_mm if ident.slice_thickness_mm else round(loaded.ct.spacing_zyx[0], 3)
    return row


def run_case(case, fold: int, model_folder: Path, settings: Settings, out_dir: Path, mapping=None,
             options=None) -> tuple[dict, dict]:
    """Analyse one validation case with its fold's network; returns (manifest entry, reference row)."""
    from dataclasses import replace

    res_dir = out_dir / "results" / case.case
    ref_dir = out_dir / "reference" / case.case
    entry = {"patient_id": case.patient_id, "study_uid": case.case, "fold": fold, "result": f"{case.case}/result.json"}
    loaded = case.load(mapping, options)
    loaded.series.identity = replace(loaded.series.identity, patient_id=case.patient_id, study_uid=case.case)
    if not (ref_dir / "ct.nii.gz").exists():  # the reference of a case never changes within one WORK
        ref_dir.mkdir(parents=True, exist_ok=True)
        loaded.labels.write(ref_dir / "labels.nii.gz")
        ct = loaded.ct
        ct.with_array(np.clip(np.rint(ct.array), -32768, 32767).astype(np.int16)).write(ref_dir / "ct.nii.gz")
    ref = reference_row(case, loaded)
    ckpt = Path(model_folder) / f"fold_{fold}" / CHECKPOINT
    if _is_current(res_dir / "result.json", ckpt):
        res = StudyResult.load(res_dir / "result.json")
        return {**entry, "status": "done" if res.status != "failed" else "failed", "reason": res.reason}, ref
    t = time.perf_counter()
    try:
        res = ANALYSE(loaded.series, res_dir, fold_settings(settings, model_folder, fold))
    except CacpipeError as exc:
        return {**entry, "status": "failed", "reason": str(exc)}, ref
    res.outputs["result"] = "result.json"
    res.pipeline["crossval"] = {"fold": fold, "seconds": round(time.perf_counter() - t, 2)}
    res.save(res_dir / "result.json")
    return {**entry, "status": "done" if res.status != "failed" else "failed", "reason": res.reason,
            "series_uid": res.study.series_uid}, ref


def nnunet_dice(model_folder: str | Path, folds: Sequence[int]) -> dict:
    """nnU-Net's validation Dice per region (mean over the folds' cases, crop grid), from each fold's summary.json."""
    names = {str(tuple(ids)) if len(ids) > 1 else str(ids[0]): name for name, ids in REGIONS.items()}
    names.update({str(tuple(ids)): name for name, ids in REGIONS.items()})
    per_case: dict[str, list[float]] = {}
    for f in folds:
        p = Path(model_folder) / f"fold_{f}" / "validation" / "summary.json"
        if not p.exists():
            continue
        for case in json.loads(p.read_text()).get("metric_per_case", []):
            for key, m in (case.get("metrics") or {}).items():
                dice = m.get("Dice")
                if dice is not None and np.isfinite(dice):
                    per_case.setdefault(names.get(key, key), []).append(float(dice))
    out = {k: round(float(np.mean(v)), 4) for k, v in per_case.items()}
    if out:
        out["mean"] = round(float(np.mean(list(out.values()))), 4)
    return out


def _pick(row: dict | None, keys: Sequence[str]) -> dict:
    return {k: row.get(k) for k in keys} if row else {}


def summary(res: dict, dice: dict, manifest: dict, folds: Sequence[int]) -> dict:
    """The model card's cross-validation entry from the evaluation result."""
    pres = {r["artery"]: _pick(r, ("n", "tp", "fp", "fn", "tn", "sensitivity", "specificity", "ppv", "npv",
                                   "kappa", "kappa_ci_low", "kappa_ci_high", "not_assessed"))
            for r in res.get("presence", []) if r.get("subgroup") == "all"}
    aga = {}
    for r in res.get("continuous", []):
        if r.get("measure") == "agatston":
            aga[r["artery"]] = {"n": r.get("n"), "icc": r.get("icc"), "icc_ci_low": r.get("icc_ci_low"),
                                "icc_ci_high": r.get("icc_ci_high"), "bias": r.get("ba_bias"),
                                "loa_low": r.get("ba_loa_low"), "loa_high": r.get("ba_loa_high"),
                                "median_abs_rel_error": r.get("median_abs_rel_error")}
    cat = next((r for r in res.get("categories", []) if r.get("scale") == "agatston_category"), None)
    les = {r["artery"]: _pick(r, ("ref_lesions", "pred_lesions", "sensitivity", "ppv", "fp_per_scan", "dice"))
           for r in res.get("lesions", [])}
    studies = manifest["studies"].values()
    return {
        "method": METHOD,
        "folds": list(folds),
        "cases": len(manifest["studies"]),
        "patients": len({e["patient_id"] for e in studies}),
        # a count: the card travels in the model zip, and study keys name patients
        "failed": sum(1 for e in manifest["studies"].values() if e["status"] != "done"),
        "presence": pres,
        "agatston": aga,
        "category": _pick(cat, ("n", "exact_agreement", "kappa_linear", "kappa_linear_ci_low",
                                "kappa_linear_ci_high")) if cat else None,
        "lesions": les,
        "dice_nnunet": dice,
        "not_assessed": int(max((p.get("not_assessed") or 0) for p in pres.values())) if pres else 0,
        "notes": list(res.get("notes", [])),
    }


def cross_validate(cases, splits: list[dict], folds: Sequence[int], model_folder: str | Path, out_dir: str | Path,
                   settings: Settings | None = None, mapping=None, options=None, scanners: dict | None = None,
                   html: bool = True) -> dict:
    """Run every trained fold's validation cases through the scan pipeline and evaluate them.

    ``cases``: the training cases (objects with ``case``, ``patient_id``, ``load``); ``splits``:
    nnU-Net's splits_final.json; ``model_folder``: the trained ``<trainer>__<plans>__<cfg>`` folder.
    Returns the summary written to ``crossval.json`` (and the model card).
    """
    from cacpipe.csvout import write_csv
    from cacpipe.evaluation.report_text import format_text
    from cacpipe.evaluation.run import evaluate, write_outputs
    from cacpipe.evaluation.sources import load_prediction, load_reference
    from cacpipe.scan.cohort import write_cohort

    out = Path(out_dir)
    settings = settings or Settings()
    by_id = {c.case: c for c in cases}
    manifest: dict = {"studies": {}}
    refs = []
    for f in folds:
        val = [by_id[c] for c in splits[f]["val"] if c in by_id]
        for i, case in enumerate(val, 1):
            print(f"cross-validation fold {f}: [{i}/{len(val)}] {case.case}", flush=True)
            entry, ref = run_case(case, f, Path(model_folder), settings, out, mapping, options)
            if scanners and scanners.get(case.case):
                ref["vendor"] = scanners[case.case]
            manifest["studies"][case.case] = entry
            refs.append(ref)
    if not refs:
        raise CacpipeError("cross-validation: no validation case of the trained folds was found")
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_cohort(results, manifest)
    cols = list(refs[0])
    write_csv(out / "reference.csv", refs, cols)
    res = evaluate(load_prediction(results), load_reference(out / "reference.csv"), allow_partial=False,
                   ref_labels=out / "reference")
    write_outputs(res, out / "evaluation", html=html)
    dice = nnunet_dice(model_folder, folds)
    text = format_text(res)
    if dice:
        text += "\n\nnnU-Net validation Dice per region (crop grid, mean over validation cases):\n  " + \
            ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
    (out / "report.txt").write_text(text + "\n")
    s = summary(res, dice, manifest, folds)
    s["report"] = "crossval/report.txt"
    (out / "crossval.json").write_text(json.dumps(s, indent=2, default=str))
    return s
