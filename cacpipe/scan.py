"""Batch runner: a PACS export in, per-study results out; resumable, parallel, distributed.

``run_scan`` discovers the export (headers only), selects one series per study, and runs
``analyse`` on each study that is not already done with the same inputs and settings. Layout::

    OUT/manifest.json                 status of every study (done / failed / skipped + reason)
    OUT/cohort.csv                    one row per study, rebuilt from the manifest after each run
    OUT/<PatientID>/<StudyUID>/       result.json, labels.nii.gz, ... (written by analyse)

A study's folder is written under a temporary name and renamed into place only when complete,
so a killed run never leaves a half-written result that counts as done. The manifest is a
cache: ``result.json`` carries the input fingerprint and settings hash, and a result found on
disk with matching values counts as done even if the manifest missed it. See docs/scan.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import pickle
import re
import shutil
import socket
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .csvout import csv_text
from .errors import CacpipeError, ConfigError, InputDataError
from .flags import Flag
from .ingest import (
    AssemblyOptions,
    SelectionRules,
    Series,
    StudyInfo,
    discover,
    group_studies,
    load_series,
    select_series,
)
from .quant.table import COHORT_COLUMNS as _QUANT_COLUMNS
from .quant.table import cohort_row

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
COHORT = "cohort.csv"
RESULT = "result.json"
LOCK = ".cacpipe-scan.lock"
MANIFEST_SCHEMA = "cacpipe.manifest/1"
RESULT_SCHEMA = "cacpipe.result/1"

Analyse = Callable[..., dict]
SERIES_FALLBACK = "series_fallback"


# --- small helpers ---------------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def safe_name(text: str, fallback: str = "UNKNOWN") -> str:
    """A folder name from a DICOM identifier: keeps letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    return name[:64] or fallback


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


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


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def analyse_name(analyse: Analyse) -> str:
    return f"{getattr(analyse, '__module__', '?')}.{getattr(analyse, '__qualname__', repr(analyse))}"


def default_analyse() -> Analyse:
    """The full pipeline (stage 1 + stage 2 + quantification), imported only when needed."""
    try:
        from .pipeline import analyse_series  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError(f"the analysis pipeline cacpipe.pipeline.analyse_series is not available ({exc}); "
                          "reinstall cacpipe") from exc
    return analyse_series


# --- one study (runs in a worker) -------------------------------------------------------------

@dataclass
class StudyTask:
    """Everything a worker needs for one study (picklable; no volumes travel, only file paths)."""

    key: str
    candidates: list[Series]  # qualifying series, best first; the next is tried when one is unusable
    out_dir: str
    input_fingerprint: str
    config_hash: str
    analyse: Analyse
    settings: dict
    assembly: dict
    skipped_series: list[dict] = field(default_factory=list)


def _validate_result(result, tmp: Path) -> None:
    if not isinstance(result, dict):
        raise CacpipeError(f"analyse returned {type(result).__name__}, expected a result dict")
    for name, rel in (result.get("outputs") or {}).items():
        if isinstance(rel, str) and not (tmp / rel).exists():
            raise CacpipeError(f"analyse listed output {name}={rel} but did not write it")


