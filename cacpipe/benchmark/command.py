"""``cacpipe benchmark``: score a public CAC dataset (Stanford COCA, orCaScore) as distributed, in one command."""

from __future__ import annotations

from pathlib import Path

import click

from ..clitools import IO_SECTION, SectionedCommand, option
from ..commands.scan import MODEL, PERF, SELECTION_OPTIONS, apply, selection_given, settings_from_options
from ..config import HeartMethod

DATA = "Dataset"


@click.command("benchmark", cls=SectionedCommand)
@click.argument("dataset", type=click.Choice(["coca", "orcascore"]))
@click.argument("dataset_dir", metavar="DATASET_DIR", type=click.Path(path_type=Path))
@option(IO_SECTION, "-o", "--out", "--output", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
        help="Output folder: reference/, scan/ (as `cacpipe scan` writes it), evaluation/, benchmark_report.html, "
             "benchmark.json, benchmark_*.csv.")
@option(DATA, "--subset", type=click.Choice(["gated", "nongated"]), default=None,
        help="COCA: gated (contours per lesion, the default) or nongated (Agatston scores only). orCaScore: gated.")
@option(DATA, "--limit", type=click.IntRange(min=1), default=None, metavar="N",
        help="Only the first N cases (natural order of the case folders / files).")
@option(IO_SECTION, "--force", is_flag=True, help="Convert and analyse every case again.")
@option(IO_SECTION, "--review", is_flag=True, help="Also write the review pages and DICOM outputs of each case "
                                                  "(off by default: the benchmark needs only the numbers and labels).")
@option(IO_SECTION, "--no-html", is_flag=True, help="No HTML pages (JSON and CSV only).")
@apply(SELECTION_OPTIONS[:-1])
@option(MODEL, "--model", default=None, help="Installed coronary model (see `cacpipe models list`).")
@option(MODEL, "--model-dir", default=None, type=click.Path(file_okay=False), help="Model folder.")
@option(MODEL, "--allow-demo-model", is_flag=True, default=None,
        help="With no model installed, use the phantom-trained demo model (NOT FOR CLINICAL USE; the report says so).")
@option(MODEL, "--folds", default=None, metavar="0,1,2", help="Subset of the ensemble's folds [default: all].")
@option(MODEL, "--mirroring/--no-mirroring", default=None, help="Test-time mirroring (never left-right).")
@option(MODEL, "--heart-method", type=click.Choice([m.value for m in HeartMethod]), default=None,
        help="Heart locator [default: auto = TotalSegmentator when installed, else the classical fallback].")
@option(MODEL, "--heart-fast", is_flag=True, default=None, help="TotalSegmentator's fast (3 mm) heart model.")
@option(MODEL, "--analyse", "analyse_ref", metavar="MODULE:FUNCTION", default=None,
        help="Advanced: run this function instead of the cacpipe pipeline (as `cacpipe scan --analyse`).")
@option(PERF, "--device", default=None, metavar="auto|cpu|cuda|cuda:N", help="Where the networks run.")
@option(PERF, "--no-progress", is_flag=True, help="No progress bars (for logs).")
@apply(SELECTION_OPTIONS[-1:])
@click.pass_context
def command(ctx: click.Context, dataset: str, dataset_dir: Path, out: Path, subset: str | None, limit: int | None,
            force: bool, review: bool, no_html: bool, min_slices, min_spacing, max_spacing, max_missing_slices,
            preferred_kernel, allow_contrast, model, model_dir, allow_demo_model, folds, mirroring, heart_method,
            heart_fast, analyse_ref, device, no_progress: bool, settings_file: Path | None) -> None:
    """Score DATASET (coca or orcascore) under DATASET_DIR, as downloaded, and report cacpipe's accuracy.

    \b
    cacpipe benchmark coca ~/data/coca -o bench_coca                 gated COCA, contours per lesion
    cacpipe benchmark coca ~/data/coca -o bench_ng --subset nongated non-gated COCA, scores only
    cacpipe benchmark orcascore ~/data/orCaScore -o bench_orca       orCaScore training set
    cacpipe benchmark coca ~/data/coca -o try --limit 5              the first 5 cases

    The layout is checked first (exit 2, one line naming what is missing). Each case's
    annotations become a reference label map on the CT grid (conversion report per case); the
    CTs go through the same code as `cacpipe scan` (start checks, resume: a second run redoes
    only what changed); the results are scored with `cacpipe evaluate` and reported beside
    published figures: OUT/benchmark_report.html. Exit codes: 0 done, 1 some case failed,
    2 nothing run (layout, usage or start check). Datasets, layout, time: docs/benchmark.md.
    """
    from ..commands.scan import load_analyse, parse_folds

    fold_list = parse_folds(folds)
    given = {
        **selection_given(min_slices, min_spacing, max_spacing, max_missing_slices, preferred_kernel, allow_contrast),
        "device": device, "heart.method": heart_method, "heart.fast": heart_fast, "segment.model": model,
        "segment.model_dir": model_dir, "segment.allow_demo_model": True if allow_demo_model else None,
        "segment.folds": fold_list, "segment.mirroring": mirroring, "review.enabled": bool(review),
        "review.dicom": bool(review),
    }
    settings = settings_from_options(settings_file, given)
    from . import run_benchmark

    analyse = load_analyse(analyse_ref) if analyse_ref else None
    summary = run_benchmark(dataset, dataset_dir, out, settings, subset=subset, limit=limit, force=force,
                            progress=not no_progress, analyse=analyse, html=not no_html,
                            given={k for k, v in given.items() if v is not None})
    for line in summary.lines():
        click.echo(line)
    ctx.exit(summary.exit_code)
