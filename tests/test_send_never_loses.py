"""``scan --send`` and ``review send OUT`` against real pynetdicom peers on loopback: a failed send
never costs a result, pending sends are retried, the peer is checked at start, and a peer that
answers garbage cannot hang a send (issue 27, item 1)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner
from export_faults import MIN_SLICES

from cacpipe.cli import cli

SEG_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SR_UID = "1.2.840.10008.5.1.4.1.1.88.34"
SC_UID = "1.2.840.10008.5.1.4.1.1.7"
ECHO_UID = "1.2.840.10008.1.1"


@pytest.fixture(scope="module")
def export(tiny_demo_export):
    return tiny_demo_export  # conftest.py: written once per test process


def scp(sop_classes, port=0):
    """A storage SCP on 127.0.0.1 (supports ``sop_classes`` and C-ECHO); returns (server, received UIDs)."""
    from pynetdicom import AE, evt

    received, lock = [], threading.Lock()

    def on_store(event):
        with lock:
            received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="TESTPACS")
    for uid in (*sop_classes, ECHO_UID):
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return server, received


def garbage_peer():
    """A TCP server that answers any association request with a malformed PDU (a length it never sends)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def handle(c):
        try:
            c.recv(65536)
            c.sendall(b"\x02\x00\x00\x00\xff\xff\xff\xff" + b"garbage" * 10)
            time.sleep(300)
        except OSError:
            pass

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            conns.append(c)
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv, conns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scan(export, out, *extra):
    return CliRunner().invoke(cli, ["scan", str(export), "--out", str(out), "--min-slices", str(MIN_SLICES),
                                    "--analyse", "export_faults:review_analyse", "--no-progress", *extra])


def _entries(out):
    return json.loads((out / "manifest.json").read_text())["studies"]


def test_scan_send_checks_the_peer_at_start(export, tmp_path):
    port = free_port()  # nobody listens
    r = _scan(export, tmp_path / "out", "--send", f"PACS@127.0.0.1:{port}")
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--send" in lines[0] and "did not answer" in lines[0], r.output
    assert not (tmp_path / "out").exists()  # nothing analysed, no empty OUT left behind


def test_scan_send_refuses_a_garbage_peer_quickly(export, tmp_path):
    srv, conns = garbage_peer()
    try:
        t0 = time.monotonic()
        r = _scan(export, tmp_path / "out", "--send", f"PACS@127.0.0.1:{srv.getsockname()[1]}")
        took = time.monotonic() - t0
    finally:
        srv.close()
        for c in conns:
            c.close()
    assert r.exit_code == 2 and "did not finish within" in r.output, r.output
    assert took < 40, took


def test_failed_send_keeps_the_result_and_review_send_retries(export, tmp_path):
    out = tmp_path / "out"
    echo_only, got = scp([])  # answers C-ECHO, refuses SEG/SR/SC: every C-STORE fails
    port = echo_only.server_address[1]
    target = f"TESTPACS@127.0.0.1:{port}"
    try:
        r = _scan(export, out, "--send", target)
    finally:
        echo_only.shutdown()
    assert r.exit_code == 1, r.output
    assert "3 done now" in r.output and "0 failed" in r.output and "SEND PENDING" in r.output
    assert f"cacpipe review send {out}" in r.output and got == []
    entries = _entries(out)
    assert {e["status"] for e in entries.values()} == {"done"}
    assert {e["send"]["state"] for e in entries.values()} == {"pending"}
    for e in entries.values():  # the result, page and DICOM files are all there
        res = json.loads((out / e["result"]).read_text())
        assert res["pipeline"]["send"]["state"] == "pending" and res["pipeline"]["send"]["target"] == target
        assert res["total"]["agatston"] is not None
        for k in ("review_html", "seg", "sr"):
            assert (out / e["result"]).parent.joinpath(res["outputs"][k]).exists()
    cohort = (out / "cohort.csv").read_text().splitlines()
    assert len(cohort) == 4 and all(",done," in row for row in cohort[1:])

    # The peer is down now: retrying keeps them pending (exit 1), once per run, quickly.
    r = CliRunner().invoke(cli, ["review", "send", str(out), "--timeout", "3"])
    assert r.exit_code == 1 and "3 pending" in r.output and "still pending" in r.output, r.output
    assert r.output.count("not tried") == 2  # the first failure marks the peer down for the rest

    # The PACS is back on the same address: `review send OUT` sends all of them.
    full, received = scp([SEG_UID, SR_UID, SC_UID], port=port)
    try:
        r = CliRunner().invoke(cli, ["review", "send", str(out)])
    finally:
        full.shutdown()
    assert r.exit_code == 0, r.output
    assert "3 studies sent, 0 pending" in r.output
    entries = _entries(out)
    assert {e["send"]["state"] for e in entries.values()} == {"sent"}
    n_files = sum(e["send"]["files"] for e in entries.values())
    assert len(received) == len(set(received)) == n_files >= 3 * 3
    # Nothing pending: a second retry sends nothing.
    r = CliRunner().invoke(cli, ["review", "send", str(out)])
    assert r.exit_code == 0 and "nothing to send" in r.output, r.output


def test_scan_send_to_a_working_pacs_and_rescan_sends_only_new_targets(export, tmp_path):
    out = tmp_path / "out"
    server, received = scp([SEG_UID, SR_UID, SC_UID])
    try:
        r = _scan(export, out, "--send", f"TESTPACS@127.0.0.1:{server.server_address[1]}")
        assert r.exit_code == 0, r.output
        assert "3 studies sent, 0 pending" in r.output
        first = len(received)
        # Same target again: up to date and already sent, nothing is analysed or sent twice.
        r = _scan(export, out, "--send", f"TESTPACS@127.0.0.1:{server.server_address[1]}")
        assert r.exit_code == 0 and "0 done now, 3 already done" in r.output, r.output
        assert len(received) == first
    finally:
        server.shutdown()
    # A scan without --send, then with it: adding --send redoes no analysis.
    r = _scan(export, tmp_path / "b")
    assert r.exit_code == 0
    server, received = scp([SEG_UID, SR_UID, SC_UID])
    try:
        r = _scan(export, tmp_path / "b", "--send", f"TESTPACS@127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert r.exit_code == 0 and "0 done now, 3 already done" in r.output and "3 studies sent" in r.output, r.output


def test_review_send_has_an_overall_deadline(export, tmp_path):
    out = tmp_path / "out"
    assert _scan(export, out).exit_code == 0
    files = sorted(out.rglob("*.dcm"))[:1]
    srv, conns = garbage_peer()
    try:
        t0 = time.monotonic()
        r = CliRunner().invoke(cli, ["review", "send", f"PACS@127.0.0.1:{srv.getsockname()[1]}", *map(str, files),
                                     "--timeout", "1"])
        took = time.monotonic() - t0
    finally:
        srv.close()
        for c in conns:
            c.close()
    assert r.exit_code == 2 and "stalled: a step took more than 2 s" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert took < 10, took
