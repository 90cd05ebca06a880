"""``make bench BENCH_ARGS=--e2e``: a phantom cohort through ``cacpipe scan``'s runner, end to end.

What it reports (OUT/e2e.md, OUT/e2e.json):

- per-stage seconds per study, the median over the warm studies (every study after the first) and
  the first study (cold start: imports, model loading, CUDA start). The stage split is the
  pipeline's own: ``load`` from the scan manifest (series assembly in the worker) and
  ``heart_crop``, ``segmentation``, ``uncrop``, ``quantification``, ``write``, ``review`` from each
  result.json's ``pipeline.seconds`` (cacpipe.pipeline.Laps); ``other`` is what the worker spent
  outside them (result.json, moving the folder into place);
- the scan's wall time, its planning part (discovery, grouping, selection: wall time minus the
  studies), studies per minute over the whole scan;
- peak resident memory of the scanning process (sampled) and, when CUDA is used, peak GPU memory;
- the ratio to the previous run of the same command (kept in OUT/e2e_history.json).

The scan runs in a fresh Python process so that the first study's cold start is real.
Data: ``cacpipe.phantom.cohort.write_cohort`` (v2 phantoms, benchmark seed range, no extra series,
no contrast), written once per (preset, size) under OUT/e2e_data.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("load", "heart_crop", "segmentation", "uncrop", "postprocess", "quantification", "write", "review")
HISTORY = "e2e_history.json"


def prepare_cohort(root: Path, n: int, preset: str) -> Path:
    """The phantom export (written once): ``n`` v2 studies of ``preset``; returns the export folder."""
    from cacpipe.phantom.cohort import write_cohort

    data = root / f"{preset}-{n}"
    marker = data / ".ready"
    if not marker.exists():
        write_cohort(n, data, preset=preset, extras=False, acquisition={"contrast_phase": "none"})
        marker.touch()
    return data / "export"


def scan_settings(device: str, review: bool, folds: list[int] | None, segment: dict | None = None) -> dict:
    """The settings tree of the benchmarked scan: the demo model when no model is installed, the
    fallback heart locator (TotalSegmentator weights are not installed here), review as asked;
    ``segment``: further stage-2 settings (e.g. ``{"bf16": True}``)."""
    seg: dict = {"allow_demo_model": True, **(segment or {})}
    if folds:
        seg["folds"] = list(folds)
    return {"device": device, "heart": {"method": "fallback"}, "segment": seg,
            "review": {"enabled": review}}


def run_child(export: Path, out: Path, settings: dict, pipelined: bool = False) -> dict:
    """In this (fresh) process: scan ``export`` into ``out`` (jobs=1, pipelined or not) and return the raw record."""
    import shutil

    from cacpipe.config import Settings
    from cacpipe.scan import run_scan

    from .measure import _Sampler

    shutil.rmtree(out, ignore_errors=True)
    import torch

    cuda = torch.cuda.is_available() and str(settings.get("device", "")).startswith(("cuda", "auto"))
    sampler = _Sampler(0.02)
    sampler.start()
    t0 = time.perf_counter()
    try:
        summary = run_scan(export, out, settings=Settings.from_dict(settings), progress=False, force=True,
                           pipelined=pipelined)
    finally:
        peak = sampler.stop()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "peak_rss_mb": peak / 2**20,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "studies": study_records(out), "failed": summary.failed, "pipelined": pipelined}


def study_records(out: Path) -> list[dict]:
    """Per study, in the order they ran: status, worker seconds and the pipeline's stage seconds."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for key, e in manifest["studies"].items():
        if e.get("status") not in ("done", "failed") or not e.get("seconds"):
            continue
        stages = {"load": e["seconds"].get("load")}
        if e.get("result"):
            result = json.loads((out / e["result"]).read_text())
            stages.update((result.get("pipeline") or {}).get("seconds") or {})
        rows.append({"key": key, "status": e["status"], "started": e.get("started") or "",
                     "total": e["seconds"].get("total"), "stages": stages})
    rows.sort(key=lambda r: r["started"])  # stable: manifest order (= run order with jobs=1) within a second
    return rows


def summarise(raw: dict) -> dict:
    """Cold (first study) and warm (median of the rest) stage seconds, throughput, memory."""
    done = [r for r in raw["studies"] if r["status"] == "done"]
    out: dict = {"studies": len(raw["studies"]), "done": len(done), "wall_s": raw["wall_s"],
                 "peak_rss_mb": raw["peak_rss_mb"], "peak_gpu_mb": raw.get("peak_gpu_mb")}
    out["studies_per_min"] = 60.0 * len(done) / raw["wall_s"] if raw["wall_s"] > 0 else None
    # Pipelined, the studies overlap: their seconds do not add up to the wall time.
    out["planning_s"] = None if raw.get("pipelined") else raw["wall_s"] - sum(r["total"] or 0.0 for r in raw["studies"])
    names = list(STAGES) + sorted({k for r in done for k in r["stages"]} - set(STAGES))

    def split(r: dict) -> dict:
        s = {k: r["stages"].get(k) for k in names if r["stages"].get(k) is not None}
        s["other"] = max(0.0, (r["total"] or 0.0) - sum(s.values()))
        s["total"] = r["total"]
        return s

    splits = [split(r) for r in done]
    out["cold"] = splits[0] if splits else {}
    warm = splits[1:]
    out["warm_n"] = len(warm)
    out["warm_median"] = {k: statistics.median(s[k] for s in warm if k in s)
                          for k in (splits[0] if splits else {}) if any(k in s for s in warm)}
    return out


