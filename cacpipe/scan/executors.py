"""Running the planned studies: in this process, in worker processes (``--jobs``), or on Dask."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from .. import env
from ..errors import ConfigError
from .layout import RESULT, one_line
from .worker import StudyTask, failed_outcome, process_study

log = logging.getLogger(__name__)


def record_outcome(outcome: dict, tasks_by_key: dict, manifest: dict, out: Path, summary, bar) -> None:
    """Put one study's outcome into the manifest and the summary; update the progress bar."""
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
    if bar is not None:
        bar.update(1)
        bar.set_postfix(failed=summary.failed, refresh=False)


def execute(tasks: list[StudyTask], jobs: int, scheduler, progress: bool, record: Callable[[dict], None]) -> None:
    """Run ``tasks`` and hand each outcome to ``record`` as it arrives."""
    if not tasks:
        return
    if scheduler:
        run_dask(tasks, scheduler, record)
    elif jobs > 1 and len(tasks) > 1:
        run_processes(tasks, jobs, record)
    else:
        for t in tasks:
            record(process_study(t))


def _worker_init(threads: int) -> None:
    # Several studies at once: keep each worker's math libraries from using every core.
    env.limit_threads(threads)


def run_processes(tasks: list[StudyTask], jobs: int, record, retry: bool = True) -> None:
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
                    record(failed_outcome(futures[fut], one_line(f"{type(exc).__name__}: {exc}")))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)  # do not wait for running studies on Ctrl-C
            raise
    if broken and retry:
        # A worker died (killed, out of memory): the pool cannot tell which study did it; retry alone.
        for t in broken:
            run_processes([t], 1, record, retry=False)
    elif broken:
        for t in broken:
            record(failed_outcome(t, "worker process died while analysing this study (out of memory?)"))


def run_dask(tasks: list[StudyTask], scheduler, record) -> None:
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
                record(failed_outcome(futures[fut], one_line(f"dask: {type(exc).__name__}: {exc}")))
    finally:
        if isinstance(scheduler, str):
            client.close()
