"""Is a stage-2 speed setting accuracy-neutral? Labels and Agatston per artery against the fp32 reference.

``python -m devtools.bench.precision --studies 6 --out bench_out/precision``

Held-out v2 phantoms (``cacpipe.phantom.seeds`` range ``heldout``, offset 500: not the e2e cohort's
seeds, never training or test seeds) go through the real pipeline steps with the demo model
(``cacpipe.pipeline.prepare_series`` once per study, then per variant ``segment_prepared`` and
``finish_series`` without review). For each variant against the reference (fp32, nnU-Net's tile step
0.5) it reports the voxel agreement of the six-class map on the heart crop (all voxels, and over the
voxels either map calls foreground), the calcium voxels that differ, and the largest Agatston
difference per artery and the risk categories that change, plus the median segmentation seconds.

``--paper``: the same voxel agreement for bf16 vs fp32 on the paper architecture with random weights
(one fold, one patch of the bench phantom's heart crop): a stress test, as random logits sit near 0.
Writes OUT/precision.md and OUT/precision.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# name -> SegmentSettings overrides; the first is the reference.
VARIANTS: dict[str, dict] = {
    "fp32 step 0.5 (reference)": {"bf16": False},
    "bf16 step 0.5": {"bf16": True},
    "fp32 step 0.75": {"bf16": False, "tile_step_size": 0.75},
    "bf16 step 0.75": {"bf16": True, "tile_step_size": 0.75},
}


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    fg = (a > 0) | (b > 0)
    calc_a, calc_b = a >= 4, b >= 4  # cacpipe.labels: 4-6 are the per-artery calcium classes
    return {"voxels": float(np.mean(a == b)),
            "foreground": float(np.mean(a[fg] == b[fg])) if fg.any() else 1.0,
            "foreground_voxels": int(fg.sum()),
            "calcium_voxels_differing": int(np.sum(calc_a != calc_b)),
            "calcium_voxels_reference": int(calc_a.sum())}


def _export(out: Path, n: int) -> Path:
    from cacpipe.phantom import seeds
    from cacpipe.phantom.cohort import write_cohort

    data = out / f"heldout-{n}"
    if not (data / ".ready").exists():
        write_cohort(n, data, preset="v2-small", seeds=seeds.seeds_for("heldout", n, offset=500), purpose="heldout",
                     extras=False, acquisition={"contrast_phase": "none"})
        (data / ".ready").touch()
    return data / "export"


def _series(export: Path, settings):
    from cacpipe.ingest import discover, group_studies, load_series, select_series

    d = discover(export, tempfile.mkdtemp())
    studies, _ = group_studies(d.headers)
    for st in sorted(studies, key=lambda s: s.patient_id):
        sel = select_series(st, settings.selection)
        if sel.selected is not None:
            yield load_series(sel.selected, settings.assembly)


def demo_model_rows(out: Path, n: int) -> dict:
    from cacpipe.config import Settings
    from cacpipe.pipeline import finish_series, prepare_series, segment_prepared

    base = Settings.from_dict({"device": "cpu", "heart": {"method": "fallback"},
                               "segment": {"allow_demo_model": True}, "review": {"enabled": False}})
    per: dict[str, list] = {k: [] for k in VARIANTS}
    for series in _series(_export(out, n), base):
        prep = prepare_series(series, base)
        ref_labels, ref_art = None, None
        for name, over in VARIANTS.items():
            s = base.merged({"segment": over})
            prep.settings, prep.seg = s, None
            t0 = time.perf_counter()
            segment_prepared(prep)
            seconds = time.perf_counter() - t0
            labels = prep.seg.labels.array
            with tempfile.TemporaryDirectory() as tmp:
                result = finish_series(prep, Path(tmp))
            arteries = {a: r.agatston for a, r in result.arteries.items()}
            cat = result.total.category
            if ref_labels is None:
                ref_labels, ref_art, ref_cat = labels, arteries, cat
            row = {"patient": series.identity.patient_id, "seconds": seconds, **_agreement(ref_labels, labels),
                   "agatston": arteries, "agatston_reference": ref_art,
                   "max_agatston_diff": max(abs((arteries[a] or 0) - (ref_art[a] or 0)) for a in arteries),
                   "category": cat, "category_changed": cat != ref_cat}
            per[name].append(row)
            print(f"[precision] {row['patient']} {name}: {seconds:.1f} s, foreground agreement "
                  f"{row['foreground']:.5f}, max Agatston diff {row['max_agatston_diff']:.2f}", flush=True)
    return per


def paper_rows() -> dict:
    from cacpipe import torchvision_fix

    torchvision_fix.apply()
    from cacpipe.config import SegmentSettings
    from cacpipe.segment import read_model, segment
    from cacpipe.volume import Volume

    from .runner import prepare_data
    from .stages import Context, heart_crop_for_bench
    from .stages_nnunet import write_random_paper_model

    root = Path(tempfile.mkdtemp())
    model = read_model(write_random_paper_model(root, 1))
    ctx = Context(prepare_data(root / "data", True), True, "cpu")
    crop = heart_crop_for_bench(ctx, model.spacing_zyx)
    patch = (112, 128, 160)
    sl = tuple(slice(max(0, (s - p) // 2), max(0, (s - p) // 2) + p) for s, p in zip(crop.shape, patch, strict=True))
    ct = Volume(np.ascontiguousarray(crop.array[sl]), crop.spacing_zyx, crop.origin_xyz, crop.direction)
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        t0 = time.perf_counter()
        out[name] = (segment(ct, model, SegmentSettings(folds=(0,), bf16=bf16), "cpu").labels.array,
                     time.perf_counter() - t0)
    return {"input_zyx": list(ct.shape), "fp32_s": out["fp32"][1], "bf16_s": out["bf16"][1],
            **_agreement(out["fp32"][0], out["bf16"][0])}


def summarise(per: dict) -> list[str]:
    lines = ["| variant | studies | median seg s | min voxel agreement | min foreground agreement "
             "| calcium voxels differing (of reference) | max Agatston diff per artery | categories changed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in per.items():
        if not rows:
            continue
        lines.append(f"| {name} | {len(rows)} | {statistics.median(r['seconds'] for r in rows):.1f} "
                     f"| {min(r['voxels'] for r in rows):.6f} | {min(r['foreground'] for r in rows):.5f} "
                     f"| {sum(r['calcium_voxels_differing'] for r in rows)} "
                     f"({sum(r['calcium_voxels_reference'] for r in rows)}) "
                     f"| {max(r['max_agatston_diff'] for r in rows):.2f} | {sum(r['category_changed'] for r in rows)} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devtools.bench.precision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--out", type=Path, default=Path("bench_out/precision"))
    p.add_argument("--paper", action="store_true", help="also bf16 vs fp32 on the random paper network")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    per = demo_model_rows(a.out, a.studies)
    lines = ["# Stage-2 settings against fp32 (demo model, held-out phantoms)", "",
             f"Command: `python -m devtools.bench.precision {' '.join(argv or [])}`".rstrip(), "", *summarise(per)]
    payload: dict = {"demo": per}
    if a.paper:
        payload["paper"] = pr = paper_rows()
        lines += ["", "Paper architecture, random weights, one fold, one patch: bf16 vs fp32 voxel agreement "
                  f"{pr['voxels']:.6f}, foreground {pr['foreground']:.5f} ({pr['foreground_voxels']} voxels), "
                  f"{pr['fp32_s']:.1f} s fp32, {pr['bf16_s']:.1f} s bf16"]
    (a.out / "precision.json").write_text(json.dumps(payload, indent=1, default=str))
    (a.out / "precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