def ratios_to(previous: dict | None, now: dict) -> dict:
    """now / previous for the headline figures (None where either is missing)."""
    if not previous:
        return {}

    def r(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    pairs = {"warm total": (now["warm_median"].get("total"), previous["warm_median"].get("total")),
             "cold total": (now["cold"].get("total"), previous["cold"].get("total")),
             "studies per minute": (now["studies_per_min"], previous["studies_per_min"]),
             "peak RSS": (now["peak_rss_mb"], previous["peak_rss_mb"])}
    pairs.update({f"warm {k}": (v, previous["warm_median"].get(k)) for k, v in now["warm_median"].items()
                  if k != "total"})
    return {k: r(a, b) for k, (a, b) in pairs.items()}


def _f(v, nd=2) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def report_lines(s: dict, ratios: dict, command: str, info: dict, previous_date: str | None) -> list[str]:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    lines = [f"# cacpipe end-to-end benchmark ({s['date']})", "", f"Command: `{command}`  ",
             f"Machine: {info.get('cpu')} ({info.get('cores')} cores){gpu}, torch {info.get('torch')}  ",
             f"Studies: {s['done']} done of {s['studies']} ({s['settings_note']})", "",
             "| stage | cold (first study) s | warm median s |", "|---|---:|---:|"]
    for k in s["cold"]:
        lines.append(f"| {k} | {_f(s['cold'].get(k))} | {_f(s['warm_median'].get(k))} |")
    lines += ["", f"- warm studies in the median: {s['warm_n']}",
              f"- scan wall time {_f(s['wall_s'], 1)} s, of which planning (discovery, grouping, selection) "
              f"{_f(s['planning_s'], 1)} s",
              f"- studies per minute: {_f(s['studies_per_min'])}",
              f"- peak RSS of the scanning process: {_f(s['peak_rss_mb'], 0)} MB",
              f"- peak GPU memory: {_f(s['peak_gpu_mb'], 0) + ' MB' if s['peak_gpu_mb'] is not None else 'no CUDA'}"]
    return lines + ratio_lines(ratios, previous_date)


def ratio_lines(ratios: dict, previous_date) -> list[str]:
    """The report's closing lines: each figure's ratio to the previous run of the same command."""
    if not ratios:
        return ["", "No previous run of this command in this output folder."]
    return (["", f"Ratio to the previous run of this command ({previous_date}): now / before "
             "(< 1 is faster for times)", "", "| figure | ratio |", "|---|---:|"]
            + [f"| {k} | {_f(v)} |" for k, v in ratios.items()])


def write_report(out: Path, command: str, s: dict, raw, ratios_of, report_lines) -> Path:
    """OUT/e2e.md and OUT/e2e.json for summary ``s``, with the ratios to the previous run of the same
    command (``ratios_of(previous)``, from OUT's history, which ``s`` then joins); prints the report."""
    from .runner import device_info

    hist_path = out / HISTORY
    history = json.loads(hist_path.read_text()) if hist_path.exists() else {}
    previous = history.get(command)
    ratios = ratios_of(previous)
    info = device_info()
    lines = report_lines(s, ratios, command, info, previous and previous.get("date"))
    (out / "e2e.md").write_text("\n".join(lines) + "\n")
    (out / "e2e.json").write_text(json.dumps({**s, "device": info, "ratios_to_previous": ratios, "raw": raw},
                                             indent=2, default=str))
    history[command] = s
    hist_path.write_text(json.dumps(history, indent=2, default=str))
    print("\n".join(lines))
    print(f"written: {out / 'e2e.md'} {out / 'e2e.json'}")
    return out / "e2e.md"


def run_e2e(out: Path, n: int, preset: str, device: str, review: bool, folds: list[int] | None,
            argv: list[str], segment: dict | None = None, pipelined: bool = False) -> Path:
    """Prepare the cohort, scan it in a fresh process, write OUT/e2e.md and OUT/e2e.json."""
    from .runner import REPO

    out.mkdir(parents=True, exist_ok=True)
    export = prepare_cohort(out / "e2e_data", n, preset)
    settings = scan_settings(device, review, folds, segment)
    cmd = [sys.executable, "-m", "devtools.bench.e2e", str(export), str(out / "e2e_scan"), json.dumps(settings),
           "pipelined" if pipelined else "serial"]
    print(f"[bench] e2e: scanning {n} {preset} phantom studies ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"the e2e scan failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    s = summarise(raw)
    command = " ".join(["python -m devtools.bench", *argv])
    s.update(date=time.strftime("%Y-%m-%d %H:%M:%S"), command=command, settings=settings,
             settings_note=f"preset {preset}, device {device}, review {'on' if review else 'off'}, "
                           f"folds {folds or 'all'}, jobs 1{', pipelined' if pipelined else ''}"
                           + "".join(f", segment.{k} {v}" for k, v in (segment or {}).items()))
    return write_report(out, command, s, raw, lambda prev: ratios_to(prev, s), report_lines)


if __name__ == "__main__":  # child: python -m devtools.bench.e2e EXPORT OUT SETTINGS_JSON [pipelined|serial]
    record = run_child(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]),
                       pipelined=sys.argv[4:5] == ["pipelined"])
    print(json.dumps(record, default=str))
