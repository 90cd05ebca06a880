"""The scan manifest (status of every study), the one-scan-per-folder lock, and resume decisions.

The manifest is a cache: ``result.json`` carries the input fingerprint and settings hash, and a
result found on disk with matching values counts as done even if the manifest missed it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

from ..errors import ConfigError
from .layout import LOCK, MANIFEST, RESULT, now, write_atomic

MANIFEST_SCHEMA = "cacpipe.manifest/1"


def settings_hash(obj) -> str:
    """A stable hash of anything JSON-like (the analysis name and its settings)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def load_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "studies": {}, "problems": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"manifest {path} is unreadable ({exc}); move it away to rescan from scratch") from exc
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ConfigError(f"{path} is not a cacpipe scan manifest (schema {data.get('schema')!r})")
    return data


class ManifestWriter:
    """Writes the manifest atomically; ``throttled`` writes are skipped when the last write was so
    recent that writing would take over ~5 % of the time (huge manifests). A result missed this
    way is recovered from its result.json by the next run."""

    def __init__(self, out: Path, manifest: dict):
        self.out, self.manifest = out, manifest
        self._cost = 0.0
        self._last = 0.0

    def save(self, throttled: bool = False) -> None:
        t = time.perf_counter()
        if throttled and t - self._last < 20 * self._cost:
            return
        self.manifest["updated"] = now()
        write_atomic(self.out / MANIFEST, json.dumps(self.manifest, indent=1, default=str))
        self._last = time.perf_counter()
        self._cost = self._last - t


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ScanLock:
    """One scan at a time per output folder.

    The lock is an advisory ``flock`` on ``OUT/.cacpipe-scan.lock``, which the kernel releases when
    its process dies, however it dies: taking over after a crash is atomic (of many processes that
    find a stale lock, exactly one gets it). The file also names its holder (pid, host) for the
    message others get. A lock file that names a live process on this host while nobody holds the
    flock (written by an older cacpipe) still counts as held; one naming a dead process is taken
    over. Where ``flock`` is missing, the older create-exclusive file protocol is used.
    """

    def __init__(self, out: Path):
        self.path = out / LOCK
        self._fd: int | None = None

    def _refuse(self, other: dict) -> ConfigError:
        return ConfigError(f"another cacpipe scan (pid {other.get('pid')} on {other.get('host')}) is writing "
                           f"to {self.path.parent}; wait for it, or delete {self.path} if it is not running")

    def _read(self, fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # no flock (Windows): the create-exclusive protocol
            return self._enter_exclusive()
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": now()}
        for _ in range(20):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                other = self._read(fd)
                os.close(fd)
                raise self._refuse(other) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: try the new one
                os.close(fd)
                continue
            other = self._read(fd)
            if other and other.get("host") == me["host"] and other.get("pid") != me["pid"] \
                    and _pid_alive(int(other.get("pid", 0) or 0)) and not other.get("flock"):
                os.close(fd)  # an older cacpipe's lock (no flock) held by a live process
                raise self._refuse(other)
            if other and other.get("pid") == me["pid"] and other.get("host") == me["host"] and not other.get("flock"):
                os.close(fd)
                raise self._refuse(other)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps({**me, "flock": True}).encode())
            self._fd = fd
            return self
        raise ConfigError(f"cannot take the scan lock {self.path}")

    def _enter_exclusive(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": now()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    other = json.loads(self.path.read_text())
                except (OSError, json.JSONDecodeError):
                    other = {}
                if other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", 0) or 0)):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise self._refuse(other) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise ConfigError(f"cannot take the scan lock {self.path}")

    def __exit__(self, *exc):
        # Remove the file while still holding the lock: a process that opened it meanwhile sees
        # that it is gone (inode check) and starts over with a new file.
        self.path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def redo_reason(entry: dict | None, fp: str, cfg: str, out: Path, force: bool, rel: str,
                study_uid: str) -> str | None:
    """Why a study must be (re)analysed; None when its result is up to date.

    Up to date means: done with these fingerprints, recorded in the study's folder ``rel``, and
    that folder's result.json is this study's with these fingerprints (a result another study
    overwrote, as versions before unique folder names allowed, is redone).
    """
    if force:
        return "forced"
    if entry is None:
        return "new"
    if entry.get("status") != "done":
        return f"was {entry.get('status', 'unknown')}"
    if entry.get("input_fingerprint") != fp:
        return "inputs changed"
    if entry.get("config_hash") != cfg:
        return "settings changed"
    if entry.get("result") != f"{rel}/{RESULT}":
        return "result folder changed"
    if recover(out, rel, fp, cfg, study_uid) is None:
        return "result missing or not this study's"
    return None


def recover(out: Path, rel: str, fp: str, cfg: str, study_uid: str) -> str | None:
    """The series UID of a complete result on disk for the study ``study_uid`` with these
    fingerprints (e.g. the manifest write was missed when a run was killed), or None."""
    try:
        res = json.loads((out / rel / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict):
        return None
    ing, study = res.get("ingest") or {}, res.get("study") or {}
    if (ing.get("input_fingerprint") == fp and ing.get("config_hash") == cfg and res.get("status") != "failed"
            and study.get("study_uid") == study_uid):
        return str(study.get("series_uid", ""))
    return None


def corrected_by(study_dir: Path) -> list[str]:
    """The readers whose corrections a study folder's result.json holds (empty: not corrected).

    A reader's corrections are data (docs/review.md): a rescan never replaces such a folder unless
    asked to, and then keeps it (:func:`cacpipe.scan.layout.supersede`)."""
    try:
        res = json.loads((study_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    files = ((res.get("corrections") or {}).get("files") or []) if isinstance(res, dict) else []
    readers = sorted({str(f.get("reader") or "?") for f in files if isinstance(f, dict)})
    if not readers and (study_dir / "labels_corrected.nii.gz").exists():
        readers = ["?"]
    return readers


def keep_corrected(out: Path, rel: str, why: str, redo_corrected: bool) -> str | None:
    """When the study folder ``rel`` holds a reader-corrected result that would be redone for
    ``why``: the line saying it is kept (None: nothing corrected there, or ``redo_corrected``)."""
    readers = corrected_by(out / rel)
    if not readers or redo_corrected:
        return None
    return (f"kept the result corrected by {', '.join(readers)}; not redone although {why} "
            "(`cacpipe scan --redo-corrected` redoes it and moves the corrected version to OUT/superseded/)")
