"""One study, in whatever process runs it: load the series, analyse, write the result folder.

``process_study`` never raises: a failure is an outcome with a one-line reason (and, for
unexpected exceptions, a short traceback in the manifest's ``detail``).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import CacpipeError, InputDataError
from ..files import make_private_dir
from ..flags import Flag
from ..ingest import LoadedSeries, Series, load_series
from ..record import StudyResult
from .layout import RESULT, install, now, one_line, temporary_twin, write_atomic

Analyse = Callable[[LoadedSeries, Path, Settings], StudyResult]
"""``analyse(series, out_dir, settings) -> StudyResult``: writes one study's outputs into out_dir."""

SERIES_FALLBACK = "series_fallback"


@dataclass
class StudyTask:
    """Everything a worker needs for one study (picklable; no volumes travel, only file paths)."""

    key: str
    candidates: list[Series]  # qualifying series, best first; the next is tried when one is unusable
    out_dir: str
    input_fingerprint: str
    config_hash: str
    analyse: Analyse
    settings: Settings
    skipped_series: list[dict] = field(default_factory=list)
    device: str | None = None  # set by a multi-GPU runner: this worker's GPU


def _validate(result, tmp: Path) -> StudyResult:
    if isinstance(result, dict):
        result = StudyResult.from_json(result)
    if not isinstance(result, StudyResult):
        raise CacpipeError(f"analyse returned {type(result).__name__}, expected a StudyResult")
    for name, rel in result.outputs.items():
        if isinstance(rel, str) and not (tmp / rel).exists():
            raise CacpipeError(f"analyse listed output {name}={rel} but did not write it")
    return result


def load_first_usable(task: StudyTask) -> LoadedSeries:
    """Assemble the best candidate series; when it is unusable, the next one (flagged)."""
    errors = []
    for series in task.candidates:
        try:
            loaded = load_series(series, task.settings.assembly)
        except InputDataError as exc:
            errors.append((series, str(exc)))
            continue
        if errors:
            bad = "; ".join(f"{s.series_description or s.series_uid}: {e}" for s, e in errors)
            name = series.series_description or series.series_uid
            loaded.flags.append(Flag(SERIES_FALLBACK, f"preferred series unusable ({bad}); scored {name} instead",
                                     "warning"))
        return loaded
    if len(errors) == 1:
        raise InputDataError(errors[0][1])
    raise InputDataError("no candidate series is usable: " + "; ".join(
        f"{s.series_description or s.series_uid}: {e}" for s, e in errors))


def process_study(task: StudyTask) -> dict:
    """Load, analyse and write one study; returns the outcome for the manifest."""
    started, t0 = now(), time.perf_counter()
    final = Path(task.out_dir)
    tmp = temporary_twin(final)
    seconds: dict[str, float] = {}
    series_uid = task.candidates[0].series_uid
    settings = task.settings if task.device is None else task.settings.replace(device=task.device)
    try:
        loaded = load_first_usable(task)
        series_uid = loaded.identity.series_uid
        seconds["load"] = round(time.perf_counter() - t0, 3)
        make_private_dir(tmp)  # owner-only, also the patient folder when it is new (cacpipe.files)
        result = _validate(task.analyse(loaded, tmp, settings), tmp)
        seconds["analyse"] = round(time.perf_counter() - t0 - seconds["load"], 3)
        result.outputs["result"] = RESULT
        result.ingest = {"input_fingerprint": task.input_fingerprint, "config_hash": task.config_hash,
                         "files": loaded.files, "skipped_series": task.skipped_series}
        write_atomic(tmp / RESULT, result_text(result))
        install(tmp, final)
        status = "failed" if result.status == "failed" else "done"
        reason = one_line(result.reason or "analysis reported failure") if status == "failed" else ""
        detail = ""
        flags = sorted({f.code for f in result.flags})
    except Exception as exc:  # one study's failure must never stop the batch
        shutil.rmtree(tmp, ignore_errors=True)
        status, flags = "failed", []
        reason = one_line(str(exc)) if isinstance(exc, CacpipeError) else one_line(f"{type(exc).__name__}: {exc}")
        detail = "" if isinstance(exc, CacpipeError) else traceback.format_exc(limit=8)
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return {"key": task.key, "status": status, "reason": reason, "detail": detail, "flags": flags,
            "series_uid": series_uid, "started": started, "finished": now(), "seconds": seconds,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def result_text(result: StudyResult) -> str:
    import json

    return json.dumps(result.to_json(), indent=2, default=str)


def failed_outcome(task: StudyTask, reason: str) -> dict:
    return {"key": task.key, "status": "failed", "reason": reason, "detail": "", "flags": [], "seconds": {},
            "started": None, "finished": now()}
