"""``cacpipe evaluate``: accuracy and agreement statistics of a cohort against references."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("evaluate")
@click.argument("pred", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ref", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ratings", "ratings", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Review ratings CSV (rater, patient_id, study_uid, artery, rating, comment, timestamp). "
                   "Repeat for one file per rater, or give one file holding both raters.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for evaluation.json and evaluation_<table>.csv (default: print only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the readable table.")
def command(pred: Path | None, ref: Path | None, ratings: tuple[Path, ...], out_dir: Path | None,
            as_json: bool) -> None:
    """Compare PRED.csv (cohort CSV of `cacpipe scan`) with REF.csv (radiologist reference).

    Per artery and any artery: sensitivity, specificity, PPV, NPV, accuracy (Wilson 95% CI),
    AUC from the 2x2 table and from calcium volume, Cohen's kappa (95% CI); per subgroup
    (sex, age band, vendor, site, slice thickness) when those columns exist; linear-weighted
    kappa of grades and score categories; ordinal regression of the reference grade on
    volume (B, 95% CI, Wald, p). With --ratings: free-marginal kappa between raters.
    Arteries the pipeline did not assess (empty volume) are left out and counted as NA.
    Formats: docs/quantification.md.
    """
    import json

    from ..quant.evaluate import evaluate, format_text, read_csv, write_outputs

    p = read_csv(pred, "prediction") if pred else None
    r = read_csv(ref, "reference") if ref else None
    rs = [read_csv(f, "ratings") for f in ratings]
    res = evaluate(p, r, rs)
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
    else:
        click.echo(format_text(res))
    if out_dir is not None:
        files = write_outputs(res, out_dir)
        click.echo(f"written: {', '.join(str(f) for f in files)}", err=as_json)
