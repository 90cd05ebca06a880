"""``make bench BENCH_ARGS="--e2e --preset clinical"``: clinical-size studies end to end, cold and warm.

The cohort (written once under OUT/e2e_data/clinical): two v2 phantoms on the 512 x 512 clinical
grid, benchmark (held-out) seeds with calcium, no contrast, no extra series:

- ``thin``: 0.625 mm slices, 550 slices (a modern thin-slice chest protocol, 344 mm);
- ``thick``: 3 mm slices, 110 slices (the classic calcium-scoring reconstruction).

In one fresh Python process the studies are scanned one at a time with ``cacpipe.scan.run_scan``
(the function behind ``cacpipe scan``: jobs=1, demo model when no model is installed, fallback
heart locator, review and DICOM outputs on), ``--passes`` times over (default 3). Pass 1 is the
cold start (imports, model loading) for its first study; passes 2.. are warm and their median is
reported. Per study and pass: the pipeline's stage seconds (``load`` from the scan manifest, the
others from result.json's ``pipeline.seconds``), the worker's total, and the peak resident memory
of the process while that study ran (sampled every 20 ms). OUT/e2e.md and OUT/e2e.json hold the
table; the ratio to the previous run of the same command comes from OUT/e2e_history.json.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .e2e import STAGES, _f, ratio_lines, scan_settings, study_records, write_report

# name -> (held-out seed offset, acquisition overrides). Seeds 900008 and 900004 draw plaques.
STUDIES: dict[str, tuple[int, dict]] = {
    "thin": (8, {"slice_thickness_mm": 0.625, "slice_spacing_mm": 0.625, "n_slices": 550}),
    "thick": (4, {"slice_thickness_mm": 3.0, "slice_spacing_mm": 3.0, "n_slices": 110}),
}


def prepare_clinical(root: Path) -> dict[str, Path]:
    """The two studies' exports (written once): name -> export folder holding that study only."""
    from cacpipe.phantom import seeds
    from cacpipe.phantom.cohort import write_cohort

    out = {}
    for name, (offset, acq) in STUDIES.items():
        data = root / "clinical" / name
        if not (data / ".ready").exists():
            shutil.rmtree(data, ignore_errors=True)
            write_cohort(1, data, seeds=[seeds.HELDOUT.start + offset], preset="v2", extras=False,
                         acquisition={"contrast_phase": "none", **acq})
            (data / ".ready").touch()
        out[name] = data / "export"
    return out


