"""Progression on held-out phantom follow-ups: generate, scan with ``cacpipe scan``, score.

    python -m devtools.progression_check --patients 5 --out build/progression_check [--follow-up 0 2]
                                         [--preset v2-small] [--motion] [--model demo]
                                         [--first-seed 20000 --purpose training]   # dev seeds to fix on

Patients: the first held-out seeds from 900400 up (cacpipe.phantom.seeds ``heldout``: never used
for training) whose baseline has coronary calcium of a detectable size (a focal, ostial,
bifurcation or diffuse plaque over 1 mm thick) and no stent, device, prosthetic valve or graft.
Each gets its baseline, a rescan (``--follow-up 0``: the repeatability case) and later studies
(default 2 years). Non-contrast, still hearts unless ``--motion`` (the generator's motion).
The export is scanned by a ``cacpipe scan`` subprocess (review outputs off, the demo model
allowed), then ``cacpipe.progression`` runs on the results and ``cacpipe.evaluation.progression``
scores it. Prints and writes ``OUT/progression_check.json`` (and the progression outputs in
``OUT/progression``): lesion-matching accuracy, false new lesions per pair, per-artery error of
the annualised change, rescan repeatability, registration seconds per pair.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cacpipe.phantom import seeds as seed_ranges
from cacpipe.phantom.v2 import random_config

FIRST_SEED = 900400
THICK_KINDS = ("focal", "ostial", "bifurcation", "diffuse")


def eligible(seed: int, preset: str) -> bool:
    """A baseline with a plaque of detectable size and no metal or graft near the arteries."""
    c = random_config(seed, preset)
    f = c.findings
    if f.stents or f.device != "none" or f.prosthetic_valve != "none" or f.cabg:
        return False
    return any(p.kind in THICK_KINDS and p.thickness_mm > 1.0 for p in c.plaques)


def pick_seeds(n: int, preset: str, first: int = FIRST_SEED, purpose: str = "heldout") -> list[int]:
    out, s = [], first
    while len(out) < n:
        if eligible(s, preset):
            out.append(s)
        s += 1
    seed_ranges.require(out, purpose)
    return out


def scan(export: Path, results: Path, model: str | None) -> float:
    settings = {"segment": {"allow_demo_model": True}, "review": {"enabled": False}}
    sf = results.parent / "scan_settings.json"
    sf.write_text(json.dumps(settings))
    cmd = [sys.executable, "-m", "cacpipe", "scan", str(export), "--out", str(results), "--settings", str(sf),
           "--no-progress"] + (["--model", model] if model else [])
    t = time.perf_counter()
    subprocess.run(cmd, check=False)  # a failed study is reported by the scan; the check scores what is done
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("build/progression_check"))
    ap.add_argument("--follow-up", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--preset", default="v2-small")
    ap.add_argument("--motion", action="store_true", help="keep the generator's cardiac motion (default: still)")
    ap.add_argument("--model", default=None, help="cacpipe scan --model (default: the installed or demo model)")
    ap.add_argument("--first-seed", type=int, default=FIRST_SEED)
    ap.add_argument("--purpose", choices=("heldout", "training"), default="heldout",
                    help="seed range (cacpipe.phantom.seeds): heldout for figures; training (e.g. --first-seed "
                         "20000: seeds the demo model never saw) to develop matching on, never heldout")
    a = ap.parse_args(argv)

    from cacpipe.evaluation.progression import evaluate_progression, summary_lines
    from cacpipe.phantom.cohort import write_cohort
    from cacpipe.progression.report import write_outputs
    from cacpipe.progression.run import run_progression

    cohort, results = a.out / "cohort", a.out / "results"
    seeds = pick_seeds(a.patients, a.preset, a.first_seed, a.purpose)
    acq = {"contrast_phase": "none"} | ({} if a.motion else {"motion_scale": 0.0})
    t = time.perf_counter()
    if not (cohort / "progression_truth.json").exists():
        write_cohort(len(seeds), cohort, seeds=seeds, preset=a.preset, purpose=a.purpose, extras=False,
                     follow_up=a.follow_up, acquisition=acq)
    t_gen = time.perf_counter() - t
    results.mkdir(parents=True, exist_ok=True)
    t_scan = scan(cohort / "export", results, a.model)
    t = time.perf_counter()
    doc = run_progression(results)
    t_prog = time.perf_counter() - t
    doc["evaluation"] = evaluate_progression(doc, results, cohort)
    write_outputs(doc, a.out / "progression")
    report = {"seeds": seeds, "preset": a.preset, "follow_up": a.follow_up, "motion": a.motion,
              "seconds": {"generate": round(t_gen, 1), "scan": round(t_scan, 1), "progression": round(t_prog, 1)},
              "evaluation": {k: v for k, v in doc["evaluation"].items() if k != "per_pair"},
              "per_pair": doc["evaluation"]["per_pair"]}
    (a.out / "progression_check.json").write_text(json.dumps(report, indent=2))
    print(f"seeds {seeds} ({a.preset}, follow-ups {a.follow_up} y, {'motion' if a.motion else 'still hearts'})")
    print(f"generate {t_gen:.0f} s, scan {t_scan:.0f} s, progression {t_prog:.0f} s")
    for line in summary_lines(doc["evaluation"]):
        print(line)
    print(f"written: {a.out / 'progression_check.json'}")
    return report


if __name__ == "__main__":
    main()
