"""Fit the density rule's judge (cacpipe/data/density_rule.json) on training-range phantoms.

    python -m devtools.density_fit --out build/density_fit [--small 12] [--clinical 12] [--seed-offset 5000]
        [--fp-per-scan 0.05] [--write]

Two cohorts of ``training``-range v2 seeds (never the held-out ones, and past the seeds the demo
models train on) are written like ``make accuracy``'s (the same plaque patterns): v2-small and
the clinical preset with the generator's own confounders. They are scanned by ``cacpipe scan``
(the demo model, post-processing off: the network's map as is), the post-processing then runs
here on each study and every density-rule candidate it records
(``density_rule.candidate_list``: features, centre) is labelled against the imaged truth: a plaque when a true calcium voxel lies within ``--match-mm`` of its centre. A
logistic regression on :data:`cacpipe.segment.density.FEATURES` is fitted; the threshold is the
lowest probability whose false candidates stay within ``--fp-per-scan`` per study. ``--write``
stores the rule with its provenance (seeds, counts, command) in cacpipe/data/density_rule.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from cacpipe.labels import CALCIUM_IDS
from cacpipe.phantom import seeds as seed_ranges
from cacpipe.segment.density import FEATURES, RULE_FILE
from cacpipe.volume import Volume
from nnunet_plans.accuracy import accuracy_cohort, run_scan, write_cohort


def labelled_candidates(results: Path, truth_dir: Path, match_mm: float) -> list[dict]:
    """Every candidate the network did not mark, with ``plaque`` (bool) and ``study``.

    ``results`` is a scan with post-processing off (the network's map as is, ``labels.nii.gz``,
    beside ``ct.nii.gz`` and ``heart_mask.nii.gz``): the post-processing runs here, in this process,
    so the features are those of the code at hand (no rescan when a feature changes)."""
    from cacpipe.segment import refine

    out = []
    for rj in sorted(results.rglob("result.json")):
        r = json.loads(rj.read_text())
        pid = r["study"]["patient_id"]
        tl = truth_dir / f"{pid}_labels.nii.gz"
        if not tl.exists() or not (rj.parent / "labels.nii.gz").exists():
            continue
        ct = Volume.read(rj.parent / "ct.nii.gz")
        heart, prob = rj.parent / "heart_mask.nii.gz", rj.parent / "calcium_prob.nii.gz"
        ref = refine(ct, Volume.read(rj.parent / "labels.nii.gz"), Volume.read(heart) if heart.exists() else None,
                     calcium_prob=Volume.read(prob) if prob.exists() else None)
        info = ref.info.get("density_rule")
        if not info:
            continue
        t = Volume.read(tl)
        calc = np.isin(np.asarray(t.array), CALCIUM_IDS)
        dist = ndimage.distance_transform_edt(~calc, sampling=t.spacing_zyx) if calc.any() else None
        for c in info.get("candidate_list", []):
            if c["network"]:
                continue
            z, y, x = (int(round(v)) for v in c["centre_zyx"])
            d = float("inf") if dist is None else float(dist[z, y, x])
            out.append({**c, "study": pid, "cohort": results.parent.name, "plaque": d <= match_mm})
    return out


def fit(cands: list[dict], n_scans: int, fp_per_scan: float) -> dict:
    """Logistic regression on the candidates' features; threshold for ``fp_per_scan`` false accepts."""
    from sklearn.linear_model import LogisticRegression

    X = np.array([[c["features"][k] for k in FEATURES] for c in cands])
    y = np.array([c["plaque"] for c in cands])
    m = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
    p = m.predict_proba(X)[:, 1]
    ok = X[:, FEATURES.index("area_ok")] > 0
    best = 0.99
    for thr in np.unique(np.round(p, 4))[::-1]:
        fp = int(np.sum((p >= thr) & ok & ~y))
        if fp > fp_per_scan * n_scans:
            break
        best = float(thr)
    acc = (p >= best) & ok
    return {"coef": {k: round(float(v), 4) for k, v in zip(FEATURES, m.coef_[0], strict=True)},
            "intercept": round(float(m.intercept_[0]), 4), "threshold": round(best, 4),
            "fit": {"candidates": len(cands), "plaques": int(y.sum()), "scans": n_scans,
                    "accepted_plaques": int(np.sum(acc & y)), "accepted_false": int(np.sum(acc & ~y)),
                    "plaques_with_area": int(np.sum(ok & y))}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build/density_fit")
    ap.add_argument("--small", type=int, default=12, help="v2-small patients")
    ap.add_argument("--clinical", type=int, default=12, help="clinical-preset patients")
    ap.add_argument("--seed-offset", type=int, default=5000, help="offset into the training seed range")
    ap.add_argument("--match-mm", type=float, default=2.0)
    ap.add_argument("--fp-per-scan", type=float, default=0.05)
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true", help="write cacpipe/data/density_rule.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    s0 = seed_ranges.TRAINING.start + args.seed_offset
    cohorts = {"small": accuracy_cohort(args.small, s0, purpose="training"),
               "clinical": accuracy_cohort(args.clinical, s0 + args.small, purpose="training", clinical=True)}
    cands, n_scans, seeds = [], 0, {}
    for name, cfgs in cohorts.items():
        if not cfgs:
            continue
        ids = write_cohort(cfgs, out / name / "export", out / name / "truth")
        run_scan(out / name / "export", out / name / "results_raw", args.model, False, 1,
                 extra={"segment": {"save_calcium_probability": True}})
        cands += labelled_candidates(out / name / "results_raw", out / name / "truth", args.match_mm)
        n_scans += len(ids)
        seeds[name] = [c.seed for _, c in cfgs]
    rule = fit(cands, n_scans, args.fp_per_scan)
    cmd = " ".join(["python -m devtools.density_fit", *(argv if argv is not None else sys.argv[1:])])
    rule["source"] = (f"logistic regression on {rule['fit']['candidates']} candidates of {n_scans} training-range v2 "
                      f"phantoms (seeds {min(min(v) for v in seeds.values())}-{max(max(v) for v in seeds.values())}), "
                      f"{dt.date.today().isoformat()}: {cmd}")
    rule["seeds"] = seeds
    (out / "candidates.json").write_text(json.dumps(cands, indent=1))
    (out / "rule.json").write_text(json.dumps(rule, indent=2))
    print(json.dumps(rule, indent=2))
    if args.write:
        RULE_FILE.write_text(json.dumps(rule, indent=2) + "\n")
        print(f"written {RULE_FILE}")
    return rule


if __name__ == "__main__":
    main()
