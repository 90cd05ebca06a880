"""``cacpipe scan``: score every study of a PACS export (resumable, parallel, distributed)."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import HeartMethod, Settings


def print_summary(summary, review: bool = True) -> None:
    """Print the run's summary; with review outputs, (re)build the cohort index page first."""
    if review and summary.out.exists() and any(summary.out.rglob("review.json")):
        from ..review import build_index

        click.echo(f"review index: {build_index(summary.out)}")
    for line in summary.lines():
        click.echo(line, err=line.startswith("FAILED"))


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


_DEF = Settings()


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


@click.command("scan")
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: manifest.json, cohort.csv and OUT/<PatientID>/<StudyUID>/ per study.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Studies analysed at once, each in its own process.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run studies on an existing Dask distributed cluster (e.g. tcp://host:8786); its workers "
                   "must see EXPORT and OUT under the same paths. Overrides --jobs.")
@click.option("--min-slices", type=click.IntRange(min=1), default=None,
              help=f"Series with fewer images are skipped [default: {_DEF.selection.min_slices}].")
@click.option("--min-spacing", type=float, default=None,
              help=f"Smallest slice spacing (mm) accepted [default: {_DEF.selection.min_spacing_mm:g}].")
@click.option("--max-spacing", type=float, default=None,
              help=f"Largest slice spacing (mm) accepted [default: {_DEF.selection.max_spacing_mm:g}].")
@click.option("--max-missing-slices", type=click.IntRange(min=0), default=None,
              help="Missing slices tolerated per series; they are filled by linear interpolation and flagged "
                   f"[default: {_DEF.assembly.max_missing_slices}].")
@click.option("--preferred-kernel", default=None, metavar="REGEX",
              help="Prefer series whose ConvolutionKernel matches this regular expression (default: any "
                   "soft-tissue kernel over lung/bone/sharp kernels).")
@click.option("--allow-contrast", is_flag=True, default=None,
              help="Also score series with a contrast agent tag (results are flagged; Agatston is not valid).")
@click.option("--settings", "settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON file of settings (nested keys: `cacpipe settings` lists them); "
                                 "options given here override it.")
@click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
              help="Where the networks run [default: auto = cuda when available].")
@click.option("--heart-method", type=click.Choice([m.value for m in HeartMethod]), default=None,
              help="Heart locator [default: auto = TotalSegmentator when its weights are installed, else the "
                   "classical fallback, flagged in every result].")
@click.option("--heart-fast", is_flag=True, default=None, help="TotalSegmentator's fast (3 mm) heart model.")
@click.option("--model", default=None, help="Installed coronary model to use (see `cacpipe models list`) "
                                            "[default: the only installed one, else the phantom demo model].")
@click.option("--model-dir", default=None, type=click.Path(file_okay=False),
              help="Model folder [default: $CACPIPE_MODEL_DIR or ~/.cacpipe/models].")
@click.option("--no-demo-model", is_flag=True, default=None,
              help="Fail instead of falling back to the phantom-trained demo model when no model is installed.")
@click.option("--folds", default=None, metavar="0,1,2", help="Subset of the ensemble's folds [default: all].")
@click.option("--mirroring/--no-mirroring", default=None,
              help="Test-time mirroring (never left-right) [default: off on CPU, on on GPU].")
@click.option("--agreement", is_flag=True, default=None, help="Save the per-voxel fold agreement (heat map in overlays).")
@click.option("--calibration-factor", type=float, default=None, metavar="MG_PER_ML_HU",
              help="Enables the calcium mass score (mg/(mL*HU), from your scanner's calibration).")
@click.option("--severity-model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Severity model from `cacpipe severity fit` [default: the packaged model].")
@click.option("--no-review", is_flag=True, default=None, help="Skip overlays, review page and DICOM outputs.")
@click.option("--no-dicom-out", is_flag=True, default=None, help="Skip DICOM SEG/SR/secondary captures.")
@click.option("--send", default=None, metavar="AE@HOST:PORT", help="C-STORE each study's SEG/SR/SC to this PACS.")
@click.option("--analyse", "analyse_ref", metavar="MODULE:FUNCTION", default=None,
              help="Advanced: run this function instead of the cacpipe pipeline; it is called as "
                   "f(series, out_dir, settings) and returns a StudyResult (docs/scan.md).")
@click.option("--force", is_flag=True, help="Redo every study, even those already done with the same inputs.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
@click.pass_context
def command(ctx: click.Context, export: Path, out: Path, jobs: int, scheduler: str | None, min_slices: int | None,
            min_spacing: float | None, max_spacing: float | None, max_missing_slices: int | None,
            preferred_kernel: str | None, allow_contrast: bool | None, settings_file: Path | None,
            device: str | None, heart_method: str | None, heart_fast: bool | None, model: str | None,
            model_dir: str | None, no_demo_model: bool | None, folds: str | None, mirroring: bool | None,
            agreement: bool | None, calibration_factor: float | None, severity_model: str | None,
            no_review: bool | None, no_dicom_out: bool | None, send: str | None, analyse_ref: str | None,
            force: bool, no_progress: bool) -> None:
    """Find every CT study in EXPORT (folders, DICOMDIR, zip files), pick one series per study
    and score it; write per-study results, manifest.json and cohort.csv to OUT.

    A second run resumes: only failed, new or changed studies are analysed again. A failing
    study is reported in one line and the run goes on; the exit code is 1 when any study
    failed, 0 otherwise. Selection rules and the manifest format: docs/scan.md.
    """
    from ..errors import ConfigError
    from ..scan import run_scan

    fold_list = None
    if folds is not None:
        try:
            fold_list = [int(f) for f in folds.split(",") if f.strip()]
        except ValueError as exc:
            raise ConfigError(f"--folds {folds!r}: give fold numbers separated by commas, e.g. 0,1,2") from exc
    settings = settings_from_options(settings_file, {
        "device": device, "selection.min_slices": min_slices, "selection.min_spacing_mm": min_spacing,
        "selection.max_spacing_mm": max_spacing, "selection.preferred_kernel": preferred_kernel,
        "selection.allow_contrast": allow_contrast, "assembly.max_missing_slices": max_missing_slices,
        "heart.method": heart_method, "heart.fast": heart_fast, "segment.model": model,
        "segment.model_dir": model_dir, "segment.allow_demo_model": None if no_demo_model is None else not no_demo_model,
        "segment.folds": fold_list, "segment.mirroring": mirroring, "segment.agreement": agreement,
        "quant.calibration_factor": calibration_factor, "quant.severity_model": severity_model,
        "review.enabled": None if no_review is None else not no_review,
        "review.dicom": None if no_dicom_out is None else not no_dicom_out, "review.send": send,
    })
    analyse = load_analyse(analyse_ref) if analyse_ref else None  # None: the cacpipe pipeline
    summary = run_scan(export, out, analyse=analyse, jobs=jobs, scheduler=scheduler, settings=settings,
                       progress=not no_progress, force=force)
    print_summary(summary, review=settings.review.enabled)
    ctx.exit(summary.exit_code)
