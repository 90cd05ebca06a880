"""Benchmark stages: each prepares its inputs (untimed), then times one piece of the pipeline.

Every stage is a function ``stage(ctx) -> Measurement`` run in a fresh process by runner.py.
``ctx`` holds the data folder (a phantom study written once by the runner), the mode and device.
Data: the ``thin`` phantom preset (512 x 512, >= 300 slices at 1 mm), a realistic chest CT size.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .measure import Measurement, measure


@dataclass
class Context:
    data: Path  # written by runner.prepare_data
    quick: bool
    device: str  # "cpu" or "cuda"


def _series_dir(ctx: Context) -> Path:
    return next(p for p in (ctx.data / "dicom").rglob("*_axial") if p.is_dir())


def _load(ctx: Context):
    from cacpipe.volume import Volume

    return Volume.read(ctx.data / "ct.nii.gz")


def stage_discover_load(ctx: Context) -> Measurement:
    """DICOM discovery (header-only reads) and volume assembly of the axial series."""
    from cacpipe.ingest import discover, group_studies, load_series, select_series

    def run():
        with tempfile.TemporaryDirectory() as work:
            disc = discover(ctx.data / "dicom", Path(work))
            studies, _ = group_studies(disc.headers)
            vol = load_series(select_series(studies[0]).selected).volume
        return {"files": len(disc.headers), "shape_zyx": list(vol.shape)}

    return measure(run)


def stage_dcm2niix(ctx: Context) -> Measurement:
    """The same series through dcm2niix (Debian package), the common reference converter."""
    exe = shutil.which("dcm2niix")
    if exe is None:
        return Measurement(float("nan"), float("nan"), float("nan"),
                           {"skipped": "dcm2niix not installed (apt-get install dcm2niix)"})
    src = _series_dir(ctx)

    def run():
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([exe, "-z", "n", "-b", "n", "-o", out, "-f", "ct", str(src)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {"version": subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()[:60]}

    return measure(run)


def stage_resample(ctx: Context) -> Measurement:
    """Resampling the whole CT to the paper's training spacing (0.8, 0.73, 0.73) mm."""
    from cacpipe.heart import resample_to_spacing
    from cacpipe.units import PAPER_SPACING_ZYX

    ct = _load(ctx)
    return measure(lambda: {"shape_zyx": list(resample_to_spacing(ct, PAPER_SPACING_ZYX, is_label=False).shape)})


def stage_heart_fallback(ctx: Context) -> Measurement:
    """Stage 1 with the classical fallback locator (heart mask, resample, crop, QC)."""
    from cacpipe.config import HeartMethod, HeartSettings
    from cacpipe.heart import heart_crop

    ct = _load(ctx)
    cfg = HeartSettings(method=HeartMethod.FALLBACK)
    return measure(lambda: {"cropped_shape_zyx": list(heart_crop(ct, cfg).cropped_ct.shape)})


def stage_heart_totalseg(ctx: Context) -> Measurement:
    """Stage 1 through TotalSegmentator's real code path with stand-in models (tiny random networks).

    Times TotalSegmentator's own pre/post-processing and nnU-Net plumbing; the real networks cost
    more (published: 77 s at 1.5 mm on an RTX 3090 for a 512x512x280 scan).
    """
    from cacpipe.config import HeartMethod, HeartSettings
    from cacpipe.heart import heart_crop
    from devtools.standin import write_standin_home

    ct = _load(ctx)
    home = write_standin_home(Path(tempfile.mkdtemp()) / "totalseg", fast=ctx.quick)
    cfg = HeartSettings(method=HeartMethod.TOTALSEGMENTATOR, fast=ctx.quick, totalseg_home=str(home))
    m = measure(lambda: {"method": heart_crop(ct, cfg, device=ctx.device).method, "fast": ctx.quick,
                         "weights": "stand-in (random)"})
    shutil.rmtree(home.parent, ignore_errors=True)
    return m


# Stages that make their own scan (no shared study from runner.prepare_data).
OWN_DATA = frozenset({"quantify", "agatston_reference"})


def _quant_slices(ctx: Context) -> int:
    """The quantification scan's length: 400 slices, 120 with --quick (same 512 x 512 in-plane grid)."""
    return 120 if ctx.quick else 400


def stage_quantify(ctx: Context) -> Measurement:
    """Quantification of a 512 x 512 x 400 scan (vectorised Agatston, volume, lesions, grades)."""
    from cacpipe.phantom import PhantomConfig, generate
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import total_of

    ph = generate(PhantomConfig.preset("thin", n_slices=_quant_slices(ctx), noise_hu=0))
    return measure(lambda: {"total_agatston": total_of(quantify(ph.ct, ph.labels).arteries).agatston,
                            "shape_zyx": list(ph.ct.shape)}, repeat=1 if ctx.quick else 3)


