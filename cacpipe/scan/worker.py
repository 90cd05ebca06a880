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
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..config import Settings
from ..errors import CacpipeError, InputDataError
from ..files import make_private_dir, protect_tree
from ..flags import SERIES_FALLBACK, Flag
from ..ingest import LoadedSeries, Series, load_series
from ..record import StudyResult
from .layout import RESULT, install, now, one_line, supersede, temporary_twin, write_atomic

Analyse = Callable[[LoadedSeries, Path, Settings], StudyResult]
"""``analyse(series, out_dir, settings) -> StudyResult``: writes one study's outputs into out_dir."""

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
    device: str | None = None  # set by the runner: this worker's device (one GPU of a cuda:0,1 list)
    image: str | None = None  # a CT image file (NIfTI/NRRD/MHA) instead of DICOM candidates
    patient_id: str | None = None  # the patient id of an image file
    supersede: bool = False  # the folder holds a reader-corrected result: move it to OUT/superseded/, never delete
    out_root: str | None = None  # OUT (for ``supersede``)


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
    """Assemble the best candidate series; when it is unusable, the next one (flagged). An image-file
    task reads its file."""
    if task.image is not None:
        from ..ingest import read_ct

        return read_ct(task.image, task.settings, patient_id=task.patient_id)
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


class StudySteps(NamedTuple):
    """The three steps of a split analyse function, which the pipelined runner runs apart (the
    network step of one study while the CPU steps of its neighbours run)."""

    prepare: Callable[[LoadedSeries, Settings], Any]  # CPU (stage 1): series, settings -> state
    infer: Callable[[Any], Any]  # the accelerator (the network): state -> state
    finish: Callable[[Any, Path], StudyResult]  # CPU: state, out_dir -> the result (outputs written)


@runtime_checkable
class SplitAnalyse(Protocol):
    """An :data:`Analyse` function that also offers its three steps as ``stages`` (prepare, infer,
    finish), as ``cacpipe.pipeline.analyse_series`` does; ``analyse(...)`` = the three in a row."""

    stages: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]

    def __call__(self, series: LoadedSeries, out_dir: Path, settings: Settings, /) -> StudyResult: ...


def stages_of(analyse: Analyse) -> StudySteps | None:
    """The three steps of a split analyse function (:class:`SplitAnalyse`), or None for a plain one."""
    if not isinstance(analyse, SplitAnalyse) or len(analyse.stages) != 3:
        return None
    return StudySteps(*analyse.stages)


@dataclass
class OpenStudy:
    """One study on its way through a worker: loaded (and prepared), inferred, then closed.

    ``process_study`` runs the three phases back to back; the pipelined runner
    (``executors.run_pipelined``) runs them for different studies at the same time.
    """

    task: StudyTask
    settings: Settings
    started: str
    series_uid: str
    seconds: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0  # seconds of work so far (not counting waits between phases)
    loaded: LoadedSeries | None = None
    state: object = None  # what the analyse stages hand on (their first step's output, then the second's)
    error: tuple[str, str] | None = None  # (reason, detail) of the first failure


def _fail(run: OpenStudy, exc: Exception) -> None:
    reason = one_line(str(exc)) if isinstance(exc, CacpipeError) else one_line(f"{type(exc).__name__}: {exc}")
    run.error = (reason, "" if isinstance(exc, CacpipeError) else traceback.format_exc(limit=8))


def open_study(task: StudyTask) -> OpenStudy:
    """Phase 1: assemble the series and, for a split analyse function, its first step (stage 1)."""
    t0 = time.perf_counter()
    settings = task.settings if task.device is None else task.settings.replace(device=task.device)
    run = OpenStudy(task, settings, now(), task.candidates[0].series_uid if task.candidates else "")
    try:
        loaded = load_first_usable(task)
        run.loaded, run.series_uid = loaded, loaded.identity.series_uid
        run.seconds["load"] = round(time.perf_counter() - t0, 3)
        stages = stages_of(task.analyse)
        if stages:
            run.state = stages.prepare(loaded, settings)
    except Exception as exc:  # one study's failure must never stop the batch
        _fail(run, exc)
    run.busy += time.perf_counter() - t0
    return run


