"""``make bench`` / ``python -m devtools.bench``: per-stage time and peak memory, as markdown + JSON.

Each stage runs in its own Python process (fresh peak-memory accounting); results are gathered
here, ratios computed, and the table written to OUT/bench.md and OUT/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import stages

REPO = Path(__file__).resolve().parents[2]

# name -> (function, what it measures); order = pipeline order.
STAGES: dict[str, tuple] = {
    "discover_load": (stages.stage_discover_load, "DICOM discovery + volume assembly (cacpipe.ingest)"),
    "dcm2niix": (stages.stage_dcm2niix, "same series with dcm2niix (reference)"),
    "resample": (stages.stage_resample, "resample whole CT to 0.8 x 0.73 x 0.73 mm"),
    "heart_fallback": (stages.stage_heart_fallback, "stage 1, fallback locator (mask + resample + crop + QC)"),
    "heart_totalseg": (stages.stage_heart_totalseg, "stage 1, TotalSegmentator code path, stand-in weights"),
    "quantify": (stages.stage_quantify, "quantification, 512x512x400 (vectorised)"),
    "agatston_reference": (stages.stage_agatston_reference, "per-slice loop Agatston reference, same scan"),
    "review": (stages.stage_review, "overlays + HTML + DICOM SEG/SR/SC"),
    "review_page": (stages.stage_review_page, "review page opened in headless Chromium (basic viewer)"),
    "review_page_niivue": (stages.stage_review_page_niivue, "same page, NiiVue on software WebGL (SwiftShader)"),
}


def device_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def prepare_data(data: Path, quick: bool) -> Path:
    """The phantom study all stages share: thin preset (512x512, 1 mm), 300 slices (quick) or 400."""
    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    n = 300 if quick else 400
    marker = data / f".ready-{n}"
    if not marker.exists():
        write_phantom(PhantomConfig.preset("thin", n_slices=n), data)
        marker.touch()
    return data


def run_stage(name: str, data: Path, quick: bool, device: str, timeout_s: int = 1800) -> dict:
    cmd = [sys.executable, "-m", "devtools.bench.runner", "--stage", name, "--data", str(data), "--device", device]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    # Run from the repository root: devtools is not an installed package.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"stage": name, "error": tail[0], "wall_s": time.perf_counter() - t0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_report(rows: list[dict], ratios: dict, info: dict, out: Path, args: list[str]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"device": info, "command": " ".join(args), "stages": rows, "ratios": ratios,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "bench.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = [f"# cacpipe benchmark ({payload['date']})", "",
             f"Command: `{payload['command']}`  ", f"Machine: {info.get('cpu')} ({info.get('cores')} cores)"
             + (f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU") + f", torch {info.get('torch')}", "",
             "| stage | what | seconds | peak RSS (MB) | +RSS (MB) | notes |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        notes = r.get("error") or ", ".join(f"{k}={v}" for k, v in (r.get("details") or {}).items())
        lines.append(f"| {r['stage']} | {r.get('what', '')} | {_fmt(r.get('seconds'))} | {_fmt(r.get('peak_rss_mb'), 0)} "
                     f"| {_fmt(r.get('delta_rss_mb'), 0)} | {notes} |")
    lines += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {_fmt(v)} |" for k, v in ratios.items()]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    return out / "bench.md", out / "bench.json"


def ratios_of(rows: list[dict]) -> dict:
    by = {r["stage"]: r.get("seconds") for r in rows}
    out = {}

    def ratio(name, a, b):
        if by.get(a) and by.get(b) and by[a] == by[a] and by[b] == by[b]:
            out[name] = by[a] / by[b]

    ratio("ingestion: cacpipe / dcm2niix (time)", "discover_load", "dcm2niix")
    ratio("Agatston: per-slice loop / vectorised (speed-up)", "agatston_reference", "quantify")
    ratio("nnU-Net: 5 folds / 1 fold", "nnunet_5fold_fp32", "nnunet_1fold_fp32")
    ratio("nnU-Net: mirroring / none", "nnunet_1fold_mirror", "nnunet_1fold_fp32")
    ratio("nnU-Net: fp32 / bf16 (speed-up)", "nnunet_1fold_fp32", "nnunet_1fold_bf16")
    ratio("nnU-Net 5 folds: fp32 / bf16 (speed-up)", "nnunet_5fold_fp32", "nnunet_5fold_bf16")
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="Smaller work (a few minutes on 2 CPU cores).")
    p.add_argument("--out", type=Path, default=Path("bench_out"), help="Where bench.md / bench.json go.")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--only", nargs="*", default=None, help="Run only these stages.")
    p.add_argument("--e2e", action="store_true",
                   help="End-to-end mode: scan a phantom cohort through cacpipe scan's runner (devtools/bench/e2e.py).")
    p.add_argument("--studies", type=int, default=4, help="--e2e: studies in the cohort (first = cold start).")
    p.add_argument("--preset", default="v2-small",
                   help="--e2e: v2 phantom preset (v2-small, v2, v2-bench), or clinical: one 0.625 mm study of "
                        "550 slices and one 3 mm study on 512 x 512, each scanned --passes times (devtools/bench/clinical.py).")
    p.add_argument("--passes", type=int, default=3, help="--e2e --preset clinical: scans of each study (first = cold).")
    p.add_argument("--no-review", action="store_true", help="--e2e: without review page, overlays and DICOM outputs.")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="--e2e: subset of the model's folds.")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                   help="--e2e: segment.bf16 false / true [default: the setting's default, bf16 on native-bf16 CPUs].")
    p.add_argument("--tile-step", type=float, default=None, help="--e2e: segment.tile_step_size (default 0.5).")
    p.add_argument("--tile-batch", type=int, default=None, help="--e2e: segment.tile_batch (default: automatic).")
    p.add_argument("--pipeline", action="store_true", help="--e2e: the pipelined runner (cacpipe scan --pipeline).")
    p.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage in this process
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    device = a.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.stage:  # child process: one stage, one JSON line on stdout
        fn, what = all_stages()[a.stage]
        m = fn(stages.Context(a.data, a.quick, device))
        print(json.dumps({"stage": a.stage, "what": what, **asdict(m)}, default=str))
        return
    if a.e2e:
        from .e2e import run_e2e

        bf16 = None if a.precision is None else a.precision == "bf16"
        seg = {k: v for k, v in (("bf16", bf16), ("tile_step_size", a.tile_step),
                                 ("tile_batch", a.tile_batch)) if v is not None}
        if a.preset == "clinical":
            from .clinical import run_clinical

            run_clinical(a.out, device, not a.no_review, a.folds, argv, segment=seg, passes=a.passes)
            return
        run_e2e(a.out, a.studies, a.preset, device, not a.no_review, a.folds, argv, segment=seg, pipelined=a.pipeline)
        return
    names = a.only or list(all_stages())
    # The shared study costs minutes to write: only when a chosen stage reads it.
    data = a.out / "data" if set(names) <= stages.OWN_DATA else prepare_data(a.out / "data", a.quick)
    rows = []
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        r = run_stage(name, data, a.quick, device)
        r.setdefault("what", all_stages()[name][1])
        rows.append(r)
        print(f"[bench] {name}: {_fmt(r.get('seconds'))} s {r.get('error', '')}", file=sys.stderr, flush=True)
    md, js = write_report(rows, ratios_of(rows), device_info(), a.out, ["python -m devtools.bench", *argv])
    print(md.read_text())
    print(f"written: {md} {js}")


def all_stages() -> dict:
    """Pipeline stages plus the nnU-Net inference variants (stages_nnunet) and the phantom stages."""
    from .stages_nnunet import NNUNET_STAGES
    from .stages_phantom import PHANTOM_STAGES

    return {**STAGES, **NNUNET_STAGES, **PHANTOM_STAGES}


if __name__ == "__main__":
    main()
