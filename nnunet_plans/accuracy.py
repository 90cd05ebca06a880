"""Accuracy benchmark: held-out phantom patients through ``cacpipe scan`` end to end (DICOM in,
cohort.csv out), compared with their exact truth, per patient and per artery.

    python -m nnunet_plans.accuracy [--patients 12] [--out build/accuracy] [--model demo]
                                    [--no-postprocess] [--jobs 1]
    make accuracy [ACCURACY_ARGS="--patients 24"]

The cohort (:func:`accuracy_cohort`) uses seeds of the ``heldout`` range of the seed registry
(:mod:`cacpipe.phantom.seeds`), disjoint from every training and test seed. By default it is made
of v2 phantoms (``--phantom v2``, preset v2-small, non-contrast, normal situs: varied anatomy, body
size, noise, plaque kinds from tiny to diffuse, stents and valve calcium as distractors); each
patient's plaques are set to a pattern (:data:`PATTERNS`: RCA-only, mixed (the generator's own
draw), none, left-only, one small plaque per artery, RCA + LAD; plaques of 1.5-2.8 mm, see
:func:`_v2_pattern`). ``--phantom v1`` gives the v1 cohort of the same patterns
(noise 20-45 HU, heart shifts up to +-8 mm, plaques of radius 1.5-2.8 mm). Each patient is written as a DICOM study
(``cacpipe.phantom.write_study``), the export is scanned by a ``cacpipe scan`` subprocess (review
outputs off; the demo model allowed through a settings file), and the benchmark reads back
cohort.csv, each result.json and each written labels.nii.gz.

Printed and written to ``OUT/accuracy.json``:
- per-artery calcium detection (truth: Agatston > 0; reported: Agatston > 0; an artery reported
  as not assessed counts as wrong either way): sensitivity, specificity;
- total Agatston relative error |reported - truth| / truth over patients with calcium (median,
  worst), and the same for the true labels scored on the same noisy CT ("oracle": the error no
  segmentation can remove);
- risk category (0 / 1-10 / 11-100 / 101-400 / >400) agreement, from cohort.csv's ``category``
  (a null category, e.g. an incomplete study, counts as disagreement);
- attribution confusion matrix, lesion level, by cacpipe's lesion matching
  (:mod:`cacpipe.evaluation.lesions`, as ``cacpipe evaluate``): each true lesion x the artery of
  the predicted lesion (>= 130 HU on the scanned CT) overlapping it most (``missed`` when none);
  predicted lesions on no true lesion are the ``none`` row; wrong-side lesions (RCA vs LAD/LCX)
  are counted. Lesion-level sensitivity / PPV per artery go to the JSON.
Targets (issue 14): sensitivity and specificity >= 0.98, median total error <= 5 %, category
>= 95 %, zero wrong-side lesions.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from cacpipe.labels import ARTERIES
from cacpipe.phantom import seeds as seed_ranges
from cacpipe.units import CALCIUM_THRESHOLD_HU

PATTERNS = ("rca_only", "mixed", "none", "left_only", "all_small", "rca_lad")


def _pattern_plaques(pattern: str, plaque, rng, mixed) -> list:
    """The plaque set of ``pattern`` (:data:`PATTERNS`), each made by ``plaque(artery, small=False)``;
    ``mixed()`` gives the ``mixed`` pattern's set (v1: random arteries, v2: the generator's own draw)."""
    if pattern == "rca_only":
        return [plaque("RCA", small=True)] + [plaque("RCA") for _ in range(int(rng.integers(0, 3)))]
    if pattern == "mixed":
        return mixed()
    if pattern == "none":
        return []
    if pattern == "left_only":
        return [plaque(str(rng.choice(("LAD", "LCX")))) for _ in range(int(rng.integers(1, 4)))]
    if pattern == "all_small":
        return [plaque(a, small=True) for a in ARTERIES]
    return [plaque("RCA"), plaque("LAD", small=True), plaque("LAD")]


def _v2_pattern(cfg, pattern: str):
    """``cfg`` (a v2 config) with its plaques set to ``pattern`` (ids renumbered).

    The plaque sets follow issue 14's cohort: plaques of 1.5-2.8 mm "radius" (a focal plaque
    2r long along the vessel, r thick over 240 degrees of its wall: 13-90 mm3) at 300-900 HU
    physical density, a small one (r = 1.5 mm, 500 HU) in most patterns, RCA-only patients. Only
    the ``mixed`` pattern keeps the generator's own draw (tiny, diffuse, ostial and bifurcation
    plaques, many near the detection limit). Positions and sizes come from the patient's seed.
    """
    from dataclasses import replace

    from cacpipe.phantom.v2 import PlaqueSpec

    rng = np.random.default_rng([cfg.seed, 14])

    def plaque(artery: str, small: bool = False) -> PlaqueSpec:
        r = 1.5 if small else float(rng.uniform(1.5, 2.8))
        return PlaqueSpec(id=1, artery=artery, branch=artery, kind="focal", t=float(rng.uniform(0.1, 0.7)),
                          length_mm=2 * r, thickness_mm=r, arc_deg=240.0, angle_deg=float(rng.uniform(0, 360)),
                          density_hu=500.0 if small else float(rng.uniform(300, 900)), n_lobes=2,
                          shape_seed=int(rng.integers(2**31)))

    plaques = _pattern_plaques(pattern, plaque, rng, lambda: list(cfg.plaques) or [plaque(a) for a in ARTERIES])
    return replace(cfg, plaques=tuple(replace(p, id=i + 1) for i, p in enumerate(plaques)))


def _v2_acquisition(seed: int, motion: bool) -> dict:
    """Non-contrast, noise 20-45 HU at the reference body size (issue 14's cohort); still hearts unless
    ``motion`` (motion blurs plaques below 130 HU: the truth, drawn still, no longer matches the image,
    which the "oracle" column then shows)."""
    extra = {} if motion else {"motion_scale": 0.0}
    return {"contrast_phase": "none", "noise_hu": round(float(np.random.default_rng([seed, 20]).uniform(20, 45)), 1),
            **extra}


# Devices and grafts the clinical cohort cycles through its patients (with the plaque patterns: a
# device lies beside calcium in some patients and alone in others), besides the generator's own draws.
CONFOUNDERS: tuple[dict | None, ...] = (None, {"device": "pacemaker"}, {"prosthetic_valve": "tavi"}, {"cabg": True},
                                        None, {"device": "icd"}, {"prosthetic_valve": "mechanical_aortic"},
                                        {"prosthetic_valve": "mitral_ring"})


def accuracy_cohort(n: int, seed0: int = seed_ranges.HELDOUT.start, preset: str | None = None, phantom: str = "v2",
                    motion: bool = False, clinical: bool = False, purpose: str = "heldout"):
    """``n`` phantom configs, deterministic in (n, seed0, phantom, motion, clinical); patterns cycle through PATTERNS.

    Every seed must lie in the registry's ``purpose`` range: ``heldout`` (never trained or tested on)
    for every figure; ``training`` only to fit something (``devtools.density_fit``).
    ``clinical``: the v2 clinical preset (512 x 512, 0.625-3 mm slices) with the generator's own
    noise, cardiac motion, devices, grafts and distractors (non-contrast, left-sided hearts); the
    plaques still follow the patterns, and the devices and grafts of :data:`CONFOUNDERS` cycle through
    the patients. Otherwise v2-small with issue 14's noise, still hearts unless ``motion``.
    """
    seeds = seed_ranges.require(range(seed0, seed0 + n), purpose)
    if phantom == "v2":
        from cacpipe.phantom.v2 import random_config

        def acq(seed: int) -> dict:
            return {"contrast_phase": "none"} if clinical else _v2_acquisition(seed, motion)

        def extra(i: int) -> dict:  # the generator seldom draws devices: the clinical cohort cycles them in
            return {"findings": CONFOUNDERS[i % len(CONFOUNDERS)]} if clinical and CONFOUNDERS[i % len(CONFOUNDERS)] \
                else {}

        return [(PATTERNS[i % len(PATTERNS)],
                 _v2_pattern(random_config(seed, preset or ("v2" if clinical else "v2-small"), acquisition=acq(seed),
                                           heart={"situs_inversus": False}, **extra(i)), PATTERNS[i % len(PATTERNS)]))
                for i, seed in enumerate(seeds)]
    from cacpipe.phantom import PhantomConfig, Plaque

    preset = preset or "small"
    cfgs = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        pattern = PATTERNS[i % len(PATTERNS)]

        def plaque(artery: str, small: bool = False, _rng=rng) -> Plaque:
            radius = 1.5 if small else float(_rng.uniform(1.5, 2.8))
            return Plaque(artery, float(_rng.uniform(0.05, 0.85)), radius, float(_rng.uniform(160, 700)))

        plaques = _pattern_plaques(pattern, plaque, rng, lambda _rng=rng, _plaque=plaque: [
            _plaque(str(_rng.choice(ARTERIES))) for _ in range(int(_rng.integers(3, 7)))])
        cfgs.append((pattern, PhantomConfig.preset(
            preset, seed=seed, plaques=tuple(plaques), noise_hu=float(rng.uniform(20, 45)),
            heart_shift_mm=tuple(float(s) for s in rng.uniform(-8, 8, 3)),
            aortic_valve_calcium=bool(rng.random() < 0.8), mitral_annulus_calcium=bool(rng.random() < 0.6))))
    return cfgs


def write_cohort(cfgs, export: Path, truth_dir: Path) -> list[str]:
    """Write each phantom as a DICOM study under ``export`` and its truth under ``truth_dir``."""
    from cacpipe.phantom import PatientInfo, generate, ground_truth, write_study
    from cacpipe.quant.quantify import quantify

    ids = []
    truth_dir.mkdir(parents=True, exist_ok=True)
    for i, (pattern, cfg) in enumerate(cfgs):
        pid = f"ACC{i:03d}"
        ids.append(pid)
        files = [truth_dir / f"{pid}{suffix}" for suffix in (".json", "_labels.nii.gz", "_dense.nii.gz")]
        if all(f.exists() for f in files) and (export / pid).exists():
            continue  # deterministic: a rerun reuses the export (and the scan resumes)
        ph = generate(cfg)
        v2 = hasattr(cfg, "acquisition")
        if not (export / pid).exists():
            if v2:
                from dataclasses import replace

                from cacpipe.phantom.v2.study import patient_of

                patient = replace(patient_of(cfg, pid), accession=f"ACCB{i:04d}")
            else:
                patient = PatientInfo(patient_id=pid, patient_name=f"PHANTOM^ACC{i:03d}", accession=f"ACCB{i:04d}")
            write_study(cfg, export, patient, phantom=ph)
        # what Agatston may count: >= 130 HU on the scanned (noisy) CT, with its HU (0 elsewhere)
        hu = np.asarray(ph.ct.array)
        ph.ct.with_array(np.where(hu >= CALCIUM_THRESHOLD_HU, np.clip(hu, 0, 32767), 0).astype(np.int16)).write(files[2])
        oracle = quantify(ph.ct, ph.labels)  # the true labels on the same noisy CT
        noise = ph.truth["acquisition"]["noise_sd_hu"] if v2 else cfg.noise_hu
        truth = ground_truth(ph) | {"patient_id": pid, "pattern": pattern, "config": cfg.to_json(),
                                    "noise_hu": float(noise), "phantom": "v2" if v2 else "v1",
                                    "oracle": {a: oracle.arteries[a].agatston for a in ARTERIES}}
        ph.labels.write(files[1])
        files[0].write_text(json.dumps(truth, indent=2))
    return ids


def run_scan(export: Path, results: Path, model: str | None, postprocess: bool, jobs: int,
             extra: dict | None = None) -> float:
    """``cacpipe scan`` as a user runs it; returns its wall time (s). ``extra``: more settings per section."""
    settings = {"segment": {"allow_demo_model": True, "postprocess": postprocess}, "review": {"enabled": False}}
    for section, values in (extra or {}).items():
        settings.setdefault(section, {}).update(values)
    results.mkdir(parents=True, exist_ok=True)
    sf = results.parent / f"{results.name}_settings.json"
    sf.write_text(json.dumps(settings))
    cmd = [sys.executable, "-m", "cacpipe", "scan", str(export), "--out", str(results), "--settings", str(sf),
           "--jobs", str(jobs), "--no-progress"] + (["--model", model] if model else [])
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def _num(v: str | None) -> float | None:
    return None if v in (None, "") else float(v)


def _lesion_match(truth_lab, pred_lab, dense, instance_numbers: list | None = None) -> dict:
    """cacpipe's lesion matching (cacpipe.evaluation.lesions) of one study: predicted lesions as the
    scan counted them (>= 130 HU on its noisy CT: ``dense``, which holds the HU there), true lesions
    from the truth map. Each pair gains the lesions' peak HU and largest >= 130 HU slice area on the
    scanned CT, ``countable`` (a true lesion a reader would count: >= 1 mm2 at >= 130 HU in a slice,
    i.e. Agatston > 0 on this scan) and the PACS image number of its centre."""
    from cacpipe.evaluation.lesions import lesions_of, match_scan
    from cacpipe.quant.agatston import MIN_LESION_AREA_MM2, SLICE_STRUCTURE

    raw = np.asarray(dense.array)
    hu = np.where(raw > 0, np.maximum(raw, CALCIUM_THRESHOLD_HU), CALCIUM_THRESHOLD_HU - 1).astype(np.int16)
    pred = lesions_of(pred_lab.array, pred_lab.spacing_zyx, hu)
    ref = lesions_of(truth_lab.array, truth_lab.spacing_zyx)  # the plaques, all >= 160 HU before noise
    m = match_scan(pred, ref)
    sp = truth_lab.spacing_zyx
    px = float(sp[1]) * float(sp[2])

    def stats(ids: np.ndarray, k: int) -> tuple[float | None, float, int | None]:
        les = ids == k
        on = les & (raw >= CALCIUM_THRESHOLD_HU)
        if not on.any():
            return None, 0.0, None
        comp, _ = ndimage.label(on, structure=SLICE_STRUCTURE)
        area = float(np.bincount(comp[on]).max()) * px
        z = int(round(float(np.argwhere(les)[:, 0].mean())))
        img = instance_numbers[z] if instance_numbers and z < len(instance_numbers) else None
        return float(raw[on].max()), area, (img if img is not None else z)

    for pr in m["pairs"]:
        if pr["ref_lesion"] is not None:
            peak, area, img = stats(ref.ids, pr["ref_lesion"])
        else:
            peak, area, img = stats(pred.ids, pr["pred_lesion"])
        pr.update(peak_hu=None if peak is None else round(peak), max_area_mm2=round(area, 2), image=img,
                  countable=area >= MIN_LESION_AREA_MM2 - 1e-9)
    return m


# Expected-flag codes of the phantom truth (cacpipe.phantom.v2.truth.expected_flags) -> the codes
# cacpipe raises for them (any one counts).
FLAG_CODES = {
    "contrast_suspected": ("contrast_suspected",),
    "stent_suspected": ("stent_suspected",),
    "valve_calcium_suspected": ("valve_calcium_suspected",),
    "high_noise": ("high_noise",),
    "not_assessable": ("not_assessable",),
    "motion": ("motion", "motion_suspected", "cardiac_motion"),
    "few_slices": ("few_slices",),
    "situs_inversus": ("dextrocardia_suspected", "situs_inversus"),
    "metal_device": ("metal_device", "device_suspected", "metal_device_suspected"),
    "cabg": ("cabg", "cabg_suspected", "graft_suspected"),
}
# Flags whose truth the phantom does not state, watched for their raise rate (a flag on nearly every
# study is noise): artery_outside_heart was raised on 15 of 16 clinical studies before issue 26.
WATCHED_FLAGS = ("artery_outside_heart", "calcium_uncounted", "calcium_attribution_ambiguous",
                 "artery_implausible_position", "artery_tree_missing", "dextrocardia_suspected")
SIZE_BINS = ((0.0, 5.0, "< 5 mm3"), (5.0, 20.0, "5-20 mm3"), (20.0, float("inf"), ">= 20 mm3"))
PEAK_BINS = ((0.0, 200.0, "peak < 200 HU"), (200.0, 400.0, "peak 200-399 HU"), (400.0, float("inf"), "peak >= 400 HU"))


def _truth_agatston(truth: dict, artery: str) -> tuple[float, float]:
    """(imaged, still) Agatston of one artery: the score a perfect reader sees on this scan (with its
    cardiac motion) and the heart-still reference; equal for v1 phantoms and still hearts."""
    v = truth["arteries"][artery]
    still = float(v["agatston"])
    return float((v.get("imaged") or {}).get("agatston", still)), still


def flag_rates(patients: list[dict]) -> dict:
    """Per expected flag: studies that need it (TP/FN) and that don't (FP/TN), sensitivity and
    false-alarm rate; per watched flag: how many studies raised it."""
    out = {}
    for code, raised_by in FLAG_CODES.items():
        c = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
        for p in patients:
            need = code in p["expected_flags"]
            got = any(r in p["flag_codes"] for r in raised_by)
            c["tp" if need and got else "fn" if need else "fp" if got else "tn"] += 1
        if c["tp"] + c["fn"] + c["fp"] == 0:
            continue
        out[code] = {**c, "sensitivity": c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None,
                     "false_alarm_rate": c["fp"] / (c["fp"] + c["tn"]) if c["fp"] + c["tn"] else None}
    watched = {code: sum(code in p["flag_codes"] for p in patients) for code in WATCHED_FLAGS}
    return {"expected": out, "watched_raised": watched, "studies": len(patients)}


def _lesion_tables(pairs: list[dict], n_scans: int) -> dict:
    """Lesion-level figures over every scan's pairs (``patient_id`` added): sensitivity over the true
    lesions a reader would count, by size and by peak HU; false lesions per scan; the missed and false lists."""
    countable = [p for p in pairs if p["ref_lesion"] is not None and p["countable"]]

    def sens(rows: list[dict]) -> dict:
        found = sum(r["pred_lesion"] is not None for r in rows)
        return {"true": len(rows), "found": found, "sensitivity": found / len(rows) if rows else None}

    by_size = {name: sens([r for r in countable if lo <= r["ref_volume_mm3"] < hi]) for lo, hi, name in SIZE_BINS}
    by_peak = {name: sens([r for r in countable if lo <= (r["peak_hu"] or 0) < hi]) for lo, hi, name in PEAK_BINS}
    false = [p for p in pairs if p["ref_lesion"] is None]
    keep = ("patient_id", "ref_artery", "pred_artery", "ref_volume_mm3", "pred_volume_mm3", "peak_hu",
            "max_area_mm2", "image", "countable")
    return {"countable": sens(countable), "by_size": by_size, "by_peak": by_peak,
            "false_lesions": len(false), "false_lesions_per_scan": len(false) / n_scans if n_scans else None,
            "missed": [{k: r[k] for k in keep} for r in countable if r["pred_lesion"] is None],
            "false": [{k: r[k] for k in keep} for r in false],
            "wrong_artery": [{k: r[k] for k in keep} for r in countable
                             if r["pred_lesion"] is not None and r["pred_artery"] != r["ref_artery"]]}


def evaluate_results(ids: list[str], results: Path, truth_dir: Path) -> dict:
    """Compare a scan's cohort.csv, results and label maps with the truth; returns the report dict.

    The truth is what a perfect reader sees on the scan: the **imaged** score (with the scan's
    cardiac motion; the still-heart figure is kept beside it as ``still``), and the **oracle** (the
    true labels scored on the scanned CT)."""
    from cacpipe.evaluation.lesions import summarise
    from cacpipe.quant.categories import category, category_index
    from cacpipe.volume import Volume

    rows = {r["patient_id"]: r for r in csv.DictReader((results / "cohort.csv").open())}
    study_dirs = {json.loads(p.read_text())["study"]["patient_id"]: p.parent for p in results.rglob("result.json")}
    det = {a: {"tp": 0, "fn": 0, "fp": 0, "tn": 0, "not_assessed": 0} for a in ARTERIES}
    matches, pairs = [], []
    patients = []
    for pid in ids:
        truth = json.loads((truth_dir / f"{pid}.json").read_text())
        row = rows.get(pid, {})
        rep_total = _num(row.get("total_agatston"))
        per = {}
        t_total = t_still = 0.0
        for a in ARTERIES:
            (t, still), r = _truth_agatston(truth, a), _num(row.get(f"{a}_agatston"))
            t_total += t
            t_still += still
            per[a] = {"truth": round(t, 1), "still": round(still, 1), "reported": None if r is None else round(r, 1),
                      "oracle": round(truth["oracle"][a], 1)}
            d = det[a]
            if r is None:
                d["not_assessed"] += 1
                d["fn" if t > 0 else "fp"] += 1
            else:
                d["tp" if t > 0 and r > 0 else "fn" if t > 0 else "fp" if r > 0 else "tn"] += 1
        codes: set[str] = set()
        if pid in study_dirs:
            res = json.loads((study_dirs[pid] / "result.json").read_text())
            codes = {f["code"] for f in res.get("flags", [])}
            if (study_dirs[pid] / "labels.nii.gz").exists():
                m = _lesion_match(Volume.read(truth_dir / f"{pid}_labels.nii.gz"),
                                  Volume.read(study_dirs[pid] / "labels.nii.gz"),
                                  Volume.read(truth_dir / f"{pid}_dense.nii.gz"),
                                  (res.get("ct") or {}).get("instance_numbers"))
                matches.append(m)
                pairs += [{**pr, "patient_id": pid} for pr in m["pairs"]]
        oracle_total = sum(truth["oracle"].values())
        patients.append({
            "patient_id": pid, "pattern": truth["pattern"], "noise_hu": round(truth["noise_hu"], 1),
            "status": row.get("status", "missing"), "arteries": per,
            "total_truth": round(t_total, 1), "total_still": round(t_still, 1),
            "total_reported": None if rep_total is None else round(rep_total, 1),
            "total_oracle": round(oracle_total, 1),
            "rel_error": None if not t_total or rep_total is None else (rep_total - t_total) / t_total,
            "oracle_rel_error": (oracle_total - t_total) / t_total if t_total else None,
            "rel_error_vs_oracle": None if not oracle_total or rep_total is None
            else (rep_total - oracle_total) / oracle_total,
            "category_truth": category(t_total), "category_reported": row.get("category") or None,
            "flags": row.get("flags", ""), "flag_codes": sorted(codes),
            "expected_flags": list(truth.get("expected_flags", [])),
        })
    pos = [p for p in patients if p["total_truth"] > 0]
    errs = [abs(p["rel_error"]) if p["rel_error"] is not None else float("inf") for p in pos]
    oerrs = [abs(p["oracle_rel_error"]) for p in pos]
    verrs = [abs(p["rel_error_vs_oracle"]) if p["rel_error_vs_oracle"] is not None else float("inf")
             for p in pos if p["total_oracle"] > 0]

    def rate(a: int, b: int) -> float | None:
        return a / (a + b) if a + b else None

    lesions = summarise(matches) if matches else None
    confusion = {r: dict.fromkeys((*ARTERIES, "missed"), 0) for r in (*ARTERIES, "none")}
    if lesions:
        att = lesions["attribution"]
        confusion = {r: dict(zip(att["pred"], row, strict=True)) for r, row in zip(att["ref"], att["table"], strict=True)}
    sides = {"RCA": "right", "LAD": "left", "LCX": "left"}
    wrong_side = sum(n for t in ARTERIES for r, n in confusion[t].items() if r in sides and sides[r] != sides[t])
    pooled = {k: sum(d[k] for d in det.values()) for k in ("tp", "fn", "fp", "tn", "not_assessed")}
    # linear-weighted kappa of the risk category: truth vs the category of the reported total
    # (a withheld category counts by the total it withheld; a missing total as category 0)
    from sklearn.metrics import cohen_kappa_score

    cat_t = [category_index(p["category_truth"]) for p in patients]
    cat_r = [category_index(category(p["total_reported"] or 0.0)) for p in patients]
    kappa = float(cohen_kappa_score(cat_t, cat_r, weights="linear", labels=list(range(5)))) \
        if len(set(cat_t) | set(cat_r)) > 1 else None
    return {
        "patients": patients,
        "detection": {a: {**d, "sensitivity": rate(d["tp"], d["fn"]), "specificity": rate(d["tn"], d["fp"])}
                      for a, d in det.items()},
        "detection_pooled": {**pooled, "sensitivity": rate(pooled["tp"], pooled["fn"]),
                             "specificity": rate(pooled["tn"], pooled["fp"])},
        "total_rel_error": {"median": float(np.median(errs)) if errs else None, "worst": max(errs) if errs else None,
                            "n": len(errs), "zero_truth_reported_zero": sum(1 for p in patients if p["total_truth"] == 0
                                                                            and p["total_reported"] == 0),
                            "zero_truth": sum(1 for p in patients if p["total_truth"] == 0)},
        "oracle_total_rel_error": {"median": float(np.median(oerrs)) if oerrs else None,
                                   "worst": max(oerrs) if oerrs else None},
        "total_rel_error_vs_oracle": {"median": float(np.median(verrs)) if verrs else None,
                                      "worst": max(verrs) if verrs else None},
        "category_agreement": sum(p["category_reported"] == p["category_truth"] for p in patients) / len(patients),
        "category_of_reported_total_agreement": sum(
            p["total_reported"] is not None and category(p["total_reported"]) == p["category_truth"]
            for p in patients) / len(patients),
        "category_kappa_linear": kappa,
        "attribution_confusion": confusion,
        "lesion_level": None if lesions is None else lesions["rows"],
        "lesions": _lesion_tables(pairs, len(matches)),
        "flags": flag_rates(patients),
        "wrong_side_lesions": wrong_side,
    }


def _fmt(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def report_text(rep: dict) -> str:
    """The printed tables."""
    lines = ["patient  pattern    noise  | " + " | ".join(f"{a:>16}" for a in ARTERIES)
             + " |  total truth/reported (oracle)   error | category truth/reported"]
    for p in rep["patients"]:
        arts = " | ".join(f"{_fmt(p['arteries'][a]['truth'], '7.1f')}/{_fmt(p['arteries'][a]['reported'], '7.1f'):>8}"
                          for a in ARTERIES)
        err = "-" if p["rel_error"] is None else f"{100 * p['rel_error']:+6.1f}%"
        lines.append(f"{p['patient_id']}   {p['pattern']:<10} {p['noise_hu']:5.1f}  | {arts} | "
                     f"{p['total_truth']:7.1f}/{_fmt(p['total_reported'], '7.1f'):>7} ({p['total_oracle']:6.1f}) "
                     f"{err:>8} | {p['category_truth']:>7}/{p['category_reported'] or '-':<7}")
    lines.append("")
    lines.append("detection   TP  FN  FP  TN  (not assessed)  sensitivity specificity")
    for a, d in [*rep["detection"].items(), ("pooled", rep["detection_pooled"])]:
        lines.append(f"{a:<10} {d['tp']:3d} {d['fn']:3d} {d['fp']:3d} {d['tn']:3d}  ({d['not_assessed']:2d})"
                     f"            {_fmt(d['sensitivity'])}        {_fmt(d['specificity'])}")
    e, o, v = rep["total_rel_error"], rep["oracle_total_rel_error"], rep["total_rel_error_vs_oracle"]

    def pct(d: dict, k: str) -> str:
        return _fmt(None if d[k] is None else 100 * d[k], ".1f")

    lines.append(f"total Agatston |relative error| over {e['n']} calcified patients: median {pct(e, 'median')} %, "
                 f"worst {pct(e, 'worst')} %; no-calcium patients reported 0: "
                 f"{e['zero_truth_reported_zero']}/{e['zero_truth']}")
    lines.append(f"  the true labels on the same noisy CT (oracle) vs truth: median {pct(o, 'median')} %, worst "
                 f"{pct(o, 'worst')} %; reported vs oracle: median {pct(v, 'median')} %, worst {pct(v, 'worst')} %")
    lines.append(f"risk category agreement: {100 * rep['category_agreement']:.0f} % (category of the reported total, "
                 f"even where the study's category is withheld: {100 * rep['category_of_reported_total_agreement']:.0f} %)")
    lines.append("attribution (lesions): true artery x reported artery")
    lines.append("         " + " ".join(f"{c:>7}" for c in (*ARTERIES, "missed")))
    for r, row in rep["attribution_confusion"].items():
        lines.append(f"{r:<8} " + " ".join(f"{row[c]:7d}" for c in (*ARTERIES, "missed")))
    lines.append(f"lesions attributed to the wrong side (RCA vs LAD/LCX): {rep['wrong_side_lesions']}")
    if rep.get("category_kappa_linear") is not None:
        lines.append(f"risk category, linear-weighted kappa (truth vs category of the reported total): "
                     f"{rep['category_kappa_linear']:.2f}")
    les = rep.get("lesions")
    if les:
        c = les["countable"]
        lines.append(f"lesions a reader would count (>= 1 mm2 at >= 130 HU on the scan): found {c['found']}/{c['true']}"
                     f" (sensitivity {_fmt(c['sensitivity'])}); false lesions {les['false_lesions']} "
                     f"({_fmt(les['false_lesions_per_scan'])} per scan)")
        for what in ("by_size", "by_peak"):
            lines.append("  " + "; ".join(f"{k}: {v['found']}/{v['true']}" for k, v in les[what].items()))
        for name in ("missed", "false", "wrong_artery"):
            for r in les[name]:
                lines.append(f"  {name:<12} {r['patient_id']} {r['ref_artery'] if name != 'false' else r['pred_artery']:<4}"
                             f" {'-> ' + r['pred_artery'] if name == 'wrong_artery' else '':<7} "
                             f"{_fmt(r['ref_volume_mm3'] if name != 'false' else r['pred_volume_mm3'], '6.1f')} mm3, "
                             f"peak {r['peak_hu']} HU, {r['max_area_mm2']} mm2, image {r['image']}")
    fl = rep.get("flags")
    if fl:
        lines.append(f"flags over {fl['studies']} studies (expected by the phantom truth): TP FN FP TN  sensitivity "
                     "false-alarm rate")
        for code, d in fl["expected"].items():
            lines.append(f"  {code:<24} {d['tp']:3d} {d['fn']:3d} {d['fp']:3d} {d['tn']:3d}  {_fmt(d['sensitivity'])}"
                         f"        {_fmt(d['false_alarm_rate'])}")
        lines.append("  raised (no truth stated): " + ", ".join(f"{k} {v}/{fl['studies']}"
                                                             for k, v in fl["watched_raised"].items()))
    return "\n".join(lines)


CLINICAL_SEED0 = seed_ranges.HELDOUT.start + 200  # the clinical cohort's held-out seeds (900200-)


def run_cohort(name: str, cfgs, out: Path, model: str | None, postprocess: bool, jobs: int) -> dict:
    """Write, scan and score one cohort under ``out``; returns its report (also OUT/accuracy_TAG.json/.txt)."""
    t = time.perf_counter()
    ids = write_cohort(cfgs, out / "export", out / "truth")
    written = time.perf_counter() - t
    tag = "post" if postprocess else "raw"
    scan_s = run_scan(out / "export", out / f"results_{tag}", model, postprocess, jobs)
    rep = evaluate_results(ids, out / f"results_{tag}", out / "truth")
    rep.update(cohort=name, postprocess=postprocess, seeds=[c.seed for _, c in cfgs],
               seconds={"write_cohort": round(written, 1), "scan": round(scan_s, 1)})
    return rep


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort", choices=("small", "clinical", "both"), default="both",
                    help="small: v2-small (256 x 256), still hearts; clinical: the v2 clinical preset (512 x 512, "
                         "0.625-3 mm slices) with the generator's motion, devices, grafts and noise; both (default)")
    ap.add_argument("--patients", type=int, default=12, help="held-out patients of the small cohort (default 12)")
    ap.add_argument("--clinical-patients", type=int, default=16, help="held-out patients of the clinical cohort "
                    "(default 16)")
    ap.add_argument("--seed0", type=int, default=seed_ranges.HELDOUT.start,
                    help="first seed of the small cohort (must lie in the heldout range of cacpipe.phantom.seeds)")
    ap.add_argument("--clinical-seed0", type=int, default=CLINICAL_SEED0, help="first seed of the clinical cohort")
    ap.add_argument("--phantom", choices=("v2", "v1"), default="v2", help="small cohort: phantom generation (default v2)")
    ap.add_argument("--motion", action="store_true",
                    help="small v2 cohort: keep the generator's cardiac motion (default: still hearts)")
    ap.add_argument("--out", default="build/accuracy", help="work folder: small/ and clinical/ (export/, truth/, "
                    "results*/, accuracy*.json)")
    ap.add_argument("--model", default=None, help="model to scan with (default: as `cacpipe scan` chooses)")
    ap.add_argument("--no-postprocess", action="store_true", help="score the network's map as is (comparison)")
    ap.add_argument("--jobs", type=int, default=1, help="studies scanned at once")
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = " ".join(["python -m nnunet_plans.accuracy", *(argv if argv is not None else sys.argv[1:])])
    cohorts = {}
    if args.cohort in ("small", "both"):
        cohorts["small"] = accuracy_cohort(args.patients, args.seed0, phantom=args.phantom, motion=args.motion)
    if args.cohort in ("clinical", "both"):
        cohorts["clinical"] = accuracy_cohort(args.clinical_patients, args.clinical_seed0, clinical=True)
    reports = {}
    tag = "raw" if args.no_postprocess else "post"
    for name, cfgs in cohorts.items():
        rep = run_cohort(name, cfgs, out / name, args.model, not args.no_postprocess, args.jobs)
        rep["command"] = command
        text = f"== {name} cohort ({len(cfgs)} held-out patients) ==\n" + report_text(rep)
        print(text)
        (out / name / f"accuracy_{tag}.json").write_text(json.dumps(rep, indent=2))
        (out / name / f"accuracy_{tag}.txt").write_text(text + "\n")
        reports[name] = rep
    return reports


if __name__ == "__main__":
    main()
