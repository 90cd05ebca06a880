"""A dry run: which series of the input would be scored, and why every other one would not.

Reads headers only (no pixels, no networks): discovery, grouping and the selection rules, exactly
as ``cacpipe scan`` applies them. ``cacpipe scan --dry-run`` and ``cacpipe list`` print it and
write it as JSON (schema ``cacpipe.preview/1``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ..config import Settings
from ..errors import InputDataError
from ..ingest import discover, group_studies, select_series
from .inputs import ScanInput, check_image
from .layout import MANIFEST, PREVIEW

PREVIEW_SCHEMA = "cacpipe.preview/1"
PREVIEW_FILE = PREVIEW


def _series(s, reason: str | None = None) -> dict:
    d = {**s.summary(), "spacing_mm": round(s.slice_spacing_mm(), 3) if s.slice_spacing_mm() else None}
    if reason is not None:
        d["reason"] = reason
    return d


def _last_status(out: Path | None) -> dict:
    if out is None or not (out / MANIFEST).exists():
        return {}
    try:
        studies = json.loads((out / MANIFEST).read_text()).get("studies", {})
    except (OSError, ValueError):
        return {}
    return {k: e.get("status", "") for k, e in studies.items()}


def preview(inp: ScanInput, settings: Settings | None = None, out: Path | None = None,
            patient_id: str | None = None, progress: bool = False) -> dict:
    """Per study: the series that would be scored, the fallbacks, every skipped series with its reason.
    ``out``: an existing scan folder whose manifest gives each study's last status."""
    from ..ingest.loaded import image_identity

    t0 = time.perf_counter()
    settings = settings or Settings()
    last = _last_status(out)
    studies, problems, ignored, links = [], [], 0, []
    if inp.kind in ("image", "images"):
        if inp.kind == "image":
            pairs, refused = [(inp.path, image_identity(inp.path, patient_id).patient_id)], []
        else:
            from ..ingest.image_cohort import collision_reason, image_cohort

            cohort = image_cohort(inp.path, inp.ids_csv)
            pairs = cohort.images
            refused = [(pid, collision_reason(pid, files, inp.path)) for pid, files in cohort.collisions]
        for path, pid in pairs:
            ident = image_identity(path, pid)
            try:
                size = check_image(path)
                selected, reason = {"series_description": str(path.relative_to(inp.root) if inp.kind == "images"
                                                              else path.name),
                                    "shape": "x".join(map(str, size)) + " (x y z)",
                                    "reason": "a CT image file is scored as it is (geometry from the file)"}, ""
            except InputDataError as exc:
                if inp.kind == "image":
                    raise
                selected, reason = None, str(exc)
            studies.append({"key": ident.key, "patient_id": ident.patient_id, "study_uid": ident.study_uid,
                            "study_date": "", "last_status": last.get(ident.key, ""), "selected": selected,
                            "fallbacks": [], "skipped": [], "reason": reason})
        for pid, reason in refused:
            studies.append({"key": f"{pid}/file-{pid}", "patient_id": pid, "study_uid": f"file-{pid}",
                            "study_date": "", "last_status": "", "selected": None, "fallbacks": [], "skipped": [],
                            "reason": reason})
    else:
        with tempfile.TemporaryDirectory(prefix="cacpipe_preview_") as work:
            disc = discover(inp.root, Path(work), progress=progress, exclude=(out,) if out else (),
                            follow_symlinks=settings.discovery.follow_symlinks)
        found, group_problems = group_studies(disc.headers)
        problems = [p.to_dict() for p in disc.problems + group_problems]
        ignored, links = len(disc.ignored), list(disc.folder_links)
        for study in found:
            if study.conflict:  # refused by the scan (several patients under one StudyInstanceUID)
                studies.append({"key": study.key, "patient_id": study.patient_id, "study_uid": study.study_uid,
                                "study_date": study.study_date, "last_status": last.get(study.key, ""),
                                "selected": None, "fallbacks": [], "skipped": [], "reason": study.conflict,
                                "notes": list(study.notes)})
                continue
            sel = select_series(study, settings.selection)
            fallback_uids = {s.series_uid for s in sel.candidates[1:]}
            studies.append({
                "key": study.key, "patient_id": study.patient_id, "study_uid": study.study_uid,
                "study_date": study.study_date, "last_status": last.get(study.key, ""),
                "selected": _series(sel.selected) if sel.selected is not None else None,
                "fallbacks": [_series(s, r) for s, r in sel.skipped if s.series_uid in fallback_uids],
                "skipped": [_series(s, r) for s, r in sel.skipped if s.series_uid not in fallback_uids],
                "reason": sel.reason, "notes": list(study.notes)})
    scorable = sum(1 for s in studies if s["selected"] is not None)
    return {"schema": PREVIEW_SCHEMA, "input": str(inp.path), "input_kind": inp.kind,
            "input_description": inp.describe(), "selection": settings.selection.to_dict(),
            "counts": {"studies": len(studies), "scorable": scorable, "problems": len(problems),
                       "ignored_files": ignored, "folder_links": len(links)},
            "studies": studies, "problems": problems, "folder_links": links, "seconds": round(time.perf_counter() - t0, 3)}
