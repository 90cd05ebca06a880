"""Which studies of a ``cacpipe scan`` results folder belong to one patient, in time order.

A patient is its PatientID, or (``mapping``) a subject id from a CSV that maps pseudonymised
PatientIDs or StudyInstanceUIDs to one subject: columns ``subject`` and ``patient_id`` and/or
``study_uid``. Studies are ordered by StudyDate (YYYYMMDD); a study without a date cannot be
placed in time and is left out with its reason, as is a study whose scan did not finish or
that was not assessable (its lesions say nothing about change).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputDataError
from ..record import StudyResult
from ..scan.layout import MANIFEST


@dataclass
class Study:
    """One done study of the scan: its result and folder."""

    subject: str
    result: StudyResult
    folder: Path  # the study's folder in RESULTS

    @property
    def study_uid(self) -> str:
        return self.result.study.study_uid

    @property
    def date(self) -> dt.date:
        return parse_date(self.result.study.study_date)


@dataclass
class Grouping:
    """Patients with their studies in time order, and the studies left out (with reasons)."""

    patients: dict[str, list[Study]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    @property
    def serial(self) -> dict[str, list[Study]]:
        """Patients with more than one study (the ones progression is about)."""
        return {k: v for k, v in self.patients.items() if len(v) > 1}


def parse_date(text: str) -> dt.date:
    """A DICOM DA (YYYYMMDD; YYYY-MM-DD accepted) as a date; InputDataError when it is not one."""
    t = (text or "").strip().replace("-", "").replace(".", "")
    try:
        return dt.date(int(t[:4]), int(t[4:6]), int(t[6:8])) if len(t) == 8 else _bad(text)
    except ValueError:
        return _bad(text)


def _bad(text: str) -> dt.date:
    raise InputDataError(f"study date {text!r} is not a date (YYYYMMDD)")


def read_mapping(path: str | Path) -> dict[str, str]:
    """A pseudonym mapping CSV -> {patient_id or study_uid: subject}."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"cannot read the mapping {path}: {exc}") from exc
    cols = set(rows[0]) if rows else set()
    if "subject" not in cols or not cols & {"patient_id", "study_uid"}:
        raise InputDataError(f"the mapping {path} needs a 'subject' column and a 'patient_id' and/or "
                             f"'study_uid' column (found: {', '.join(sorted(cols)) or 'no header'})")
    out: dict[str, str] = {}
    for r in rows:
        subject = (r.get("subject") or "").strip()
        for k in ("study_uid", "patient_id"):
            key = (r.get(k) or "").strip()
            if key and subject:
                out[key] = subject
    return out


def load_studies(results: str | Path, mapping: dict[str, str] | None = None) -> Grouping:
    """Group the done studies of ``results`` (a ``cacpipe scan`` output folder) per patient, by date."""
    results = Path(results)
    mpath = results / MANIFEST
    if not mpath.is_file():
        raise InputDataError(f"{results} is not a cacpipe scan results folder (no {MANIFEST}); "
                             "run `cacpipe scan -i EXPORT -o RESULTS` first")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read {mpath}: {exc}") from exc
    out = Grouping()
    for key, entry in sorted((manifest.get("studies") or {}).items()):
        if entry.get("status") != "done" or not entry.get("result"):
            out.skipped.append({"study": key, "reason": f"scan status {entry.get('status') or 'unknown'}"})
            continue
        rpath = results / entry["result"]
        try:
            res = StudyResult.load(rpath)
            parse_date(res.study.study_date)
        except InputDataError as exc:
            out.skipped.append({"study": key, "reason": str(exc)})
            continue
        if res.status != "done":  # not assessable: its lesions say nothing about change
            out.skipped.append({"study": key, "reason": f"{res.status}: {res.reason}"})
            continue
        subject = res.study.patient_id
        if mapping:
            subject = mapping.get(res.study.study_uid) or mapping.get(res.study.patient_id) or subject
        if not subject:  # never lump unidentified studies (e.g. image files) into one patient
            out.skipped.append({"study": key, "reason": "no PatientID (give a --mapping row for its study_uid)"})
            continue
        out.patients.setdefault(subject, []).append(Study(subject, res, rpath.parent))
    for studies in out.patients.values():
        studies.sort(key=lambda s: (s.date, s.result.study.accession, s.study_uid))
    return out
