"""Progression (``cacpipe progression``) scored against a phantom cohort's follow-up truth.

Each lesion the scan reported gets its true identity: the phantom plaque id (truth_lesions.nii.gz)
most common among the lesion's calcium voxels (scan label map, >= 130 HU on the scanned CT,
inside its bounding box); 0 when it lies on no plaque (a false lesion). Then per pair:

- **matching**: a current lesion with a true identity is matched correctly when it is linked to
  a prior lesion of the same identity (or, ``reappeared``, to an earlier study's lesion of that
  identity), or called ``new`` while the prior scan reported no lesion of that identity, or called
  ``missed_before`` (calcium on the prior CT the prior's result did not count there) while the
  plaque existed at the prior time point (the claim it makes: not a new plaque; a long plaque the
  prior scan reported another part of counts too); a prior lesion called ``gone`` is correct when the current scan
  reported no lesion of its identity. Accuracy = correct decisions / decisions (false lesions left out,
  counted apart);
- **false new lesions**: lesions called ``new`` that are not new in truth, split by cause:
  ``matching`` (the prior scan had the lesion: the link was missed), ``missed_before`` (the plaque
  existed at the prior time point but the prior scan did not report it) and ``false_lesion``
  (no plaque there);
- **per-artery change**: the scan's annualised change (Agatston per year; square-root volume per
  year) minus the truth's, the truth being the numbers as imaged (what a perfect reader measures
  on each scan: cacpipe.phantom.truth.imaged_numbers); arteries with no calcium on either scan
  and in truth are left out (of the repeatability too);
- **repeatability** (pairs 0 years apart: rescans of an unchanged patient): per-artery
  repeatability coefficient RC = 1.96 x sqrt(mean(d^2)) of the rescan differences d, for the
  scan's numbers and for the truth's (what acquisition alone changes).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..labels import ARTERIES, CALCIUM_IDS
from ..units import CALCIUM_THRESHOLD_HU


def _median(xs: list[float]) -> float | None:
    return round(float(np.median(xs)), 3) if xs else None


def _rc(ds: list[float]) -> float | None:
    return round(1.96 * float(np.sqrt(np.mean(np.square(ds)))), 3) if ds else None


def lesion_identities(study_folder: Path, result, truth_dir: Path) -> list[int]:
    """True plaque id of each of ``result``'s lesions (0 = on no plaque)."""
    from ..volume import Volume
    from .lesions import on_grid

    lab = Volume.read(study_folder / (result.outputs.get("labels") or "labels.nii.gz"))
    ct = Volume.read(study_folder / (result.outputs.get("ct") or "ct.nii.gz"))
    tl = truth_dir / "truth_lesions.nii.gz"
    if not tl.is_file():
        raise InputDataError(f"{truth_dir} has no truth_lesions.nii.gz (a v2 phantom cohort writes one)")
    ids = on_grid(Volume.read(tl), lab, labels=True)
    calc = np.isin(np.asarray(lab.array), CALCIUM_IDS) & (np.asarray(ct.array) >= CALCIUM_THRESHOLD_HU)
    out = []
    for les in result.lesions:
        box = tuple(slice(int(lo), int(hi)) for lo, hi in les.bbox_zyx) if les.bbox_zyx else None
        if box is None:
            c = [int(round(v)) for v in les.centre_zyx]
            box = tuple(slice(max(v - 2, 0), v + 3) for v in c)
        found = ids[box][calc[box]]
        found = found[found > 0]
        out.append(int(Counter(found.tolist()).most_common(1)[0][0]) if found.size else 0)
    return out


def _truth_dirs(truth_root: Path, truth: dict) -> dict[str, Path]:
    return {tp["study_uid"]: truth_root / tp["truth_dir"] for p in truth["patients"].values() for tp in p["time_points"]}


