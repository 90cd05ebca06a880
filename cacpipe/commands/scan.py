"""``cacpipe scan``: score every study of a PACS export, a DICOM folder, a zip or one NIfTI CT."""

from __future__ import annotations

from pathlib import Path

import click

from ..clitools import IO_SECTION, SectionedCommand, one_of, option, require
from ..config import HeartMethod, Settings

LOG = "cacpipe.log"  # = cacpipe.scan.layout.LOG (a reserved name at OUT's root; not imported: --help stays fast)
IO, SELECT, MODEL, OUTPUTS, PACS, PERF, CONF = (IO_SECTION, "Input selection", "Model and heart locator",
                                                "Outputs", "PACS", "Performance", "Settings")
_DEF = Settings()


def apply(options):
    """Apply a list of click decorators (kept as lists so that `scan` and `list` share them)."""
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


INPUT_OPTIONS = [
    click.argument("export", required=False, metavar="[INPUT]", type=click.Path(exists=True, path_type=Path)),
    option(IO, "-i", "--input", "input_path", type=click.Path(exists=True, path_type=Path), default=None,
           help="A PACS export folder, a DICOM series folder, a zip, a DICOMDIR, or one CT as NIfTI/NRRD/MHA "
                "(geometry from the file). Same as the INPUT argument."),
    option(IO, "--id", "patient_id", default=None, metavar="PATIENT_ID",
           help="Patient id of a NIfTI/NRRD input [default: the file name without extension and _0000]."),
    option(IO, "--ids", "ids_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
           metavar="CSV", help="With a folder of NIfTI/NRRD/MHA files: a CSV (file,patient_id) naming each file's "
                               "patient id [default: file names without _0000, or the case folder's name]."),
]
SELECTION_OPTIONS = [
    option(SELECT, "--min-slices", type=click.IntRange(min=1), default=None,
           help=f"Series with fewer images are skipped [default: {_DEF.selection.min_slices}]."),
    option(SELECT, "--min-spacing", type=float, default=None,
           help=f"Smallest slice spacing (mm) accepted [default: {_DEF.selection.min_spacing_mm:g}]."),
    option(SELECT, "--max-spacing", type=float, default=None,
           help=f"Largest slice spacing (mm) accepted [default: {_DEF.selection.max_spacing_mm:g}]."),
    option(SELECT, "--max-missing-slices", type=click.IntRange(min=0), default=None,
           help="Missing slices tolerated per series; they are filled by linear interpolation and flagged "
                f"[default: {_DEF.assembly.max_missing_slices}]."),
    option(SELECT, "--preferred-kernel", default=None, metavar="REGEX",
           help="Prefer series whose ConvolutionKernel matches this regular expression [default: any soft-tissue "
                "kernel over lung/bone/sharp kernels]."),
    option(SELECT, "--allow-contrast", is_flag=True, default=None,
           help="Also score series with a contrast agent tag (results are flagged; Agatston is not valid)."),
    option(CONF, "--settings", "settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
           default=None, help="JSON file of settings (nested keys, strict: `cacpipe settings` and docs/settings.md "
                              "list them); options given here override it."),
]


def settings_from_options(settings_file: Path | None, given: dict) -> Settings:
    """The settings tree: defaults, then the --settings file, then command-line options (not None)."""
    from ..errors import ConfigError
    from ..jsonfile import read_json

    settings = Settings()
    if settings_file is not None:
        settings = settings.merged(read_json(settings_file, "settings file", ConfigError))
    changes: dict = {}
    for dotted, value in given.items():
        if value is None:
            continue
        node = changes
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return settings.merged(changes)


def selection_given(min_slices, min_spacing, max_spacing, max_missing_slices, preferred_kernel,
                    allow_contrast) -> dict:
    """The dotted settings keys of SELECTION_OPTIONS."""
    return {"selection.min_slices": min_slices, "selection.min_spacing_mm": min_spacing,
            "selection.max_spacing_mm": max_spacing, "selection.preferred_kernel": preferred_kernel,
            "selection.allow_contrast": allow_contrast, "assembly.max_missing_slices": max_missing_slices}


def load_analyse(ref: str):
    """Import ``module:function`` (the function must be importable by worker processes too)."""
    import importlib

    from ..errors import ConfigError

    module, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"--analyse {ref}: cannot import it ({exc}); give MODULE:FUNCTION") from exc
    if not callable(fn):
        raise ConfigError(f"--analyse {ref} is not a function")
    return fn


