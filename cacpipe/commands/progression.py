"""``cacpipe progression``: per-artery calcium change across each patient's serial studies."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("progression")
@click.argument("results_arg", metavar="[RESULTS]", required=False,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("-i", "--input", "results", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A `cacpipe scan` results folder (same as RESULTS).")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for progression.json, progression.csv and progression.html (required).")
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV mapping pseudonymised PatientIDs or StudyInstanceUIDs to one subject: columns "
                   "subject and patient_id and/or study_uid.")
@click.option("--repeatability", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Square-root volume change (sqrt(mm3)) a change must reach to count as progression "
                   "(default 2.5: Hokanson et al. 2004; docs/progression.md).")
@click.option("--no-images", is_flag=True, help="No prior/current image pairs on the page (faster, smaller).")
@click.option("--no-study-outputs", is_flag=True,
              help="Leave the studies' own outputs as they are (default: each later study's review page shows "
                   "the prior study beside it, and its DICOM SR carries the prior values and the change).")
@click.option("--salt", default=None,
              help="The anonymisation secret the review pages were made with, when one was given at the scan "
                   "(review.salt); without it such pages are not rebuilt.")
def command(results_arg: Path | None, results: Path | None, out: Path | None, mapping: Path | None,
            repeatability: float | None, no_images: bool, no_study_outputs: bool,
            salt: str | None) -> None:
    """Calcium progression of every patient with more than one study in RESULTS.

    Studies are grouped per patient (PatientID, or --mapping), ordered by StudyDate; each
    consecutive pair is registered on the heart (rigid then affine), lesions are matched across
    time (new, grown, stable, smaller, merged, gone, with match ids), and per artery the change in
    Agatston and volume, the annualised change and whether it exceeds the interscan
    repeatability are reported. Each later study's review page then shows the prior study beside
    it (same slices, lesion match ids) and its DICOM SR carries the prior values and the change
    (--no-study-outputs: not). To score it against a phantom cohort's truth: `cacpipe evaluate
    OUT COHORT`. Docs: docs/progression.md.
    """
    from ..clitools import one_of, require
    from ..progression.match import SQRT_VOLUME_THRESHOLD
    from ..progression.report import write_outputs
    from ..progression.run import run_progression

    results = require(one_of(results_arg, results, "the results folder", "-i/--input"), "the results folder",
                      "RESULTS (a `cacpipe scan` output folder)")
    out = require(out, "the output folder", "-o OUT")

    def progress(i: int, n: int, subject: str) -> None:
        click.echo(f"  [{i}/{n}] {subject}", err=True)

    views: dict | None = None if no_images else {}
    doc = run_progression(results, mapping, repeatability or SQRT_VOLUME_THRESHOLD, progress, views,
                          None if no_study_outputs else {"salt": salt})
    paths = write_outputs(doc, out, views)
    n_pairs = sum(len(p["pairs"]) for p in doc["patients"].values())
    click.echo(f"progression: {len(doc['patients'])} patients with serial studies, {n_pairs} pairs "
               f"({len(doc['single_study_patients'])} with one study, {len(doc['skipped'])} studies skipped)")
    for subject, p in doc["patients"].items():
        for pair in p["pairs"]:
            prog = [a for a, ch in pair["arteries"].items() if ch.get("progression") and a != "total"]
            c = pair["counts"]
            click.echo(f"  {subject} +{pair['years']:.2f} y: lesions new {c['new']}, grown {c['grown']}, "
                       f"stable {c['stable']}, gone {c['gone']}; progression: {', '.join(prog) or 'none'}")
            so = pair.get("study_outputs")
            if so:
                made = [k for k in ("review_html", "sr") if k in so]
                click.echo(f"    the later study's {' and '.join(made) or 'prior.json only'} now show the prior"
                           + "".join(f"; {n}" for n in so["notes"]))
    click.echo(f"written: {paths['json']}, {paths['csv'].name}, {paths['html'].name}")