def _install(tmp: Path, final: Path) -> None:
    """Replace ``final`` with the complete folder ``tmp`` (two renames; see _cleanup_stale)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def process_study(task: StudyTask) -> dict:
    """Load, analyse and write one study; never raises (a failure is an outcome with a reason)."""
    started, t0 = _now(), time.perf_counter()
    final = Path(task.out_dir)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    seconds: dict[str, float] = {}
    series_uid = task.candidates[0].series_uid
    try:
        series, volume = _load_first_usable(task)
        series_uid = series.series_uid
        info = StudyInfo.from_series(series)
        seconds["load"] = round(time.perf_counter() - t0, 3)
        tmp.mkdir(parents=True)
        result = task.analyse(volume, info, tmp, dict(task.settings))
        seconds["analyse"] = round(time.perf_counter() - t0 - seconds["load"], 3)
        _validate_result(result, tmp)
        result = _complete_result(result, task, info, series, volume.meta.get("ingest_flags", []))
        write_atomic(tmp / RESULT, json.dumps(result, indent=2, default=str))
        _install(tmp, final)
        status = "failed" if result.get("status") == "failed" else "done"
        reason = _one_line(result.get("reason", "analysis reported failure")) if status == "failed" else ""
        detail = ""
        flags = [f.get("code") for f in result.get("flags", []) if isinstance(f, dict)]
    except Exception as exc:  # one study's failure must never stop the batch
        shutil.rmtree(tmp, ignore_errors=True)
        status, flags = "failed", []
        reason = _one_line(str(exc)) if isinstance(exc, CacpipeError) else _one_line(f"{type(exc).__name__}: {exc}")
        detail = "" if isinstance(exc, CacpipeError) else traceback.format_exc(limit=8)
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return {"key": task.key, "status": status, "reason": reason, "detail": detail, "flags": flags,
            "series_uid": series_uid, "started": started, "finished": _now(), "seconds": seconds,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def _load_first_usable(task: StudyTask):
    """Assemble the best candidate series; when it is unusable, the next one (flagged)."""
    errors = []
    for series in task.candidates:
        try:
            volume = load_series(series, AssemblyOptions.from_dict(task.assembly))
        except InputDataError as exc:
            errors.append((series, str(exc)))
            continue
        if errors:
            bad = "; ".join(f"{s.series_description or s.series_uid}: {e}" for s, e in errors)
            name = series.series_description or series.series_uid
            volume.meta["ingest_flags"].append(Flag(
                SERIES_FALLBACK, f"preferred series unusable ({bad}); scored {name} instead", "warning").to_dict())
        return series, volume
    if len(errors) == 1:
        raise InputDataError(errors[0][1])
    raise InputDataError("no candidate series is usable: " + "; ".join(
        f"{s.series_description or s.series_uid}: {e}" for s, e in errors))


def _complete_result(result: dict, task: StudyTask, info: StudyInfo, series: Series,
                     ingest_flags: list[dict]) -> dict:
    """Fill what the runner knows into the result: identifiers, ingestion flags, fingerprints."""
    result = dict(result)
    result.setdefault("schema", RESULT_SCHEMA)
    result.setdefault("status", "done")
    result["study"] = {**info.to_dict(), **(result.get("study") or {})}
    codes = {f.get("code") for f in result.get("flags", []) if isinstance(f, dict)}
    result["flags"] = list(result.get("flags", [])) + [f for f in ingest_flags if f.get("code") not in codes]
    result.setdefault("outputs", {})["result"] = RESULT
    result["ingest"] = {"input_fingerprint": task.input_fingerprint, "config_hash": task.config_hash,
                        "files": len(series.files), "skipped_series": task.skipped_series}
    return result


# --- manifest, lock, cohort -------------------------------------------------------------------

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lock:
    """One scan at a time per output folder; a lock left by a dead process on this host is taken over."""

    def __init__(self, out: Path):
        self.path = out / LOCK

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
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
                raise ConfigError(f"another cacpipe scan (pid {other.get('pid')} on {other.get('host')}) is writing "
                                  f"to {self.path.parent}; wait for it, or delete {self.path} if it is not running") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise ConfigError(f"cannot take the scan lock {self.path}")

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _cleanup_stale(out: Path) -> None:
    """Remove temporary study folders and extraction folders left by a killed run."""
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    for p in out.glob("*/.*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob("*/.*.old-*"):
        final = p.with_name(p.name[1:].rsplit(".old-", 1)[0])
        if not final.exists():  # killed between the two renames: the old result is still complete
            os.rename(p, final)
        else:
            shutil.rmtree(p, ignore_errors=True)


# One column definition shared with `cacpipe evaluate` (cacpipe.quant.table), plus the run's own.
COHORT_COLUMNS = (*_QUANT_COLUMNS, "reason")


def cohort_rows(out: Path, manifest: dict) -> list[dict]:
    """One row per study of the manifest; numbers come from each done study's result.json."""
    rows = []
    for entry in sorted(manifest["studies"].values(),
                        key=lambda e: (e.get("patient_id", ""), e.get("study_date", ""), e.get("study_uid", ""))):
        row = {c: "" for c in COHORT_COLUMNS}
        row.update(patient_id=entry.get("patient_id", ""), study_uid=entry.get("study_uid", ""),
                   study_date=entry.get("study_date", ""), series_uid=entry.get("series_uid", ""),
                   status=entry.get("status", ""), reason=entry.get("reason", ""))
        if entry.get("status") == "done" and entry.get("result"):
            try:
                res = json.loads((out / entry["result"]).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                row.update(status="failed", reason=f"result unreadable: {exc}")
                rows.append(row)
                continue
            row.update({k: _cell(v) for k, v in cohort_row(res).items() if v is not None and v != ""})
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return ""  # not assessed: empty, never 0
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))
    return str(v)