def print_summary(summary, review: bool = True) -> None:
    """Report the run's summary (console and cacpipe.log); with review outputs, (re)build the cohort index
    page first."""
    import logging

    from .. import logs

    rep = logs.report()
    if review and summary.out.exists() and any(summary.out.rglob("review.json")):
        from ..review import build_index

        rep.log(logs.NOTE, f"review index: {build_index(summary.out)}")
    for line in summary.lines():
        if line.startswith("nothing to score"):
            rep.error(line)
        else:
            rep.log(logging.WARNING if line.startswith(("FAILED", "SEND PENDING", "KEPT")) else logs.NOTE, line)


def run_logged(input_path: Path, out: Path, settings: Settings, *, analyse=None, jobs: int = 1,
               scheduler: str | None = None, progress: bool = True, force: bool = False,
               patient_id: str | None = None, command: str = "scan", pipelined: bool = False,
               redo_corrected: bool = False, ids_csv: Path | None = None):
    """Start checks, then the scan with its console lines and OUT/cacpipe.log; returns the ScanSummary."""
    from .. import __version__, logs
    from ..errors import CacpipeError
    from ..scan import run_scan
    from ..scan.checks import start_checks
    from ..scan.inputs import resolve_input

    inp = resolve_input(input_path, patient_id, ids_csv)
    start = start_checks(inp, out, settings, jobs, scheduler, pipeline=analyse is None)
    rep = logs.report()
    with logs.log_file(out / LOG):
        rep.log(logs.NOTE, f"cacpipe {__version__} {command}: {input_path} -> {out}")
        for line in start.lines():
            rep.info(line)
        try:
            summary = run_scan(input_path, out, analyse=analyse, jobs=jobs, scheduler=scheduler, settings=settings,
                               progress=progress, force=force, devices=start.devices, patient_id=patient_id,
                               pipelined=pipelined, redo_corrected=redo_corrected, ids_csv=ids_csv)
        except CacpipeError as exc:
            rep.error(f"stopped: {exc}")
            raise
        print_summary(summary, review=settings.review.enabled and analyse is None)
        rep.info(f"log: {out / LOG}")
    return summary


def print_dry_run(input_path: Path, out: Path | None, settings: Settings, patient_id: str | None, as_json: bool = False,
            progress: bool = True, ids_csv: Path | None = None) -> int:
    """Print which series would be scored (and write OUT/dry_run.json when OUT is given); returns the exit code."""
    import json

    from ..errors import EXIT_NOTHING_TO_SCORE, EXIT_OK
    from ..scan.inputs import resolve_input
    from ..scan.layout import write_atomic
    from ..scan.preview import PREVIEW_FILE, preview
    from ..scan.report import preview_lines

    inp = resolve_input(input_path, patient_id, ids_csv)
    res = preview(inp, settings, out=out, patient_id=patient_id, progress=progress)
    text = json.dumps(res, indent=1, default=str)
    if as_json:
        click.echo(text)
    else:
        for line in preview_lines(res):
            click.echo(line)
    if out is not None:
        from ..scan.checks import check_output

        check_output(out, inp)
        write_atomic(out / PREVIEW_FILE, text)
        click.echo(f"written: {out / PREVIEW_FILE}", err=as_json)
    if res["counts"]["scorable"] == 0:
        click.echo(f"nothing to score in {inp.describe()}", err=True)
        return EXIT_NOTHING_TO_SCORE
    return EXIT_OK


def parse_folds(folds: str | None) -> list[int] | None:
    """``--folds 0,1,2`` as fold numbers (None when not given)."""
    from ..errors import ConfigError

    if folds is None:
        return None
    try:
        return [int(f) for f in folds.split(",") if f.strip()]
    except ValueError as exc:
        raise ConfigError(f"--folds {folds!r}: give fold numbers separated by commas, e.g. 0,1,2") from exc


@click.command("scan", cls=SectionedCommand)
@apply(INPUT_OPTIONS)
@option(IO, "-o", "--out", "--output", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
        help="Output folder: OUT/<PatientID>/<StudyUID>/ per study (result.json, labels.nii.gz, ct.nii.gz, "
             "review page), manifest.json, cohort.csv, cacpipe.log.")
@option(IO, "--dry-run", is_flag=True,
        help="Only list the series each study would score and why every other series is skipped (headers only, "
             "no networks); written to OUT/dry_run.json when -o is given.")
