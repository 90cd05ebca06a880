"""Measure an installed model on held-out phantoms (cohort seeds disjoint from training).

    python -m nnunet_plans.evaluate [--model NAME|demo] [--cases 4] [--seed0 5000]

Metrics, on the heart-cropped grid: per (case, artery) calcium detection (present in truth vs
any voxel of that artery's calcium class predicted), calcium Dice over all calcium voxels
(artery assignment ignored), artery-specific calcium Dice (classes 4-6 pooled, assignment
must match), and whole-artery Dice (artery + its calcium).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from cacpipe.labels import ARTERIES, ARTERY_ID, CALCIUM_ID, CALCIUM_IDS
from cacpipe.phantom import seeds


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def evaluate(model, n_cases: int = 4, seed0: int = seeds.V1_HELDOUT.start, cfg=None) -> dict:
    from cacpipe.config import SegmentSettings
    from cacpipe.segment import segment

    from .data import phantom_case, phantom_cohort_configs

    cfg = cfg or SegmentSettings()
    det = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    gt_all, pr_all, gt_cls, pr_cls, gt_art, pr_art = [], [], [], [], [], []
    seconds = []
    for c in phantom_cohort_configs(n_cases, seed0):
        ct, lab = phantom_case(c, model.spacing_zyx)
        res = segment(ct, model, cfg)
        seconds.append(res.seconds)
        g, p = lab.array, res.labels.array
        for a in ARTERIES:
            t, q = bool((g == CALCIUM_ID[a]).any()), bool((p == CALCIUM_ID[a]).any())
            det["tp" if t and q else "fn" if t else "fp" if q else "tn"] += 1
        gt_all.append(np.isin(g, CALCIUM_IDS).ravel())
        pr_all.append(np.isin(p, CALCIUM_IDS).ravel())
        gt_cls.append(np.where(np.isin(g, CALCIUM_IDS), g, 0).ravel())
        pr_cls.append(np.where(np.isin(p, CALCIUM_IDS), p, 0).ravel())
        whole = lambda m, a: (m == ARTERY_ID[a]) | (m == CALCIUM_ID[a])  # noqa: E731
        gt_art.append(np.stack([whole(g, a) for a in ARTERIES]).reshape(3, -1))
        pr_art.append(np.stack([whole(p, a) for a in ARTERIES]).reshape(3, -1))
    gc, pc = np.concatenate(gt_cls), np.concatenate(pr_cls)
    ga, pa = np.concatenate(gt_art, axis=1), np.concatenate(pr_art, axis=1)
    n_pos = det["tp"] + det["fn"]
    n_neg = det["tn"] + det["fp"]
    return {
        "cases": n_cases, "seed0": seed0,
        "detection": det,
        "sensitivity": det["tp"] / n_pos if n_pos else None,
        "specificity": det["tn"] / n_neg if n_neg else None,
        "calcium_dice": _dice(np.concatenate(gt_all), np.concatenate(pr_all)),
        "calcium_dice_artery_specific": float(np.mean([_dice(gc == k, pc == k) for k in CALCIUM_IDS
                                                       if (gc == k).any()])),
        "artery_dice": {a: _dice(ga[i], pa[i]) for i, a in enumerate(ARTERIES)},
        "seconds_per_case": float(np.mean(seconds)),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo", help="installed model name or folder; 'demo' = the shipped demo")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--seed0", type=int, default=seeds.V1_HELDOUT.start)
    args = ap.parse_args()
    from cacpipe.segment import find_model

    print(json.dumps(evaluate(find_model(args.model), args.cases, args.seed0), indent=2))
