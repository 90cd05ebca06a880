"""``cacpipe review``: overlays, HTML review pages, DICOM SEG/SR/SC and sending them to a PACS."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DISPLAY_FIELDS

FIELDS = list(DISPLAY_FIELDS)


@click.group("review")
def command() -> None:
    """Radiologist review: overlays, review pages with a rating form, DICOM outputs, PACS send.

    \b
    cacpipe review build STUDY_DIR --ct CT --labels LABELS [--result result.json] [--dicom DIR] [--send AE@HOST:PORT]
    cacpipe review index RESULTS_DIR
    cacpipe review send AE@HOST:PORT FILE_OR_DIR...
    """


def _print_send(report: dict) -> None:
    click.echo(f"sent {len(report['sent'])} object(s) to {report['target']}")
    for f in report["failed"]:
        click.echo(f"  FAILED {f['path']}: {f['error']}", err=True)


@command.command("build")
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ct", "ct_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The CT: a NIfTI file, or a DICOM folder (then it is also the source for SEG/SR/SC).")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Six-class label map (NIfTI) on the CT's grid.")
@click.option("--result", "result_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Per-study result JSON (cacpipe.result/2). Default: STUDY_DIR/result.json.")
@click.option("--dicom", "dicom_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Source DICOM series folder, when --ct is NIfTI; needed for SEG/SR/SC.")
@click.option("--series-uid", default=None, help="Which series of the DICOM folder, when it holds several.")
@click.option("--no-dicom-out", is_flag=True, help="Do not write DICOM SEG/SR/SC.")
@click.option("--show", "fields", multiple=True, type=click.Choice(FIELDS), default=("anon_id", "study_date"),
              show_default=True, help="Patient/study fields allowed in burned-in text and on the page (repeat).")
@click.option("--salt", default="", help="Secret mixed into the anonymised id.")
@click.option("--window", default="200/800", show_default=True, metavar="LEVEL/WIDTH",
              help="Display window in HU (calcium window: 130 HU at 41% grey, >= 600 HU white).")
@click.option("--max-slices", type=int, default=40, show_default=True, help="Most lesion-slice PNGs per study.")
@click.option("--agreement", "agreement_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Fold-agreement map (NIfTI, 0..1, CT grid) for a heat-map panel.")
@click.option("--send", "send_to", default=None, metavar="AE@HOST:PORT", help="C-STORE SEG/SR/SC to this PACS.")
def build(study_dir: Path, ct_path: Path, labels_path: Path, result_path: Path | None, dicom_dir: Path | None,
          series_uid: str | None, no_dicom_out: bool, fields: tuple[str, ...], salt: str, window: str,
          max_slices: int, agreement_path: Path | None, send_to: str | None) -> None:
    """Write overlays/, review.html, review.json and dicom/ (SEG, SR, SC) for one study into STUDY_DIR."""
    from ..config import ReviewSettings
    from ..errors import ConfigError, InputDataError
    from ..ingest import read_ct
    from ..record import StudyResult
    from ..review import build_review, send_outputs
    from ..volume import Volume

    result = StudyResult.load(result_path or study_dir / "result.json")
    try:
        level, width = (float(v) for v in window.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--window must be LEVEL/WIDTH in HU, e.g. 200/800; got {window!r}") from exc
    loaded = read_ct(ct_path, series_uid=series_uid)
    ct, sources = loaded.volume, loaded.sources
    if dicom_dir is not None:
        sources = read_ct(dicom_dir, series_uid=series_uid).sources
    labels = Volume.read(labels_path)
    agreement = Volume.read(agreement_path) if agreement_path else None
    opts = ReviewSettings(fields=tuple(fields), window=(level, width), max_slices=max_slices,
                          dicom=not no_dicom_out)
    out = build_review(study_dir, ct, labels, result, sources, opts, salt=salt, agreement=agreement)
    click.echo(f"review written to {study_dir}: {len(out['overlays'])} PNG(s), {out['review_html']}"
               + (f", {out['seg']}, {out['sr']}, {len(out['sc'])} SC" if "seg" in out else ""))
    if "dicom_skipped" in out and not no_dicom_out:
        click.echo(f"note: {out['dicom_skipped']}; pass --dicom DIR", err=True)
    if send_to:
        if "seg" not in out:
            raise InputDataError("--send needs DICOM outputs; give the source series with --dicom (or --ct DIR)")
        files = [study_dir / out["seg"], study_dir / out["sr"], *(study_dir / p for p in out["sc"])]
        _print_send(send_outputs(files, send_to))


@command.command("index")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def index(results_dir: Path) -> None:
    """Write RESULTS_DIR/index.html linking every study review found under RESULTS_DIR."""
    from ..review import build_index

    click.echo(f"index written: {build_index(results_dir)}")


@command.command("send")
@click.argument("target", metavar="AE@HOST:PORT")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--calling-ae", default="CACPIPE", show_default=True, help="Our AE title (the PACS must know it).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Network timeout in seconds.")
def send(target: str, paths: tuple[Path, ...], calling_ae: str, timeout: float) -> None:
    """C-STORE DICOM files (or every .dcm under given folders) to a PACS at AE@HOST:PORT."""
    from ..errors import CacpipeError
    from ..review import send_outputs

    files = [q for p in paths for q in (sorted(p.rglob("*.dcm")) if p.is_dir() else [p])]
    report = send_outputs(files, target, calling_ae=calling_ae, timeout_s=timeout)
    _print_send(report)
    if report["failed"]:
        raise CacpipeError(f"{len(report['failed'])} of {len(files)} object(s) were not stored")
