"""Radiologist review outputs: PNG overlays, HTML review pages, DICOM SEG/SR/SC, C-STORE,
and the readers' corrections.

Entry points the pipeline calls: ``build_review`` (one study), ``build_index`` (a cohort),
``send_outputs`` (to a PACS). Modules: ``page`` (study page), ``viewer_data`` (the images in it),
``index`` (cohort index), ``corrections`` (a reader's corrections and applying them),
``assets`` (CSS/JS package data and the NiiVue bundle), ``overlays``, ``dicom_out``, ``send``.
See docs/review.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from ..config import ReviewSettings
from ..errors import GeometryError
from ..files import make_private_dir, protect, write_private_text
from ..record import StudyResult
from ..volume import Volume
from .options import anonymised_id, display_items
from .send import parse_target, send_outputs

log = logging.getLogger(__name__)

__all__ = ["anonymised_id", "build_index", "build_review",
           "parse_target", "send_outputs"]


def build_review(study_dir: Path, ct: Volume, labels: Volume, result: StudyResult, source_datasets: list | None,
                 options: ReviewSettings | None = None, *, salt: str | None = None, agreement=None,
                 verification: dict | None = None) -> dict:
    """Write overlays, the review page and (when source slices are given) DICOM SEG/SR/SC.

    ``ct`` and ``labels`` are on the original scan grid; ``source_datasets`` are the source CT
    slice headers sorted like the volume (slice k = ct.array[k]) or None to skip DICOM outputs.
    ``salt`` keys the anonymised id (None or empty: ``options.salt``, else this installation's
    secret, see cacpipe.review.options); ``agreement`` is an optional fold-agreement volume;
    ``verification`` makes the SR a reader-verified one (``dicom_out.make_sr``, ``review apply``).
    A ``prior/prior.json`` that ``cacpipe progression`` wrote for this result puts the prior study
    beside the viewer and the prior values and change into the SR (cacpipe.review.prior).
    Calcium is drawn (PNGs, page, SEG) exactly where it is counted: HU >= 130 inside a calcium
    label. Every file is written owner-only (cacpipe.files).
    Returns paths relative to ``study_dir``: {"overlays": [...], "review_html", "review_json",
    "seg", "sr", "sc": [...]} (DICOM keys only when written; "dicom_skipped" says why not).
    """
    import numpy as np

    from .overlays import display_labels, render_study, write_overlays
    from .page import study_page

    options = options or ReviewSettings()
    salt = salt or options.salt or None
    study_dir = Path(study_dir)
    make_private_dir(study_dir)
    if ct.shape != labels.shape:
        raise GeometryError(f"CT {ct.shape} and labels {labels.shape} are not on the same grid; "
                            "pass both on the original scan grid")
    if options.dicom and source_datasets:
        from .dicom_out import check_sources

        check_sources(labels, source_datasets)  # fail before rendering anything
    shown = display_labels(ct, labels)  # what is drawn is what is counted
    ovs = render_study(ct, shown, result, options, salt, agreement, shown=True)
    paths = write_overlays(ovs, study_dir / "overlays", result)
    out: dict = {"overlays": [p.relative_to(study_dir).as_posix() for p in paths]}
    if ovs.skipped_slices:
        out["overlays_skipped_slices"] = [result.slice_reference(k) for k in ovs.skipped_slices]
    summary_png = (study_dir / "overlays" / "summary.png").read_bytes() if ovs.summary is not None else None
    from .prior import read_prior

    prior = read_prior(study_dir, result)  # written by `cacpipe progression` (cacpipe.review.prior)
    write_private_text(study_dir / "review.html", study_page(ct, shown, result, summary_png, options, salt,
                                                             prior=prior, study_dir=study_dir))
    out["review_html"] = "review.html"
    if options.dicom and source_datasets:
        from .dicom_out import write_dicom_outputs

        images = [np.asarray(ovs.summary)] + [np.asarray(s.composite) for s in ovs.slices]
        names = ["summary: thick-slab MIP"] + [f"{s.ref}: " + ", ".join(les.name for les in s.lesions)
                                                for s in ovs.slices]
        d = write_dicom_outputs(study_dir / "dicom", shown, result, source_datasets, images, names,
                                options.series_number_base, verification=verification, prior=prior)
        out["seg"] = Path(d["seg"]).relative_to(study_dir).as_posix()
        out["sr"] = Path(d["sr"]).relative_to(study_dir).as_posix()
        out["sc"] = [Path(p).relative_to(study_dir).as_posix() for p in d["sc"]]
    elif options.dicom:
        out["dicom_skipped"] = "no source DICOM slices given (CT came from NIfTI): SEG/SR/SC not written"
        log.warning("review %s: %s", study_dir, out["dicom_skipped"])
    review = {
        "schema": "cacpipe.review/1", "study_uid": result.study.study_uid, "status": result.status,
        "display": display_items(result.study.to_dict(), options.fields, salt), "total": asdict(result.total),
        "arteries": {a: {"assessed": r.assessed, "agatston": r.agatston} for a, r in result.arteries.items()},
        "flags": [f.to_dict() for f in result.flags],
        "provenance": result.provenance_statement(),
        "lesions": [{"name": les.name, "artery": les.artery, "volume_mm3": les.volume_mm3, "slice": les.best_slice + 1,
                     "image": (result.ct.get("instance_numbers") or [None] * (les.best_slice + 1))[les.best_slice],
                     "reference": result.slice_reference(les.best_slice)}
                    for les in ovs.lesions],
        "review_html": "review.html", "outputs": out,
    }
    if options.anonymous_names:  # the index shows this id where a text would name the PatientID
        review["patient_pseudonym"] = anonymised_id(result.study.patient_id, salt)
    write_private_text(study_dir / "review.json", json.dumps(review, indent=2))
    out["review_json"] = "review.json"
    return out


def build_index(results_dir: Path, *, fields: tuple[str, ...] | None = None, salt: str = "") -> Path:
    """Write ``results_dir/index.html``: every study of a scan's manifest (failed and skipped ones
    with their reasons) and every review page under ``results_dir``; returns its path.
    ``fields``/``salt``: what identifies a study without a review page (default: the review
    settings' fields, i.e. the anonymised id and the study date)."""
    from .index import write_index

    path = write_index(Path(results_dir), fields=fields, salt=salt)
    protect([path])
    return path