def evaluate_progression(doc: dict, results: str | Path, truth_root: str | Path) -> dict:
    """Score a progression document (run_progression) against ``truth_root/progression_truth.json``."""
    from ..progression.group import load_studies

    truth_root = Path(truth_root)
    tpath = truth_root / "progression_truth.json"
    if not tpath.is_file():
        raise InputDataError(f"{truth_root} has no progression_truth.json: write the cohort with "
                             "`cacpipe phantom cohort ... --follow-up YEARS`")
    truth = json.loads(tpath.read_text())
    dirs = _truth_dirs(truth_root, truth)
    grouping = load_studies(results)
    studies = {s.study_uid: s for ss in grouping.patients.values() for s in ss}
    tid_cache: dict[str, list[int]] = {}

    def tids(uid: str) -> list[int]:
        if uid not in tid_cache:
            s = studies[uid]
            tid_cache[uid] = lesion_identities(s.folder, s.result, dirs[uid])
        return tid_cache[uid]

    correct = decisions = false_lesion_events = 0
    false_new = {"matching": 0, "missed_before": 0, "false_lesion": 0}
    change_err = {a: [] for a in (*ARTERIES, "total")}
    sqrt_err = {a: [] for a in (*ARTERIES, "total")}
    rescan = {"scan_agatston": {a: [] for a in ARTERIES}, "scan_sqrt_volume": {a: [] for a in ARTERIES},
              "truth_agatston": {a: [] for a in ARTERIES}, "truth_sqrt_volume": {a: [] for a in ARTERIES}}
    rescan_total: dict[str, list[float]] = {"agatston": [], "sqrt_volume": []}
    reg_seconds, per_pair, n_pairs = [], [], 0
    for pid, p in doc["patients"].items():
        tp = truth["patients"].get(pid)
        if tp is None:
            continue
        tpairs = {(q["prior"], q["current"]): q for q in tp["pairs"]}
        for pair in p["pairs"]:
            key = (pair["prior"], pair["current"])
            if key not in tpairs or pair["prior"] not in dirs or pair["current"] not in dirs:
                continue
            n_pairs += 1
            tq = tpairs[key]
            if "seconds" in pair["registration"]:
                reg_seconds.append(pair["registration"]["seconds"])
            tp_ids, tc_ids = tids(pair["prior"]), tids(pair["current"])
            ok = dec = fnew = 0
            for e in pair["lesions"]:
                if e["current"] is not None and e["status"] != "merged":
                    t = tc_ids[e["current"]]
                    if t == 0:
                        false_lesion_events += 1
                        if e["status"] == "new":
                            false_new["false_lesion"] += 1
                            fnew += 1
                        continue
                    dec += 1
                    if e["status"] == "new":
                        good = t not in tp_ids
                        if not good:
                            false_new["matching"] += 1
                            fnew += 1
                        elif tq["lesion_status"].get(str(t)) != "new":
                            false_new["missed_before"] += 1
                            fnew += 1
                    elif e["status"] == "missed_before":  # calcium on the prior CT the prior's result missed
                        good = tq["lesion_status"].get(str(t)) not in (None, "new")
                    elif e["status"] == "reappeared":  # linked to a lesion of an earlier study
                        good = e.get("earlier_study") in studies and tids(e["earlier_study"])[e["earlier_lesion"]] == t
                    else:
                        good = e["prior"] is not None and tp_ids[e["prior"]] == t
                    ok += int(good)
                elif e["status"] == "gone":
                    t = tp_ids[e["prior"]]
                    if t == 0:
                        continue
                    dec += 1
                    ok += int(t not in tc_ids)
            correct += ok
            decisions += dec
            years = pair["years"]
            errs = {}
            for a in (*ARTERIES, "total"):
                ch, tch = pair["arteries"].get(a, {}), _truth_change(tq, a)
                if not ch.get("assessed") or tch is None:
                    continue
                if max(ch["agatston_prior"], ch["agatston"], tch["agatston_prior"], tch["agatston"]) <= 0:
                    continue  # no calcium on either scan nor in truth: an exact 0 would flatter the medians
                if years > 0:
                    e1 = ch["agatston_change_per_year"] - tch["agatston_change"] / years
                    e2 = (ch["sqrt_volume_change"] - tch["sqrt_volume_change"]) / years
                    change_err[a].append(abs(e1))
                    sqrt_err[a].append(abs(e2))
                    errs[a] = round(e1, 2)
                elif a == "total":
                    rescan_total["agatston"].append(ch["agatston_change"])
                    rescan_total["sqrt_volume"].append(ch["sqrt_volume_change"])
                else:
                    rescan["scan_agatston"][a].append(ch["agatston_change"])
                    rescan["scan_sqrt_volume"][a].append(ch["sqrt_volume_change"])
                    rescan["truth_agatston"][a].append(tch["agatston_change"])
                    rescan["truth_sqrt_volume"][a].append(tch["sqrt_volume_change"])
            per_pair.append({"patient": pid, "prior": pair["prior"], "current": pair["current"], "years": years,
                             "matching_correct": ok, "matching_decisions": dec, "false_new": fnew,
                             "registration_seconds": pair["registration"].get("seconds"),
                             "agatston_per_year_error": errs})
    pooled = lambda d: [v for a in ARTERIES for v in d[a]]  # noqa: E731
    return {
        "pairs": n_pairs,
        "followup_pairs": sum(1 for q in per_pair if q["years"] > 0),
        "rescan_pairs": sum(1 for q in per_pair if q["years"] == 0),
        "matching": {"correct": correct, "decisions": decisions,
                     "accuracy": round(correct / decisions, 4) if decisions else None,
                     "events_on_false_lesions": false_lesion_events},
        "false_new": false_new | {"per_pair": round(sum(false_new.values()) / n_pairs, 3) if n_pairs else None,
                                  "matching_per_pair": round(false_new["matching"] / n_pairs, 3) if n_pairs else None},
        "change_error": {
            "median_abs_agatston_per_year": {a: _median(v) for a, v in change_err.items()} | {
                "arteries_pooled": _median(pooled(change_err))},
            "median_abs_sqrt_volume_per_year": {a: _median(v) for a, v in sqrt_err.items()} | {
                "arteries_pooled": _median(pooled(sqrt_err))}},
        "repeatability": {
            "rc_agatston": {a: _rc(v) for a, v in rescan["scan_agatston"].items()} | {
                "arteries_pooled": _rc(pooled(rescan["scan_agatston"]))},
            "rc_sqrt_volume": {a: _rc(v) for a, v in rescan["scan_sqrt_volume"].items()} | {
                "arteries_pooled": _rc(pooled(rescan["scan_sqrt_volume"]))},
            "rc_total_agatston": _rc(rescan_total["agatston"]), "rc_total_sqrt_volume": _rc(rescan_total["sqrt_volume"]),
            "truth_rc_agatston": _rc(pooled(rescan["truth_agatston"])),
            "truth_rc_sqrt_volume": _rc(pooled(rescan["truth_sqrt_volume"])),
            "rescan_artery_pairs": len(pooled(rescan["scan_agatston"]))},
        "registration_seconds": {"median": _median(reg_seconds), "max": max(reg_seconds) if reg_seconds else None,
                                 "n": len(reg_seconds)},
        "per_pair": per_pair,
    }