def infer_study(run: OpenStudy) -> OpenStudy:
    """Phase 2: the network step of a split analyse function (nothing for a plain one)."""
    stages = stages_of(run.task.analyse)
    if stages and run.error is None:
        t0 = time.perf_counter()
        try:
            run.state = stages.infer(run.state)
        except Exception as exc:
            _fail(run, exc)
        run.busy += time.perf_counter() - t0
    return run


def close_study(run: OpenStudy) -> dict:
    """Phase 3: the rest of the analysis into a temporary twin of the result folder, result.json,
    the folder moved into place; returns the outcome for the manifest (never raises)."""
    t0, busy0 = time.perf_counter(), run.busy
    task = run.task
    final = Path(task.out_dir)
    tmp = temporary_twin(final)
    seconds = run.seconds
    status, flags, brief = "failed", [], {}
    if run.error is None:
        try:
            make_private_dir(tmp)  # owner-only, also the patient folder when it is new (cacpipe.files)
            stages = stages_of(task.analyse)
            result = stages.finish(run.state, tmp) if stages else task.analyse(run.loaded, tmp, run.settings)
            result = _validate(result, tmp)
            seconds["analyse"] = round(busy0 + time.perf_counter() - t0 - seconds["load"], 3)
            result.outputs["result"] = RESULT
            result.ingest = {"input_fingerprint": task.input_fingerprint, "config_hash": task.config_hash,
                             "files": run.loaded.files, "skipped_series": task.skipped_series}
            if task.supersede and final.exists() and task.out_root:
                # asked to redo a corrected study: the corrected version is kept whole, never deleted
                kept = supersede(final, Path(task.out_root))
                result.ingest["superseded"] = str(kept.relative_to(task.out_root))
            write_atomic(tmp / RESULT, result_text(result))
            protect_tree(tmp)  # whatever the analysis wrote (any --analyse function, any library) is owner-only
            install(tmp, final)
            status = "failed" if result.status == "failed" else "done"
            reason = one_line(result.reason or "analysis reported failure") if status == "failed" else ""
            detail = ""
            flags = sorted({f.code for f in result.flags})
            brief = result_brief(result)
        except Exception as exc:  # one study's failure must never stop the batch
            _fail(run, exc)
    if run.error is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        reason, detail = run.error
    run.state = run.loaded = None  # let the volumes go before the next study
    run.busy = busy0 + time.perf_counter() - t0
    seconds["total"] = round(run.busy, 3)
    return {"key": task.key, "status": status, "reason": reason, "detail": detail, "flags": flags,
            "series_uid": run.series_uid, "started": run.started, "finished": now(), "seconds": seconds,
            "worker": f"{socket.gethostname()}:{os.getpid()}", "device": run.settings.device, "brief": brief}


def process_study(task: StudyTask) -> dict:
    """Load, analyse and write one study; returns the outcome for the manifest."""
    return close_study(infer_study(open_study(task)))


def result_brief(result: StudyResult) -> dict:
    """What the console line of a finished study shows (small: it travels back from worker processes)."""
    t = result.total
    return {"status": result.status, "reason": result.reason, "agatston": t.agatston, "category": t.category,
            "cac_drs": t.cac_drs, "agatston_valid": t.agatston_valid, "agatston_note": t.agatston_note,
            "study_date": result.study.study_date, "is_demo": result.is_demo,
            "fallback_heart": result.fallback_heart,
            "flags": sorted({f.code for f in result.flags if f.severity in ("warning", "invalid")})}


def result_text(result: StudyResult) -> str:
    import json

    return json.dumps(result.to_json(), indent=2, default=str)


def failed_outcome(task: StudyTask, reason: str) -> dict:
    return {"key": task.key, "status": "failed", "reason": reason, "detail": "", "flags": [], "seconds": {},
            "started": None, "finished": now()}
