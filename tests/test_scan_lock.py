"""Taking over a stale scan lock is atomic: of many processes that find a lock left by a dead
scan, one gets in at a time (issue 27, item 9: before, two were inside in 46 of 200 tries)."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import subprocess
import sys
import time

import pytest

from cacpipe.errors import ConfigError
from cacpipe.scan.layout import LOCK
from cacpipe.scan.manifest import ScanLock


def _try(out, barrier, q):
    barrier.wait()
    try:
        with ScanLock(out):
            t0 = time.monotonic()
            time.sleep(0.03)
            q.put((t0, time.monotonic()))
    except ConfigError:
        q.put(None)


def test_stale_lock_takeover_lets_one_in_at_a_time(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ctx = mp.get_context("fork")
    overlaps = inside = 0
    for _ in range(25):
        (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
        barrier, q = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_try, args=(tmp_path, barrier, q)) for _ in range(4)]
        for p in procs:
            p.start()
        got = [q.get(timeout=30) for _ in procs]
        for p in procs:
            p.join()
        spans = sorted(g for g in got if g)
        inside += len(spans)
        overlaps += sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    assert overlaps == 0 and inside >= 25
    assert not (tmp_path / LOCK).exists()


def test_a_live_holder_is_refused_and_named(tmp_path):
    with ScanLock(tmp_path):
        with pytest.raises(ConfigError, match=r"another cacpipe scan \(pid \d+"):
            with ScanLock(tmp_path):
                pass
    with ScanLock(tmp_path):  # released: free again
        pass
