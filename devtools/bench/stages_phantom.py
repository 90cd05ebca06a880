"""Phantom stages: writing a 512 x 512 x 400 study (v1 and v2), and the fallback locator on v2 phantoms.

Each writes into a temporary folder (NIfTI + DICOM + truth, as ``cacpipe phantom`` does) and
reports the wall time of the whole write. The locator stage reports Dice against the true heart
over held-out v2 phantoms (cacpipe.phantom.locator_eval); its time is the whole evaluation.
"""

from __future__ import annotations

import shutil
import tempfile

from .measure import measure
from .stages import Context


def stage_phantom_write_v1(ctx: Context):
    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    cfg = PhantomConfig.preset("thin", n_slices=300 if ctx.quick else 400, seed=7)

    def run():
        out = tempfile.mkdtemp(prefix="bench-phantom-v1-")
        try:
            ph, _ = write_phantom(cfg, out)
            return {"shape_zyx": list(ph.ct.shape)}
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return measure(run)


def stage_phantom_write_v2(ctx: Context, seed_offset: int = 0):
    from cacpipe.phantom import seeds
    from cacpipe.phantom.v2 import random_config
    from cacpipe.phantom.v2.study import write_phantom_v2

    over = {"acquisition": {"n_slices": 300}} if ctx.quick else {}
    cfg = random_config(seeds.HELDOUT.start + seed_offset, "v2-bench", **over)

    def run():
        out = tempfile.mkdtemp(prefix="bench-phantom-v2-")
        try:
            ph, truth = write_phantom_v2(cfg, out)
            return {"shape_zyx": list(ph.ct.shape), "plaques": len(truth["plaques"]),
                    "dicom_files": sum(s["files"] for s in truth["dicom"]["series"].values())}
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return measure(run)


def stage_phantom_write_v2_cac(ctx: Context):
    # Held-out seed 900008: 8 plaques, aortic wall calcium and motion (scale 0.74): the truth's
    # plaque work (moving and still) on top of what the calcium-free seed 900000 costs.
    return stage_phantom_write_v2(ctx, seed_offset=8)


def stage_locator_v2(ctx: Context):
    from cacpipe.phantom import seeds
    from cacpipe.phantom.locator_eval import evaluate

    n, preset = (6, "v2-small") if ctx.quick else (20, "v2")

    def run():
        res = evaluate(seeds.seeds_for("heldout", n), preset)
        worst = res["worst"][0]
        return {"n": n, "preset": preset, "dice_mean": round(res["dice_mean"], 3), "dice_min": round(res["dice_min"], 3),
                "coronary_in_crop_min": round(res["coronary_in_crop_min"], 4), "worst_seed": worst["seed"]}

    return measure(run)


PHANTOM_STAGES: dict[str, tuple] = {
    "phantom_write_v1": (stage_phantom_write_v1, "write v1 phantom 512x512x400 (NIfTI + DICOM + truth)"),
    "phantom_write_v2": (stage_phantom_write_v2, "write v2 phantom 512x512x400 (NIfTI + DICOM + truth)"),
    "phantom_write_v2_cac": (stage_phantom_write_v2_cac,
                             "write v2 phantom 512x512x400 with 8 moving plaques (NIfTI + DICOM + truth)"),
    "locator_v2": (stage_locator_v2, "fallback heart locator vs true heart on held-out v2 phantoms (Dice)"),
}
