"""Planning a scan: discover the export, group, select one series per study, decide what to (re)do."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import __version__
from ..config import Settings
from ..ingest import discover, group_studies, select_series
from .layout import RESULT, now, output_folders
from .manifest import corrected_by, keep_corrected, recover, redo_reason, settings_hash
from .worker import Analyse, StudyTask

log = logging.getLogger(__name__)


def analyse_name(analyse: Analyse) -> str:
    return f"{getattr(analyse, '__module__', '?')}.{getattr(analyse, '__qualname__', repr(analyse))}"


def config_hash(analyse: Analyse, settings: Settings) -> str:
    """The settings hash of a study's result: the analysis and every setting but ``discovery``
    (which changes the inputs, and the input fingerprint already tracks those)."""
    tree = settings.to_record()  # secrets by their public name only
    tree.pop("discovery", None)
    # Where the outputs are sent is not part of the analysis: adding --send never redoes a study
    # (the value is kept as None, so that hashes of results scanned without --send stay the same).
    tree.get("review", {})["send"] = None
    return settings_hash({"analyse": analyse_name(analyse), "settings": tree})


def plan(export: Path, out: Path, manifest: dict, analyse: Analyse, settings: Settings, force: bool,
         workdir: Path, summary, progress: bool, redo_corrected: bool = False) -> list[StudyTask]:
    """Discover, group, select; record skipped and up-to-date studies in ``manifest``; return the
    studies to run. ``summary`` (a ScanSummary) gets the counts. A study whose folder holds a
    reader-corrected result is kept, not redone (:func:`keep_study`), unless ``redo_corrected``."""
    # The same export spelled as a relative or an absolute path (or through a symlink) is the same
    # input: file names, and so the fingerprints, are taken from the resolved path.
    export = Path(export).resolve()
    disc = discover(export, workdir, progress=progress, exclude=(out,),
                    follow_symlinks=settings.discovery.follow_symlinks)
    studies, group_problems = group_studies(disc.headers)
    problems = disc.problems + group_problems
    manifest.update(export=str(export.resolve()), cacpipe_version=__version__, scanned=now(),
                    problems=[p.to_dict() for p in problems], ignored_files=len(disc.ignored),
                    folder_links=list(disc.folder_links), settings=settings.to_record())
    summary.problems, summary.ignored_files, summary.studies = len(problems), len(disc.ignored), len(studies)
    summary.folder_links = list(disc.folder_links)
    for p in problems:
        log.warning("unreadable input: %s: %s", p.source, p.reason)
    for link in disc.folder_links:
        log.warning("folder link not followed: %s (scan its target, or copy the folder into the export)", link)
    cfg = config_hash(analyse, settings)
    for entry in manifest["studies"].values():
        entry["in_last_scan"] = False
    # Folders of earlier studies take part: a new study never takes a folder that differs only in case.
    folders = output_folders([(st.patient_id, st.study_uid) for st in studies]
                             + [(str(e.get("patient_id", "")), str(e.get("study_uid", "")))
                                for e in manifest["studies"].values()], settings.review)
    tasks = []
    for study in studies:
        sel = select_series(study, settings.selection)
        rel = folders[(study.patient_id, study.study_uid)]
        entry = manifest["studies"].get(study.key)
        base = {"patient_id": study.patient_id, "study_uid": study.study_uid, "study_date": study.study_date,
                "accession": study.accession, "in_last_scan": True, "skipped_series": sel.skipped_dicts(),
                "notes": study.notes}
        if study.conflict:  # several patients under one StudyInstanceUID: refused, never merged
            manifest["studies"][study.key] = {**base, "status": "failed", "reason": study.conflict, "series_uid": "",
                                              "result": None}
            summary.failed += 1
            summary.failures.append((study.key, study.conflict))
            log.warning("FAILED %s: %s", study.key, study.conflict)
            continue
        if sel.selected is None:
            manifest["studies"][study.key] = {**base, "status": "skipped", "reason": sel.reason, "series_uid": ""}
            summary.skipped += 1
            continue
        fp = sel.fingerprint()
        why = redo_reason(entry, fp, cfg, out, force, rel, study.study_uid)
        recovered = recover(out, rel, fp, cfg, study.study_uid) if why and not force else None
        if recovered is not None:
            why, entry = None, {**(entry or {}), "status": "done", "result": f"{rel}/{RESULT}", "reason": "",
                                "input_fingerprint": fp, "config_hash": cfg, "series_uid": recovered}
        if why is None:
            # series_uid stays the one the result was computed from (a fallback may have been used).
            manifest["studies"][study.key] = {"series_uid": sel.selected.series_uid, **entry, **base}
            summary.up_to_date += 1
            continue
        if keep_study(out, rel, why, redo_corrected, manifest, study.key, entry, base, summary):
            continue
        manifest["studies"][study.key] = {**(entry or {}), **base, "status": "pending", "reason": why,
                                          "series_uid": sel.selected.series_uid, "input_fingerprint": fp,
                                          "config_hash": cfg, "result": None}
        tasks.append(StudyTask(key=study.key, candidates=sel.candidates, out_dir=str(out / rel),
                               input_fingerprint=fp, config_hash=cfg, analyse=analyse, settings=settings,
                               skipped_series=sel.skipped_dicts(), supersede=bool(corrected_by(out / rel)),
                               out_root=str(out)))
    return tasks


def keep_study(out: Path, rel: str, why: str, redo_corrected: bool, manifest: dict, key: str, entry: dict | None,
               base: dict, summary) -> bool:
    """Keep a reader-corrected study that would be redone for ``why`` (recorded in ``manifest`` as
    done, with a ``kept`` line, and in ``summary.kept``); False when it is to be redone. The
    corrected result may sit in ``rel`` or, when the folder name changed, where the manifest says."""
    current = str((entry or {}).get("result") or "")
    folders = [rel] + ([current.rsplit("/", 1)[0]] if current.endswith(f"/{RESULT}") else [])
    for folder in dict.fromkeys(folders):
        kept = keep_corrected(out, folder, why, redo_corrected)
        if kept is None:
            continue
        series_uid = (entry or {}).get("series_uid") or ""
        try:
            series_uid = json.loads((out / folder / RESULT).read_text(encoding="utf-8"))["study"]["series_uid"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        manifest["studies"][key] = {**(entry or {}), **base, "status": "done", "reason": "", "kept": kept,
                                    "series_uid": series_uid, "result": f"{folder}/{RESULT}"}
        summary.up_to_date += 1
        summary.kept.append((key, kept))
        return True
    return False
