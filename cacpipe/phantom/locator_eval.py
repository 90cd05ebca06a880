"""How well the weights-free heart locator finds the heart on varied v2 phantoms.

    python -m cacpipe.phantom.locator_eval --n 24 [--preset v2] [--first-seed 900000] [--json out.json]

For each phantom (held-out seeds by default): Dice of the fallback mask against the true heart
(myocardium + chambers), its sensitivity and precision, where its errors lie (under the heart:
diaphragm and liver dome; behind it: oesophagus, aorta, spine; above it: great vessels; around
it: pericardial fluid and fat, vessels; or heart missed), and whether the crop box stage 1 draws
round it (mask box + the fallback margin + the padding, cacpipe.config.HeartSettings) keeps every
coronary and calcium voxel of the truth. Prints a table and the worst cases.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..config import HeartSettings
from ..units import PAPER_SPACING_ZYX
from . import seeds as seed_ranges
from .v2 import generate, random_config


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def load_locator(path: str | None):
    """``locate_heart`` of cacpipe, or of another version of fallback.py given as a file (for before/after)."""
    if path is None:
        from ..heart.fallback import locate_heart

        return locate_heart
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("cacpipe.heart._fallback_compared", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.locate_heart


def score_case(seed: int, preset: str = "v2", compare: str | None = None) -> dict:
    """Generate one phantom, run the fallback locator (and optionally another version), compare with the truth."""
    locate_heart = load_locator(None)
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
    # heart above in the same column (array z runs inferior -> superior), heart in front in the same row
    heart_over = np.flip(np.maximum.accumulate(np.flip(h, axis=0), axis=0), axis=0)
    heart_front = np.maximum.accumulate(h, axis=1)
    under = fp & heart_over & ~h
    behind = fp & ~under & heart_front & ~above
    coronary = ph.labels.array > 0
    if m.any():
        # the stage-1 crop round a fallback mask: box + fallback margin (mm) + padding (model voxels)
        st = HeartSettings()
        grow_mm = st.fallback_margin_mm + np.asarray(st.padding_voxels_zyx) * np.asarray(PAPER_SPACING_ZYX)
        grow = np.ceil(grow_mm / np.asarray(ph.ct.spacing_zyx)).astype(int)
        idx = np.argwhere(m)
        lo, hi = idx.min(axis=0) - grow, idx.max(axis=0) + 1 + grow
        box = tuple(slice(max(int(a), 0), int(b)) for a, b in zip(lo, hi, strict=True))
        kept = int(coronary[box].sum())
    else:
        kept = 0
    hs, acq, fnd = cfg.heart, cfg.acquisition, cfg.findings
    other = None
    if compare is not None:
        om = load_locator(compare)(ph.ct).mask.array > 0
        other = _dice(om, h)
    return {
        "dice_compared": other,
        "seed": seed, "dice": _dice(m, h), "sensitivity": float((m & h).sum() / max(h.sum(), 1)),
        "precision": float((m & h).sum() / max(m.sum(), 1)),
        "true_ml": float(h.sum() * vox_ml), "found_ml": float(m.sum() * vox_ml),
        "fp_above_ml": float((fp & above).sum() * vox_ml), "fp_under_ml": float(under.sum() * vox_ml),
        "fp_behind_ml": float(behind.sum() * vox_ml),
        "fp_around_ml": float((fp & ~above & ~under & ~behind).sum() * vox_ml), "fn_ml": float(fn.sum() * vox_ml),
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
        "takes tissue under the heart (diaphragm, liver dome)": row["fp_under_ml"],
        "takes tissue behind the heart (oesophagus, aorta, spine)": row["fp_behind_ml"],
        "takes the great vessels above the heart": row["fp_above_ml"],
        "takes tissue around the heart (pericardial fluid or fat, vessels)": row["fp_around_ml"],
        "misses part of the heart": row["fn_ml"],
    }
    k = max(parts, key=parts.get)
    return f"{k} ({parts[k]:.0f} mL)"


def evaluate(seeds, preset: str = "v2", progress=None, compare: str | None = None) -> dict:
    rows = []
    for i, s in enumerate(seeds):
        rows.append(score_case(int(s), preset, compare))
        if progress:
            progress(i + 1, len(seeds), rows[-1])
    d = np.array([r["dice"] for r in rows])
    worst = sorted(rows, key=lambda r: r["dice"])[:5]
    return {
        "preset": preset, "seeds": [int(s) for s in seeds], "n": len(rows),
        "dice_mean": float(d.mean()), "dice_median": float(np.median(d)), "dice_min": float(d.min()),
        "coronary_in_crop_min": float(min(r["coronary_in_crop"] for r in rows)),
        "compared": None if compare is None else {
            "file": compare, "dice_mean": float(np.mean([r["dice_compared"] for r in rows])),
            "dice_min": float(np.min([r["dice_compared"] for r in rows]))},
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
    p.add_argument("--compare", default=None, metavar="FALLBACK_PY",
                   help="Also score another version of fallback.py on the same phantoms, e.g. "
                        "`git show main:cacpipe/heart/fallback.py > /tmp/old_fallback.py`.")
    a = p.parse_args(argv)
    seeds = list(range(a.first_seed, a.first_seed + a.n))

    def progress(i, n, r):
        cmp = f" (compared: {r['dice_compared']:.3f})" if r["dice_compared"] is not None else ""
        print(f"[{i}/{n}] seed {r['seed']}: Dice {r['dice']:.3f}{cmp} (sens {r['sensitivity']:.2f}, prec "
              f"{r['precision']:.2f}), coronary in crop {r['coronary_in_crop']:.3f}, {reason(r)}", flush=True)

    res = evaluate(seeds, a.preset, progress, a.compare)
    print(f"\nfallback heart locator on {res['n']} v2 phantoms ({a.preset}, seeds {seeds[0]}-{seeds[-1]}): "
          f"Dice mean {res['dice_mean']:.3f}, median {res['dice_median']:.3f}, min {res['dice_min']:.3f}; "
          f"smallest share of coronary voxels inside the crop {res['coronary_in_crop_min']:.3f}")
    if res["compared"]:
        print(f"compared ({a.compare}): Dice mean {res['compared']['dice_mean']:.3f}, min {res['compared']['dice_min']:.3f}")
    for w in res["worst"]:
        print(f"  seed {w['seed']}: Dice {w['dice']:.3f} - {w['reason']}; {w['case']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return res


if __name__ == "__main__":
    main()
