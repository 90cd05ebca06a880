"""``cacpipe evaluate`` as a function: read, match, compute every table, write the outputs.

The result is a dict of tables (lists of flat rows) plus a few structured parts:
``matching``, ``notes``, ``presence``, ``agreement`` (kappa of grades and category),
``ordinal_regression``, ``continuous`` (ICC, Bland-Altman, Spearman, errors), ``categories``
(reclassification), ``lesions`` / ``lesion_attribution`` / ``lesion_studies`` / ``lesion_pairs``
/ ``lesion_skipped`` (lesion level), ``review`` (rater agreement).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..csvout import write_csv
from ..errors import CacpipeError, InputDataError
from ..files import make_private_dir, protect
from ..jsonfile import jsonable
from ..tables import join, texts
from . import agreement, categories, grades, lesions, presence
from .ratings import ratings_agreement
from .sources import find_reference, read_prediction, scan_results

TABLES: tuple[str, ...] = ("presence", "agreement", "ordinal_regression", "continuous", "points", "categories",
                           "lesions", "lesion_studies", "lesion_pairs", "lesion_skipped", "review")


def _study_ids(m: pd.DataFrame, i: int) -> list[str]:
    ids = []
    for col in (m.attrs["key"], "pred:study_uid", "ref:study_uid", "pred:patient_id", "ref:patient_id"):
        if col in m.columns:
            v = texts(m.iloc[[i]], col)[0]
            if v and v not in ids:
                ids.append(v)
    return ids


def lesion_evaluation(m: pd.DataFrame, results_dir: str | Path | None, ref_dir: str | Path | None) -> dict:
    """Lesion-level tables for the matched studies that have both label maps (see evaluation.lesions)."""
    if results_dir is None or ref_dir is None:
        return {"lesion_notes": ["lesion level: skipped (needs the scan's results folder and reference label maps)"]}
    scan = scan_results(results_dir)
    pred_maps = scan.labels
    if not pred_maps:
        return {"lesion_notes": [f"lesion level: skipped ({Path(results_dir) / 'manifest.json'} lists no done "
                                 "study with a label map)"]}
    per_scan, studies, pairs, skipped, notes = [], [], [], [], set()
    key = m.attrs["key"]
    for i in range(len(m)):
        ids = _study_ids(m, i)
        study = ids[0]
        lab = next((pred_maps[k] for k in ids if k in pred_maps), None)
        if lab is None or not lab.exists():
            skipped.append({key: study, "reason": "no predicted label map (study not done in the scan?)"})
            continue
        try:
            ref_src = find_reference(ref_dir, ids)
            if ref_src is None:
                skipped.append({key: study, "reason": f"no reference label map for {' / '.join(ids)} in {ref_dir}"})
                continue
            pred_set, ref_set, why = lesions.prepare_scan(read_prediction(lab), ref_src)
        except CacpipeError as exc:
            skipped.append({key: study, "reason": str(exc)})
            continue
        notes.update(why)
        res = lesions.match_scan(pred_set, ref_set)
        per_scan.append(res)
        dice = lesions.scan_dice(res)
        row = {key: study, "reference": ref_src.origin, "prediction": str(lab)}
        for scope in lesions.SCOPES:
            c = res["counts"][scope]
            row.update({f"{scope}_ref": c["ref_lesions"], f"{scope}_pred": c["pred_lesions"], f"{scope}_tp": c["tp_ref"],
                        f"{scope}_fn": c["fn"], f"{scope}_fp": c["fp"], f"{scope}_dice": dice[scope]})
        studies.append(row)
        pairs += [{key: study, **p} for p in res["pairs"]]
    out: dict = {"lesion_studies": studies, "lesion_pairs": pairs, "lesion_skipped": skipped,
                 "lesion_notes": sorted(notes)}
    if per_scan:
        s = lesions.summarise(per_scan)
        out["lesions"] = s["rows"]
        out["lesion_attribution"] = s["attribution"]
    else:
        out["lesion_notes"].append("lesion level: no study had both label maps")
    return out


def evaluate(pred: pd.DataFrame | None = None, ref: pd.DataFrame | None = None,
             ratings: Sequence[pd.DataFrame] | None = None, allow_partial: bool = False,
             ref_labels: str | Path | None = None, lesion_level: bool = True) -> dict:
    """Every evaluation table of PRED against REF and of the raters' ratings (see module docstring)."""
    out: dict = {"notes": []}
    for df in (pred, ref, *(ratings or ())):
        if df is not None:
            out["notes"] += df.attrs.get("notes", [])
    if pred is not None and ref is not None:
        presence.check_columns(pred, ref)
        j = join(pred, ref, allow_partial)
        m = j.df
        out["matching"] = j.summary()
        out["presence"] = presence.presence_table(m)
        out["agreement"] = grades.agreement_table(m)
        out["ordinal_regression"] = grades.ordinal_table(m)
        out["continuous"] = agreement.agreement_table(m)
        out["points"] = agreement.points_table(m)
        if not out["continuous"]:
            out["notes"].append("continuous agreement: skipped (REF has no <ARTERY>_agatston / _calcium_volume_mm3 "
                                "or total_agatston column)")
        out["categories"] = categories.category_table(m)
        if pred.attrs.get("results_dir"):
            scan = scan_results(pred.attrs["results_dir"])
            out["provenance"] = scan.provenance
            out["demo_model"] = scan.demo_model
            out["notes"] += [f"prediction result not read: {p}" for p in scan.problems]
        if lesion_level:
            found = lesion_evaluation(m, pred.attrs.get("results_dir"), ref_labels or ref.attrs.get("truth_dir"))
            out["notes"] += found.pop("lesion_notes", [])
            out.update(found)
    elif pred is not None or ref is not None:
        raise InputDataError("give both PRED (cohort CSV) and REF (CSV or truth folder), or only --ratings")
    if ratings:
        out["review"] = ratings_agreement(list(ratings))
    if len(out) == 1:
        raise InputDataError("nothing to evaluate: give PRED and REF and/or --ratings FILE")
    return out


