"""Running the planned studies: in this process (one at a time, or pipelined), in worker processes
(``--jobs``, GPU lists), or on Dask.

Local workers are one process each, with a device each (``checks.worker_devices``): a study is
sent to whichever worker is free, so every worker loads the models once (``segment`` caches its
predictor per process) and a ``cuda:0,1`` run keeps both GPUs busy. A worker that dies fails only
the study it was running (retried once, since a death under memory pressure may not recur).

Pipelined (``--pipeline``, one worker): three studies in flight in this process, each in another
phase of ``worker.process_study`` (``open_study`` / ``infer_study`` / ``close_study``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .. import env, logs
from ..errors import ConfigError
from .layout import RESULT, one_line
from .report import study_line
from .worker import StudyTask, close_study, failed_outcome, infer_study, open_study, process_study

log = logging.getLogger(__name__)
DIED = "worker process died while analysing this study (out of memory?)"


def record_outcome(outcome: dict, tasks_by_key: dict, manifest: dict, out: Path, summary, bar) -> None:
    """Put one study's outcome into the manifest and the summary; update the progress bar."""
    key = outcome["key"]
    task = tasks_by_key[key]
    entry = manifest["studies"][key]
    entry.update(status=outcome["status"], reason=outcome["reason"], started=outcome.get("started"),
                 finished=outcome.get("finished"), seconds=outcome.get("seconds", {}), flags=outcome.get("flags", []),
                 worker=outcome.get("worker"), attempts=int(entry.get("attempts", 0)) + 1,
                 series_uid=outcome.get("series_uid") or entry.get("series_uid"))
    entry.pop("detail", None)
    entry.pop("kept", None)
    if outcome.get("detail"):
        entry["detail"] = outcome["detail"]
    if outcome.get("device"):
        entry["device"] = outcome["device"]
    entry["result"] = str(Path(task.out_dir).relative_to(out) / RESULT) if outcome["status"] == "done" else None
    summary.processed += 1
    line = study_line(key, outcome, entry.get("study_date", ""))
    if outcome["status"] == "done":
        summary.done += 1
        logs.report().info(line)
    else:
        summary.failed += 1
        summary.failures.append((key, outcome["reason"]))
        logs.report().warning(line)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(failed=summary.failed, refresh=False)


def execute(tasks: list[StudyTask], devices: list[str], scheduler, record: Callable[[dict], None],
            pipelined: bool = False) -> None:
    """Run ``tasks`` and hand each outcome to ``record`` as it arrives. ``devices``: one per local worker
    (one entry: in this process); ignored with a Dask ``scheduler``. ``pipelined``: with one local
    worker, overlap the studies' phases (``run_pipelined``)."""
    if not tasks:
        return
    if scheduler:
        run_dask(tasks, scheduler, record)
    elif len(devices) > 1 and len(tasks) > 1:
        run_workers(tasks, devices, record)
    elif pipelined and len(tasks) > 1:
        run_pipelined(tasks, devices[0], record)
    else:
        for t in tasks:
            record(process_study(on_device(t, devices[0])))


def on_device(task: StudyTask, device: str) -> StudyTask:
    """``task`` to run on ``device`` (left as it is when that is already its settings' device)."""
    return task if device == task.settings.device else replace(task, device=device)


