"""C-STORE of SEG / SR / SC to a real pynetdicom storage SCP on loopback."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from test_review_common import axial_datasets, result_from_truth

from cacpipe.config import ReviewSettings
from cacpipe.errors import ConfigError
from cacpipe.review import build_review, parse_target, send_outputs
from cacpipe.review.send import SendError
from cacpipe.volume import Volume

SEG_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SR_UID = "1.2.840.10008.5.1.4.1.1.88.34"
SC_UID = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    from cacpipe.phantom import PhantomConfig
    from cacpipe.phantom.writer import write_phantom

    root = tmp_path_factory.mktemp("review_send")
    _, truth = write_phantom(PhantomConfig.preset("small"), root / "ph")
    ct, labels = Volume.read(root / "ph" / "ct.nii.gz"), Volume.read(root / "ph" / "labels.nii.gz")
    out = build_review(root / "out", ct, labels, result_from_truth(truth, "PHANTOM0001", "PHANTOM^ALPHA", ct=ct, labels=labels),
                       axial_datasets(truth), ReviewSettings(max_slices=2))
    return [root / "out" / out["seg"], root / "out" / out["sr"], *(root / "out" / p for p in out["sc"])]


def _scp(sop_classes):
    from pynetdicom import AE, evt

    received, lock = [], threading.Lock()

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        with lock:
            received.append((str(ds.SOPInstanceUID), str(event.context.abstract_syntax), str(ds.SOPClassUID)))
        return 0x0000

    ae = AE(ae_title="TESTPACS")
    for uid in sop_classes:
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return server, received


def test_send_seg_sr_sc_to_loopback_scp(outputs):
    import pydicom

    server, received = _scp([SEG_UID, SR_UID, SC_UID])
    try:
        port = server.server_address[1]
        report = send_outputs(outputs, f"TESTPACS@127.0.0.1:{port}")
    finally:
        server.shutdown()
    assert report["failed"] == []
    assert sorted(report["contexts"]) == sorted([SEG_UID, SR_UID, SC_UID])
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): str(
        pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in outputs}
    assert {uid: ctx for uid, ctx, _ in received} == expected  # each arrived on its own SOP class context
    assert all(ctx == cls for _, ctx, cls in received)
    assert len(received) == len(outputs) == 2 + 3


def test_scp_without_sr_support_reports_the_failure(outputs):
    server, received = _scp([SEG_UID, SC_UID])
    try:
        report = send_outputs(outputs, f"TESTPACS@127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert [f["sop_class_uid"] for f in report["failed"]] == [SR_UID]
    assert len(received) == len(outputs) - 1


def test_unreachable_pacs_raises_clear_error(outputs):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SendError, match="did not answer"):
        send_outputs(outputs[:1], f"PACS@127.0.0.1:{port}", timeout_s=3)


@pytest.mark.parametrize("text,msg", [
    ("PACS127.0.0.1:104", "not AE@HOST:PORT"), ("PACS@host", "not AE@HOST:PORT"),
    ("A_VERY_LONG_AE_TITLE_X@h:104", "at most 16"), ("PACS@h:70000", "1..65535"), ("P @h:104", "printable"), ("MY\\PACS@h:104", "no backslash"),
])
def test_parse_target_errors(text, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_target(text)


def test_parse_target_ok():
    t = parse_target("ORTHANC@10.0.0.5:4242")
    assert (t.ae_title, t.host, t.port) == ("ORTHANC", "10.0.0.5", 4242)
    t6 = parse_target("PACS@[::1]:104")
    assert (t6.host, t6.port, str(t6)) == ("::1", 104, "PACS@[::1]:104")
    assert np.isfinite(t.port)


def test_cli_send_folder(outputs):
    from click.testing import CliRunner

    from cacpipe.cli import cli

    server, received = _scp([SEG_UID, SR_UID, SC_UID])
    try:
        r = CliRunner().invoke(cli, ["review", "send", f"TESTPACS@127.0.0.1:{server.server_address[1]}",
                                     str(outputs[0].parent)])
    finally:
        server.shutdown()
    assert r.exit_code == 0, r.output
    assert f"sent {len(outputs)} object(s)" in r.output and len(received) == len(outputs)
    r = CliRunner().invoke(cli, ["review", "send", "nonsense", str(outputs[0])])
    assert r.exit_code != 0 and "not AE@HOST:PORT" in r.output
