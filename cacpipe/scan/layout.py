"""The output folder of a scan: names, atomic writes, complete-or-absent study folders.

Layout::

    OUT/manifest.json                 status of every study (done / failed / skipped + reason)
    OUT/cohort.csv                    one row per study, rebuilt from the manifest after each run
    OUT/<PatientID>/<StudyUID>/       result.json, labels.nii.gz, ... (one study); with
                                      review.anonymous_names: OUT/anon-<id>/study-<id>/

A study's folder is written under a temporary name and renamed into place only when complete,
so a killed run never leaves a half-written result that counts as done.

Folder names are unique per study and stable across runs: an identifier that is a safe name as it
is (letters, digits, ``.``, ``_``, ``-``; at most 64 characters; not one of the run's own files
such as ``cohort.csv``, nor a Windows device name such as ``CON`` or ``NUL.txt``) is used as it
is; any other is made safe (reserved names get a leading ``_``) and gets ``-`` plus 10 hex digits
of the SHA-1 of the exact identifier, so ``1.2.3`` and ``1.2.3.``, or two 70-character UIDs
sharing 64 characters, never share a folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from ..files import FILE_MODE, make_private_dir

MANIFEST = "manifest.json"
COHORT = "cohort.csv"
RESULT = "result.json"
LOCK = ".cacpipe-scan.lock"
WORK = ".tmp"
SUPERSEDED = "superseded"
LOG = "cacpipe.log"
PREVIEW = "dry_run.json"
CORRECTIONS = "corrections"  # where readers' corrections files go (`cacpipe review apply` reads it)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def one_line(text, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters, always encodable (an OS error naming a
    path that is not UTF-8 carries undecodable bytes: they become ``\\xNN``)."""
    return " ".join(_utf8(str(text)).decode("utf-8", "backslashreplace").split())[:limit]


def _utf8(text: str) -> bytes:
    """``text`` as bytes: undecodable path bytes (surrogate escapes) become those bytes again."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file system produced
        return text.encode("utf-8", "backslashreplace")


MAX_NAME = 64
HASH_CHARS = 10
RUN_FILES = frozenset({MANIFEST, COHORT, "index.html", LOCK, WORK, SUPERSEDED, LOG, PREVIEW, CORRECTIONS})
"""Names cacpipe writes or reads at the top of OUT (the scan, its log and dry run, the index page,
readers' corrections, superseded results): never a patient folder as they are."""
WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                             *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))})


def _reserved(name: str) -> bool:
    # Windows treats "NUL.txt" like "NUL": the part before the first dot counts.
    return name.casefold() in {n.casefold() for n in RUN_FILES} or name.split(".")[0].upper() in WINDOWS_DEVICES


def safe_name(text: str, fallback: str = "UNKNOWN", force_hash: bool = False) -> str:
    """A folder name for a DICOM identifier, unique per exact identifier (see the module docstring).

    ``force_hash`` adds the hash even to a name that is safe as it is (two identifiers that differ
    only in case collide on case-insensitive file systems).
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._-") or fallback
    if not force_hash and name == text and len(name) <= MAX_NAME and not _reserved(name):
        return name
    if _reserved(name):
        name = f"_{name}"  # Windows reads "NUL.txt-1a2b" as the device NUL: the name must not start with it
    digest = hashlib.sha1(_utf8(text)).hexdigest()[:HASH_CHARS]
    return f"{name[:MAX_NAME - HASH_CHARS - 1]}-{digest}"


def study_folder(patient_id: str, study_uid: str, hash_patient: bool = False, hash_study: bool = False) -> str:
    """The study's folder relative to OUT (``hash_*``: see ``safe_name``'s ``force_hash``)."""
    return f"{safe_name(patient_id, force_hash=hash_patient)}/{safe_name(study_uid, force_hash=hash_study)}"


def study_folders(keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Folders (relative to OUT) for (patient_id, study_uid) pairs: ``study_folder`` of each, with
    the hash forced on names that would collide when case is ignored."""
    def clashing(names: dict[str, str]) -> set[str]:
        seen: dict[str, set[str]] = {}
        for text, name in names.items():
            seen.setdefault(name.casefold(), set()).add(text)
        return {t for texts in seen.values() if len(texts) > 1 for t in texts}

    patients = {pid for pid, _ in keys}
    hash_pid = clashing({p: safe_name(p) for p in patients})
    folders: dict[tuple[str, str], str] = {}
    for pid in patients:
        uids = {uid for p, uid in keys if p == pid}
        hash_uid = clashing({u: safe_name(u) for u in uids})
        for uid in uids:
            folders[(pid, uid)] = study_folder(pid, uid, pid in hash_pid, uid in hash_uid)
    return folders


def anonymous_folders(keys: list[tuple[str, str]], salt: str | None = None) -> dict[tuple[str, str], str]:
    """Folders (relative to OUT) named by pseudonyms (``review.anonymous_names``):
    ``anon-<10 hex>/study-<10 hex>``, HMAC-keyed by the anonymisation secret (cacpipe.review.options),
    so the same patient and study get the same folder on every run and at every site sharing it."""
    from ..review.options import anonymised_id, study_pseudonym

    return {(pid, uid): f"{anonymised_id(pid, salt)}/{study_pseudonym(uid, salt)}" for pid, uid in keys}


def output_folders(keys: list[tuple[str, str]], review) -> dict[tuple[str, str], str]:
    """The study folders of a scan: pseudonyms under ``review.anonymous_names`` (``review``: the
    ReviewSettings), else PatientID/StudyUID made safe (:func:`study_folders`)."""
    if review.anonymous_names:
        return anonymous_folders(keys, review.salt)
    return study_folders(keys)


def check_output_folder(export: Path | None, out: Path) -> None:
    """Refuse, before anything runs, an OUT that cannot be written or that overlaps EXPORT.

    An OUT inside EXPORT (or equal to it) would be read back as input by later runs; an EXPORT
    inside OUT could receive result folders. ``export`` None (one image file as input: OUT may sit
    next to it or hold it) checks only that OUT can be written. Raises ConfigError with a one-line message.
    """
    from ..errors import ConfigError

    if export is not None:
        exp, res = export.resolve(), out.resolve()
        if res == exp or res.is_relative_to(exp):
            raise ConfigError(f"--out {out} is inside the export {export}: later runs would read their own "
                              "outputs; choose an output folder outside the export")
        if exp.is_relative_to(res):
            raise ConfigError(f"the export {export} is inside --out {out}: result folders could land in the "
                              "export; choose an output folder outside it")
    try:
        make_private_dir(out)  # a new OUT is owner-only (cacpipe.files): its folder names are patient ids
        fd, probe = tempfile.mkstemp(dir=out, prefix=".cacpipe-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--out {out} is not a writable folder ({exc.strerror or exc})") from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one.
    Owner-only, as every output with patient data (cacpipe.files)."""
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        # backslashreplace: a path that is not valid UTF-8 inside a reason must not make the write fail
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
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


def supersede(final: Path, out: Path) -> Path:
    """Move the study folder ``final`` (e.g. a reader-corrected result about to be redone) to
    ``OUT/superseded/<PatientFolder>/<StudyFolder>.<UTC time>/``, whole; returns where it went."""
    rel = final.relative_to(out)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest = out / SUPERSEDED / rel.parent / f"{rel.name}.{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{rel.name}.{stamp}-{n}")
    make_private_dir(dest.parent)
    os.rename(final, dest)
    return dest


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