def run_pipelined(tasks: list[StudyTask], device: str, record: Callable[[dict], None]) -> None:
    """Three studies at once in this process: a thread loads the next study and runs its stage 1 (heart
    crop), this thread runs the network on the current one, and a thread finishes the previous one
    (quantification, writing, review, result.json) and records it. Models are loaded once (the
    predictor cache is per process); at most one study waits between two phases, which bounds the
    volumes held in memory to about five studies. ``record`` is called from the finishing thread only.
    """
    import queue
    import threading

    opened: queue.Queue = queue.Queue(maxsize=1)
    inferred: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    errors: list[BaseException] = []
    end = object()

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def opener() -> None:
        try:
            for t in tasks:
                if stop.is_set() or not put(opened, open_study(on_device(t, device))):
                    return
            put(opened, end)
        except BaseException as exc:  # open_study never raises for a study's own failure: this is a bug
            errors.append(exc)
            stop.set()

    def closer() -> None:
        try:
            while (run := inferred.get()) is not end:
                record(close_study(run))
        except BaseException as exc:  # e.g. the manifest cannot be written: stop the scan, re-raised below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=opener, name="cacpipe-open", daemon=True),
               threading.Thread(target=closer, name="cacpipe-close", daemon=True)]
    for th in threads:
        th.start()
    try:
        while not stop.is_set():
            try:
                run = opened.get(timeout=0.2)
            except queue.Empty:
                continue
            if run is end:
                break
            if not put(inferred, infer_study(run)):
                break
    except BaseException:
        stop.set()  # Ctrl-C: the opener stops at its next study, the closer after the current one
        raise
    finally:
        if stop.is_set():  # stopping: the closer finishes the study it has, then sees the end
            _offer(inferred, end)
        else:
            put(inferred, end)
        for th in threads:
            th.join(timeout=5.0 if stop.is_set() else None)
    if errors:
        raise errors[0]


def _offer(q, item) -> None:
    """Put ``item`` without waiting, making room if needed (shutdown: the consumer must see it)."""
    import queue

    try:
        q.put_nowait(item)
    except queue.Full:
        try:
            q.get_nowait()
        except queue.Empty:
            pass
        q.put_nowait(item)


def _worker_init(threads: int, verbosity: int) -> None:
    # Several studies at once: keep each worker's math libraries from using every core.
    env.limit_threads(threads)
    logs.setup_worker(verbosity)
    end_with_parent()


def end_with_parent() -> None:
    """Linux: this process gets SIGTERM when the process that started it dies (even by SIGKILL), so a
    worker never runs on, and writes a study, after its scan has gone. Elsewhere: nothing."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the parent still ends its workers when it stops
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _stop_processes(pool) -> None:
    """Terminate the processes of a ProcessPoolExecutor now (shutdown(wait=False) leaves a running
    study running). Uses the executor's process table, which the standard library keeps in
    ``_processes``; a missing table only means there is nothing to end."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass


def run_workers(tasks: list[StudyTask], devices: list[str], record, retries: int = 1) -> None:
    """One worker process per entry of ``devices``; each free worker takes the next study."""
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    devices = devices[:len(tasks)]
    threads = max(1, (os.cpu_count() or 1) // len(devices))

    def new_worker() -> ProcessPoolExecutor:
        # spawn: a fresh interpreter per worker (forking a process that holds torch threads can hang).
        return ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                   initargs=(threads, logs.verbosity()))

    workers = [new_worker() for _ in devices]
    queue = deque(tasks)
    deaths: dict[str, int] = {}
    running: dict = {}  # future -> (worker index, task)

    def feed(i: int) -> None:
        while queue:
            t = on_device(queue.popleft(), devices[i])
            try:
                running[workers[i].submit(process_study, t)] = (i, t)
                return
            except Exception as exc:  # e.g. the task cannot be pickled
                record(failed_outcome(t, one_line(f"{type(exc).__name__}: {exc}")))

    clean = False
    try:
        for i in range(len(workers)):
            feed(i)
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                i, t = running.pop(fut)
                try:
                    record(fut.result())
                except BrokenProcessPool:
                    workers[i].shutdown(wait=False, cancel_futures=True)
                    workers[i] = new_worker()
                    deaths[t.key] = deaths.get(t.key, 0) + 1
                    if deaths[t.key] <= retries:
                        log.warning("worker process died on %s; trying it once more", t.key)
                        queue.append(t)
                    else:
                        record(failed_outcome(t, DIED))
                except Exception as exc:  # e.g. the outcome could not be unpickled
                    record(failed_outcome(t, one_line(f"{type(exc).__name__}: {exc}")))
                feed(i)
        clean = True
    finally:
        for w in workers:  # on Ctrl-C, SIGTERM or an error, end the studies still running: they never count
            if not clean:
                _stop_processes(w)
            w.shutdown(wait=clean, cancel_futures=True)


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
