"""The output folder of a scan: names, atomic writes, complete-or-absent study folders.

Layout::

    OUT/manifest.json                 status of every study (done / failed / skipped + reason)
    OUT/cohort.csv                    one row per study, rebuilt from the manifest after each run
    OUT/<PatientID>/<StudyUID>/       result.json, labels.nii.gz, ... (one study)

A study's folder is written under a temporary name and renamed into place only when complete,
so a killed run never leaves a half-written result that counts as done.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

MANIFEST = "manifest.json"
COHORT = "cohort.csv"
RESULT = "result.json"
LOCK = ".cacpipe-scan.lock"
WORK = ".tmp"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def one_line(text, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def safe_name(text: str, fallback: str = "UNKNOWN") -> str:
    """A folder name from a DICOM identifier: keeps letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    return name[:64] or fallback


def study_folder(patient_id: str, study_uid: str) -> str:
    """The study's folder relative to OUT."""
    return f"{safe_name(patient_id)}/{safe_name(study_uid)}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temporary_twin(final: Path) -> Path:
    """A hidden sibling folder name in which a study is written before it is installed."""
    return final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")


def install(tmp: Path, final: Path) -> None:
    """Replace ``final`` with the complete folder ``tmp`` (two renames; see cleanup_stale)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def cleanup_stale(out: Path) -> None:
    """Remove temporary study folders and extraction folders left by a killed run."""
    shutil.rmtree(out / WORK, ignore_errors=True)
    for p in out.glob("*/.*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob("*/.*.old-*"):
        final = p.with_name(p.name[1:].rsplit(".old-", 1)[0])
        if not final.exists():  # killed between the two renames: the old result is still complete
            os.rename(p, final)
        else:
            shutil.rmtree(p, ignore_errors=True)