@option(IO, "--force", is_flag=True, help="Redo every study, even those already done with the same inputs (a "
        "study a reader corrected is kept: see --redo-corrected).")
@option(IO, "--redo-corrected", is_flag=True,
        help="Also redo studies a reader corrected (`cacpipe review apply`) when they would be redone; the "
             "corrected folder is moved whole to OUT/superseded/, never deleted. Without it they are kept.")
@apply(SELECTION_OPTIONS[:-1])
@option(MODEL, "--model", default=None, help="Installed coronary model to use (see `cacpipe models list`) "
                                             "[default: the only installed one].")
@option(MODEL, "--model-dir", default=None, type=click.Path(file_okay=False),
        help="Model folder [default: $CACPIPE_MODEL_DIR or ~/.cacpipe/models].")
@option(MODEL, "--allow-demo-model", is_flag=True, default=None,
        help="With no model installed, use the phantom-trained demo model (NOT FOR CLINICAL USE; every result "
             "says so). Without this, a scan with no installed model stops at start.")
@option(MODEL, "--no-demo-model", is_flag=True, default=None, hidden=True,
        help="Never use the demo model (the default now; kept for old scripts).")
@option(MODEL, "--folds", default=None, metavar="0,1,2", help="Subset of the ensemble's folds [default: all].")
@option(MODEL, "--mirroring/--no-mirroring", default=None,
        help="Test-time mirroring (never left-right) [default: off on CPU, on on GPU].")
@option(MODEL, "--heart-method", type=click.Choice([m.value for m in HeartMethod]), default=None,
        help="Heart locator [default: auto = TotalSegmentator when its weights are installed, else the classical "
             "fallback, flagged in every result].")
@option(MODEL, "--heart-fast", is_flag=True, default=None, help="TotalSegmentator's fast (3 mm) heart model.")
@option(MODEL, "--analyse", "analyse_ref", metavar="MODULE:FUNCTION", default=None,
        help="Advanced: run this function instead of the cacpipe pipeline; it is called as f(series, out_dir, "
             "settings) and returns a StudyResult (docs/scan.md).")
@option(OUTPUTS, "--agreement", is_flag=True, default=None,
        help="Save the per-voxel fold agreement (heat map in overlays).")
@option(OUTPUTS, "--calibration-factor", type=float, default=None, metavar="MG_PER_ML_HU",
        help="Enables the calcium mass score (mg/(mL*HU), from your scanner's calibration).")
@option(OUTPUTS, "--severity-model", type=click.Path(exists=True, dir_okay=False), default=None,
        help="Severity model from `cacpipe severity fit` [default: the packaged model].")
@option(OUTPUTS, "--no-review", is_flag=True, default=None, help="Skip overlays, review page and DICOM outputs.")
@option(OUTPUTS, "--no-ct-nifti", is_flag=True, default=None,
        help="Do not write ct.nii.gz (the scored CT for viewers, stored: ~160 MB per 512x512x300 scan) next to labels.nii.gz.")
@option(OUTPUTS, "--no-dicom-out", is_flag=True, default=None, help="Skip DICOM SEG/SR/secondary captures.")
@option(OUTPUTS, "--anonymous-names", is_flag=True, default=None,
        help="Name study folders anon-<id>/study-<id> instead of PatientID/StudyUID; the index links and hover "
             "texts and the review pages' ratings and corrections downloads carry the anonymised id "
             "(setting review.anonymous_names; docs/privacy.md).")
@option(PACS, "--send", default=None, metavar="AE@HOST:PORT",
        help="C-STORE each study's SEG/SR/SC to this PACS node once its result is written (checked with C-ECHO "
             "at start). A failed send keeps the result, marked pending: `cacpipe review send OUT` retries.")
@option(PERF, "--device", default=None, metavar="auto|cpu|cuda|cuda:N|cuda:0,1",
        help="Where the networks run [default: auto = a GPU when there is one]. A list (cuda:0,1) runs one worker "
             "per GPU, each loading the models once; a GPU asked for but missing stops the scan at start.")
@option(PERF, "--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
        help="Studies analysed at once, each worker in its own process (with a GPU list: at least one per GPU).")
@option(PERF, "--pipeline", "pipelined", is_flag=True,
        help="With one worker: load and heart-crop the next study and finish the previous one (quantities, "
             "writing, review) while the current one is segmented (threads in this process; same results, "
             "more memory; docs/performance.md).")