def _truth_change(tq: dict, artery: str) -> dict | None:
    """The truth's change of one artery (or the total) in a truth pair, with its square-root volume change."""
    arts = tq["arteries"]
    if artery == "total":
        sums = {k: sum(arts[a][k] for a in ARTERIES) for k in ("agatston_prior", "agatston", "volume_prior_mm3",
                                                               "volume_mm3")}
        v = {"agatston_change": sums["agatston"] - sums["agatston_prior"], **sums}
    else:
        v = arts.get(artery)
        if v is None:
            return None
    return {"agatston_change": float(v["agatston_change"]), "agatston_prior": float(v["agatston_prior"]),
            "agatston": float(v["agatston"]),
            "sqrt_volume_change": float(np.sqrt(max(v["volume_mm3"], 0)) - np.sqrt(max(v["volume_prior_mm3"], 0)))}


def summary_lines(ev: dict) -> list[str]:
    """A few readable lines of an evaluation (the CLI prints them)."""
    m, fn, ce, rp = ev["matching"], ev["false_new"], ev["change_error"], ev["repeatability"]
    acc = "-" if m["accuracy"] is None else f"{100 * m['accuracy']:.1f} %"
    return [
        f"against the phantom truth ({ev['pairs']} pairs: {ev['followup_pairs']} follow-ups, {ev['rescan_pairs']} rescans):",
        f"  lesion matching {m['correct']}/{m['decisions']} correct ({acc}); "
        f"{m['events_on_false_lesions']} events on false lesions",
        f"  false new lesions per pair {fn['per_pair']} (matching {fn['matching']}, missed before "
        f"{fn['missed_before']}, false lesion {fn['false_lesion']})",
        f"  median |error| of annualised change, arteries pooled: Agatston {ce['median_abs_agatston_per_year']['arteries_pooled']}"
        f"/y, sqrt volume {ce['median_abs_sqrt_volume_per_year']['arteries_pooled']}/y",
        f"  rescan repeatability (RC, arteries pooled): Agatston {rp['rc_agatston']['arteries_pooled']}, sqrt volume "
        f"{rp['rc_sqrt_volume']['arteries_pooled']} (truth as imaged: {rp['truth_rc_agatston']}, "
        f"{rp['truth_rc_sqrt_volume']}); total: Agatston {rp['rc_total_agatston']}, sqrt volume "
        f"{rp['rc_total_sqrt_volume']}",
        f"  registration seconds per pair: median {ev['registration_seconds']['median']}, "
        f"max {ev['registration_seconds']['max']}",
    ]
