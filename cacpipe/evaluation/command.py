"""``cacpipe evaluate``: accuracy and agreement of a cohort's results against references."""

from __future__ import annotations

from pathlib import Path

import click

SEPS = {"auto": None, "comma": ",", "semicolon": ";", "tab": "\t"}


@click.command("evaluate")
@click.argument("pred", required=False, type=click.Path(path_type=Path))
@click.argument("ref", required=False, type=click.Path(path_type=Path))
@click.option("--ratings", "ratings", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Review ratings CSV (rater, patient_id, study_uid, artery, rating, comment, timestamp). "
                   "Repeat for one file per rater, or give one file holding both raters.")
@click.option("--ref-labels", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of reference label maps keyed by study (<key>/labels.nii.gz or <key>.nii.gz, key = "
                   "PatientID or StudyUID) for lesion-level evaluation (default: the REF folder, if REF is one).")
@click.option("--no-lesions", is_flag=True, help="Skip the lesion-level evaluation.")
@click.option("--allow-partial", is_flag=True,
              help="Evaluate the studies PRED and REF share and list the others (default: unmatched studies "
                   "are an error).")
@click.option("--sep", type=click.Choice(list(SEPS)), default="auto", show_default=True,
              help="CSV separator (auto: detected from each header).")
@click.option("--decimal", type=click.Choice([".", ","]), default=".", show_default=True,
              help="Decimal mark in the CSVs (',' needs a semicolon- or tab-separated file).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for evaluation.json, evaluation_<table>.csv and report.html (default: print only).")
@click.option("--no-html", is_flag=True, help="With --out: no report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the readable tables.")
def command(pred: Path | None, ref: Path | None, ratings: tuple[Path, ...], ref_labels: Path | None,
            no_lesions: bool, allow_partial: bool, sep: str, decimal: str, out_dir: Path | None, no_html: bool,
            as_json: bool) -> None:
    """Compare PRED (cohort.csv of `cacpipe scan`, or its results folder) with REF.

    PRED may also be a `cacpipe progression` output (its folder or progression.json) and REF the
    phantom cohort it came from (`cacpipe phantom cohort ... --follow-up`): the progression is
    scored against REF/progression_truth.json (lesion matching, false new lesions, per-artery
    change error; with --out: progression_evaluation.json).

    REF: a reference CSV, a phantom truth folder (`cacpipe demo` writes OUT/truth/) or a folder
    holding truth.csv. Reports calcium presence per artery and any artery (sensitivity ...
    kappa, per subgroup); continuous agreement of Agatston and volume (ICC(A,1), Bland-Altman
    on linear and log scale, Spearman, errors); risk-category reclassification with weighted
    kappa; lesion-level sensitivity, PPV, false positives per scan, artery attribution and
    Dice when label maps exist on both sides; grade kappa and ordinal regression; with
    --ratings, free-marginal kappa between raters. Every study must be in both tables unless
    --allow-partial. Formats: docs/evaluation.md.
    """
    import json

    from . import evaluate, load_prediction, load_reference, read_csv, write_outputs
    from .report_text import format_text

    if pred is not None and ref is not None and (doc := _progression_doc(pred)) is not None:
        _progression(doc, ref, out_dir, as_json)
        return
    s = SEPS[sep]
    p = load_prediction(pred, s, decimal) if pred else None
    r = load_reference(ref, s, decimal) if ref else None
    rs = [read_csv(f, "ratings", sep=s, decimal=decimal) for f in ratings]
    res = evaluate(p, r, rs, allow_partial=allow_partial, ref_labels=ref_labels, lesion_level=not no_lesions)
    if as_json:
        from ..jsonfile import jsonable

        click.echo(json.dumps(res, indent=2, default=jsonable))
    else:
        click.echo(format_text(res))
    if out_dir is not None:
        files = write_outputs(res, out_dir, html=not no_html)
        click.echo(f"written: {', '.join(str(f) for f in files)}", err=as_json)


def _progression_doc(pred: Path) -> Path | None:
    """PRED's progression.json when PRED is a `cacpipe progression` output, else None."""
    doc = pred / "progression.json" if pred.is_dir() else pred
    return doc if doc.name == "progression.json" and doc.is_file() else None


def _progression(doc_path: Path, ref: Path, out_dir: Path | None, as_json: bool) -> None:
    """Score a progression output against a phantom cohort's follow-up truth."""
    import json

    from ..jsonfile import jsonable
    from .progression import evaluate_progression, summary_lines

    doc = json.loads(doc_path.read_text())
    ev = evaluate_progression(doc, doc["results"], ref)
    if as_json:
        click.echo(json.dumps(ev, indent=2, default=jsonable))
    else:
        for line in summary_lines(ev):
            click.echo(line)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "progression_evaluation.json"
        path.write_text(json.dumps(ev, indent=2, default=jsonable))
        click.echo(f"written: {path}", err=as_json)