# --- files ---------------------------------------------------------------------------------
def _columns(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols




def write_outputs(res: dict, out_dir: str | Path, html: bool = True) -> list[Path]:
    """evaluation.json, one CSV per table, the long-form reclassification / attribution CSVs, report.html;
    owner-only, as every output with patient data (cacpipe.files: ids and study UIDs are in them)."""
    out = Path(out_dir)
    make_private_dir(out)
    written = [out / "evaluation.json"]
    written[0].write_text(json.dumps(res, indent=2, default=jsonable))
    for name in TABLES:
        rows = res.get(name)
        if not rows:
            continue
        if name == "categories":  # the matrix goes to its own long-form CSV
            rows = [{k: v for k, v in r.items() if k not in ("table", "levels")} for r in rows]
        written.append(write_csv(out / f"evaluation_{name}.csv", rows, _columns(rows)))
    if res.get("categories"):
        long = [{"scale": r["scale"], "reference": lr, "prediction": lp, "studies": r["table"][i][k]}
                for r in res["categories"] for i, lr in enumerate(r["levels"]) for k, lp in enumerate(r["levels"])]
        written.append(write_csv(out / "evaluation_reclassification.csv", long, ["scale", "reference", "prediction",
                                                                                 "studies"]))
    if res.get("lesion_attribution"):
        a = res["lesion_attribution"]
        long = [{"reference_artery": r, "predicted_artery": p, "lesions": a["table"][i][k]}
                for i, r in enumerate(a["ref"]) for k, p in enumerate(a["pred"])]
        written.append(write_csv(out / "evaluation_lesion_attribution.csv", long,
                                 ["reference_artery", "predicted_artery", "lesions"]))
    if html:
        from .report_html import write_html

        written.append(write_html(res, out / "report.html"))
    protect(written)
    return written