def run_child(exports: dict[str, str], out: Path, settings: dict, passes: int) -> dict:
    """In this (fresh) process: scan each study ``passes`` times; per study and pass the raw record."""
    import torch

    from cacpipe.config import Settings
    from cacpipe.scan import run_scan

    from .measure import _Sampler

    shutil.rmtree(out, ignore_errors=True)
    cuda = torch.cuda.is_available() and str(settings.get("device", "")).startswith(("cuda", "auto"))
    rows = []
    for p in range(passes):
        for name, export in exports.items():
            dest = out / f"pass{p + 1}" / name
            sampler = _Sampler(0.02)
            sampler.start()
            t0 = time.perf_counter()
            try:
                summary = run_scan(Path(export), dest, settings=Settings.from_dict(settings), progress=False,
                                   force=True)
            finally:
                peak = sampler.stop()
            rec = study_records(dest)
            rows.append({"pass": p + 1, "study": name, "wall_s": time.perf_counter() - t0,
                         "peak_rss_mb": peak / 2**20, "failed": summary.failed,
                         "record": rec[0] if rec else None})
            if p + 1 < passes:  # keep the disk use of a long run bounded
                shutil.rmtree(dest, ignore_errors=True)
    return {"rows": rows, "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}


def summarise(raw: dict) -> dict:
    """Per study: cold (pass 1) and warm (median of passes 2..) stage seconds and peak RSS."""
    out: dict = {}
    for name in STUDIES:
        rows = [r for r in raw["rows"] if r["study"] == name and r["record"] and r["record"]["status"] == "done"]
        if not rows:
            out[name] = {"error": "no pass finished"}
            continue

        def split(r: dict) -> dict:
            st = r["record"]["stages"]
            s = {k: st.get(k) for k in [*STAGES, *sorted(set(st) - set(STAGES))] if st.get(k) is not None}
            s["other"] = max(0.0, (r["record"]["total"] or 0.0) - sum(s.values()))
            s["total"] = r["record"]["total"]
            s["peak_rss_mb"] = r["peak_rss_mb"]
            return s

        splits = [split(r) for r in rows]
        warm = splits[1:]
        out[name] = {"cold": splits[0], "warm_n": len(warm),
                     "warm_median": {k: statistics.median(s[k] for s in warm if k in s)
                                     for k in splits[0] if any(k in s for s in warm)},
                     "warm_all_total": [s["total"] for s in warm]}
    return out


def ratios_to(previous: dict | None, now: dict) -> dict:
    """now / previous, per study: warm total, warm peak RSS and each warm stage."""
    if not previous:
        return {}
    out = {}
    for name, s in now.items():
        p = (previous.get("studies") or {}).get(name) or {}
        for k, v in (s.get("warm_median") or {}).items():
            b = (p.get("warm_median") or {}).get(k)
            out[f"{name} warm {k}"] = v / b if v is not None and b else None
        c, b = (s.get("cold") or {}).get("total"), (p.get("cold") or {}).get("total")
        out[f"{name} cold total"] = c / b if c is not None and b else None
    return out


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def report_lines(s: dict, ratios: dict, command: str, info: dict, previous_date: str | None) -> list[str]:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    studies = s["studies"]
    lines = [f"# cacpipe end-to-end benchmark, clinical-size studies ({s['date']})", "",
             f"Command: `{command}`  ",
             f"Machine: {info.get('cpu')} ({info.get('cores')} cores){gpu}, torch {info.get('torch')}; "
             f"load average {s['load_before']} before, {s['load_after']} after  ",
             f"Settings: {s['settings_note']}", "",
             "Seconds per stage; cold = pass 1, warm = median of passes 2.. (peak RSS: the process while "
             "that study ran, MB).", ""]
    head = "| stage | " + " | ".join(f"{n} cold | {n} warm" for n in studies) + " |"
    lines += [head, "|---|" + "---:|" * (2 * len(studies))]
    keys: list[str] = []
    for st in studies.values():
        keys += [k for k in (st.get("cold") or {}) if k not in keys]
    for k in keys:
        cells = []
        for st in studies.values():
            nd = 0 if k == "peak_rss_mb" else 2
            cells += [_f((st.get("cold") or {}).get(k), nd), _f((st.get("warm_median") or {}).get(k), nd)]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    for name, st in studies.items():
        if st.get("warm_all_total"):
            lines.append(f"\n{name}: warm totals of each pass: "
                         + ", ".join(f"{t:.2f}" for t in st["warm_all_total"]) + " s")
    return lines + ratio_lines(ratios, previous_date)


def run_clinical(out: Path, device: str, review: bool, folds: list[int] | None, argv: list[str],
                 segment: dict | None = None, passes: int = 3) -> Path:
    """Prepare the two studies, scan them in a fresh process, write OUT/e2e.md and OUT/e2e.json."""
    from .runner import REPO

    out.mkdir(parents=True, exist_ok=True)
    exports = prepare_clinical(out / "e2e_data")
    settings = scan_settings(device, review, folds, segment)
    cmd = [sys.executable, "-m", "devtools.bench.clinical", json.dumps({k: str(v) for k, v in exports.items()}),
           str(out / "e2e_scan"), json.dumps(settings), str(passes)]
    load_before = _load()
    print(f"[bench] e2e: scanning the clinical-size studies, {passes} passes ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"the e2e scan failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    command = " ".join(["python -m devtools.bench", *argv])
    s = {"studies": summarise(raw), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command,
         "settings": settings, "load_before": load_before, "load_after": _load(), "passes": passes,
         "settings_note": f"preset clinical ({', '.join(f'{n}: {a}' for n, (_, a) in STUDIES.items())}), "
                          f"device {device}, review {'on' if review else 'off'}, folds {folds or 'all'}, jobs 1"
                          + "".join(f", segment.{k} {v}" for k, v in (segment or {}).items())}
    return write_report(out, command, s, raw, lambda prev: ratios_to(prev, s["studies"]), report_lines)


if __name__ == "__main__":  # child: python -m devtools.bench.clinical EXPORTS_JSON OUT SETTINGS_JSON PASSES
    record = run_child(json.loads(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]))
    print(json.dumps(record, default=str))
