"""How well the weights-free heart locator finds the heart on varied v2 phantoms.

    python -m cacpipe.phantom.locator_eval --n 24 [--preset v2] [--first-seed 900000] [--json out.json]

For each phantom (held-out seeds by default): Dice of the fallback mask against the true heart
(myocardium + chambers), its sensitivity and precision, where its errors lie (above the heart:
great vessels; below: liver and diaphragm; beside it, in the heart's slices: pericardial fluid
and fat, vessels), and whether the crop box the pipeline draws round it (mask box + 10 voxels in
x and y) keeps every coronary and calcium voxel of the truth. Prints a table and the worst cases.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from . import seeds as seed_ranges
from .v2 import generate, random_config

CROP_PAD_YX = 10  # voxels added round the mask box in y and x (the stage-1 default padding)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def score_case(seed: int, preset: str = "v2") -> dict:
    """Generate one phantom, run the fallback locator, and compare with the truth."""
    from ..heart.fallback import locate_heart

    cfg = random_config(seed, preset)
    ph = generate(cfg)
    t0 = time.perf_counter()
    res = locate_heart(ph.ct)
    seconds = time.perf_counter() - t0
    m, h = res.mask.array > 0, ph.heart.array > 0
    vox_ml = ph.ct.voxel_volume_mm3 / 1000.0
    zs = np.flatnonzero(h.any(axis=(1, 2)))
    fp, fn = m & ~h, h & ~m
    z = np.arange(m.shape[0])[:, None, None]
    above = (z > zs.max()) if zs.size else np.zeros_like(z, bool)
    below = (z < zs.min()) if zs.size else np.zeros_like(z, bool)
    coronary = ph.labels.array > 0
    if m.any():
        idx = np.argwhere(m)
        lo = idx.min(axis=0) - np.array([0, CROP_PAD_YX, CROP_PAD_YX])
        hi = idx.max(axis=0) + 1 + np.array([0, CROP_PAD_YX, CROP_PAD_YX])
        box = tuple(slice(max(int(a), 0), int(b)) for a, b in zip(lo, hi, strict=True))
        kept = int(coronary[box].sum())
    else:
        kept = 0
    hs, acq, fnd = cfg.heart, cfg.acquisition, cfg.findings
    return {
        "seed": seed, "dice": _dice(m, h), "sensitivity": float((m & h).sum() / max(h.sum(), 1)),
        "precision": float((m & h).sum() / max(m.sum(), 1)),
        "true_ml": float(h.sum() * vox_ml), "found_ml": float(m.sum() * vox_ml),
        "fp_above_ml": float((fp & above).sum() * vox_ml), "fp_below_ml": float((fp & below).sum() * vox_ml),
        "fp_beside_ml": float((fp & ~above & ~below).sum() * vox_ml), "fn_ml": float(fn.sum() * vox_ml),
        "coronary_in_crop": float(kept / max(int(coronary.sum()), 1)),
        "seconds": seconds, "warnings": res.warnings,
        "case": {"sex": cfg.habitus.sex, "width_mm": cfg.habitus.body_width_mm, "depth_mm": cfg.habitus.body_depth_mm,
                 "fat_mm": round(cfg.habitus.fat_mm, 1), "azimuth": round(hs.azimuth_deg), "elevation": round(hs.elevation_deg),
                 "heart_scale": round(hs.scale, 2), "pericardial_effusion_mm": round(hs.pericardial_effusion_mm, 1),
                 "pleural_effusion_mm": list(fnd.pleural_effusion_mm), "thickness_mm": acq.slice_thickness_mm,
                 "kernel": acq.kernel, "noise_hu": acq.noise_hu, "contrast": acq.contrast_phase,
                 "fov_mm": acq.fov_mm, "situs_inversus": hs.situs_inversus},
    }


def reason(row: dict) -> str:
    """The largest error source of a case, in words."""
    parts = {
        "leaks below the heart (liver / diaphragm)": row["fp_below_ml"],
        "leaks above the heart (great vessels)": row["fp_above_ml"],
        "takes tissue beside the heart (pericardial fluid or fat, vessels, chest wall)": row["fp_beside_ml"],
        "misses part of the heart": row["fn_ml"],
    }
    k = max(parts, key=parts.get)
    return f"{k} ({parts[k]:.0f} mL)"


def evaluate(seeds, preset: str = "v2", progress=None) -> dict:
    rows = []
    for i, s in enumerate(seeds):
        rows.append(score_case(int(s), preset))
        if progress:
            progress(i + 1, len(seeds), rows[-1])
    d = np.array([r["dice"] for r in rows])
    worst = sorted(rows, key=lambda r: r["dice"])[:5]
    return {
        "preset": preset, "seeds": [int(s) for s in seeds], "n": len(rows),
        "dice_mean": float(d.mean()), "dice_median": float(np.median(d)), "dice_min": float(d.min()),
        "coronary_in_crop_min": float(min(r["coronary_in_crop"] for r in rows)),
        "worst": [{"seed": r["seed"], "dice": r["dice"], "reason": reason(r), "case": r["case"]} for r in worst],
        "cases": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m cacpipe.phantom.locator_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--preset", default="v2")
    p.add_argument("--first-seed", type=int, default=seed_ranges.HELDOUT.start)
    p.add_argument("--json", default=None, help="Write all numbers here.")
    a = p.parse_args(argv)
    seeds = list(range(a.first_seed, a.first_seed + a.n))

    def progress(i, n, r):
        print(f"[{i}/{n}] seed {r['seed']}: Dice {r['dice']:.3f} (sens {r['sensitivity']:.2f}, prec "
              f"{r['precision']:.2f}), coronary in crop {r['coronary_in_crop']:.3f}, {reason(r)}", flush=True)

    res = evaluate(seeds, a.preset, progress)
    print(f"\nfallback heart locator on {res['n']} v2 phantoms ({a.preset}, seeds {seeds[0]}-{seeds[-1]}): "
          f"Dice mean {res['dice_mean']:.3f}, median {res['dice_median']:.3f}, min {res['dice_min']:.3f}; "
          f"smallest share of coronary voxels inside the crop {res['coronary_in_crop_min']:.3f}")
    for w in res["worst"]:
        print(f"  seed {w['seed']}: Dice {w['dice']:.3f} - {w['reason']}; {w['case']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return res


if __name__ == "__main__":
    main()