@option(PERF, "--scheduler", metavar="ADDRESS", default=None,
        help="Run studies on an existing Dask distributed cluster (e.g. tcp://host:8786); its workers must see "
             "INPUT and OUT under the same paths. Overrides --jobs.")
@option(PERF, "--no-progress", is_flag=True, help="No progress bar (for logs).")
@apply(SELECTION_OPTIONS[-1:])
@click.pass_context
def command(ctx: click.Context, export: Path | None, input_path: Path | None, patient_id: str | None,
            ids_csv: Path | None, out: Path | None, dry_run: bool, force: bool, redo_corrected: bool, min_slices: int | None, min_spacing: float | None,
            max_spacing: float | None, max_missing_slices: int | None, preferred_kernel: str | None,
            allow_contrast: bool | None, model: str | None, model_dir: str | None, allow_demo_model: bool | None,
            no_demo_model: bool | None, folds: str | None, mirroring: bool | None, heart_method: str | None,
            heart_fast: bool | None, analyse_ref: str | None, agreement: bool | None,
            calibration_factor: float | None, severity_model: str | None, no_review: bool | None,
            no_ct_nifti: bool | None, no_dicom_out: bool | None, anonymous_names: bool | None, send: str | None, device: str | None, jobs: int, pipelined: bool,
            scheduler: str | None, no_progress: bool, settings_file: Path | None) -> None:
    """Score coronary calcium in every CT study of INPUT and write the results to OUT.

    \b
    cacpipe scan -i EXPORT -o OUT          a PACS export: folders, DICOMDIR, zip files, many patients
    cacpipe scan -i SERIES_DIR -o OUT      one DICOM series (or study) folder, or a zip of it
    cacpipe scan -i ct.nii.gz -o OUT       one CT as NIfTI/NRRD (patient id: file name or --id)
    cacpipe scan -i imagesTs/ -o OUT       a folder of NIfTI/NRRD/MHA files or case folders: one study each
    cacpipe scan -i EXPORT --dry-run       which series would be scored, and why not the others
    cacpipe scan EXPORT --out OUT          the same as -i/-o

    Per study the preferred axial non-contrast series is scored; every other series gets a
    one-line reason (docs/scan.md). Device, model, output folder and settings are checked
    before the first study: a problem stops the scan at once (exit 2). Each finished study
    prints one line (patient, Agatston, category, flags); OUT/cacpipe.log keeps them with the
    warnings. A second run resumes: only failed, new or changed studies are analysed again.
    Exit codes: 0 done, 1 some study failed, 2 nothing run (usage or start check), 3 nothing to
    score. -v/-q may follow the command name.
    """

    input_path = require(one_of(export, input_path, "the input", "-i/--input"), "the input (a PACS export, "
                         "DICOM folder, zip, DICOMDIR or NIfTI/NRRD CT)", "-i INPUT")
    if allow_demo_model and no_demo_model:
        raise click.UsageError("--allow-demo-model and --no-demo-model contradict each other")
    fold_list = parse_folds(folds)
    settings = settings_from_options(settings_file, {
        **selection_given(min_slices, min_spacing, max_spacing, max_missing_slices, preferred_kernel, allow_contrast),
        "device": device, "heart.method": heart_method, "heart.fast": heart_fast, "segment.model": model,
        "segment.model_dir": model_dir,
        "segment.allow_demo_model": True if allow_demo_model else (False if no_demo_model else None),
        "segment.folds": fold_list, "segment.mirroring": mirroring, "segment.agreement": agreement,
        "quant.calibration_factor": calibration_factor, "quant.severity_model": severity_model,
        "review.enabled": None if no_review is None else not no_review,
        "review.ct_nifti": None if no_ct_nifti is None else not no_ct_nifti,
        "review.dicom": None if no_dicom_out is None else not no_dicom_out, "review.send": send,
        "review.anonymous_names": anonymous_names,
    })
    if dry_run:
        ctx.exit(print_dry_run(input_path, out, settings, patient_id, progress=not no_progress, ids_csv=ids_csv))
    out = require(out, "the output folder", "-o OUT")
    analyse = load_analyse(analyse_ref) if analyse_ref else None  # None: the cacpipe pipeline
    summary = run_logged(input_path, out, settings, analyse=analyse, jobs=jobs, scheduler=scheduler,
                         progress=not no_progress, force=force, patient_id=patient_id, pipelined=pipelined,
                         redo_corrected=redo_corrected, ids_csv=ids_csv)
    ctx.exit(summary.exit_code)