def stage_agatston_reference(ctx: Context) -> Measurement:
    """The straightforward per-slice loop reference (cacpipe.phantom.truth) on the same scan."""
    from cacpipe.labels import CALCIUM_IDS
    from cacpipe.phantom import PhantomConfig, agatston_reference, generate

    ph = generate(PhantomConfig.preset("thin", n_slices=_quant_slices(ctx), noise_hu=0))
    lab = ph.labels.array
    return measure(lambda: {"total_agatston": sum(
        agatston_reference(ph.ct.array, lab == cid, ph.ct.spacing_zyx) for cid in CALCIUM_IDS)})


def stage_review(ctx: Context) -> Measurement:
    """Overlays, HTML review page, DICOM SEG + SR + secondary captures for one study."""
    from cacpipe.config import Settings
    from cacpipe.ingest import read_ct
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyResult
    from cacpipe.review import build_review
    from cacpipe.volume import Volume

    loaded = read_ct(ctx.data / "dicom", Settings())
    ct, sources = loaded.volume, loaded.sources
    labels = Volume.read(ctx.data / "labels.nii.gz")
    labels = ct.with_array(labels.array)
    q = quantify(ct, labels)
    result = finalise(StudyResult(study=loaded.identity, arteries=q.arteries, lesions=q.lesions))
    out = Path(tempfile.mkdtemp())

    def run():
        written = build_review(out, ct, labels, result, sources)
        return {"dicom": sorted(k for k in written if k in ("seg", "sr", "sc"))}

    m = measure(run)
    shutil.rmtree(out, ignore_errors=True)
    return m


def stage_review_page(ctx: Context, viewer: str = "basic") -> Measurement:
    """The study review page in headless Chromium (basic canvas viewer): time from navigation to a
    page ready to read (images decoded, labels drawn), page size, the renderer's memory."""
    import json as _json

    import psutil

    from cacpipe.config import ReviewSettings
    from cacpipe.quant.quantify import quantify
    from cacpipe.quant.validity import finalise
    from cacpipe.record import StudyIdentity, StudyResult
    from cacpipe.review import build_review
    from cacpipe.volume import Volume
    from devtools.browser import CHROMIUM, Browser, Page

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} missing (make chromium)")
    ct, labels = _load(ctx), Volume.read(ctx.data / "labels.nii.gz")
    labels = ct.with_array(labels.array)
    q = quantify(ct, labels)
    result = finalise(StudyResult(study=StudyIdentity(patient_id="BENCH", study_uid="1.2.3"), arteries=q.arteries,
                                  lesions=q.lesions))
    result.set_grid(ct)
    out = Path(tempfile.mkdtemp())
    build_review(out, ct, labels, result, None, ReviewSettings(dicom=False))
    browser = Browser(out / "profile")

    def run():
        page = Page(browser)
        page.open(out / "review.html", f"#viewer={viewer}", timeout=900)
        timing = _json.loads(page.js("JSON.stringify(window.cacpipeReview.timing)"))
        kids = psutil.Process(browser.proc.pid).children(recursive=True)
        renderer = max((k.memory_info().rss for k in kids if "--type=renderer" in " ".join(k.cmdline())), default=0)
        return {"viewer": page.js("document.body.dataset.viewer"),
                "page_mb": round((out / "review.html").stat().st_size / 1e6, 2), "shape_zyx": list(ct.shape),
                "ready_in_page_s": round(timing["ready_ms"] / 1000, 2), "decode_s": round(timing["decode_ms"] / 1000, 2),
                "renderer_rss_mb": round(renderer / 1e6)}

    try:
        m = measure(run)
    finally:
        browser.close()
        shutil.rmtree(out, ignore_errors=True)
    return m


def stage_review_page_niivue(ctx: Context) -> Measurement:
    """The same page with NiiVue forced (headless Chromium here renders WebGL in software)."""
    return stage_review_page(ctx, "niivue")


def heart_crop_for_bench(ctx: Context, spacing_zyx):
    """The heart crop of the bench CT at a model's spacing (fallback locator)."""
    from cacpipe.config import HeartMethod, HeartSettings
    from cacpipe.heart import heart_crop

    return heart_crop(_load(ctx), HeartSettings(method=HeartMethod.FALLBACK),
                      target_spacing_zyx=tuple(spacing_zyx)).cropped_ct

