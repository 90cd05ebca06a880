"""Radiologist review outputs: PNG overlays, HTML review pages, DICOM SEG/SR/SC, C-STORE.

Entry points the pipeline calls: ``build_review`` (one study), ``build_index`` (a cohort),
``send_outputs`` (to a PACS). See docs/review.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from ..config import ReviewSettings
from ..errors import GeometryError
from ..record import StudyResult
from ..volume import Volume
from .options import anonymised_id, display_items
from .send import parse_target, send_outputs

log = logging.getLogger(__name__)

__all__ = ["anonymised_id", "build_index", "build_review",
           "parse_target", "send_outputs"]


def build_review(study_dir: Path, ct: Volume, labels: Volume, result: StudyResult, source_datasets: list | None,
                 options: ReviewSettings | None = None, *, salt: str = "", agreement=None) -> dict:
    """Write overlays, the review page and (when source slices are given) DICOM SEG/SR/SC.

    ``ct`` and ``labels`` are on the original scan grid; ``source_datasets`` are the source CT
    slice headers sorted like the volume (slice k = ct.array[k]) or None to skip DICOM outputs.
    ``salt`` keys the anonymised id; ``agreement`` is an optional fold-agreement volume.
    Returns paths relative to ``study_dir``: {"overlays": [...], "review_html", "review_json",
    "seg", "sr", "sc": [...]} (DICOM keys only when written; "dicom_skipped" says why not).
    """
    import numpy as np

    from .html import study_page
    from .overlays import render_study, write_overlays

    options = options or ReviewSettings()
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    if ct.shape != labels.shape:
        raise GeometryError(f"CT {ct.shape} and labels {labels.shape} are not on the same grid; "
                            "pass both on the original scan grid")
    if options.dicom and source_datasets:
        from .dicom_out import check_sources

        check_sources(labels, source_datasets)  # fail before rendering anything
    ovs = render_study(ct, labels, result, options, salt, agreement)
    paths = write_overlays(ovs, study_dir / "overlays")
    out: dict = {"overlays": [p.relative_to(study_dir).as_posix() for p in paths]}
    if ovs.skipped_slices:
        out["overlays_skipped_slices"] = [k + 1 for k in ovs.skipped_slices]
    (study_dir / "review.html").write_text(study_page(ct, labels, result, ovs, options, salt), encoding="utf-8")
    out["review_html"] = "review.html"
    if options.dicom and source_datasets:
        from .dicom_out import write_dicom_outputs

        images = [np.asarray(ovs.summary)] + [np.asarray(s.composite) for s in ovs.slices]
        names = ["summary: thick-slab MIP"] + [f"slice {s.k + 1}: " + ", ".join(les.name for les in s.lesions)
                                                for s in ovs.slices]
        d = write_dicom_outputs(study_dir / "dicom", labels, result, source_datasets, images, names,
                                options.series_number_base)
        out["seg"] = Path(d["seg"]).relative_to(study_dir).as_posix()
        out["sr"] = Path(d["sr"]).relative_to(study_dir).as_posix()
        out["sc"] = [Path(p).relative_to(study_dir).as_posix() for p in d["sc"]]
    elif options.dicom:
        out["dicom_skipped"] = "no source DICOM slices given (CT came from NIfTI): SEG/SR/SC not written"
        log.warning("review %s: %s", study_dir, out["dicom_skipped"])
    review = {
        "schema": "cacpipe.review/1", "study_uid": result.study.study_uid, "status": result.status,
        "display": display_items(result.study.to_dict(), options.fields, salt), "total": asdict(result.total),
        "flags": [f.to_dict() for f in result.flags],
        "lesions": [{"name": les.name, "artery": les.artery, "volume_mm3": les.volume_mm3, "slice": les.best_slice + 1}
                    for les in ovs.lesions],
        "review_html": "review.html", "outputs": out,
    }
    (study_dir / "review.json").write_text(json.dumps(review, indent=2))
    out["review_json"] = "review.json"
    return out


def build_index(results_dir: Path) -> Path:
    """Write ``results_dir/index.html`` listing every study reviewed under it; returns its path."""
    from .html import write_index

    return write_index(Path(results_dir))
