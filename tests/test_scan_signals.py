"""SIGTERM and SIGHUP (systemd, SLURM, ``docker stop``, a closed terminal) stop a scan like Ctrl-C:
its worker processes end with it, the study in progress never counts, the next run resumes
(issue 27, item 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from export_faults import MIN_SLICES

pytestmark = pytest.mark.slow  # worker processes started, signalled and resumed


@pytest.fixture(scope="module")
def export(tiny_demo_export):
    return tiny_demo_export  # conftest.py: written once per test process


def _cmd(export, out):
    return [sys.executable, "-m", "cacpipe", "scan", str(export), "-o", str(out), "--min-slices", str(MIN_SLICES),
            "--analyse", "export_faults:threshold_analyse", "--no-progress", "-j", "2"]


def test_sighup_stops_a_command_like_ctrl_c():
    from cacpipe.clitools import stop_on_signals

    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(KeyboardInterrupt, match="SIGHUP"), stop_on_signals():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the handler raises here
    assert signal.getsignal(signal.SIGHUP) == before  # restored after the command


@pytest.mark.parametrize("signame", ["SIGTERM"])
def test_signal_stops_workers_and_the_next_run_resumes(export, tmp_path, signame):
    out, marker = tmp_path / "out", tmp_path / "slow-started"
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "CACPIPE_TEST_SLOW": "DEMO002", "CACPIPE_TEST_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(_cmd(export, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5)
        while len(list(out.glob("DEMO00[13]/*/result.json"))) < 2 and time.time() < deadline:
            time.sleep(0.05)  # the other worker finishes the two other studies meanwhile
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers
        proc.send_signal(getattr(signal, signame))  # to the parent only, as systemd's KillMode=mixed does
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (stdout, stderr)
    assert "interrupted" in stderr
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers still running after the scan stopped: {alive}"
    # the slow study was being written: it does not count, and nothing was installed afterwards
    half = Path(marker.read_text())
    time.sleep(0.5)
    assert not (half.parent / half.name.split(".tmp-")[0].lstrip(".") / "result.json").exists()
    entries = {e["patient_id"]: e for e in json.loads((out / "manifest.json").read_text())["studies"].values()}
    assert entries["DEMO002"]["status"] != "done"
    assert not (out / ".cacpipe-scan.lock").exists()
    env.pop("CACPIPE_TEST_SLOW")
    r = subprocess.run(_cmd(export, out), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 done now, 2 already done" in r.stdout, r.stdout