def write_cohort(out: Path, manifest: dict) -> Path:
    write_atomic(out / COHORT, csv_text(cohort_rows(out, manifest), COHORT_COLUMNS))
    return out / COHORT


# --- the run ----------------------------------------------------------------------------------

@dataclass
class ScanSummary:
    """What one ``run_scan`` did."""

    out: Path
    studies: int = 0
    processed: int = 0  # analysed in this run (done + failed)
    done: int = 0  # newly done in this run
    up_to_date: int = 0  # done before with the same inputs and settings
    failed: int = 0
    skipped: int = 0
    problems: int = 0  # files that could not be read (see manifest["problems"])
    ignored_files: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (study key, reason)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when no study failed, 1 otherwise."""
        return 1 if self.failed else 0

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST

    @property
    def cohort(self) -> Path:
        return self.out / COHORT

    def lines(self) -> list[str]:
        out = [f"{self.studies} studies: {self.done} done now, {self.up_to_date} already done, "
               f"{self.failed} failed, {self.skipped} skipped; {self.problems} unreadable files, "
               f"{self.ignored_files} non-DICOM files ignored ({self.seconds:.1f} s)"]
        out += [f"FAILED {k}: {r}" for k, r in self.failures]
        out += [f"manifest: {self.manifest}", f"cohort:   {self.cohort}"]
        return out


def _redo_reason(entry: dict | None, fp: str, cfg: str, out: Path, force: bool) -> str | None:
    """Why a study must be (re)analysed; None when its result is up to date."""
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
    if not entry.get("result") or not (out / entry["result"]).exists():
        return "result missing"
    return None


def _recover(out: Path, rel: str, fp: str, cfg: str) -> str | None:
    """The series UID of a complete result on disk with these fingerprints (the manifest write
    was missed when a run was killed), or None."""
    try:
        res = json.loads((out / rel / RESULT).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    ing = res.get("ingest", {})
    if ing.get("input_fingerprint") == fp and ing.get("config_hash") == cfg and res.get("status") != "failed":
        return str((res.get("study") or {}).get("series_uid", ""))
    return None


def run_scan(
    export: str | Path,
    out: str | Path,
    analyse: Analyse | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    settings: dict | None = None,
    progress: bool = True,
    *,
    rules: SelectionRules | None = None,
    assembly: AssemblyOptions | None = None,
    force: bool = False,
) -> ScanSummary:
    """Scan a PACS export into ``out``; resumable (only failed, new or changed studies are redone).

    ``analyse(volume, study_info, out_dir, settings) -> result dict`` writes one study's outputs
    into ``out_dir`` (default: ``cacpipe.pipeline.analyse_series``). ``jobs`` > 1 runs studies in
    that many processes; ``scheduler`` (a Dask distributed address) runs them on that cluster,
    whose workers must see ``export`` and ``out`` under the same paths.
    """
    t_start = time.perf_counter()
    export, out = Path(export), Path(out)
    analyse = analyse or default_analyse()
    rules = rules or SelectionRules()
    assembly = assembly or AssemblyOptions()
    settings = dict(settings or {})
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1 or scheduler:
        try:
            pickle.dumps(analyse)
        except Exception as exc:
            raise ConfigError(f"the analyse function {analyse_name(analyse)} cannot be sent to worker processes "
                              f"({exc}); define it at module level") from exc
    out.mkdir(parents=True, exist_ok=True)
    summary = ScanSummary(out=out)
    with _Lock(out):
        _cleanup_stale(out)
        manifest = load_manifest(out)
        (out / ".tmp").mkdir(exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="extract-", dir=out / ".tmp"))
        try:
            tasks = _plan(export, out, manifest, analyse, settings, rules, assembly, force, workdir, summary,
                          progress)
            _save(out, manifest)
            _execute(tasks, jobs, scheduler, progress, manifest, out, summary)
        finally:
            _save(out, manifest)
            write_cohort(out, manifest)
            shutil.rmtree(out / ".tmp", ignore_errors=True)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _plan(export, out, manifest, analyse, settings, rules, assembly, force, workdir, summary,
          progress) -> list[StudyTask]:
    """Discover, group, select; record skipped and up-to-date studies; return the studies to run."""
    disc = discover(export, workdir, progress=progress, exclude=(out,))
    studies, group_problems = group_studies(disc.headers)
    problems = disc.problems + group_problems
    manifest.update(export=str(export.resolve()), cacpipe_version=__version__, scanned=_now(),
                    problems=[p.to_dict() for p in problems], ignored_files=len(disc.ignored),
                    rules=rules.to_dict(), assembly=assembly.to_dict())
    summary.problems, summary.ignored_files, summary.studies = len(problems), len(disc.ignored), len(studies)
    for p in problems:
        log.warning("unreadable input: %s: %s", p.source, p.reason)
    cfg = _hash({"analyse": analyse_name(analyse), "settings": settings, "assembly": assembly.to_dict()})
    for entry in manifest["studies"].values():
        entry["in_last_scan"] = False
    tasks = []
    for study in studies:
        sel = select_series(study, rules)
        rel = f"{safe_name(study.patient_id)}/{safe_name(study.study_uid)}"
        entry = manifest["studies"].get(study.key)
        base = {"patient_id": study.patient_id, "study_uid": study.study_uid, "study_date": study.study_date,
                "accession": study.accession, "in_last_scan": True, "skipped_series": sel.skipped_dicts(),
                "notes": study.notes}
        if sel.selected is None:
            manifest["studies"][study.key] = {**base, "status": "skipped", "reason": sel.reason, "series_uid": ""}
            summary.skipped += 1
            continue
        fp = sel.fingerprint()
        why = _redo_reason(entry, fp, cfg, out, force)
        recovered = _recover(out, rel, fp, cfg) if why and not force else None
        if recovered is not None:
            why, entry = None, {**(entry or {}), "status": "done", "result": f"{rel}/{RESULT}", "reason": "",
                                "input_fingerprint": fp, "config_hash": cfg, "series_uid": recovered}
        if why is None:
            # series_uid stays the one the result was computed from (a fallback may have been used).
            manifest["studies"][study.key] = {"series_uid": sel.selected.series_uid, **entry, **base}
            summary.up_to_date += 1
            continue
        manifest["studies"][study.key] = {**(entry or {}), **base, "status": "pending", "reason": why,
                                          "series_uid": sel.selected.series_uid, "input_fingerprint": fp,
                                          "config_hash": cfg, "result": None}
        tasks.append(StudyTask(key=study.key, candidates=sel.candidates, out_dir=str(out / rel),
                               input_fingerprint=fp, config_hash=cfg, analyse=analyse, settings=settings,
                               assembly=assembly.to_dict(), skipped_series=sel.skipped_dicts()))
    return tasks


_SAVE_COST = {"seconds": 0.0, "last": 0.0}


def _save(out: Path, manifest: dict, throttle: bool = False) -> None:
    """Write the manifest atomically. ``throttle``: skip when the last write was so recent that
    writing would take over ~5 % of the time (huge manifests); a result missed this way is
    recovered from its result.json by the next run."""
    now = time.perf_counter()
    if throttle and now - _SAVE_COST["last"] < 20 * _SAVE_COST["seconds"]:
        return
    manifest["updated"] = _now()
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1, default=str))
    _SAVE_COST["last"] = time.perf_counter()
    _SAVE_COST["seconds"] = _SAVE_COST["last"] - now


def _record(outcome: dict, tasks_by_key: dict, manifest: dict, out: Path, summary: ScanSummary, bar) -> None:
    key = outcome["key"]
    task = tasks_by_key[key]
    entry = manifest["studies"][key]
    entry.update(status=outcome["status"], reason=outcome["reason"], started=outcome.get("started"),
                 finished=outcome.get("finished"), seconds=outcome.get("seconds", {}), flags=outcome.get("flags", []),
                 worker=outcome.get("worker"), attempts=int(entry.get("attempts", 0)) + 1,
                 series_uid=outcome.get("series_uid", entry.get("series_uid")))
    entry.pop("detail", None)
    if outcome.get("detail"):
        entry["detail"] = outcome["detail"]
    entry["result"] = str(Path(task.out_dir).relative_to(out) / RESULT) if outcome["status"] == "done" else None
    summary.processed += 1
    if outcome["status"] == "done":
        summary.done += 1
    else:
        summary.failed += 1
        summary.failures.append((key, outcome["reason"]))
        msg = f"FAILED {key}: {outcome['reason']}"
        if bar is not None and not bar.disable:
            bar.write(msg)
        log.warning(msg)
    _save(out, manifest, throttle=True)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(failed=summary.failed, refresh=False)


def _failed_outcome(task: StudyTask, reason: str) -> dict:
    return {"key": task.key, "status": "failed", "reason": reason, "detail": "", "flags": [], "seconds": {},
            "started": None, "finished": _now()}


def _worker_init(threads: int) -> None:
    # Several studies at once: keep each worker's math libraries from using every core.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def _execute(tasks, jobs, scheduler, progress, manifest, out, summary) -> None:
    from tqdm import tqdm

    by_key = {t.key: t for t in tasks}
    bar = tqdm(total=len(tasks), unit="study", desc="cacpipe scan", disable=not progress or not tasks,
               dynamic_ncols=True)
    try:
        def record(o: dict) -> None:
            _record(o, by_key, manifest, out, summary, bar)

        if not tasks:
            return
        if scheduler:
            _run_dask(tasks, scheduler, record)
        elif jobs > 1 and len(tasks) > 1:
            _run_processes(tasks, jobs, record)
        else:
            for t in tasks:
                record(process_study(t))
    finally:
        bar.close()


def _run_processes(tasks: list[StudyTask], jobs: int, record, retry: bool = True) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    broken: list[StudyTask] = []
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn: a fresh interpreter per worker (forking a process that holds torch threads can hang).
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {pool.submit(process_study, t): t for t in tasks}
        try:
            for fut in as_completed(futures):
                try:
                    record(fut.result())
                except BrokenProcessPool:
                    broken.append(futures[fut])
                except Exception as exc:  # e.g. the task could not be pickled
                    record(_failed_outcome(futures[fut], _one_line(f"{type(exc).__name__}: {exc}")))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)  # do not wait for running studies on Ctrl-C
            raise
    if broken and retry:
        # A worker died (killed, out of memory): the pool cannot tell which study did it; retry alone.
        for t in broken:
            _run_processes([t], 1, record, retry=False)
    elif broken:
        for t in broken:
            record(_failed_outcome(t, "worker process died while analysing this study (out of memory?)"))


def _run_dask(tasks: list[StudyTask], scheduler, record) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError(f"--scheduler needs dask.distributed ({exc})") from exc
    try:
        client = Client(scheduler, timeout="30s") if isinstance(scheduler, str) else scheduler
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        futures = {client.submit(process_study, t, pure=False, key=f"cacpipe-study-{uuid.uuid4().hex}"): t
                   for t in tasks}
        for fut in as_completed(list(futures)):
            try:
                record(fut.result())
            except Exception as exc:  # KilledWorker, lost connection: the study failed, the batch goes on
                record(_failed_outcome(futures[fut], _one_line(f"dask: {type(exc).__name__}: {exc}")))
    finally:
        if isinstance(scheduler, str):
            client.close()

